//! People and credentials on the wire: roles, users, sign-in sessions, API keys, partner
//! grants, the audit log, and the customer privacy operations (erase, export).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::ids::{ParseError, Partition};
use crate::object::{ContextObject, Kind};
use crate::truncate;

/// What a principal may do (docs/security.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Dictionary, credentials, connectors, settings, PII.
    Admin,
    /// Read/write context objects, PII.
    Agent,
    /// A connector credential: read/write objects, PII.
    Machine,
    /// Read/write objects; PII and ENCRYPTED values withheld unless granted.
    Partner,
}

impl Role {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Agent => "agent",
            Role::Machine => "machine",
            Role::Partner => "partner",
        }
    }
}

impl FromStr for Role {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "agent" => Ok(Role::Agent),
            "machine" => Ok(Role::Machine),
            "partner" => Ok(Role::Partner),
            _ => Err(ParseError(format!("unknown role '{}'", truncate(s, 32)))),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /v1/users` body.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Sign-in name (1–64 characters, unique in the partition).
    pub name: String,
    /// `admin`, `agent` or `partner`.
    pub role: Role,
    /// At least 12 characters.
    pub password: String,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A user as shown to admins.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    /// User id.
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// Sign-in name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Created.
    #[serde(with = "crate::time::rfc3339_ms")]
    pub created: DateTime<Utc>,
    /// A disabled user can't sign in and has no live session.
    pub disabled: bool,
}

/// `PATCH /v1/users/{id}` body: the members given are changed, the others kept.
#[derive(Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// Disable (ends every session of the user at once) or enable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// New role: `admin`, `agent` or `partner`; applies to existing sessions at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// New password, at least 12 characters; ends every session of the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl std::fmt::Debug for UserPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserPatch")
            .field("disabled", &self.disabled)
            .field("role", &self.role)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// `POST /v1/keys` body.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewKey {
    /// Display name.
    pub name: String,
    /// Role granted to the key.
    pub role: Role,
    /// Optional expiry (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// An API key as listed (never its secret).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    /// Key id.
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Created.
    #[serde(with = "crate::time::rfc3339_ms")]
    pub created: DateTime<Utc>,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Revoked?
    pub revoked: bool,
    /// The token: only in the answer to its creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `POST /v1/grants` body.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewGrant {
    /// The partner's key or user id.
    #[schema(value_type = String, format = Uuid)]
    pub principal: Uuid,
    /// When the grant lapses (RFC 3339, in the future).
    pub expires_at: DateTime<Utc>,
}

/// One audit entry as returned by `GET /v1/audit`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditView {
    /// Entry id (time-ordered).
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// When.
    #[serde(with = "crate::time::rfc3339_ms")]
    pub at: DateTime<Utc>,
    /// Who.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub actor: Option<Uuid>,
    /// Their role.
    pub actor_role: Option<Role>,
    /// What.
    pub action: String,
    /// Object kind.
    pub object_type: Option<Kind>,
    /// Object or resource id.
    pub object_id: Option<String>,
    /// Field ids involved (never values).
    pub fields: Vec<String>,
    /// Extra detail.
    pub detail: String,
}

/// A page of the audit log.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    /// Entries, newest first.
    pub items: Vec<AuditView>,
    /// Cursor of the next (older) page.
    pub next_cursor: Option<String>,
}

/// Everything held about one customer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerExport {
    /// The customer.
    pub customer: ContextObject,
    /// Every request, activity and detail linked to it, newest first.
    pub objects: Vec<ContextObject>,
    /// When the export was made.
    #[serde(with = "crate::time::rfc3339_ms")]
    pub exported_at: DateTime<Utc>,
}

/// Answer to ending a user's sessions.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionsRevoked {
    /// Sessions that were live and are now ended.
    pub revoked: u64,
}

/// `POST /v1/sessions` body.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// Organization name (default `default`; at most 400 characters).
    #[serde(default = "default_org")]
    pub org: String,
    /// `lab` or `production` (default).
    #[serde(default = "default_partition")]
    #[schema(value_type = String)]
    pub partition: Partition,
    /// User name (at most 400 characters).
    pub name: String,
    /// Password.
    pub password: String,
}

fn default_org() -> String {
    "default".into()
}

fn default_partition() -> Partition {
    Partition::Production
}

/// The signed-in session.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    /// The user.
    pub user: UserView,
    /// Send this in `x-csrf-token` on every unsafe request made with the cookie.
    pub csrf_token: String,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
}

/// Who the caller is.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhoAmI {
    /// Key or user id.
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// Role.
    pub role: Role,
    /// Partition.
    #[schema(value_type = String)]
    pub partition: Partition,
    /// Organization id.
    pub org_id: String,
    /// The organization's name (what sign-in asks for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_name: Option<String>,
    /// The user's or the key's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// With a session cookie: the value unsafe requests must send in `x-csrf-token` (a page
    /// reloaded after sign-in reads it here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
    /// The organization's allowed host origins (`/v1/settings/embedding`): the only hosts
    /// whose `postMessage` an embedded desktop obeys once signed in.
    #[serde(default)]
    pub embed_origins: Vec<String>,
}

/// Answer to a grant.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct GrantCreated {
    /// Grant id.
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
}

/// Audit-log filters.
#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditParams {
    /// Only this action (`pii.read`, `pii.search`, `key.create`, `signin.failed`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Only this actor (key or user id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Only this object or resource id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    /// At or after (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    /// At or before (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
    /// Page size (1–200, default 50).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// From a previous page's `nextCursor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Answer to an erase.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Erased {
    /// Objects removed (the customer and everything linked to it).
    pub erased: u64,
}
