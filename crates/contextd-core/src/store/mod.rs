//! The storage traits: everything contextd keeps in its data database and its key store,
//! spoken in domain terms, and the rules every backend shares.
//!
//! A store never sees the plaintext of ENCRYPTED or PII values: those arrive already sealed
//! (`StoredObject::sealed`), and searchable values arrive only as blind-index [`Token`]s.
//! Every method is scoped to one org (and, for objects, one partition); a backend must never
//! return or touch a row of another scope.
//!
//! [`Store`] is the sum of one trait per concern, each in a module of its own with the
//! records it speaks: [`ObjectStore`] (objects, search, timelines, erasure),
//! [`DictionaryStore`], [`CredentialStore`] (orgs, API keys, users, sessions, grants),
//! [`AuditStore`], [`JobStore`] (flush jobs, re-encryption), [`ConnectorStore`]
//! (components and their credentials), [`EventStore`] (the events outbox and the cursors of
//! the channels reading it), [`WebhookStore`] and [`RetentionStore`] (objects an
//! organization's retention rules let go). A new concern is a new module
//! with a trait of its own, added to `Store`'s bounds. [`KeyStore`] stands apart: keys live
//! in a database of their own.
//!
//! The rules both backends need — how an object's body and sealed values are encoded
//! ([`StoredObject::body_json`], [`encode_sealed`]), what a parent may be
//! ([`ParentCheck::check`]), when a search matches nothing ([`SearchPlan::live_conditions`]),
//! who must stay an admin ([`check_last_admin`]), which schema a build may open
//! ([`check_schema_version`]) — live here, next to the types they govern; a backend holds only
//! its SQL.
//!
//! Code holding a `dyn Store` calls every method directly; code holding a backend type
//! imports the traits: `use contextd_core::store::prelude::*`.

use async_trait::async_trait;

use crate::ids::Partition;

mod audit;
mod connectors;
mod credentials;
mod dictionary;
mod encoding;
mod events;
mod jobs;
mod keys;
mod objects;
mod retention;
mod schema;
mod search;
mod settings;

pub use audit::{
    audit_codes, chain_hash, check_droppable, segment_of, AuditEntry, AuditQuery, AuditSegment,
    AuditStore, ChainHash, ChainHead, ChainedEntry, Month, SegmentHead, SegmentPosition, GENESIS,
};
pub use connectors::{ConnectorCredential, ConnectorRecord, ConnectorStore};
pub use credentials::{
    check_last_admin, ApiKeyRecord, CredentialEpoch, CredentialStore, GrantRecord, OrgRecord,
    SessionRecord, UserChange, UserRecord,
};
pub use dictionary::DictionaryStore;
pub use encoding::{decode_sealed, encode_sealed, sealed_values, ObjectBody, RawObject};
pub use events::{
    system_contributor, webhook_cursor, Change, EventStore, StoredEvent, WebhookRecord,
    WebhookState, WebhookStore,
};
pub use jobs::{FlushJob, JobStore};
pub use keys::{data_key_insert_conflict, same_key_set, KeyStore, WrappedKey};
pub use objects::{
    check_ids_read, Erasure, IdPage, ObjectPage, ObjectStore, ObjectWrite, PagePosition,
    ParentCheck, ParentRow, StoredObject, TimelineQuery, MAX_IDS_READ,
};
pub use retention::{ExpirySelector, Kept, RetentionStore};
pub use schema::{check_schema_version, Migration};
pub use search::{wanted_states, Condition, SearchPlan, TimeBound};
pub use settings::SettingsStore;

/// The store traits, for code that calls them on a backend type rather than on `dyn Store`.
pub mod prelude {
    pub use super::{
        AuditStore, ConnectorStore, CredentialStore, DictionaryStore, EventStore, JobStore,
        KeyStore, ObjectStore, RetentionStore, Store, WebhookStore,
    };
}

/// Errors a store reports. Backends map their driver errors into `Backend`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row to update or delete does not exist in this scope.
    #[error("not found")]
    NotFound,
    /// An optimistic-concurrency check failed: the stored version differs.
    #[error("version conflict: stored version is {current}")]
    VersionConflict {
        /// The version now stored.
        current: i64,
    },
    /// A row with this key already exists.
    #[error("already exists")]
    AlreadyExists,
    /// A key operation found the partition's keys other than the caller read them (another
    /// process rotated or re-wrapped them meanwhile): nothing was written; reload and retry.
    #[error("the partition's keys changed meanwhile")]
    KeysChanged,
    /// The parent named by a write does not exist in this scope.
    #[error("parent not found")]
    ParentNotFound,
    /// The parent request is closed (or went stale past the auto-close cutoff).
    #[error("parent request is closed")]
    ParentClosed,
    /// The organization's dictionary changed after the write was validated against it.
    #[error("the dictionary changed")]
    DictionaryChanged,
    /// A dictionary change that requires an entry be unused found it in use.
    #[error("in use")]
    InUse,
    /// The customer a write links to does not exist in this scope (or is being erased).
    #[error("customer not found")]
    CustomerNotFound,
    /// The change would leave a scope that has an enabled admin user without one.
    #[error("the last enabled admin user of the partition")]
    LastAdmin,
    /// The database failed or is unreachable.
    #[error("storage failure: {0}")]
    Backend(String),
}

impl StoreError {
    /// A column that holds what no backend writes: the row is corrupt.
    pub fn corrupt(what: &str) -> Self {
        StoreError::Backend(format!("corrupt {what} column"))
    }

    /// `VersionConflict` without the stored version (`current` is -1), for a write that did
    /// not read it: the caller reads the object again.
    pub fn version_changed() -> Self {
        StoreError::VersionConflict { current: -1 }
    }
}

/// A blind-index token: truncated HMAC-SHA-256 of a normalized value (or of a presence marker)
/// under the partition's index key. Opaque to the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub [u8; 16]);

/// The data database: the sum of the traits per concern, plus what concerns the database as
/// a whole. Implemented by `contextd-store-sqlite` and `contextd-store-postgres`, held to the
/// same behaviour by the conformance suite.
#[async_trait]
pub trait Store:
    ObjectStore
    + DictionaryStore
    + CredentialStore
    + AuditStore
    + JobStore
    + ConnectorStore
    + EventStore
    + WebhookStore
    + SettingsStore
    + RetentionStore
{
    /// A short name for logs and status (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;

    /// Checks the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Whether a partition allows deletes and flushes.
pub fn deletes_allowed(partition: Partition) -> bool {
    partition == Partition::Lab
}
