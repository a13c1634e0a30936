//! The audit log: [`AuditStore`] and its entries.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreError;
use crate::auth::Role;
use crate::ids::Scope;
use crate::object::Kind;

/// One audit-log entry: who did what to which object and fields — never the values.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    /// Entry id (UUIDv7: time-ordered).
    pub id: Uuid,
    /// Scope.
    pub scope: Scope,
    /// When.
    pub at: DateTime<Utc>,
    /// Acting principal (key or user id), if known.
    pub actor: Option<Uuid>,
    /// Its role, if known.
    pub actor_role: Option<Role>,
    /// What happened (`pii.read`, `pii.search`, `key.create`, `signin.failed`, …).
    pub action: String,
    /// The object kind, if any.
    pub object_kind: Option<Kind>,
    /// The object or resource id, if any.
    pub object_id: Option<String>,
    /// Field ids involved.
    pub fields: Vec<String>,
    /// Extra non-sensitive detail (a name, a role).
    pub detail: String,
}

/// Filters of the audit log; newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Only this action.
    pub action: Option<String>,
    /// Only this actor.
    pub actor: Option<Uuid>,
    /// Only this object or resource.
    pub object_id: Option<String>,
    /// At or after.
    pub from: Option<DateTime<Utc>>,
    /// At or before.
    pub to: Option<DateTime<Utc>>,
    /// Page size.
    pub limit: usize,
    /// Entries older than this id.
    pub before: Option<Uuid>,
}

/// The audit log: who did what to which object and fields, appended and read per scope.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Appends audit entries (one transaction).
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError>;
    /// Reads the audit log of a scope, newest first.
    async fn audit(&self, scope: Scope, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
}
