//! Liveness, status and the OpenAPI document.

use std::future::Future;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::Json;
use contextd_core::auth::Role;
use contextd_core::service::Context;
use contextd_proto::system::{Dependency, EncryptionStatus, LiveStats, Ping, Status};

use crate::error::ApiResult;
use crate::events::nats::Link;
use crate::extract::Auth;
use crate::AppState;

/// Liveness without authentication.
#[utoipa::path(get, path = "/v1/ping", tag = "system", responses((status = 200, body = Ping)))]
pub async fn ping() -> Json<Ping> {
    Json(Ping {
        status: "ok".into(),
    })
}

/// Liveness probe for orchestrators.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, body = Ping)))]
pub async fn healthz() -> Json<Ping> {
    Json(Ping {
        status: "ok".into(),
    })
}

/// Serviceability: overall status and each dependency.
#[utoipa::path(get, path = "/v1/status", tag = "system",
    responses((status = 200, body = Status)), security(("bearer" = [])))]
pub async fn status(State(state): State<AppState>, Auth(actor): Auth) -> ApiResult<Json<Status>> {
    let health = health(&state.context, state.nats.as_deref()).await;
    let encryption = state.context.encryption_status(actor.scope).await.ok();
    let connectors = state.context.connector_counts(actor.scope.org).await.ok();
    Ok(Json(Status {
        encryption,
        connectors,
        status: health.status.into(),
        version: VERSION.into(),
        uptime_seconds: state.started.elapsed().as_secs(),
        partition: actor.scope.partition,
        dependencies: health.dependencies,
    }))
}

/// This instance's per-operation statistics since its last periodic summary (admin): what
/// the admin console's live statistics show.
#[utoipa::path(get, path = "/v1/stats", tag = "system",
    responses((status = 200, body = LiveStats), (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn stats(State(state): State<AppState>, Auth(actor): Auth) -> ApiResult<Json<LiveStats>> {
    actor.require(&[Role::Admin])?;
    Ok(Json(LiveStats {
        uptime_seconds: state.started.elapsed().as_secs(),
        operations: state.telemetry.stats().summary(),
    }))
}

/// This server's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long a dependency has to answer its check before it counts as unreachable.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The overall status and each dependency's reachability and latency.
pub struct Health {
    /// `ok` (every dependency answered), `degraded` (some did), `down` (none did).
    pub status: &'static str,
    /// The storage, the key store and, when events are published to it, NATS JetStream.
    pub dependencies: Vec<Dependency>,
}

/// Checks the storage, the key store and the NATS JetStream stream events are published to,
/// if any: what `/v1/status` answers and the periodic status line (`report.rs`) logs.
pub async fn health(context: &Context, nats: Option<&Link>) -> Health {
    let store = context.store().clone();
    let keys = context.keyring().store().clone();
    let (storage_ok, storage_ms) = check(store.ping()).await;
    let (keys_ok, keys_ms) = check(keys.ping()).await;
    let mut dependencies = vec![
        Dependency {
            name: "storage".into(),
            backend: store.backend().into(),
            reachable: storage_ok,
            latency_ms: storage_ms,
        },
        Dependency {
            name: "keyStore".into(),
            backend: keys.backend().into(),
            reachable: keys_ok,
            latency_ms: keys_ms,
        },
    ];
    if let Some(link) = nats {
        // Reachable: connected, and the stream answers its info request.
        let (reachable, latency_ms) = check(link.ping()).await;
        dependencies.push(Dependency {
            name: "nats".into(),
            backend: "jetstream".into(),
            reachable,
            latency_ms,
        });
    }
    let status = match dependencies.iter().filter(|d| d.reachable).count() {
        n if n == dependencies.len() => "ok",
        0 => "down",
        _ => "degraded",
    };
    Health {
        status,
        dependencies,
    }
}

/// Whether a check answered in time, and its round trip in milliseconds.
async fn check<T, E>(ping: impl Future<Output = Result<T, E>>) -> (bool, f64) {
    let started = Instant::now();
    let answered = tokio::time::timeout(CHECK_TIMEOUT, ping).await;
    // Milliseconds to the microsecond: finer digits are noise.
    let ms = started.elapsed().as_micros() as f64 / 1000.0;
    (matches!(answered, Ok(Ok(_))), ms)
}

/// The OpenAPI document of this server, generated from the code.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "system", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        crate::openapi::document_json(),
    )
}

/// Add a data-key version to the caller's partition (admin). New writes use it at once; a
/// background job re-encrypts older values, with progress in `/v1/status`.
#[utoipa::path(post, path = "/v1/encryption/rotate", tag = "system",
    responses((status = 202, body = EncryptionStatus)), security(("bearer" = [])))]
pub async fn rotate(
    State(state): State<AppState>,
    Auth(actor): Auth,
) -> ApiResult<(axum::http::StatusCode, Json<EncryptionStatus>)> {
    let status = state.context.rotate_data_key(&actor).await?;
    state.reencrypt.notify_one();
    Ok((axum::http::StatusCode::ACCEPTED, Json(status)))
}
