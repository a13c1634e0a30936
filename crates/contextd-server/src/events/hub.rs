//! The in-process hub: one task tails the outbox and fans each event out to this instance's
//! Server-Sent Events subscribers of its org and partition (`routes/events.rs`).
//!
//! The outbox is the truth: the tail reads it after the store's event signal and at least every
//! [`POLL_EVERY`], in id order, so the hub never skips an event. Memory stays bounded however
//! slow a client is: each subscriber has a buffer of `sse_buffer` events plus one slot kept for
//! the overflow marker; a subscriber whose buffer is full when an event for it comes gets the
//! marker and is dropped, and its stream tells the client where to resume.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use contextd_core::service::events::EVENT_PAGE;
use contextd_core::service::Context;
use contextd_core::store::StoredEvent;
use contextd_core::Scope;
use contextd_proto::events::{Event, EventFilter};
use tokio::sync::{mpsc, watch};

/// How often the outbox is read without a wake-up (a missed signal, a write by another
/// process on the same SQLite files).
pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// How long the tail waits after a wake-up before reading, so that a burst of commits is
/// read once rather than once per commit (far below what a person notices on a screen pop).
const COALESCE: Duration = Duration::from_millis(5);

/// What a subscriber receives, in id order.
#[derive(Clone, Debug)]
pub enum Delivery {
    /// An event of its scope that passed its filter.
    Event(Arc<Event>),
    /// Its buffer was full: nothing after the events received before this was delivered, and
    /// nothing more will be.
    Overflow,
}

/// A live subscription, and where the hub stood when it was made: every event above
/// `position` of the scope that passes the filter comes through `receiver` (until an
/// [`Delivery::Overflow`], or the hub's [`close`](Hub::close)); those up to it are read
/// from the outbox.
#[derive(Debug)]
pub struct Subscription {
    /// The events, in id order.
    pub receiver: mpsc::Receiver<Delivery>,
    /// The id of the last event the hub had fanned out (or that existed when it started).
    pub position: u64,
}

/// Why a subscription was not made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// The tail has not yet read where the outbox ends (the store did not answer).
    #[error("the event feed is starting; retry shortly")]
    Starting,
    /// The server is shutting down.
    #[error("the server is shutting down; retry shortly")]
    Closed,
}

struct Subscriber {
    filter: EventFilter,
    sender: mpsc::Sender<Delivery>,
}

impl Subscriber {
    /// Hands `event` over if it is wanted; `false` when the subscriber is to be dropped (its
    /// client went away, or its buffer is full: then it gets the overflow marker).
    fn offer(&self, event: &Arc<Event>) -> bool {
        if self.sender.is_closed() {
            return false;
        }
        if !self.filter.matches(event) {
            return true;
        }
        // The hub is the only sender, so the slot seen free here is still free below.
        if self.sender.capacity() <= 1 {
            let _ = self.sender.try_send(Delivery::Overflow);
            return false;
        }
        self.sender.try_send(Delivery::Event(event.clone())).is_ok()
    }
}

#[derive(Default)]
struct State {
    /// The id of the last event fanned out; `None` until the tail knows where the outbox ends.
    position: Option<u64>,
    subscribers: HashMap<Scope, Vec<Subscriber>>,
    closed: bool,
}

/// Fans outbox events out to this instance's subscribers.
pub struct Hub {
    buffer: usize,
    state: Mutex<State>,
    /// `true` once the tail has its starting position.
    ready: watch::Sender<bool>,
}

impl Hub {
    /// A hub with `buffer` events of room per subscriber (at least 1).
    pub fn new(buffer: usize) -> Self {
        Self {
            buffer: buffer.max(1),
            state: Mutex::new(State::default()),
            ready: watch::Sender::new(false),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Subscribes to the events of `scope` passing `filter`, waiting up to `wait` for the
    /// tail to start.
    pub async fn subscribe(
        &self,
        scope: Scope,
        filter: EventFilter,
        wait: Duration,
    ) -> Result<Subscription, Unavailable> {
        let mut ready = self.ready.subscribe();
        let _ = tokio::time::timeout(wait, ready.wait_for(|r| *r)).await;
        self.try_subscribe(scope, filter)
    }

    /// Subscribes now, or says why not.
    pub fn try_subscribe(
        &self,
        scope: Scope,
        filter: EventFilter,
    ) -> Result<Subscription, Unavailable> {
        let mut state = self.state();
        if state.closed {
            return Err(Unavailable::Closed);
        }
        let position = state.position.ok_or(Unavailable::Starting)?;
        let (sender, receiver) = mpsc::channel(self.buffer + 1);
        state
            .subscribers
            .entry(scope)
            .or_default()
            .push(Subscriber { filter, sender });
        Ok(Subscription { receiver, position })
    }

    /// Subscribers currently held (for tests and metrics).
    pub fn subscribers(&self) -> usize {
        self.state().subscribers.values().map(Vec::len).sum()
    }

    /// Ends every subscription (their streams finish what they hold, then end) and refuses
    /// new ones: the server is shutting down.
    pub fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        state.subscribers.clear();
    }

    /// Sets where the tail starts: the newest event when it started.
    pub fn start_at(&self, position: u64) {
        self.state().position = Some(position);
        self.ready.send_replace(true);
    }

    /// Hands each event, in order, to the subscribers of its scope, and moves the position
    /// past it.
    pub fn fan_out(&self, events: &[StoredEvent]) {
        let mut state = self.state();
        for stored in events {
            let event = Arc::new(stored.event.clone());
            if let Some(subscribers) = state.subscribers.get_mut(&stored.scope) {
                subscribers.retain(|s| s.offer(&event));
                if subscribers.is_empty() {
                    state.subscribers.remove(&stored.scope);
                }
            }
            let position = state.position.unwrap_or(0).max(stored.event.id);
            state.position = Some(position);
        }
    }

    /// Moves the position to `newest` without reading the events up to it, if nobody is
    /// subscribed (checked under the lock that subscribing takes, so no subscriber can be
    /// handed a position it then misses events after); `false` when somebody is.
    fn skip_to(&self, newest: u64) -> bool {
        let mut state = self.state();
        if !state.subscribers.is_empty() {
            return false;
        }
        let position = state.position.unwrap_or(0).max(newest);
        state.position = Some(position);
        true
    }

    /// Forgets subscribers whose clients went away while no event of their scope came.
    fn prune(&self) {
        self.state().subscribers.retain(|_, subscribers| {
            subscribers.retain(|s| !s.sender.is_closed());
            !subscribers.is_empty()
        });
    }

    /// Tails the outbox of `context`'s store until the task is aborted: from the newest event
    /// at start, after every event signal and at least every [`POLL_EVERY`].
    pub async fn run(self: Arc<Self>, context: Arc<Context>) {
        let mut signal = context.store().event_signal();
        let mut cursor = loop {
            match context.store().last_event_id(None).await {
                Ok(id) => break id,
                Err(e) => {
                    tracing::warn!(error = %e, "the event hub cannot read the outbox; retrying");
                    tokio::time::sleep(POLL_EVERY).await;
                }
            }
        };
        self.start_at(cursor);
        loop {
            // Seen before reading: a commit during the read wakes the next round.
            signal.borrow_and_update();
            cursor = self.advance(&context, cursor).await;
            self.prune();
            tokio::select! {
                changed = signal.changed() => {
                    if changed.is_err() {
                        // No signal any more (the store is going away): poll only.
                        tokio::time::sleep(POLL_EVERY).await;
                    } else {
                        // Under a burst of commits, one read serves many of them.
                        tokio::time::sleep(COALESCE).await;
                    }
                }
                () = tokio::time::sleep(POLL_EVERY) => {}
            }
        }
    }

    /// Moves past every event after `cursor`: without reading them when nobody is subscribed
    /// (the newest id is one point read), else reading and fanning them out.
    async fn advance(&self, context: &Context, cursor: u64) -> u64 {
        if let Ok(newest) = context.newest_event_id().await {
            if newest <= cursor || self.skip_to(newest) {
                return cursor.max(newest);
            }
        }
        self.catch_up(context, cursor).await
    }

    /// Reads and fans out every event after `cursor`; returns the new cursor.
    async fn catch_up(&self, context: &Context, mut cursor: u64) -> u64 {
        loop {
            let page = match context.all_events_after(cursor, EVENT_PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "the event hub cannot read the outbox; retrying");
                    return cursor;
                }
            };
            let Some(last) = page.last() else {
                return cursor;
            };
            cursor = cursor.max(last.event.id);
            self.fan_out(&page);
            if page.len() < EVENT_PAGE {
                return cursor;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contextd_core::object::{Contributor, ContributorType, Kind, State as ObjectState};
    use contextd_core::{ObjectId, OrgId, Partition};
    use contextd_proto::events::EventType;

    fn scope(partition: Partition) -> Scope {
        Scope {
            org: OrgId::new(),
            partition,
        }
    }

    fn event(scope: Scope, id: u64, event_type: EventType) -> StoredEvent {
        StoredEvent {
            scope,
            event: Event {
                id,
                event_type,
                object_id: ObjectId::new(),
                object_type: Kind::Customer,
                customer_id: None,
                parent_id: None,
                media_type: None,
                state: ObjectState::Active,
                last_updated: chrono::Utc::now(),
                contributor: Contributor {
                    id: "test".into(),
                    kind: ContributorType::Machine,
                },
                time: chrono::Utc::now(),
                addressed_to: None,
            },
        }
    }

    fn drain(receiver: &mut mpsc::Receiver<Delivery>) -> Vec<Option<u64>> {
        let mut out = Vec::new();
        while let Ok(d) = receiver.try_recv() {
            out.push(match d {
                Delivery::Event(e) => Some(e.id),
                Delivery::Overflow => None,
            });
        }
        out
    }

    #[test]
    fn a_subscriber_that_is_not_read_gets_its_buffer_then_the_overflow_marker_and_is_dropped() {
        let hub = Hub::new(4);
        let s = scope(Partition::Lab);
        assert_eq!(
            hub.try_subscribe(s, EventFilter::default()).err(),
            Some(Unavailable::Starting)
        );
        hub.start_at(7);
        let mut slow = hub.try_subscribe(s, EventFilter::default()).unwrap();
        assert_eq!(slow.position, 7);
        let events: Vec<_> = (8..28).map(|id| event(s, id, EventType::Created)).collect();
        hub.fan_out(&events);
        assert_eq!(
            drain(&mut slow.receiver),
            vec![Some(8), Some(9), Some(10), Some(11), None]
        );
        assert!(matches!(
            slow.receiver.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert_eq!(hub.subscribers(), 0, "the slow subscriber was dropped");
        assert_eq!(
            hub.try_subscribe(s, EventFilter::default())
                .unwrap()
                .position,
            27
        );
    }

    #[test]
    fn events_go_only_to_their_scope_and_filter_and_skipped_events_take_no_room() {
        let hub = Hub::new(2);
        hub.start_at(0);
        let (lab, prod) = (scope(Partition::Lab), scope(Partition::Production));
        let only_updates = EventFilter {
            types: vec![EventType::Updated],
            ..EventFilter::default()
        };
        let mut updates = hub.try_subscribe(lab, only_updates).unwrap();
        let mut other = hub.try_subscribe(prod, EventFilter::default()).unwrap();
        let mut events: Vec<_> = (1..=10)
            .map(|id| event(lab, id, EventType::Created))
            .collect();
        events.push(event(lab, 11, EventType::Updated));
        events.push(event(prod, 12, EventType::Created));
        hub.fan_out(&events);
        assert_eq!(drain(&mut updates.receiver), vec![Some(11)]);
        assert_eq!(drain(&mut other.receiver), vec![Some(12)]);
        assert_eq!(hub.subscribers(), 2);
    }

    #[test]
    fn subscribers_that_went_away_are_pruned_and_close_ends_every_stream() {
        let hub = Hub::new(4);
        hub.start_at(0);
        let s = scope(Partition::Lab);
        drop(hub.try_subscribe(s, EventFilter::default()).unwrap());
        let mut kept = hub.try_subscribe(s, EventFilter::default()).unwrap();
        hub.prune();
        assert_eq!(hub.subscribers(), 1);
        hub.fan_out(&[event(s, 1, EventType::Created)]);
        hub.close();
        assert_eq!(drain(&mut kept.receiver), vec![Some(1)]);
        assert!(kept.receiver.try_recv().is_err());
        assert_eq!(
            hub.try_subscribe(s, EventFilter::default()).err(),
            Some(Unavailable::Closed)
        );
    }
}
