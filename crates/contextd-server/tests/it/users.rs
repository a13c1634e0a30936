//! Locking people out (docs/security.md): `PATCH /v1/users/{id}`, `DELETE /v1/users/{id}` and
//! `DELETE /v1/users/{id}/sessions` end sessions at once, on every instance; the last enabled
//! admin user stays; every change is audited, never with a password.
//!
//! Admins act through the SDK. Signed-in browsers (the session cookie and its CSRF token) stay
//! on raw HTTP: cookies are wire, and the SDK speaks bearer tokens only.

use std::fmt::Debug;

use contextd_client::{Client, Error};
use contextd_core::service::ContextConfig;
use contextd_proto::access::{AuditParams, AuditView, NewKey, NewUser, Role, UserPatch};
use contextd_proto::{ErrorCode, Kind};
use contextd_server::ServerConfig;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{client_at, forbidden, input, not_found, Resp, SecondInstance, TestServer};

const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "tr0ub4dor & 3 more";

/// A server whose sign-in limiter doesn't get in the way of many sign-ins.
async fn server() -> TestServer {
    TestServer::start_with(
        ContextConfig::default(),
        ServerConfig {
            sign_in_per_minute: 0,
            ..ServerConfig::default()
        },
    )
    .await
}

/// Creates a user with `PASSWORD` in the partition of `token`; returns its id.
async fn create_user(s: &TestServer, token: &str, name: &str, role: Role) -> Uuid {
    let user = s
        .client(token)
        .create_user(&NewUser {
            name: name.into(),
            role,
            password: PASSWORD.into(),
        })
        .await
        .expect("user created");
    assert!(!user.disabled, "a new user is enabled");
    user.id
}

fn disabled(yes: bool) -> UserPatch {
    UserPatch {
        disabled: Some(yes),
        ..UserPatch::default()
    }
}

fn role(role: Role) -> UserPatch {
    UserPatch {
        role: Some(role),
        ..UserPatch::default()
    }
}

fn password(password: &str) -> UserPatch {
    UserPatch {
        password: Some(password.into()),
        ..UserPatch::default()
    }
}

/// A validation error naming exactly `members`, each once.
#[track_caller]
fn invalid<T: Debug>(r: Result<T, Error>, members: &[&str]) {
    match &r {
        Err(Error::Validation { detail, errors }) => {
            assert!(!detail.is_empty(), "{r:?}");
            let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
            assert_eq!(fields, members, "each bad member named: {r:?}");
        }
        _ => panic!("expected a validation error of {members:?}: {r:?}"),
    }
}

#[track_caller]
fn last_admin<T: Debug>(r: Result<T, Error>) {
    match &r {
        Err(Error::Conflict {
            code: ErrorCode::LastAdmin,
            detail,
            ..
        }) => assert!(detail.contains("last enabled admin"), "{r:?}"),
        _ => panic!("expected a last-admin conflict: {r:?}"),
    }
}

/// A signed-in browser: the session cookie and its CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

async fn sign_in_at(url: &str, s: &TestServer, name: &str, password: &str) -> Resp {
    let r = s
        .http
        .post(format!("{url}/v1/sessions"))
        .json(&json!({"partition": "lab", "name": name, "password": password}))
        .send()
        .await
        .expect("sent");
    TestServer::read(r).await
}

async fn sign_in(s: &TestServer, name: &str, password: &str) -> Session {
    let r = sign_in_at(&s.url, s, name, password).await;
    r.expect(201);
    let cookie = r
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .unwrap_or_default()
        .to_owned();
    Session {
        cookie,
        csrf: r.str("/csrfToken"),
    }
}

impl Session {
    async fn call_at(
        &self,
        url: &str,
        s: &TestServer,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Resp {
        let mut req = s
            .http
            .request(method, format!("{url}{path}"))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf);
        if let Some(b) = body {
            req = req.json(&b);
        }
        TestServer::read(req.send().await.expect("sent")).await
    }

    async fn call(&self, s: &TestServer, method: Method, path: &str, body: Option<Value>) -> Resp {
        self.call_at(&s.url, s, method, path, body).await
    }

    /// Status of "who am I" with this session, through the server at `url`.
    async fn status_at(&self, url: &str, s: &TestServer) -> u16 {
        self.call_at(url, s, Method::GET, "/v1/sessions/current", None)
            .await
            .status
            .as_u16()
    }

    /// Status of "who am I" with this session.
    async fn status(&self, s: &TestServer) -> u16 {
        self.status_at(&s.url, s).await
    }
}

fn user_path(id: impl std::fmt::Display) -> String {
    format!("/v1/users/{id}")
}

async fn audit(c: &Client, action: &str) -> Vec<AuditView> {
    let params = AuditParams {
        action: Some(action.into()),
        ..AuditParams::default()
    };
    c.audit(&params).await.expect("audit").items
}

#[tokio::test]
async fn disabling_a_user_ends_their_sessions_at_once_and_enabling_lets_them_sign_in_again() {
    let s = server().await;
    let c = s.client(s.lab());
    let id = create_user(&s, s.lab(), "ada", Role::Agent).await;
    let bystander = create_user(&s, s.lab(), "bea", Role::Agent).await;
    let first = sign_in(&s, "ada", PASSWORD).await;
    let second = sign_in(&s, "ada", PASSWORD).await;
    let other = sign_in(&s, "bea", PASSWORD).await;
    assert_eq!(first.status(&s).await, 200);

    let user = c.update_user(id, &disabled(true)).await.expect("disabled");
    assert!(user.disabled);
    assert_eq!(user.id, id);
    assert_eq!(first.status(&s).await, 401, "the cookie is refused at once");
    assert_eq!(second.status(&s).await, 401, "every session of the user");
    assert_eq!(other.status(&s).await, 200, "other users keep theirs");
    sign_in_at(&s.url, &s, "ada", PASSWORD).await.expect(401);
    let listed = c.users().await.expect("users");
    assert!(listed.iter().any(|u| u.id == id && u.disabled));

    c.update_user(id, &disabled(false)).await.expect("enabled");
    assert_eq!(
        first.status(&s).await,
        401,
        "enabling doesn't revive old sessions"
    );
    let again = sign_in(&s, "ada", PASSWORD).await;
    assert_eq!(again.status(&s).await, 200, "enabled: sign-in works again");
    assert_ne!(bystander, id);
}

#[tokio::test]
async fn a_password_reset_ends_sessions_and_only_the_new_password_signs_in() {
    let s = server().await;
    let c = s.client(s.lab());
    let id = create_user(&s, s.lab(), "ada", Role::Agent).await;
    let old = sign_in(&s, "ada", PASSWORD).await;
    invalid(
        c.update_user(id, &password("too short")).await,
        &["password"],
    );
    assert_eq!(old.status(&s).await, 200, "a refused reset changes nothing");
    sign_in(&s, "ada", PASSWORD).await;

    // Raw HTTP: the point is the answer's bytes, which the SDK's UserView would filter.
    let r = s
        .patch(s.lab(), &user_path(id), json!({"password": NEW_PASSWORD}))
        .await;
    r.expect(200);
    assert!(
        !r.body.to_string().contains(NEW_PASSWORD) && !r.body.to_string().contains("argon2"),
        "no password material in the answer"
    );
    assert_eq!(old.status(&s).await, 401, "old sessions end with the reset");
    sign_in_at(&s.url, &s, "ada", PASSWORD).await.expect(401);
    let new = sign_in(&s, "ada", NEW_PASSWORD).await;
    assert_eq!(new.status(&s).await, 200);
}

#[tokio::test]
async fn revoking_sessions_and_deleting_a_user_refuse_their_cookie_at_once() {
    let s = server().await;
    let c = s.client(s.lab());
    let id = create_user(&s, s.lab(), "ada", Role::Agent).await;
    let (one, two) = (
        sign_in(&s, "ada", PASSWORD).await,
        sign_in(&s, "ada", PASSWORD).await,
    );
    let revoked = c.revoke_user_sessions(id).await.expect("revoked");
    assert_eq!(revoked.revoked, 2);
    assert_eq!(one.status(&s).await, 401);
    assert_eq!(two.status(&s).await, 401);
    let again = c.revoke_user_sessions(id).await.expect("revoked again");
    assert_eq!(again.revoked, 0, "nothing left to end");

    let live = sign_in(&s, "ada", PASSWORD).await;
    assert_eq!(live.status(&s).await, 200, "the user may sign in again");
    c.delete_user(id).await.expect("deleted");
    assert_eq!(live.status(&s).await, 401, "deleted: the cookie is refused");
    sign_in_at(&s.url, &s, "ada", PASSWORD).await.expect(401);
    let listed = c.users().await.expect("users");
    assert!(listed.is_empty(), "the user is gone: {listed:?}");
    not_found(c.delete_user(id).await);
    not_found(c.revoke_user_sessions(id).await);
    not_found(c.update_user(id, &disabled(true)).await);
}

#[tokio::test]
async fn a_role_change_applies_to_existing_sessions_at_once() {
    let s = server().await;
    let c = s.client(s.lab());
    let id = create_user(&s, s.lab(), "ada", Role::Admin).await;
    create_user(&s, s.lab(), "bob", Role::Admin).await;
    let session = sign_in(&s, "ada", PASSWORD).await;
    session
        .call(&s, Method::GET, "/v1/users", None)
        .await
        .expect(200);

    let user = c
        .update_user(id, &role(Role::Agent))
        .await
        .expect("demoted");
    assert_eq!(user.role, Role::Agent);
    let me = session
        .call(&s, Method::GET, "/v1/sessions/current", None)
        .await;
    me.expect(200);
    assert_eq!(me.str("/role"), "agent", "the session keeps going, demoted");
    session
        .call(&s, Method::GET, "/v1/users", None)
        .await
        .expect(403);

    c.update_user(id, &role(Role::Partner))
        .await
        .expect("partner");
    let customer = c
        .create(
            Kind::Customer,
            &input(json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": "Petra"}})),
        )
        .await
        .expect("customer")
        .id;
    let read = session
        .call(&s, Method::GET, &format!("/v1/customers/{customer}"), None)
        .await;
    read.expect(200);
    assert_eq!(
        read.at("/data/Context_First_Name"),
        &Value::Null,
        "as a partner now, PII is withheld"
    );
    invalid(c.update_user(id, &role(Role::Machine)).await, &["role"]);
}

#[tokio::test]
async fn user_changes_are_admin_only_and_scoped_to_the_partition_and_org() {
    let s = server().await;
    let c = s.client(s.lab());
    let id = create_user(&s, s.lab(), "ada", Role::Agent).await;
    let mut keys = Vec::new();
    for role in [Role::Agent, Role::Machine, Role::Partner] {
        let key = NewKey {
            name: role.to_string(),
            role,
            expires_at: None,
        };
        let created = c.create_key(&key).await.expect("key");
        keys.push(s.client(&created.token.expect("its token")));
    }
    let agent = sign_in(&s, "ada", PASSWORD).await;
    for key in &keys {
        forbidden(key.update_user(id, &disabled(true)).await);
        forbidden(key.revoke_user_sessions(id).await);
        forbidden(key.delete_user(id).await);
    }
    agent
        .call(
            &s,
            Method::PATCH,
            &user_path(id),
            Some(json!({"role": "admin"})),
        )
        .await
        .expect(403);
    agent
        .call(&s, Method::DELETE, &user_path(id), None)
        .await
        .expect(403);

    // Another partition's admin, another org's admin: the user does not exist for them.
    let other = s
        .context
        .create_org("other", &s.url)
        .await
        .expect("second org");
    for token in [s.prod(), other.lab_admin_token.as_str()] {
        let admin = s.client(token);
        not_found(admin.update_user(id, &disabled(true)).await);
        not_found(admin.revoke_user_sessions(id).await);
        not_found(admin.delete_user(id).await);
    }
    assert_eq!(agent.status(&s).await, 200, "nothing changed");

    // Bad input: a clear 400, nothing changed.
    match c.update_user(id, &UserPatch::default()).await {
        Err(Error::BadRequest { code, detail }) => {
            assert_eq!(code, ErrorCode::BadRequest);
            assert!(!detail.is_empty());
        }
        other => panic!("an empty patch: {other:?}"),
    }
    let both = UserPatch {
        role: Some(Role::Machine),
        password: Some("short".into()),
        ..UserPatch::default()
    };
    invalid(c.update_user(id, &both).await, &["role", "password"]);
    // Raw HTTP: these bodies and ids don't fit the SDK's types (UserPatch, Uuid).
    for body in [
        json!({"disabled": "yes"}),
        json!({"name": "renamed"}),
        json!({"role": "root"}),
    ] {
        let r = s.patch(s.lab(), &user_path(id), body.clone()).await;
        r.expect(400);
        assert!(!r.str("/detail").is_empty(), "{body}: {}", r.body);
    }
    s.patch(s.lab(), "/v1/users/not-a-uuid", json!({"disabled": true}))
        .await
        .expect(400);
    s.delete(s.lab(), "/v1/users/not-a-uuid/sessions")
        .await
        .expect(400);
    assert_eq!(agent.status(&s).await, 200, "still nothing changed");
}

#[tokio::test]
async fn the_last_enabled_admin_user_cannot_be_locked_out() {
    let s = server().await;
    let c = s.client(s.lab());
    let ada = create_user(&s, s.lab(), "ada", Role::Admin).await;
    let bob = create_user(&s, s.lab(), "bob", Role::Admin).await;
    let session = sign_in(&s, "ada", PASSWORD).await;

    // Two admins: one may go.
    c.update_user(bob, &disabled(true)).await.expect("bob off");
    last_admin(c.update_user(ada, &disabled(true)).await);
    last_admin(c.update_user(ada, &role(Role::Agent)).await);
    last_admin(c.delete_user(ada).await);
    // Not even by herself, through her own session (raw HTTP: a cookie session).
    let own = session
        .call(
            &s,
            Method::PATCH,
            &user_path(ada),
            Some(json!({"disabled": true})),
        )
        .await;
    own.expect(409);
    assert_eq!(own.at("/type"), ErrorCode::LastAdmin.type_uri().as_str());
    assert_eq!(session.status(&s).await, 200, "refusals change nothing");
    // A password reset of the last admin is allowed (and ends her sessions).
    c.update_user(ada, &password(NEW_PASSWORD))
        .await
        .expect("reset");
    assert_eq!(session.status(&s).await, 401);

    // With bob enabled again, ada may be demoted, and then bob is the last one.
    c.update_user(bob, &disabled(false)).await.expect("bob on");
    c.update_user(ada, &role(Role::Agent))
        .await
        .expect("ada demoted");
    last_admin(c.delete_user(bob).await);
    // A partition without admin users (API keys only) is not held to the rule.
    let prod = s.client(s.prod());
    let pat = create_user(&s, s.prod(), "pat", Role::Agent).await;
    prod.update_user(pat, &disabled(true))
        .await
        .expect("pat off");
    prod.delete_user(pat).await.expect("pat deleted");
}

#[tokio::test]
async fn user_changes_are_audited_without_passwords() {
    let s = server().await;
    let c = s.client(s.lab());
    let id = create_user(&s, s.lab(), "ada", Role::Agent).await;
    sign_in(&s, "ada", PASSWORD).await;
    for patch in [
        disabled(true),
        UserPatch {
            disabled: Some(false),
            role: Some(Role::Partner),
            ..UserPatch::default()
        },
        password(NEW_PASSWORD),
    ] {
        c.update_user(id, &patch).await.expect("changed");
    }
    invalid(c.update_user(id, &password("short")).await, &["password"]);
    c.revoke_user_sessions(id).await.expect("revoked");
    c.delete_user(id).await.expect("deleted");

    let admin_key = c.whoami().await.expect("whoami").id;
    let updates = audit(&c, "user.update").await;
    let details: Vec<&str> = updates.iter().map(|e| e.detail.as_str()).collect();
    assert_eq!(
        details,
        [
            "password reset",
            "disabled=false, role=partner",
            "disabled=true"
        ],
        "one entry per change, newest first; refused changes are not entries"
    );
    let user = id.to_string();
    assert!(updates
        .iter()
        .all(|e| e.object_id.as_deref() == Some(user.as_str())
            && e.actor == Some(admin_key)
            && e.actor_role == Some(Role::Admin)));
    let revokes = audit(&c, "user.sessions.revoke").await;
    assert_eq!(revokes.len(), 1);
    assert_eq!(revokes[0].object_id.as_deref(), Some(user.as_str()));
    assert_eq!(revokes[0].detail, "sessions=0");
    let deletes = audit(&c, "user.delete").await;
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].object_id.as_deref(), Some(user.as_str()));
    assert_eq!(deletes[0].detail, "name=ada, role=partner");

    // Raw HTTP: the whole answer's bytes, members the SDK's AuditView doesn't know included.
    let everything = s.get(s.lab(), "/v1/audit?limit=200").await;
    everything.expect(200);
    let everything = everything.body.to_string();
    for secret in [PASSWORD, NEW_PASSWORD, "argon2"] {
        assert!(
            !everything.contains(secret),
            "the audit log holds no password ({secret})"
        );
    }
}

#[tokio::test]
async fn the_user_endpoints_are_documented() {
    let s = server().await;
    let doc = s.client(s.lab()).openapi().await.expect("openapi");
    let at = |p: &str| doc.pointer(p).unwrap_or(&Value::Null).is_object();
    assert!(at("/paths/~1v1~1users~1{id}/patch"));
    assert!(at("/paths/~1v1~1users~1{id}/delete"));
    assert!(at("/paths/~1v1~1users~1{id}~1sessions/delete"));
    assert!(at("/components/schemas/UserPatch/properties/password"));
    assert!(at("/components/schemas/UserView/properties/disabled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_out_through_one_instance_holds_on_another_at_once() {
    let s = server().await;
    let c = s.client(s.lab());
    let other = SecondInstance::start(&s).await;
    let id = create_user(&s, s.lab(), "ada", Role::Admin).await;
    create_user(&s, s.lab(), "bob", Role::Admin).await;

    // Signed in on the first, used on the second; revoked on the first, refused by the second.
    let session = sign_in(&s, "ada", PASSWORD).await;
    assert_eq!(
        session.status_at(&other.url, &s).await,
        200,
        "sessions live in the database"
    );
    c.revoke_user_sessions(id).await.expect("revoked");
    assert_eq!(
        session.status_at(&other.url, &s).await,
        401,
        "revoked: refused everywhere"
    );

    // Disabled through the second, refused by both and no sign-in on either.
    let session = sign_in(&s, "ada", PASSWORD).await;
    client_at(&other.url, s.lab())
        .update_user(id, &disabled(true))
        .await
        .expect("disabled through the second");
    assert_eq!(session.status(&s).await, 401);
    assert_eq!(session.status_at(&other.url, &s).await, 401);
    sign_in_at(&other.url, &s, "ada", PASSWORD)
        .await
        .expect(401);

    // A demotion through the first holds on a session used through the second.
    c.update_user(id, &disabled(false)).await.expect("enabled");
    let session = sign_in(&s, "ada", PASSWORD).await;
    session
        .call_at(&other.url, &s, Method::GET, "/v1/users", None)
        .await
        .expect(200);
    c.update_user(id, &role(Role::Agent))
        .await
        .expect("demoted");
    session
        .call_at(&other.url, &s, Method::GET, "/v1/users", None)
        .await
        .expect(403);
    other.stop().await;
}
