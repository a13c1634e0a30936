//! The client: one request path (URL, auth, deadline, retries, error mapping, statistics)
//! under a typed method per endpoint.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contextd_proto::access::{
    AuditPage, AuditParams, CustomerExport, Erased, GrantCreated, KeyView, NewGrant, NewKey,
    NewUser, SessionsRevoked, UserPatch, UserView, WhoAmI,
};
use contextd_proto::dictionary::{Field, FieldSet};
use contextd_proto::error::{FieldError, Problem};
use contextd_proto::object::{
    FlushStatus, MediaType, ObjectInput, ObjectPatch, SearchRequest, SearchResult, TimelinePage,
    TimelineParams,
};
use contextd_proto::paths;
use contextd_proto::system::{EncryptionStatus, Ping, Status};
use contextd_proto::{ContextObject, Kind, ObjectId};
use contextd_stats::{Clock, Stats, SystemClock};
use futures::Stream;
use rand::Rng;
use reqwest::header::{self, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use crate::connection::{bearer_from, decode_connection_data};
use crate::error::{excerpt, Error, Result};
use crate::report::Outcomes;
use crate::search::Search;
use crate::settings::{redact_userinfo, Settings};

/// First backoff step; attempt `n` waits a random time up to `BASE · 2ⁿ⁻¹` (full jitter).
const BACKOFF_BASE: Duration = Duration::from_millis(25);
/// The longest single backoff.
const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// A retry is made only if at least this much of the timeout is left after the backoff.
const MIN_ATTEMPT_TIME: Duration = Duration::from_millis(20);
/// Answers after which an idempotent operation is tried again.
/// The outcome of one attempt of a call.
enum Attempt<B> {
    /// A 2xx answer's body.
    Answered(B),
    /// A failure another attempt may mend, and the least wait before it.
    Transient(Error, Duration),
    /// A failure no retry mends.
    Final(Error),
}

const RETRY_STATUSES: [StatusCode; 4] = [
    StatusCode::TOO_MANY_REQUESTS,
    StatusCode::BAD_GATEWAY,
    StatusCode::SERVICE_UNAVAILABLE,
    StatusCode::GATEWAY_TIMEOUT,
];
/// Page size used by the streams.
const STREAM_PAGE: usize = 200;
/// The shortest pause between flush-status polls.
const MIN_POLL: Duration = Duration::from_millis(10);
/// Sent as `x-request-id`, the same on every attempt of one operation.
const REQUEST_ID: &str = "x-request-id";
const JSON: &str = "application/json";
const MERGE_PATCH: &str = "application/merge-patch+json";

/// A contextd client: cheap to clone (clones share one connection pool and one set of
/// statistics), safe to use from many tasks at once.
///
/// Every method is one operation of the native API. Its timeout is
/// [`Settings::timeout`], retries and backoff included; idempotent operations (reads,
/// `PUT`, `DELETE`, search, and `PATCH` with a version) are retried after a failure before
/// any answer (connect error, reset) or a 429/502/503/504 answer, while time is left. Each operation is counted in
/// [`Client::stats_summary`] under its name (`customer.create`).
///
/// ```no_run
/// use contextd_client::{Client, Settings};
///
/// # async fn demo() -> contextd_client::Result<()> {
/// let client = Client::new("http://127.0.0.1:8080", "ctx_…", Settings::voice())?;
/// let status = client.status().await?;
/// println!("{} ({}), partition {}", status.status, status.version, status.partition);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: String,
    auth: Option<HeaderValue>,
    settings: Settings,
    stats: Stats,
    outcomes: Outcomes,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url)
            .field("token", &"[redacted]")
            .field("settings", &self.inner.settings)
            .finish()
    }
}

impl Inner {
    /// Counts an operation in the statistics and notes its outcome for the status line.
    fn count(&self, op: &str, elapsed: Duration, error_kind: Option<&'static str>) {
        self.stats.record(op, elapsed, error_kind);
        self.outcomes.record(op, error_kind);
    }

    /// Logs the status line and the interval's statistics summary, and starts a new interval.
    fn report(&self) {
        let (overall, detail) = self.outcomes.status(&redact_userinfo(&self.base_url));
        contextd_stats::log_status("sdk", overall, &detail);
        contextd_stats::log_summary("sdk", &self.stats);
    }
}

/// One operation, described once and sent as many times as retries allow.
struct Call {
    op: String,
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    body: Option<(&'static str, Vec<u8>)>,
    if_match: Option<i64>,
    idempotent: bool,
}

impl Call {
    fn new(op: impl Into<String>, method: Method, path: String) -> Self {
        let idempotent = method != Method::POST && method != Method::PATCH;
        Self {
            op: op.into(),
            method,
            path,
            query: Vec::new(),
            body: None,
            if_match: None,
            idempotent,
        }
    }

    fn get(op: impl Into<String>, path: String) -> Self {
        Self::new(op, Method::GET, path)
    }

    fn post(op: impl Into<String>, path: String) -> Self {
        Self::new(op, Method::POST, path)
    }

    fn put(op: impl Into<String>, path: String) -> Self {
        Self::new(op, Method::PUT, path)
    }

    fn delete(op: impl Into<String>, path: String) -> Self {
        Self::new(op, Method::DELETE, path)
    }

    fn patch(op: impl Into<String>, path: String) -> Self {
        Self::new(op, Method::PATCH, path)
    }

    /// Safe to send again (a search is a `POST` that changes nothing).
    fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = yes;
        self
    }

    /// Sends `If-Match: "N"`: the write applies only to version N.
    fn if_match(mut self, version: Option<i64>) -> Self {
        self.if_match = version;
        self
    }

    fn json<T: Serialize + ?Sized>(self, body: &T) -> Result<Self> {
        self.body_as(JSON, body)
    }

    fn body_as<T: Serialize + ?Sized>(
        mut self,
        content_type: &'static str,
        body: &T,
    ) -> Result<Self> {
        let bytes = serde_json::to_vec(body).map_err(|e| {
            Error::InvalidSettings(format!("the request body can't be written as JSON: {e}"))
        })?;
        self.body = Some((content_type, bytes));
        Ok(self)
    }

    fn query<T: Serialize>(mut self, params: &T) -> Result<Self> {
        self.query = query_pairs(params)?;
        Ok(self)
    }
}

impl Client {
    /// A client of the service at `base_url` (`http://127.0.0.1:8080`; a path prefix is
    /// kept) that authenticates with a bearer `token` (an API key, or an admin token printed
    /// by `contextd serve`/`contextd org create`). The token works in its own partition;
    /// [`Settings::lab_mode`] does not change it.
    ///
    /// Fails with [`Error::InvalidSettings`] if the URL is not `http(s)://…`, the token is
    /// not a valid header value, or the proxy URL can't be used. No request is made.
    ///
    /// ```
    /// use contextd_client::{Client, Settings};
    ///
    /// let client = Client::new("http://127.0.0.1:8080/", "ctx_secret", Settings::default())?;
    /// assert_eq!(client.base_url(), "http://127.0.0.1:8080");
    /// assert!(!format!("{client:?}").contains("ctx_secret"));
    /// # Ok::<(), contextd_client::Error>(())
    /// ```
    pub fn new(base_url: &str, token: impl Into<String>, settings: Settings) -> Result<Client> {
        let base_url = check_base_url(base_url).map_err(Error::InvalidSettings)?;
        Self::build(base_url, token.into(), settings)
    }

    /// A client built from a component's connectionData (README, "Rust SDK"): the standard base64 of
    /// the JSON [`ConnectionData`](contextd_proto::connection::ConnectionData), at most 4096
    /// bytes. Its `serviceUrl` is the base URL; its `credentialsLabMode` are used when
    /// [`Settings::lab_mode`] is set, else its `credentials`.
    ///
    /// Today a credential's `clientSecret` is itself a bearer token. The components issue
    /// will exchange `clientId` + `clientSecret` for a short-lived token at
    /// `POST /v1/token` instead; callers won't need to change.
    ///
    /// Fails with [`Error::InvalidConnectionData`] if the string can't be decoded or holds
    /// an unusable URL or credential.
    ///
    /// ```no_run
    /// use contextd_client::{Client, Settings};
    ///
    /// # fn demo() -> contextd_client::Result<()> {
    /// let data = std::env::var("CONTEXTD_CONNECTION_DATA").unwrap_or_default();
    /// let client = Client::from_connection_data(&data, Settings::voice().with_lab_mode(true))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_connection_data(data: &str, settings: Settings) -> Result<Client> {
        let decoded = decode_connection_data(data)?;
        let credentials = if settings.lab_mode() {
            &decoded.credentials_lab_mode
        } else {
            &decoded.credentials
        };
        let token = bearer_from(credentials)?;
        let base_url = check_base_url(&decoded.service_url)
            .map_err(|e| Error::InvalidConnectionData(format!("serviceUrl: {e}")))?;
        Self::build(base_url, token, settings)
    }

    fn build(base_url: String, token: String, settings: Settings) -> Result<Client> {
        let auth = if token.is_empty() {
            None
        } else {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                Error::InvalidSettings(
                    "the token holds characters that can't be sent in an HTTP header".into(),
                )
            })?;
            value.set_sensitive(true);
            Some(value)
        };
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("contextd-client/", env!("CARGO_PKG_VERSION")));
        if let Some(proxy) = settings.proxy() {
            let proxy = reqwest::Proxy::all(proxy).map_err(|e| {
                Error::InvalidSettings(format!(
                    "proxy URL '{}' can't be used: {e}",
                    redact_userinfo(proxy)
                ))
            })?;
            builder = builder.proxy(proxy);
        }
        let http = builder
            .build()
            .map_err(|e| Error::InvalidSettings(format!("the HTTP client can't be built: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base_url,
                auth,
                settings,
                stats: Stats::default(),
                outcomes: Outcomes::default(),
            }),
        })
    }

    /// The service's base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The settings the client was built with (the timeout already clamped).
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Statistics of every operation since the client was built or [`reset`](Client::reset_stats):
    /// one JSON object, name → `{count, errors, minMs, meanMs, maxMs, p99Ms}`. Names are
    /// operations (`customer.create`, `activity.search`, `field.list`, `status.get`) and,
    /// for failures, `<operation>.error.<kind>` (`activity.search.error.notFound`, kinds as
    /// [`Error::kind`]) with the same members. Latencies are whole operations, retries
    /// included.
    ///
    /// ```no_run
    /// # async fn demo(client: contextd_client::Client) {
    /// let _ = client.ping().await;
    /// let stats = client.stats_summary();
    /// println!("ping p99: {} ms", stats["ping"]["p99Ms"]);
    /// # }
    /// ```
    pub fn stats_summary(&self) -> serde_json::Value {
        self.inner.stats.summary()
    }

    /// Forgets every statistic (for a new reporting period).
    pub fn reset_stats(&self) {
        self.inner.stats.reset();
    }

    /// Logs this client's status line and statistics summary every `interval`, on the wall
    /// clock's whole multiples of it since midnight UTC (30 minutes: at :00 and :30), as the
    /// server does; each summary starts the next interval's statistics empty (what
    /// [`stats_summary`](Client::stats_summary) shows afterwards). Off unless called: a
    /// long-lived component (an IVR, a desktop's back end) calls it once after building its
    /// client.
    ///
    /// The status line is logged at `INFO` under the target
    /// [`STATUS_TAG`](crate::stats::STATUS_TAG) (`contextd.status`) with `source="sdk"`: the
    /// overall status (`unknown` before any operation, `down` when the latest operation got
    /// no answer, `degraded` when it was refused as `server` or `rateLimited`, else `ok`), the
    /// base URL (without credentials), when an operation last succeeded, and the last failure
    /// (time, operation, error kind). The summary is logged under
    /// [`STATS_TAG`](crate::stats::STATS_TAG) (`contextd.stats`) as one JSON object, as
    /// [`stats_summary`](Client::stats_summary) returns it.
    ///
    /// The task ends by itself at the first boundary after the last clone of the client is
    /// dropped, or when the returned handle is aborted. It needs a Tokio runtime
    /// ([`Error::InvalidSettings`] without one).
    ///
    /// ```no_run
    /// # async fn demo(client: contextd_client::Client) -> contextd_client::Result<()> {
    /// let _reports = client.report_every(std::time::Duration::from_secs(30 * 60))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn report_every(&self, interval: Duration) -> Result<tokio::task::JoinHandle<()>> {
        self.report_on(SystemClock, interval)
    }

    /// [`report_every`](Client::report_every) on another clock.
    fn report_on<C: Clock + 'static>(
        &self,
        clock: C,
        interval: Duration,
    ) -> Result<tokio::task::JoinHandle<()>> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::InvalidSettings("report_every must be called inside a Tokio runtime".into())
        })?;
        let client = Arc::downgrade(&self.inner);
        let schedule = contextd_stats::report_every(clock, interval, move |_| {
            let flow = match client.upgrade() {
                Some(inner) => {
                    inner.report();
                    ControlFlow::Continue(())
                }
                None => ControlFlow::Break(()),
            };
            std::future::ready(flow)
        });
        Ok(runtime.spawn(schedule))
    }

    // ---------------------------------------------------------------------------------
    // Objects
    // ---------------------------------------------------------------------------------

    /// Creates an object (`customer.create`, …); the server assigns its id and version 1.
    ///
    /// ```no_run
    /// use contextd_client::proto::object::ObjectInput;
    /// use contextd_client::proto::Kind;
    /// use serde_json::json;
    ///
    /// # async fn demo(client: contextd_client::Client, customer: contextd_client::proto::ObjectId) -> contextd_client::Result<()> {
    /// let activity = client
    ///     .create(
    ///         Kind::Activity,
    ///         &ObjectInput {
    ///             customer_id: Some(customer.to_string()),
    ///             media_type: Some("voice".into()),
    ///             fieldsets: vec!["cisco.base.pod".into()],
    ///             data: [("Context_Notes".to_owned(), json!("called about the fault"))].into(),
    ///             ..Default::default()
    ///         },
    ///     )
    ///     .await?;
    /// println!("POD.ID = {}", activity.id);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create(&self, kind: Kind, input: &ObjectInput) -> Result<ContextObject> {
        let call = Call::post(op(kind, "create"), paths::objects(kind));
        self.json(call.json(input)).await
    }

    /// Reads an object (`customer.get`, …).
    pub async fn get(&self, kind: Kind, id: ObjectId) -> Result<ContextObject> {
        self.json(Ok(Call::get(op(kind, "get"), paths::object(kind, id))))
            .await
    }

    /// Replaces an object (`customer.replace`, …). `input.version` must be the version read:
    /// if the stored one differs the answer is [`Error::Conflict`] with the current version.
    /// Without a version the call fails with [`Error::Validation`] before anything is sent.
    pub async fn replace(
        &self,
        kind: Kind,
        id: ObjectId,
        input: &ObjectInput,
    ) -> Result<ContextObject> {
        let op = op(kind, "replace");
        if input.version.is_none() {
            return self.fail_early(
                &op,
                Error::Validation {
                    detail: "a replace must carry the version it was based on".into(),
                    errors: vec![FieldError::new(
                        "version",
                        "required: the version of the object as read (get it with `get`)",
                    )],
                },
            );
        }
        self.json(Call::put(op, paths::object(kind, id)).json(input))
            .await
    }

    /// Merge-patches an object (RFC 7396; `customer.patch`, …): `data` keys merge (`null`
    /// removes one), `tags`, `state`, `fieldsets`, `parentId` and `customerId` replace.
    /// With `if_match` (or a `version` member in the patch) the write applies only to that
    /// version, and the call is retried like other idempotent ones.
    ///
    /// ```no_run
    /// use contextd_client::proto::object::ObjectPatch;
    /// use contextd_client::proto::Kind;
    /// use serde_json::json;
    ///
    /// # async fn demo(client: contextd_client::Client, request: contextd_client::proto::ObjectId) -> contextd_client::Result<()> {
    /// let current = client.get(Kind::Request, request).await?;
    /// let mut patch = ObjectPatch::new();
    /// patch.insert("state".into(), json!("closed"));
    /// client.patch(Kind::Request, request, &patch, Some(current.version)).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn patch(
        &self,
        kind: Kind,
        id: ObjectId,
        patch: &ObjectPatch,
        if_match: Option<i64>,
    ) -> Result<ContextObject> {
        let versioned = if_match.is_some() || patch.get("version").is_some_and(|v| !v.is_null());
        let call = Call::patch(op(kind, "patch"), paths::object(kind, id))
            .idempotent(versioned)
            .if_match(if_match)
            .body_as(MERGE_PATCH, patch);
        self.json(call).await
    }

    /// Deletes one object (`customer.delete`, …); lab partition only (else
    /// [`Error::Forbidden`]). Linked objects keep their links.
    pub async fn delete(&self, kind: Kind, id: ObjectId) -> Result<()> {
        self.empty(Ok(Call::delete(
            op(kind, "delete"),
            paths::object(kind, id),
        )))
        .await
    }

    /// One page of a search (`customer.search`, …); build the request with [`Search`] and
    /// follow `nextCursor`, or let [`Client::search_all`] do it.
    ///
    /// ```no_run
    /// use contextd_client::Search;
    /// use contextd_client::proto::Kind;
    ///
    /// # async fn demo(client: contextd_client::Client) -> contextd_client::Result<()> {
    /// let page = client
    ///     .search(Kind::Customer, &Search::all().term("Context_Mobile_Phone", "+1 555 010 0001").build())
    ///     .await?;
    /// println!("{} match", page.total);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn search(&self, kind: Kind, request: &SearchRequest) -> Result<SearchResult> {
        let call = Call::post(op(kind, "search"), paths::search(kind)).idempotent(true);
        self.json(call.json(request)).await
    }

    /// Every object a search matches, page after page as the stream is read (each page is
    /// one `<kind>.search` operation with its own timeout). The search's `summary` is
    /// ignored: this stream yields whole objects. The stream ends after its first error.
    ///
    /// ```no_run
    /// use contextd_client::Search;
    /// use contextd_client::proto::Kind;
    /// use futures::TryStreamExt;
    ///
    /// # async fn demo(client: contextd_client::Client) -> contextd_client::Result<()> {
    /// let open: Vec<_> = client
    ///     .search_all(Kind::Request, Search::all().term("state", "active"))
    ///     .try_collect()
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn search_all(
        &self,
        kind: Kind,
        search: Search,
    ) -> impl Stream<Item = Result<ContextObject>> + Send + 'static {
        let client = self.clone();
        let mut request = search.summary(false).build();
        if request.limit.is_none() {
            request.limit = Some(STREAM_PAGE);
        }
        paged(request.cursor.take(), move |cursor| {
            let client = client.clone();
            let request = SearchRequest {
                cursor,
                ..request.clone()
            };
            async move {
                let page = client.search(kind, &request).await?;
                Ok((page.items.unwrap_or_default(), page.next_cursor))
            }
        })
    }

    /// One page of a customer's journey (`customer.timeline`): requests, activities and
    /// details, newest first.
    pub async fn timeline(
        &self,
        customer: ObjectId,
        params: &TimelineParams,
    ) -> Result<TimelinePage> {
        let call = Call::get(
            "customer.timeline",
            paths::with_id(paths::TIMELINE, customer),
        );
        self.json(call.query(params)).await
    }

    /// A customer's whole journey, newest first, fetched page by page as the stream is read
    /// (each page is one `customer.timeline` operation with its own timeout); only
    /// activities of `media_type` if given. The stream ends after its first error.
    ///
    /// ```no_run
    /// use futures::TryStreamExt;
    ///
    /// # async fn demo(client: contextd_client::Client, customer: contextd_client::proto::ObjectId) -> contextd_client::Result<()> {
    /// let mut journey = std::pin::pin!(client.timeline_stream(customer, None));
    /// while let Some(object) = journey.try_next().await? {
    ///     println!("{} {} {}", object.created, object.kind, object.id);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn timeline_stream(
        &self,
        customer: ObjectId,
        media_type: Option<MediaType>,
    ) -> impl Stream<Item = Result<ContextObject>> + Send + 'static {
        let client = self.clone();
        paged(None, move |cursor| {
            let client = client.clone();
            let params = TimelineParams {
                media_type: media_type.map(|m| m.as_str().to_owned()),
                limit: Some(STREAM_PAGE),
                cursor,
            };
            async move {
                let page = client.timeline(customer, &params).await?;
                Ok((page.items, page.next_cursor))
            }
        })
    }

    /// Starts deleting every object of a kind (`customer.flush`, …; lab partition only);
    /// the answer is the job's first status.
    pub async fn flush(&self, kind: Kind) -> Result<FlushStatus> {
        self.json(Ok(Call::post(op(kind, "flush"), paths::flush(kind))))
            .await
    }

    /// The status of a flush job (`flush.status`).
    pub async fn flush_status(&self, id: Uuid) -> Result<FlushStatus> {
        self.json(Ok(Call::get(
            "flush.status",
            paths::with_id(paths::FLUSH_STATUS, id),
        )))
        .await
    }

    /// Flushes a kind and waits until the job is `completed`, polling every `poll` (at
    /// least 10 ms) and handing each status to `on_progress`. The timeout applies to each
    /// call, not to the whole wait.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use contextd_client::proto::Kind;
    ///
    /// # async fn demo(client: contextd_client::Client) -> contextd_client::Result<()> {
    /// let done = client
    ///     .flush_and_wait(Kind::Activity, Duration::from_millis(200), |s| {
    ///         eprintln!("{} flushed so far", s.flushed)
    ///     })
    ///     .await?;
    /// println!("{}", done.message);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn flush_and_wait(
        &self,
        kind: Kind,
        poll: Duration,
        mut on_progress: impl FnMut(&FlushStatus),
    ) -> Result<FlushStatus> {
        let mut status = self.flush(kind).await?;
        on_progress(&status);
        while !status.completed {
            tokio::time::sleep(poll.max(MIN_POLL)).await;
            status = self.flush_status(status.id).await?;
            on_progress(&status);
        }
        Ok(status)
    }

    // ---------------------------------------------------------------------------------
    // Dictionary
    // ---------------------------------------------------------------------------------

    /// Every field, built-in and custom (`field.list`).
    pub async fn fields(&self) -> Result<Vec<Field>> {
        self.json(Ok(Call::get("field.list", paths::FIELDS.to_owned())))
            .await
    }

    /// One field (`field.get`).
    pub async fn field(&self, id: &str) -> Result<Field> {
        self.json(Ok(Call::get(
            "field.get",
            dictionary_path(paths::FIELD, id),
        )))
        .await
    }

    /// Creates a custom field (`field.create`; admin).
    pub async fn create_field(&self, field: &Field) -> Result<Field> {
        let call = Call::post("field.create", paths::FIELDS.to_owned());
        self.json(call.json(field)).await
    }

    /// Replaces the custom field `field.id` (`field.update`; admin); its `dataType` and
    /// `classification` can't change once data uses it ([`Error::Conflict`]).
    pub async fn update_field(&self, field: &Field) -> Result<Field> {
        let call = Call::put("field.update", dictionary_path(paths::FIELD, &field.id));
        self.json(call.json(field)).await
    }

    /// Deletes an unused custom field (`field.delete`; admin).
    pub async fn delete_field(&self, id: &str) -> Result<()> {
        self.empty(Ok(Call::delete(
            "field.delete",
            dictionary_path(paths::FIELD, id),
        )))
        .await
    }

    /// Every field set, built-in and custom (`fieldset.list`).
    pub async fn fieldsets(&self) -> Result<Vec<FieldSet>> {
        self.json(Ok(Call::get("fieldset.list", paths::FIELDSETS.to_owned())))
            .await
    }

    /// One field set (`fieldset.get`).
    pub async fn fieldset(&self, id: &str) -> Result<FieldSet> {
        self.json(Ok(Call::get(
            "fieldset.get",
            dictionary_path(paths::FIELDSET, id),
        )))
        .await
    }

    /// Creates a custom field set (`fieldset.create`; admin).
    pub async fn create_fieldset(&self, set: &FieldSet) -> Result<FieldSet> {
        let call = Call::post("fieldset.create", paths::FIELDSETS.to_owned());
        self.json(call.json(set)).await
    }

    /// Replaces the custom field set `set.id` (`fieldset.update`; admin).
    pub async fn update_fieldset(&self, set: &FieldSet) -> Result<FieldSet> {
        let call = Call::put("fieldset.update", dictionary_path(paths::FIELDSET, &set.id));
        self.json(call.json(set)).await
    }

    /// Deletes an unused custom field set (`fieldset.delete`; admin).
    pub async fn delete_fieldset(&self, id: &str) -> Result<()> {
        self.empty(Ok(Call::delete(
            "fieldset.delete",
            dictionary_path(paths::FIELDSET, id),
        )))
        .await
    }

    // ---------------------------------------------------------------------------------
    // Access
    // ---------------------------------------------------------------------------------

    /// Who the token belongs to: id, role, partition, organization (`session.whoami`).
    pub async fn whoami(&self) -> Result<WhoAmI> {
        self.json(Ok(Call::get(
            "session.whoami",
            paths::SESSION_CURRENT.to_owned(),
        )))
        .await
    }

    /// The partition's users (`user.list`; admin).
    pub async fn users(&self) -> Result<Vec<UserView>> {
        self.json(Ok(Call::get("user.list", paths::USERS.to_owned())))
            .await
    }

    /// Creates a user (`user.create`; admin).
    pub async fn create_user(&self, user: &NewUser) -> Result<UserView> {
        let call = Call::post("user.create", paths::USERS.to_owned());
        self.json(call.json(user)).await
    }

    /// Changes a user's role, password or disabled flag (`user.update`; admin).
    pub async fn update_user(&self, id: Uuid, patch: &UserPatch) -> Result<UserView> {
        let call = Call::patch("user.update", paths::with_id(paths::USER, id));
        self.json(call.json(patch)).await
    }

    /// Deletes a user and every session of theirs (`user.delete`; admin).
    pub async fn delete_user(&self, id: Uuid) -> Result<()> {
        self.empty(Ok(Call::delete(
            "user.delete",
            paths::with_id(paths::USER, id),
        )))
        .await
    }

    /// Ends every session of a user at once (`user.revokeSessions`; admin).
    pub async fn revoke_user_sessions(&self, id: Uuid) -> Result<SessionsRevoked> {
        self.json(Ok(Call::delete(
            "user.revokeSessions",
            paths::with_id(paths::USER_SESSIONS, id),
        )))
        .await
    }

    /// The partition's API keys, without secrets (`key.list`; admin).
    pub async fn keys(&self) -> Result<Vec<KeyView>> {
        self.json(Ok(Call::get("key.list", paths::KEYS.to_owned())))
            .await
    }

    /// Creates an API key (`key.create`; admin); its `token` is in this answer only.
    pub async fn create_key(&self, key: &NewKey) -> Result<KeyView> {
        let call = Call::post("key.create", paths::KEYS.to_owned());
        self.json(call.json(key)).await
    }

    /// Revokes an API key, effective at once (`key.revoke`; admin).
    pub async fn revoke_key(&self, id: Uuid) -> Result<()> {
        self.empty(Ok(Call::delete(
            "key.revoke",
            paths::with_id(paths::KEY, id),
        )))
        .await
    }

    /// Lets a partner principal see ENCRYPTED and PII values until the grant's expiry
    /// (`grant.create`; admin).
    pub async fn create_grant(&self, grant: &NewGrant) -> Result<GrantCreated> {
        let call = Call::post("grant.create", paths::GRANTS.to_owned());
        self.json(call.json(grant)).await
    }

    /// Revokes a grant, effective at once (`grant.revoke`; admin).
    pub async fn revoke_grant(&self, id: Uuid) -> Result<()> {
        self.empty(Ok(Call::delete(
            "grant.revoke",
            paths::with_id(paths::GRANT, id),
        )))
        .await
    }

    /// One page of the audit log, newest first (`audit.list`; admin).
    pub async fn audit(&self, params: &AuditParams) -> Result<AuditPage> {
        let call = Call::get("audit.list", paths::AUDIT.to_owned());
        self.json(call.query(params)).await
    }

    /// Right to be forgotten: removes the customer and everything linked to it and destroys
    /// its key (`customer.erase`; admin; allowed in production).
    pub async fn erase_customer(&self, customer: ObjectId) -> Result<Erased> {
        self.json(Ok(Call::post(
            "customer.erase",
            paths::with_id(paths::ERASE, customer),
        )))
        .await
    }

    /// Everything held about a customer (`customer.export`; admin).
    pub async fn export_customer(&self, customer: ObjectId) -> Result<CustomerExport> {
        self.json(Ok(Call::get(
            "customer.export",
            paths::with_id(paths::EXPORT, customer),
        )))
        .await
    }

    // ---------------------------------------------------------------------------------
    // System
    // ---------------------------------------------------------------------------------

    /// Liveness, without authentication (`ping`).
    pub async fn ping(&self) -> Result<Ping> {
        self.json(Ok(Call::get("ping", paths::PING.to_owned())))
            .await
    }

    /// Overall status, dependencies, version, uptime and partition (`status.get`).
    pub async fn status(&self) -> Result<Status> {
        self.json(Ok(Call::get("status.get", paths::STATUS.to_owned())))
            .await
    }

    /// Adds a data-key version to the partition; older values are re-encrypted in the
    /// background, with progress in [`Client::status`] (`encryption.rotate`; admin).
    pub async fn rotate_data_key(&self) -> Result<EncryptionStatus> {
        self.json(Ok(Call::post(
            "encryption.rotate",
            paths::ROTATE.to_owned(),
        )))
        .await
    }

    /// The server's OpenAPI document (`openapi.get`).
    pub async fn openapi(&self) -> Result<serde_json::Value> {
        self.json(Ok(Call::get("openapi.get", paths::OPENAPI.to_owned())))
            .await
    }

    // ---------------------------------------------------------------------------------
    // The one request path
    // ---------------------------------------------------------------------------------

    /// Runs a call whose answer is JSON of type `T`.
    async fn json<T: DeserializeOwned>(&self, call: Result<Call>) -> Result<T> {
        self.run(call, |op, bytes| {
            serde_json::from_slice(bytes).map_err(|e| {
                Error::Protocol(format!(
                    "{op}: the answer is not the JSON expected ({e}): {}",
                    excerpt(&String::from_utf8_lossy(bytes), 120)
                ))
            })
        })
        .await
    }

    /// Runs a call whose answer has no body worth reading (204).
    async fn empty(&self, call: Result<Call>) -> Result<()> {
        self.run(call, |_, _| Ok(())).await
    }

    /// Sends, decodes, and counts the whole operation in the statistics.
    async fn run<T>(
        &self,
        call: Result<Call>,
        decode: impl FnOnce(&str, &[u8]) -> Result<T>,
    ) -> Result<T> {
        let call = call?;
        let started = Instant::now();
        let result = match self.send(&call, started).await {
            Ok(bytes) => decode(&call.op, &bytes),
            Err(e) => Err(e),
        };
        self.inner.count(
            &call.op,
            started.elapsed(),
            result.as_ref().err().map(Error::kind),
        );
        result
    }

    /// A failure found before sending, counted like any other.
    fn fail_early<T>(&self, op: &str, error: Error) -> Result<T> {
        self.inner.count(op, Duration::ZERO, Some(error.kind()));
        Err(error)
    }

    /// Sends a call, retrying while it is idempotent, the failure is transient and time is
    /// left; the answer's body on success, else the error of the last attempt.
    async fn send(
        &self,
        call: &Call,
        started: Instant,
    ) -> Result<impl std::ops::Deref<Target = [u8]>> {
        let inner = &*self.inner;
        let deadline = started + inner.settings.timeout();
        let url = self.url(call)?;
        let request_id = Uuid::new_v4().to_string();
        let mut attempt: u32 = 1;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(self.timeout(call));
            }
            let request = self.request(call, &url, remaining, &request_id);
            let (error, floor) = match self.attempt(call, &url, request).await {
                Attempt::Answered(body) => return Ok(body),
                Attempt::Final(error) => return Err(error),
                Attempt::Transient(error, floor) => (error, floor),
            };
            if !call.idempotent || attempt >= inner.settings.retries() {
                return Err(error);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let Some(wait) = backoff(attempt, floor, remaining, &mut rand::thread_rng()) else {
                return Err(error);
            };
            tracing::debug!(
                operation = %call.op,
                attempt,
                error = error.kind(),
                wait_ms = wait.as_millis() as u64,
                "retrying an idempotent operation"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// The timeout error of a call: its whole budget is spent.
    fn timeout(&self, call: &Call) -> Error {
        Error::Timeout {
            operation: call.op.clone(),
            after: self.inner.settings.timeout(),
        }
    }

    /// One attempt's request: what is left of the budget as its timeout, the same request id
    /// on every attempt, the credential, the concurrency token and the body.
    fn request(
        &self,
        call: &Call,
        url: &Url,
        remaining: Duration,
        request_id: &str,
    ) -> reqwest::RequestBuilder {
        let inner = &*self.inner;
        let mut request = inner
            .http
            .request(call.method.clone(), url.clone())
            .timeout(remaining)
            .header(header::ACCEPT, JSON)
            .header(REQUEST_ID, request_id);
        if let Some(auth) = &inner.auth {
            request = request.header(header::AUTHORIZATION, auth.clone());
        }
        if let Some(version) = call.if_match {
            request = request.header(header::IF_MATCH, format!("\"{version}\""));
        }
        if let Some((content_type, body)) = &call.body {
            request = request
                .header(header::CONTENT_TYPE, *content_type)
                .body(body.clone());
        }
        request
    }

    /// Sends one attempt and sorts its outcome: an answer, a failure worth another attempt
    /// (with the least wait before it, a `Retry-After`), or one that is final.
    async fn attempt(
        &self,
        call: &Call,
        url: &Url,
        request: reqwest::RequestBuilder,
    ) -> Attempt<impl std::ops::Deref<Target = [u8]>> {
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) if e.is_timeout() => {
                return Attempt::Transient(self.timeout(call), Duration::ZERO)
            }
            Err(e) if e.is_builder() => {
                return Attempt::Final(Error::InvalidSettings(format!(
                    "the request can't be built: {}",
                    transport_reason(&e)
                )))
            }
            // Connection refused or reset, DNS, TLS: no answer was received.
            Err(e) => {
                let error = Error::Unreachable {
                    url: url_for_humans(url),
                    reason: transport_reason(&e),
                };
                return Attempt::Transient(error, Duration::ZERO);
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) if e.is_timeout() => return Attempt::Final(self.timeout(call)),
            Err(e) => {
                return Attempt::Final(Error::Unreachable {
                    url: url_for_humans(url),
                    reason: format!(
                        "the connection broke while reading the answer: {}",
                        transport_reason(&e)
                    ),
                })
            }
        };
        if status.is_success() {
            return Attempt::Answered(body);
        }
        let problem = serde_json::from_slice::<Problem>(&body).ok();
        let error = Error::from_answer(
            status.as_u16(),
            problem,
            &String::from_utf8_lossy(&body),
            retry_after,
        );
        if RETRY_STATUSES.contains(&status) {
            Attempt::Transient(error, retry_after.unwrap_or_default())
        } else {
            Attempt::Final(error)
        }
    }

    /// The full URL of a call.
    fn url(&self, call: &Call) -> Result<Url> {
        let text = format!("{}{}", self.inner.base_url, call.path);
        let mut url = Url::parse(&text)
            .map_err(|e| Error::InvalidSettings(format!("bad request URL {text}: {e}")))?;
        if !call.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&call.query);
        }
        Ok(url)
    }
}

/// The statistics name of an object operation: `customer.create`.
fn op(kind: Kind, action: &str) -> String {
    format!("{}.{action}", kind.as_str())
}

/// A dictionary path with its id percent-encoded (ids are user-chosen text).
fn dictionary_path(template: &str, id: &str) -> String {
    paths::with_id(template, encode_segment(id))
}

/// Percent-encodes every byte outside RFC 3986's unreserved set.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `base_url` checked (`http` or `https`, a host) and without its trailing `/`.
fn check_base_url(base_url: &str) -> std::result::Result<String, String> {
    let trimmed = base_url.trim().trim_end_matches('/');
    let url = Url::parse(trimmed).map_err(|e| {
        format!(
            "'{}' is not a URL ({e}); expected e.g. http://127.0.0.1:8080",
            excerpt(&redact_userinfo(trimmed), 100)
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "'{}' is not an http:// or https:// URL with a host",
            excerpt(&redact_userinfo(trimmed), 100)
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the base URL can't have a query or a fragment".into());
    }
    Ok(trimmed.to_owned())
}

/// A URL without its query (which may carry filter values), for error messages.
fn url_for_humans(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    let _ = url.set_password(None);
    url.to_string()
}

/// A flat struct as query pairs (`null`s left out), the way the server's `Query` reads them.
fn query_pairs<T: Serialize>(params: &T) -> Result<Vec<(String, String)>> {
    let value = serde_json::to_value(params)
        .map_err(|e| Error::InvalidSettings(format!("query parameters: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(Error::InvalidSettings(
            "query parameters must be a struct".into(),
        ));
    };
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some((k, s)),
            other => Some((k, other.to_string())),
        })
        .collect())
}

/// `Retry-After` in seconds (the HTTP-date form is not used by contextd).
fn retry_after(headers: &header::HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Why a transfer failed: the causes under reqwest's own message, which only repeats the URL.
fn transport_reason(e: &reqwest::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => error_chain(cause),
        None => e.to_string(),
    }
}

/// An error and its causes, `: `-joined, each said once.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The wait before the next attempt after `failed` attempts failed: a random time up to
/// `BACKOFF_BASE · 2^(failed-1)` (capped), at least `floor`, or `None` when that would not
/// leave [`MIN_ATTEMPT_TIME`] of `remaining` for the attempt. Never past the deadline.
fn backoff(
    failed: u32,
    floor: Duration,
    remaining: Duration,
    rng: &mut impl Rng,
) -> Option<Duration> {
    let usable = remaining.checked_sub(MIN_ATTEMPT_TIME)?;
    if floor > usable {
        return None;
    }
    let exp = BACKOFF_BASE
        .saturating_mul(1u32 << failed.saturating_sub(1).min(16))
        .min(BACKOFF_CAP);
    let upper = exp.min(usable);
    let jitter = Duration::from_micros(rng.gen_range(0..=upper.as_micros() as u64));
    Some(jitter.max(floor))
}

/// Next page of a paged stream.
enum Next {
    Start(Option<String>),
    After(String),
    Done,
}

/// A stream of objects over pages: `fetch(cursor)` gives a page's items and the next
/// cursor. Stops at the last page, at an empty page, at a cursor that doesn't move, or after
/// an error.
fn paged<F, Fut>(
    first_cursor: Option<String>,
    fetch: F,
) -> impl Stream<Item = Result<ContextObject>> + Send + 'static
where
    F: FnMut(Option<String>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(Vec<ContextObject>, Option<String>)>> + Send + 'static,
{
    struct State<F> {
        fetch: F,
        buffer: VecDeque<ContextObject>,
        next: Next,
    }
    let state = State {
        fetch,
        buffer: VecDeque::new(),
        next: Next::Start(first_cursor),
    };
    futures::stream::try_unfold(state, |mut state| async move {
        loop {
            if let Some(item) = state.buffer.pop_front() {
                return Ok(Some((item, state)));
            }
            let cursor = match std::mem::replace(&mut state.next, Next::Done) {
                Next::Done => return Ok(None),
                Next::Start(cursor) => cursor,
                Next::After(cursor) => Some(cursor),
            };
            let (items, next) = (state.fetch)(cursor.clone()).await?;
            state.next = match next {
                Some(next) if !items.is_empty() && Some(&next) != cursor.as_ref() => {
                    Next::After(next)
                }
                _ => Next::Done,
            };
            state.buffer = items.into();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn backoff_never_passes_the_deadline() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for remaining_ms in [0u64, 5, 19, 20, 21, 30, 60, 200, 1200, 15_000] {
            let remaining = Duration::from_millis(remaining_ms);
            for failed in 1..=20 {
                for _ in 0..200 {
                    match backoff(failed, Duration::ZERO, remaining, &mut rng) {
                        Some(wait) => {
                            assert!(
                                wait + MIN_ATTEMPT_TIME <= remaining,
                                "{wait:?} of {remaining:?}"
                            );
                            assert!(wait <= BACKOFF_CAP);
                            let exp = BACKOFF_BASE.saturating_mul(1 << (failed - 1).min(16));
                            assert!(wait <= exp, "{wait:?} > {exp:?} at attempt {failed}");
                        }
                        None => assert!(remaining < MIN_ATTEMPT_TIME, "{remaining:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn backoff_is_jittered_and_grows() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let remaining = Duration::from_secs(10);
        let waits: Vec<Duration> = (0..100)
            .filter_map(|_| backoff(1, Duration::ZERO, remaining, &mut rng))
            .collect();
        assert!(waits.iter().all(|w| *w <= BACKOFF_BASE));
        assert!(waits.iter().any(|w| *w != waits[0]), "no jitter");
        let late_max = (0..200)
            .filter_map(|_| backoff(5, Duration::ZERO, remaining, &mut rng))
            .max()
            .unwrap();
        assert!(late_max > BACKOFF_BASE, "{late_max:?}");
    }

    #[test]
    fn backoff_honours_retry_after_only_when_it_fits() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let floor = Duration::from_secs(1);
        let wait = backoff(1, floor, Duration::from_millis(1500), &mut rng).unwrap();
        assert_eq!(wait, floor);
        assert_eq!(
            backoff(1, floor, Duration::from_millis(900), &mut rng),
            None
        );
        assert_eq!(
            backoff(1, floor, Duration::from_millis(1010), &mut rng),
            None
        );
    }

    #[test]
    fn idempotence_follows_the_method() {
        let path = String::new;
        assert!(Call::get("x", path()).idempotent);
        assert!(Call::put("x", path()).idempotent);
        assert!(Call::delete("x", path()).idempotent);
        assert!(!Call::post("x", path()).idempotent);
        assert!(!Call::patch("x", path()).idempotent);
        assert!(Call::post("x", path()).idempotent(true).idempotent);
    }

    #[test]
    fn base_urls_are_checked_and_trimmed() {
        assert_eq!(
            check_base_url(" https://ctx.example.com/base/ ").unwrap(),
            "https://ctx.example.com/base"
        );
        assert!(check_base_url("ctx.example.com").is_err());
        assert!(check_base_url("ftp://ctx.example.com").is_err());
        assert!(check_base_url("http://x?a=b").is_err());
        let e = check_base_url("http://user:pw@[::1").unwrap_err();
        assert!(!e.contains("pw"), "{e}");
    }

    #[test]
    fn client_debug_hides_the_token() {
        let client =
            Client::new("http://127.0.0.1:1", "ctx_very_secret", Settings::voice()).unwrap();
        let text = format!("{client:?}");
        assert!(!text.contains("ctx_very_secret"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
        let e = Client::new("http://127.0.0.1:1", "bad\ntoken", Settings::default()).unwrap_err();
        assert_eq!(e.kind(), "invalidSettings");
        assert!(!e.to_string().contains("bad\ntoken"));
    }

    #[test]
    fn connection_data_picks_the_partition_credentials() {
        use base64::Engine as _;
        let data = serde_json::json!({
            "serviceUrl": "http://127.0.0.1:9/",
            "orgId": "0190b5a6-0000-7000-8000-000000000000",
            "credentials": {"clientId": "p", "clientSecret": "prod-token"},
            "credentialsLabMode": {"clientId": "l", "clientSecret": "lab-token"},
        });
        let text = base64::engine::general_purpose::STANDARD.encode(data.to_string());
        let prod = Client::from_connection_data(&text, Settings::default()).unwrap();
        let lab =
            Client::from_connection_data(&text, Settings::default().with_lab_mode(true)).unwrap();
        assert_eq!(prod.base_url(), "http://127.0.0.1:9");
        let header = |c: &Client| c.inner.auth.as_ref().unwrap().to_str().unwrap().to_owned();
        assert_eq!(header(&prod), "Bearer prod-token");
        assert_eq!(header(&lab), "Bearer lab-token");

        let bad_url = serde_json::json!({
            "serviceUrl": "nowhere",
            "orgId": "0190b5a6-0000-7000-8000-000000000000",
            "credentials": {"clientId": "p", "clientSecret": "prod-token"},
            "credentialsLabMode": {"clientId": "l", "clientSecret": "lab-token"},
        });
        let text = base64::engine::general_purpose::STANDARD.encode(bad_url.to_string());
        let e = Client::from_connection_data(&text, Settings::default()).unwrap_err();
        assert!(
            matches!(e, Error::InvalidConnectionData(ref m) if m.contains("serviceUrl")),
            "{e}"
        );
    }

    #[test]
    fn proxy_urls_are_checked() {
        let e = Client::new(
            "http://127.0.0.1:1",
            "t",
            Settings::default().with_proxy("::not a url::"),
        )
        .unwrap_err();
        assert_eq!(e.kind(), "invalidSettings");
        Client::new(
            "http://127.0.0.1:1",
            "t",
            Settings::default().with_proxy("http://proxy.example.com:3128"),
        )
        .unwrap();
    }

    #[test]
    fn urls_are_built_from_the_paths() {
        let client = Client::new("http://h:1/prefix/", "t", Settings::default()).unwrap();
        let id = ObjectId::new();
        let call = Call::get("customer.timeline", paths::with_id(paths::TIMELINE, id))
            .query(&TimelineParams {
                media_type: Some("voice".into()),
                limit: Some(5),
                cursor: None,
            })
            .unwrap();
        assert_eq!(
            client.url(&call).unwrap().as_str(),
            format!("http://h:1/prefix/v1/customers/{id}/timeline?limit=5&mediaType=voice")
        );
        assert_eq!(
            dictionary_path(paths::FIELD, "my field/x"),
            "/v1/fields/my%20field%2Fx"
        );
        assert_eq!(
            dictionary_path(paths::FIELD, "Context_City"),
            "/v1/fields/Context_City"
        );
    }

    #[tokio::test]
    async fn paged_streams_follow_cursors_and_stop() {
        use futures::TryStreamExt;
        let object = |n: i64| ContextObject {
            id: ObjectId::new(),
            kind: Kind::Activity,
            customer_id: None,
            parent_id: None,
            state: contextd_proto::object::State::Active,
            media_type: None,
            detail_type: None,
            fieldsets: vec![],
            data: Default::default(),
            tags: vec![],
            contributors: vec![],
            withheld: vec![],
            created: chrono::Utc::now(),
            last_updated: chrono::Utc::now(),
            version: n,
        };
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let stream = paged(None, move |cursor: Option<String>| {
            log.lock().unwrap().push(cursor.clone());
            async move {
                Ok(match cursor.as_deref() {
                    None => (vec![object(1), object(2)], Some("a".to_owned())),
                    Some("a") => (vec![object(3)], Some("b".to_owned())),
                    // An empty page ends the stream even with a cursor.
                    _ => (vec![], Some("c".to_owned())),
                })
            }
        });
        let all: Vec<ContextObject> = stream.try_collect().await.unwrap();
        assert_eq!(all.iter().map(|o| o.version).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(
            *seen.lock().unwrap(),
            [None, Some("a".to_owned()), Some("b".to_owned())]
        );

        let failing = paged(Some("x".into()), |_| async {
            Err::<(Vec<ContextObject>, Option<String>), _>(Error::NotFound {
                detail: "gone".into(),
            })
        });
        let result: Result<Vec<ContextObject>> = failing.try_collect().await;
        assert_eq!(result.unwrap_err().kind(), "notFound");
    }

    fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
        s.parse().expect("an RFC 3339 time")
    }

    #[tokio::test]
    async fn each_report_starts_a_new_interval_and_reports_end_with_the_client() {
        let client = Client::new("http://127.0.0.1:9", "t", Settings::default()).unwrap();
        client
            .inner
            .count("customer.get", Duration::from_millis(3), None);
        let clock = Arc::new(contextd_stats::ManualClock::new(at("2026-03-01T10:17:12Z")));
        let task = client
            .report_on(clock.clone(), Duration::from_secs(30 * 60))
            .unwrap();
        assert_eq!(clock.sleeper().await, at("2026-03-01T10:30:00Z"));
        assert_eq!(client.stats_summary()["customer.get"]["count"], 1);
        clock.set(at("2026-03-01T10:30:00Z"));
        // Sleeping again until 11:00 means the 10:30 report is done.
        assert_eq!(clock.sleeper().await, at("2026-03-01T11:00:00Z"));
        assert_eq!(client.stats_summary(), serde_json::json!({}));

        drop(client);
        clock.set(at("2026-03-01T11:00:00Z"));
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the reports end once the client is gone")
            .unwrap();
    }

    #[test]
    fn reports_need_a_runtime() {
        let client = Client::new("http://127.0.0.1:9", "t", Settings::default()).unwrap();
        let refused = client.report_every(Duration::from_secs(60)).unwrap_err();
        assert_eq!(refused.kind(), "invalidSettings");
    }
}
