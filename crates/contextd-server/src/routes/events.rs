//! `GET /v1/events`: the Server-Sent Events stream of the caller's org and partition.
//!
//! A stream that resumes (`Last-Event-ID`, or `?lastEventId=`) first reads the outbox after
//! that id up to the hub's position at subscription ([`Subscription::position`]), then goes
//! on with what the hub hands over above it; ids are compared, so none is sent twice or lost.
//! A stream that does not resume starts after the newest event when it connected. A client
//! too slow for its buffer gets one `resume` frame and the end of the stream.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request};
use axum::response::sse::{Event as Frame, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use contextd_core::auth::Principal;
use contextd_core::object::MediaType;
use contextd_core::service::events::EVENT_PAGE;
use contextd_core::{CoreError, ObjectId};
use contextd_proto::events::{
    parse_event_id, Event, EventFilter, EventsQuery, ResumeHint, OPEN_EVENT, RESUME_EVENT,
};
use contextd_proto::paths;
use futures::Stream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::events::hub::{Delivery, Subscription};
use crate::extract::{ApiQuery, Auth};
use crate::AppState;

/// The header a reconnecting client sends (the SSE standard's).
const LAST_EVENT_ID: &str = "last-event-id";
/// How long a subscription waits for the hub to know where the outbox ends (at start-up).
const HUB_WAIT: Duration = Duration::from_secs(5);
/// The longest a stream goes without checking its credential again (it also checks at each
/// keep-alive interval, if shorter): a revoked key or an ended session stops its streams
/// within this, as its requests are refused at once.
const RECHECK_EVERY: Duration = Duration::from_secs(10);
/// The reconnection delay told to browsers' `EventSource` (`retry:` of the first frame).
const RETRY: Duration = Duration::from_millis(1000);
/// The shortest keep-alive interval honoured.
const MIN_KEEP_ALIVE: Duration = Duration::from_millis(100);
/// The longest contributor id a filter may name.
const MAX_CONTRIBUTOR: usize = 256;

/// Stream the events of the caller's org and partition (Server-Sent Events).
///
/// Each frame is `id: <event id>`, `event: <type>` (`object.created`, …) and `data: <Event
/// JSON>`; idle streams get keep-alive comments. A client that falls too far behind gets one
/// `event: resume` frame whose data is a `ResumeHint` (its `id:` the position to resume from),
/// then the stream ends: reconnect with `Last-Event-ID`.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id (wins over lastEventId)"),
    ),
    responses(
        (status = 200, description = "An endless text/event-stream of events (data: Event JSON)", content_type = "text/event-stream", body = Event),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 503, description = "The event feed is starting or the server stopping", body = Problem),
    ),
    security(("bearer" = [])))]
pub async fn stream(
    State(state): State<AppState>,
    Auth(actor): Auth,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> ApiResult<Response> {
    let filter = filter(&query)?;
    let resume = resume_after(&headers, query.last_event_id.as_deref())?;
    // Read before subscribing: the events between the two are read from the outbox.
    let now = state.context.last_event_id(&actor).await?;
    // A client has only seen ids given; a larger one comes from another database or a reset
    // one, and resuming after it would skip every event until ids caught up. (Compared with
    // the database's mark, which pruning never lowers: a quiet scope's position stays valid.)
    if let Some(id) = resume {
        let newest = state.context.newest_event_id().await?;
        if id > newest {
            return Err(ApiError::bad_request(format!(
                "Last-Event-ID {id} is beyond the newest event ({newest}); reconnect without it"
            )));
        }
    }
    let subscription = state
        .events
        .subscribe(actor.scope, filter.clone(), HUB_WAIT)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Storage, e.to_string()))?;
    let keep_alive = state.events_config.sse_keep_alive.max(MIN_KEEP_ALIVE);
    let feed = Feed::new(
        state,
        actor,
        credential(&headers),
        filter,
        resume.unwrap_or(now),
        subscription,
        keep_alive.min(RECHECK_EVERY),
    );
    let sse = Sse::new(feed.frames())
        .keep_alive(KeepAlive::new().interval(keep_alive).text("keep-alive"));
    let mut response = sse.into_response();
    // Proxies that buffer answers (nginx) would hold events back.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// The filter of the query; an empty value is as if absent.
fn filter(query: &EventsQuery) -> ApiResult<EventFilter> {
    let customer_id = present(&query.customer_id)
        .map(ObjectId::parse)
        .transpose()?;
    let media_type = present(&query.media_type)
        .map(str::parse::<MediaType>)
        .transpose()?;
    let types = present(&query.types)
        .map(EventFilter::parse_types)
        .transpose()?
        .unwrap_or_default();
    let contributor = bounded(&query.contributor, "contributor")?;
    let addressed_to = bounded(&query.addressed_to, "addressedTo")?;
    Ok(EventFilter {
        types,
        customer_id,
        contributor,
        media_type,
        addressed_to,
    })
}

/// A query value naming a contributor or user, at most [`MAX_CONTRIBUTOR`] characters.
fn bounded(value: &Option<String>, name: &str) -> ApiResult<Option<String>> {
    match present(value) {
        Some(v) if v.chars().count() > MAX_CONTRIBUTOR => Err(ApiError::bad_request(format!(
            "{name} is longer than {MAX_CONTRIBUTOR} characters"
        ))),
        v => Ok(v.map(str::to_owned)),
    }
}

/// A query value, trimmed; `None` when absent or empty.
fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The id to resume after: the `Last-Event-ID` header, else `lastEventId` of the query.
fn resume_after(headers: &HeaderMap, query: Option<&str>) -> ApiResult<Option<u64>> {
    let header = match headers.get(LAST_EVENT_ID) {
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::bad_request("Last-Event-ID is not an event id (a decimal number)")
        })?),
        None => None,
    };
    match header.or(query).map(str::trim).filter(|s| !s.is_empty()) {
        Some(id) => Ok(Some(parse_event_id(id)?)),
        None => Ok(None),
    }
}

/// The headers that authenticated the request, to check the credential again later.
fn credential(headers: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for name in [header::AUTHORIZATION, header::COOKIE] {
        for value in headers.get_all(&name) {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

/// What one step of a stream waits for.
enum Wake {
    Delivery(Option<Delivery>),
    Recheck,
}

/// One subscriber's stream: the outbox up to the hub's position, then the hub's deliveries.
struct Feed {
    state: AppState,
    actor: Principal,
    credential: HeaderMap,
    filter: EventFilter,
    /// Every event up to here was sent, or (read from the outbox) did not pass the filter;
    /// always an id of the scope's (or where the stream started), so a client may resume
    /// after it.
    cursor: u64,
    /// The outbox is read up to the hub's position at subscription; the hub has the rest.
    backfill_to: u64,
    /// The newest event of the scope read from the outbox so far.
    scanned: u64,
    backfilled: bool,
    pending: VecDeque<Event>,
    receiver: mpsc::Receiver<Delivery>,
    recheck_at: Instant,
    recheck_every: Duration,
    started: bool,
    done: bool,
}

impl Feed {
    fn new(
        state: AppState,
        actor: Principal,
        credential: HeaderMap,
        filter: EventFilter,
        after: u64,
        subscription: Subscription,
        recheck_every: Duration,
    ) -> Self {
        Self {
            state,
            actor,
            credential,
            filter,
            cursor: after,
            backfill_to: subscription.position,
            scanned: after,
            backfilled: after >= subscription.position,
            pending: VecDeque::new(),
            receiver: subscription.receiver,
            recheck_at: Instant::now() + recheck_every,
            recheck_every,
            started: false,
            done: false,
        }
    }

    /// The frames of the stream, ending after a `resume` frame, when the hub closes (the
    /// server stops), when the outbox can't be read or when the credential is refused.
    fn frames(self) -> impl Stream<Item = Result<Frame, Infallible>> + Send + 'static {
        futures::stream::unfold(self, |feed| async move {
            let (frame, feed) = feed.next().await?;
            Some((Ok(frame), feed))
        })
    }

    async fn next(mut self) -> Option<(Frame, Self)> {
        if self.done {
            return None;
        }
        if !self.started {
            self.started = true;
            return Some((self.open_frame(), self));
        }
        loop {
            if Instant::now() >= self.recheck_at {
                if !self.still_allowed().await {
                    return None;
                }
                self.recheck_at = Instant::now() + self.recheck_every;
            }
            if let Some(event) = self.pending.pop_front() {
                let frame = self.send(&event);
                return Some((frame, self));
            }
            if !self.backfilled {
                if let Err(e) = self.backfill().await {
                    tracing::warn!(error = %e, "an event stream could not read the outbox; it ends");
                    return None;
                }
                continue;
            }
            self.cursor = self.cursor.max(self.scanned);
            let wake = tokio::select! {
                delivery = self.receiver.recv() => Wake::Delivery(delivery),
                () = tokio::time::sleep_until(self.recheck_at) => Wake::Recheck,
            };
            match wake {
                Wake::Delivery(Some(Delivery::Event(event))) if event.id > self.cursor => {
                    let frame = self.send(&event);
                    return Some((frame, self));
                }
                Wake::Delivery(Some(Delivery::Event(_))) => {}
                Wake::Delivery(Some(Delivery::Overflow)) => {
                    self.done = true;
                    let frame = self.resume_frame();
                    return Some((frame, self));
                }
                Wake::Delivery(None) => return None,
                Wake::Recheck => {}
            }
        }
    }

    /// Reads the next page of the outbox after `scanned`, keeping what passes the filter.
    async fn backfill(&mut self) -> Result<(), CoreError> {
        let page = self
            .state
            .context
            .events_after(&self.actor, self.scanned, EVENT_PAGE)
            .await?;
        let complete = page.len() < EVENT_PAGE;
        for event in page {
            // Above the position, the hub delivers.
            if event.id > self.backfill_to {
                self.backfilled = true;
                return Ok(());
            }
            self.scanned = self.scanned.max(event.id);
            if self.filter.matches(&event) {
                self.pending.push_back(event);
            }
        }
        if complete {
            self.backfilled = true;
        }
        Ok(())
    }

    /// The frame of one event; the cursor moves past it.
    fn send(&mut self, event: &Event) -> Frame {
        self.cursor = self.cursor.max(event.id);
        let data = serde_json::to_string(event).unwrap_or_default();
        Frame::default()
            .id(event.id.to_string())
            .event(event.event_type.as_str())
            .data(data)
    }

    /// The first frame: where the stream starts, as an `id:` a client (and `EventSource`)
    /// keeps, so that a reconnect before any event arrived resumes from there.
    fn open_frame(&self) -> Frame {
        let hint = ResumeHint {
            reason: OPEN_EVENT.into(),
            last_event_id: self.cursor,
        };
        Frame::default()
            .event(OPEN_EVENT)
            .id(self.cursor.to_string())
            .data(serde_json::to_string(&hint).unwrap_or_default())
            .retry(RETRY)
    }

    /// The last frame of a stream that fell behind: where to resume.
    fn resume_frame(&self) -> Frame {
        let hint = ResumeHint {
            reason: "slow consumer".into(),
            last_event_id: self.cursor,
        };
        Frame::default()
            .id(self.cursor.to_string())
            .event(RESUME_EVENT)
            .data(serde_json::to_string(&hint).unwrap_or_default())
    }

    /// Whether the stream's credential still authenticates in its org and partition. Only a
    /// refusal (401, 403) ends the stream; a rate limit or a storage hiccup does not.
    async fn still_allowed(&self) -> bool {
        let Ok(request) = Request::builder()
            .method(Method::GET)
            .uri(paths::EVENTS)
            .body(())
        else {
            return true;
        };
        let (mut parts, ()) = request.into_parts();
        parts.headers = self.credential.clone();
        match Auth::from_request_parts(&mut parts, &self.state).await {
            Ok(Auth(principal)) => principal.scope == self.actor.scope,
            Err(e) => !matches!(e.code(), ErrorCode::Unauthorized | ErrorCode::Forbidden),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query as axum's `Query` reads it.
    fn query(pairs: &[(&str, &str)]) -> EventsQuery {
        let text = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let uri: axum::http::Uri = format!("/v1/events?{text}").parse().unwrap();
        axum::extract::Query::<EventsQuery>::try_from_uri(&uri)
            .unwrap()
            .0
    }

    #[test]
    fn query_values_become_a_filter_and_bad_ones_are_400() {
        let id = ObjectId::new();
        let f = filter(&query(&[
            ("customerId", &id.to_string()),
            ("types", "object.created,object.moved"),
            ("mediaType", "chat"),
            ("contributor", "agent-7"),
        ]))
        .unwrap();
        assert_eq!(f.customer_id, Some(id));
        assert_eq!(f.types.len(), 2);
        assert_eq!(f.media_type, Some(MediaType::Chat));
        assert_eq!(f.contributor.as_deref(), Some("agent-7"));
        assert_eq!(
            filter(&query(&[("customerId", "")])).unwrap(),
            EventFilter::default()
        );
        for bad in [
            ("customerId", "nope"),
            ("types", "object.exploded"),
            ("mediaType", "pigeon"),
        ] {
            let e = filter(&query(&[bad])).unwrap_err();
            assert_eq!(e.code(), ErrorCode::BadRequest, "{bad:?}");
        }
        let long = "x".repeat(MAX_CONTRIBUTOR + 1);
        assert!(filter(&query(&[("contributor", &long)])).is_err());
    }

    #[test]
    fn the_header_wins_over_the_query_and_bad_ids_are_400() {
        let mut headers = HeaderMap::new();
        assert_eq!(resume_after(&headers, None).unwrap(), None);
        assert_eq!(resume_after(&headers, Some("12")).unwrap(), Some(12));
        headers.insert(LAST_EVENT_ID, HeaderValue::from_static("40"));
        assert_eq!(resume_after(&headers, Some("12")).unwrap(), Some(40));
        headers.insert(LAST_EVENT_ID, HeaderValue::from_static("forty"));
        assert!(resume_after(&headers, None).is_err());
        assert!(resume_after(&HeaderMap::new(), Some("-1")).is_err());
    }
}
