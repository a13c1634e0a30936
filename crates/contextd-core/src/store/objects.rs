//! Context objects as stored: [`ObjectStore`], the records it speaks, and the parent rules.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Change, RawObject, SearchPlan, StoreError, Token};
use crate::ids::{ObjectId, Scope};
use crate::object::{Contributor, DetailType, Kind, MediaType, State};

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

/// The most ids one [`ObjectStore::objects`] call reads.
pub const MAX_IDS_READ: usize = 2_000;

/// Refuses a read of more than [`MAX_IDS_READ`] ids (both backends check it the same way).
pub fn check_ids_read(ids: &[ObjectId]) -> Result<(), StoreError> {
    if ids.len() > MAX_IDS_READ {
        return Err(StoreError::Backend(format!(
            "at most {MAX_IDS_READ} ids in one read"
        )));
    }
    Ok(())
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
    /// The event the write records in the outbox, in its transaction.
    pub change: Change,
}

/// What [`ObjectStore::erase_customer`] found or did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Erasure {
    /// Objects deleted (the customer and everything linked to it), as first recorded.
    pub objects: u64,
    /// Whether the customer's key is known destroyed ([`ObjectStore::complete_erasure`]).
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
    /// The parent may be a closed request (an import restoring history as it was); its
    /// `touched` is still refreshed, never moved back.
    pub closed_allowed: bool,
}

/// The parent of a write as the write's transaction read it: what [`ParentCheck::check`] judges.
#[derive(Clone, Copy, Debug)]
pub struct ParentRow {
    /// Its kind.
    pub kind: Kind,
    /// Its state as stored.
    pub state: State,
    /// Its last write, its own or a child's.
    pub touched: DateTime<Utc>,
}

impl ParentCheck {
    /// The parent rules, applied to the parent as read (`None`: no such object in scope).
    /// `Ok(true)`: the parent is an open request, whose `touched` the write must refresh;
    /// `Ok(false)`: a parent of another kind, which may be any (a detail's) and is left alone.
    /// `ParentNotFound` if it is missing or must be a request and is not; `ParentClosed` if it
    /// is a request closed, or untouched since before the auto-close cutoff (unless
    /// [`ParentCheck::closed_allowed`]).
    pub fn check(&self, parent: Option<ParentRow>) -> Result<bool, StoreError> {
        let parent = parent.ok_or(StoreError::ParentNotFound)?;
        if parent.kind != Kind::Request {
            return if self.must_be_request {
                Err(StoreError::ParentNotFound)
            } else {
                Ok(false)
            };
        }
        // Times are stored to the millisecond: the cutoff is compared at that precision.
        let cutoff = crate::time::from_millis(self.active_since.timestamp_millis());
        if !self.closed_allowed && (parent.state != State::Active || parent.touched < cutoff) {
            return Err(StoreError::ParentClosed);
        }
        Ok(true)
    }
}

/// Position after which the next page starts: newest first by (time, id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagePosition {
    /// The ordering time of the last item returned.
    pub time: DateTime<Utc>,
    /// Its id (tie-breaker).
    pub id: ObjectId,
}

/// A page of objects, newest first: decoded ([`StoredObject`]), or as their rows hold them
/// ([`RawObject`], a timeline's).
#[derive(Clone, Debug)]
pub struct ObjectPage<T = StoredObject> {
    /// The objects.
    pub items: Vec<T>,
    /// Total number of matches, all pages together.
    pub total: u64,
    /// Where the next page starts, if there is one.
    pub next: Option<PagePosition>,
}

impl<T> Default for ObjectPage<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            total: 0,
            next: None,
        }
    }
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

/// Context objects: writes with their blind-index tokens, reads, searches, timelines, the
/// auto-close sweep, lab flushes and customer erasure.
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Inserts or updates one object with its tokens and its event ([`ObjectWrite::change`]),
    /// atomically, durable when it returns.
    async fn write_object(&self, write: &ObjectWrite) -> Result<(), StoreError>;
    /// Writes several objects in one transaction: all of them, or (on any error) none. Used
    /// when an object moves to another customer and its linked objects move with it. Every
    /// write records its own event.
    async fn write_objects(&self, writes: &[ObjectWrite]) -> Result<(), StoreError>;
    /// Reads one object of any kind in scope.
    async fn object(&self, scope: Scope, id: ObjectId) -> Result<Option<StoredObject>, StoreError>;
    /// Reads the objects of any kind in scope among `ids` (at most [`MAX_IDS_READ`]), in no
    /// particular order; ids not found are left out.
    async fn objects(
        &self,
        scope: Scope,
        ids: &[ObjectId],
    ) -> Result<Vec<StoredObject>, StoreError>;
    /// Deletes one object (and its tokens) with an `object.deleted` event by `by`; `NotFound`
    /// if absent.
    async fn delete_object(
        &self,
        scope: Scope,
        id: ObjectId,
        by: &Contributor,
    ) -> Result<(), StoreError>;
    /// Searches, returning whole objects.
    async fn search(&self, scope: Scope, plan: &SearchPlan) -> Result<ObjectPage, StoreError>;
    /// Searches, returning ids only.
    async fn search_ids(&self, scope: Scope, plan: &SearchPlan) -> Result<IdPage, StoreError>;
    /// A customer's journey, newest `created` first, as its rows hold it: one range read of
    /// objects stored in journey order, encoded straight into a response by the core.
    async fn timeline(
        &self,
        scope: Scope,
        query: &TimelineQuery,
    ) -> Result<ObjectPage<RawObject>, StoreError>;
    /// Closes every active request (all orgs) untouched since before `cutoff`, each with an
    /// `object.closed` event by [`super::system_contributor`]; returns how many.
    async fn close_stale_requests(
        &self,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// Deletes every object of a kind in scope, each with an `object.deleted` event by `by`;
    /// returns how many.
    async fn flush(&self, scope: Scope, kind: Kind, by: &Contributor) -> Result<u64, StoreError>;
    /// Erases a customer, idempotently. The first call deletes the customer and every object
    /// whose `customer_id` is it (with their tokens) and records the erasure, in one
    /// transaction, with an `object.erased` event by `by` for each object; a later call (a
    /// retry, perhaps of a half-done erase) finds that record and changes nothing. `NotFound`
    /// if there is neither the customer nor a record of its erasure.
    async fn erase_customer(
        &self,
        scope: Scope,
        customer: ObjectId,
        by: &Contributor,
    ) -> Result<Erasure, StoreError>;
    /// Marks a recorded erasure completed (the customer's key is destroyed).
    async fn complete_erasure(&self, scope: Scope, customer: ObjectId) -> Result<(), StoreError>;
    /// The customers among `ids` (at most [`MAX_IDS_READ`]) recorded as erased in scope: an
    /// import must not bring them back.
    async fn erased(&self, scope: Scope, ids: &[ObjectId]) -> Result<Vec<ObjectId>, StoreError>;
    /// Up to `limit` recorded erasures (all orgs) not yet completed, oldest first.
    async fn pending_erasures(&self, limit: usize) -> Result<Vec<(Scope, ObjectId)>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::from_millis;

    fn check(must_be_request: bool, active_since: DateTime<Utc>) -> ParentCheck {
        ParentCheck {
            id: ObjectId::new(),
            must_be_request,
            active_since,
            closed_allowed: false,
        }
    }

    fn row(kind: Kind, state: State, touched_ms: i64) -> Option<ParentRow> {
        Some(ParentRow {
            kind,
            state,
            touched: from_millis(touched_ms),
        })
    }

    #[test]
    fn parent_rules() {
        let cutoff = from_millis(1_000);
        let activity = check(true, cutoff);
        let detail = check(false, cutoff);
        for c in [activity, detail] {
            assert!(matches!(c.check(None), Err(StoreError::ParentNotFound)));
            let open = row(Kind::Request, State::Active, 1_000);
            assert!(
                matches!(c.check(open), Ok(true)),
                "an open request is refreshed"
            );
            let closed = row(Kind::Request, State::Closed, 5_000);
            assert!(matches!(c.check(closed), Err(StoreError::ParentClosed)));
            let stale = row(Kind::Request, State::Active, 999);
            assert!(matches!(c.check(stale), Err(StoreError::ParentClosed)));
        }
        let customer = row(Kind::Customer, State::Active, 0);
        assert!(matches!(
            activity.check(customer),
            Err(StoreError::ParentNotFound)
        ));
        assert!(
            matches!(detail.check(customer), Ok(false)),
            "a detail may hang on any kind, which is left alone"
        );
    }

    #[test]
    fn an_import_may_hang_under_a_closed_request_but_not_under_a_missing_one() {
        let import = ParentCheck {
            closed_allowed: true,
            ..check(true, from_millis(1_000))
        };
        let closed = row(Kind::Request, State::Closed, 5_000);
        assert!(matches!(import.check(closed), Ok(true)));
        let stale = row(Kind::Request, State::Active, 999);
        assert!(matches!(import.check(stale), Ok(true)));
        assert!(matches!(
            import.check(None),
            Err(StoreError::ParentNotFound)
        ));
        let customer = row(Kind::Customer, State::Active, 0);
        assert!(matches!(
            import.check(customer),
            Err(StoreError::ParentNotFound)
        ));
    }

    #[test]
    fn the_cutoff_is_compared_to_the_millisecond_as_stored() {
        let cutoff = from_millis(1_000) + chrono::Duration::microseconds(500);
        let touched_in_that_millisecond = row(Kind::Request, State::Active, 1_000);
        assert!(matches!(
            check(true, cutoff).check(touched_in_that_millisecond),
            Ok(true)
        ));
    }
}
