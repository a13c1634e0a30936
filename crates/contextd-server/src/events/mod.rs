//! Real-time events, read from the outbox the store writes in the same transaction as each
//! change: the in-process [`hub::Hub`] that feeds Server-Sent Events subscribers
//! (`routes::events`), the webhook dispatcher ([`webhooks`]), the NATS JetStream publisher
//! ([`nats`]) and the retention pruner.
//!
//! The outbox is the truth; every wake-up (a local commit, PostgreSQL's NOTIFY, a timer) only
//! says "read it again". Each forwarding channel keeps a durable cursor in the store, leased
//! to one instance at a time, so deliveries survive restarts and are not doubled by a second
//! instance.

pub mod hub;
pub mod nats;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use contextd_core::service::Context;

use crate::AppState;

/// Settings of the event channels.
#[derive(Clone, Debug)]
pub struct EventsConfig {
    /// How long events (and webhook delivery attempts) are kept (default 7 days).
    pub retention: Duration,
    /// Events buffered per Server-Sent Events subscriber; one that falls further behind is
    /// told to resume from its last id (default 1024).
    pub sse_buffer: usize,
    /// Interval of the keep-alive comments on an idle event stream (default 15 s).
    pub sse_keep_alive: Duration,
    /// Accept webhook URLs that reach loopback, private, link-local or otherwise internal
    /// addresses (default off: refused at registration and at delivery).
    pub allow_private_webhooks: bool,
    /// How long a failing webhook delivery is retried before it is dead-lettered (default 24 h).
    pub webhook_retry_for: Duration,
    /// Time allowed for one webhook delivery attempt (default 10 s).
    pub webhook_timeout: Duration,
    /// Publish every event to this NATS server's JetStream (`nats://HOST:PORT`).
    pub nats_url: Option<String>,
    /// The JetStream stream, created when missing with subjects `contextd.>` (default
    /// `contextd`).
    pub nats_stream: String,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(7 * 24 * 3600),
            sse_buffer: 1024,
            sse_keep_alive: Duration::from_secs(15),
            allow_private_webhooks: false,
            webhook_retry_for: Duration::from_secs(24 * 3600),
            webhook_timeout: Duration::from_secs(10),
            nats_url: None,
            nats_stream: "contextd".into(),
        }
    }
}

/// How often the outbox is pruned of events past their retention.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Starts the event channels' background tasks.
pub(crate) fn spawn(state: &AppState, config: &EventsConfig) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = vec![
        tokio::spawn(prune(state.context.clone(), config.retention)),
        tokio::spawn(state.events.clone().run(state.context.clone())),
        tokio::spawn(webhooks::run(state.clone(), config.clone())),
    ];
    if let (Some(url), Some(link)) = (&config.nats_url, &state.nats) {
        tasks.push(tokio::spawn(nats::run(
            state.context.clone(),
            url.clone(),
            config.nats_stream.clone(),
            link.clone(),
        )));
    }
    tasks
}

/// Deletes events past their retention, at start and then periodically.
async fn prune(context: Arc<Context>, retention: Duration) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match context.prune_events(retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "pruned events past their retention"),
            Err(e) => tracing::warn!(error = %e, "event pruning failed"),
        }
    }
}
