//! The client: one request path (URL, auth, deadline, retries, error mapping, statistics)
//! under a typed method per endpoint.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use contextd_proto::access::{
    AuditPage, AuditParams, CustomerExport, Erased, GrantCreated, KeyView, NewGrant, NewKey,
    NewUser, SessionsRevoked, UserPatch, UserView, WhoAmI,
};
use contextd_proto::connectors::{ConnectorCreated, ConnectorView, NewConnector, RotateConnector};
use contextd_proto::dictionary::{Field, FieldSet};
use contextd_proto::error::{FieldError, Problem};
use contextd_proto::object::{
    BatchRequest, BatchResult, FlushStatus, MediaType, ObjectInput, ObjectPatch, SearchRequest,
    SearchResult, TimelinePage, TimelineParams,
};
use contextd_proto::paths;
use contextd_proto::system::{EmbeddingSettings, EncryptionStatus, LiveStats, Ping, Status};
use contextd_proto::{ContextObject, Kind, ObjectId};
use contextd_stats::{Clock, Stats, SystemClock};
use futures::Stream;
use rand::Rng;
use reqwest::header::{self, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;
use uuid::Uuid;

use crate::connection::{Connection, Credential, TokenSource};
use crate::error::{excerpt, Error, Result};
use crate::report::Outcomes;
use crate::search::Search;
use crate::settings::{check_base_url, redact_userinfo, Settings};
use crate::state::ConnectionState;

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

/// A contextd client: cheap to clone (clones share one connection pool, one connection — base
/// URL and credential, see [`Client::set_connection_data`] — one [connection
/// state](Client::connection_state) and one set of statistics), safe to use from many tasks at
/// once.
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
    /// What calls connect with; `None` once the connectionData was taken away. Swapped as a
    /// whole by `set_connection_data`; each call works with the one it started with.
    connection: RwLock<Option<Arc<Connection>>>,
    /// The connection state told to listeners.
    state: watch::Sender<ConnectionState>,
    settings: Settings,
    stats: Stats,
    outcomes: Outcomes,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base_url())
            .field("token", &"[redacted]")
            .field("state", &*self.inner.state.borrow())
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
        let base_url = self
            .connection
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|c| redact_userinfo(&c.base_url))
            .unwrap_or_else(|| "(no connectionData)".to_owned());
        let (overall, detail) = self.outcomes.status(&base_url);
        contextd_stats::log_status("sdk", overall, &detail);
        contextd_stats::log_summary("sdk", &self.stats);
    }
}

/// One operation, described once and sent as many times as retries allow.
pub(crate) struct Call {
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

    pub(crate) fn get(op: impl Into<String>, path: String) -> Self {
        Self::new(op, Method::GET, path)
    }

    pub(crate) fn post(op: impl Into<String>, path: String) -> Self {
        Self::new(op, Method::POST, path)
    }

    fn put(op: impl Into<String>, path: String) -> Self {
        Self::new(op, Method::PUT, path)
    }

    pub(crate) fn delete(op: impl Into<String>, path: String) -> Self {
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

    pub(crate) fn json<T: Serialize + ?Sized>(self, body: &T) -> Result<Self> {
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

    pub(crate) fn query<T: Serialize>(mut self, params: &T) -> Result<Self> {
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
        let token = token.into();
        let credential = if token.is_empty() {
            Credential::None
        } else {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                Error::InvalidSettings(
                    "the token holds characters that can't be sent in an HTTP header".into(),
                )
            })?;
            value.set_sensitive(true);
            Credential::Bearer(value)
        };
        Self::build(
            Connection {
                base_url,
                credential,
                data: None,
            },
            settings,
        )
    }

    /// A client built from a component's connectionData (README, "Rust SDK"): the standard base64 of
    /// the JSON [`ConnectionData`](contextd_proto::connection::ConnectionData), at most 4096
    /// bytes. Its `serviceUrl` is the base URL; its `credentialsLabMode` are used when
    /// [`Settings::lab_mode`] is set, else its `credentials`.
    ///
    /// The credential is exchanged for a short-lived bearer token at `POST /v1/token` (OAuth
    /// 2.0 client credentials) on the first call, renewed a minute before it expires, and
    /// fetched anew once if a call is refused with 401 (a rotation or revocation meanwhile).
    /// One call renews while the others keep sending the current token; if the renewal fails
    /// (the token endpoint unreachable, or the secret rotated away before the new
    /// connectionData arrived) the current token is sent for as long as it lives. A new
    /// connectionData is taken with [`Client::set_connection_data`] or [`Client::follow`].
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
        let connection = Connection::from_connection_data(data, &settings)?;
        Self::build(connection, settings)
    }

    /// A client of `connection` with `settings`; no request is made.
    pub(crate) fn build(connection: Connection, settings: Settings) -> Result<Client> {
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
        if let Some(path) = settings.ca_file() {
            for certificate in ca_certificates(path)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|e| {
            let hint = settings
                .ca_file()
                .map(|p| format!(" (check the CA file {})", p.display()))
                .unwrap_or_default();
            Error::InvalidSettings(format!(
                "the HTTP client can't be built: {}{hint}",
                error_chain(&e)
            ))
        })?;
        let state = if connection.authenticates() {
            ConnectionState::Registered
        } else {
            ConnectionState::Unregistered
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                connection: RwLock::new(Some(Arc::new(connection))),
                state: watch::Sender::new(state),
                settings,
                stats: Stats::default(),
                outcomes: Outcomes::default(),
            }),
        })
    }

    /// The service's base URL, without a trailing `/`: the one given, or the `serviceUrl` of
    /// the current connectionData; empty while the client holds no connectionData.
    pub fn base_url(&self) -> String {
        self.connection()
            .map(|c| c.base_url.clone())
            .unwrap_or_default()
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
    // Connection
    // ---------------------------------------------------------------------------------

    /// Switches the client — every clone of it at once — to a new connectionData (a rotation,
    /// a re-registration), or to none (`None` or `""`: the component was deregistered).
    ///
    /// The new connectionData is decoded as [`Client::from_connection_data`] does (its
    /// `serviceUrl`, and the credential set [`Settings::lab_mode`] selects); the next call
    /// exchanges its credential for a token. Calls already in flight finish with the
    /// connection they started with, so a rotation costs no failed call: while the old
    /// secret's grace lasts both work, and a token issued for the old secret keeps working
    /// until it expires. Setting the same connectionData again drops the cached token.
    ///
    /// With no connectionData, every call fails at once with [`Error::NotRegistered`], without
    /// a request, and the [connection state](Client::connection_state) is
    /// [`ConnectionState::Unregistered`]; with one it is [`ConnectionState::Registered`] until a
    /// call says otherwise.
    ///
    /// Fails with [`Error::InvalidConnectionData`] if the string can't be decoded or holds an
    /// unusable URL or credential; the client then keeps its current connection. Works on a
    /// client built with [`Client::new`] too: it then connects with the connectionData.
    ///
    /// ```no_run
    /// use contextd_client::{Client, ConnectionState, Error, Settings};
    ///
    /// # async fn demo(old: &str, new: &str) -> contextd_client::Result<()> {
    /// let client = Client::from_connection_data(old, Settings::voice())?;
    /// let worker = client.clone();
    /// // An administrator rotated the connector's secrets: switch without a restart.
    /// client.set_connection_data(Some(new))?;
    /// worker.status().await?; // the clone uses the new credential too
    ///
    /// // Deregistered: calls fail at once.
    /// client.set_connection_data(None)?;
    /// assert!(matches!(worker.status().await, Err(Error::NotRegistered)));
    /// assert_eq!(*client.connection_state().borrow(), ConnectionState::Unregistered);
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_connection_data(&self, data: Option<&str>) -> Result<()> {
        let connection = match data.map(str::trim).filter(|d| !d.is_empty()) {
            None => None,
            Some(data) => Some(Arc::new(Connection::from_connection_data(
                data,
                &self.inner.settings,
            )?)),
        };
        self.replace_connection(connection, None);
        Ok(())
    }

    /// Follows a component's registration: applies the connectionData `changes` holds now,
    /// then every change of it, as [`Client::set_connection_data`] does — the receiver
    /// [`Registration::subscribe`](crate::registration::Registration::subscribe) gives
    /// (feature `registration`), or any `watch` channel of a connectionData.
    ///
    /// The current value is applied before this returns (skipped if it is the connectionData
    /// the client already uses, so its token is kept); changes are applied by a task spawned
    /// on the current Tokio runtime, which ends when the sender is dropped or when every clone
    /// of the client is. A connectionData that can't be used leaves the client without one,
    /// in state [`ConnectionState::Invalid`] (its calls fail with [`Error::NotRegistered`]),
    /// and logs a warning. Abort the returned handle to stop following.
    ///
    /// Must be called from within a Tokio runtime.
    ///
    /// ```no_run
    /// use contextd_client::registration::Registration;
    /// use contextd_client::{Client, Settings};
    ///
    /// # async fn demo(registration: Registration) -> Result<(), Box<dyn std::error::Error>> {
    /// let settings = Settings::voice();
    /// let data = registration.connection_data().await?.unwrap_or_default();
    /// let client = Client::from_connection_data(&data, settings)?;
    /// // Rotations and re-registrations PUT to the resource reach the client by themselves.
    /// let _following = client.follow(registration.subscribe().await?);
    ///
    /// let mut state = client.connection_state();
    /// tokio::spawn(async move {
    ///     while state.changed().await.is_ok() {
    ///         println!("contextd connection: {}", *state.borrow_and_update());
    ///     }
    /// });
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "registration")]
    pub fn follow(
        &self,
        mut changes: watch::Receiver<Option<String>>,
    ) -> tokio::task::JoinHandle<()> {
        let current = changes.borrow_and_update().clone();
        self.apply(current.as_deref());
        let client = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let Some(inner) = client.upgrade() else {
                    return;
                };
                let data = changes.borrow_and_update().clone();
                Client { inner }.apply(data.as_deref());
            }
        })
    }

    /// Applies a followed connectionData: no change if it is the one in use; none left if it
    /// can't be used.
    #[cfg(feature = "registration")]
    fn apply(&self, data: Option<&str>) {
        let data = data.map(str::trim).filter(|d| !d.is_empty());
        let current = self.connection();
        let in_use = current.as_ref().and_then(|c| c.data.as_deref());
        if current.is_some() && in_use == data {
            return;
        }
        if let Err(e) = self.set_connection_data(data) {
            tracing::warn!("the component's new connectionData can't be used: {e}");
            self.replace_connection(None, Some(ConnectionState::Invalid));
        }
    }

    /// Puts `connection` in place and sets the state it starts with: `state`, else
    /// registered with a connection and unregistered without.
    fn replace_connection(
        &self,
        connection: Option<Arc<Connection>>,
        state: Option<ConnectionState>,
    ) {
        let mut slot = self
            .inner
            .connection
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let state = state.unwrap_or(match &connection {
            Some(c) if c.authenticates() => ConnectionState::Registered,
            _ => ConnectionState::Unregistered,
        });
        tracing::info!(
            registered = connection.is_some(),
            "contextd client: {}",
            if connection.is_some() {
                "a new connectionData is in use"
            } else {
                "no connectionData is left to connect with"
            }
        );
        *slot = connection;
        // Under the write lock: no outcome of a call on the previous connection lands after.
        self.set_state(state);
    }

    /// A receiver of the client's [`ConnectionState`]: its value is the state now, and it is
    /// marked changed on each change (only on real changes), for a status listener. Every
    /// change is also logged once at `info` level. See [`ConnectionState`] for what moves it.
    ///
    /// ```no_run
    /// use contextd_client::{Client, ConnectionState, Settings};
    ///
    /// # async fn demo(data: &str) -> contextd_client::Result<()> {
    /// let client = Client::from_connection_data(data, Settings::default())?;
    /// let mut state = client.connection_state();
    /// tokio::spawn(async move {
    ///     while state.changed().await.is_ok() {
    ///         if *state.borrow_and_update() == ConnectionState::Invalid {
    ///             eprintln!("the connectionData is refused: register the component again");
    ///         }
    ///     }
    /// });
    /// # Ok(())
    /// # }
    /// ```
    pub fn connection_state(&self) -> watch::Receiver<ConnectionState> {
        self.inner.state.subscribe()
    }

    /// The current connection, if any.
    fn connection(&self) -> Option<Arc<Connection>> {
        self.inner
            .connection
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends a state to the listeners if it differs, and logs the change.
    fn set_state(&self, state: ConnectionState) {
        self.inner.state.send_if_modified(|current| {
            if *current == state {
                return false;
            }
            tracing::info!(
                from = current.as_str(),
                to = state.as_str(),
                "contextd connection state: {state}"
            );
            *current = state;
            true
        });
    }

    /// Records what an outcome on `connection` says about the connection, unless the client
    /// has moved on to another one (or `connection` carries no credential).
    fn observe(&self, connection: &Arc<Connection>, state: ConnectionState) {
        if !connection.authenticates() {
            return;
        }
        let current = self
            .inner
            .connection
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, connection)) {
            self.set_state(state);
        }
    }

    /// Records what a failure on `connection` says: no answer → unreachable; a bearer token
    /// refused → invalid; anything else, nothing.
    fn observe_failure(&self, connection: &Arc<Connection>, error: &Error, answered: bool) {
        let state = match error {
            Error::Unreachable { .. } => ConnectionState::Unreachable,
            Error::Timeout { .. } if !answered => ConnectionState::Unreachable,
            Error::Unauthorized { .. }
                if matches!(connection.credential, Credential::Bearer(_)) =>
            {
                ConnectionState::Invalid
            }
            _ => return,
        };
        self.observe(connection, state);
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

    /// Creates up to 1,000 objects of a kind in one transaction (`customer.batch`, …), with
    /// one result per item in order; items that fail are reported and the others written.
    /// With `import` (admin credentials), each item keeps its `id` and history and an id
    /// held already answers `exists`, so the same batch can be sent again safely.
    pub async fn create_batch(&self, kind: Kind, batch: &BatchRequest) -> Result<BatchResult> {
        // An import batch changes nothing when sent again: the SDK may retry it.
        let call = Call::post(op(kind, "batch"), paths::batch(kind)).idempotent(batch.import);
        self.json(call.json(batch)).await
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

    /// The organization's connectors with their state (admin).
    pub async fn connectors(&self) -> Result<Vec<ConnectorView>> {
        self.json(Ok(Call::get(
            "connector.list",
            paths::CONNECTORS.to_owned(),
        )))
        .await
    }

    /// Creates a connector (production admin); the answer's connectionData is shown once.
    pub async fn create_connector(&self, new: &NewConnector) -> Result<ConnectorCreated> {
        self.json(Call::post("connector.create", paths::CONNECTORS.to_owned()).json(new))
            .await
    }

    /// Gives a connector new secrets (production admin); the old ones keep working for the
    /// grace period. The answer's connectionData is shown once.
    pub async fn rotate_connector(
        &self,
        id: Uuid,
        options: &RotateConnector,
    ) -> Result<ConnectorCreated> {
        let path = paths::with_id(paths::CONNECTOR_ROTATE, id);
        self.json(Call::post("connector.rotate", path).json(options))
            .await
    }

    /// Revokes a connector (production admin): its secrets and tokens stop working at once.
    pub async fn revoke_connector(&self, id: Uuid) -> Result<()> {
        let path = paths::with_id(paths::CONNECTOR, id);
        self.empty(Ok(Call::delete("connector.revoke", path).idempotent(true)))
            .await
    }

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

    /// This server instance's per-operation statistics since its last periodic summary
    /// (`stats.get`; admin).
    pub async fn live_stats(&self) -> Result<LiveStats> {
        self.json(Ok(Call::get("stats.get", paths::STATS.to_owned())))
            .await
    }

    /// The origins of host agent desktops allowed to frame `/desktop` (`settings.embedding.get`;
    /// admin).
    pub async fn embedding(&self) -> Result<EmbeddingSettings> {
        self.json(Ok(Call::get(
            "settings.embedding.get",
            paths::SETTINGS_EMBEDDING.to_owned(),
        )))
        .await
    }

    /// Replaces the origins allowed to frame `/desktop`; answers them normalized
    /// (`settings.embedding.put`; admin).
    pub async fn set_embedding(&self, settings: &EmbeddingSettings) -> Result<EmbeddingSettings> {
        let call = Call::put(
            "settings.embedding.put",
            paths::SETTINGS_EMBEDDING.to_owned(),
        );
        self.json(call.json(settings)).await
    }

    /// The organization's retention rules (`retention.get`; admin).
    pub async fn retention(&self) -> Result<contextd_proto::retention::RetentionRules> {
        self.json(Ok(Call::get("retention.get", paths::RETENTION.to_owned())))
            .await
    }

    /// Replaces the organization's retention rules; answers them as stored, by their
    /// canonical names (`retention.put`; production admin). A wrong rule is a
    /// [`Error::Validation`] naming it (`rules[2].afterDays`).
    pub async fn set_retention(
        &self,
        rules: &contextd_proto::retention::RetentionRules,
    ) -> Result<contextd_proto::retention::RetentionRules> {
        let call = Call::put("retention.put", paths::RETENTION.to_owned());
        self.json(call.json(rules)).await
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
    pub(crate) async fn json<T: DeserializeOwned>(&self, call: Result<Call>) -> Result<T> {
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
    pub(crate) async fn empty(&self, call: Result<Call>) -> Result<()> {
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
    /// left; the answer's body on success, else the error of the last attempt. The call works
    /// with the connection current when it starts (a 401 takes the current one again).
    async fn send(
        &self,
        call: &Call,
        started: Instant,
    ) -> Result<impl std::ops::Deref<Target = [u8]>> {
        let inner = &*self.inner;
        let deadline = started + inner.settings.timeout();
        let mut connection = self.connection().ok_or(Error::NotRegistered)?;
        let request_id = Uuid::new_v4().to_string();
        let mut attempt: u32 = 1;
        let mut renewed = false;
        // Whether the last attempt got an answer (a timeout after one is not unreachability).
        let mut answered = false;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                let error = self.timeout(call);
                self.observe_failure(&connection, &error, answered);
                return Err(error);
            }
            // The exchange, if one is needed, records its own outcome.
            let auth = self.authorization(&connection, call, deadline).await?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                let error = self.timeout(call);
                self.observe_failure(&connection, &error, answered);
                return Err(error);
            }
            let url = self.url(&connection.base_url, call)?;
            let request = self.request(call, &url, remaining, &request_id, auth.clone());
            let (error, floor) = match self.attempt(call, &url, request).await {
                Attempt::Answered(body) => {
                    self.observe(&connection, ConnectionState::Registered);
                    return Ok(body);
                }
                // An exchanged token refused: rotated or revoked meanwhile. A 401 means the
                // call was not carried out, so one more try with a new token is safe.
                Attempt::Final(Error::Unauthorized { .. })
                    if matches!(connection.credential, Credential::Exchange(_)) && !renewed =>
                {
                    if let (Credential::Exchange(source), Some(refused)) =
                        (&connection.credential, &auth)
                    {
                        source.forget(refused);
                    }
                    renewed = true;
                    // A new connectionData may have come meanwhile: the retry takes it.
                    connection = self.connection().ok_or(Error::NotRegistered)?;
                    continue;
                }
                Attempt::Final(error) => {
                    self.observe_failure(&connection, &error, true);
                    return Err(error);
                }
                Attempt::Transient(error, floor) => (error, floor),
            };
            answered = !matches!(error, Error::Unreachable { .. } | Error::Timeout { .. });
            if !call.idempotent || attempt >= inner.settings.retries() {
                self.observe_failure(&connection, &error, answered);
                return Err(error);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let Some(wait) = backoff(attempt, floor, remaining, &mut rand::thread_rng()) else {
                self.observe_failure(&connection, &error, answered);
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

    /// The `Authorization` header of a call on `connection`: the caller's token, or a
    /// connector credential's current token, exchanged first if there is none or it is about
    /// to expire.
    async fn authorization(
        &self,
        connection: &Arc<Connection>,
        call: &Call,
        deadline: Instant,
    ) -> Result<Option<HeaderValue>> {
        match &connection.credential {
            Credential::None => Ok(None),
            Credential::Bearer(value) => Ok(Some(value.clone())),
            Credential::Exchange(source) => self
                .token(connection, source, call, deadline)
                .await
                .map(Some),
        }
    }

    /// The token of an exchanged credential (the rule of README "Rust SDK"):
    ///
    /// - more than [`TOKEN_RENEW_BEFORE`](crate::connection::TOKEN_RENEW_BEFORE) left: sent as is;
    /// - less, but still usable: one call renews it while the others send it; if the renewal
    ///   fails it is sent anyway (and renewal is tried again a few seconds later);
    /// - none, or about to expire: fetched, one exchange at a time; the others wait for it.
    async fn token(
        &self,
        connection: &Arc<Connection>,
        source: &TokenSource,
        call: &Call,
        deadline: Instant,
    ) -> Result<HeaderValue> {
        if let Some(token) = source.current() {
            let now = Instant::now();
            if token.fresh(now) {
                return Ok(token.value);
            }
            if token.usable(now) {
                // Someone else is renewing, or a renewal just failed: this one still works.
                if !token.may_renew(now) {
                    return Ok(token.value);
                }
                let Ok(_renewing) = source.renewing.try_lock() else {
                    return Ok(token.value);
                };
                if let Some(newer) = source.current().filter(|t| t.fresh(Instant::now())) {
                    return Ok(newer.value);
                }
                // Half the budget at most, so that the call itself keeps time to go out with
                // the current token if the token endpoint hangs. A failure here says nothing
                // the current token's success won't contradict: the state is left alone.
                let now = Instant::now();
                let renewal_deadline = now + deadline.saturating_duration_since(now) / 2;
                let renewed = self
                    .fetch_token(&connection.base_url, call, source, renewal_deadline)
                    .await;
                return match renewed {
                    Ok((value, lifetime)) => {
                        source.store(value.clone(), lifetime);
                        self.observe(connection, ConnectionState::Registered);
                        Ok(value)
                    }
                    Err(e) => {
                        tracing::warn!(
                            error = e.kind(),
                            "contextd token renewal failed; the current token is used while \
                             it lasts: {e}"
                        );
                        source.renewal_failed();
                        Ok(token.value)
                    }
                };
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Ok(_renewing) = tokio::time::timeout(remaining, source.renewing.lock()).await else {
            return Err(self.timeout(call));
        };
        // Fetched by another call while this one waited?
        if let Some(token) = source.current().filter(|t| t.usable(Instant::now())) {
            return Ok(token.value);
        }
        self.exchange(connection, call, source, deadline).await
    }

    /// `POST /v1/token` with the credential: the bearer header, kept in the cache, and the
    /// outcome recorded in the connection state.
    async fn exchange(
        &self,
        connection: &Arc<Connection>,
        call: &Call,
        source: &TokenSource,
        deadline: Instant,
    ) -> Result<HeaderValue> {
        match self
            .fetch_token(&connection.base_url, call, source, deadline)
            .await
        {
            Ok((value, lifetime)) => {
                source.store(value.clone(), lifetime);
                self.observe(connection, ConnectionState::Registered);
                Ok(value)
            }
            Err(e) => {
                match &e {
                    Error::Unauthorized { .. } => {
                        self.observe(connection, ConnectionState::Invalid)
                    }
                    Error::Unreachable { .. } | Error::Timeout { .. } => {
                        self.observe(connection, ConnectionState::Unreachable)
                    }
                    _ => {}
                }
                Err(e)
            }
        }
    }

    /// Exchanges the connectionData's credential for a new token now, kept for the next
    /// calls: its lifetime (the connection test).
    pub(crate) async fn renew_token(&self) -> Result<Duration> {
        let connection = self.connection().ok_or(Error::NotRegistered)?;
        let Credential::Exchange(source) = &connection.credential else {
            return Err(Error::InvalidSettings(
                "the client was not built from a connectionData".into(),
            ));
        };
        let call = Call::post("token.exchange", paths::TOKEN.to_owned());
        let deadline = Instant::now() + self.inner.settings.timeout();
        let (value, lifetime) = self
            .fetch_token(&connection.base_url, &call, source, deadline)
            .await?;
        source.store(value, lifetime);
        self.observe(&connection, ConnectionState::Registered);
        Ok(lifetime)
    }

    /// `POST /v1/token` with the credential: a bearer header and its lifetime.
    async fn fetch_token(
        &self,
        base_url: &str,
        call: &Call,
        source: &TokenSource,
        deadline: Instant,
    ) -> Result<(HeaderValue, Duration)> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(self.timeout(call));
        }
        let url = Url::parse(&format!("{base_url}{}", paths::TOKEN))
            .map_err(|e| Error::InvalidSettings(format!("the token URL can't be built: {e}")))?;
        let request = self
            .inner
            .http
            .post(url.clone())
            .timeout(remaining)
            .header(header::AUTHORIZATION, source.basic.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, JSON)
            .body("grant_type=client_credentials");
        let body = match self.attempt(call, &url, request).await {
            Attempt::Answered(body) => body,
            Attempt::Final(Error::Unauthorized { .. }) => {
                return Err(Error::Unauthorized {
                    detail: "the connectionData's credential was refused at /v1/token: the \
                             connector was revoked or its secret rotated past its grace; \
                             register the component again"
                        .into(),
                })
            }
            Attempt::Final(error) | Attempt::Transient(error, _) => return Err(error),
        };
        let answer: contextd_proto::connectors::TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| Error::Protocol(format!("the token endpoint's answer: {e}")))?;
        let mut value = HeaderValue::from_str(&format!("Bearer {}", answer.access_token))
            .map_err(|_| Error::Protocol("the token endpoint issued an unusable token".into()))?;
        value.set_sensitive(true);
        Ok((value, Duration::from_secs(answer.expires_in)))
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
        auth: Option<HeaderValue>,
    ) -> reqwest::RequestBuilder {
        let inner = &*self.inner;
        let mut request = inner
            .http
            .request(call.method.clone(), url.clone())
            .timeout(remaining)
            .header(header::ACCEPT, JSON)
            .header(REQUEST_ID, request_id);
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
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

    /// Opens a long-lived `GET` (the event stream, `events.rs`) with the call path's
    /// credential and error mapping. The timeout bounds the wait for the answer's head, never
    /// its body; no retry here (the stream reconnects by itself), except that a refused
    /// exchanged token is fetched anew once, as in `send`.
    pub(crate) async fn open_stream(
        &self,
        op: &str,
        path: &str,
        query: Vec<(String, String)>,
        headers: header::HeaderMap,
    ) -> Result<reqwest::Response> {
        let call = Call {
            query,
            ..Call::new(op, Method::GET, path.to_owned())
        };
        let started = Instant::now();
        let deadline = started + self.inner.settings.timeout();
        let result = self.open(&call, headers, deadline).await;
        self.inner.count(
            &call.op,
            started.elapsed(),
            result.as_ref().err().map(Error::kind),
        );
        result
    }

    /// The attempts of [`open_stream`](Self::open_stream).
    async fn open(
        &self,
        call: &Call,
        headers: header::HeaderMap,
        deadline: Instant,
    ) -> Result<reqwest::Response> {
        let mut connection = self.connection().ok_or(Error::NotRegistered)?;
        let mut renewed = false;
        loop {
            let auth = self.authorization(&connection, call, deadline).await?;
            let url = self.url(&connection.base_url, call)?;
            let mut request = self
                .inner
                .http
                .get(url.clone())
                .headers(headers.clone())
                .header(REQUEST_ID, Uuid::new_v4().to_string());
            if let Some(auth) = &auth {
                request = request.header(header::AUTHORIZATION, auth.clone());
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let response = match tokio::time::timeout(remaining, request.send()).await {
                Ok(Ok(response)) => response,
                Ok(Err(e)) if e.is_builder() => {
                    return Err(Error::InvalidSettings(format!(
                        "the request can't be built: {}",
                        transport_reason(&e)
                    )))
                }
                Ok(Err(e)) => {
                    let error = Error::Unreachable {
                        url: url_for_humans(&url),
                        reason: transport_reason(&e),
                    };
                    self.observe_failure(&connection, &error, false);
                    return Err(error);
                }
                Err(_) => {
                    let error = self.timeout(call);
                    self.observe_failure(&connection, &error, false);
                    return Err(error);
                }
            };
            let status = response.status();
            if status.is_success() {
                self.observe(&connection, ConnectionState::Registered);
                return Ok(response);
            }
            let retry_after = retry_after(response.headers());
            let remaining = deadline.saturating_duration_since(Instant::now());
            let body = match tokio::time::timeout(remaining, response.bytes()).await {
                Ok(Ok(body)) => body,
                _ => Default::default(),
            };
            let problem = serde_json::from_slice::<Problem>(&body).ok();
            let text = String::from_utf8_lossy(&body);
            let error = Error::from_answer(status.as_u16(), problem, &text, retry_after);
            // An exchanged token refused: rotated or revoked meanwhile; one more try.
            let exchanged = matches!(connection.credential, Credential::Exchange(_));
            if matches!(error, Error::Unauthorized { .. }) && exchanged && !renewed {
                if let (Credential::Exchange(source), Some(refused)) =
                    (&connection.credential, &auth)
                {
                    source.forget(refused);
                }
                renewed = true;
                connection = self.connection().ok_or(Error::NotRegistered)?;
                continue;
            }
            self.observe_failure(&connection, &error, true);
            return Err(error);
        }
    }

    /// The full URL of a call to the service at `base_url`.
    fn url(&self, base_url: &str, call: &Call) -> Result<Url> {
        let text = format!("{base_url}{}", call.path);
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

/// The certificates of a CA file ([`Settings::with_ca_file`]), trusted besides the public CAs.
fn ca_certificates(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path).map_err(|e| {
        Error::InvalidSettings(format!("the CA file {} can't be read: {e}", path.display()))
    })?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        Error::InvalidSettings(format!(
            "the CA file {} is not PEM certificates: {}",
            path.display(),
            error_chain(&e)
        ))
    })?;
    if certificates.is_empty() {
        return Err(Error::InvalidSettings(format!(
            "the CA file {} holds no certificate (expected PEM blocks -----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certificates)
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
    fn a_ca_file_that_cannot_be_used_is_an_invalid_setting_that_names_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing-ca.pem");
        let settings = Settings::default().with_ca_file(&missing);
        let e = Client::new("https://127.0.0.1:9", "t", settings).expect_err("no such file");
        assert!(
            matches!(&e, Error::InvalidSettings(m) if m.contains("missing-ca.pem")),
            "{e}"
        );
        let empty = dir.path().join("empty-ca.pem");
        std::fs::write(&empty, "no certificate here\n").expect("write");
        let settings = Settings::default().with_ca_file(&empty);
        let e = Client::new("https://127.0.0.1:9", "t", settings).expect_err("no certificate");
        assert!(
            matches!(&e, Error::InvalidSettings(m) if m.contains("holds no certificate")),
            "{e}"
        );
    }

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
        let basic = |c: &Client| match &c.connection().unwrap().credential {
            Credential::Exchange(source) => source.basic.to_str().unwrap().to_owned(),
            _ => panic!("a connectionData client exchanges its credential"),
        };
        let encoded = |text: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(text)
            )
        };
        assert_eq!(basic(&prod), encoded("p:prod-token"));
        assert_eq!(basic(&lab), encoded("l:lab-token"));

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
            client.url(&client.base_url(), &call).unwrap().as_str(),
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

    /// A connectionData naming `service_url`.
    fn connection_data(service_url: &str, secret: &str) -> String {
        use base64::Engine as _;
        let data = serde_json::json!({
            "serviceUrl": service_url,
            "orgId": "0190b5a6-0000-7000-8000-000000000000",
            "credentials": {"clientId": "p", "clientSecret": secret},
            "credentialsLabMode": {"clientId": "l", "clientSecret": secret},
        });
        base64::engine::general_purpose::STANDARD.encode(data.to_string())
    }

    /// The requests a stand-in received: path and `Authorization`.
    type Seen = Arc<std::sync::Mutex<Vec<(String, String)>>>;

    /// A stand-in for contextd: `/v1/token` answers `token_status` (200 with a new token
    /// `Bearer new-N`, valid 900 s; 0: never answers), every other path `{"status": "ok"}`.
    async fn stand_in(token_status: u16) -> (String, Seen) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen: Seen = Arc::default();
        let log = seen.clone();
        let issued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (log, issued) = (log.clone(), issued.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let path = text.split(' ').nth(1).unwrap_or_default().to_owned();
                    let auth = text
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("authorization: ")
                                .or_else(|| l.strip_prefix("Authorization: "))
                        })
                        .unwrap_or_default()
                        .to_owned();
                    log.lock().unwrap().push((path.clone(), auth));
                    if path == paths::TOKEN && token_status == 0 {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    let (status, body) = if path == paths::TOKEN {
                        if token_status == 200 {
                            let n = issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                            (
                                200,
                                format!(
                                    r#"{{"access_token":"new-{n}","token_type":"Bearer","expires_in":900}}"#
                                ),
                            )
                        } else {
                            (token_status, r#"{"error":"invalid_client"}"#.to_owned())
                        }
                    } else {
                        (200, r#"{"status":"ok"}"#.to_owned())
                    };
                    let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        (url, seen)
    }

    /// Puts a token `Bearer old` expiring in `left` in the client's cache.
    fn cache_token(client: &Client, left: Duration) {
        let connection = client.connection().unwrap();
        let Credential::Exchange(source) = &connection.credential else {
            panic!("a connectionData client")
        };
        source.set(Some(crate::connection::Token {
            value: HeaderValue::from_static("Bearer old"),
            expires: Instant::now() + left,
            renewal_failed: None,
        }));
    }

    fn token_requests(seen: &Seen) -> usize {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == paths::TOKEN)
            .count()
    }

    fn last_auth(seen: &Seen) -> String {
        seen.lock().unwrap().last().unwrap().1.clone()
    }

    #[test]
    fn the_renewal_rule_is_a_minute_before_expiry() {
        use crate::connection::Token;
        let now = Instant::now();
        let token = |left: Duration| Token {
            value: HeaderValue::from_static("Bearer t"),
            expires: now + left,
            renewal_failed: None,
        };
        assert!(token(Duration::from_secs(61)).fresh(now));
        assert!(
            !token(Duration::from_secs(60)).fresh(now),
            "renewed at 60 s"
        );
        assert!(!token(Duration::from_secs(59)).fresh(now));
        assert!(
            token(Duration::from_secs(59)).usable(now),
            "still sent if renewal fails"
        );
        assert!(!token(Duration::from_secs(5)).usable(now));
        assert!(!token(Duration::ZERO).usable(now));
        let mut failed = token(Duration::from_secs(30));
        assert!(failed.may_renew(now));
        failed.renewal_failed = Some(now);
        assert!(!failed.may_renew(now + Duration::from_secs(1)));
        assert!(failed.may_renew(now + Duration::from_secs(5)));
    }

    #[tokio::test]
    async fn a_token_within_a_minute_of_expiry_is_renewed_and_a_fresh_one_is_not() {
        let (url, seen) = stand_in(200).await;
        let client =
            Client::from_connection_data(&connection_data(&url, "s"), Settings::default()).unwrap();
        client.ping().await.unwrap();
        assert_eq!(token_requests(&seen), 1, "the first call exchanges");
        assert_eq!(last_auth(&seen), "Bearer new-1");

        cache_token(&client, Duration::from_secs(120));
        client.ping().await.unwrap();
        assert_eq!(token_requests(&seen), 1, "two minutes left: no renewal");
        assert_eq!(last_auth(&seen), "Bearer old");

        cache_token(&client, Duration::from_secs(59));
        client.ping().await.unwrap();
        assert_eq!(token_requests(&seen), 2, "59 s left: renewed");
        assert_eq!(last_auth(&seen), "Bearer new-2");

        cache_token(&client, Duration::ZERO);
        client.ping().await.unwrap();
        assert_eq!(token_requests(&seen), 3, "expired: fetched");
        assert_eq!(last_auth(&seen), "Bearer new-3");
    }

    #[tokio::test]
    async fn a_failed_renewal_keeps_sending_the_token_while_it_lives() {
        // Refused, failing, and never answering (the call keeps half its budget).
        for refusal in [401, 503, 0] {
            let (url, seen) = stand_in(refusal).await;
            let settings = Settings::default().with_timeout(Duration::from_millis(600));
            let client =
                Client::from_connection_data(&connection_data(&url, "s"), settings).unwrap();
            let mut state = client.connection_state();
            state.borrow_and_update();
            cache_token(&client, Duration::from_secs(30));
            client.ping().await.expect("the cached token is used");
            assert!(
                !state.has_changed().unwrap(),
                "no state change: the token works"
            );
            assert_eq!(token_requests(&seen), 1);
            assert_eq!(last_auth(&seen), "Bearer old");
            client.ping().await.expect("the cached token is used");
            assert_eq!(
                token_requests(&seen),
                1,
                "no renewal right after a failed one"
            );
            assert_eq!(*state.borrow(), ConnectionState::Registered);

            // Expired: now the refusal is the call's.
            cache_token(&client, Duration::from_secs(1));
            let e = client.ping().await.unwrap_err();
            match refusal {
                401 => {
                    assert_eq!(e.kind(), "unauthorized");
                    assert_eq!(*state.borrow(), ConnectionState::Invalid);
                }
                503 => assert_eq!(e.kind(), "server"),
                _ => {
                    assert_eq!(e.kind(), "timeout");
                    assert_eq!(*state.borrow(), ConnectionState::Unreachable);
                }
            }
        }
    }

    #[tokio::test]
    async fn without_a_connection_data_calls_fail_at_once() {
        let (url, seen) = stand_in(200).await;
        let client =
            Client::from_connection_data(&connection_data(&url, "s"), Settings::default()).unwrap();
        let clone = client.clone();
        let mut state = client.connection_state();
        assert_eq!(*state.borrow_and_update(), ConnectionState::Registered);

        client.set_connection_data(None).unwrap();
        assert!(matches!(clone.ping().await, Err(Error::NotRegistered)));
        assert!(seen.lock().unwrap().is_empty(), "no request");
        assert_eq!(*state.borrow_and_update(), ConnectionState::Unregistered);
        assert_eq!(clone.base_url(), "");
        assert_eq!(
            clone.stats_summary()["ping.error.notRegistered"]["count"],
            1
        );

        let e = client.set_connection_data(Some("garbage!")).unwrap_err();
        assert_eq!(e.kind(), "invalidConnectionData");
        assert!(
            !state.has_changed().unwrap(),
            "a refused value changes nothing"
        );

        client
            .set_connection_data(Some(&connection_data(&url, "s2")))
            .unwrap();
        assert_eq!(*state.borrow_and_update(), ConnectionState::Registered);
        clone.ping().await.unwrap();
        assert_eq!(clone.base_url(), url);
        assert!(!state.has_changed().unwrap(), "only real changes are sent");
    }

    #[cfg(feature = "registration")]
    #[tokio::test]
    async fn a_followed_connection_data_is_applied_and_an_unusable_one_is_invalid() {
        let (url, seen) = stand_in(200).await;
        let first = connection_data(&url, "s");
        let client = Client::from_connection_data(&first, Settings::default()).unwrap();
        client.ping().await.unwrap();
        let (tx, rx) = watch::channel(Some(first.clone()));
        let task = client.follow(rx);
        client.ping().await.unwrap();
        assert_eq!(token_requests(&seen), 1, "the same data keeps its token");

        let state = client.connection_state();
        tx.send(None).unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while *state.borrow() != ConnectionState::Unregistered {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("deregistration applied");
        tx.send(Some("garbage!".into())).unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while *state.borrow() != ConnectionState::Invalid {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("an unusable connectionData is invalid");
        assert!(matches!(client.ping().await, Err(Error::NotRegistered)));
        tx.send(Some(connection_data(&url, "s2"))).unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while client.ping().await.is_err() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("a new registration applied");
        assert_eq!(*state.borrow(), ConnectionState::Registered);
        drop(client);
        tx.send(None).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the task ends once the client is gone")
            .unwrap();
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
