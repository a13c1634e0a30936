//! The dictionary: fields and field sets.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use contextd_core::dictionary::{Field, FieldSet};

use crate::error::{ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, Auth};
use crate::AppState;

fn created<T: serde::Serialize>(location: String, body: &T) -> Response {
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// List every field, built-in and custom.
#[utoipa::path(get, path = "/v1/fields", tag = "dictionary",
    responses((status = 200, body = Vec<Field>)), security(("bearer" = [])))]
pub async fn list_fields(
    State(state): State<AppState>,
    Auth(actor): Auth,
) -> ApiResult<Json<Vec<Field>>> {
    Ok(Json(state.context.list_fields(&actor).await?))
}

/// Create a custom field (admin).
#[utoipa::path(post, path = "/v1/fields", tag = "dictionary", request_body = Field,
    responses((status = 201, body = Field), (status = 409, body = Problem)), security(("bearer" = [])))]
pub async fn create_field(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiJson(field): ApiJson<Field>,
) -> ApiResult<Response> {
    let field = state.context.put_field(&actor, field, None).await?;
    Ok(created(format!("/v1/fields/{}", field.id), &field))
}

/// Read a field.
#[utoipa::path(get, path = "/v1/fields/{id}", tag = "dictionary", params(("id" = String, Path)),
    responses((status = 200, body = Field), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_field(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Field>> {
    Ok(Json(state.context.get_field(&actor, &id).await?))
}

/// Replace a custom field (admin); `dataType` and `classification` are fixed once used.
#[utoipa::path(put, path = "/v1/fields/{id}", tag = "dictionary", params(("id" = String, Path)), request_body = Field,
    responses((status = 200, body = Field), (status = 409, body = Problem)), security(("bearer" = [])))]
pub async fn put_field(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(field): ApiJson<Field>,
) -> ApiResult<Json<Field>> {
    Ok(Json(
        state.context.put_field(&actor, field, Some(&id)).await?,
    ))
}

/// Delete an unused custom field (admin).
#[utoipa::path(delete, path = "/v1/fields/{id}", tag = "dictionary", params(("id" = String, Path)),
    responses((status = 204), (status = 409, body = Problem)), security(("bearer" = [])))]
pub async fn delete_field(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.context.delete_field(&actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List every field set.
#[utoipa::path(get, path = "/v1/fieldsets", tag = "dictionary",
    responses((status = 200, body = Vec<FieldSet>)), security(("bearer" = [])))]
pub async fn list_fieldsets(
    State(state): State<AppState>,
    Auth(actor): Auth,
) -> ApiResult<Json<Vec<FieldSet>>> {
    Ok(Json(state.context.list_fieldsets(&actor).await?))
}

/// Create a custom field set (admin).
#[utoipa::path(post, path = "/v1/fieldsets", tag = "dictionary", request_body = FieldSet,
    responses((status = 201, body = FieldSet), (status = 409, body = Problem)), security(("bearer" = [])))]
pub async fn create_fieldset(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiJson(set): ApiJson<FieldSet>,
) -> ApiResult<Response> {
    let set = state.context.put_fieldset(&actor, set, None).await?;
    Ok(created(format!("/v1/fieldsets/{}", set.id), &set))
}

/// Read a field set.
#[utoipa::path(get, path = "/v1/fieldsets/{id}", tag = "dictionary", params(("id" = String, Path)),
    responses((status = 200, body = FieldSet), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_fieldset(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<FieldSet>> {
    Ok(Json(state.context.get_fieldset(&actor, &id).await?))
}

/// Replace a custom field set (admin).
#[utoipa::path(put, path = "/v1/fieldsets/{id}", tag = "dictionary", params(("id" = String, Path)), request_body = FieldSet,
    responses((status = 200, body = FieldSet), (status = 409, body = Problem)), security(("bearer" = [])))]
pub async fn put_fieldset(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(set): ApiJson<FieldSet>,
) -> ApiResult<Json<FieldSet>> {
    Ok(Json(
        state.context.put_fieldset(&actor, set, Some(&id)).await?,
    ))
}

/// Delete an unused custom field set (admin).
#[utoipa::path(delete, path = "/v1/fieldsets/{id}", tag = "dictionary", params(("id" = String, Path)),
    responses((status = 204), (status = 409, body = Problem)), security(("bearer" = [])))]
pub async fn delete_fieldset(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.context.delete_fieldset(&actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
