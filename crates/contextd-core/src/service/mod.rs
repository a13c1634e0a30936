//! The context service: every operation on objects, the dictionary and organizations, with
//! every rule of the object model applied once, here, for all APIs and all backends.
//!
//! One room per concern, each an `impl Context` of its own: `access` (people, sessions, API
//! keys, grants, the audit log, erase and export), `batch` (many objects in one write, and
//! imports), `orgs` (organizations and credentials),
//! `fields` (the dictionary service), `objects` (the operations clients call), `writes`
//! (drafting, sealing, moving linked objects, writing), `reveal` (decrypting for a caller,
//! withholding, auditing what a response reveals), `encode` (a timeline page written from its
//! stored rows straight into the response's JSON) and `encryption` (rotation, re-encryption,
//! the start-up key check). This file holds the shared types.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::audit::AuditLog;
use crate::auth::{self, Principal, PrincipalKind, Role};
use crate::crypto::{normalize, Keyring, ObjectKeys, PartitionCheck};
use crate::dictionary::{self, Dictionary, DictionaryCache, Field, FieldSet};
use crate::error::{CoreError, FieldError};
use crate::ids::{truncate, ObjectId, OrgId, Partition, Scope};
use crate::object::{ContextObject, DetailType, Kind, MediaType, State, MAX_OBJECT_BYTES};
use crate::search::{self, SealedAccess, SearchRequest};
use crate::store::{
    deletes_allowed, ApiKeyRecord, Change, Condition, FlushJob, ObjectPage, ObjectWrite, OrgRecord,
    PagePosition, ParentCheck, RawObject, SearchPlan, Store, StoreError, StoredObject,
    TimelineQuery, Token,
};
use crate::time::now_ms;
use contextd_proto::events::EventType;

pub use contextd_proto::object::{
    FlushStatus, ObjectInput, ObjectPatch, SearchResult, TimelinePage,
};

/// Most tags on one object.
pub const MAX_TAGS: usize = 100;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 256;
/// How often a `PATCH` without `If-Match` retries after losing a race with another writer.
const PATCH_RETRIES: usize = 64;

/// Service settings.
#[derive(Clone, Debug)]
pub struct ContextConfig {
    /// A request with no write to it or its activities for this long is closed.
    pub request_autoclose: chrono::Duration,
    /// How many customer keys to keep unwrapped in memory.
    pub cached_customer_keys: usize,
    /// Bounds of one search.
    pub search_limits: search::SearchLimits,
    /// A connector that has not fetched a token for this long is shown as `stale`.
    pub connector_stale_after: chrono::Duration,
}

impl Default for ContextConfig {
    fn default() -> Self {
        Self {
            request_autoclose: chrono::Duration::days(5),
            cached_customer_keys: 100_000,
            search_limits: search::SearchLimits::default(),
            connector_stale_after: chrono::Duration::days(1),
        }
    }
}

impl From<FlushJob> for FlushStatus {
    fn from(j: FlushJob) -> Self {
        Self {
            id: j.id,
            kind: j.kind,
            completed: j.completed,
            flushed: j.flushed,
            message: j.message,
        }
    }
}

/// What a new organization gets, printed once.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgBootstrap {
    /// The org.
    pub org_id: OrgId,
    /// Its name.
    pub name: String,
    /// Admin API key of the lab partition.
    pub lab_admin_token: String,
    /// Admin API key of the production partition.
    pub production_admin_token: String,
    /// Base64 connectionData for components (README, "Rust SDK").
    pub connection_data: String,
}

/// The context service. Cheap to share (`Arc`).
pub struct Context {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) keys: Keyring,
    dictionaries: DictionaryCache,
    config: ContextConfig,
    pub(crate) audit: AuditLog,
    /// API keys and sessions between requests, where the store has a change feed.
    pub(crate) credentials: credential_cache::CredentialCache,
    /// Why the last re-encryption run failed, per partition that failed.
    reencrypt_failures: std::sync::Mutex<std::collections::HashMap<Scope, String>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("backend", &self.store.backend())
            .finish()
    }
}

/// An object in the making: the plaintext view plus what the store needs.
#[derive(Clone)]
struct Draft {
    object: ContextObject,
    parent_check: Option<ParentCheck>,
    /// The customer the object newly links to (checked again inside the write's transaction).
    customer_check: Option<ObjectId>,
    /// Linked objects that move with it to its new customer: their new plaintext state and
    /// the version it replaces.
    moved: Vec<(ContextObject, i64)>,
    /// What the write changes, for the outbox.
    event_type: EventType,
    /// An import restoring history (see [`crate::store::Change::history`]).
    history: bool,
}

/// Most linked objects that can move with a request or activity in one write.
pub const MAX_MOVED: usize = 10_000;

/// What a response reveals: owner (the customer, or the object itself when it has none) →
/// its kind, the sealed fields shown, and how many objects.
#[derive(Default)]
pub(crate) struct Revealed(BTreeMap<ObjectId, (Kind, BTreeSet<String>, usize)>);

impl Revealed {
    /// Whether the response shows no sealed value.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Notes that an object's sealed `fields` are shown (nothing when there are none).
    pub(crate) fn add(
        &mut self,
        kind: Kind,
        id: ObjectId,
        customer: Option<ObjectId>,
        fields: impl IntoIterator<Item = String>,
    ) {
        let mut fields = fields.into_iter().peekable();
        if fields.peek().is_none() {
            return;
        }
        let (kind, owner) = match (kind, customer) {
            (Kind::Customer, _) => (Kind::Customer, id),
            (_, Some(c)) => (Kind::Customer, c),
            (kind, None) => (kind, id),
        };
        let entry = self
            .0
            .entry(owner)
            .or_insert_with(|| (kind, BTreeSet::new(), 0));
        entry.1.extend(fields);
        entry.2 += 1;
    }
}

pub(super) fn parse_opt<T: std::str::FromStr<Err: std::fmt::Display>>(
    field: &str,
    value: Option<&str>,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    value.and_then(|v| match v.parse::<T>() {
        Ok(t) => Some(t),
        Err(e) => {
            errors.push(FieldError::new(field, e.to_string()));
            None
        }
    })
}

pub(super) fn parse_id(
    field: &str,
    value: Option<&str>,
    errors: &mut Vec<FieldError>,
) -> Option<ObjectId> {
    value.and_then(|v| match ObjectId::parse(v) {
        Ok(id) => Some(id),
        Err(_) => {
            errors.push(FieldError::new(field, "not a valid object id"));
            None
        }
    })
}

pub(super) fn not_found(kind: Kind, id: ObjectId) -> CoreError {
    CoreError::NotFound(format!("no {kind} with id {id}"))
}

pub mod access;
pub mod batch;
pub mod connectors;
mod credential_cache;
mod encode;
mod encryption;
pub mod events;
mod fields;
mod objects;
mod orgs;
mod retention;
mod reveal;
mod settings;
pub mod webhooks;
mod writes;

pub use encryption::{EncryptionStatus, KeyCheck};
pub use retention::{RetentionReport, RETENTION_PAGE};
use reveal::hide_withheld;

impl Context {
    /// A service over a data store and a key store.
    pub fn new(store: Arc<dyn Store>, keys: Keyring, config: ContextConfig) -> Self {
        let audit = AuditLog::start(store.clone());
        let credentials = credential_cache::CredentialCache::new(store.credential_changes());
        Self {
            store,
            keys,
            dictionaries: DictionaryCache::new(4096),
            config,
            audit,
            credentials,
            reencrypt_failures: std::sync::Mutex::default(),
        }
    }

    /// The data store (for status checks).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Credential lookups answered from memory and lookups that read the store, since start
    /// (both zero on stores without a change feed).
    pub fn credential_cache_counts(&self) -> (u64, u64) {
        self.credentials.counts()
    }

    /// The keyring (for status checks).
    pub fn keyring(&self) -> &Keyring {
        &self.keys
    }

    /// The auto-close cutoff: requests untouched since before it count as closed.
    fn autoclose_cutoff(&self) -> DateTime<Utc> {
        now_ms() - self.config.request_autoclose
    }
}
