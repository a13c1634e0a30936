//! Liveness, status and the OpenAPI document.

use std::time::Instant;

use axum::extract::State;
use axum::Json;
use contextd_proto::system::{Dependency, EncryptionStatus, Ping, Status};

use crate::error::ApiResult;
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
        status: status.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_seconds: state.started.elapsed().as_secs(),
        partition: actor.scope.partition,
        dependencies: vec![
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
        ],
    }))
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
