//! The `Store` trait: everything contextd keeps in its data database, spoken in domain terms.
//!
//! A store never sees the plaintext of ENCRYPTED or PII values: those arrive already sealed
//! (`StoredObject::sealed`), and searchable values arrive only as blind-index [`Token`]s.
//! Every method is scoped to one org (and, for objects, one partition); a backend must never
//! return or touch a row of another scope.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::auth::Role;
use crate::dictionary::{Field, FieldSet};
use crate::ids::{ObjectId, OrgId, Partition, Scope};
use crate::object::{Contributor, DetailType, Kind, MediaType, State};

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

/// A blind-index token: truncated HMAC-SHA-256 of a normalized value (or of a presence marker)
/// under the partition's index key. Opaque to the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub [u8; 16]);

/// A context object as stored: clear values for UNENCRYPTED fields, sealed bytes for the others.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredObject {
    /// Object id.
    pub id: ObjectId,
    /// Org and partition.
    pub scope: Scope,
    /// Kind.
    pub kind: Kind,
    /// Owning customer.
    pub customer_id: Option<ObjectId>,
    /// Parent request or activity.
    pub parent_id: Option<ObjectId>,
    /// State as written (auto-close is applied by the core when reading).
    pub state: State,
    /// Channel of an activity.
    pub media_type: Option<MediaType>,
    /// Kind of a detail.
    pub detail_type: Option<DetailType>,
    /// Field set names.
    pub fieldsets: Vec<String>,
    /// Values of UNENCRYPTED fields, in the clear.
    pub clear: BTreeMap<String, serde_json::Value>,
    /// Values of ENCRYPTED and PII fields: field id → sealed bytes (see `crypto::seal`).
    pub sealed: BTreeMap<String, Vec<u8>>,
    /// Tags.
    pub tags: Vec<String>,
    /// Contributors.
    pub contributors: Vec<Contributor>,
    /// Created.
    pub created: DateTime<Utc>,
    /// Last write to the object itself.
    pub last_updated: DateTime<Utc>,
    /// Last write to the object or (for a request) to any of its children: drives auto-close.
    pub touched: DateTime<Utc>,
    /// Write counter.
    pub version: i64,
    /// The partition data-key version its sealed values use (objects without a customer);
    /// 0 when they use the customer's key or there are none. Drives re-encryption after rotation.
    pub key_version: u32,
}

/// A write of one object with its blind-index tokens.
#[derive(Clone, Debug)]
pub struct ObjectWrite {
    /// The full new state of the object.
    pub object: StoredObject,
    /// Every token the object must be found by (replaces the previous set on update).
    pub tokens: Vec<Token>,
    /// `None` inserts a new object; `Some(v)` updates only if the stored version is `v`.
    pub expected_version: Option<i64>,
    /// A request that must exist in scope, be `active`, and have been touched at or after
    /// `active_since`; the write refreshes its `touched` to the object's `last_updated`.
    pub parent_check: Option<ParentCheck>,
    /// A customer that must exist in scope when the write commits (set when the object is new
    /// or moves to that customer); `CustomerNotFound` otherwise. The check and an erase of that
    /// customer are serialized, so an erase leaves no object behind that names it.
    pub customer_check: Option<ObjectId>,
    /// The org's dictionary version the object's values were validated (and classified)
    /// against; `DictionaryChanged` if the dictionary moved on before the write commits, so
    /// that no value is written in the clear after its field was sealed.
    pub dictionary_version: Option<u64>,
}

/// What [`Store::erase_customer`] found or did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Erasure {
    /// Objects deleted (the customer and everything linked to it), as first recorded.
    pub objects: u64,
    /// Whether the customer's key is known destroyed ([`Store::complete_erasure`]).
    pub completed: bool,
}

/// See [`ObjectWrite::parent_check`].
#[derive(Clone, Copy, Debug)]
pub struct ParentCheck {
    /// The parent.
    pub id: ObjectId,
    /// The parent must be a request (`true`) or may be any kind (`false`, for details).
    pub must_be_request: bool,
    /// Auto-close cutoff: a request untouched since before this is treated as closed.
    pub active_since: DateTime<Utc>,
}

/// Position after which the next page starts: newest first by (time, id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagePosition {
    /// The ordering time of the last item returned.
    pub time: DateTime<Utc>,
    /// Its id (tie-breaker).
    pub id: ObjectId,
}

/// One condition of a search; the values inside it are OR-ed.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// The object carries any of these tokens.
    Tokens(Vec<Token>),
    /// Its id is one of these.
    Ids(Vec<ObjectId>),
    /// Its customer is one of these.
    CustomerIds(Vec<ObjectId>),
    /// Its parent is one of these.
    ParentIds(Vec<ObjectId>),
    /// Its state is one of these, where an active request untouched since before
    /// `active_since` (the auto-close cutoff) counts as closed.
    States {
        /// Wanted states.
        states: Vec<State>,
        /// The auto-close cutoff.
        active_since: DateTime<Utc>,
    },
    /// Its media type is one of these.
    MediaTypes(Vec<MediaType>),
}

/// A search, planned by the core: every value is already normalized and hashed.
#[derive(Clone, Debug)]
pub struct SearchPlan {
    /// Which kind of object.
    pub kind: Kind,
    /// `true`: all conditions must hold; `false`: any one.
    pub match_all: bool,
    /// The conditions (none: every object of the kind).
    pub conditions: Vec<Condition>,
    /// Inclusive lower bound on `created`.
    pub created_from: Option<DateTime<Utc>>,
    /// Inclusive upper bound on `created`.
    pub created_to: Option<DateTime<Utc>>,
    /// Inclusive lower bound on `last_updated`.
    pub updated_from: Option<DateTime<Utc>>,
    /// Inclusive upper bound on `last_updated`.
    pub updated_to: Option<DateTime<Utc>>,
    /// Objects carrying any of these presence tokens are excluded.
    pub not_exists: Vec<Token>,
    /// Page size.
    pub limit: usize,
    /// Continue after this position (newest `last_updated` first, then id descending).
    pub after: Option<PagePosition>,
}

/// A page of objects, newest first.
#[derive(Clone, Debug, Default)]
pub struct ObjectPage {
    /// The objects.
    pub items: Vec<StoredObject>,
    /// Total number of matches, all pages together.
    pub total: u64,
    /// Where the next page starts, if there is one.
    pub next: Option<PagePosition>,
}

/// A page of ids, newest first (summary search).
#[derive(Clone, Debug, Default)]
pub struct IdPage {
    /// The ids.
    pub ids: Vec<ObjectId>,
    /// Total number of matches.
    pub total: u64,
    /// Where the next page starts.
    pub next: Option<PagePosition>,
}

/// A timeline query: a customer's requests, activities and details, newest `created` first.
#[derive(Clone, Debug)]
pub struct TimelineQuery {
    /// The customer.
    pub customer_id: ObjectId,
    /// Only activities of this channel.
    pub media_type: Option<MediaType>,
    /// Page size.
    pub limit: usize,
    /// Continue after this (created, id) position.
    pub after: Option<PagePosition>,
}

/// An organization.
#[derive(Clone, Debug, PartialEq)]
pub struct OrgRecord {
    /// Id.
    pub id: OrgId,
    /// Unique name.
    pub name: String,
    /// Created.
    pub created: DateTime<Utc>,
}

/// An API key as stored: only the SHA-256 of its secret.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiKeyRecord {
    /// Key id (the public part of the token).
    pub id: Uuid,
    /// Org and partition the key is bound to.
    pub scope: Scope,
    /// Display name.
    pub name: String,
    /// Role granted.
    pub role: Role,
    /// SHA-256 of the secret part of the token.
    pub secret_hash: [u8; 32],
    /// Created.
    pub created: DateTime<Utc>,
    /// Optional expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A person who signs in with name and password (Argon2id hash).
#[derive(Clone, Debug, PartialEq)]
pub struct UserRecord {
    /// User id.
    pub id: Uuid,
    /// Org and partition the user belongs to.
    pub scope: Scope,
    /// Sign-in name, unique in its scope.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Created.
    pub created: DateTime<Utc>,
    /// Disabled users can't sign in.
    pub disabled: bool,
}

/// A sign-in session of the web pages; only the SHA-256 of the session secret is stored.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionRecord {
    /// SHA-256 of the session cookie's secret.
    pub secret_hash: [u8; 32],
    /// The user.
    pub user_id: Uuid,
    /// The user's scope.
    pub scope: Scope,
    /// The user's role at sign-in (kept for the record: requests take the role from the
    /// user, so a role change applies to existing sessions at once).
    pub role: Role,
    /// SHA-256 of the CSRF token that must accompany unsafe requests.
    pub csrf_hash: [u8; 32],
    /// Created.
    pub created: DateTime<Utc>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// Revocation (sign-out) time.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A change to a user: each member set replaces the stored value, the others are kept.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UserChange {
    /// New role.
    pub role: Option<Role>,
    /// New Argon2id PHC string.
    pub password_hash: Option<String>,
    /// Disable or enable.
    pub disabled: Option<bool>,
    /// Also revoke, in the same transaction, every unrevoked session of the user at this time.
    pub end_sessions_at: Option<DateTime<Utc>>,
}

/// An admin's grant letting a partner principal see ENCRYPTED and PII values until it expires.
#[derive(Clone, Debug, PartialEq)]
pub struct GrantRecord {
    /// Grant id.
    pub id: Uuid,
    /// Scope of the grant (the partner's).
    pub scope: Scope,
    /// The partner's key or user id.
    pub principal: Uuid,
    /// Who granted it.
    pub granted_by: Uuid,
    /// Created.
    pub created: DateTime<Utc>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// Revocation time.
    pub revoked_at: Option<DateTime<Utc>>,
}

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

/// A lab flush job.
#[derive(Clone, Debug, PartialEq)]
pub struct FlushJob {
    /// Job id.
    pub id: Uuid,
    /// Scope flushed.
    pub scope: Scope,
    /// Kind flushed.
    pub kind: Kind,
    /// Finished?
    pub completed: bool,
    /// Objects deleted.
    pub flushed: u64,
    /// Human-readable status.
    pub message: String,
    /// Started.
    pub created: DateTime<Utc>,
}

/// The data database. Implemented by `contextd-store-sqlite` and `contextd-store-postgres`,
/// held to the same behaviour by the conformance suite.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name for logs and status (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;

    /// Checks the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    // Organizations and credentials.

    /// Creates an org; `AlreadyExists` if the name is taken.
    async fn create_org(&self, org: &OrgRecord) -> Result<(), StoreError>;
    /// Finds an org by name.
    async fn org_by_name(&self, name: &str) -> Result<Option<OrgRecord>, StoreError>;
    /// Number of orgs (zero on a new database).
    async fn count_orgs(&self) -> Result<u64, StoreError>;
    /// Every org, by name (byte order).
    async fn orgs(&self) -> Result<Vec<OrgRecord>, StoreError>;
    /// Stores a new API key.
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    /// Reads an API key by id (any org: the token names it).
    async fn api_key(&self, id: Uuid) -> Result<Option<ApiKeyRecord>, StoreError>;

    // Dictionary (per org, shared by both partitions). Every change bumps the org's
    // dictionary version in its own transaction; a change given `unused` tokens is refused
    // with `InUse` if any object of the org carries one of them when it commits (checked so
    // that no concurrent object write slips in between).

    /// The org's dictionary version (0 before any change). Read it before the definitions.
    async fn dictionary_version(&self, org: OrgId) -> Result<u64, StoreError>;
    /// Custom fields of the org.
    async fn fields(&self, org: OrgId) -> Result<Vec<Field>, StoreError>;
    /// Inserts (`create = true`, `AlreadyExists` if present) or replaces (`NotFound` if absent) a field.
    async fn put_field(
        &self,
        org: OrgId,
        field: &Field,
        create: bool,
        unused: &[Token],
    ) -> Result<(), StoreError>;
    /// Deletes a field; `NotFound` if absent.
    async fn delete_field(&self, org: OrgId, id: &str, unused: &[Token]) -> Result<(), StoreError>;
    /// Custom field sets of the org.
    async fn fieldsets(&self, org: OrgId) -> Result<Vec<FieldSet>, StoreError>;
    /// Inserts or replaces a field set, as `put_field`.
    async fn put_fieldset(
        &self,
        org: OrgId,
        set: &FieldSet,
        create: bool,
        unused: &[Token],
    ) -> Result<(), StoreError>;
    /// Deletes a field set; `NotFound` if absent.
    async fn delete_fieldset(
        &self,
        org: OrgId,
        id: &str,
        unused: &[Token],
    ) -> Result<(), StoreError>;
    /// Whether any object of the org (either partition) carries any of these tokens.
    async fn any_token_in_use(&self, org: OrgId, tokens: &[Token]) -> Result<bool, StoreError>;

    // Context objects.

    /// Inserts or updates one object with its tokens, atomically, durable when it returns.
    async fn write_object(&self, write: &ObjectWrite) -> Result<(), StoreError>;
    /// Writes several objects in one transaction: all of them, or (on any error) none. Used
    /// when an object moves to another customer and its linked objects move with it.
    async fn write_objects(&self, writes: &[ObjectWrite]) -> Result<(), StoreError>;
    /// Reads one object of any kind in scope.
    async fn object(&self, scope: Scope, id: ObjectId) -> Result<Option<StoredObject>, StoreError>;
    /// Deletes one object (and its tokens); `NotFound` if absent.
    async fn delete_object(&self, scope: Scope, id: ObjectId) -> Result<(), StoreError>;
    /// Searches, returning whole objects.
    async fn search(&self, scope: Scope, plan: &SearchPlan) -> Result<ObjectPage, StoreError>;
    /// Searches, returning ids only.
    async fn search_ids(&self, scope: Scope, plan: &SearchPlan) -> Result<IdPage, StoreError>;
    /// A customer's journey, newest `created` first.
    async fn timeline(&self, scope: Scope, query: &TimelineQuery)
        -> Result<ObjectPage, StoreError>;
    /// Closes every active request (all orgs) untouched since before `cutoff`; returns how many.
    async fn close_stale_requests(
        &self,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// Deletes every object of a kind in scope; returns how many.
    async fn flush(&self, scope: Scope, kind: Kind) -> Result<u64, StoreError>;
    /// Inserts or replaces a flush job's status.
    async fn put_flush_job(&self, job: &FlushJob) -> Result<(), StoreError>;
    /// Reads a flush job in scope.
    async fn flush_job(&self, scope: Scope, id: Uuid) -> Result<Option<FlushJob>, StoreError>;

    // People, sessions, grants and audit.

    /// Lists the API keys of a scope (hashes included; callers must not show them).
    async fn api_keys(&self, scope: Scope) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Revokes an API key of the scope at `at`; `NotFound` if absent or already revoked.
    async fn revoke_api_key(
        &self,
        scope: Scope,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Creates a user; `AlreadyExists` if the name is taken in the scope.
    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// A user by name within a scope.
    async fn user_by_name(
        &self,
        scope: Scope,
        name: &str,
    ) -> Result<Option<UserRecord>, StoreError>;
    /// A user by id (any scope).
    async fn user(&self, id: Uuid) -> Result<Option<UserRecord>, StoreError>;
    /// The users of a scope, by name.
    async fn users(&self, scope: Scope) -> Result<Vec<UserRecord>, StoreError>;
    /// Stores a new session.
    async fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError>;
    /// A session by the hash of its secret.
    async fn session(&self, secret_hash: [u8; 32]) -> Result<Option<SessionRecord>, StoreError>;
    /// Revokes a session; `NotFound` if absent.
    async fn revoke_session(
        &self,
        secret_hash: [u8; 32],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Applies `change` to a user of the scope in one transaction and returns the user as
    /// changed. `NotFound` if the scope has no such user; `LastAdmin` if the user is an enabled
    /// admin and the change would leave the scope without any (concurrent changes included).
    async fn update_user(
        &self,
        scope: Scope,
        id: Uuid,
        change: &UserChange,
    ) -> Result<UserRecord, StoreError>;
    /// Deletes a user of the scope and all of the user's sessions, in one transaction.
    /// `NotFound` and `LastAdmin` as [`Store::update_user`].
    async fn delete_user(&self, scope: Scope, id: Uuid) -> Result<(), StoreError>;
    /// Revokes every unrevoked session of a user of the scope at `at`; returns how many.
    async fn revoke_user_sessions(
        &self,
        scope: Scope,
        user_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// Stores a grant.
    async fn insert_grant(&self, grant: &GrantRecord) -> Result<(), StoreError>;
    /// Whether the principal holds a grant in scope that is unrevoked and unexpired at `now`.
    async fn has_active_grant(
        &self,
        scope: Scope,
        principal: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Revokes a grant of the scope; `NotFound` if absent or already revoked.
    async fn revoke_grant(
        &self,
        scope: Scope,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Appends audit entries (one transaction).
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError>;
    /// Reads the audit log of a scope, newest first.
    async fn audit(&self, scope: Scope, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
    /// Up to `limit` objects whose `key_version` is between 1 and `below - 1` (sealed under an
    /// older partition data key), any order.
    async fn objects_to_reseal(
        &self,
        scope: Scope,
        below: u32,
        limit: usize,
    ) -> Result<Vec<StoredObject>, StoreError>;
    /// How many objects [`Store::objects_to_reseal`] would return without a limit.
    async fn count_objects_to_reseal(&self, scope: Scope, below: u32) -> Result<u64, StoreError>;
    /// Replaces an object's sealed values and `key_version` without changing its version or
    /// times (re-encryption is not a client write); `VersionConflict` if the object changed.
    async fn reseal_object(
        &self,
        scope: Scope,
        id: ObjectId,
        expected_version: i64,
        sealed: &BTreeMap<String, Vec<u8>>,
        key_version: u32,
    ) -> Result<(), StoreError>;
    /// Erases a customer, idempotently. The first call deletes the customer and every object
    /// whose `customer_id` is it (with their tokens) and records the erasure, in one
    /// transaction; a later call (a retry, perhaps of a half-done erase) finds that record and
    /// changes nothing. `NotFound` if there is neither the customer nor a record of its erasure.
    async fn erase_customer(&self, scope: Scope, customer: ObjectId)
        -> Result<Erasure, StoreError>;
    /// Marks a recorded erasure completed (the customer's key is destroyed).
    async fn complete_erasure(&self, scope: Scope, customer: ObjectId) -> Result<(), StoreError>;
    /// Up to `limit` recorded erasures (all orgs) not yet completed, oldest first.
    async fn pending_erasures(&self, limit: usize) -> Result<Vec<(Scope, ObjectId)>, StoreError>;
}

/// Partition keys as stored in the key store: wrapped, never in the clear.
#[derive(Clone, Debug, PartialEq)]
pub struct WrappedKey {
    /// Version of the key (data keys rotate; index keys and customer keys do not).
    pub version: u32,
    /// Version of the wrapping key (the KEK for partition keys, the partition data key for
    /// customer keys).
    pub wrapped_by: u32,
    /// nonce ‖ ciphertext ‖ tag.
    pub bytes: Vec<u8>,
}

/// The key store: wrapped keys, kept in a database apart from the data so that a copy of the
/// data alone decrypts nothing.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// A short name for logs and status (`sqlite`, `postgres`, `memory`).
    fn backend(&self) -> &'static str;
    /// Checks the key store answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// The partition's data keys, all versions, ascending.
    async fn data_keys(&self, scope: Scope) -> Result<Vec<WrappedKey>, StoreError>;
    /// Adds a data key version; `AlreadyExists` if that version exists, `KeysChanged` if the
    /// partition's data or index keys are wrapped by another kind of key-encryption key
    /// (`wrapped_by`) than this one (the partition was re-wrapped since the caller read it).
    /// Checked and written in one transaction, serialized with
    /// [`KeyStore::replace_partition_keys`] of the same partition.
    async fn insert_data_key(&self, scope: Scope, key: &WrappedKey) -> Result<(), StoreError>;
    /// The partition's blind-index key.
    async fn index_key(&self, scope: Scope) -> Result<Option<WrappedKey>, StoreError>;
    /// Sets the blind-index key; `AlreadyExists` if one is set (first writer wins).
    async fn insert_index_key(&self, scope: Scope, key: &WrappedKey) -> Result<(), StoreError>;
    /// A customer's own data key.
    async fn customer_key(
        &self,
        scope: Scope,
        customer: ObjectId,
    ) -> Result<Option<WrappedKey>, StoreError>;
    /// Stores a customer's key; `AlreadyExists` if one is set.
    async fn insert_customer_key(
        &self,
        scope: Scope,
        customer: ObjectId,
        key: &WrappedKey,
    ) -> Result<(), StoreError>;
    /// Destroys a customer's key (crypto-shredding); `NotFound` if absent.
    async fn delete_customer_key(&self, scope: Scope, customer: ObjectId)
        -> Result<(), StoreError>;
    /// Up to `limit` customer keys wrapped by a data-key version below `version`.
    async fn customer_keys_wrapped_before(
        &self,
        scope: Scope,
        version: u32,
        limit: usize,
    ) -> Result<Vec<(ObjectId, WrappedKey)>, StoreError>;
    /// How many customer keys are wrapped by a data-key version below `version`.
    async fn count_customer_keys_wrapped_before(
        &self,
        scope: Scope,
        version: u32,
    ) -> Result<u64, StoreError>;
    /// Replaces a customer's wrapped key (re-wrapping); `NotFound` if absent (erased meanwhile).
    async fn replace_customer_key(
        &self,
        scope: Scope,
        customer: ObjectId,
        key: &WrappedKey,
    ) -> Result<(), StoreError>;
    /// Replaces all of a partition's wrapped data keys and its index key in one transaction
    /// (re-wrapping under another key-encryption key), provided the stored data keys are
    /// exactly `expected` (as read by the caller, in any order); otherwise `KeysChanged` and
    /// nothing changes, so that a data-key version added meanwhile is never lost.
    async fn replace_partition_keys(
        &self,
        scope: Scope,
        expected: &[WrappedKey],
        data: &[WrappedKey],
        index: &WrappedKey,
    ) -> Result<(), StoreError>;
    /// Every scope that has keys.
    async fn scopes(&self) -> Result<Vec<Scope>, StoreError>;
}

/// Whether the data keys a key store holds are exactly those a caller read (any order): the
/// check of [`KeyStore::replace_partition_keys`], shared by the backends.
pub fn same_key_set(stored: &[WrappedKey], expected: &[WrappedKey]) -> bool {
    stored.len() == expected.len() && expected.iter().all(|e| stored.contains(e))
}

/// Why [`KeyStore::insert_data_key`] must refuse `key`, given the partition's stored data
/// keys and index key, if it must: the rule shared by the backends.
pub fn data_key_insert_conflict(
    stored: &[WrappedKey],
    index: Option<&WrappedKey>,
    key: &WrappedKey,
) -> Option<StoreError> {
    if stored.iter().any(|k| k.version == key.version) {
        Some(StoreError::AlreadyExists)
    } else if stored
        .iter()
        .chain(index)
        .any(|k| k.wrapped_by != key.wrapped_by)
    {
        Some(StoreError::KeysChanged)
    } else {
        None
    }
}

/// Whether a partition allows deletes and flushes.
pub fn deletes_allowed(partition: Partition) -> bool {
    partition == Partition::Lab
}

/// Encodes sealed values for storage in one binary column:
/// repeated `[u16 BE name length][name][u32 BE value length][value]`.
pub fn encode_sealed(sealed: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(sealed.iter().map(|(k, v)| 6 + k.len() + v.len()).sum());
    for (name, value) in sealed {
        // Field ids are at most 100 bytes and objects at most 256 KB, so the casts cannot truncate.
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
    out
}

/// Decodes what [`encode_sealed`] wrote; a corrupt column is a backend error, never a panic.
pub fn decode_sealed(mut bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], StoreError> {
        if bytes.len() < n {
            return Err(StoreError::Backend("corrupt sealed column".into()));
        }
        let (head, tail) = bytes.split_at(n);
        *bytes = tail;
        Ok(head)
    }
    let mut out = BTreeMap::new();
    while !bytes.is_empty() {
        let len = take(&mut bytes, 2)?;
        let name_len = u16::from_be_bytes([len[0], len[1]]) as usize;
        let name = std::str::from_utf8(take(&mut bytes, name_len)?)
            .map_err(|_| StoreError::Backend("corrupt sealed column".into()))?
            .to_owned();
        let len = take(&mut bytes, 4)?;
        let value_len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        out.insert(name, take(&mut bytes, value_len)?.to_vec());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_encoding_round_trips_and_rejects_garbage() {
        let m = BTreeMap::from([
            ("a".to_owned(), vec![1, 2, 3]),
            ("Context_ZIP".to_owned(), vec![]),
        ]);
        assert_eq!(decode_sealed(&encode_sealed(&m)).ok(), Some(m));
        assert!(decode_sealed(&[0, 5, b'a']).is_err());
    }
}
