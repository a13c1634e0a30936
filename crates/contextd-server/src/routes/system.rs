//! Liveness, status and the OpenAPI document.

use std::time::Instant;

use axum::extract::State;
use axum::Json;
use contextd_core::ids::Partition;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::error::ApiResult;
use crate::extract::Auth;
use crate::AppState;

/// `GET /v1/ping` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ping {
    /// Always `ok`.
    pub status: &'static str,
}

/// Liveness without authentication.
#[utoipa::path(get, path = "/v1/ping", tag = "system", responses((status = 200, body = Ping)))]
pub async fn ping() -> Json<Ping> {
    Json(Ping { status: "ok" })
}

/// Liveness probe for orchestrators.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, body = Ping)))]
pub async fn healthz() -> Json<Ping> {
    Json(Ping { status: "ok" })
}

/// One dependency's health.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    /// `storage` or `keyStore`.
    pub name: &'static str,
    /// Backend (`sqlite`, `postgres`).
    pub backend: &'static str,
    /// Answered the check?
    pub reachable: bool,
    /// Round trip of the check, milliseconds.
    pub latency_ms: f64,
}

/// `GET /v1/status` answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// `ok`, `degraded` or `down`.
    pub status: &'static str,
    /// Server version.
    pub version: &'static str,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// The caller's partition.
    #[schema(value_type = String)]
    pub partition: Partition,
    /// Dependencies.
    pub dependencies: Vec<Dependency>,
    /// Data-key version and re-encryption progress of the caller's partition.
    pub encryption: Option<contextd_core::service::EncryptionStatus>,
}

/// Serviceability: overall status and each dependency.
#[utoipa::path(get, path = "/v1/status", tag = "system",
    responses((status = 200, body = Status)), security(("bearer" = [])))]
pub async fn status(State(state): State<AppState>, Auth(actor): Auth) -> ApiResult<Json<Status>> {
    let store = state.context.store().clone();
    let keys = state.context.keyring().store().clone();
    let t = Instant::now();
    let storage_ok = store.ping().await.is_ok();
    let storage_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    let keys_ok = keys.ping().await.is_ok();
    let keys_ms = t.elapsed().as_secs_f64() * 1000.0;
    let status = match (storage_ok, keys_ok) {
        (true, true) => "ok",
        (false, false) => "down",
        _ => "degraded",
    };
    let encryption = state.context.encryption_status(actor.scope).await.ok();
    Ok(Json(Status {
        encryption,
        status,
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs(),
        partition: actor.scope.partition,
        dependencies: vec![
            Dependency {
                name: "storage",
                backend: store.backend(),
                reachable: storage_ok,
                latency_ms: storage_ms,
            },
            Dependency {
                name: "keyStore",
                backend: keys.backend(),
                reachable: keys_ok,
                latency_ms: keys_ms,
            },
        ],
    }))
}

/// The OpenAPI document of this server, generated from the code.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "system", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::ApiDoc::openapi())
}

/// Add a data-key version to the caller's partition (admin). New writes use it at once; a
/// background job re-encrypts older values, with progress in `/v1/status`.
#[utoipa::path(post, path = "/v1/encryption/rotate", tag = "system",
    responses((status = 202, body = contextd_core::service::EncryptionStatus)), security(("bearer" = [])))]
pub async fn rotate(
    State(state): State<AppState>,
    Auth(actor): Auth,
) -> ApiResult<(
    axum::http::StatusCode,
    Json<contextd_core::service::EncryptionStatus>,
)> {
    let status = state.context.rotate_data_key(&actor).await?;
    state.reencrypt.notify_one();
    Ok((axum::http::StatusCode::ACCEPTED, Json(status)))
}
