//! Object operations as clients call them: create, read, replace, patch, delete, search,
//! timeline and lab flush.

use super::writes::Proposal;
use super::*;

impl Context {
    pub(super) fn require_object_access(actor: &Principal) -> Result<(), CoreError> {
        actor.require(&[Role::Admin, Role::Agent, Role::Machine, Role::Partner])
    }

    /// Reads a stored object of the expected kind.
    pub(super) async fn load(
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

    pub(super) fn effective_state(&self, o: &StoredObject) -> State {
        self.state_as_read(o.kind, o.state, o.touched)
    }

    /// A state as written, with auto-close applied: an active request untouched for the
    /// auto-close period reads as closed.
    pub(super) fn state_as_read(&self, kind: Kind, state: State, touched: DateTime<Utc>) -> State {
        if kind == Kind::Request && state == State::Active && touched < self.autoclose_cutoff() {
            State::Closed
        } else {
            state
        }
    }

    /// Creates an object.
    pub async fn create(
        &self,
        actor: &Principal,
        kind: Kind,
        input: ObjectInput,
    ) -> Result<ContextObject, CoreError> {
        Self::require_object_access(actor)?;
        let draft = self
            .draft(actor, None, Proposal::of_input(kind, input))
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
            return Err(CoreError::VersionConflict {
                current: current.version,
            });
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
                Some(&current),
                Proposal {
                    kind,
                    customer_id,
                    parent_id,
                    state,
                    media_type,
                    detail_type,
                    fieldsets: input.fieldsets,
                    data,
                    tags: input.tags,
                    history: None,
                    errors,
                },
            )
            .await
            .map_err(|e| hide_withheld(e, &kept))?;
        self.persist(actor, draft, Some(expected), None, "replace")
            .await
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
        let expected = if_match.or(patch_version(kind, &patch)?);
        for _ in 0..PATCH_RETRIES {
            let current = self.current_for_update(actor, kind, id).await?;
            if let Some(v) = expected {
                if current.version != v {
                    return Err(CoreError::VersionConflict {
                        current: current.version,
                    });
                }
            }
            let mut proposal = merge_patch(kind, &current, &patch);
            let kept = self
                .keep_withheld(actor, &current, &mut proposal.data)
                .await?;
            let draft = self
                .draft(actor, Some(&current), proposal)
                .await
                .map_err(|e| hide_withheld(e, &kept))?;
            match self
                .persist(actor, draft, Some(current.version), None, "patch")
                .await
            {
                Err(CoreError::VersionConflict { .. }) if expected.is_none() => continue,
                other => return other,
            }
        }
        Err(CoreError::Contended(
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
            .delete_object(actor.scope, id, &actor.contributor())
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
        // A search by sealed values is audited once per request: in the `pii.read` entry of
        // each customer it reveals (one, for a lookup), which names the fields searched by, or
        // as a `pii.search` entry of its own when it reveals nothing (ids only, no match).
        let via = match sealed_keys.as_slice() {
            [] => "search".to_owned(),
            keys => format!("search by {}", keys.join(", ")),
        };
        let searched = |keys: Vec<String>| {
            (!keys.is_empty()).then(|| {
                crate::audit::audit_entry(
                    Some(actor),
                    scope,
                    "pii.search",
                    Some((Some(kind), String::new())),
                    keys,
                    String::new(),
                )
            })
        };
        if request.summary {
            let page = self.store.search_ids(scope, &plan).await?;
            self.audit
                .record(searched(sealed_keys).into_iter().collect())
                .await?;
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
        let searched = if revealed.is_empty() {
            searched(sealed_keys)
        } else {
            None
        };
        self.audit_revealed_with(actor, revealed, &via, searched)
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

    /// [`Self::timeline`] as the JSON of its [`TimelinePage`], written straight from the
    /// stored rows (see `encode`): what the HTTP API answers.
    pub async fn timeline_json(
        &self,
        actor: &Principal,
        customer: ObjectId,
        media_type: Option<MediaType>,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<Vec<u8>, CoreError> {
        let page = self
            .timeline_rows(actor, customer, media_type, limit, cursor)
            .await?;
        let mut revealed = Revealed::default();
        let json = self.encode_page(actor, page, &mut revealed).await?;
        self.audit_revealed(actor, revealed, "timeline").await?;
        Ok(json)
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
        let page = self
            .timeline_rows(actor, customer, media_type, limit, cursor)
            .await?;
        let objects = page
            .items
            .into_iter()
            .map(|o| o.into_object(actor.scope))
            .collect::<Result<Vec<_>, _>>()?;
        let items = self.reveal_page(actor, objects, revealed).await?;
        Ok(TimelinePage {
            items,
            total: page.total,
            next_cursor: page.next.as_ref().map(search::encode_cursor),
        })
    }

    /// Checks a timeline request and reads its page as stored.
    async fn timeline_rows(
        &self,
        actor: &Principal,
        customer: ObjectId,
        media_type: Option<MediaType>,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<ObjectPage<RawObject>, CoreError> {
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
        Ok(self
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
            .await?)
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
        match self
            .store
            .flush(actor.scope, kind, &actor.contributor())
            .await
        {
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

/// Checks a merge patch's members (only those a client may change) and returns the `version`
/// it names, if any.
fn patch_version(kind: Kind, patch: &ObjectPatch) -> Result<Option<i64>, CoreError> {
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
    match patch.get("version") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| CoreError::field("version", "expected an integer")),
    }
}

/// The object `current` becomes under a JSON merge patch (RFC 7396): `data` keys merge (null
/// removes), the other members replace. Problems are collected in the proposal's errors.
fn merge_patch(kind: Kind, current: &ContextObject, patch: &ObjectPatch) -> Proposal {
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
    let strings = |name: &str, errors: &mut Vec<FieldError>| -> Vec<String> {
        let value = patch.get(name).cloned().unwrap_or_default();
        serde_json::from_value(value).unwrap_or_else(|_| {
            errors.push(FieldError::new(name, "expected an array of strings"));
            Vec::new()
        })
    };
    let tags = match patch.get("tags") {
        None => current.tags.clone(),
        Some(serde_json::Value::Null) => Vec::new(),
        Some(_) => strings("tags", &mut errors),
    };
    let fieldsets = match patch.get("fieldsets") {
        None => current.fieldsets.clone(),
        Some(_) => strings("fieldsets", &mut errors),
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
    Proposal {
        kind,
        customer_id,
        parent_id,
        state,
        media_type: current.media_type,
        detail_type: current.detail_type,
        fieldsets,
        data,
        tags,
        history: None,
        errors,
    }
}
