//! Locking people out (§5, issue 9 item 3): `PATCH /v1/users/{id}`, `DELETE /v1/users/{id}` and
//! `DELETE /v1/users/{id}/sessions` end sessions at once, on every instance; the last enabled
//! admin user stays; every change is audited, never with a password.

use std::sync::Arc;

use contextd_core::crypto::Keyring;
use contextd_core::service::{Context, ContextConfig};
use contextd_server::ServerConfig;
use contextd_store_sqlite::{SqliteKeyStore, SqliteStore};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::support::{Resp, TestServer};

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

/// Creates a lab user with `PASSWORD`; returns its id.
async fn create_user(s: &TestServer, token: &str, name: &str, role: &str) -> String {
    let r = s
        .post(
            token,
            "/v1/users",
            json!({"name": name, "role": role, "password": PASSWORD}),
        )
        .await;
    r.expect(201);
    assert_eq!(r.at("/disabled"), false, "a new user is enabled");
    r.str("/id")
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

fn user_path(id: &str) -> String {
    format!("/v1/users/{id}")
}

async fn audit(s: &TestServer, action: &str) -> Vec<Value> {
    let r = s.get(s.lab(), &format!("/v1/audit?action={action}")).await;
    r.expect(200);
    r.at("/items").as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn disabling_a_user_ends_their_sessions_at_once_and_enabling_lets_them_sign_in_again() {
    let s = server().await;
    let id = create_user(&s, s.lab(), "ada", "agent").await;
    let bystander = create_user(&s, s.lab(), "bea", "agent").await;
    let first = sign_in(&s, "ada", PASSWORD).await;
    let second = sign_in(&s, "ada", PASSWORD).await;
    let other = sign_in(&s, "bea", PASSWORD).await;
    assert_eq!(first.status(&s).await, 200);

    let r = s
        .patch(s.lab(), &user_path(&id), json!({"disabled": true}))
        .await;
    r.expect(200);
    assert_eq!(r.at("/disabled"), true);
    assert_eq!(r.str("/id"), id);
    assert_eq!(first.status(&s).await, 401, "the cookie is refused at once");
    assert_eq!(second.status(&s).await, 401, "every session of the user");
    assert_eq!(other.status(&s).await, 200, "other users keep theirs");
    sign_in_at(&s.url, &s, "ada", PASSWORD).await.expect(401);
    let listed = s.get(s.lab(), "/v1/users").await;
    assert!(listed.body.as_array().is_some_and(|a| a
        .iter()
        .any(|u| u["id"] == id.as_str() && u["disabled"] == true)));

    s.patch(s.lab(), &user_path(&id), json!({"disabled": false}))
        .await
        .expect(200);
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
    let id = create_user(&s, s.lab(), "ada", "agent").await;
    let old = sign_in(&s, "ada", PASSWORD).await;
    s.patch(s.lab(), &user_path(&id), json!({"password": "too short"}))
        .await
        .expect(400);
    assert_eq!(old.status(&s).await, 200, "a refused reset changes nothing");
    sign_in(&s, "ada", PASSWORD).await;

    let r = s
        .patch(s.lab(), &user_path(&id), json!({"password": NEW_PASSWORD}))
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
    let id = create_user(&s, s.lab(), "ada", "agent").await;
    let (one, two) = (
        sign_in(&s, "ada", PASSWORD).await,
        sign_in(&s, "ada", PASSWORD).await,
    );
    let r = s.delete(s.lab(), &format!("/v1/users/{id}/sessions")).await;
    r.expect(200);
    assert_eq!(r.at("/revoked"), 2);
    assert_eq!(one.status(&s).await, 401);
    assert_eq!(two.status(&s).await, 401);
    let again = s.delete(s.lab(), &format!("/v1/users/{id}/sessions")).await;
    assert_eq!(again.at("/revoked"), 0, "nothing left to end");

    let live = sign_in(&s, "ada", PASSWORD).await;
    assert_eq!(live.status(&s).await, 200, "the user may sign in again");
    s.delete(s.lab(), &user_path(&id)).await.expect(204);
    assert_eq!(live.status(&s).await, 401, "deleted: the cookie is refused");
    sign_in_at(&s.url, &s, "ada", PASSWORD).await.expect(401);
    let listed = s.get(s.lab(), "/v1/users").await;
    assert_eq!(listed.body, json!([]), "the user is gone");
    s.delete(s.lab(), &user_path(&id)).await.expect(404);
    s.delete(s.lab(), &format!("/v1/users/{id}/sessions"))
        .await
        .expect(404);
    s.patch(s.lab(), &user_path(&id), json!({"disabled": true}))
        .await
        .expect(404);
}

#[tokio::test]
async fn a_role_change_applies_to_existing_sessions_at_once() {
    let s = server().await;
    let id = create_user(&s, s.lab(), "ada", "admin").await;
    create_user(&s, s.lab(), "bob", "admin").await;
    let session = sign_in(&s, "ada", PASSWORD).await;
    session
        .call(&s, Method::GET, "/v1/users", None)
        .await
        .expect(200);

    let r = s
        .patch(s.lab(), &user_path(&id), json!({"role": "agent"}))
        .await;
    r.expect(200);
    assert_eq!(r.str("/role"), "agent");
    let me = session
        .call(&s, Method::GET, "/v1/sessions/current", None)
        .await;
    me.expect(200);
    assert_eq!(me.str("/role"), "agent", "the session keeps going, demoted");
    session
        .call(&s, Method::GET, "/v1/users", None)
        .await
        .expect(403);

    s.patch(s.lab(), &user_path(&id), json!({"role": "partner"}))
        .await
        .expect(200);
    let customer = s
        .customer(s.lab(), json!({"Context_First_Name": "Petra"}))
        .await;
    let read = session
        .call(&s, Method::GET, &format!("/v1/customers/{customer}"), None)
        .await;
    read.expect(200);
    assert_eq!(
        read.at("/data/Context_First_Name"),
        &Value::Null,
        "as a partner now, PII is withheld"
    );
    s.patch(s.lab(), &user_path(&id), json!({"role": "machine"}))
        .await
        .expect(400);
}

#[tokio::test]
async fn user_changes_are_admin_only_and_scoped_to_the_partition_and_org() {
    let s = server().await;
    let id = create_user(&s, s.lab(), "ada", "agent").await;
    let mut keys = Vec::new();
    for role in ["agent", "machine", "partner"] {
        let r = s
            .post(s.lab(), "/v1/keys", json!({"name": role, "role": role}))
            .await;
        keys.push(r.str("/token"));
    }
    let agent = sign_in(&s, "ada", PASSWORD).await;
    for token in &keys {
        s.patch(token, &user_path(&id), json!({"disabled": true}))
            .await
            .expect(403);
        s.delete(token, &format!("/v1/users/{id}/sessions"))
            .await
            .expect(403);
        s.delete(token, &user_path(&id)).await.expect(403);
    }
    agent
        .call(
            &s,
            Method::PATCH,
            &user_path(&id),
            Some(json!({"role": "admin"})),
        )
        .await
        .expect(403);
    agent
        .call(&s, Method::DELETE, &user_path(&id), None)
        .await
        .expect(403);

    // Another partition's admin, another org's admin: the user does not exist for them.
    let other = s
        .context
        .create_org("other", &s.url)
        .await
        .expect("second org");
    for token in [s.prod(), other.lab_admin_token.as_str()] {
        s.patch(token, &user_path(&id), json!({"disabled": true}))
            .await
            .expect(404);
        s.delete(token, &format!("/v1/users/{id}/sessions"))
            .await
            .expect(404);
        s.delete(token, &user_path(&id)).await.expect(404);
    }
    assert_eq!(agent.status(&s).await, 200, "nothing changed");

    // Bad input: a clear 400, nothing changed.
    for body in [
        json!({}),
        json!({"disabled": "yes"}),
        json!({"name": "renamed"}),
        json!({"role": "root"}),
        json!({"role": "machine", "password": "short"}),
    ] {
        let r = s.patch(s.lab(), &user_path(&id), body.clone()).await;
        r.expect(400);
        assert!(!r.str("/detail").is_empty(), "{body}: {}", r.body);
    }
    let both = s
        .patch(
            s.lab(),
            &user_path(&id),
            json!({"role": "machine", "password": "short"}),
        )
        .await;
    assert_eq!(
        both.at("/errors").as_array().map(Vec::len),
        Some(2),
        "each bad member named: {}",
        both.body
    );
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
    let ada = create_user(&s, s.lab(), "ada", "admin").await;
    let bob = create_user(&s, s.lab(), "bob", "admin").await;
    let session = sign_in(&s, "ada", PASSWORD).await;

    // Two admins: one may go.
    s.patch(s.lab(), &user_path(&bob), json!({"disabled": true}))
        .await
        .expect(200);
    for (method, body) in [
        (Method::PATCH, Some(json!({"disabled": true}))),
        (Method::PATCH, Some(json!({"role": "agent"}))),
        (Method::DELETE, None),
    ] {
        let r = s
            .call(
                method.clone(),
                &user_path(&ada),
                Some(s.lab()),
                body.as_ref(),
            )
            .await;
        r.expect(409);
        assert!(
            r.str("/detail").contains("last enabled admin"),
            "{method}: {}",
            r.body
        );
    }
    // Not even by herself, through her own session.
    session
        .call(
            &s,
            Method::PATCH,
            &user_path(&ada),
            Some(json!({"disabled": true})),
        )
        .await
        .expect(409);
    assert_eq!(session.status(&s).await, 200, "refusals change nothing");
    // A password reset of the last admin is allowed (and ends her sessions).
    s.patch(s.lab(), &user_path(&ada), json!({"password": NEW_PASSWORD}))
        .await
        .expect(200);
    assert_eq!(session.status(&s).await, 401);

    // With bob enabled again, ada may be demoted, and then bob is the last one.
    s.patch(s.lab(), &user_path(&bob), json!({"disabled": false}))
        .await
        .expect(200);
    s.patch(s.lab(), &user_path(&ada), json!({"role": "agent"}))
        .await
        .expect(200);
    s.delete(s.lab(), &user_path(&bob)).await.expect(409);
    // A partition without admin users (API keys only) is not held to the rule.
    let prod = create_user(&s, s.prod(), "pat", "agent").await;
    s.patch(s.prod(), &user_path(&prod), json!({"disabled": true}))
        .await
        .expect(200);
    s.delete(s.prod(), &user_path(&prod)).await.expect(204);
}

#[tokio::test]
async fn user_changes_are_audited_without_passwords() {
    let s = server().await;
    let id = create_user(&s, s.lab(), "ada", "agent").await;
    sign_in(&s, "ada", PASSWORD).await;
    for body in [
        json!({"disabled": true}),
        json!({"disabled": false, "role": "partner"}),
        json!({"password": NEW_PASSWORD}),
    ] {
        s.patch(s.lab(), &user_path(&id), body).await.expect(200);
    }
    s.patch(s.lab(), &user_path(&id), json!({"password": "short"}))
        .await
        .expect(400);
    let revoke = s.delete(s.lab(), &format!("/v1/users/{id}/sessions")).await;
    revoke.expect(200);
    s.delete(s.lab(), &user_path(&id)).await.expect(204);

    let admin_key = s.get(s.lab(), "/v1/sessions/current").await.str("/id");
    let updates = audit(&s, "user.update").await;
    let details: Vec<&str> = updates
        .iter()
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert_eq!(
        details,
        [
            "password reset",
            "disabled=false, role=partner",
            "disabled=true"
        ],
        "one entry per change, newest first; refused changes are not entries"
    );
    assert!(updates.iter().all(|e| e["objectId"] == id.as_str()
        && e["actor"] == admin_key.as_str()
        && e["actorRole"] == "admin"));
    let revokes = audit(&s, "user.sessions.revoke").await;
    assert_eq!(revokes.len(), 1);
    assert_eq!(revokes[0]["objectId"], id.as_str());
    assert_eq!(revokes[0]["detail"], "sessions=0");
    let deletes = audit(&s, "user.delete").await;
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0]["objectId"], id.as_str());
    assert_eq!(deletes[0]["detail"], "name=ada, role=partner");

    let everything = s.get(s.lab(), "/v1/audit?limit=200").await.body.to_string();
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
    let r = s.get(s.lab(), "/v1/openapi.json").await;
    r.expect(200);
    assert!(r.at("/paths/~1v1~1users~1{id}/patch").is_object());
    assert!(r.at("/paths/~1v1~1users~1{id}/delete").is_object());
    assert!(r
        .at("/paths/~1v1~1users~1{id}~1sessions/delete")
        .is_object());
    assert!(r
        .at("/components/schemas/UserPatch/properties/password")
        .is_object());
    assert!(r
        .at("/components/schemas/UserView/properties/disabled")
        .is_object());
}

/// A second server over the same SQLite files, as a second instance of a deployment.
struct SecondInstance {
    url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl SecondInstance {
    async fn start(s: &TestServer) -> Self {
        let store =
            SqliteStore::open(&s.dir.path().join("contextd.db")).expect("open the same data");
        let keys = SqliteKeyStore::open(&s.dir.path().join("keys.db")).expect("open the same keys");
        let keyring = Keyring::new(s.master.clone(), Arc::new(keys), 1000);
        let context = Arc::new(Context::new(
            Arc::new(store),
            keyring,
            ContextConfig::default(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(contextd_server::serve(
            listener,
            context,
            ServerConfig {
                sign_in_per_minute: 0,
                ..ServerConfig::default()
            },
            async {
                let _ = rx.await;
            },
        ));
        Self {
            url,
            shutdown: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_out_through_one_instance_holds_on_another_at_once() {
    let s = server().await;
    let other = SecondInstance::start(&s).await;
    let id = create_user(&s, s.lab(), "ada", "admin").await;
    create_user(&s, s.lab(), "bob", "admin").await;

    // Signed in on the first, used on the second; revoked on the first, refused by the second.
    let session = sign_in(&s, "ada", PASSWORD).await;
    assert_eq!(
        session.status_at(&other.url, &s).await,
        200,
        "sessions live in the database"
    );
    s.delete(s.lab(), &format!("/v1/users/{id}/sessions"))
        .await
        .expect(200);
    assert_eq!(
        session.status_at(&other.url, &s).await,
        401,
        "revoked: refused everywhere"
    );

    // Disabled through the second, refused by both and no sign-in on either.
    let session = sign_in(&s, "ada", PASSWORD).await;
    let r = s
        .http
        .patch(format!("{}{}", other.url, user_path(&id)))
        .bearer_auth(s.lab())
        .json(&json!({"disabled": true}))
        .send()
        .await
        .expect("sent");
    TestServer::read(r).await.expect(200);
    assert_eq!(session.status(&s).await, 401);
    assert_eq!(session.status_at(&other.url, &s).await, 401);
    sign_in_at(&other.url, &s, "ada", PASSWORD)
        .await
        .expect(401);

    // A demotion through the first holds on a session used through the second.
    s.patch(s.lab(), &user_path(&id), json!({"disabled": false}))
        .await
        .expect(200);
    let session = sign_in(&s, "ada", PASSWORD).await;
    session
        .call_at(&other.url, &s, Method::GET, "/v1/users", None)
        .await
        .expect(200);
    s.patch(s.lab(), &user_path(&id), json!({"role": "agent"}))
        .await
        .expect(200);
    session
        .call_at(&other.url, &s, Method::GET, "/v1/users", None)
        .await
        .expect(403);
    other.stop().await;
}
