//! Connectors (components) and the OAuth 2.0 token endpoint their credentials are exchanged at.

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use contextd_core::service::connectors::InvalidClient;
use contextd_proto::connectors::{
    ConnectorCreated, ConnectorView, NewConnector, RotateConnector, TokenError, TokenRequest,
    TokenResponse,
};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, Auth};
use crate::AppState;

fn connector_id(id: &str) -> ApiResult<Uuid> {
    Uuid::try_parse(id).map_err(|_| ApiError::bad_request("not a valid connector id"))
}

/// Create a connector (production admin): the answer carries its connectionData, shown once.
#[utoipa::path(operation_id = "create_connector", post, path = "/v1/connectors", tag = "connectors", request_body = NewConnector,
    responses((status = 201, body = ConnectorCreated), (status = 400, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiJson(new): ApiJson<NewConnector>,
) -> ApiResult<Response> {
    let created = state
        .context
        .create_connector(&actor, new, &state.public_url)
        .await?;
    let mut response = (StatusCode::CREATED, Json(&created)).into_response();
    no_store(response.headers_mut());
    Ok(response)
}

/// The organization's connectors with their state (admin).
#[utoipa::path(operation_id = "list_connectors", get, path = "/v1/connectors", tag = "connectors",
    responses((status = 200, body = Vec<ConnectorView>)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Auth(actor): Auth,
) -> ApiResult<Json<Vec<ConnectorView>>> {
    Ok(Json(state.context.list_connectors(&actor).await?))
}

/// Give a connector new secrets (production admin); the old ones keep working for
/// `graceSeconds` (default 3600) so that running components can pick up the new connectionData.
#[utoipa::path(operation_id = "rotate_connector", post, path = "/v1/connectors/{id}/rotate", tag = "connectors",
    params(("id" = String, Path, format = Uuid)), request_body = RotateConnector,
    responses((status = 200, body = ConnectorCreated), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn rotate(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    // The body is optional: an empty one keeps the default grace.
    let options: RotateConnector = if body.iter().all(u8::is_ascii_whitespace) {
        RotateConnector::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                crate::error::ErrorCode::MalformedJson,
                format!("invalid JSON body: {e}"),
            )
        })?
    };
    let grace = options.grace_seconds;
    let rotated = state
        .context
        .rotate_connector(&actor, connector_id(&id)?, grace, &state.public_url)
        .await?;
    let mut response = Json(&rotated).into_response();
    no_store(response.headers_mut());
    Ok(response)
}

/// Revoke a connector (production admin): its secrets and tokens stop working at once.
#[utoipa::path(operation_id = "revoke_connector", delete, path = "/v1/connectors/{id}", tag = "connectors",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state
        .context
        .revoke_connector(&actor, connector_id(&id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The OAuth 2.0 client-credentials grant (RFC 6749 §4.4): a connector credential, sent with
/// HTTP Basic or as form fields, for a short-lived bearer token of its org and partition.
#[utoipa::path(operation_id = "token", post, path = "/v1/token", tag = "connectors",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = TokenResponse), (status = 400, body = TokenError), (status = 401, body = TokenError)))]
pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<TokenRequest>, FormRejection>,
) -> Result<Response, ApiError> {
    let Ok(Form(form)) = form else {
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "send grant_type=client_credentials as application/x-www-form-urlencoded",
            false,
        ));
    };
    if form.grant_type != "client_credentials" {
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only grant_type=client_credentials is supported",
            false,
        ));
    }
    let basic = basic_credentials(&headers);
    let (id, secret) = match (&basic, form.client_id, form.client_secret) {
        (Some(Ok((id, secret))), None, None) => (id.clone(), secret.clone()),
        (None, Some(id), Some(secret)) => (id, secret),
        (Some(Err(())), _, _) => return Ok(invalid_client(true)),
        _ => {
            return Ok(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "authenticate the client with HTTP Basic or with client_id and client_secret, one way only",
                false,
            ))
        }
    };
    match state
        .context
        .exchange_client_credentials(&id, &secret)
        .await?
    {
        Ok(issued) => {
            let body = TokenResponse {
                access_token: issued.token,
                token_type: "Bearer".into(),
                expires_in: issued.expires_in,
            };
            let mut response = Json(body).into_response();
            no_store(response.headers_mut());
            Ok(response)
        }
        Err(InvalidClient) => Ok(invalid_client(basic.is_some())),
    }
}

/// `Authorization: Basic` credentials (RFC 6749 §2.3.1): `None` when absent, `Err` when
/// malformed.
fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), ()>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    Some(
        decoded
            .and_then(|text| {
                text.split_once(':')
                    .map(|(id, secret)| (id.to_owned(), secret.to_owned()))
            })
            .ok_or(()),
    )
}

fn invalid_client(basic: bool) -> Response {
    oauth_error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "unknown client, wrong or expired secret, or revoked connector",
        basic,
    )
}

/// An RFC 6749 §5.2 error body.
fn oauth_error(status: StatusCode, error: &str, description: &str, basic: bool) -> Response {
    let body = TokenError {
        error: error.to_owned(),
        error_description: Some(description.to_owned()),
    };
    let mut response = (status, Json(body)).into_response();
    no_store(response.headers_mut());
    if basic {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"contextd\""),
        );
    }
    response
}

/// Answers that carry secrets are never cached (RFC 6749 §5.1).
fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}
