//! The events outbox: [`EventStore`], the change events written in the same transaction as
//! the change they describe, the durable cursors of the channels that forward them, and
//! [`WebhookStore`], the receivers an organization registered.
//!
//! An event id increases with every event of the whole database, so also within each
//! organization and partition; a reader that has seen id `n` has seen every event up to `n`
//! (a backend never makes an event readable below one it already showed: PostgreSQL assigns
//! ids after commit, in [`EventStore::publish_events`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextd_proto::events::{
    addressed_to, Delivery, DeliveryOutcome, Event, EventFilter, EventType,
};
use tokio::sync::watch;
use uuid::Uuid;

use super::{StoreError, StoredObject};
use crate::ids::Scope;
use crate::object::{Contributor, ContributorType, Kind};

/// The change an object write records in the outbox: what happened, and who did it.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// What happened.
    pub event_type: EventType,
    /// Who did it.
    pub by: Contributor,
    /// An import restoring history: its event addresses no agent (no screen pop for a call
    /// of years ago).
    pub history: bool,
}

/// The contributor of changes contextd makes by itself (the auto-close sweep).
pub fn system_contributor() -> Contributor {
    Contributor {
        id: "contextd".into(),
        kind: ContributorType::Machine,
    }
}

/// An event as the outbox holds it: the wire event and its scope.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// Org and partition.
    pub scope: Scope,
    /// The event (its `id` assigned by the store).
    pub event: Event,
}

impl StoredEvent {
    /// The event an object write records (`id` 0: the store assigns it).
    pub fn of_write(object: &StoredObject, change: &Change) -> Self {
        let mut event = Self::of(object, change.event_type, &change.by);
        if change.history {
            event.event.addressed_to = None;
        }
        event
    }

    /// The event an object write, delete or erase records (`id` 0: the store assigns it).
    pub fn of(object: &StoredObject, event_type: EventType, by: &Contributor) -> Self {
        Self {
            scope: object.scope,
            event: Event {
                id: 0,
                event_type,
                object_id: object.id,
                object_type: object.kind,
                customer_id: object.customer_id,
                parent_id: object.parent_id,
                media_type: object.media_type,
                state: object.state,
                last_updated: object.last_updated,
                contributor: by.clone(),
                time: crate::time::now_ms(),
                // Writes only: a delete's event is built from the row the store removes.
                addressed_to: match (object.kind, event_type) {
                    (_, EventType::Deleted | EventType::Erased) => None,
                    (Kind::Activity, _) => addressed_to(&object.tags).map(str::to_owned),
                    _ => None,
                },
            },
        }
    }
}

/// The outbox and the cursors that read it.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Up to `limit` readable events with an id above `after`, oldest first: of one scope, or
    /// (`None`) of every org and partition.
    async fn events_after(
        &self,
        scope: Option<Scope>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    /// The id of the newest readable event of the scope, 0 if there is none; with `None`, the
    /// newest id ever given in the database, which pruning never lowers (so any id a client
    /// was sent is at most this).
    async fn last_event_id(&self, scope: Option<Scope>) -> Result<u64, StoreError>;
    /// Makes committed events readable, in order; returns how many became readable. SQLite's
    /// single writer commits in id order and has nothing to do; PostgreSQL assigns ids here,
    /// one publisher at a time across instances, so that no id appears below one already read.
    async fn publish_events(&self) -> Result<u64, StoreError>;
    /// Changes whenever events may have become readable: this instance's writes, and (on
    /// PostgreSQL) any instance's, through LISTEN/NOTIFY. A wake-up, not the truth: readers
    /// read the outbox.
    fn event_signal(&self) -> watch::Receiver<u64>;
    /// Deletes events recorded before `before`, and delivery attempts made before it;
    /// returns how many events.
    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Creates the named cursor at `position` unless it exists.
    async fn ensure_cursor(&self, name: &str, position: u64) -> Result<(), StoreError>;
    /// Takes (or renews) the lease of a cursor for `owner` until `until`, if it is free (no
    /// lease, or one expired before `now`) or already `owner`'s; returns its position, or
    /// `None` when another owner holds it or it does not exist.
    async fn claim_cursor(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<u64>, StoreError>;
    /// Moves a cursor `owner` holds to `position`; `false` (and nothing changes) when the
    /// lease is no longer `owner`'s.
    async fn advance_cursor(
        &self,
        name: &str,
        owner: &str,
        position: u64,
    ) -> Result<bool, StoreError>;
}

/// A webhook as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookRecord {
    /// Its id.
    pub id: Uuid,
    /// The org and partition whose events it receives.
    pub scope: Scope,
    /// Where it delivers.
    pub url: String,
    /// Which events.
    pub filter: EventFilter,
    /// A name for people.
    pub description: String,
    /// The signing secret, sealed under the partition's data key.
    pub secret: Vec<u8>,
    /// Registered at.
    pub created: DateTime<Utc>,
}

impl WebhookRecord {
    /// The name of its delivery cursor ([`EventStore::claim_cursor`]).
    pub fn cursor_name(&self) -> String {
        webhook_cursor(self.id)
    }
}

/// The cursor name of webhook `id`.
pub fn webhook_cursor(id: Uuid) -> String {
    format!("webhook:{id}")
}

/// A webhook with how far its deliveries got.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookState {
    /// The webhook.
    pub webhook: WebhookRecord,
    /// Its cursor: the last event delivered or dead-lettered.
    pub position: u64,
    /// Dead-lettered attempts recorded (and not yet pruned).
    pub dead_letters: u64,
}

/// Registered webhooks and their delivery attempts.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Stores a webhook and creates its cursor at `position` (deliveries start after it).
    async fn create_webhook(
        &self,
        webhook: &WebhookRecord,
        position: u64,
    ) -> Result<(), StoreError>;
    /// The webhooks of a scope, or (`None`) of every org and partition, oldest first.
    async fn webhooks(&self, scope: Option<Scope>) -> Result<Vec<WebhookState>, StoreError>;
    /// One webhook of a scope.
    async fn webhook(&self, scope: Scope, id: Uuid) -> Result<Option<WebhookState>, StoreError>;
    /// Deletes a webhook with its cursor and attempts; `NotFound` if absent.
    async fn delete_webhook(&self, scope: Scope, id: Uuid) -> Result<(), StoreError>;
    /// Records one delivery attempt (its `id` is assigned); returns the id.
    async fn record_delivery(&self, webhook: Uuid, delivery: &Delivery) -> Result<u64, StoreError>;
    /// A webhook's attempts, newest first, optionally of one outcome.
    async fn deliveries(
        &self,
        webhook: Uuid,
        outcome: Option<DeliveryOutcome>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError>;
}
