//! An organization's retention rules: how long closed requests, activities and details are
//! kept before the background job (`crate::retention`) deletes them, in both partitions.

use axum::extract::State;
use axum::Json;
use contextd_proto::retention::RetentionRules;

use crate::error::{ApiResult, Problem};
use crate::extract::{ApiJson, Auth};
use crate::AppState;

/// The organization's retention rules (admin of either partition).
#[utoipa::path(get, path = "/v1/retention", tag = "settings",
    responses((status = 200, body = RetentionRules), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn retention(
    State(state): State<AppState>,
    Auth(actor): Auth,
) -> ApiResult<Json<RetentionRules>> {
    Ok(Json(state.context.retention(&actor).await?))
}

/// Replace the organization's retention rules (production admin; audited). Each rule
/// selects by `kind` (`request`, `activity`, `detail`), `mediaType` (activities) and/or
/// `fieldset`, and keeps what it selects `afterDays` days after its last update, or forever
/// (`never: true`, which wins over every period); otherwise the shortest period applies.
/// Active requests and customers are never deleted. Applies to both partitions.
#[utoipa::path(put, path = "/v1/retention", tag = "settings",
    request_body = RetentionRules,
    responses((status = 200, body = RetentionRules), (status = 400, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn set_retention(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiJson(rules): ApiJson<RetentionRules>,
) -> ApiResult<Json<RetentionRules>> {
    Ok(Json(state.context.set_retention(&actor, rules).await?))
}
