//! The Cisco Context Service REST compatibility API (DESIGN.md §4), under `/context/v1` and
//! `/dictionary/{field,fieldset}/v1`:
//! existing integrations keep working by changing only the base URL.
//!
//! This module maps the original wire shapes (`contextd_proto::compat`) to the core's
//! operations; the core has no compatibility special case. Everything written here is the
//! same object the native API and the desktop see. Around every answer, one middleware
//! (`envelope`) puts the `trackingid` header (the client's, else a new one) and turns native
//! problem documents into the original error shape (`{"errorType", "errorMessage", "errorData"}`).

mod dictionary;
mod objects;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use contextd_core::auth::Principal;
use contextd_proto::compat::dictionary::{
    DICTIONARY, DICTIONARY_ENTRY, DICTIONARY_SEARCH, DICTIONARY_STATUS,
};
use contextd_proto::compat::{
    echoable_tracking_id, parse_labmode, CompatError, CompatPing, LABMODE_HEADER, OBJECT, OBJECTS,
    PING, TRACKING_HEADER,
};
use contextd_proto::Problem;

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// Largest problem document the envelope rewrites (they are a few hundred bytes).
const MAX_PROBLEM_BYTES: usize = 64 * 1024;

/// The compatibility routes, to merge into the server's router (outside `/v1`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(PING, get(ping))
        .route(OBJECTS, get(objects::search).post(objects::create))
        .route(
            OBJECT,
            get(objects::get)
                .put(objects::replace)
                .delete(objects::delete),
        )
        .route(DICTIONARY, axum::routing::post(dictionary::create))
        .route(
            DICTIONARY_ENTRY,
            get(dictionary::get)
                .put(dictionary::replace)
                .delete(dictionary::delete),
        )
        .route(DICTIONARY_SEARCH, get(dictionary::search))
        .route(DICTIONARY_STATUS, get(dictionary::status))
        .layer(axum::middleware::from_fn(envelope))
        .layer(axum::middleware::map_response(crate::web::no_store))
}

/// `GET /context/v1/ping`: no credential needed.
async fn ping() -> Json<CompatPing> {
    Json(CompatPing::pong())
}

/// The partition `cisco-context-labmode` selects must be the credential's (absent: the
/// credential's own).
fn check_labmode(headers: &HeaderMap, actor: &Principal) -> ApiResult<()> {
    let value = match headers.get(LABMODE_HEADER) {
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::bad_request(format!("{LABMODE_HEADER} must be true or false"))
        })?),
        None => None,
    };
    let wanted = parse_labmode(value).map_err(|e| ApiError::bad_request(e.0))?;
    match wanted {
        Some(p) if p != actor.scope.partition => Err(ApiError::new(
            contextd_proto::ErrorCode::Forbidden,
            format!(
                "{LABMODE_HEADER} asks for the {} partition, but this credential belongs to {}",
                p.as_str(),
                actor.scope.partition.as_str()
            ),
        )),
        _ => Ok(()),
    }
}

/// Puts `trackingid` on every answer and gives errors the original shape.
async fn envelope(request: Request, next: Next) -> Response {
    let tracking = request
        .headers()
        .get(TRACKING_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| echoable_tracking_id(v))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let response = next.run(request).await;
    let mut response = original_error(response).await;
    if let Ok(v) = HeaderValue::from_str(&tracking) {
        response.headers_mut().insert(TRACKING_HEADER, v);
    }
    response
}

/// A problem document rewritten as `{"errorType", "errorMessage", "errorData"}`, same status
/// and headers (`Retry-After` included); any other answer unchanged.
async fn original_error(response: Response) -> Response {
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !is_problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let error = match axum::body::to_bytes(body, MAX_PROBLEM_BYTES).await {
        Ok(bytes) => match serde_json::from_slice::<Problem>(&bytes) {
            Ok(problem) => CompatError::from_problem(&problem),
            Err(_) => CompatError::new(contextd_proto::ErrorCode::Internal, "internal error"),
        },
        Err(_) => CompatError::new(contextd_proto::ErrorCode::Internal, "internal error"),
    };
    let body = serde_json::to_vec(&error).unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// A 201/200 answer's `Last-Updated` header value.
fn last_updated_header(at: &chrono::DateTime<chrono::Utc>) -> Option<HeaderValue> {
    HeaderValue::from_str(&contextd_proto::time::format(at)).ok()
}

/// An answer of `status` with `body` as JSON.
pub(crate) fn ok<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    (status, Json(body)).into_response()
}

/// A 201 with `body` and the absolute `Location` of `ref_url` on this service.
pub(crate) fn created<T: serde::Serialize>(state: &AppState, ref_url: &str, body: &T) -> Response {
    let mut response = ok(StatusCode::CREATED, body);
    if let Ok(v) = HeaderValue::from_str(&format!("{}{ref_url}", state.public_url)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}
