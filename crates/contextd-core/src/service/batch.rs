//! Batches: up to [`MAX_BATCH`] objects of one kind checked one by one and written in one
//! transaction, with one result per item; and imports, which keep each object's id and
//! history and so can be re-run without changing anything.

use std::collections::{HashMap, HashSet};

use super::writes::{Known, Proposal, Sealing};
use super::*;

pub use contextd_proto::object::MAX_BATCH;

/// What became of one item of a batch.
#[derive(Debug)]
pub enum BatchOutcome {
    /// Written, as this version.
    Created(Written),
    /// An import whose id this partition holds already, as an object of the same kind: left
    /// as it is (this is what makes re-running an import change nothing).
    Exists(Written),
    /// Refused, and why; nothing of it was written.
    Failed(CoreError),
}

/// The id, version and time of an object a batch wrote or found.
#[derive(Clone, Copy, Debug)]
pub struct Written {
    /// The object's id.
    pub id: ObjectId,
    /// Its version.
    pub version: i64,
    /// Its last update.
    pub last_updated: DateTime<Utc>,
}

/// Whether an error of a write concerns the object written (answered for that item) rather
/// than the service (storage, keys, audit: the whole batch fails).
fn refuses_item(e: &CoreError) -> bool {
    !matches!(
        e,
        CoreError::Store(StoreError::Backend(_))
            | CoreError::Keys(_)
            | CoreError::AuditUnavailable(_)
    )
}

impl Written {
    fn of_stored(o: &StoredObject) -> Self {
        Self {
            id: o.id,
            version: o.version,
            last_updated: o.last_updated,
        }
    }
}

impl Context {
    /// Creates up to [`MAX_BATCH`] objects of `kind`: each item is checked as a create
    /// would check it, and those that pass are written in one transaction. With `import`
    /// (admins only), each item keeps the `id`, `created`, `lastUpdated`, `version` and
    /// `contributors` it carries, may hang under a closed request, and an id this partition
    /// holds already is answered [`BatchOutcome::Exists`].
    pub async fn create_batch(
        &self,
        actor: &Principal,
        kind: Kind,
        items: Vec<ObjectInput>,
        import: bool,
    ) -> Result<Vec<BatchOutcome>, CoreError> {
        Self::require_object_access(actor)?;
        if import {
            actor.require(&[Role::Admin])?;
        }
        if items.len() > MAX_BATCH {
            return Err(CoreError::field(
                "items",
                format!("at most {MAX_BATCH} objects in one batch"),
            ));
        }
        let proposals: Vec<Proposal> = items
            .into_iter()
            .map(|input| match import {
                true => Proposal::of_import(kind, input),
                false => Proposal::of_input(kind, input),
            })
            .collect();
        let mut outcomes: Vec<Option<BatchOutcome>> = proposals.iter().map(|_| None).collect();
        if import {
            self.find_taken(actor.scope, kind, &proposals, &mut outcomes)
                .await?;
        }
        let known = self.read_links(actor.scope, &proposals, &outcomes).await?;
        let mut drafts = Vec::new();
        for (i, proposal) in proposals.into_iter().enumerate() {
            if outcomes[i].is_some() {
                continue;
            }
            match self.draft_with(actor, None, proposal, &known).await {
                Ok(draft) => drafts.push((i, draft)),
                Err(e) => outcomes[i] = Some(BatchOutcome::Failed(e)),
            }
        }
        if !drafts.is_empty() {
            // Audited before the write, so that a refused audit leaves nothing written.
            let action = if import {
                "objects.import"
            } else {
                "objects.batch"
            };
            let detail = format!("{} {}", drafts.len(), kind.plural());
            self.audit_action(Some(actor), actor.scope, action, None, Vec::new(), detail)
                .await?;
            let (slots, sealings) = self.sealings(actor.scope, kind, drafts).await?;
            for (i, outcome) in slots
                .into_iter()
                .zip(self.write_all(actor, sealings).await?)
            {
                outcomes[i] = Some(outcome);
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| BatchOutcome::Failed(CoreError::Conflict("not written".into())))
            })
            .collect())
    }

    /// Writes the sealed drafts in one transaction. When the store refuses it for one item
    /// (a parent closed or a customer erased meanwhile, the dictionary changed under a value),
    /// the items are written one by one, so that each gets its own answer.
    async fn write_all(
        &self,
        actor: &Principal,
        sealings: Vec<Sealing>,
    ) -> Result<Vec<BatchOutcome>, CoreError> {
        let created = |o: ContextObject| {
            BatchOutcome::Created(Written {
                id: o.id,
                version: o.version,
                last_updated: o.last_updated,
            })
        };
        let single = sealings.len() == 1;
        let backup = if single { Vec::new() } else { sealings.clone() };
        match self.persist_all(actor, sealings, None).await {
            Ok(written) => return Ok(written.into_iter().map(created).collect()),
            Err(e) if single && refuses_item(&e) => return Ok(vec![BatchOutcome::Failed(e)]),
            Err(e) if single || !refuses_item(&e) => return Err(e),
            Err(_) => {}
        }
        let mut outcomes = Vec::with_capacity(backup.len());
        for sealing in backup {
            outcomes.push(match self.persist_all(actor, vec![sealing], None).await {
                Ok(mut written) => match written.pop() {
                    Some(o) => created(o),
                    None => BatchOutcome::Failed(CoreError::Conflict("not written".into())),
                },
                Err(e) if refuses_item(&e) => BatchOutcome::Failed(e),
                Err(e) => return Err(e),
            });
        }
        Ok(outcomes)
    }

    /// Marks the imports whose id is taken in scope (`Exists` when by an object of the same
    /// kind), those whose id comes twice in the batch, and customers once erased here (an
    /// import must not bring back what the right to be forgotten removed).
    async fn find_taken(
        &self,
        scope: Scope,
        kind: Kind,
        proposals: &[Proposal],
        outcomes: &mut [Option<BatchOutcome>],
    ) -> Result<(), CoreError> {
        let ids: Vec<ObjectId> = proposals
            .iter()
            .filter_map(|p| p.history.as_ref().map(|h| h.id))
            .collect();
        let taken: HashMap<ObjectId, StoredObject> = self
            .store
            .objects(scope, &ids)
            .await?
            .into_iter()
            .map(|o| (o.id, o))
            .collect();
        let erased: HashSet<ObjectId> = match kind {
            Kind::Customer => self.store.erased(scope, &ids).await?.into_iter().collect(),
            _ => HashSet::new(),
        };
        let mut seen = HashSet::new();
        for (p, outcome) in proposals.iter().zip(outcomes.iter_mut()) {
            let Some(id) = p.history.as_ref().map(|h| h.id) else {
                continue;
            };
            *outcome = match taken.get(&id) {
                _ if !seen.insert(id) => Some(BatchOutcome::Failed(CoreError::field(
                    "id",
                    "comes twice in this batch",
                ))),
                None if erased.contains(&id) => Some(BatchOutcome::Failed(CoreError::Conflict(
                    format!("customer {id} was erased here and is not brought back"),
                ))),
                Some(o) if o.kind == kind => Some(BatchOutcome::Exists(Written::of_stored(o))),
                Some(o) => Some(BatchOutcome::Failed(CoreError::AlreadyExists(format!(
                    "the id {id} is taken by a {} in this partition",
                    o.kind
                )))),
                None => None,
            };
        }
        Ok(())
    }

    /// Reads, in one store call, the parents and customers the pending items name.
    async fn read_links(
        &self,
        scope: Scope,
        proposals: &[Proposal],
        outcomes: &[Option<BatchOutcome>],
    ) -> Result<Known, CoreError> {
        let mut wanted: Vec<ObjectId> = proposals
            .iter()
            .zip(outcomes)
            .filter(|(_, o)| o.is_none())
            .flat_map(|(p, _)| [p.parent_id, p.customer_id])
            .flatten()
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut known: Known = wanted.iter().map(|id| (*id, None)).collect();
        for o in self.store.objects(scope, &wanted).await? {
            known.insert(o.id, Some(o));
        }
        Ok(known)
    }

    /// The keys of each draft (new customers' keys made in one key-store write), with the
    /// index of its item.
    async fn sealings(
        &self,
        scope: Scope,
        kind: Kind,
        drafts: Vec<(usize, Draft)>,
    ) -> Result<(Vec<usize>, Vec<Sealing>), CoreError> {
        let keys = if kind == Kind::Customer {
            let ids: Vec<ObjectId> = drafts.iter().map(|(_, d)| d.object.id).collect();
            self.keys.create_customer_keys(scope, &ids).await?
        } else {
            let mut keys = Vec::with_capacity(drafts.len());
            for (_, d) in &drafts {
                keys.push(self.keys.object_keys(scope, d.object.customer_id).await?);
            }
            keys
        };
        Ok(drafts
            .into_iter()
            .zip(keys)
            .map(|((i, draft), keys)| {
                let sealing = Sealing {
                    draft,
                    expected_version: None,
                    keys,
                };
                (i, sealing)
            })
            .unzip())
    }
}
