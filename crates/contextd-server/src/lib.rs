//! HTTP server of contextd: the native `/v1` API, the OpenAPI document, health and status,
//! Prometheus metrics (`/metrics`) and the periodic status and statistics log lines.
//!
//! Handlers are thin: they authenticate, extract validated input and call one function of
//! [`contextd_core::service::Context`]. Every error leaves as RFC 9457 problem JSON. This
//! crate never names a storage backend: it is handed a ready `Context`. Logs carry method,
//! path, status and latency only; never query strings, bodies or field values; metrics are
//! labelled by route template, never by raw path.

pub mod compat;
mod conn;
pub mod error;
pub mod events;
pub mod extract;
pub mod limits;
pub mod openapi;
pub mod registration;
pub mod report;
pub mod retention;
pub mod routes;
pub mod telemetry;
pub mod tls;
pub mod upkeep;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderName;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use contextd_core::service::Context;
use contextd_stats::SystemClock;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tower_http::LatencyUnit;
use tracing::Level;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorCode};
use crate::routes::{access, connectors, dictionary, objects, settings, system, webhooks};

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The context service.
    pub context: Arc<Context>,
    /// Start time, for uptime.
    pub started: Instant,
    /// Rate limiters and input limits.
    pub limits: Arc<limits::Limits>,
    /// Mark session cookies `Secure` (served over TLS).
    pub cookie_secure: bool,
    /// Wakes the background re-encryption job.
    pub reencrypt: Arc<tokio::sync::Notify>,
    /// The URL components reach this service at (the `serviceUrl` of connectionData).
    pub public_url: Arc<str>,
    /// Request metrics and per-operation statistics.
    pub telemetry: Arc<telemetry::Telemetry>,
    /// The outbox tail that feeds this instance's event-stream subscribers.
    pub events: Arc<events::hub::Hub>,
    /// Settings of the event channels.
    pub events_config: Arc<events::EventsConfig>,
    /// The NATS JetStream publisher's connection, when `events.nats_url` is set (shown in
    /// `/v1/status`).
    pub nats: Option<Arc<events::nats::Link>>,
}

/// The default largest body of a batch: 1,000 objects of 32 KiB on average.
pub const DEFAULT_BATCH_BODY_LIMIT: usize = 32 * 1024 * 1024;

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest request body accepted, bytes (larger: 413).
    pub body_limit: usize,
    /// Largest body of a batch (`POST /v1/{kind}/batch`, up to 1,000 objects), bytes.
    pub batch_body_limit: usize,
    /// How often to close requests past their auto-close period.
    pub autoclose_sweep: Duration,
    /// Largest total size of request headers, bytes (larger: 431).
    pub header_limit: usize,
    /// Deepest JSON nesting accepted in a body.
    pub json_depth_limit: usize,
    /// Requests per second per credential (0: unlimited); above it: 429 with `Retry-After`.
    pub rate_limit_per_second: u32,
    /// Burst allowance of the per-credential limit.
    pub rate_limit_burst: u32,
    /// Sign-in attempts per minute per account (0: unlimited).
    pub sign_in_per_minute: u32,
    /// Password checks run at once; a sign-in that finds none free within a second: 429.
    pub sign_in_concurrency: usize,
    /// Time allowed for a whole request head (then the connection is closed).
    pub header_timeout: Duration,
    /// Time allowed for a whole request body after its head (then 408, connection closed).
    pub body_timeout: Duration,
    /// Time a kept-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog until one ends.
    pub max_connections: usize,
    /// Serve HTTPS with this certificate and key (`--tls-cert`, `--tls-key`) on the API
    /// listener, with `Strict-Transport-Security` on every answer; the certificate is
    /// reloaded on SIGHUP. The operator listener (`metrics_listen`) stays plain HTTP.
    pub tls: Option<tls::Tls>,
    /// Mark session cookies `Secure`; `None`: when serving HTTPS (`tls`). `Some(true)` behind
    /// a proxy that terminates TLS, `Some(false)` only for plain-HTTP tests.
    pub cookie_secure: Option<bool>,
    /// How often the re-encryption job looks for work besides being woken by a rotation.
    pub reencrypt_every: Duration,
    /// The URL components reach this service at, written into connectionData; default
    /// `http://` and the listener's address.
    pub public_url: Option<String>,
    /// How long an approval page of the browser registration stays valid (default 10 minutes).
    pub registration_approval_ttl: Duration,
    /// Serve `/metrics` on a listener of its own at this address, and not on the main one.
    pub metrics_listen: Option<SocketAddr>,
    /// How often the status line and the statistics summary are logged, on the wall clock's
    /// whole multiples of it since midnight UTC (30 minutes: :00 and :30).
    pub stats_interval: Duration,
    /// How often the retention job deletes what the organizations' retention rules let go
    /// (`/v1/retention`); zero: never, on this instance.
    pub retention_interval: Duration,
    /// How long the audit log's monthly segments are kept after their month ends; zero:
    /// forever.
    pub audit_retention: Duration,
    /// The event channels: Server-Sent Events, webhooks, NATS JetStream.
    pub events: events::EventsConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            batch_body_limit: DEFAULT_BATCH_BODY_LIMIT,
            autoclose_sweep: Duration::from_secs(60),
            header_limit: 16 * 1024,
            json_depth_limit: 32,
            rate_limit_per_second: 20_000,
            rate_limit_burst: 40_000,
            sign_in_per_minute: 10,
            sign_in_concurrency: default_sign_in_concurrency(),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            tls: None,
            cookie_secure: None,
            reencrypt_every: Duration::from_secs(30),
            public_url: None,
            registration_approval_ttl: registration::DEFAULT_APPROVAL_TTL,
            metrics_listen: None,
            stats_interval: contextd_stats::DEFAULT_INTERVAL,
            retention_interval: Duration::from_secs(60 * 60),
            audit_retention: Duration::from_secs(400 * 24 * 3600),
            events: events::EventsConfig::default(),
        }
    }
}

/// The default bound on concurrent password checks: one per CPU (Argon2id is CPU-bound).
pub fn default_sign_in_concurrency() -> usize {
    std::thread::available_parallelism().map_or(4, std::num::NonZeroUsize::get)
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a handler panicked");
    ApiError::new(ErrorCode::Internal, "internal error").into_response()
}

/// Every route of the native API with its OpenAPI operation: the router and the document
/// come from this one declaration (each handler's `#[utoipa::path]`), so neither can list a
/// route the other lacks. One `routes!` per path.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(system::healthz))
        .routes(routes!(system::ping))
        .routes(routes!(system::status))
        .routes(routes!(system::openapi))
        .routes(routes!(system::rotate))
        .routes(routes!(system::stats))
        .routes(routes!(settings::embedding, settings::set_embedding))
        .routes(routes!(
            routes::retention::retention,
            routes::retention::set_retention
        ))
        .routes(routes!(dictionary::list_fields, dictionary::create_field))
        .routes(routes!(
            dictionary::get_field,
            dictionary::put_field,
            dictionary::delete_field
        ))
        .routes(routes!(
            dictionary::list_fieldsets,
            dictionary::create_fieldset
        ))
        .routes(routes!(
            dictionary::get_fieldset,
            dictionary::put_fieldset,
            dictionary::delete_fieldset
        ))
        .routes(routes!(access::list_users, access::create_user))
        .routes(routes!(access::update_user, access::delete_user))
        .routes(routes!(access::revoke_user_sessions))
        .routes(routes!(access::sign_in))
        .routes(routes!(access::whoami, access::sign_out))
        .routes(routes!(access::list_keys, access::create_key))
        .routes(routes!(access::revoke_key))
        .routes(routes!(access::create_grant))
        .routes(routes!(access::revoke_grant))
        .routes(routes!(access::audit))
        .routes(routes!(access::erase))
        .routes(routes!(access::export))
        .routes(routes!(connectors::list, connectors::create))
        .routes(routes!(connectors::revoke))
        .routes(routes!(connectors::rotate))
        .routes(routes!(connectors::token))
        .routes(routes!(routes::events::stream))
        .routes(routes!(webhooks::list, webhooks::create))
        .routes(routes!(webhooks::delete))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::redeliver))
        .routes(routes!(objects::flush_status))
        .routes(routes!(objects::timeline))
        .routes(routes!(objects::create))
        .routes(routes!(objects::batch))
        .routes(routes!(objects::search))
        .routes(routes!(objects::flush))
        .routes(routes!(
            objects::get,
            objects::replace,
            objects::patch,
            objects::delete
        ))
}

/// Builds the router with every route and middleware; `/metrics` is among the routes unless
/// `config.metrics_listen` moves it to a listener of its own ([`metrics_router`]).
pub fn router(state: AppState, config: &ServerConfig) -> Router {
    let trace = TraceLayer::new_for_http().make_span_with(|request: &Request| {
        let id = request.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
        // The path only: query strings can carry search values.
        tracing::info_span!("http", method = %request.method(), path = %request.uri().path(), request_id = %id, org = tracing::field::Empty)
    })
    .on_response(DefaultOnResponse::new().level(Level::INFO).latency_unit(LatencyUnit::Micros))
    .on_failure(DefaultOnFailure::new().level(Level::WARN));
    let (mut api, _) = api_routes().split_for_parts();
    api = api.layer(axum::middleware::map_response(web::no_store));
    // Not part of the /v1 API, nor of its document: the browser registration pages (HTML),
    // the agent desktop and admin console and, unless it has a listener of its own, /metrics.
    api = api
        .merge(registration::routes(config.registration_approval_ttl))
        .merge(web::routes())
        .merge(compat::routes());
    if config.metrics_listen.is_none() {
        api = api.route(telemetry::METRICS_PATH, get(telemetry::metrics));
    }
    let app = api
        .fallback(|| async { ApiError::no_route() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            header_limit,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            telemetry::track,
        ))
        .layer(trace)
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state);
    // Outermost, so that every answer has it: errors of the layers, 404s, panics.
    if config.tls.is_some() {
        app.layer(axum::middleware::map_response(tls::hsts))
    } else {
        app
    }
}

/// The router of the operator listener (`--metrics-listen`): `/metrics` only.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route(telemetry::METRICS_PATH, get(telemetry::metrics))
        .fallback(|| async { ApiError::no_route() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .with_state(state)
}

/// Refuses requests whose headers add up to more than the limit (431).
async fn header_limit(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let size: usize = request
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if size > state.limits.header_bytes {
        return ApiError::new(
            ErrorCode::HeadersTooLarge,
            format!("request headers exceed {} bytes", state.limits.header_bytes),
        )
        .into_response();
    }
    next.run(request).await
}

/// Serves until `shutdown` resolves, then drains in-flight requests; connections are capped
/// and timed out as `config` says. `/metrics` is served on `listener` too, unless
/// `config.metrics_listen` names an address of its own, which is bound here.
pub async fn serve(
    listener: TcpListener,
    context: Arc<Context>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = match config.metrics_listen {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen on {addr} for /metrics: {e}"),
            )
        })?),
        None => None,
    };
    let listeners = Listeners {
        api: listener,
        metrics,
    };
    serve_on(listeners, context, config, shutdown).await
}

/// The sockets a server answers on.
pub struct Listeners {
    /// The API (and `/metrics` when `metrics` is `None`).
    pub api: TcpListener,
    /// The operator listener serving `/metrics` alone.
    pub metrics: Option<TcpListener>,
}

/// [`serve`] on listeners already bound; `listeners.metrics` overrides
/// `config.metrics_listen`.
pub async fn serve_on(
    listeners: Listeners,
    context: Arc<Context>,
    mut config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    config.metrics_listen = match &listeners.metrics {
        Some(listener) => Some(listener.local_addr()?),
        None => None,
    };
    let public_url = match &config.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let scheme = if config.tls.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}", listeners.api.local_addr()?)
        }
    };
    // Installed before the first answer: a SIGHUP sent once the server answers reloads.
    let reload = tls::reload_on_hangup(config.tls.clone())?;
    let state = AppState {
        public_url: public_url.into(),
        context,
        started: Instant::now(),
        limits: Arc::new(limits::Limits::new(&config)),
        cookie_secure: config.cookie_secure.unwrap_or(config.tls.is_some()),
        reencrypt: Arc::new(tokio::sync::Notify::new()),
        telemetry: Arc::new(telemetry::Telemetry::new()),
        events: Arc::new(events::hub::Hub::new(config.events.sse_buffer)),
        events_config: Arc::new(events_config(&config)),
        nats: config
            .events
            .nats_url
            .as_ref()
            .map(|_| Arc::new(events::nats::Link::new(&config.events.nats_stream))),
    };
    let background = spawn_background(&state, &config);
    // Event streams never end by themselves: end them cleanly when shutdown begins.
    let hub = state.events.clone();
    let shutdown = async move {
        shutdown.await;
        hub.close();
    };
    let result = accept(listeners, state, &config, shutdown).await;
    for task in background.into_iter().chain(reload) {
        task.abort();
    }
    result
}

/// The event channels' settings as served: an idle stream's keep-alive comments must come
/// well within the idle timeout, or the connection would be closed under it.
fn events_config(config: &ServerConfig) -> events::EventsConfig {
    let mut events = config.events.clone();
    let most = config.idle_timeout / 2;
    if events.sse_keep_alive > most {
        tracing::warn!(
            keep_alive = ?events.sse_keep_alive,
            idle_timeout = ?config.idle_timeout,
            "the event streams' keep-alive interval is cut to half the idle timeout"
        );
        events.sse_keep_alive = most;
    }
    events
}

/// Serves the API listener and the operator listener, if any, until `shutdown` resolves;
/// returns when both have drained.
async fn accept(
    listeners: Listeners,
    state: AppState,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = conn::ConnectionLimits {
        header_timeout: config.header_timeout,
        body_timeout: config.body_timeout,
        idle_timeout: config.idle_timeout,
        max_connections: config.max_connections,
    };
    // One shutdown signal, seen by both accept loops.
    let (stop, stopped) = watch::channel(false);
    let signal = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let operator = listeners
        .metrics
        .map(|listener| (listener, metrics_router(state.clone())));
    let operator = async {
        let Some((listener, app)) = operator else {
            return Ok(());
        };
        if let Some(local) = config.metrics_listen {
            tracing::info!(%local, "metrics listening");
        }
        conn::serve_connections(listener, app, limits, None, until_stopped(stopped.clone())).await
    };
    let app = router(state, config);
    let acceptor = config.tls.as_ref().map(tls::Tls::acceptor);
    let api = conn::serve_connections(
        listeners.api,
        app,
        limits,
        acceptor,
        until_stopped(stopped.clone()),
    );
    let (api, operator, ()) = tokio::join!(api, operator, signal);
    api.and(operator)
}

/// The background jobs of a server: the event channels, the auto-close sweeper,
/// re-encryption, limiter pruning, the metrics' upkeep and the periodic report.
fn spawn_background(state: &AppState, config: &ServerConfig) -> Vec<tokio::task::JoinHandle<()>> {
    let context = state.context.clone();
    let reporter = report::Reporter::new(
        context.clone(),
        state.telemetry.stats().clone(),
        state.started,
    )
    .with_nats(state.nats.clone());
    let mut tasks = events::spawn(state, &config.events);
    tasks.extend([
        tokio::spawn(sweep_stale_requests(
            context.clone(),
            config.autoclose_sweep,
        )),
        tokio::spawn(retention::run(context.clone(), config.retention_interval)),
        tokio::spawn(upkeep::prune_audit(context.clone(), config.audit_retention)),
        tokio::spawn(reencrypt(
            context,
            state.reencrypt.clone(),
            config.reencrypt_every,
        )),
        tokio::spawn(prune_limiters(state.limits.clone())),
        tokio::spawn(upkeep_metrics(state.telemetry.clone())),
        tokio::spawn(reporter.run(SystemClock, config.stats_interval)),
    ]);
    tasks
}

/// Folds recorded latencies into their histogram buckets between scrapes.
async fn upkeep_metrics(telemetry: Arc<telemetry::Telemetry>) {
    let mut tick = tokio::time::interval(telemetry::UPKEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        telemetry.upkeep();
    }
}

/// Keeps the limiters' memory bounded by recent traffic (see [`limits::Limits::prune`]).
async fn prune_limiters(limits: Arc<limits::Limits>) {
    let mut tick = tokio::time::interval(limits::PRUNE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        limits.prune();
    }
}

/// The re-encryption job: runs at start (resuming an interrupted rotation), when woken by a
/// rotation, and periodically (to pick up rotations made by other processes).
async fn reencrypt(context: Arc<Context>, wake: Arc<tokio::sync::Notify>, every: Duration) {
    loop {
        match context.reencrypt_all(256).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(items = n, "re-encrypted under the current data keys"),
            Err(e) => tracing::warn!(error = %e, "re-encryption failed; will retry"),
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(every) => {}
        }
    }
}

async fn sweep_stale_requests(context: Arc<Context>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match context.close_stale_requests().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(closed = n, "auto-closed stale requests"),
            Err(e) => tracing::warn!(error = %e, "auto-close sweep failed"),
        }
        match context.finish_pending_erasures().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(finished = n, "finished interrupted customer erasures"),
            Err(e) => tracing::warn!(error = %e, "finishing interrupted erasures failed"),
        }
        match context.prune_connector_tokens().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "deleted expired connector tokens"),
            Err(e) => tracing::warn!(error = %e, "pruning expired connector tokens failed"),
        }
    }
}
