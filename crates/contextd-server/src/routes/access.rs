//! People and credentials: users, sign-in sessions, API keys, partner grants, the audit log,
//! and the customer privacy operations (erase, export).

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use contextd_core::access::NewSession;
use contextd_core::auth::PrincipalKind;
use contextd_core::store::AuditQuery;
use contextd_core::{ObjectId, Partition};
use contextd_proto::access::{
    AuditPage, AuditParams, CustomerExport, Erased, GrantCreated, KeyView, NewGrant, NewKey,
    NewUser, SessionView, SessionsRevoked, SignIn, UserPatch, UserView, WhoAmI,
};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{session_cookie, ApiJson, ApiPath, ApiQuery, Auth, SESSION_COOKIE};
use crate::AppState;

fn uuid(id: &str, what: &str) -> ApiResult<Uuid> {
    Uuid::try_parse(id).map_err(|_| ApiError::bad_request(format!("not a valid {what} id")))
}

/// Create a user (admin).
#[utoipa::path(post, path = "/v1/users", tag = "access", request_body = NewUser,
    responses((status = 201, body = UserView), (status = 409, body = Problem)), security(("bearer" = [])))]
pub async fn create_user(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiJson(new): ApiJson<NewUser>,
) -> ApiResult<Response> {
    let user = state.context.create_user(&actor, new).await?;
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

/// List the partition's users (admin).
#[utoipa::path(get, path = "/v1/users", tag = "access", responses((status = 200, body = Vec<UserView>)), security(("bearer" = [])))]
pub async fn list_users(
    State(state): State<AppState>,
    Auth(actor): Auth,
) -> ApiResult<Json<Vec<UserView>>> {
    Ok(Json(state.context.list_users(&actor).await?))
}

/// Change a user's role, password or disabled flag (admin). Disabling, enabling or a password
/// reset ends every session of the user at once; a role change applies to them at once.
#[utoipa::path(patch, path = "/v1/users/{id}", tag = "access", params(("id" = String, Path, format = Uuid)),
    request_body = UserPatch,
    responses((status = 200, body = UserView), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "the partition's last enabled admin user", body = Problem)),
    security(("bearer" = [])))]
pub async fn update_user(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<UserPatch>,
) -> ApiResult<Json<UserView>> {
    let id = uuid(&id, "user")?;
    Ok(Json(state.context.update_user(&actor, id, patch).await?))
}

/// Delete a user and every session of theirs (admin).
#[utoipa::path(delete, path = "/v1/users/{id}", tag = "access", params(("id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 404, body = Problem),
        (status = 409, description = "the partition's last enabled admin user", body = Problem)),
    security(("bearer" = [])))]
pub async fn delete_user(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let id = uuid(&id, "user")?;
    state.context.delete_user(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// End every session of a user at once, on every instance (admin).
#[utoipa::path(delete, path = "/v1/users/{id}/sessions", tag = "access", params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = SessionsRevoked), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn revoke_user_sessions(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<SessionsRevoked>> {
    let id = uuid(&id, "user")?;
    let revoked = state.context.revoke_user_sessions(&actor, id).await?;
    Ok(Json(SessionsRevoked { revoked }))
}

/// Sign in with name and password; sets the `contextd_session` cookie (HttpOnly, SameSite=Strict).
#[utoipa::path(post, path = "/v1/sessions", tag = "access", request_body = SignIn,
    responses((status = 201, body = SessionView), (status = 400, body = Problem), (status = 401, body = Problem), (status = 429, body = Problem)))]
pub async fn sign_in(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SignIn>,
) -> ApiResult<Response> {
    let (session, cookie) = start_session(
        &state,
        &body.org,
        body.partition,
        &body.name,
        &body.password,
    )
    .await?;
    let view = SessionView {
        user: session.user,
        csrf_token: session.csrf,
        expires_at: session.expires_at,
    };
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    if let Some(v) = cookie {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

/// Signs in under the sign-in limits (attempts per account, a bounded number of password
/// checks at once) and returns the session with its `Set-Cookie` value (HttpOnly,
/// SameSite=Strict, Secure when configured). Shared by `POST /v1/sessions` and the browser
/// registration pages.
pub(crate) async fn start_session(
    state: &AppState,
    org: &str,
    partition: Partition,
    name: &str,
    password: &str,
) -> ApiResult<(NewSession, Option<HeaderValue>)> {
    // Oversize names are refused before they cost a limiter entry or a password check.
    contextd_core::access::check_sign_in_names(org, name)?;
    state.limits.sign_in(org, partition, name)?;
    let _permit = state.limits.password_check().await?;
    let session = state
        .context
        .sign_in(org, partition, name, password)
        .await?;
    let max_age = (session.expires_at - Utc::now()).num_seconds().max(0);
    let secure = if state.cookie_secure { "; Secure" } else { "" };
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}",
        session.secret
    );
    Ok((session, HeaderValue::from_str(&cookie).ok()))
}

/// Sign out: the session is revoked server-side at once.
#[utoipa::path(delete, path = "/v1/sessions/current", tag = "access", responses((status = 204)))]
pub async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(secret) = session_cookie(&headers) {
        state.context.sign_out(secret).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let clear = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&clear) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

/// The caller's identity (key or session); with the session cookie, also the session's CSRF
/// token, so that a reloaded page can make unsafe requests again.
#[utoipa::path(get, path = "/v1/sessions/current", tag = "access", responses((status = 200, body = WhoAmI)), security(("bearer" = [])))]
pub async fn whoami(
    State(state): State<AppState>,
    Auth(actor): Auth,
    headers: HeaderMap,
) -> ApiResult<Json<WhoAmI>> {
    let csrf_token = match (actor.kind, session_cookie(&headers)) {
        (PrincipalKind::User, Some(secret)) => state.context.session_csrf(secret).await?,
        _ => None,
    };
    Ok(Json(WhoAmI {
        id: actor.id,
        role: actor.role,
        partition: actor.scope.partition,
        org_id: actor.scope.org.to_string(),
        org_name: Some(state.context.org_name(actor.scope.org).await?),
        name: state.context.principal_name(&actor).await?,
        csrf_token,
        embed_origins: state.context.own_embed_origins(&actor).await?,
    }))
}

/// Create an API key (admin); the token is shown in this answer only.
#[utoipa::path(post, path = "/v1/keys", tag = "access", request_body = NewKey,
    responses((status = 201, body = KeyView)), security(("bearer" = [])))]
pub async fn create_key(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiJson(new): ApiJson<NewKey>,
) -> ApiResult<Response> {
    let key = state.context.create_key(&actor, new).await?;
    Ok((StatusCode::CREATED, Json(key)).into_response())
}

/// List the partition's API keys (admin; no secrets).
#[utoipa::path(get, path = "/v1/keys", tag = "access", responses((status = 200, body = Vec<KeyView>)), security(("bearer" = [])))]
pub async fn list_keys(
    State(state): State<AppState>,
    Auth(actor): Auth,
) -> ApiResult<Json<Vec<KeyView>>> {
    Ok(Json(state.context.list_keys(&actor).await?))
}

/// Revoke an API key (admin); effective at once.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "access", params(("id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn revoke_key(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.context.revoke_key(&actor, uuid(&id, "key")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Let a partner principal see ENCRYPTED and PII values until `expiresAt` (admin).
#[utoipa::path(post, path = "/v1/grants", tag = "access", request_body = NewGrant,
    responses((status = 201, body = GrantCreated)), security(("bearer" = [])))]
pub async fn create_grant(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiJson(new): ApiJson<NewGrant>,
) -> ApiResult<Response> {
    let id = state.context.create_grant(&actor, new).await?;
    Ok((StatusCode::CREATED, Json(GrantCreated { id })).into_response())
}

/// Revoke a grant (admin); effective at once.
#[utoipa::path(delete, path = "/v1/grants/{id}", tag = "access", params(("id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn revoke_grant(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state
        .context
        .revoke_grant(&actor, uuid(&id, "grant")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Read the audit log, newest first (admin). The log is append-only: there is no way to
/// change or delete entries through the API.
#[utoipa::path(get, path = "/v1/audit", tag = "access", params(AuditParams),
    responses((status = 200, body = AuditPage)), security(("bearer" = [])))]
pub async fn audit(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> ApiResult<Json<AuditPage>> {
    let query = AuditQuery {
        action: p.action,
        actor: p.actor.as_deref().map(|a| uuid(a, "actor")).transpose()?,
        object_id: p.object_id,
        from: p.from,
        to: p.to,
        limit: p.limit.unwrap_or(50),
        before: None,
    };
    Ok(Json(
        state
            .context
            .read_audit(&actor, query, p.cursor.as_deref())
            .await?,
    ))
}

/// Right to be forgotten: remove the customer and everything linked to it, and destroy the
/// customer's key so that copies in backups can't be read (admin; allowed in production).
#[utoipa::path(post, path = "/v1/customers/{id}/erase", tag = "access", params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = Erased), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn erase(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Erased>> {
    let erased = state
        .context
        .erase_customer(&actor, ObjectId::parse(&id)?)
        .await?;
    Ok(Json(Erased { erased }))
}

/// Everything held about a customer (admin).
#[utoipa::path(get, path = "/v1/customers/{id}/export", tag = "access", params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = CustomerExport), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn export(
    State(state): State<AppState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<CustomerExport>> {
    Ok(Json(
        state
            .context
            .export_customer(&actor, ObjectId::parse(&id)?)
            .await?,
    ))
}
