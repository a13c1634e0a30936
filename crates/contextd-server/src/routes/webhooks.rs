//! Webhooks (admin): register, list, delete, their delivery attempts and redelivery. The
//! dispatcher that delivers is `events::webhooks`.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use contextd_proto::events::{
    DeliveriesQuery, Delivery, DeliveryList, Webhook, WebhookCreated, WebhookInput,
};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::events::webhooks::{self, AddressPolicy};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth};
use crate::AppState;

fn webhook_id(id: &str) -> ApiResult<Uuid> {
    Uuid::try_parse(id).map_err(|_| ApiError::bad_request("not a valid webhook id"))
}

/// Register a webhook of the caller's partition (admin). Its URL must reach a public address
/// unless the server allows private ones; the answer carries the signing secret, shown once.
#[utoipa::path(operation_id = "create_webhook", post, path = "/v1/webhooks", tag = "webhooks", request_body = WebhookInput,
    responses((status = 201, body = WebhookCreated), (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 409, body = Problem, description = "The partition has 20 webhooks already")),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiJson(input): ApiJson<WebhookInput>,
) -> ApiResult<Response> {
    let policy = AddressPolicy {
        allow_private: state.events_config.allow_private_webhooks,
    };
    let created = state.context.create_webhook(&actor, input, &policy).await?;
    let mut response = (StatusCode::CREATED, Json(&created)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The partition's webhooks, without their secrets (admin).
#[utoipa::path(operation_id = "list_webhooks", get, path = "/v1/webhooks", tag = "webhooks",
    responses((status = 200, body = Vec<Webhook>), (status = 403, body = Problem)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Auth(actor): Auth,
) -> ApiResult<Json<Vec<Webhook>>> {
    Ok(Json(state.context.list_webhooks(&actor).await?))
}

/// Delete a webhook and its delivery attempts (admin); deliveries stop.
#[utoipa::path(operation_id = "delete_webhook", delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state
        .context
        .delete_webhook(&actor, webhook_id(&id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A webhook's delivery attempts, newest first (admin); `outcome=dead` lists the dead letters.
#[utoipa::path(operation_id = "webhook_deliveries", get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, format = Uuid), DeliveriesQuery),
    responses((status = 200, body = DeliveryList), (status = 400, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn deliveries(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<DeliveriesQuery>,
) -> ApiResult<Json<DeliveryList>> {
    let id = webhook_id(&id)?;
    Ok(Json(
        state.context.webhook_deliveries(&actor, id, &query).await?,
    ))
}

/// Send the event of one attempt again, now (admin): typically a dead letter once its
/// receiver is back. The answer is the new attempt, recorded with the others: `delivered`,
/// or `dead` when it failed (it is not retried).
#[utoipa::path(operation_id = "redeliver_webhook", post, path = "/v1/webhooks/{id}/deliveries/{deliveryId}/redeliver", tag = "webhooks",
    params(("id" = String, Path, format = Uuid), ("deliveryId" = u64, Path)),
    responses((status = 200, body = Delivery), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn redeliver(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath((id, delivery)): ApiPath<(String, String)>,
) -> ApiResult<Json<Delivery>> {
    let id = webhook_id(&id)?;
    let delivery: u64 = delivery
        .parse()
        .map_err(|_| ApiError::bad_request("not a valid delivery id"))?;
    let redelivery = state.context.redelivery(&actor, id, delivery).await?;
    let attempt = webhooks::redeliver(&state.events_config, &redelivery).await;
    Ok(Json(
        state.context.record_redelivery(&actor, id, attempt).await?,
    ))
}
