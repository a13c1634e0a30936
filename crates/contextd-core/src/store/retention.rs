//! Retention: [`RetentionStore`] finds the objects an organization's retention rules let go
//! and deletes them. The rules themselves (which kinds, channels and field sets, for how
//! long, what is kept forever) are resolved by the core into [`ExpirySelector`]s; a store
//! only answers one selector at a time, as [`ExpirySelector::selects`] defines.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{PagePosition, StoreError, StoredObject};
use crate::ids::{ObjectId, Scope};
use crate::object::{Contributor, Kind, MediaType, State};

/// Objects of one kind last written before a time, narrowed by channel and field set, less
/// those a rule keeps forever. What it selects is defined by [`ExpirySelector::selects`].
#[derive(Clone, Debug, PartialEq)]
pub struct ExpirySelector {
    /// The kind (never `customer`: customers leave through erasure).
    pub kind: Kind,
    /// Only activities of this channel.
    pub media_type: Option<MediaType>,
    /// Only objects carrying this field set.
    pub fieldset: Option<String>,
    /// Only objects whose `last_updated` is before this (whole milliseconds).
    pub updated_before: DateTime<Utc>,
    /// Only closed objects (requests: one still active is never deleted by retention).
    pub only_closed: bool,
    /// Objects any of these selects are kept.
    pub keep: Vec<Kept>,
}

/// What a rule that keeps forever selects within a kind: objects of a channel, objects
/// carrying a field set, or both. With neither it selects every object of the kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    /// Activities of this channel.
    pub media_type: Option<MediaType>,
    /// Objects carrying this field set.
    pub fieldset: Option<String>,
}

impl Kept {
    /// Whether this exception keeps `object`.
    pub fn keeps(&self, object: &StoredObject) -> bool {
        self.media_type.is_none_or(|m| object.media_type == Some(m))
            && self
                .fieldset
                .as_ref()
                .is_none_or(|f| object.fieldsets.contains(f))
    }
}

impl ExpirySelector {
    /// Whether the selector selects `object`: the reference every backend's
    /// [`RetentionStore::expired`] answers to (the conformance suite compares them).
    pub fn selects(&self, object: &StoredObject) -> bool {
        object.kind == self.kind
            && object.last_updated < self.updated_before
            && (!self.only_closed || object.state == State::Closed)
            && self.media_type.is_none_or(|m| object.media_type == Some(m))
            && self
                .fieldset
                .as_ref()
                .is_none_or(|f| object.fieldsets.contains(f))
            && !self.keep.iter().any(|k| k.keeps(object))
    }
}

/// Finding and deleting expired objects.
#[async_trait]
pub trait RetentionStore: Send + Sync + 'static {
    /// Up to `limit` objects of the scope that `selector` selects, oldest `last_updated`
    /// first (then by id), strictly after `after` in that order: their positions
    /// (`last_updated`, id).
    async fn expired(
        &self,
        scope: Scope,
        selector: &ExpirySelector,
        after: Option<PagePosition>,
        limit: usize,
    ) -> Result<Vec<PagePosition>, StoreError>;

    /// Deletes, in one transaction, the objects of the scope among `ids` (at most
    /// [`super::MAX_IDS_READ`]) still last written before `updated_before` (a write since they
    /// were found makes them young again: they are left alone), each with its tokens and an
    /// `object.deleted` event by `by`; returns the ids deleted. Linked objects keep their
    /// links, as after a delete of one object.
    async fn delete_expired(
        &self,
        scope: Scope,
        ids: &[ObjectId],
        updated_before: DateTime<Utc>,
        by: &Contributor,
    ) -> Result<Vec<ObjectId>, StoreError>;
}
