//! The context service: every operation on objects, the dictionary and organizations, with
//! every rule of §2 applied once, here, for all APIs and all backends.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
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
    deletes_allowed, ApiKeyRecord, Condition, FlushJob, ObjectWrite, OrgRecord, PagePosition,
    ParentCheck, SearchPlan, Store, StoreError, StoredObject, TimelineQuery, Token,
};
use crate::time::now_ms;

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
}

impl Default for ContextConfig {
    fn default() -> Self {
        Self {
            request_autoclose: chrono::Duration::days(5),
            cached_customer_keys: 100_000,
            search_limits: search::SearchLimits::default(),
        }
    }
}

/// The body of a create (`POST`) or replace (`PUT`).
///
/// Read-only properties (`id`, `created`, `lastUpdated`, `contributors`, `withheld`) are
/// accepted so that a client can send back the object it read; they are ignored.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectInput {
    /// Must match the path's kind if given.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Owning customer (required for requests).
    #[schema(value_type = Option<String>, format = Uuid)]
    pub customer_id: Option<String>,
    /// Parent request (activities) or request/activity (details, required).
    #[schema(value_type = Option<String>, format = Uuid)]
    pub parent_id: Option<String>,
    /// `active` (default) or `closed`.
    pub state: Option<String>,
    /// Required for activities.
    pub media_type: Option<String>,
    /// Required for details.
    pub detail_type: Option<String>,
    /// Field sets `data` draws from.
    #[serde(default)]
    pub fieldsets: Vec<String>,
    /// Field id → value.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: BTreeMap<String, serde_json::Value>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Required on `PUT` unless `If-Match` is sent: the version read.
    pub version: Option<i64>,
    /// Ignored (read-only).
    #[schema(value_type = Option<String>)]
    pub id: Option<serde_json::Value>,
    /// Ignored (read-only).
    #[schema(value_type = Option<String>)]
    pub created: Option<serde_json::Value>,
    /// Ignored (read-only).
    #[schema(value_type = Option<String>)]
    pub last_updated: Option<serde_json::Value>,
    /// Ignored (read-only).
    #[schema(value_type = Option<Object>)]
    pub contributors: Option<serde_json::Value>,
    /// Ignored (read-only).
    #[schema(value_type = Option<Object>)]
    pub withheld: Option<serde_json::Value>,
}

/// A JSON merge patch (RFC 7396) of an object: `data` keys merge (null removes), the other
/// members replace. Allowed members: `data`, `tags`, `state`, `parentId`, `customerId`,
/// `fieldsets`, and `version` (a concurrency check like `If-Match`).
pub type ObjectPatch = serde_json::Map<String, serde_json::Value>;

/// A page of search results.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchResult {
    /// Whole objects (omitted when `summary`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<ContextObject>>,
    /// Ids (only when `summary`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub ids: Option<Vec<ObjectId>>,
    /// All matches.
    pub total: u64,
    /// Cursor of the next page, if any.
    pub next_cursor: Option<String>,
}

/// A page of a customer's journey.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimelinePage {
    /// Requests, activities and details, newest first.
    pub items: Vec<ContextObject>,
    /// All entries.
    pub total: u64,
    /// Cursor of the next page.
    pub next_cursor: Option<String>,
}

/// Status of a lab flush.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlushStatus {
    /// Job id.
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// Kind flushed.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// Finished?
    pub completed: bool,
    /// Objects deleted.
    pub flushed: u64,
    /// Status text.
    pub message: String,
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
    /// Base64 connectionData for components (§7).
    pub connection_data: String,
}

/// The context service. Cheap to share (`Arc`).
pub struct Context {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) keys: Keyring,
    dictionaries: DictionaryCache,
    config: ContextConfig,
    pub(crate) audit: AuditLog,
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
struct Draft {
    object: ContextObject,
    parent_check: Option<ParentCheck>,
    /// The customer the object newly links to (checked again inside the write's transaction).
    customer_check: Option<ObjectId>,
    /// Linked objects that move with it to its new customer: their new plaintext state and
    /// the version it replaces.
    moved: Vec<(ContextObject, i64)>,
}

/// Most linked objects that can move with a request or activity in one write.
pub const MAX_MOVED: usize = 10_000;

/// What a response reveals: owner (the customer, or the object itself when it has none) →
/// its kind, the sealed fields shown, and how many objects.
#[derive(Default)]
pub(crate) struct Revealed(BTreeMap<ObjectId, (Kind, BTreeSet<String>, usize)>);

impl Revealed {
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

fn parse_opt<T: std::str::FromStr<Err = CoreError>>(
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

fn parse_id(field: &str, value: Option<&str>, errors: &mut Vec<FieldError>) -> Option<ObjectId> {
    value.and_then(|v| match ObjectId::parse(v) {
        Ok(id) => Some(id),
        Err(_) => {
            errors.push(FieldError::new(field, "not a valid object id"));
            None
        }
    })
}

fn not_found(kind: Kind, id: ObjectId) -> CoreError {
    CoreError::NotFound(format!("no {kind} with id {id}"))
}

impl Context {
    /// A service over a data store and a key store.
    pub fn new(store: Arc<dyn Store>, keys: Keyring, config: ContextConfig) -> Self {
        let audit = AuditLog::start(store.clone());
        Self {
            store,
            keys,
            dictionaries: DictionaryCache::new(4096),
            config,
            audit,
            reencrypt_failures: std::sync::Mutex::default(),
        }
    }

    /// The data store (for status checks).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The keyring (for status checks).
    pub fn keyring(&self) -> &Keyring {
        &self.keys
    }

    /// The auto-close cutoff: requests untouched since before it count as closed.
    fn autoclose_cutoff(&self) -> DateTime<Utc> {
        now_ms() - self.config.request_autoclose
    }

    // ----- organizations and credentials -----

    /// Creates an organization with admin keys for both partitions and connector credentials.
    pub async fn create_org(
        &self,
        name: &str,
        service_url: &str,
    ) -> Result<OrgBootstrap, CoreError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(CoreError::field(
                "name",
                "1–64 characters of A–Z, a–z, 0–9, '-', '_', '.'",
            ));
        }
        let taken = || CoreError::Conflict(format!("an organization named '{name}' exists"));
        if self.store.org_by_name(name).await?.is_some() {
            return Err(taken());
        }
        let org = OrgRecord {
            id: OrgId::new(),
            name: name.to_owned(),
            created: now_ms(),
        };
        // Keys first, so that no org ever exists without them (the start-up check refuses
        // such an org); a lost race for the name leaves only unused keys of an unused id.
        for partition in Partition::ALL {
            self.keys
                .create_partition_keys(Scope {
                    org: org.id,
                    partition,
                })
                .await?;
        }
        self.store.create_org(&org).await.map_err(|e| match e {
            StoreError::AlreadyExists => taken(),
            e => e.into(),
        })?;
        let mut admin = Vec::new();
        let mut machine = Vec::new();
        for partition in Partition::ALL {
            let scope = Scope {
                org: org.id,
                partition,
            };
            admin.push(
                self.create_api_key(scope, &format!("{partition} admin"), Role::Admin, None)
                    .await?,
            );
            let (id, token) = self
                .create_api_key(
                    scope,
                    &format!("{partition} connector"),
                    Role::Machine,
                    None,
                )
                .await?;
            machine.push((id, token));
        }
        let credentials = |i: usize| serde_json::json!({"clientId": machine[i].0.to_string(), "clientSecret": machine[i].1});
        let connection = serde_json::json!({
            "serviceUrl": service_url,
            "orgId": org.id,
            "credentials": credentials(1),
            "credentialsLabMode": credentials(0),
        });
        Ok(OrgBootstrap {
            org_id: org.id,
            name: org.name,
            lab_admin_token: admin[0].1.clone(),
            production_admin_token: admin[1].1.clone(),
            connection_data: STANDARD.encode(connection.to_string()),
        })
    }

    /// Whether the database holds no organization yet.
    pub async fn is_empty(&self) -> Result<bool, CoreError> {
        Ok(self.store.count_orgs().await? == 0)
    }

    /// Creates an API key; returns its id and the token (shown once).
    pub async fn create_api_key(
        &self,
        scope: Scope,
        name: &str,
        role: Role,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(Uuid, String), CoreError> {
        let minted = auth::mint_token();
        let record = ApiKeyRecord {
            id: minted.id,
            scope,
            name: name.to_owned(),
            role,
            secret_hash: minted.secret_hash,
            created: now_ms(),
            expires_at,
            revoked_at: None,
        };
        self.store.insert_api_key(&record).await?;
        Ok((minted.id, auth::reveal(&minted.token).to_owned()))
    }

    /// Resolves a bearer token to its principal, or refuses it.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, CoreError> {
        let (id, secret) = auth::parse_token(token)?;
        let denied = || CoreError::Unauthorized("unknown, revoked or expired credential".into());
        let key = self.store.api_key(id).await?.ok_or_else(denied)?;
        if !auth::secret_matches(secret, &key.secret_hash)
            || key.revoked_at.is_some()
            || key.expires_at.is_some_and(|t| t <= Utc::now())
        {
            return Err(denied());
        }
        self.with_grant(Principal {
            id: key.id,
            scope: key.scope,
            role: key.role,
            kind: PrincipalKind::ApiKey,
            granted: false,
        })
        .await
    }

    // ----- dictionary -----

    /// The org's dictionary (cached).
    pub async fn dictionary(&self, org: OrgId) -> Result<Arc<Dictionary>, CoreError> {
        if let Some(d) = self.dictionaries.get(org) {
            return Ok(d);
        }
        // The version first: definitions read after it are at least that new, so a write
        // naming it is refused if they changed since.
        let version = self.store.dictionary_version(org).await?;
        let d = Arc::new(
            Dictionary::new(
                self.store.fields(org).await?,
                self.store.fieldsets(org).await?,
            )
            .at_version(version),
        );
        self.dictionaries.insert(org, d.clone());
        Ok(d)
    }

    /// Every field, base and custom.
    pub async fn list_fields(&self, actor: &Principal) -> Result<Vec<Field>, CoreError> {
        Ok(self
            .dictionary(actor.scope.org)
            .await?
            .fields()
            .into_iter()
            .cloned()
            .collect())
    }

    /// One field.
    pub async fn get_field(&self, actor: &Principal, id: &str) -> Result<Field, CoreError> {
        self.dictionary(actor.scope.org)
            .await?
            .field(id)
            .cloned()
            .ok_or_else(|| CoreError::NotFound(format!("no field '{}'", truncate(id, 100))))
    }

    /// The token `token` makes in each partition of the org.
    async fn in_both_partitions(
        &self,
        org: OrgId,
        token: impl Fn(&crate::crypto::Indexer) -> Token,
    ) -> Result<Vec<Token>, CoreError> {
        let mut tokens = Vec::new();
        for partition in Partition::ALL {
            tokens.push(token(&self.keys.indexer(Scope { org, partition }).await?));
        }
        Ok(tokens)
    }

    /// Refuses a lab admin's change to a dictionary entry that production data uses: the
    /// dictionary is the organization's, but a lab credential must not break production.
    async fn guard_production(
        &self,
        actor: &Principal,
        what: &str,
        token: impl Fn(&crate::crypto::Indexer) -> Token,
    ) -> Result<(), CoreError> {
        if actor.scope.partition == Partition::Production {
            return Ok(());
        }
        let production = Scope {
            org: actor.scope.org,
            partition: Partition::Production,
        };
        let token = token(&self.keys.indexer(production).await?);
        if self
            .store
            .any_token_in_use(actor.scope.org, &[token])
            .await?
        {
            return Err(CoreError::Forbidden(format!(
                "production data uses {what}: only an admin of the production partition may change \
                 or delete it (lab admins may add fields and field sets, and change those production \
                 doesn't use)"
            )));
        }
        Ok(())
    }

    /// Creates (`existing = false`) or replaces a custom field.
    pub async fn put_field(
        &self,
        actor: &Principal,
        mut field: Field,
        path_id: Option<&str>,
    ) -> Result<Field, CoreError> {
        actor.require(&[Role::Admin])?;
        let org = actor.scope.org;
        if let Some(id) = path_id {
            if field.id != id {
                return Err(CoreError::field("id", "must match the id in the path"));
            }
        }
        field.base = false;
        dictionary::validate_field(&field)?;
        let dict = self.dictionary(org).await?;
        let current = dict.field(&field.id);
        if current.is_some_and(|f| f.base) {
            return Err(CoreError::Forbidden(format!(
                "'{}' is a built-in field and read-only",
                field.id
            )));
        }
        let mut unused = Vec::new();
        match (path_id, current) {
            (None, Some(_)) => {
                return Err(CoreError::Conflict(format!("field '{}' exists", field.id)))
            }
            (Some(_), None) => return Err(CoreError::NotFound(format!("no field '{}'", field.id))),
            (Some(_), Some(old)) => {
                let shape_changes = old.data_type != field.data_type
                    || old.classification != field.classification
                    || old.max_length != field.max_length
                    || old.enum_values != field.enum_values;
                if shape_changes {
                    let what = format!("field '{}'", field.id);
                    self.guard_production(actor, &what, |ix| ix.present(&field.id))
                        .await?;
                }
                if old.data_type != field.data_type || old.classification != field.classification {
                    // Checked here for a clear answer, and again as the change commits.
                    unused = self
                        .in_both_partitions(org, |ix| ix.present(&field.id))
                        .await?;
                    if self.store.any_token_in_use(org, &unused).await? {
                        return Err(type_locked(&field.id));
                    }
                }
            }
            (None, None) => {}
        }
        let result = self
            .store
            .put_field(org, &field, path_id.is_none(), &unused)
            .await;
        self.dictionaries.invalidate(org);
        result.map_err(|e| match e {
            StoreError::InUse => type_locked(&field.id),
            StoreError::AlreadyExists => {
                CoreError::Conflict(format!("field '{}' exists", field.id))
            }
            StoreError::NotFound => CoreError::NotFound(format!("no field '{}'", field.id)),
            e => e.into(),
        })?;
        let action = if path_id.is_none() {
            "field.create"
        } else {
            "field.update"
        };
        self.audit_action(
            Some(actor),
            actor.scope,
            action,
            Some((None, field.id.clone())),
            vec![],
            String::new(),
        )
        .await?;
        Ok(field)
    }

    /// Deletes a custom field unused by data and by field sets.
    pub async fn delete_field(&self, actor: &Principal, id: &str) -> Result<(), CoreError> {
        actor.require(&[Role::Admin])?;
        let org = actor.scope.org;
        let dict = self.dictionary(org).await?;
        let field = dict
            .field(id)
            .ok_or_else(|| CoreError::NotFound(format!("no field '{}'", truncate(id, 100))))?;
        if field.base {
            return Err(CoreError::Forbidden(format!(
                "'{id}' is a built-in field and read-only"
            )));
        }
        if let Some(set) = dict
            .fieldsets()
            .into_iter()
            .find(|s| s.fields.iter().any(|f| f == id))
        {
            return Err(CoreError::Conflict(format!(
                "field '{id}' belongs to field set '{}'",
                set.id
            )));
        }
        self.guard_production(actor, &format!("field '{id}'"), |ix| ix.present(id))
            .await?;
        let in_use = || CoreError::Conflict(format!("field '{id}' is used by stored data"));
        let unused = self.in_both_partitions(org, |ix| ix.present(id)).await?;
        if self.store.any_token_in_use(org, &unused).await? {
            return Err(in_use());
        }
        let result = self.store.delete_field(org, id, &unused).await;
        self.dictionaries.invalidate(org);
        result.map_err(|e| match e {
            StoreError::InUse => in_use(),
            StoreError::NotFound => CoreError::NotFound(format!("no field '{id}'")),
            e => e.into(),
        })?;
        self.audit_action(
            Some(actor),
            actor.scope,
            "field.delete",
            Some((None, id.to_owned())),
            vec![],
            String::new(),
        )
        .await?;
        Ok(())
    }

    /// Every field set, base and custom.
    pub async fn list_fieldsets(&self, actor: &Principal) -> Result<Vec<FieldSet>, CoreError> {
        Ok(self
            .dictionary(actor.scope.org)
            .await?
            .fieldsets()
            .into_iter()
            .cloned()
            .collect())
    }

    /// One field set.
    pub async fn get_fieldset(&self, actor: &Principal, id: &str) -> Result<FieldSet, CoreError> {
        self.dictionary(actor.scope.org)
            .await?
            .fieldset(id)
            .cloned()
            .ok_or_else(|| CoreError::NotFound(format!("no field set '{}'", truncate(id, 100))))
    }

    /// Creates or replaces a custom field set.
    pub async fn put_fieldset(
        &self,
        actor: &Principal,
        mut set: FieldSet,
        path_id: Option<&str>,
    ) -> Result<FieldSet, CoreError> {
        actor.require(&[Role::Admin])?;
        let org = actor.scope.org;
        if let Some(id) = path_id {
            if set.id != id {
                return Err(CoreError::field("id", "must match the id in the path"));
            }
        }
        set.base = false;
        let dict = self.dictionary(org).await?;
        dictionary::validate_fieldset(&set, &dict)?;
        match (path_id, dict.fieldset(&set.id)) {
            (_, Some(s)) if s.base => {
                return Err(CoreError::Forbidden(format!(
                    "'{}' is a built-in field set and read-only",
                    set.id
                )))
            }
            (None, Some(_)) => {
                return Err(CoreError::Conflict(format!(
                    "field set '{}' exists",
                    set.id
                )))
            }
            (Some(_), None) => {
                return Err(CoreError::NotFound(format!("no field set '{}'", set.id)))
            }
            (Some(_), Some(old))
                if old.fields != set.fields || old.inactive_fields != set.inactive_fields =>
            {
                let what = format!("field set '{}'", set.id);
                self.guard_production(actor, &what, |ix| ix.fieldset(&set.id))
                    .await?;
            }
            _ => {}
        }
        let result = self
            .store
            .put_fieldset(org, &set, path_id.is_none(), &[])
            .await;
        self.dictionaries.invalidate(org);
        result.map_err(|e| match e {
            StoreError::AlreadyExists => {
                CoreError::Conflict(format!("field set '{}' exists", set.id))
            }
            StoreError::NotFound => CoreError::NotFound(format!("no field set '{}'", set.id)),
            e => e.into(),
        })?;
        let action = if path_id.is_none() {
            "fieldset.create"
        } else {
            "fieldset.update"
        };
        self.audit_action(
            Some(actor),
            actor.scope,
            action,
            Some((None, set.id.clone())),
            vec![],
            String::new(),
        )
        .await?;
        Ok(set)
    }

    /// Deletes a custom field set no object declares.
    pub async fn delete_fieldset(&self, actor: &Principal, id: &str) -> Result<(), CoreError> {
        actor.require(&[Role::Admin])?;
        let org = actor.scope.org;
        let dict = self.dictionary(org).await?;
        let set = dict
            .fieldset(id)
            .ok_or_else(|| CoreError::NotFound(format!("no field set '{}'", truncate(id, 100))))?;
        if set.base {
            return Err(CoreError::Forbidden(format!(
                "'{id}' is a built-in field set and read-only"
            )));
        }
        self.guard_production(actor, &format!("field set '{id}'"), |ix| ix.fieldset(id))
            .await?;
        let in_use = || CoreError::Conflict(format!("field set '{id}' is used by stored objects"));
        let unused = self.in_both_partitions(org, |ix| ix.fieldset(id)).await?;
        if self.store.any_token_in_use(org, &unused).await? {
            return Err(in_use());
        }
        let result = self.store.delete_fieldset(org, id, &unused).await;
        self.dictionaries.invalidate(org);
        result.map_err(|e| match e {
            StoreError::InUse => in_use(),
            StoreError::NotFound => CoreError::NotFound(format!("no field set '{id}'")),
            e => e.into(),
        })?;
        self.audit_action(
            Some(actor),
            actor.scope,
            "fieldset.delete",
            Some((None, id.to_owned())),
            vec![],
            String::new(),
        )
        .await?;
        Ok(())
    }

    // ----- objects -----

    fn require_object_access(actor: &Principal) -> Result<(), CoreError> {
        actor.require(&[Role::Admin, Role::Agent, Role::Machine, Role::Partner])
    }

    /// Reads a stored object of the expected kind.
    async fn load(
        &self,
        scope: Scope,
        kind: Kind,
        id: ObjectId,
    ) -> Result<StoredObject, CoreError> {
        match self.store.object(scope, id).await? {
            Some(o) if o.kind == kind => Ok(o),
            _ => Err(not_found(kind, id)),
        }
    }

    fn effective_state(&self, o: &StoredObject) -> State {
        if o.kind == Kind::Request
            && o.state == State::Active
            && o.touched < self.autoclose_cutoff()
        {
            State::Closed
        } else {
            o.state
        }
    }

    /// Decrypts a page of objects (a search result, a timeline) for a caller, noting in
    /// `revealed` what it shows.
    async fn reveal_page(
        &self,
        actor: &Principal,
        objects: Vec<StoredObject>,
        revealed: &mut Revealed,
    ) -> Result<Vec<ContextObject>, CoreError> {
        let dict = self.dictionary(actor.scope.org).await?;
        let mut items = Vec::with_capacity(objects.len());
        for o in objects {
            items.push(self.reveal_as(actor, o, &dict, revealed).await?);
        }
        Ok(items)
    }

    /// Audits what a response reveals: one `pii.read` entry per customer whose sealed values
    /// it carries (objects without a customer: one each), durable before the response leaves,
    /// so a page of 100 activities is one audit row, not 100.
    pub(crate) async fn audit_revealed(
        &self,
        actor: &Principal,
        revealed: Revealed,
        via: &str,
    ) -> Result<(), CoreError> {
        self.audit_revealed_with(actor, revealed, via, None).await
    }

    /// [`Self::audit_revealed`], with one more entry of the same request in the same append.
    pub(crate) async fn audit_revealed_with(
        &self,
        actor: &Principal,
        revealed: Revealed,
        via: &str,
        also: Option<crate::store::AuditEntry>,
    ) -> Result<(), CoreError> {
        let mut entries: Vec<_> = also.into_iter().collect();
        entries.extend(revealed.0.into_iter().map(|(owner, (kind, fields, n))| {
            crate::access::audit_entry(
                Some(actor),
                actor.scope,
                "pii.read",
                Some((Some(kind), owner.to_string())),
                fields.into_iter().collect(),
                format!("{via}: {n} object{}", if n == 1 { "" } else { "s" }),
            )
        }));
        self.audit.record(entries).await
    }

    /// Decrypts for the caller (partners see sealed values withheld) and notes what it shows
    /// in `revealed`. A clear value of a field the dictionary now seals (written before a
    /// reclassification) is treated as sealed: withheld from partners, audited for others.
    async fn reveal_as(
        &self,
        actor: &Principal,
        o: StoredObject,
        dict: &Dictionary,
        revealed: &mut Revealed,
    ) -> Result<ContextObject, CoreError> {
        let state = self.effective_state(&o);
        let mut data = o.clear;
        let mut withheld = Vec::new();
        let mut shown: Vec<String> = data
            .keys()
            .filter(|k| dict.field(k).is_some_and(|f| f.classification.is_sealed()))
            .cloned()
            .collect();
        shown.extend(o.sealed.keys().cloned());
        if !actor.sees_sealed() {
            for name in shown {
                data.insert(name.clone(), serde_json::Value::Null);
                withheld.push(name);
            }
        } else {
            if !o.sealed.is_empty() {
                let keys = self.keys.object_keys(o.scope, o.customer_id).await?;
                for (name, sealed) in &o.sealed {
                    let plain = keys.open(o.id, name, sealed)?;
                    let value = serde_json::from_slice(&plain).map_err(|_| {
                        CoreError::Keys(format!("a value of object {} is corrupt", o.id))
                    })?;
                    data.insert(name.clone(), value);
                }
            }
            revealed.add(o.kind, o.id, o.customer_id, shown);
        }
        Ok(ContextObject {
            id: o.id,
            kind: o.kind,
            customer_id: o.customer_id,
            parent_id: o.parent_id,
            state,
            media_type: o.media_type,
            detail_type: o.detail_type,
            fieldsets: o.fieldsets,
            data,
            tags: o.tags,
            contributors: o.contributors,
            withheld,
            created: o.created,
            last_updated: o.last_updated,
            version: o.version,
        })
    }

    /// Seals, indexes and writes a draft (with the linked objects that move with it, in one
    /// transaction); returns the object as the client sees it. The write names the dictionary
    /// version its values were classified under; when the dictionary changed meanwhile (on
    /// this instance or another), the values are validated and sealed again under the new one.
    async fn persist(
        &self,
        actor: &Principal,
        draft: Draft,
        expected_version: Option<i64>,
        new_customer_key: Option<ObjectKeys>,
        via: &str,
    ) -> Result<ContextObject, CoreError> {
        const ATTEMPTS: usize = 4;
        let scope = actor.scope;
        let mut object = draft.object;
        let keys = match new_customer_key {
            Some(k) => k,
            None => self.keys.object_keys(scope, object.customer_id).await?,
        };
        let indexer = self.keys.indexer(scope).await?;
        let mut dict = self.dictionary(scope.org).await?;
        let mut attempt = 1;
        let sealed_fields = loop {
            let (stored, tokens) = seal(scope, &object, &dict, &keys, &indexer)?;
            if actor.sees_sealed() {
                // The answer carries the sealed values it writes: audited like a read, before
                // the write, so that a refused audit leaves nothing written.
                let mut revealed = Revealed::default();
                revealed.add(
                    object.kind,
                    object.id,
                    object.customer_id,
                    stored.sealed.keys().cloned(),
                );
                self.audit_revealed(actor, revealed, via).await?;
            }
            let sealed_fields: Vec<String> = stored.sealed.keys().cloned().collect();
            let mut writes = vec![ObjectWrite {
                object: stored,
                tokens,
                expected_version,
                parent_check: draft.parent_check,
                customer_check: draft.customer_check,
                dictionary_version: Some(dict.version()),
            }];
            for (linked, expected) in &draft.moved {
                let (stored, tokens) = seal(scope, linked, &dict, &keys, &indexer)?;
                writes.push(ObjectWrite {
                    object: stored,
                    tokens,
                    expected_version: Some(*expected),
                    parent_check: None,
                    customer_check: None,
                    dictionary_version: Some(dict.version()),
                });
            }
            let result = match writes.as_slice() {
                [one] => self.store.write_object(one).await,
                all => self.store.write_objects(all).await,
            };
            match result {
                Ok(()) => break sealed_fields,
                Err(StoreError::DictionaryChanged) if attempt < ATTEMPTS => {
                    attempt += 1;
                    self.dictionaries.invalidate(scope.org);
                    dict = self.dictionary(scope.org).await?;
                    object.data = dict.validate_data(&object.fieldsets, &object.data)?;
                }
                Err(e) => return Err(write_error(e, &object)),
            }
        };
        if !actor.sees_sealed() {
            for name in sealed_fields {
                object.data.insert(name.clone(), serde_json::Value::Null);
                object.withheld.push(name);
            }
        }
        Ok(object)
    }

    /// Builds and checks the new state of an object from client input; `existing` is the
    /// object being replaced (None on create).
    #[allow(clippy::too_many_arguments)]
    async fn draft(
        &self,
        actor: &Principal,
        kind: Kind,
        existing: Option<&ContextObject>,
        customer_id: Option<ObjectId>,
        parent_id: Option<ObjectId>,
        state: Option<State>,
        media_type: Option<MediaType>,
        detail_type: Option<DetailType>,
        fieldsets: Vec<String>,
        data: BTreeMap<String, serde_json::Value>,
        tags: Vec<String>,
        mut errors: Vec<FieldError>,
    ) -> Result<Draft, CoreError> {
        let scope = actor.scope;
        let id = existing.map(|e| e.id).unwrap_or_default();
        let mut customer_id = customer_id;
        let mut parent_check = None;
        let mut customer_check = None;
        let mut state = state.unwrap_or(State::Active);
        match kind {
            Kind::Customer => {
                if customer_id.is_some() {
                    errors.push(FieldError::new(
                        "customerId",
                        "a customer has no customerId",
                    ));
                }
                if parent_id.is_some() {
                    errors.push(FieldError::new("parentId", "a customer has no parent"));
                }
                customer_id = Some(id);
            }
            Kind::Request => {
                if parent_id.is_some() {
                    errors.push(FieldError::new("parentId", "a request has no parent"));
                }
                if customer_id.is_none() {
                    errors.push(FieldError::new(
                        "customerId",
                        "a request needs a customerId",
                    ));
                }
            }
            Kind::Activity => {
                if media_type.is_none() {
                    errors.push(FieldError::new(
                        "mediaType",
                        "an activity needs a mediaType",
                    ));
                }
            }
            Kind::Detail => {
                if parent_id.is_none() {
                    errors.push(FieldError::new(
                        "parentId",
                        "a detail needs a parentId (request or activity)",
                    ));
                }
                if detail_type.is_none() {
                    errors.push(FieldError::new(
                        "detailType",
                        "a detail needs a detailType (comment or feedback)",
                    ));
                }
                state = State::Closed;
            }
        }
        if kind != Kind::Activity && media_type.is_some() {
            errors.push(FieldError::new(
                "mediaType",
                format!("a {kind} has no mediaType"),
            ));
        }
        if kind != Kind::Detail && detail_type.is_some() {
            errors.push(FieldError::new(
                "detailType",
                format!("a {kind} has no detailType"),
            ));
        }
        if kind == Kind::Customer && state == State::Closed {
            errors.push(FieldError::new("state", "a customer can't be closed"));
        }
        let tags = clean_tags(tags, &mut errors);
        let dict = self.dictionary(scope.org).await?;
        let data = match dict.validate_data(&fieldsets, &data) {
            Ok(d) => d,
            Err(CoreError::Validation(more)) => {
                errors.extend(more);
                BTreeMap::new()
            }
            Err(e) => return Err(e),
        };
        if !errors.is_empty() {
            return Err(CoreError::Validation(errors));
        }
        // Links: the customer must exist; the parent must exist, be of the right kind and open.
        if kind != Kind::Customer {
            if let Some(parent) = parent_id {
                let moved = existing.is_none_or(|e| e.parent_id != Some(parent));
                let p = match self.store.object(scope, parent).await? {
                    Some(p) if kind == Kind::Detail || p.kind == Kind::Request => p,
                    Some(_) if kind == Kind::Activity => {
                        return Err(CoreError::field(
                            "parentId",
                            "the parent of an activity must be a request",
                        ))
                    }
                    _ => {
                        return Err(CoreError::field(
                            "parentId",
                            "no such parent in this partition",
                        ))
                    }
                };
                if p.kind == Kind::Customer || p.kind == Kind::Detail {
                    return Err(CoreError::field(
                        "parentId",
                        "the parent of a detail must be a request or an activity",
                    ));
                }
                if p.kind == Kind::Request && self.effective_state(&p) == State::Closed {
                    return Err(CoreError::Conflict("the parent request is closed".into()));
                }
                match (customer_id, p.customer_id) {
                    (None, inherited) => customer_id = inherited,
                    (Some(c), Some(pc)) if c != pc => {
                        return Err(CoreError::field(
                            "customerId",
                            "differs from the parent's customerId",
                        ))
                    }
                    _ => {}
                }
                if moved || p.kind == Kind::Request {
                    parent_check = Some(ParentCheck {
                        id: parent,
                        must_be_request: kind == Kind::Activity,
                        active_since: self.autoclose_cutoff(),
                    });
                }
            }
            if let Some(c) = customer_id {
                if existing.is_none_or(|e| e.customer_id != Some(c)) {
                    customer_check = Some(c);
                    match self.store.object(scope, c).await? {
                        Some(o) if o.kind == Kind::Customer => {}
                        _ => {
                            return Err(CoreError::field(
                                "customerId",
                                "no such customer in this partition",
                            ))
                        }
                    }
                }
            }
        }
        let now = now_ms();
        let me = actor.contributor();
        let (created, version, mut contributors) = match existing {
            Some(e) => (e.created, e.version + 1, e.contributors.clone()),
            None => (now, 1, Vec::new()),
        };
        if !contributors.contains(&me) {
            contributors.push(me);
        }
        let object = ContextObject {
            id,
            kind,
            customer_id,
            parent_id,
            state,
            media_type,
            detail_type,
            fieldsets,
            data,
            tags,
            contributors,
            withheld: Vec::new(),
            created,
            // lastUpdated never goes backwards, even if the clock does.
            last_updated: existing.map_or(now, |e| now.max(e.last_updated)),
            version,
        };
        let size = serde_json::to_vec(&object)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_OBJECT_BYTES {
            // The size counts values a partner is not shown: it must not learn theirs.
            return Err(CoreError::TooLarge(if actor.sees_sealed() {
                format!("the object is {size} bytes serialized; the maximum is {MAX_OBJECT_BYTES}")
            } else {
                format!(
                    "the object would exceed the maximum of {MAX_OBJECT_BYTES} bytes serialized"
                )
            }));
        }
        let moved = match existing {
            Some(e) if e.customer_id != object.customer_id => {
                self.moving_with(actor, &object).await?
            }
            _ => Vec::new(),
        };
        Ok(Draft {
            object,
            parent_check,
            customer_check,
            moved,
        })
    }

    /// The objects linked below a request or activity that moves to another customer (a
    /// request's activities and details, an activity's details), as they will be: linked to
    /// the new customer, one version on.
    async fn moving_with(
        &self,
        actor: &Principal,
        moving: &ContextObject,
    ) -> Result<Vec<(ContextObject, i64)>, CoreError> {
        let scope = actor.scope;
        let find = |kind: Kind, parents: Vec<ObjectId>| SearchPlan {
            kind,
            match_all: true,
            conditions: vec![Condition::ParentIds(parents)],
            created_from: None,
            created_to: None,
            updated_from: None,
            updated_to: None,
            not_exists: Vec::new(),
            limit: MAX_MOVED + 1,
            after: None,
        };
        let mut linked = Vec::new();
        let mut parents = vec![moving.id];
        if moving.kind == Kind::Request {
            let activities = self
                .store
                .search(scope, &find(Kind::Activity, parents.clone()))
                .await?;
            parents.extend(activities.items.iter().map(|a| a.id));
            linked.extend(activities.items);
        }
        if matches!(moving.kind, Kind::Request | Kind::Activity) {
            linked.extend(
                self.store
                    .search(scope, &find(Kind::Detail, parents))
                    .await?
                    .items,
            );
        }
        if linked.len() > MAX_MOVED {
            return Err(CoreError::Conflict(format!(
                "more than {MAX_MOVED} linked objects would move with this {}; move them in parts",
                moving.kind
            )));
        }
        // Read in full (a partner's move carries values it is not shown), to re-seal them
        // under the new customer's key.
        let reader = Principal {
            granted: true,
            ..actor.clone()
        };
        let dict = self.dictionary(scope.org).await?;
        let mut moved = Vec::with_capacity(linked.len());
        for o in linked {
            let mut object = self
                .reveal_as(&reader, o, &dict, &mut Revealed::default())
                .await?;
            let expected = object.version;
            object.customer_id = moving.customer_id;
            object.version += 1;
            object.last_updated = moving.last_updated.max(object.last_updated);
            moved.push((object, expected));
        }
        Ok(moved)
    }

    /// Creates an object.
    pub async fn create(
        &self,
        actor: &Principal,
        kind: Kind,
        input: ObjectInput,
    ) -> Result<ContextObject, CoreError> {
        Self::require_object_access(actor)?;
        let mut errors = Vec::new();
        if let Some(t) = &input.kind {
            if t.parse::<Kind>().ok() != Some(kind) {
                errors.push(FieldError::new("type", format!("must be '{kind}' here")));
            }
        }
        let customer_id = parse_id("customerId", input.customer_id.as_deref(), &mut errors);
        let parent_id = parse_id("parentId", input.parent_id.as_deref(), &mut errors);
        let state = parse_opt("state", input.state.as_deref(), &mut errors);
        let media_type = parse_opt("mediaType", input.media_type.as_deref(), &mut errors);
        let detail_type = parse_opt("detailType", input.detail_type.as_deref(), &mut errors);
        let draft = self
            .draft(
                actor,
                kind,
                None,
                customer_id,
                parent_id,
                state,
                media_type,
                detail_type,
                input.fieldsets,
                input.data,
                input.tags,
                errors,
            )
            .await?;
        let customer_key = if kind == Kind::Customer {
            Some(
                self.keys
                    .create_customer_key(actor.scope, draft.object.id)
                    .await?,
            )
        } else {
            None
        };
        self.persist(actor, draft, None, customer_key, "create")
            .await
    }

    /// Reads an object.
    pub async fn get(
        &self,
        actor: &Principal,
        kind: Kind,
        id: ObjectId,
    ) -> Result<ContextObject, CoreError> {
        let mut revealed = Revealed::default();
        let object = self.get_into(actor, kind, id, &mut revealed).await?;
        self.audit_revealed(actor, revealed, "read").await?;
        Ok(object)
    }

    /// Reads an object, noting what it reveals (for callers that audit a whole response).
    pub(crate) async fn get_into(
        &self,
        actor: &Principal,
        kind: Kind,
        id: ObjectId,
        revealed: &mut Revealed,
    ) -> Result<ContextObject, CoreError> {
        Self::require_object_access(actor)?;
        let o = self.load(actor.scope, kind, id).await?;
        let dict = self.dictionary(actor.scope.org).await?;
        self.reveal_as(actor, o, &dict, revealed).await
    }

    async fn current_for_update(
        &self,
        actor: &Principal,
        kind: Kind,
        id: ObjectId,
    ) -> Result<ContextObject, CoreError> {
        let stored = self.load(actor.scope, kind, id).await?;
        if kind == Kind::Detail {
            return Err(CoreError::Conflict("details are immutable".into()));
        }
        if kind == Kind::Request && self.effective_state(&stored) == State::Closed {
            return Err(CoreError::Conflict("the request is closed".into()));
        }
        // Partners can't see sealed values, so they can't carry them over: read as a full reader.
        let reader = Principal {
            granted: true,
            ..actor.clone()
        };
        let dict = self.dictionary(actor.scope.org).await?;
        self.reveal_as(&reader, stored, &dict, &mut Revealed::default())
            .await
    }

    /// Replaces an object; `version` (from the body or `If-Match`) must equal the stored one.
    pub async fn replace(
        &self,
        actor: &Principal,
        kind: Kind,
        id: ObjectId,
        input: ObjectInput,
        if_match: Option<i64>,
    ) -> Result<ContextObject, CoreError> {
        Self::require_object_access(actor)?;
        let expected = if_match.or(input.version).ok_or_else(|| {
            CoreError::field(
                "version",
                "send the version you read (in the body or as If-Match)",
            )
        })?;
        let current = self.current_for_update(actor, kind, id).await?;
        if current.version != expected {
            return Err(CoreError::Conflict(format!(
                "version conflict: the stored version is {}",
                current.version
            )));
        }
        let mut errors = Vec::new();
        if let Some(t) = &input.kind {
            if t.parse::<Kind>().ok() != Some(kind) {
                errors.push(FieldError::new("type", format!("must be '{kind}' here")));
            }
        }
        if let Some(body_id) = &input.id {
            if body_id.as_str() != Some(id.to_string().as_str()) {
                errors.push(FieldError::new("id", "must match the id in the path"));
            }
        }
        let customer_id = match kind {
            Kind::Customer => None,
            _ => parse_id("customerId", input.customer_id.as_deref(), &mut errors),
        };
        let parent_id = parse_id("parentId", input.parent_id.as_deref(), &mut errors);
        let state = parse_opt("state", input.state.as_deref(), &mut errors);
        let media_type = parse_opt("mediaType", input.media_type.as_deref(), &mut errors);
        let detail_type = parse_opt("detailType", input.detail_type.as_deref(), &mut errors);
        let mut data = input.data;
        let kept = self.keep_withheld(actor, &current, &mut data).await?;
        let draft = self
            .draft(
                actor,
                kind,
                Some(&current),
                customer_id,
                parent_id,
                state,
                media_type,
                detail_type,
                input.fieldsets,
                data,
                input.tags,
                errors,
            )
            .await
            .map_err(|e| hide_withheld(e, &kept))?;
        self.persist(actor, draft, Some(expected), None, "replace")
            .await
    }

    /// A partner's write keeps the sealed values it was not shown (and may set or remove clear
    /// ones like anyone). Returns the fields it put back.
    async fn keep_withheld(
        &self,
        actor: &Principal,
        current: &ContextObject,
        data: &mut BTreeMap<String, serde_json::Value>,
    ) -> Result<BTreeSet<String>, CoreError> {
        let mut kept = BTreeSet::new();
        if actor.sees_sealed() {
            return Ok(kept);
        }
        let dict = self.dictionary(actor.scope.org).await?;
        for (k, v) in &current.data {
            let sealed = dict.field(k).is_some_and(|f| f.classification.is_sealed());
            if !sealed || v.is_null() {
                continue;
            }
            match data.get(k) {
                None | Some(serde_json::Value::Null) => {
                    data.insert(k.clone(), v.clone());
                    kept.insert(k.clone());
                }
                // A merge patch starts from the stored values: one it left alone is kept too.
                Some(x) if x == v => {
                    kept.insert(k.clone());
                }
                Some(_) => {}
            }
        }
        Ok(kept)
    }

    /// Applies a JSON merge patch. Without a version it retries on concurrent writes, so that
    /// no update is lost.
    pub async fn patch(
        &self,
        actor: &Principal,
        kind: Kind,
        id: ObjectId,
        patch: ObjectPatch,
        if_match: Option<i64>,
    ) -> Result<ContextObject, CoreError> {
        Self::require_object_access(actor)?;
        const ALLOWED: [&str; 7] = [
            "data",
            "tags",
            "state",
            "parentId",
            "customerId",
            "fieldsets",
            "version",
        ];
        if let Some(k) = patch.keys().find(|k| !ALLOWED.contains(&k.as_str())) {
            return Err(CoreError::field(
                k.clone(),
                format!(
                    "can't be patched; patchable members: {}",
                    ALLOWED.join(", ")
                ),
            ));
        }
        let body_version = match patch.get("version") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(
                v.as_i64()
                    .ok_or_else(|| CoreError::field("version", "expected an integer"))?,
            ),
        };
        let expected = if_match.or(body_version);
        if kind == Kind::Customer {
            if let Some(k) = ["customerId", "parentId"]
                .into_iter()
                .find(|k| patch.contains_key(*k))
            {
                return Err(CoreError::field(
                    k,
                    "a customer has no customerId or parentId",
                ));
            }
        }
        for _ in 0..PATCH_RETRIES {
            let current = self.current_for_update(actor, kind, id).await?;
            if let Some(v) = expected {
                if current.version != v {
                    return Err(CoreError::Conflict(format!(
                        "version conflict: the stored version is {}",
                        current.version
                    )));
                }
            }
            let mut errors = Vec::new();
            let mut data = current.data.clone();
            match patch.get("data") {
                None => {}
                Some(serde_json::Value::Object(m)) => {
                    for (k, v) in m {
                        if v.is_null() {
                            data.remove(k);
                        } else {
                            data.insert(k.clone(), v.clone());
                        }
                    }
                }
                Some(serde_json::Value::Null) => data.clear(),
                Some(_) => errors.push(FieldError::new("data", "expected an object")),
            }
            let tags = match patch.get("tags") {
                None => current.tags.clone(),
                Some(serde_json::Value::Null) => Vec::new(),
                Some(v) => serde_json::from_value(v.clone()).unwrap_or_else(|_| {
                    errors.push(FieldError::new("tags", "expected an array of strings"));
                    Vec::new()
                }),
            };
            let fieldsets = match patch.get("fieldsets") {
                None => current.fieldsets.clone(),
                Some(v) => serde_json::from_value(v.clone()).unwrap_or_else(|_| {
                    errors.push(FieldError::new("fieldsets", "expected an array of strings"));
                    Vec::new()
                }),
            };
            let text = |name: &str, errors: &mut Vec<FieldError>| -> Option<Option<String>> {
                match patch.get(name) {
                    None => None,
                    Some(serde_json::Value::Null) => Some(None),
                    Some(serde_json::Value::String(s)) => Some(Some(s.clone())),
                    Some(_) => {
                        errors.push(FieldError::new(name, "expected a string or null"));
                        None
                    }
                }
            };
            let state = match text("state", &mut errors) {
                None => Some(current.state),
                Some(s) => parse_opt("state", s.as_deref(), &mut errors),
            };
            let parent_id = match text("parentId", &mut errors) {
                None => current.parent_id,
                Some(s) => parse_id("parentId", s.as_deref(), &mut errors),
            };
            let customer_id = match (kind, text("customerId", &mut errors)) {
                (Kind::Customer, _) => None,
                // Moving under another parent moves to that parent's customer.
                (_, None) if patch.contains_key("parentId") && parent_id.is_some() => None,
                (_, None) => current.customer_id,
                (_, Some(s)) => parse_id("customerId", s.as_deref(), &mut errors),
            };
            let kept = self.keep_withheld(actor, &current, &mut data).await?;
            let draft = self
                .draft(
                    actor,
                    kind,
                    Some(&current),
                    customer_id,
                    parent_id,
                    state,
                    current.media_type,
                    current.detail_type,
                    fieldsets,
                    data,
                    tags,
                    errors,
                )
                .await
                .map_err(|e| hide_withheld(e, &kept))?;
            match self
                .persist(actor, draft, Some(current.version), None, "patch")
                .await
            {
                Err(CoreError::Conflict(msg))
                    if expected.is_none() && msg.starts_with("version conflict") =>
                {
                    continue
                }
                other => return other,
            }
        }
        Err(CoreError::Conflict(
            "the object is being changed by many writers; retry".into(),
        ))
    }

    /// Deletes one object (lab only).
    pub async fn delete(
        &self,
        actor: &Principal,
        kind: Kind,
        id: ObjectId,
    ) -> Result<(), CoreError> {
        Self::require_object_access(actor)?;
        if !deletes_allowed(actor.scope.partition) {
            return Err(CoreError::Forbidden(
                "deletes are not allowed in the production partition (data retention)".into(),
            ));
        }
        self.load(actor.scope, kind, id).await?;
        self.store
            .delete_object(actor.scope, id)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => not_found(kind, id),
                e => e.into(),
            })
    }

    /// Searches objects of a kind.
    pub async fn search(
        &self,
        actor: &Principal,
        kind: Kind,
        request: &SearchRequest,
    ) -> Result<SearchResult, CoreError> {
        Self::require_object_access(actor)?;
        let scope = actor.scope;
        let dict = self.dictionary(scope.org).await?;
        let indexer = self.keys.indexer(scope).await?;
        let access = if actor.sees_sealed() {
            SealedAccess::Allowed
        } else {
            SealedAccess::Withheld
        };
        let plan = search::plan_with_limits(
            kind,
            request,
            &dict,
            &indexer,
            access,
            self.autoclose_cutoff(),
            &self.config.search_limits,
        )?;
        let sealed_keys: Vec<String> = request
            .terms
            .keys()
            .filter(|k| dict.field(k).is_some_and(|f| f.classification.is_sealed()))
            .cloned()
            .collect();
        // Recorded with the page's reads, in one append: the answer waits for one commit.
        let searched = (!sealed_keys.is_empty()).then(|| {
            crate::access::audit_entry(
                Some(actor),
                scope,
                "pii.search",
                Some((Some(kind), String::new())),
                sealed_keys,
                String::new(),
            )
        });
        if request.summary {
            let page = self.store.search_ids(scope, &plan).await?;
            self.audit.record(searched.into_iter().collect()).await?;
            return Ok(SearchResult {
                items: None,
                ids: Some(page.ids),
                total: page.total,
                next_cursor: page.next.as_ref().map(search::encode_cursor),
            });
        }
        let page = self.store.search(scope, &plan).await?;
        let mut revealed = Revealed::default();
        let items = self.reveal_page(actor, page.items, &mut revealed).await?;
        self.audit_revealed_with(actor, revealed, "search", searched)
            .await?;
        Ok(SearchResult {
            items: Some(items),
            ids: None,
            total: page.total,
            next_cursor: page.next.as_ref().map(search::encode_cursor),
        })
    }

    /// A customer's journey, newest first.
    pub async fn timeline(
        &self,
        actor: &Principal,
        customer: ObjectId,
        media_type: Option<MediaType>,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<TimelinePage, CoreError> {
        let mut revealed = Revealed::default();
        let page = self
            .timeline_into(actor, customer, media_type, limit, cursor, &mut revealed)
            .await?;
        self.audit_revealed(actor, revealed, "timeline").await?;
        Ok(page)
    }

    /// A timeline page, noting what it reveals (for callers that audit a whole response).
    pub(crate) async fn timeline_into(
        &self,
        actor: &Principal,
        customer: ObjectId,
        media_type: Option<MediaType>,
        limit: Option<usize>,
        cursor: Option<&str>,
        revealed: &mut Revealed,
    ) -> Result<TimelinePage, CoreError> {
        Self::require_object_access(actor)?;
        let limit = limit.unwrap_or(search::DEFAULT_LIMIT);
        if limit == 0 || limit > search::MAX_LIMIT {
            return Err(CoreError::field(
                "limit",
                format!("must be between 1 and {}", search::MAX_LIMIT),
            ));
        }
        let after: Option<PagePosition> = cursor.map(search::decode_cursor).transpose()?;
        self.load(actor.scope, Kind::Customer, customer).await?;
        let page = self
            .store
            .timeline(
                actor.scope,
                &TimelineQuery {
                    customer_id: customer,
                    media_type,
                    limit,
                    after,
                },
            )
            .await?;
        let items = self.reveal_page(actor, page.items, revealed).await?;
        Ok(TimelinePage {
            items,
            total: page.total,
            next_cursor: page.next.as_ref().map(search::encode_cursor),
        })
    }

    /// Flushes every object of a kind (lab only); returns the finished job.
    pub async fn flush(&self, actor: &Principal, kind: Kind) -> Result<FlushStatus, CoreError> {
        actor.require(&[Role::Admin, Role::Agent, Role::Machine])?;
        if !deletes_allowed(actor.scope.partition) {
            return Err(CoreError::Forbidden(
                "flush is not allowed in the production partition (data retention)".into(),
            ));
        }
        let mut job = FlushJob {
            id: Uuid::now_v7(),
            scope: actor.scope,
            kind,
            completed: false,
            flushed: 0,
            message: format!("flushing {} objects", kind),
            created: now_ms(),
        };
        self.store.put_flush_job(&job).await?;
        match self.store.flush(actor.scope, kind).await {
            Ok(n) => {
                job.completed = true;
                job.flushed = n;
                job.message = format!("flushed {n} {} objects", kind);
            }
            Err(e) => {
                job.completed = true;
                job.message = format!("flush failed: {e}");
            }
        }
        self.store.put_flush_job(&job).await?;
        self.audit_action(
            Some(actor),
            actor.scope,
            "flush",
            Some((Some(kind), job.id.to_string())),
            vec![],
            job.message.clone(),
        )
        .await?;
        Ok(job.into())
    }

    /// Status of a flush job.
    pub async fn flush_status(
        &self,
        actor: &Principal,
        id: Uuid,
    ) -> Result<FlushStatus, CoreError> {
        Self::require_object_access(actor)?;
        self.store
            .flush_job(actor.scope, id)
            .await?
            .map(Into::into)
            .ok_or_else(|| CoreError::NotFound(format!("no flush job {id}")))
    }

    /// Closes requests past the auto-close period; run periodically by the server.
    pub async fn close_stale_requests(&self) -> Result<u64, CoreError> {
        Ok(self
            .store
            .close_stale_requests(self.autoclose_cutoff(), now_ms())
            .await?)
    }
}

/// The refusal of a type or classification change of a field that stored data uses.
fn type_locked(id: &str) -> CoreError {
    CoreError::Conflict(format!(
        "field '{id}' is used by stored data: its dataType and classification can't change"
    ))
}

/// The refusal of an object write, for its client.
fn write_error(e: StoreError, object: &ContextObject) -> CoreError {
    match e {
        StoreError::ParentClosed => CoreError::Conflict("the parent request is closed".into()),
        StoreError::ParentNotFound => {
            CoreError::field("parentId", "no such parent in this partition")
        }
        StoreError::CustomerNotFound => {
            CoreError::field("customerId", "no such customer in this partition")
        }
        StoreError::VersionConflict { current } => {
            CoreError::Conflict(format!("version conflict: the stored version is {current}"))
        }
        StoreError::DictionaryChanged => CoreError::Conflict(
            "the dictionary kept changing while the object was written; retry".into(),
        ),
        StoreError::NotFound => not_found(object.kind, object.id),
        e => e.into(),
    }
}

/// The stored form of an object: UNENCRYPTED values in the clear, the others sealed under
/// `keys`, and every blind-index token it must be found by.
fn seal(
    scope: Scope,
    object: &ContextObject,
    dict: &Dictionary,
    keys: &ObjectKeys,
    indexer: &crate::crypto::Indexer,
) -> Result<(StoredObject, Vec<Token>), CoreError> {
    let mut clear = BTreeMap::new();
    let mut sealed = BTreeMap::new();
    let mut tokens = Vec::with_capacity(object.data.len() * 2 + object.tags.len() + 4);
    for (name, value) in &object.data {
        // Validation guarantees every key is a dictionary field.
        let Some(field) = dict.field(name) else {
            continue;
        };
        tokens.push(indexer.present(name));
        if field.searchable {
            if let Some(n) = normalize(name, value) {
                tokens.push(indexer.value(name, &n));
            }
        }
        if field.classification.is_sealed() {
            let plain =
                serde_json::to_vec(value).map_err(|e| CoreError::bad_request(e.to_string()))?;
            sealed.insert(name.clone(), keys.seal(object.id, name, &plain)?);
        } else {
            clear.insert(name.clone(), value.clone());
        }
    }
    tokens.extend(object.fieldsets.iter().map(|s| indexer.fieldset(s)));
    tokens.extend(object.tags.iter().map(|t| indexer.tag(&t.to_lowercase())));
    tokens.extend(
        object
            .contributors
            .iter()
            .map(|c| indexer.contributor(&c.id)),
    );
    tokens.sort_unstable();
    tokens.dedup();
    let key_version = if sealed.is_empty() {
        0
    } else {
        keys.partition_version().unwrap_or(0)
    };
    let stored = StoredObject {
        id: object.id,
        scope,
        kind: object.kind,
        customer_id: object.customer_id,
        parent_id: object.parent_id,
        state: object.state,
        media_type: object.media_type,
        detail_type: object.detail_type,
        fieldsets: object.fieldsets.clone(),
        clear,
        sealed,
        tags: object.tags.clone(),
        contributors: object.contributors.clone(),
        created: object.created,
        last_updated: object.last_updated,
        touched: object.last_updated,
        version: object.version,
        key_version,
    };
    Ok((stored, tokens))
}

/// Validation errors about values a partner was not shown say only that such a value is no
/// longer valid, never how (its length, its enumeration).
fn hide_withheld(e: CoreError, kept: &BTreeSet<String>) -> CoreError {
    match e {
        CoreError::Validation(errors) if !kept.is_empty() => CoreError::Validation(
            errors
                .into_iter()
                .map(|mut fe| {
                    let withheld = fe
                        .field
                        .strip_prefix("data.")
                        .is_some_and(|f| kept.contains(f));
                    if withheld {
                        fe.message = "a withheld value of this field is no longer valid; \
                                      someone allowed to see it must correct it"
                            .into();
                    }
                    fe
                })
                .collect(),
        ),
        e => e,
    }
}

fn clean_tags(tags: Vec<String>, errors: &mut Vec<FieldError>) -> Vec<String> {
    if tags.len() > MAX_TAGS {
        errors.push(FieldError::new("tags", format!("at most {MAX_TAGS} tags")));
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for t in tags {
        let t = t.trim().to_owned();
        if t.is_empty() || t.chars().count() > MAX_TAG_CHARS || t.contains('\0') {
            errors.push(FieldError::new(
                "tags",
                format!("tags are 1–{MAX_TAG_CHARS} characters, without NUL"),
            ));
        } else if !out.iter().any(|o| o.eq_ignore_ascii_case(&t)) {
            out.push(t);
        }
    }
    out
}

/// Encryption state of a partition, shown in `/v1/status`.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionStatus {
    /// Current data-key version (new writes use it).
    pub data_key_version: u32,
    /// Customer keys still wrapped by an older version.
    pub pending_customer_keys: u64,
    /// Objects still sealed under an older version.
    pub pending_objects: u64,
    /// `idle`, `reencrypting`, or `failing` (the keys don't open here, or the last
    /// re-encryption run failed in this partition: see `error`).
    pub state: &'static str,
    /// Why the partition is `failing`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What [`Context::verify_keys`] found.
#[derive(Clone, Debug, Default)]
pub struct KeyCheck {
    /// Organizations checked.
    pub organizations: usize,
    /// Organizations whose keys are wrapped by their own key-encryption key, which is not
    /// loaded: their data is unreadable here until it is (`--org-kek`).
    pub without_org_kek: Vec<OrgRecord>,
}

/// The start-up message of one organization whose keys don't open, if they don't.
fn key_problem(org: &OrgRecord, checks: &[(Partition, PartitionCheck)]) -> Option<String> {
    let who = format!("organization '{}' ({})", org.name, org.id);
    let missing: Vec<Partition> = checks
        .iter()
        .filter(|(_, c)| *c == PartitionCheck::Missing)
        .map(|(p, _)| *p)
        .collect();
    if !missing.is_empty() {
        let what = match missing.as_slice() {
            [one] if checks.len() > 1 => format!("keys for the {one} partition of {who}"),
            _ => format!("keys for {who}"),
        };
        return Some(format!(
            "the key store has no {what}: wrong --data-dir, or a key store of another deployment?"
        ));
    }
    checks.iter().find_map(|(_, c)| match c {
        PartitionCheck::WrongKek { org_kek: false } => Some(format!(
            "the keys of {who} do not open with the configured master key: wrong master key \
             (CONTEXTD_MASTER_KEY / master.key)?"
        )),
        PartitionCheck::WrongKek { org_kek: true } => Some(format!(
            "the keys of {who} do not open with the organization's own key-encryption key \
             given by --org-kek: wrong key file?"
        )),
        _ => None,
    })
}

impl Context {
    /// Adds a data-key version to the caller's partition (admin); the background job then
    /// re-encrypts what the older versions protect.
    pub async fn rotate_data_key(&self, actor: &Principal) -> Result<EncryptionStatus, CoreError> {
        actor.require(&[Role::Admin])?;
        let version = self.keys.rotate(actor.scope).await?;
        self.audit_action(
            Some(actor),
            actor.scope,
            "datakey.rotate",
            None,
            vec![],
            format!("version={version}"),
        )
        .await?;
        self.encryption_status(actor.scope).await
    }

    /// Adds a data-key version to a partition on the operator's behalf (`contextd keys
    /// rotate`): audited like [`Context::rotate_data_key`], with no actor.
    pub async fn rotate_data_key_as_operator(&self, scope: Scope) -> Result<u32, CoreError> {
        let version = self.keys.rotate(scope).await?;
        self.audit_action(
            None,
            scope,
            "datakey.rotate",
            None,
            vec![],
            format!("version={version} source=cli"),
        )
        .await?;
        Ok(version)
    }

    /// Current key version and re-encryption progress of a partition. When its keys don't
    /// open here (an org's own KEK not loaded) or the last re-encryption run failed in it, the
    /// state is `failing` with the reason, and the version is the newest stored.
    pub async fn encryption_status(&self, scope: Scope) -> Result<EncryptionStatus, CoreError> {
        let (version, mut error) = match self.keys.current_version(scope).await {
            Ok(v) => (v, None),
            Err(CoreError::Keys(msg)) => {
                let stored = self
                    .keys
                    .store()
                    .data_keys(scope)
                    .await
                    .map_err(|e| CoreError::Keys(e.to_string()))?;
                (
                    stored.iter().map(|k| k.version).max().unwrap_or(0),
                    Some(msg),
                )
            }
            Err(e) => return Err(e),
        };
        if error.is_none() {
            error = self.reencrypt_failure(scope);
        }
        let pending_customer_keys = self
            .keys
            .store()
            .count_customer_keys_wrapped_before(scope, version)
            .await
            .map_err(|e| CoreError::Keys(e.to_string()))?;
        let pending_objects = self.store.count_objects_to_reseal(scope, version).await?;
        let idle = pending_customer_keys == 0 && pending_objects == 0;
        Ok(EncryptionStatus {
            data_key_version: version,
            pending_customer_keys,
            pending_objects,
            state: match (&error, idle) {
                (Some(_), _) => "failing",
                (None, true) => "idle",
                (None, false) => "reencrypting",
            },
            error,
        })
    }

    fn reencrypt_failure(&self, scope: Scope) -> Option<String> {
        let failures = self
            .reencrypt_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        failures.get(&scope).cloned()
    }

    /// Checks that every organization's keys open with the configured key-encryption keys;
    /// run at start, before serving. Fails naming each organization whose keys are missing or
    /// don't unwrap, and the likely cause; an organization whose own KEK is not loaded is
    /// only reported (its data stays unreadable here, everything else works).
    pub async fn verify_keys(&self) -> Result<KeyCheck, CoreError> {
        let orgs = self.store.orgs().await?;
        let mut check = KeyCheck {
            organizations: orgs.len(),
            ..KeyCheck::default()
        };
        let mut problems = Vec::new();
        for org in orgs {
            let mut checks = Vec::new();
            for partition in Partition::ALL {
                let scope = Scope {
                    org: org.id,
                    partition,
                };
                checks.push((partition, self.keys.check_partition(scope).await?));
            }
            if let Some(problem) = key_problem(&org, &checks) {
                problems.push(problem);
            } else if checks
                .iter()
                .any(|(_, c)| *c == PartitionCheck::OrgKekNotLoaded)
            {
                check.without_org_kek.push(org);
            }
        }
        const SHOWN: usize = 5;
        match problems.len() {
            0 => Ok(check),
            n => {
                let mut msg = problems[..n.min(SHOWN)].join("; ");
                if n > SHOWN {
                    msg.push_str(&format!("; and {} more organizations", n - SHOWN));
                }
                Err(CoreError::Keys(msg))
            }
        }
    }

    /// Re-encrypts one batch in one partition: re-wraps customer keys and re-seals objects
    /// still under older data-key versions. Returns how many items were processed.
    pub async fn reencrypt_batch(&self, scope: Scope, batch: usize) -> Result<usize, CoreError> {
        let mut done = self.keys.rewrap_customer_keys(scope, batch).await?;
        let version = self.keys.current_version(scope).await?;
        let keys = self.keys.object_keys(scope, None).await?;
        for o in self.store.objects_to_reseal(scope, version, batch).await? {
            let mut sealed = BTreeMap::new();
            for (name, value) in &o.sealed {
                let plain = keys.open(o.id, name, value)?;
                sealed.insert(name.clone(), keys.seal(o.id, name, &plain)?);
            }
            match self
                .store
                .reseal_object(scope, o.id, o.version, &sealed, version)
                .await
            {
                // Changed meanwhile: the writer sealed it under the current key already, or the
                // next batch picks it up again.
                Ok(()) | Err(StoreError::VersionConflict { .. }) | Err(StoreError::NotFound) => {
                    done += 1
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(done)
    }

    /// Runs re-encryption to completion over every partition (the background job: on start,
    /// after a rotation, and periodically, so an interrupted rotation resumes after a restart).
    pub async fn reencrypt_all(&self, batch: usize) -> Result<usize, CoreError> {
        self.keys.refresh();
        let scopes = self
            .keys
            .store()
            .scopes()
            .await
            .map_err(|e| CoreError::Keys(e.to_string()))?;
        let mut total = 0;
        for scope in scopes {
            // A scope that fails (an org's own KEK not loaded here) must not stall the others:
            // remember why, for `/v1/status`, and go on.
            match self.reencrypt_scope(scope, batch).await {
                Ok(n) => {
                    total += n;
                    self.set_reencrypt_failure(scope, None);
                }
                Err(e) => self.set_reencrypt_failure(scope, Some(e.to_string())),
            }
        }
        Ok(total)
    }

    async fn reencrypt_scope(&self, scope: Scope, batch: usize) -> Result<usize, CoreError> {
        let mut total = 0;
        // Bounded: objects rewritten meanwhile by a process with stale keys wait for the next run.
        for _ in 0..100_000 {
            let n = self.reencrypt_batch(scope, batch).await?;
            total += n;
            if n == 0 {
                break;
            }
        }
        Ok(total)
    }

    fn set_reencrypt_failure(&self, scope: Scope, error: Option<String>) {
        let mut failures = self
            .reencrypt_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match error {
            Some(e) => {
                // Logged when it starts or changes, not on every periodic run.
                if failures.get(&scope) != Some(&e) {
                    tracing::warn!(org = %scope.org, partition = %scope.partition, error = %e,
                        "re-encryption fails in this partition; the others go on");
                }
                failures.insert(scope, e);
            }
            None => {
                failures.remove(&scope);
            }
        }
    }
}
