//! The webhook dispatcher. One supervisor per server re-lists the webhooks every
//! [`LIST_EVERY`] and runs a worker per webhook; a worker leases the webhook's durable cursor
//! (so one instance at a time delivers to it), reads the partition's events after it, and
//! delivers the ones its filter passes strictly in event order: each is retried with
//! exponential backoff until a 2xx answer or until `webhook_retry_for` has passed since its
//! first attempt (then it is dead-lettered), and only then does the cursor move past it.
//!
//! Delivery is at least once: an event delivered just before a crash, whose cursor move was
//! lost, is delivered again with the same `webhook-id`. Secrets and bodies are never logged.

mod address;
mod delivery;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use contextd_core::service::webhooks::{Redelivery, WebhookTarget};
use contextd_core::service::Context;
use contextd_core::time::now_ms;
use contextd_core::CoreError;
use contextd_proto::events::{Delivery, DeliveryOutcome, Event};
use rand::Rng;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};
use uuid::Uuid;

pub use address::AddressPolicy;
use delivery::body;

use super::EventsConfig;
use crate::AppState;

/// How often the supervisor re-reads the list of webhooks.
pub const LIST_EVERY: Duration = Duration::from_secs(2);
/// How long a worker's lease of a cursor lasts unless renewed (longer when two attempts'
/// time limits don't fit in it).
const LEASE: Duration = Duration::from_secs(30);
/// A lease is renewed once this old, well before it ends.
const RENEW_AFTER: Duration = Duration::from_secs(10);
/// Wait before claiming again a cursor another instance holds.
const CLAIM_RETRY: Duration = Duration::from_secs(5);
/// Wait after a store failure.
const FAILURE_RETRY: Duration = Duration::from_secs(2);
/// The outbox is read at least this often without a wake-up.
const POLL: Duration = Duration::from_secs(1);
/// Events read per page.
const PAGE: usize = 100;
/// The first retry's backoff; it doubles per attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Delivers events to the registered webhooks until the server stops.
pub async fn run(state: AppState, config: EventsConfig) {
    let client = match delivery::client(&config) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "webhooks: no HTTP client; nothing will be delivered");
            return;
        }
    };
    // The lease owner of this process; a restart is a new owner.
    let owner: Arc<str> = Uuid::now_v7().to_string().into();
    // Dropping the set (when the server stops and aborts this task) aborts every worker.
    let mut tasks = JoinSet::new();
    let mut workers: HashMap<Uuid, AbortHandle> = HashMap::new();
    let mut unopened = HashSet::new();
    let mut tick = tokio::time::interval(LIST_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        while tasks.try_join_next().is_some() {}
        let webhooks = match state.context.all_webhooks().await {
            Ok(webhooks) => webhooks,
            Err(e) => {
                tracing::warn!(error = %e, "webhooks: listing failed");
                continue;
            }
        };
        let listed: HashSet<Uuid> = webhooks.iter().map(|w| w.webhook.id).collect();
        // Deleted webhooks are forgotten (the set stays as small as the list).
        unopened.retain(|id| listed.contains(id));
        workers.retain(|id, task| {
            let keep = listed.contains(id) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for state_of in webhooks {
            let id = state_of.webhook.id;
            if workers.contains_key(&id) {
                continue;
            }
            let target = match state.context.webhook_target(state_of.webhook).await {
                Ok(target) => target,
                Err(e) => {
                    if unopened.insert(id) {
                        tracing::warn!(webhook = %id, error = %e, "webhooks: secret can't be opened; not delivering");
                    }
                    continue;
                }
            };
            let worker = Worker {
                context: state.context.clone(),
                client: client.clone(),
                owner: owner.clone(),
                target,
                retry_for: config.webhook_retry_for,
                allow_private: config.allow_private_webhooks,
                lease: LEASE.max(
                    config
                        .webhook_timeout
                        .saturating_mul(2)
                        .saturating_add(RENEW_AFTER),
                ),
            };
            workers.insert(id, tasks.spawn(worker.run()));
        }
    }
}

/// One immediate attempt of a redelivery; a failure is recorded `dead` (it is not retried).
pub async fn redeliver(config: &EventsConfig, redelivery: &Redelivery) -> Delivery {
    let Redelivery { target, event } = redelivery;
    let attempt = match (delivery::client(config), body(target.webhook.scope, event)) {
        (Ok(client), Ok(body)) => {
            let attempt = delivery::Attempt {
                target,
                event,
                body: &body,
                number: 1,
            };
            attempt.send(&client, config.allow_private_webhooks).await
        }
        (Err(e), _) => unsent(event, format!("no HTTP client: {e}")),
        (_, Err(e)) => unsent(event, format!("the event can't be written: {e}")),
    };
    Delivery {
        outcome: match attempt.outcome {
            DeliveryOutcome::Delivered => DeliveryOutcome::Delivered,
            _ => DeliveryOutcome::Dead,
        },
        ..attempt
    }
}

/// The record of an attempt that could not be sent at all.
fn unsent(event: &Event, error: String) -> Delivery {
    Delivery {
        id: 0,
        event_id: event.id,
        event_type: event.event_type,
        attempt: 1,
        outcome: DeliveryOutcome::Dead,
        status: None,
        error: Some(error),
        at: now_ms(),
        duration_ms: 0,
    }
}

/// Why a worker stopped delivering under its lease.
enum Stop {
    /// Another instance holds the cursor now (or moved it): claim again.
    Lost,
    /// The webhook was deleted: the worker ends.
    Gone,
    /// The store failed.
    Failed(CoreError),
}

/// A held lease: the cursor's position and when the lease was last renewed.
struct Lease {
    position: u64,
    renewed: Instant,
}

/// Delivers to one webhook.
struct Worker {
    context: Arc<Context>,
    client: reqwest::Client,
    owner: Arc<str>,
    target: WebhookTarget,
    retry_for: Duration,
    allow_private: bool,
    /// The lease taken: an attempt never outlasts what is left of it after a renewal.
    lease: Duration,
}

impl Worker {
    fn id(&self) -> Uuid {
        self.target.webhook.id
    }

    /// Claims the cursor and delivers, again and again, until aborted.
    async fn run(self) {
        let _release = Release {
            context: self.context.clone(),
            id: self.id(),
            owner: self.owner.clone(),
        };
        let mut signal = self.context.store().event_signal();
        loop {
            let stopped = match self.claim().await {
                Ok(Some(lease)) => self.deliver(lease, &mut signal).await,
                Ok(None) => Err(Stop::Lost),
                Err(e) => Err(Stop::Failed(e)),
            };
            let wait = match stopped {
                Err(Stop::Gone) => return,
                Err(Stop::Failed(e)) => {
                    tracing::warn!(webhook = %self.id(), error = %e, "webhooks: store failed; retrying");
                    FAILURE_RETRY
                }
                Ok(()) | Err(Stop::Lost) => CLAIM_RETRY,
            };
            tokio::time::sleep(wait).await;
        }
    }

    async fn claim(&self) -> Result<Option<Lease>, CoreError> {
        let position = self
            .context
            .claim_webhook_cursor(self.id(), &self.owner, self.lease)
            .await?;
        Ok(position.map(|position| Lease {
            position,
            renewed: Instant::now(),
        }))
    }

    /// Renews the lease when due; [`Stop::Lost`] when it is no longer ours, or the cursor
    /// moved meanwhile.
    async fn keep(&self, lease: &mut Lease) -> Result<(), Stop> {
        if lease.renewed.elapsed() < RENEW_AFTER {
            return Ok(());
        }
        let claimed = self
            .context
            .claim_webhook_cursor(self.id(), &self.owner, self.lease);
        match claimed.await.map_err(Stop::Failed)? {
            Some(position) if position == lease.position => {
                lease.renewed = Instant::now();
                Ok(())
            }
            _ => Err(Stop::Lost),
        }
    }

    async fn advance(&self, lease: &mut Lease, position: u64) -> Result<(), Stop> {
        let advance = self
            .context
            .advance_webhook_cursor(self.id(), &self.owner, position);
        if advance.await.map_err(Stop::Failed)? {
            lease.position = position;
            Ok(())
        } else {
            Err(Stop::Lost)
        }
    }

    /// Delivers the events after the cursor, in order, as they come; returns only to stop.
    async fn deliver(
        &self,
        mut lease: Lease,
        signal: &mut watch::Receiver<u64>,
    ) -> Result<(), Stop> {
        // The first event delivered under a new lease may have failed attempts from before.
        let mut resumed = true;
        loop {
            self.keep(&mut lease).await?;
            let scope = self.target.webhook.scope;
            let page = self.context.webhook_events(scope, lease.position, PAGE);
            let page = page.await.map_err(Stop::Failed)?;
            let Some(last) = page.last().map(|e| e.id) else {
                wait_for_events(signal).await;
                continue;
            };
            for event in page
                .iter()
                .filter(|e| self.target.webhook.filter.matches(e))
            {
                self.deliver_event(&mut lease, event, resumed).await?;
                resumed = false;
                self.advance(&mut lease, event.id).await?;
            }
            if last > lease.position {
                self.advance(&mut lease, last).await?;
            }
        }
    }

    /// Delivers one event: attempts until one is answered 2xx or the retry time is spent
    /// (the last attempt is then recorded `dead`).
    async fn deliver_event(
        &self,
        lease: &mut Lease,
        event: &Event,
        resumed: bool,
    ) -> Result<(), Stop> {
        let body = match body(self.target.webhook.scope, event) {
            Ok(body) => body,
            Err(e) => {
                let dead = unsent(event, format!("the event can't be written: {e}"));
                return self.record(&dead).await;
            }
        };
        let previous = if resumed {
            let failed = self.context.failed_attempts(self.id(), event.id);
            failed.await.map_err(Stop::Failed)?
        } else {
            None
        };
        let (mut number, first) =
            previous.map_or((1, now_ms()), |(n, at)| (n.saturating_add(1), at));
        loop {
            self.keep(lease).await?;
            let exists = self
                .context
                .webhook_exists(self.target.webhook.scope, self.id());
            if !exists.await.map_err(Stop::Failed)? {
                return Err(Stop::Gone);
            }
            let attempt = delivery::Attempt {
                target: &self.target,
                event,
                body: &body,
                number,
            };
            let mut record = attempt.send(&self.client, self.allow_private).await;
            let elapsed = (now_ms() - first).to_std().unwrap_or_default();
            if record.outcome == DeliveryOutcome::Failed && elapsed >= self.retry_for {
                record.outcome = DeliveryOutcome::Dead;
            }
            if let Err(e) = self.record(&record).await {
                // A dead letter or a delivery not recorded must not be passed over: the
                // cursor stays, and the event is tried again.
                if record.outcome != DeliveryOutcome::Failed {
                    return Err(e);
                }
            }
            if record.outcome != DeliveryOutcome::Failed {
                return Ok(());
            }
            self.pause(
                lease,
                backoff(number).min(self.retry_for.saturating_sub(elapsed)),
            )
            .await?;
            number = number.saturating_add(1);
        }
    }

    /// Sleeps `wait`, keeping the lease meanwhile.
    async fn pause(&self, lease: &mut Lease, mut wait: Duration) -> Result<(), Stop> {
        while !wait.is_zero() {
            let step = wait.min(RENEW_AFTER);
            tokio::time::sleep(step).await;
            wait -= step;
            self.keep(lease).await?;
        }
        Ok(())
    }

    /// Records an attempt; the caller decides whether a failure to record holds the cursor.
    async fn record(&self, attempt: &Delivery) -> Result<(), Stop> {
        let id = self.id();
        match attempt.outcome {
            DeliveryOutcome::Dead => {
                tracing::warn!(webhook = %id, event = attempt.event_id, attempts = attempt.attempt, "webhooks: event dead-lettered")
            }
            outcome => {
                tracing::debug!(webhook = %id, event = attempt.event_id, attempt = attempt.attempt, %outcome, "webhooks: attempt")
            }
        }
        self.context
            .record_webhook_delivery(id, attempt)
            .await
            .map(drop)
            .map_err(|e| {
                tracing::warn!(webhook = %id, error = %e, "webhooks: attempt not recorded");
                Stop::Failed(e)
            })
    }
}

/// The backoff after attempt `number`: 1 s doubling per attempt, at most 5 minutes, less a
/// random part of up to half (so receivers coming back are not hit by every sender at once).
fn backoff(number: u32) -> Duration {
    let doubled = FIRST_BACKOFF.saturating_mul(1u32 << number.saturating_sub(1).min(16));
    let full = doubled.min(MAX_BACKOFF);
    full.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

/// Waits for a wake-up of the outbox, or [`POLL`] at most.
async fn wait_for_events(signal: &mut watch::Receiver<u64>) {
    tokio::select! {
        changed = signal.changed() => {
            if changed.is_err() {
                tokio::time::sleep(POLL).await;
            }
        }
        () = tokio::time::sleep(POLL) => {}
    }
}

/// Gives a worker's lease up when it stops (webhook deleted, server stopping), so the next
/// instance need not wait for it to run out; best effort, the lease ends anyway.
struct Release {
    context: Arc<Context>,
    id: Uuid,
    owner: Arc<str>,
}

impl Drop for Release {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (context, id, owner) = (self.context.clone(), self.id, self.owner.clone());
        runtime.spawn(async move {
            let _ = context.release_webhook_cursor(id, &owner).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_second_up_to_five_minutes_with_jitter() {
        for (number, full) in [(1, 1), (2, 2), (3, 4), (9, 256), (10, 300), (40, 300)] {
            let full = Duration::from_secs(full);
            for _ in 0..20 {
                let b = backoff(number);
                assert!(b <= full && b >= full / 2, "attempt {number}: {b:?}");
            }
        }
    }
}
