//! Events as clients and the forwarding channels read them from the outbox: pages after a
//! position, scoped to the reader's org and partition, and the retention pruning.

use std::time::Duration;

use contextd_proto::events::Event;

use super::*;
use crate::store::StoredEvent;

/// Most events read from the outbox in one page.
pub const EVENT_PAGE: usize = 500;

impl Context {
    /// Up to `limit` events of the actor's org and partition after `after`, oldest first.
    /// Every role that reads objects may read events: they carry no field values.
    pub async fn events_after(
        &self,
        actor: &Principal,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, CoreError> {
        Self::require_object_access(actor)?;
        let page = self
            .store
            .events_after(Some(actor.scope), after, limit.min(EVENT_PAGE))
            .await?;
        Ok(page.into_iter().map(|e| e.event).collect())
    }

    /// The newest event id of the actor's org and partition (0: none): where a stream that
    /// does not resume starts.
    pub async fn last_event_id(&self, actor: &Principal) -> Result<u64, CoreError> {
        Self::require_object_access(actor)?;
        Ok(self.store.last_event_id(Some(actor.scope)).await?)
    }

    /// The newest event id ever given in the database, which pruning never lowers: no id a
    /// client was sent is above it.
    pub async fn newest_event_id(&self) -> Result<u64, CoreError> {
        Ok(self.store.last_event_id(None).await?)
    }

    /// Up to `limit` events of every org and partition after `after` (the server's own
    /// channels: the hub, NATS), oldest first.
    pub async fn all_events_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, CoreError> {
        Ok(self
            .store
            .events_after(None, after, limit.min(EVENT_PAGE))
            .await?)
    }

    /// Deletes events (and webhook delivery attempts) older than `retention`; returns how
    /// many events.
    pub async fn prune_events(&self, retention: Duration) -> Result<u64, CoreError> {
        let retention = chrono::Duration::from_std(retention)
            .map_err(|_| CoreError::BadRequest("event retention out of range".into()))?;
        match now_ms().checked_sub_signed(retention) {
            Some(before) => Ok(self.store.prune_events(before).await?),
            // Longer than time goes back: nothing is old enough.
            None => Ok(0),
        }
    }
}
