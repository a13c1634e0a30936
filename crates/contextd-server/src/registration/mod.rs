//! Browser registration of components (DESIGN.md §7), as the original registration of
//! components worked: a component's administrator opens
//! `GET /register?callbackUrl=…&appType=…`; an administrator of the production partition signs
//! in (`POST /register/sign-in`, the session cookie of `POST /v1/sessions`) and approves
//! (`POST /register/approve`); a connector is created and the browser is sent back to
//! `callbackUrl?…&connectionData=…`. `GET /deregister?callbackUrl=…&clientId=…` and
//! `POST /deregister/approve` revoke the connector owning the client id and send the browser to
//! `callbackUrl?…&result=deregistered`. Cancelling returns `error=access_denied`.
//!
//! The pages are plain HTML under a strict Content-Security-Policy, never cached, every
//! reflected value escaped. Approval forms carry a token bound to the session, the user, the
//! flow and its parameters, valid for [`DEFAULT_APPROVAL_TTL`] (configurable); posts sent from
//! another site are refused; the core audits `connector.create` and `connector.revoke`.

mod approval;
mod flow;
mod page;

pub(crate) use page::escape;

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::Utc;
use contextd_core::auth::{Principal, Role};
use contextd_core::{CoreError, Partition};
use contextd_proto::connectors::{AppType, ConnectorState, ConnectorView, NewConnector};
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::session_cookie;
use crate::routes::access::start_session;
use crate::AppState;
use flow::{Flow, Kind, Params, Target};
use page::{Page, SignInValues};

/// How long an approval page stays valid by default.
pub const DEFAULT_APPROVAL_TTL: Duration = Duration::from_secs(600);

/// Longest connector name the core accepts, in characters.
const MAX_NAME_CHARS: usize = 100;

const STYLE: &str = include_str!("style.css");

#[derive(Clone, Copy)]
struct Settings {
    approval_ttl: Duration,
}

/// The registration pages, to merge into the server's router (outside `/v1`).
pub fn routes(approval_ttl: Duration) -> Router<AppState> {
    Router::new()
        .route("/register", get(register))
        .route("/deregister", get(deregister))
        .route("/register/sign-in", post(sign_in))
        .route("/register/approve", post(approve_register))
        .route("/deregister/approve", post(approve_deregister))
        .route("/register/style.css", get(style))
        .layer(Extension(Settings { approval_ttl }))
        .layer(axum::middleware::map_response(page::security_headers))
}

async fn style() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/css; charset=utf-8"),
        )],
        STYLE,
    )
        .into_response()
}

/// The path the service is reached at, below its origin (`""`, or `/contextd` behind a proxy
/// that adds a prefix): links and form actions start with it.
fn base_path(state: &AppState) -> String {
    url::Url::parse(&state.public_url)
        .map(|u| u.path().trim_end_matches('/').to_owned())
        .unwrap_or_default()
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A signed-in browser: the session cookie's secret (the approval key) and the person.
struct Session {
    secret: String,
    principal: Principal,
}

impl Session {
    fn is_production_admin(&self) -> bool {
        self.principal.role == Role::Admin
            && self.principal.scope.partition == Partition::Production
    }

    fn described(&self) -> String {
        format!(
            "{} of the {} partition",
            self.principal.role,
            self.principal.scope.partition.as_str()
        )
    }
}

/// The session of the cookie sent, if it is valid; counted against the person's rate limit.
/// The approval token, not a CSRF header, protects the posts: forms can't send headers.
async fn session(
    state: &AppState,
    headers: &HeaderMap,
    base: &str,
) -> Result<Option<Session>, Page> {
    let Some(secret) = session_cookie(headers) else {
        return Ok(None);
    };
    let principal = match state
        .context
        .authenticate_session(secret, None, false)
        .await
    {
        Ok(p) => p,
        Err(CoreError::Unauthorized(_)) => return Ok(None),
        Err(e) => return Err(error_page(base, ApiError::from(e))),
    };
    if let Err(too_many) = state.limits.credential(principal.id) {
        return Err(error_page(base, ApiError::from(too_many)));
    }
    Ok(Some(Session {
        secret: secret.to_owned(),
        principal,
    }))
}

/// A refusal of the core or of a limit: its status, a message fit for anyone (never a stored
/// detail), and its `Retry-After` if it has one.
fn refusal(error: ApiError) -> (StatusCode, &'static str, Option<HeaderValue>) {
    let status = error.status();
    let message = match status {
        StatusCode::UNAUTHORIZED => "Wrong organization, user name or password.",
        StatusCode::FORBIDDEN => "A production administrator is needed.",
        StatusCode::NOT_FOUND => "Not found.",
        StatusCode::TOO_MANY_REQUESTS => "Too many attempts: wait a little and try again.",
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => "The request was refused.",
        _ => "The service can't do this right now; try again later.",
    };
    let retry = error
        .into_response()
        .headers()
        .get(header::RETRY_AFTER)
        .cloned();
    (status, message, retry)
}

/// A refusal as a page.
fn error_page(base: &str, error: ApiError) -> Page {
    let (status, message, retry) = refusal(error);
    page::failure(base, status, message).with_retry_after(retry)
}

/// The connector of the session's organization that owns `client_id`.
async fn connector_of(
    state: &AppState,
    principal: &Principal,
    client_id: Uuid,
) -> Result<Option<ConnectorView>, ApiError> {
    Ok(state
        .context
        .list_connectors(principal)
        .await?
        .into_iter()
        .find(|c| c.client_ids.contains(&client_id)))
}

async fn register(
    State(state): State<AppState>,
    Extension(settings): Extension<Settings>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    show(&state, settings, &headers, Kind::Register, query).await
}

async fn deregister(
    State(state): State<AppState>,
    Extension(settings): Extension<Settings>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    show(&state, settings, &headers, Kind::Deregister, query).await
}

/// `GET /register` and `GET /deregister`: the sign-in page, the approval page, or why neither.
async fn show(
    state: &AppState,
    settings: Settings,
    headers: &HeaderMap,
    kind: Kind,
    query: Option<String>,
) -> Response {
    let base = base_path(state);
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    let flow = match Flow::parse(kind, &params) {
        Ok(flow) => flow,
        Err(problems) => return page::invalid(&base, &problems).into_response(),
    };
    let session = match session(state, headers, &base).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return page::sign_in(&base, &flow, &SignInValues::default(), None).into_response()
        }
        Err(page) => return page.into_response(),
    };
    if !session.is_production_admin() {
        return page::needs_production_admin(&base, &flow, &session.described()).into_response();
    }
    approval_page(state, settings, &base, &flow, &session)
        .await
        .unwrap_or_else(|e| error_page(&base, e))
        .into_response()
}

async fn approval_page(
    state: &AppState,
    settings: Settings,
    base: &str,
    flow: &Flow,
    session: &Session,
) -> Result<Page, ApiError> {
    let org = state.context.org_name(session.principal.scope.org).await?;
    let token = approval::issue(&session.secret, session.principal.id, flow, now_ms());
    let ttl = settings.approval_ttl;
    Ok(match flow.target {
        Target::AppType(t) => page::approve_register(base, flow, &org, t.as_str(), &token, ttl),
        Target::ClientId(id) => match connector_of(state, &session.principal, id).await? {
            Some(c) => page::approve_deregister(base, flow, &org, &c, &token, ttl),
            None => page::unknown_connector(base, flow, &id.to_string()),
        },
    })
}

/// Whether a post comes from another site: `Sec-Fetch-Site: cross-site`, or an `Origin` that
/// is neither the service's public origin nor the origin of the `Host` it was sent to. Forms
/// from other sites could otherwise sign a browser in to someone else's account.
fn from_another_site(headers: &HeaderMap, public_url: &str) -> bool {
    let header = |name| {
        headers
            .get(name)
            .map(|v: &HeaderValue| v.to_str().unwrap_or("\0"))
    };
    if header("sec-fetch-site") == Some("cross-site") {
        return true;
    }
    let Some(origin) = header("origin") else {
        return false;
    };
    let public = url::Url::parse(public_url).map(|u| u.origin().ascii_serialization());
    if public.as_deref() == Ok(origin) {
        return false;
    }
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    !matches!((authority, header("host")), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

/// `POST /register/sign-in`: the sign-in of `POST /v1/sessions` (same limits and cookie), then
/// back to the page it came from.
async fn sign_in(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let base = base_path(&state);
    if from_another_site(&headers, &state.public_url) {
        return page::cross_site(&base).into_response();
    }
    let params = Params::parse(&body);
    let kind = params.get("flow").ok().flatten().and_then(Kind::parse);
    let Some(kind) = kind else {
        return page::invalid(&base, &["The form does not say what to approve.".into()])
            .into_response();
    };
    let flow = match Flow::parse(kind, &params) {
        Ok(flow) => flow,
        Err(problems) => return page::invalid(&base, &problems).into_response(),
    };
    let field = |name| params.get(name).ok().flatten().unwrap_or_default();
    let (org, name, password) = (field("org"), field("name"), field("password"));
    let values = SignInValues { org, name };
    if org.is_empty() || name.is_empty() || password.is_empty() {
        let error = (
            StatusCode::BAD_REQUEST,
            "Enter the organization, user name and password.",
        );
        return page::sign_in(&base, &flow, &values, Some(error)).into_response();
    }
    match start_session(&state, org, Partition::Production, name, password).await {
        Ok((_, cookie)) => {
            let mut response = page::see_other(&flow.start_url(&base));
            if let Some(cookie) = cookie {
                response.headers_mut().insert(header::SET_COOKIE, cookie);
            }
            response
        }
        Err(e) => {
            let (status, message, retry) = refusal(e);
            // The only 400 of a sign-in: a name over the limit.
            let message = match status {
                StatusCode::BAD_REQUEST => {
                    "The organization and user name are at most 400 characters."
                }
                _ => message,
            };
            page::sign_in(&base, &flow, &values, Some((status, message)))
                .with_retry_after(retry)
                .into_response()
        }
    }
}

async fn approve_register(
    State(state): State<AppState>,
    Extension(settings): Extension<Settings>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    approve(&state, settings, &headers, &body, Kind::Register).await
}

async fn approve_deregister(
    State(state): State<AppState>,
    Extension(settings): Extension<Settings>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    approve(&state, settings, &headers, &body, Kind::Deregister).await
}

/// `POST /register/approve` and `POST /deregister/approve`: checks the approval token against
/// the current session, then creates or revokes the connector and sends the browser back.
async fn approve(
    state: &AppState,
    settings: Settings,
    headers: &HeaderMap,
    body: &Bytes,
    kind: Kind,
) -> Response {
    let base = base_path(state);
    if from_another_site(headers, &state.public_url) {
        return page::cross_site(&base).into_response();
    }
    let params = Params::parse(body);
    let flow = match Flow::parse(kind, &params) {
        Ok(flow) => flow,
        Err(problems) => return page::invalid(&base, &problems).into_response(),
    };
    let session = match session(state, headers, &base).await {
        Ok(Some(s)) => s,
        Ok(None) => return page::expired(&base, &flow).into_response(),
        Err(page) => return page.into_response(),
    };
    let token = params.get("approval").ok().flatten().unwrap_or_default();
    let (user, ttl) = (session.principal.id, settings.approval_ttl);
    if !approval::verify(token, &session.secret, user, &flow, now_ms(), ttl) {
        return page::expired(&base, &flow).into_response();
    }
    if !session.is_production_admin() {
        return page::needs_production_admin(&base, &flow, &session.described()).into_response();
    }
    let done = match flow.target {
        Target::AppType(t) => create(state, &flow, t, &session).await,
        Target::ClientId(id) => revoke(state, &base, &flow, id, &session).await,
    };
    done.unwrap_or_else(|e| error_page(&base, e).into_response())
}

/// `<appType> component at <host>`, within the core's length limit.
fn connector_name(flow: &Flow, app_type: AppType) -> String {
    let name = format!("{} component at {}", app_type.as_str(), flow.host());
    match name.char_indices().nth(MAX_NAME_CHARS - 1) {
        Some((at, _)) => format!("{}…", &name[..at]),
        None => name,
    }
}

async fn create(
    state: &AppState,
    flow: &Flow,
    app_type: AppType,
    session: &Session,
) -> Result<Response, ApiError> {
    let new = NewConnector {
        name: connector_name(flow, app_type),
        app_type,
        version: None,
    };
    let created = state
        .context
        .create_connector(&session.principal, new, &state.public_url)
        .await?;
    let back = flow.callback_with("connectionData", &created.connection_data);
    Ok(page::see_other(back.as_str()))
}

async fn revoke(
    state: &AppState,
    base: &str,
    flow: &Flow,
    client_id: Uuid,
    session: &Session,
) -> Result<Response, ApiError> {
    let Some(connector) = connector_of(state, &session.principal, client_id).await? else {
        return Ok(page::unknown_connector(base, flow, &client_id.to_string()).into_response());
    };
    // Revoking twice (a form sent again) is done, not an error.
    if connector.state != ConnectorState::Revoked {
        match state
            .context
            .revoke_connector(&session.principal, connector.id)
            .await
        {
            Ok(()) | Err(CoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let back = flow.callback_with("result", "deregistered");
    Ok(page::see_other(back.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connector_names_fit_the_core_limit() {
        let host = format!("{}.example", "h".repeat(150));
        let query = format!("callbackUrl=https%3A%2F%2F{host}%2F");
        let flow = Flow::parse(Kind::Register, &Params::parse(query.as_bytes()))
            .unwrap_or_else(|e| panic!("{e:?}"));
        let name = connector_name(&flow, AppType::Voice);
        assert_eq!(name.chars().count(), MAX_NAME_CHARS);
        assert!(name.starts_with("voice component at hhh") && name.ends_with('…'));
    }

    #[test]
    fn posts_from_other_sites_are_told_apart() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        let public = "https://ctx.example/base";
        assert!(!from_another_site(&headers(&[]), public));
        assert!(!from_another_site(
            &headers(&[("origin", "https://ctx.example")]),
            public
        ));
        let proxied = [
            ("origin", "http://10.0.0.5:8080"),
            ("host", "10.0.0.5:8080"),
        ];
        assert!(!from_another_site(&headers(&proxied), public));
        assert!(from_another_site(
            &headers(&[("origin", "https://evil.example")]),
            public
        ));
        assert!(from_another_site(&headers(&[("origin", "null")]), public));
        assert!(from_another_site(
            &headers(&[("sec-fetch-site", "cross-site")]),
            public
        ));
    }
}
