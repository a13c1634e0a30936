//! [`AuditStore`] for [`PgStore`]: the audit log (SQL in `access.rs`).

use async_trait::async_trait;
use contextd_core::ids::Scope;
use contextd_core::store::{AuditEntry, AuditQuery, AuditStore, StoreError};

use crate::store::PgStore;

#[async_trait]
impl AuditStore for PgStore {
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        self.add_audit(entries).await
    }

    async fn audit(&self, scope: Scope, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.read_audit(scope, query).await
    }
}
