//! Object writes: drafting and checking a new state, sealing and indexing it, moving linked
//! objects along, and writing it all in one transaction.

use std::collections::HashMap;

use super::*;
use crate::object::Contributor;

/// The state of an object a client asks for, parsed but not yet checked: what
/// [`Context::draft`] turns into a [`Draft`].
pub(super) struct Proposal {
    pub kind: Kind,
    pub customer_id: Option<ObjectId>,
    pub parent_id: Option<ObjectId>,
    pub state: Option<State>,
    pub media_type: Option<MediaType>,
    pub detail_type: Option<DetailType>,
    pub fieldsets: Vec<String>,
    pub data: BTreeMap<String, serde_json::Value>,
    pub tags: Vec<String>,
    /// An import's own id and history, kept as given (None: a new object, as of now).
    pub history: Option<History>,
    /// Problems found while parsing, reported with the others.
    pub errors: Vec<FieldError>,
}

/// The largest version an import keeps (2^53 − 1: exact in every JSON reader, and far from
/// overflowing when later writes add to it).
const MAX_IMPORTED_VERSION: i64 = (1 << 53) - 1;
/// How far in the future an imported time may be (clocks of two servers differ).
const MAX_CLOCK_SKEW_MINUTES: i64 = 5;

/// What an imported object keeps of its past: its id, times, version and contributors.
#[derive(Clone, Debug)]
pub(super) struct History {
    pub id: ObjectId,
    pub created: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
    pub version: i64,
    pub contributors: Vec<Contributor>,
}

/// Objects read ahead for the link checks of a batch: id → the object, or `None` when it is
/// known missing. Ids not in it are read from the store.
pub(super) type Known = HashMap<ObjectId, Option<StoredObject>>;

impl Proposal {
    /// A new object of `kind` as a client sent it (read-only members ignored).
    pub fn of_input(kind: Kind, input: ObjectInput) -> Self {
        let mut errors = Vec::new();
        if let Some(t) = &input.kind {
            if t.parse::<Kind>().ok() != Some(kind) {
                errors.push(FieldError::new("type", format!("must be '{kind}' here")));
            }
        }
        Proposal {
            kind,
            customer_id: parse_id("customerId", input.customer_id.as_deref(), &mut errors),
            parent_id: parse_id("parentId", input.parent_id.as_deref(), &mut errors),
            state: parse_opt("state", input.state.as_deref(), &mut errors),
            media_type: parse_opt("mediaType", input.media_type.as_deref(), &mut errors),
            detail_type: parse_opt("detailType", input.detail_type.as_deref(), &mut errors),
            fieldsets: input.fieldsets,
            data: input.data,
            tags: input.tags,
            history: None,
            errors,
        }
    }

    /// An object to import: as [`Proposal::of_input`], keeping the `id`, `created`,
    /// `lastUpdated`, `version` and `contributors` the input carries (`id` is required; the
    /// others default to now, 1 and none).
    pub fn of_import(kind: Kind, input: ObjectInput) -> Self {
        let mut errors = Vec::new();
        let id = match input.id.as_ref().and_then(|v| v.as_str()) {
            Some(s) => parse_id("id", Some(s), &mut errors),
            None => {
                errors.push(FieldError::new("id", "an imported object needs its id"));
                None
            }
        };
        let now = now_ms();
        let created = history_time("created", input.created.as_ref(), &mut errors).unwrap_or(now);
        let last_updated = history_time("lastUpdated", input.last_updated.as_ref(), &mut errors)
            .unwrap_or(created.max(now));
        if last_updated < created {
            errors.push(FieldError::new("lastUpdated", "is before created"));
        }
        let version = input.version.unwrap_or(1);
        if !(1..=MAX_IMPORTED_VERSION).contains(&version) {
            errors.push(FieldError::new(
                "version",
                format!("is between 1 and {MAX_IMPORTED_VERSION}"),
            ));
        }
        for (name, t) in [("created", created), ("lastUpdated", last_updated)] {
            if t > now + chrono::Duration::minutes(MAX_CLOCK_SKEW_MINUTES) {
                errors.push(FieldError::new(name, "is in the future"));
            }
        }
        let contributors = match input.contributors.clone() {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(v) => serde_json::from_value(v).unwrap_or_else(|_| {
                errors.push(FieldError::new(
                    "contributors",
                    "a list of {\"id\", \"type\"} as read",
                ));
                Vec::new()
            }),
        };
        let mut p = Self::of_input(kind, input);
        p.errors.extend(errors);
        if kind == Kind::Customer && p.customer_id.is_some() && p.customer_id == id {
            // A customer reads as its own customer; sent back, that is no link.
            p.customer_id = None;
        }
        p.history = id.map(|id| History {
            id,
            created,
            last_updated,
            version,
            contributors,
        });
        p
    }
}

/// An RFC 3339 time of an imported object's history, to the millisecond as stored.
fn history_time(
    name: &str,
    value: Option<&serde_json::Value>,
    errors: &mut Vec<FieldError>,
) -> Option<DateTime<Utc>> {
    let text = value?.as_str();
    match text.and_then(|t| DateTime::parse_from_rfc3339(t).ok()) {
        Some(t) => Some(crate::time::from_millis(t.timestamp_millis())),
        None => {
            errors.push(FieldError::new(name, "an RFC 3339 time"));
            None
        }
    }
}

/// What a draft links to, checked: its customer (given or inherited from the parent), and
/// the checks the store repeats inside the write's transaction.
struct Links {
    customer_id: Option<ObjectId>,
    parent_check: Option<ParentCheck>,
    customer_check: Option<ObjectId>,
}

/// The per-kind rules of the object model (README, "API overview") on an object's shape (which links, channel, detail type and state
/// each kind has), adding what is wrong to the proposal's errors; returns the state to store.
/// A customer is its own customer (`id`); a detail is always closed.
fn check_shape(p: &mut Proposal, id: ObjectId) -> State {
    let kind = p.kind;
    let mut state = p.state.unwrap_or(State::Active);
    let mut refuse = |field: &str, message: String| p.errors.push(FieldError::new(field, message));
    match kind {
        Kind::Customer => {
            if p.customer_id.is_some() {
                refuse("customerId", "a customer has no customerId".into());
            }
            if p.parent_id.is_some() {
                refuse("parentId", "a customer has no parent".into());
            }
            if state == State::Closed {
                refuse("state", "a customer can't be closed".into());
            }
        }
        Kind::Request => {
            if p.parent_id.is_some() {
                refuse("parentId", "a request has no parent".into());
            }
            if p.customer_id.is_none() {
                refuse("customerId", "a request needs a customerId".into());
            }
        }
        Kind::Activity => {
            if p.media_type.is_none() {
                refuse("mediaType", "an activity needs a mediaType".into());
            }
        }
        Kind::Detail => {
            if p.parent_id.is_none() {
                refuse(
                    "parentId",
                    "a detail needs a parentId (request or activity)".into(),
                );
            }
            if p.detail_type.is_none() {
                refuse(
                    "detailType",
                    "a detail needs a detailType (comment or feedback)".into(),
                );
            }
            state = State::Closed;
        }
    }
    if kind != Kind::Activity && p.media_type.is_some() {
        refuse("mediaType", format!("a {kind} has no mediaType"));
    }
    if kind != Kind::Detail && p.detail_type.is_some() {
        refuse("detailType", format!("a {kind} has no detailType"));
    }
    if kind == Kind::Customer {
        p.customer_id = Some(id);
    }
    state
}

/// The parent a `kind` may hang under: a request for an activity, a request or an activity
/// for a detail, in the caller's partition.
fn check_parent(kind: Kind, parent: Option<&StoredObject>) -> Result<&StoredObject, CoreError> {
    match parent {
        Some(p) if kind == Kind::Detail && matches!(p.kind, Kind::Request | Kind::Activity) => {
            Ok(p)
        }
        Some(p) if kind != Kind::Detail && p.kind == Kind::Request => Ok(p),
        Some(_) if kind == Kind::Activity => Err(CoreError::field(
            "parentId",
            "the parent of an activity must be a request",
        )),
        Some(_) => Err(CoreError::field(
            "parentId",
            "the parent of a detail must be a request or an activity",
        )),
        None => Err(CoreError::field(
            "parentId",
            "no such parent in this partition",
        )),
    }
}

/// Refuses an object larger than [`MAX_OBJECT_BYTES`] serialized. The size counts values a
/// partner is not shown, so a partner is not told it.
fn check_size(actor: &Principal, object: &ContextObject) -> Result<(), CoreError> {
    let size = serde_json::to_vec(object)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size <= MAX_OBJECT_BYTES {
        return Ok(());
    }
    Err(CoreError::TooLarge(if actor.sees_sealed() {
        format!("the object is {size} bytes serialized; the maximum is {MAX_OBJECT_BYTES}")
    } else {
        format!("the object would exceed the maximum of {MAX_OBJECT_BYTES} bytes serialized")
    }))
}

/// A draft on its way to the store: the version it replaces and the keys to seal it with.
#[derive(Clone)]
pub(super) struct Sealing {
    pub draft: Draft,
    pub expected_version: Option<i64>,
    pub keys: ObjectKeys,
}

impl Sealing {
    /// Appends the writes of the draft (the object, then the linked objects that move with
    /// it) to `writes`; returns the object's sealed fields.
    fn writes(
        &self,
        scope: Scope,
        dict: &Dictionary,
        indexer: &crate::crypto::Indexer,
        actor: &Principal,
        writes: &mut Vec<ObjectWrite>,
    ) -> Result<Vec<String>, CoreError> {
        let draft = &self.draft;
        let change = |event_type| Change {
            event_type,
            by: actor.contributor(),
            history: draft.history,
        };
        let (stored, tokens) = seal(scope, &draft.object, dict, &self.keys, indexer)?;
        let fields: Vec<String> = stored.sealed.keys().cloned().collect();
        writes.push(ObjectWrite {
            object: stored,
            tokens,
            expected_version: self.expected_version,
            parent_check: draft.parent_check,
            customer_check: draft.customer_check,
            dictionary_version: Some(dict.version()),
            change: change(draft.event_type),
        });
        for (linked, expected) in &draft.moved {
            let (stored, tokens) = seal(scope, linked, dict, &self.keys, indexer)?;
            writes.push(ObjectWrite {
                object: stored,
                tokens,
                expected_version: Some(*expected),
                parent_check: None,
                customer_check: None,
                dictionary_version: Some(dict.version()),
                change: change(EventType::Moved),
            });
        }
        Ok(fields)
    }
}

impl Context {
    /// Seals, indexes and writes a draft (with the linked objects that move with it, in one
    /// transaction); returns the object as the client sees it. The write names the dictionary
    /// version its values were classified under; when the dictionary changed meanwhile (on
    /// this instance or another), the values are validated and sealed again under the new one.
    pub(super) async fn persist(
        &self,
        actor: &Principal,
        draft: Draft,
        expected_version: Option<i64>,
        new_customer_key: Option<ObjectKeys>,
        via: &str,
    ) -> Result<ContextObject, CoreError> {
        let keys = match new_customer_key {
            Some(k) => k,
            None => {
                self.keys
                    .object_keys(actor.scope, draft.object.customer_id)
                    .await?
            }
        };
        let sealing = Sealing {
            draft,
            expected_version,
            keys,
        };
        let written = self.persist_all(actor, vec![sealing], Some(via)).await?;
        written
            .into_iter()
            .next()
            .ok_or_else(|| CoreError::Store(StoreError::Backend("a write returned nothing".into())))
    }

    /// As [`Context::persist`], for several drafts written in one transaction. `via` names
    /// the operation when the answer shows the objects (their sealed values are then audited
    /// as read); `None` when it shows none of their values.
    pub(super) async fn persist_all(
        &self,
        actor: &Principal,
        mut items: Vec<Sealing>,
        via: Option<&str>,
    ) -> Result<Vec<ContextObject>, CoreError> {
        const ATTEMPTS: usize = 4;
        let scope = actor.scope;
        let indexer = self.keys.indexer(scope).await?;
        let mut dict = self.dictionary(scope.org).await?;
        let mut attempt = 1;
        let sealed_fields = loop {
            let mut writes = Vec::with_capacity(items.len());
            let mut sealed_fields = Vec::with_capacity(items.len());
            let mut revealed = Revealed::default();
            for item in &items {
                let fields = item.writes(scope, &dict, &indexer, actor, &mut writes)?;
                if via.is_some() && actor.sees_sealed() {
                    let o = &item.draft.object;
                    revealed.add(o.kind, o.id, o.customer_id, fields.iter().cloned());
                }
                sealed_fields.push(fields);
            }
            if let (Some(via), true) = (via, actor.sees_sealed()) {
                // The answer carries the sealed values it writes: audited like a read, before
                // the write, so that a refused audit leaves nothing written.
                self.audit_revealed(actor, revealed, via).await?;
            }
            let result = match writes.as_slice() {
                [] => Ok(()),
                [one] => self.store.write_object(one).await,
                all => self.store.write_objects(all).await,
            };
            match result {
                Ok(()) => break sealed_fields,
                Err(StoreError::DictionaryChanged) if attempt < ATTEMPTS => {
                    attempt += 1;
                    self.dictionaries.invalidate(scope.org);
                    dict = self.dictionary(scope.org).await?;
                    for item in &mut items {
                        let o = &mut item.draft.object;
                        o.data = dict.validate_data(&o.fieldsets, &o.data)?;
                    }
                }
                Err(e) => return Err(write_error(e, &items[0].draft.object)),
            }
        };
        let mut written = Vec::with_capacity(items.len());
        for (item, fields) in items.into_iter().zip(sealed_fields) {
            let mut object = item.draft.object;
            if !actor.sees_sealed() {
                for name in fields {
                    object.data.insert(name.clone(), serde_json::Value::Null);
                    object.withheld.push(name);
                }
            }
            written.push(object);
        }
        Ok(written)
    }

    /// Builds and checks the new state of an object from client input; `existing` is the
    /// object being replaced (None on create).
    pub(super) async fn draft(
        &self,
        actor: &Principal,
        existing: Option<&ContextObject>,
        proposal: Proposal,
    ) -> Result<Draft, CoreError> {
        self.draft_with(actor, existing, proposal, &Known::new())
            .await
    }

    /// As [`Context::draft`], reading linked objects from `known` first.
    pub(super) async fn draft_with(
        &self,
        actor: &Principal,
        existing: Option<&ContextObject>,
        proposal: Proposal,
        known: &Known,
    ) -> Result<Draft, CoreError> {
        let id = existing
            .map(|e| e.id)
            .or(proposal.history.as_ref().map(|h| h.id))
            .unwrap_or_default();
        let mut p = proposal;
        let state = check_shape(&mut p, id);
        let tags = clean_tags(std::mem::take(&mut p.tags), &mut p.errors);
        let dict = self.dictionary(actor.scope.org).await?;
        let data = match dict.validate_data(&p.fieldsets, &p.data) {
            Ok(d) => d,
            Err(CoreError::Validation(more)) => {
                p.errors.extend(more);
                BTreeMap::new()
            }
            Err(e) => return Err(e),
        };
        if !p.errors.is_empty() {
            return Err(CoreError::Validation(p.errors));
        }
        let links = self.check_links(actor.scope, &p, existing, known).await?;
        let now = now_ms();
        let me = actor.contributor();
        // lastUpdated never goes backwards, even if the clock does; an import keeps its
        // history as it was, contributors included.
        let (created, version, mut contributors, last_updated) = match (existing, &p.history) {
            (Some(e), _) => (
                e.created,
                e.version + 1,
                e.contributors.clone(),
                now.max(e.last_updated),
            ),
            (None, Some(h)) => (h.created, h.version, h.contributors.clone(), h.last_updated),
            (None, None) => (now, 1, Vec::new(), now),
        };
        if p.history.is_none() && !contributors.contains(&me) {
            contributors.push(me);
        }
        let object = ContextObject {
            id,
            kind: p.kind,
            customer_id: links.customer_id,
            parent_id: p.parent_id,
            state,
            media_type: p.media_type,
            detail_type: p.detail_type,
            fieldsets: p.fieldsets,
            data,
            tags,
            contributors,
            withheld: Vec::new(),
            created,
            last_updated,
            version,
        };
        check_size(actor, &object)?;
        let moved = match existing {
            Some(e) if e.customer_id != object.customer_id => {
                self.moving_with(actor, &object).await?
            }
            _ => Vec::new(),
        };
        Ok(Draft {
            event_type: change_of(existing, &object),
            history: p.history.is_some(),
            object,
            parent_check: links.parent_check,
            customer_check: links.customer_check,
            moved,
        })
    }

    /// Links: the customer must exist; the parent must exist, be of the right kind and open.
    /// A child without a customer inherits its parent's.
    async fn check_links(
        &self,
        scope: Scope,
        p: &Proposal,
        existing: Option<&ContextObject>,
        known: &Known,
    ) -> Result<Links, CoreError> {
        // An import restores history as it was: its requests may be closed.
        let closed_allowed = p.history.is_some();
        let mut links = Links {
            customer_id: p.customer_id,
            parent_check: None,
            customer_check: None,
        };
        if p.kind == Kind::Customer {
            return Ok(links);
        }
        if let Some(parent) = p.parent_id {
            let moved = existing.is_none_or(|e| e.parent_id != Some(parent));
            let stored = self.linked(scope, parent, known).await?;
            let parent_object = check_parent(p.kind, stored.as_ref())?;
            if parent_object.kind == Kind::Request
                && !closed_allowed
                && self.effective_state(parent_object) == State::Closed
            {
                return Err(CoreError::ParentClosed);
            }
            match (links.customer_id, parent_object.customer_id) {
                (None, inherited) => links.customer_id = inherited,
                (Some(c), Some(pc)) if c != pc => {
                    return Err(CoreError::field(
                        "customerId",
                        "differs from the parent's customerId",
                    ))
                }
                _ => {}
            }
            if moved || parent_object.kind == Kind::Request {
                links.parent_check = Some(ParentCheck {
                    id: parent,
                    must_be_request: p.kind == Kind::Activity,
                    active_since: self.autoclose_cutoff(),
                    closed_allowed,
                });
            }
        }
        if let Some(c) = links.customer_id {
            if existing.is_none_or(|e| e.customer_id != Some(c)) {
                links.customer_check = Some(c);
                match self.linked(scope, c, known).await? {
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
        Ok(links)
    }

    /// A linked object: from `known` if it was read ahead, else from the store.
    async fn linked(
        &self,
        scope: Scope,
        id: ObjectId,
        known: &Known,
    ) -> Result<Option<StoredObject>, CoreError> {
        match known.get(&id) {
            Some(o) => Ok(o.clone()),
            None => Ok(self.store.object(scope, id).await?),
        }
    }

    /// The objects linked below a request or activity that moves to another customer (a
    /// request's activities and details, an activity's details), as they will be: linked to
    /// the new customer, one version on.
    pub(super) async fn moving_with(
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

    pub(super) async fn current_for_update(
        &self,
        actor: &Principal,
        kind: Kind,
        id: ObjectId,
    ) -> Result<ContextObject, CoreError> {
        let stored = self.load(actor.scope, kind, id).await?;
        if kind == Kind::Detail {
            return Err(CoreError::Closed("details are immutable".into()));
        }
        if kind == Kind::Request && self.effective_state(&stored) == State::Closed {
            return Err(CoreError::Closed("the request is closed".into()));
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
}

/// The event a write of `object` over `existing` records: a new object is created; one that
/// changes customer or parent moved; a request going from active to closed is closed.
fn change_of(existing: Option<&ContextObject>, object: &ContextObject) -> EventType {
    match existing {
        None => EventType::Created,
        Some(e) if e.customer_id != object.customer_id || e.parent_id != object.parent_id => {
            EventType::Moved
        }
        Some(e) if e.state == State::Active && object.state == State::Closed => EventType::Closed,
        Some(_) => EventType::Updated,
    }
}

/// The refusal of an object write, for its client.
pub(super) fn write_error(e: StoreError, object: &ContextObject) -> CoreError {
    match e {
        StoreError::ParentClosed => CoreError::ParentClosed,
        StoreError::ParentNotFound => {
            CoreError::field("parentId", "no such parent in this partition")
        }
        StoreError::CustomerNotFound => {
            CoreError::field("customerId", "no such customer in this partition")
        }
        StoreError::VersionConflict { current } => CoreError::VersionConflict { current },
        StoreError::DictionaryChanged => CoreError::Contended(
            "the dictionary kept changing while the object was written; retry".into(),
        ),
        StoreError::NotFound => not_found(object.kind, object.id),
        e => e.into(),
    }
}

/// The stored form of an object: UNENCRYPTED values in the clear, the others sealed under
/// `keys`, and every blind-index token it must be found by.
pub(super) fn seal(
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

pub(super) fn clean_tags(tags: Vec<String>, errors: &mut Vec<FieldError>) -> Vec<String> {
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
