//! The event stream (`GET /v1/events`, Server-Sent Events): [`Client::events`] and
//! [`EventStream`], which reconnects by itself and resumes after the last event it yielded.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use contextd_proto::events::{Event, EventFilter, ResumeHint, OPEN_EVENT, RESUME_EVENT};
use contextd_proto::paths;
use eventsource_stream::{Event as Frame, EventStreamError, Eventsource};
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use rand::Rng;
use reqwest::header::{self, HeaderMap, HeaderValue};

use crate::client::Client;
use crate::error::{Error, Result};

/// The first wait before reconnecting; it doubles with each failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait before reconnecting.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A connection that carried nothing, not even a keep-alive comment (the server sends one
/// every 15 s by default), for this long is given up and made again.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A connection that lasted this long was healthy: the next failure starts the backoff over.
const HEALTHY: Duration = Duration::from_secs(10);
/// The statistics name of a connection attempt.
const OP: &str = "events.connect";

type Frames =
    Pin<Box<dyn Stream<Item = std::result::Result<Frame, EventStreamError<Broken>>> + Send>>;

/// Why a connection's bytes stopped coming.
#[derive(Debug)]
enum Broken {
    /// The transfer failed (the text without the URL, whose query holds the filter).
    Transport(String),
    Idle,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Broken::Transport(e) => write!(f, "the connection broke: {e}"),
            Broken::Idle => write!(f, "nothing came for {} s", IDLE_TIMEOUT.as_secs()),
        }
    }
}

impl Client {
    /// The events of the client's organization and partition that pass `filter`, live, as a
    /// [`Stream`]: after `resume_after` (an event id seen before: every later event is
    /// delivered, none twice), or, with `None`, from the moment the stream connects.
    ///
    /// The stream connects on its first poll (or [`EventStream::connected`]) with the
    /// client's credential (a token, or a connectionData's exchanged token); the client's
    /// timeout bounds each connection attempt, never the stream. It reconnects by itself —
    /// after a dropped connection, a server restart, or a `resume` frame when it fell behind
    /// — with `Last-Event-ID` of the last event it yielded, waiting 100 ms doubling to 5 s
    /// (jittered) between failed attempts, so events come in id order without gaps or
    /// repeats. It yields an error, and then ends, only when retrying can't help: the
    /// credential is refused ([`Error::Unauthorized`], [`Error::Forbidden`]), the filter is
    /// refused ([`Error::BadRequest`]), or the server is not a contextd with events
    /// ([`Error::NotFound`], [`Error::Protocol`]).
    ///
    /// ```no_run
    /// use contextd_client::proto::events::{EventFilter, EventType};
    /// use contextd_client::{Client, Settings};
    /// use futures::StreamExt;
    ///
    /// # async fn demo() -> contextd_client::Result<()> {
    /// let client = Client::new("http://127.0.0.1:8080", "ctxd_…", Settings::default())?;
    /// let filter = EventFilter {
    ///     types: vec![EventType::Created, EventType::Closed],
    ///     ..EventFilter::default()
    /// };
    /// let mut events = client.events(filter, None);
    /// events.connected().await?; // later writes are seen from here on
    /// while let Some(event) = events.next().await {
    ///     let event = event?;
    ///     println!("{} {} {} {}", event.id, event.event_type, event.object_type, event.object_id);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn events(&self, filter: EventFilter, resume_after: Option<u64>) -> EventStream {
        EventStream {
            feed: Some(Feed {
                client: self.clone(),
                query: query(&filter),
                last: resume_after,
                frames: None,
                connected_at: Instant::now(),
                failures: 0,
                wait_at_least: Duration::ZERO,
                done: false,
            }),
            step: None,
        }
    }
}

/// The query of a filter, as the server reads it.
fn query(filter: &EventFilter) -> Vec<(String, String)> {
    let mut query = Vec::new();
    if let Some(customer) = filter.customer_id {
        query.push(("customerId".to_owned(), customer.to_string()));
    }
    if let Some(contributor) = &filter.contributor {
        query.push(("contributor".to_owned(), contributor.clone()));
    }
    if let Some(media_type) = filter.media_type {
        query.push(("mediaType".to_owned(), media_type.as_str().to_owned()));
    }
    if let Some(agent) = &filter.addressed_to {
        query.push(("addressedTo".to_owned(), agent.clone()));
    }
    if !filter.types.is_empty() {
        let types: Vec<&str> = filter.types.iter().map(|t| t.as_str()).collect();
        query.push(("types".to_owned(), types.join(",")));
    }
    query
}

/// The live events of [`Client::events`]: a [`Stream`] of `Result<Event>` that reconnects by
/// itself. Dropping it closes its connection.
pub struct EventStream {
    /// The state, while no step is running.
    feed: Option<Feed>,
    /// The step being polled: it holds the state until it yields.
    step: Option<BoxFuture<'static, (Option<Result<Event>>, Feed)>>,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("EventStream");
        if let Some(feed) = &self.feed {
            d.field("last_event_id", &feed.last)
                .field("connected", &feed.frames.is_some());
        }
        d.finish_non_exhaustive()
    }
}

impl EventStream {
    /// Connects now unless connected: once this returns `Ok`, the server holds the
    /// subscription, so every later write is seen. A failure is returned as is (the stream,
    /// if polled on, retries those that may mend and ends after the others). Does nothing
    /// while a poll of the stream is under way, or once the stream has ended.
    pub async fn connected(&mut self) -> Result<()> {
        let Some(feed) = self.feed.as_mut() else {
            return Ok(());
        };
        if feed.done || feed.frames.is_some() {
            return Ok(());
        }
        match feed.connect().await {
            Ok(frames) => {
                feed.frames = Some(frames);
                feed.connected_at = Instant::now();
                Ok(())
            }
            Err(e) => {
                feed.failed(&e);
                Err(e)
            }
        }
    }
}

impl Stream for EventStream {
    type Item = Result<Event>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(step) = this.step.as_mut() {
                let (item, feed) = futures::ready!(step.as_mut().poll(cx));
                this.step = None;
                this.feed = Some(feed);
                return Poll::Ready(item);
            }
            let Some(feed) = this.feed.take() else {
                return Poll::Ready(None);
            };
            this.step = Some(Box::pin(feed.next()));
        }
    }
}

/// The state of an [`EventStream`].
struct Feed {
    client: Client,
    query: Vec<(String, String)>,
    /// The last event yielded (or the resume position given, or one a `resume` frame named).
    last: Option<u64>,
    frames: Option<Frames>,
    connected_at: Instant,
    /// Failed connections in a row.
    failures: u32,
    /// A `Retry-After` to honour before the next attempt.
    wait_at_least: Duration,
    done: bool,
}

impl Feed {
    /// The next event, or the error that ends the stream, or `None` once it has ended.
    async fn next(mut self) -> (Option<Result<Event>>, Self) {
        loop {
            if self.done {
                return (None, self);
            }
            let Some(frames) = self.frames.as_mut() else {
                if self.failures > 0 {
                    let wait = backoff(self.failures, &mut rand::thread_rng());
                    tokio::time::sleep(wait.max(self.wait_at_least)).await;
                }
                match self.connect().await {
                    Ok(frames) => {
                        self.frames = Some(frames);
                        self.connected_at = Instant::now();
                    }
                    Err(e) if retryable(&e) => self.failed(&e),
                    Err(e) => {
                        self.done = true;
                        return (Some(Err(e)), self);
                    }
                }
                continue;
            };
            match frames.next().await {
                Some(Ok(frame)) => {
                    if let Some(event) = self.accept(frame) {
                        return (Some(Ok(event)), self);
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "the event stream's connection ended; reconnecting");
                    self.dropped();
                }
                None => {
                    tracing::debug!("the server ended the event stream; reconnecting");
                    self.dropped();
                }
            }
        }
    }

    /// One connection attempt, resuming after the last event seen.
    fn connect(&self) -> impl std::future::Future<Output = Result<Frames>> + Send + 'static {
        connect(self.client.clone(), self.query.clone(), self.last)
    }

    /// Takes a frame: an event not seen yet, or `None` (a repeat, a `resume` frame, a frame
    /// that is not an event).
    fn accept(&mut self, frame: Frame) -> Option<Event> {
        if frame.event == OPEN_EVENT {
            // Where the stream starts: a reconnect before the first event resumes from here.
            if let (None, Ok(position)) = (self.last, frame.id.parse::<u64>()) {
                self.last = Some(position);
            }
            return None;
        }
        if frame.event == RESUME_EVENT {
            let position = serde_json::from_str::<ResumeHint>(&frame.data)
                .map(|hint| hint.last_event_id)
                .ok()
                .or_else(|| frame.id.parse().ok());
            if let Some(position) = position {
                self.last = Some(self.last.map_or(position, |last| last.max(position)));
            }
            tracing::debug!("the event stream fell behind; resuming after its last event");
            self.frames = None;
            self.failures = 0;
            return None;
        }
        match serde_json::from_str::<Event>(&frame.data) {
            Ok(event) if self.last.is_some_and(|last| event.id <= last) => None,
            Ok(event) => {
                self.last = Some(event.id);
                self.failures = 0;
                Some(event)
            }
            Err(e) => {
                tracing::warn!(error = %e, "an event-stream frame is not an event; skipped");
                None
            }
        }
    }

    /// A connection attempt failed in a way that may mend.
    fn failed(&mut self, e: &Error) {
        tracing::debug!(
            error = e.kind(),
            "the event stream could not connect; retrying: {e}"
        );
        self.failures = self.failures.saturating_add(1);
        self.wait_at_least = match e {
            Error::RateLimited {
                retry_after: Some(wait),
            } => *wait,
            _ => Duration::ZERO,
        };
    }

    /// The connection ended: reconnect, at once after a long healthy one.
    fn dropped(&mut self) {
        self.frames = None;
        self.wait_at_least = Duration::ZERO;
        self.failures = if self.connected_at.elapsed() >= HEALTHY {
            1
        } else {
            self.failures.saturating_add(1)
        };
    }
}

/// One connection attempt of a stream, resuming after `last`.
async fn connect(
    client: Client,
    query: Vec<(String, String)>,
    last: Option<u64>,
) -> Result<Frames> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("text/event-stream"),
    );
    if let Some(last) = last {
        headers.insert("last-event-id", HeaderValue::from(last));
    }
    let response = client
        .open_stream(OP, paths::EVENTS, query, headers)
        .await?;
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("text/event-stream") {
        return Err(Error::Protocol(format!(
            "{} answered {content_type:?}, not an event stream",
            paths::EVENTS
        )));
    }
    let bytes = Box::pin(response.bytes_stream());
    let guarded = futures::stream::unfold(bytes, |mut bytes| async move {
        let item = match tokio::time::timeout(IDLE_TIMEOUT, bytes.next()).await {
            Ok(Some(Ok(chunk))) => Ok(chunk),
            Ok(Some(Err(e))) => Err(Broken::Transport(e.without_url().to_string())),
            Ok(None) => return None,
            Err(_) => Err(Broken::Idle),
        };
        Some((item, bytes))
    });
    Ok(Box::pin(guarded.eventsource()))
}

/// Whether another connection attempt may succeed.
fn retryable(e: &Error) -> bool {
    matches!(
        e,
        Error::Unreachable { .. }
            | Error::Timeout { .. }
            | Error::Server { .. }
            | Error::RateLimited { .. }
    )
}

/// The wait before attempt `failures + 1`: between half and all of 100 ms · 2^(failures-1),
/// at most 5 s.
fn backoff(failures: u32, rng: &mut impl Rng) -> Duration {
    let step = FIRST_BACKOFF
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    let half = step / 2;
    half + Duration::from_micros(rng.gen_range(0..=half.as_micros() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use contextd_proto::events::EventType;
    use contextd_proto::object::MediaType;
    use contextd_proto::ObjectId;
    use rand::SeedableRng;

    #[test]
    fn backoff_doubles_from_100_ms_to_5_s_with_jitter() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (failures, step_ms) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (6, 3200),
            (7, 5000),
            (40, 5000),
        ] {
            let step = Duration::from_millis(step_ms);
            for _ in 0..50 {
                let wait = backoff(failures, &mut rng);
                assert!(wait >= step / 2 && wait <= step, "{failures}: {wait:?}");
            }
        }
    }

    #[test]
    fn filters_become_the_query_the_server_reads() {
        let customer = ObjectId::new();
        let filter = EventFilter {
            types: vec![EventType::Created, EventType::Moved],
            customer_id: Some(customer),
            contributor: Some("agent 7".into()),
            media_type: Some(MediaType::Sms),
            addressed_to: Some("ana".into()),
        };
        assert_eq!(
            query(&filter),
            vec![
                ("customerId".to_owned(), customer.to_string()),
                ("contributor".to_owned(), "agent 7".to_owned()),
                ("mediaType".to_owned(), "sms".to_owned()),
                ("addressedTo".to_owned(), "ana".to_owned()),
                ("types".to_owned(), "object.created,object.moved".to_owned()),
            ]
        );
        assert!(query(&EventFilter::default()).is_empty());
    }

    #[test]
    fn only_failures_that_may_mend_are_retried() {
        assert!(retryable(&Error::Unreachable {
            url: "u".into(),
            reason: "r".into()
        }));
        assert!(retryable(&Error::RateLimited { retry_after: None }));
        assert!(!retryable(&Error::Unauthorized { detail: "d".into() }));
        assert!(!retryable(&Error::Forbidden { detail: "d".into() }));
        assert!(!retryable(&Error::Protocol("p".into())));
    }

    fn feed(last: Option<u64>) -> Feed {
        let client = Client::new("http://127.0.0.1:9", "t", crate::Settings::default()).unwrap();
        match client.events(EventFilter::default(), last).feed {
            Some(feed) => feed,
            None => unreachable!(),
        }
    }

    fn frame(event: &str, id: &str, data: &str) -> Frame {
        Frame {
            event: event.into(),
            id: id.into(),
            data: data.into(),
            retry: None,
        }
    }

    fn event_json(id: u64) -> String {
        serde_json::json!({
            "id": id, "type": "object.created", "objectId": ObjectId::new(),
            "objectType": "customer", "customerId": null, "parentId": null, "mediaType": null,
            "state": "active", "lastUpdated": "2026-01-01T00:00:00Z",
            "contributor": {"id": "x", "type": "machine"}, "time": "2026-01-01T00:00:00Z"
        })
        .to_string()
    }

    #[test]
    fn the_open_frame_sets_the_position_of_a_stream_that_had_none() {
        let open = r#"{"reason":"open","lastEventId":41}"#;
        let mut fresh = feed(None);
        assert!(fresh.accept(frame(OPEN_EVENT, "41", open)).is_none());
        assert_eq!(fresh.last, Some(41), "a reconnect now resumes after 41");
        let mut resumed = feed(Some(50));
        assert!(resumed.accept(frame(OPEN_EVENT, "41", open)).is_none());
        assert_eq!(resumed.last, Some(50), "a known position is kept");
    }

    #[test]
    fn repeats_are_skipped_and_a_resume_frame_moves_the_position() {
        let mut feed = feed(Some(5));
        assert!(feed
            .accept(frame("object.created", "5", &event_json(5)))
            .is_none());
        assert_eq!(
            feed.accept(frame("object.created", "6", &event_json(6)))
                .map(|e| e.id),
            Some(6)
        );
        assert!(feed.accept(frame("message", "", "not json")).is_none());
        let hint = r#"{"reason":"slow consumer","lastEventId":9}"#;
        assert!(feed.accept(frame(RESUME_EVENT, "9", hint)).is_none());
        assert_eq!(feed.last, Some(9));
        assert!(feed.frames.is_none(), "a resume frame drops the connection");
    }
}
