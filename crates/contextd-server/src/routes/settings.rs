//! An organization's settings: the host agent desktops allowed to frame `/desktop`.

use axum::extract::State;
use axum::Json;
use contextd_proto::system::EmbeddingSettings;

use crate::error::{ApiResult, Problem};
use crate::extract::{ApiJson, Auth};
use crate::AppState;

/// The origins allowed to frame the agent desktop (admin).
#[utoipa::path(get, path = "/v1/settings/embedding", tag = "settings",
    responses((status = 200, body = EmbeddingSettings), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn embedding(
    State(state): State<AppState>,
    Auth(actor): Auth,
) -> ApiResult<Json<EmbeddingSettings>> {
    Ok(Json(state.context.embedding(&actor).await?))
}

/// Replace the origins allowed to frame the agent desktop (admin; audited): each is
/// `scheme://host[:port]`, at most 20. The desktop's `Content-Security-Policy:
/// frame-ancestors` lists them from the next page load on.
#[utoipa::path(put, path = "/v1/settings/embedding", tag = "settings",
    request_body = EmbeddingSettings,
    responses((status = 200, body = EmbeddingSettings), (status = 400, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn set_embedding(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiJson(settings): ApiJson<EmbeddingSettings>,
) -> ApiResult<Json<EmbeddingSettings>> {
    Ok(Json(state.context.set_embedding(&actor, settings).await?))
}
