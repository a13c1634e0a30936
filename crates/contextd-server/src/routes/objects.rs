//! Context objects: CRUD, search, timeline and lab flush.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use contextd_core::object::MediaType;
use contextd_core::service::batch::BatchOutcome;
use contextd_core::{ContextObject, Kind, ObjectId};
use contextd_proto::object::{
    BatchItemResult, BatchRequest, BatchResult, BatchStatus, FlushStatus, ObjectInput, ObjectPatch,
    SearchRequest, SearchResult, TimelinePage, TimelineParams,
};

use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::extract::{if_match, is_json, parse_json, ApiJson, ApiPath, ApiQuery, Auth};
use crate::AppState;

fn kind(segment: &str) -> ApiResult<Kind> {
    match segment {
        "customers" => Ok(Kind::Customer),
        "requests" => Ok(Kind::Request),
        "activities" | "pods" => Ok(Kind::Activity),
        "details" => Ok(Kind::Detail),
        _ => Err(ApiError::no_route()),
    }
}

fn with_etag(object: &ContextObject, mut response: Response) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", object.version)) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// Create an object.
#[utoipa::path(post, path = "/v1/{kind}", tag = "objects",
    params(("kind" = String, Path, description = "customers | requests | activities | details")),
    request_body = ObjectInput,
    responses((status = 201, body = ContextObject), (status = 400, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(segment): ApiPath<String>,
    ApiJson(input): ApiJson<ObjectInput>,
) -> ApiResult<Response> {
    let kind = kind(&segment)?;
    let object = state.context.create(&actor, kind, input).await?;
    let location = format!("/v1/{}/{}", kind.plural(), object.id);
    let mut response = (StatusCode::CREATED, Json(&object)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(with_etag(&object, response))
}

/// Create up to 1,000 objects of a kind in one transaction, with one result per item; with
/// `"import": true` (admins), keep each item's id and history (how `contextd import` loads an
/// export). Items that fail are reported and the others written.
#[utoipa::path(post, path = "/v1/{kind}/batch", tag = "objects",
    params(("kind" = String, Path, description = "customers | requests | activities | details")),
    request_body = BatchRequest,
    responses((status = 200, body = BatchResult), (status = 400, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem)),
    security(("bearer" = [])))]
pub async fn batch(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(segment): ApiPath<String>,
    request: Request,
) -> ApiResult<Json<BatchResult>> {
    let kind = kind(&segment)?;
    // The permit is taken before the body is read: at most BATCHES_AT_ONCE bodies in memory.
    let _permit = state.limits.batch().await;
    let json = is_json(request.headers());
    let limit = state.limits.batch_body_bytes;
    let bytes = axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::TooLarge,
                format!("a batch body is at most {limit} bytes (--batch-body-limit)"),
            )
        })?;
    if !json {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "expected a body with content-type application/json",
        ));
    }
    let body: BatchRequest = parse_json(&bytes, state.limits.json_depth)?;
    drop(bytes);
    let outcomes = state
        .context
        .create_batch(&actor, kind, body.items, body.import)
        .await?;
    let mut result = BatchResult {
        items: Vec::with_capacity(outcomes.len()),
        created: 0,
        existing: 0,
        failed: 0,
    };
    for outcome in outcomes {
        let (status, written, problem) = match outcome {
            BatchOutcome::Created(w) => (BatchStatus::Created, Some(w), None),
            BatchOutcome::Exists(w) => (BatchStatus::Exists, Some(w), None),
            BatchOutcome::Failed(e) => {
                (BatchStatus::Failed, None, Some(ApiError::from(e).problem()))
            }
        };
        match status {
            BatchStatus::Created => result.created += 1,
            BatchStatus::Exists => result.existing += 1,
            BatchStatus::Failed => result.failed += 1,
        }
        result.items.push(BatchItemResult {
            status,
            id: written.map(|w| w.id),
            version: written.map(|w| w.version),
            last_updated: written.map(|w| w.last_updated),
            problem,
        });
    }
    Ok(Json(result))
}

/// Read an object.
#[utoipa::path(get, path = "/v1/{kind}/{id}", tag = "objects",
    params(("kind" = String, Path), ("id" = String, Path, format = Uuid)),
    responses((status = 200, body = ContextObject), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath((segment, id)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    let kind = kind(&segment)?;
    let object = state
        .context
        .get(&actor, kind, ObjectId::parse(&id)?)
        .await?;
    Ok(with_etag(&object, Json(&object).into_response()))
}

/// Replace an object (`version` in the body or `If-Match` must equal the stored version).
#[utoipa::path(put, path = "/v1/{kind}/{id}", tag = "objects",
    params(("kind" = String, Path), ("id" = String, Path, format = Uuid)),
    request_body = ObjectInput,
    responses((status = 200, body = ContextObject), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn replace(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath((segment, id)): ApiPath<(String, String)>,
    headers: HeaderMap,
    ApiJson(input): ApiJson<ObjectInput>,
) -> ApiResult<Response> {
    let kind = kind(&segment)?;
    let object = state
        .context
        .replace(
            &actor,
            kind,
            ObjectId::parse(&id)?,
            input,
            if_match(&headers)?,
        )
        .await?;
    Ok(with_etag(&object, Json(&object).into_response()))
}

/// Merge-patch an object's `data`, `tags`, `state`, `fieldsets`, `parentId` or `customerId`.
#[utoipa::path(patch, path = "/v1/{kind}/{id}", tag = "objects",
    params(("kind" = String, Path), ("id" = String, Path, format = Uuid)),
    request_body(content = Object, content_type = "application/merge-patch+json"),
    responses((status = 200, body = ContextObject), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn patch(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath((segment, id)): ApiPath<(String, String)>,
    headers: HeaderMap,
    // The extractor every body goes through: `application/json` or `application/*+json`
    // (merge-patch), the --json-depth limit, 415/400/413 as problem JSON.
    ApiJson(patch): ApiJson<ObjectPatch>,
) -> ApiResult<Response> {
    let kind = kind(&segment)?;
    let object = state
        .context
        .patch(
            &actor,
            kind,
            ObjectId::parse(&id)?,
            patch,
            if_match(&headers)?,
        )
        .await?;
    Ok(with_etag(&object, Json(&object).into_response()))
}

/// Delete one object (lab partition only).
#[utoipa::path(delete, path = "/v1/{kind}/{id}", tag = "objects",
    params(("kind" = String, Path), ("id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath((segment, id)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let kind = kind(&segment)?;
    state
        .context
        .delete(&actor, kind, ObjectId::parse(&id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Search objects of a kind.
#[utoipa::path(post, path = "/v1/{kind}/search", tag = "objects",
    params(("kind" = String, Path)),
    request_body = SearchRequest,
    responses((status = 200, body = SearchResult), (status = 400, body = Problem)),
    security(("bearer" = [])))]
pub async fn search(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(segment): ApiPath<String>,
    ApiJson(request): ApiJson<SearchRequest>,
) -> ApiResult<Json<SearchResult>> {
    let kind = kind(&segment)?;
    Ok(Json(state.context.search(&actor, kind, &request).await?))
}

/// A customer's journey: requests, activities and details, newest first.
#[utoipa::path(get, path = "/v1/customers/{id}/timeline", tag = "objects",
    params(("id" = String, Path, format = Uuid), TimelineParams),
    responses((status = 200, body = TimelinePage), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn timeline(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<TimelineParams>,
) -> ApiResult<Response> {
    let media_type = params
        .media_type
        .as_deref()
        .map(str::parse::<MediaType>)
        .transpose()?;
    // The page's JSON, written by the core straight from the stored rows.
    let json = state
        .context
        .timeline_json(
            &actor,
            ObjectId::parse(&id)?,
            media_type,
            params.limit,
            params.cursor.as_deref(),
        )
        .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json,
    )
        .into_response())
}

/// Delete every object of a kind (lab partition only).
#[utoipa::path(post, path = "/v1/{kind}/flush", tag = "objects",
    params(("kind" = String, Path)),
    responses((status = 202, body = FlushStatus), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn flush(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(segment): ApiPath<String>,
) -> ApiResult<Response> {
    let kind = kind(&segment)?;
    let status = state.context.flush(&actor, kind).await?;
    let mut response = (StatusCode::ACCEPTED, Json(&status)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/flush/{}", status.id)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// Status of a flush.
#[utoipa::path(get, path = "/v1/flush/{id}", tag = "objects",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = FlushStatus), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn flush_status(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<FlushStatus>> {
    let id =
        uuid::Uuid::try_parse(&id).map_err(|_| ApiError::bad_request("not a valid flush id"))?;
    Ok(Json(state.context.flush_status(&actor, id).await?))
}
