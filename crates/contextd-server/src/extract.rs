//! Extractors that turn every rejection into problem JSON, and authentication.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use contextd_core::auth::Principal;
use contextd_core::CoreError;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode};
use crate::AppState;

/// Name of the web session cookie.
pub const SESSION_COOKIE: &str = "contextd_session";
/// Header carrying the session's CSRF token on unsafe requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A JSON body; malformed JSON, unknown fields, wrong types, excessive nesting and oversize
/// bodies become 4xx problems.
pub struct ApiJson<T>(pub T);

/// Whether a request says its body is JSON (`application/json` or `application/*+json`).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
}

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let json = is_json(req.headers());
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(ApiError::from)?;
        // The body is read first even when refused, so the connection stays usable.
        if !json {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "expected a body with content-type application/json",
            ));
        }
        Ok(Self(parse_json(&bytes, state.limits.json_depth)?))
    }
}

/// Parses a JSON body under the nesting limit.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8], max_depth: usize) -> Result<T, ApiError> {
    if crate::limits::json_depth_exceeds(bytes, max_depth) {
        return Err(ApiError::new(
            ErrorCode::MalformedJson,
            format!("JSON nested deeper than {max_depth} levels"),
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::new(ErrorCode::MalformedJson, format!("invalid JSON body: {e}")))
}

/// Query parameters, with problem JSON on error.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(v) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(v))
    }
}

/// The authenticated caller: `Authorization: Bearer <token>`, or the web session cookie
/// (then unsafe methods must carry `x-csrf-token`). Counts against the caller's rate limit.
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = if let Some(token) = bearer(&parts.headers) {
            state.context.authenticate(token).await?
        } else if let Some(secret) = session_cookie(&parts.headers) {
            let unsafe_method = !parts.method.is_safe();
            let csrf = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            state
                .context
                .authenticate_session(secret, csrf, unsafe_method)
                .await?
        } else {
            return Err(CoreError::Unauthorized(
                "send Authorization: Bearer <token> or sign in".into(),
            )
            .into());
        };
        if let Err(too_many) = state.limits.credential(principal.id) {
            return Err(ApiError::from(too_many));
        }
        tracing::Span::current().record("org", tracing::field::display(principal.scope.org));
        Ok(Self(principal))
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The session cookie's value, if sent.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// Parses `If-Match` (`"3"`, `W/"3"` or `3`) into a version.
pub fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = v
        .to_str()
        .map_err(|_| ApiError::bad_request("If-Match must be a version"))?;
    let text = text.trim().trim_start_matches("W/").trim_matches('"');
    text.parse::<i64>()
        .map(Some)
        .map_err(|_| ApiError::bad_request("If-Match must be an object version"))
}

/// Path parameters, with problem JSON on error (e.g. a segment that is not UTF-8).
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(v) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Self(v))
    }
}
