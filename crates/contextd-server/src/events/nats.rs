//! The NATS JetStream publisher: forwards every outbox event, as a CloudEvents 1.0 JSON
//! message, to one JetStream stream, on the subject `contextd.<orgId>.<partition>.<eventType>`.
//!
//! A NATS outage delays events, never loses them: the durable cursor `nats:<stream>` moves
//! only past events whose publish JetStream acknowledged, in id order, and every failure
//! resumes from it after a jittered backoff. Each message carries `Nats-Msg-Id` = the event
//! id, so JetStream drops what is published again within the stream's duplicate window (the
//! messages in flight when a connection broke). One instance of a deployment publishes at a
//! time: the cursor is leased ([`contextd_core::store::EventStore::claim_cursor`]) and renewed while it works; the
//! others stand by and take over when a lease runs out.

use std::fmt::Display;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::jetstream::{self, context::GetStreamErrorKind, message::PublishMessage, stream};
use chrono::{DateTime, Utc};
use contextd_core::service::events::EVENT_PAGE;
use contextd_core::service::Context;
use contextd_core::store::{StoreError, StoredEvent};
use contextd_core::CoreError;
use contextd_proto::events::Event;
use rand::Rng;
use serde::Serialize;
use tokio::sync::watch;

/// The first token of every subject; the stream is created with `contextd.>`.
pub const SUBJECT_ROOT: &str = "contextd";
/// How long JetStream remembers a `Nats-Msg-Id` to drop a re-publish (JetStream's default).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long a claim of the cursor holds without renewal.
const LEASE: Duration = Duration::from_secs(30);
/// The holder renews its lease once it is this old, well before it runs out.
const RENEW_AFTER: Duration = Duration::from_secs(10);
/// How often a standing-by instance tries to take the lease.
const STANDBY: Duration = Duration::from_secs(5);
/// The longest wait for new events without a wake-up from the event signal.
const POLL: Duration = Duration::from_secs(1);
/// Time allowed for a connection attempt, a JetStream API request or a publish ack.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The first and the longest wait between two failed attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Repeated failures are logged at warn at most this often (the others at debug).
const WARN_EVERY: Duration = Duration::from_secs(60);

/// This instance's connection to JetStream, as `/v1/status` shows it.
pub struct Link {
    stream: String,
    jetstream: OnceLock<jetstream::Context>,
}

impl Link {
    /// The link of the publisher to `stream` (not connected until [`run`] connects).
    pub fn new(stream: &str) -> Self {
        Self {
            stream: stream.to_owned(),
            jetstream: OnceLock::new(),
        }
    }

    /// Answers when the NATS server is connected and the stream exists (its info is read);
    /// an error otherwise.
    pub async fn ping(&self) -> Result<(), async_nats::Error> {
        let jetstream = self.jetstream.get().ok_or("not connected to NATS yet")?;
        if jetstream.client().connection_state() != State::Connected {
            return Err("disconnected from NATS".into());
        }
        jetstream.get_stream(&self.stream).await?;
        Ok(())
    }
}

/// Publishes every event to JetStream until the server stops: connects (retrying forever),
/// then forwards the outbox from the cursor `nats:<stream>` whenever this instance holds it.
pub async fn run(context: Arc<Context>, url: String, stream: String, link: Arc<Link>) {
    let publisher = Publisher {
        context,
        cursor: format!("nats:{stream}"),
        owner: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
        stream,
    };
    publisher.ensure_cursor().await;
    let jetstream = connect(&url).await;
    // Set once: this is the only task that connects this link.
    let _ = link.jetstream.set(jetstream.clone());
    publisher.forward(&jetstream).await;
}

/// Connects to the NATS server at `url`, retrying with backoff until it answers. Once
/// connected, the client reconnects by itself, forever; state changes are logged.
async fn connect(url: &str) -> jetstream::Context {
    let mut retry = Retry::new("connecting to NATS");
    loop {
        let options = async_nats::ConnectOptions::new()
            .name("contextd")
            .connection_timeout(TIMEOUT)
            .max_reconnects(None)
            .event_callback(|event| async move { log_event(event) });
        match options.connect(url).await {
            Ok(client) => {
                retry.succeeded();
                return jetstream::ContextBuilder::new()
                    .timeout(TIMEOUT)
                    .ack_timeout(TIMEOUT)
                    .build(client);
            }
            Err(e) => retry.failed(&e).await,
        }
    }
}

/// Logs a change of the NATS connection's state.
fn log_event(event: async_nats::Event) {
    use async_nats::Event as E;
    match event {
        E::Connected => tracing::info!("connected to NATS"),
        E::Disconnected => tracing::warn!("disconnected from NATS; reconnecting"),
        E::LameDuckMode => tracing::warn!("the NATS server is shutting down (lame duck mode)"),
        E::Closed => tracing::warn!("the NATS connection is closed"),
        // Each failed reconnection attempt: the disconnection was logged once already.
        E::ClientError(e) => tracing::debug!(error = %e, "NATS connection error"),
        other => tracing::warn!(event = %other, "NATS connection event"),
    }
}

/// Why one round of publishing stopped; the next starts again from the cursor.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// NATS did not answer, refused, or did not acknowledge.
    #[error("NATS: {0}")]
    Nats(async_nats::Error),
    /// The outbox could not be read.
    #[error("reading the outbox: {0}")]
    Outbox(#[from] CoreError),
    /// The cursor could not be read or moved.
    #[error("the cursor: {0}")]
    Cursor(#[from] StoreError),
    /// An event could not be encoded (never expected: events are plain data).
    #[error("encoding an event: {0}")]
    Encode(#[from] serde_json::Error),
}

impl Failure {
    fn nats(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Nats(Box::new(error))
    }
}

/// What the publisher does after a round.
enum Step {
    /// A full page was published: read the next at once.
    More,
    /// Caught up: wait for new events.
    Idle,
    /// Another instance holds the cursor.
    Standby,
}

/// The cursor while this instance holds its lease.
struct Lease {
    position: u64,
    renewed: Instant,
}

/// The forwarding of the outbox to one stream.
struct Publisher {
    context: Arc<Context>,
    stream: String,
    cursor: String,
    owner: String,
}

impl Publisher {
    /// Creates the cursor at 0 unless it exists, so that a first start publishes the whole
    /// retained outbox; retries until the store answers.
    async fn ensure_cursor(&self) {
        let mut retry = Retry::new("creating the NATS cursor");
        while let Err(e) = self.context.store().ensure_cursor(&self.cursor, 0).await {
            retry.failed(&e).await;
        }
        retry.succeeded();
    }

    /// Publishes pages of events whenever there are some and this instance holds the lease;
    /// never returns.
    async fn forward(&self, jetstream: &jetstream::Context) {
        let mut signal = self.context.store().event_signal();
        let mut lease = None;
        let mut stream_ready = false;
        let mut retry = Retry::new("publishing to NATS");
        loop {
            match self.step(jetstream, &mut lease, &mut stream_ready).await {
                Ok(step) => {
                    retry.succeeded();
                    match step {
                        Step::More => {}
                        Step::Idle => wait(&mut signal).await,
                        Step::Standby => tokio::time::sleep(STANDBY).await,
                    }
                }
                Err(e) => {
                    // The stream may be what went missing: look again before the next page.
                    stream_ready = false;
                    retry.failed(&e).await;
                }
            }
        }
    }

    /// One round: renew the lease, make sure the stream exists, publish the page after the
    /// cursor and move the cursor past what was acknowledged.
    async fn step(
        &self,
        jetstream: &jetstream::Context,
        lease: &mut Option<Lease>,
        stream_ready: &mut bool,
    ) -> Result<Step, Failure> {
        let Some(position) = self.hold(lease).await? else {
            return Ok(Step::Standby);
        };
        if !*stream_ready {
            ensure_stream(jetstream, &self.stream).await?;
            *stream_ready = true;
        }
        let page = self.context.all_events_after(position, EVENT_PAGE).await?;
        let Some(first) = page.first() else {
            return Ok(Step::Idle);
        };
        // Ids are given without gaps across the database: a gap behind the cursor is events
        // pruned (past --event-retention) before they could be published.
        if position > 0 && first.event.id > position + 1 {
            tracing::warn!(
                cursor = %self.cursor,
                missed = first.event.id - position - 1,
                "events were pruned before they were published to NATS"
            );
        }
        let (acked, published) = self.publish(jetstream, &page).await;
        if let Some(acked) = acked {
            let store = self.context.store();
            if !store
                .advance_cursor(&self.cursor, &self.owner, acked)
                .await?
            {
                tracing::info!(cursor = %self.cursor, "lost the NATS publishing lease; standing by");
                *lease = None;
                return Ok(Step::Standby);
            }
            if let Some(held) = lease {
                held.position = acked;
            }
        }
        published?;
        Ok(if page.len() >= EVENT_PAGE {
            Step::More
        } else {
            Step::Idle
        })
    }

    /// The cursor's position while this instance holds (or has just taken, or renewed) its
    /// lease; `None` while another instance holds it.
    async fn hold(&self, lease: &mut Option<Lease>) -> Result<Option<u64>, Failure> {
        if let Some(held) = lease.as_ref().filter(|l| l.renewed.elapsed() < RENEW_AFTER) {
            return Ok(Some(held.position));
        }
        let renewed = Instant::now();
        let now = Utc::now();
        let until = now + chrono::Duration::seconds(LEASE.as_secs() as i64);
        let claimed = self
            .context
            .store()
            .claim_cursor(&self.cursor, &self.owner, now, until)
            .await?;
        match (claimed, lease.is_some()) {
            (Some(position), false) => {
                tracing::info!(cursor = %self.cursor, position, "holding the NATS publishing lease")
            }
            (None, true) => {
                tracing::info!(cursor = %self.cursor, "lost the NATS publishing lease; standing by")
            }
            _ => {}
        }
        *lease = claimed.map(|position| Lease { position, renewed });
        Ok(claimed)
    }

    /// Publishes a page, pipelined, then awaits the acks in order: the id of the last event
    /// of the unbroken run of acknowledged ones from the start of the page (`None`: not even
    /// the first), and the first failure, if any.
    async fn publish(
        &self,
        jetstream: &jetstream::Context,
        page: &[StoredEvent],
    ) -> (Option<u64>, Result<(), Failure>) {
        let mut pending = Vec::with_capacity(page.len());
        let mut failure = None;
        for stored in page {
            match self.send(jetstream, stored).await {
                Ok(ack) => pending.push((stored.event.id, ack)),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let mut acked = None;
        for (id, ack) in pending {
            if let Err(e) = ack.await {
                failure.get_or_insert(Failure::nats(e));
                break;
            }
            acked = Some(id);
        }
        (acked, failure.map_or(Ok(()), Err))
    }

    /// Sends one event (its ack still to be awaited).
    async fn send(
        &self,
        jetstream: &jetstream::Context,
        stored: &StoredEvent,
    ) -> Result<jetstream::context::PublishAckFuture, Failure> {
        let body = serde_json::to_vec(&CloudEvent::of(stored))?;
        let message = PublishMessage::build()
            .payload(body.into())
            .message_id(stored.event.id.to_string())
            .expected_stream(&self.stream);
        jetstream
            .send_publish(subject(stored), message)
            .await
            .map_err(Failure::nats)
    }
}

/// Finds the stream, or creates it (subjects `contextd.>`, file storage, the duplicate
/// window [`DUPLICATE_WINDOW`]); an existing stream is used as it is.
async fn ensure_stream(jetstream: &jetstream::Context, name: &str) -> Result<(), Failure> {
    let subjects = format!("{SUBJECT_ROOT}.>");
    match jetstream.get_stream(name).await {
        Ok(found) => {
            if !found.cached_info().config.subjects.contains(&subjects) {
                tracing::warn!(
                    stream = name,
                    "the JetStream stream does not take {subjects}: publishes will fail"
                );
            }
            Ok(())
        }
        Err(e) if is_not_found(&e.kind()) => {
            let config = stream::Config {
                name: name.to_owned(),
                subjects: vec![subjects],
                storage: stream::StorageType::File,
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            };
            jetstream
                .create_stream(config)
                .await
                .map_err(Failure::nats)?;
            tracing::info!(stream = name, "created the JetStream stream");
            Ok(())
        }
        Err(e) => Err(Failure::nats(e)),
    }
}

/// Whether a stream lookup failed because there is no such stream.
fn is_not_found(kind: &GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(e)
        if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// The subject of an event: `contextd.<orgId>.<partition>.<eventType>`, where the event type
/// itself has two tokens (`object.created`).
pub fn subject(stored: &StoredEvent) -> String {
    format!(
        "{SUBJECT_ROOT}.{}.{}.{}",
        stored.scope.org,
        stored.scope.partition,
        stored.event.event_type.as_str()
    )
}

/// An event as a CloudEvents 1.0 JSON message (structured mode): the attributes, and the
/// event itself as `data`. Like the event, it carries no field value.
#[derive(Serialize)]
struct CloudEvent<'a> {
    specversion: &'static str,
    id: String,
    source: String,
    #[serde(rename = "type")]
    event_type: String,
    subject: String,
    time: DateTime<Utc>,
    datacontenttype: &'static str,
    data: &'a Event,
}

impl<'a> CloudEvent<'a> {
    fn of(stored: &'a StoredEvent) -> Self {
        let event = &stored.event;
        Self {
            specversion: "1.0",
            id: event.id.to_string(),
            source: format!("/contextd/{}/{}", stored.scope.org, stored.scope.partition),
            event_type: format!("{SUBJECT_ROOT}.{}", event.event_type.as_str()),
            subject: event.object_id.to_string(),
            time: event.time,
            datacontenttype: "application/json",
            data: event,
        }
    }
}

/// Waits for the event signal, at most [`POLL`].
async fn wait(signal: &mut watch::Receiver<u64>) {
    if signal.has_changed().is_err() {
        // The store dropped its signal: poll.
        tokio::time::sleep(POLL).await;
    } else {
        let _ = tokio::time::timeout(POLL, signal.changed()).await;
    }
}

/// Jittered exponential backoff between failed attempts, and their logging: the first failure
/// of a run and then one a minute at warn, the others at debug, and the recovery at info.
struct Retry {
    what: &'static str,
    failures: u32,
    delay: Duration,
    warned: Option<Instant>,
}

impl Retry {
    fn new(what: &'static str) -> Self {
        Self {
            what,
            failures: 0,
            delay: BACKOFF_MIN,
            warned: None,
        }
    }

    /// Logs a failure and waits before the next attempt: half the current delay plus a
    /// random part of the other half; the delay doubles up to [`BACKOFF_MAX`].
    async fn failed(&mut self, error: &(dyn Display + Sync)) {
        self.failures += 1;
        let (what, failures) = (self.what, self.failures);
        if self.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            self.warned = Some(Instant::now());
            tracing::warn!(error = %error, failures, "{what} failed; retrying");
        } else {
            tracing::debug!(error = %error, failures, "{what} failed; retrying");
        }
        let half = self.delay / 2;
        let jitter = rand::thread_rng().gen_range(Duration::ZERO..=half);
        self.delay = (self.delay * 2).min(BACKOFF_MAX);
        tokio::time::sleep(half + jitter).await;
    }

    /// Ends a run of failures.
    fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "{} recovered", self.what);
        }
        self.failures = 0;
        self.delay = BACKOFF_MIN;
        self.warned = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contextd_core::object::{Contributor, ContributorType};
    use contextd_core::{Kind, ObjectId, OrgId, Partition, Scope};
    use contextd_proto::events::EventType;
    use contextd_proto::object::State as ObjectState;

    fn stored() -> StoredEvent {
        StoredEvent {
            scope: Scope {
                org: OrgId::new(),
                partition: Partition::Lab,
            },
            event: Event {
                id: 42,
                event_type: EventType::Created,
                object_id: ObjectId::new(),
                object_type: Kind::Customer,
                customer_id: None,
                parent_id: None,
                media_type: None,
                state: ObjectState::Active,
                last_updated: Utc::now(),
                contributor: Contributor {
                    id: "tester".into(),
                    kind: ContributorType::User,
                },
                time: Utc::now(),
                addressed_to: None,
            },
        }
    }

    #[test]
    fn subjects_name_org_partition_and_type() {
        let e = stored();
        assert_eq!(
            subject(&e),
            format!("contextd.{}.lab.object.created", e.scope.org)
        );
    }

    #[test]
    fn messages_are_cloudevents_around_the_event() {
        let e = stored();
        let json = serde_json::to_value(CloudEvent::of(&e)).expect("json");
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["id"], "42");
        assert_eq!(json["source"], format!("/contextd/{}/lab", e.scope.org));
        assert_eq!(json["type"], "contextd.object.created");
        assert_eq!(json["subject"], e.event.object_id.to_string());
        assert_eq!(json["datacontenttype"], "application/json");
        assert_eq!(json["data"], serde_json::to_value(&e.event).expect("json"));
    }
}
