//! Access control (§5): roles on every endpoint, partner grants, sessions and CSRF, API keys,
//! the right to be forgotten, export, the audit log and abuse limits.

use std::sync::Arc;
use std::time::Duration;

use contextd_core::auth::{Principal, PrincipalKind, Role};
use contextd_core::crypto::Keyring;
use contextd_core::service::{Context, ContextConfig};
use contextd_core::{CoreError, Kind, ObjectId, Scope};
use contextd_server::ServerConfig;
use contextd_store_sqlite::{SqliteKeyStore, SqliteStore};
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::TestServer;

async fn key(s: &TestServer, role: &str) -> (String, String) {
    let (id, token) = s.key(role).await;
    assert!(token.starts_with("ctxd_"), "the token is shown on creation");
    (id, token)
}

/// Every endpoint × every role: allowed roles never get 403, the others always do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_matrix_covers_every_endpoint() {
    let s = TestServer::start().await;
    let mut tokens = vec![("admin", s.lab().to_owned())];
    for role in ["agent", "machine", "partner"] {
        tokens.push((role, key(&s, role).await.1));
    }
    let all: &[&str] = &["admin", "agent", "machine", "partner"];
    let staff: &[&str] = &["admin", "agent", "machine"];
    let admin: &[&str] = &["admin"];
    s.post(
        s.lab(),
        "/v1/fields",
        json!({"id": "matrix_f", "dataType": "string", "classification": "UNENCRYPTED"}),
    )
    .await
    .expect(201);
    s.post(
        s.lab(),
        "/v1/fieldsets",
        json!({"id": "matrix_s", "fields": ["matrix_f"]}),
    )
    .await
    .expect(201);
    for (role, token) in &tokens {
        let customer = s
            .customer(s.lab(), json!({"Context_First_Name": "Matrix"}))
            .await;
        let activity = s
            .post(
                s.lab(),
                "/v1/activities",
                json!({"customerId": customer, "mediaType": "web"}),
            )
            .await
            .str("/id");
        let flush = s
            .post(s.lab(), "/v1/details/flush", json!({}))
            .await
            .str("/id");
        let (other_key, _) = key(&s, "agent").await;
        let partner_key = key(&s, "partner").await.0;
        let grant = s
            .post(
                s.lab(),
                "/v1/grants",
                json!({"principal": partner_key, "expiresAt": "2099-01-01T00:00:00Z"}),
            )
            .await
            .str("/id");
        let person = s
            .post(
                s.lab(),
                "/v1/users",
                json!({"name": format!("p_{role}"), "role": "agent", "password": "correct horse battery"}),
            )
            .await
            .str("/id");
        let cases: Vec<(Method, String, Option<Value>, &[&str])> = vec![
            (Method::POST, "/v1/customers".into(), Some(json!({})), all),
            (Method::GET, format!("/v1/customers/{customer}"), None, all),
            (
                Method::PUT,
                format!("/v1/customers/{customer}"),
                Some(json!({"version": 1})),
                all,
            ),
            (
                Method::PATCH,
                format!("/v1/customers/{customer}"),
                Some(json!({"tags": ["x"]})),
                all,
            ),
            (
                Method::DELETE,
                format!("/v1/activities/{activity}"),
                None,
                all,
            ),
            (
                Method::POST,
                "/v1/customers/search".into(),
                Some(json!({})),
                all,
            ),
            (
                Method::GET,
                format!("/v1/customers/{customer}/timeline"),
                None,
                all,
            ),
            (
                Method::POST,
                "/v1/requests/flush".into(),
                Some(json!({})),
                staff,
            ),
            (Method::GET, format!("/v1/flush/{flush}"), None, all),
            (Method::GET, "/v1/fields".into(), None, all),
            (Method::GET, "/v1/fields/matrix_f".into(), None, all),
            (
                Method::POST,
                "/v1/fields".into(),
                Some(
                    json!({"id": format!("f_{role}"), "dataType": "string", "classification": "PII"}),
                ),
                admin,
            ),
            (
                Method::PUT,
                "/v1/fields/matrix_f".into(),
                Some(
                    json!({"id": "matrix_f", "dataType": "string", "classification": "UNENCRYPTED", "description": role}),
                ),
                admin,
            ),
            (Method::GET, "/v1/fieldsets".into(), None, all),
            (Method::GET, "/v1/fieldsets/matrix_s".into(), None, all),
            (
                Method::POST,
                "/v1/fieldsets".into(),
                Some(json!({"id": format!("s_{role}"), "fields": ["matrix_f"]})),
                admin,
            ),
            (
                Method::PUT,
                "/v1/fieldsets/matrix_s".into(),
                Some(json!({"id": "matrix_s", "fields": ["matrix_f"], "description": role})),
                admin,
            ),
            (
                Method::DELETE,
                format!("/v1/fieldsets/s_{role}"),
                None,
                admin,
            ),
            (Method::DELETE, format!("/v1/fields/f_{role}"), None, admin),
            (Method::GET, "/v1/status".into(), None, all),
            (Method::GET, "/v1/sessions/current".into(), None, all),
            (
                Method::POST,
                "/v1/users".into(),
                Some(
                    json!({"name": format!("u_{role}"), "role": "agent", "password": "correct horse battery"}),
                ),
                admin,
            ),
            (Method::GET, "/v1/users".into(), None, admin),
            (
                Method::PATCH,
                format!("/v1/users/{person}"),
                Some(json!({"role": "partner"})),
                admin,
            ),
            (
                Method::DELETE,
                format!("/v1/users/{person}/sessions"),
                None,
                admin,
            ),
            (Method::DELETE, format!("/v1/users/{person}"), None, admin),
            (
                Method::POST,
                "/v1/keys".into(),
                Some(json!({"name": "k", "role": "agent"})),
                admin,
            ),
            (Method::GET, "/v1/keys".into(), None, admin),
            (Method::DELETE, format!("/v1/keys/{other_key}"), None, admin),
            (
                Method::POST,
                "/v1/grants".into(),
                Some(json!({"principal": partner_key, "expiresAt": "2099-01-01T00:00:00Z"})),
                admin,
            ),
            (Method::DELETE, format!("/v1/grants/{grant}"), None, admin),
            (Method::GET, "/v1/audit".into(), None, admin),
            (
                Method::GET,
                format!("/v1/customers/{customer}/export"),
                None,
                admin,
            ),
            (
                Method::POST,
                format!("/v1/customers/{customer}/erase"),
                None,
                admin,
            ),
        ];
        for (method, path, body, allowed) in cases {
            let r = s
                .call(method.clone(), &path, Some(token), body.as_ref())
                .await;
            assert_ne!(
                r.status, 401,
                "{role} {method} {path}: the credential is valid"
            );
            if allowed.contains(role) {
                assert!(
                    r.status != 403 && r.status.as_u16() < 500,
                    "{role} may {method} {path}, got {} {}",
                    r.status,
                    r.body
                );
            } else {
                r.expect(403);
            }
        }
    }
}

#[tokio::test]
async fn partners_see_sealed_values_only_under_an_unexpired_grant() {
    let s = TestServer::start().await;
    let (partner_id, partner) = key(&s, "partner").await;
    let customer = s
        .customer(s.lab(), json!({"Context_First_Name": "Petra", "Context_Mobile_Phone": "555 0100", "Context_Preferred_Language": "de_DE"}))
        .await;
    let path = format!("/v1/customers/{customer}");

    let hidden = s.get(&partner, &path).await;
    hidden.expect(200);
    assert_eq!(hidden.at("/data/Context_First_Name"), &Value::Null);
    assert_eq!(
        hidden.at("/data/Context_Preferred_Language"),
        "de_DE",
        "UNENCRYPTED values are shown"
    );
    let withheld: Vec<&str> = hidden
        .at("/withheld")
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(withheld, ["Context_First_Name", "Context_Mobile_Phone"]);
    s.post(
        &partner,
        "/v1/customers/search",
        json!({"terms": {"Context_Mobile_Phone": "5550100"}}),
    )
    .await
    .expect(400);
    let by_clear = s
        .post(
            &partner,
            "/v1/customers/search",
            json!({"terms": {"Context_Preferred_Language": "de_DE"}}),
        )
        .await;
    assert_eq!(by_clear.at("/total"), 1);

    // A partner's write keeps the values it was not shown, and its answer withholds them too.
    let patched = s
        .patch(
            &partner,
            &path,
            json!({"data": {"Context_Preferred_Language": "fr_FR"}}),
        )
        .await;
    patched.expect(200);
    assert_eq!(patched.at("/data/Context_First_Name"), &Value::Null);
    let full = s.get(s.lab(), &path).await;
    assert_eq!(full.str("/data/Context_First_Name"), "Petra");
    assert_eq!(full.str("/data/Context_Preferred_Language"), "fr_FR");

    // A grant lifts the withholding at once; revoking it restores it at once.
    let grant = s
        .post(
            s.lab(),
            "/v1/grants",
            json!({"principal": partner_id, "expiresAt": "2099-01-01T00:00:00Z"}),
        )
        .await;
    grant.expect(201);
    let shown = s.get(&partner, &path).await;
    assert_eq!(shown.str("/data/Context_First_Name"), "Petra");
    assert!(
        shown.at("/withheld").is_null(),
        "nothing withheld under a grant"
    );
    assert_eq!(
        s.post(
            &partner,
            "/v1/customers/search",
            json!({"terms": {"Context_Mobile_Phone": "5550100"}})
        )
        .await
        .at("/total"),
        1
    );
    s.delete(s.lab(), &format!("/v1/grants/{}", grant.str("/id")))
        .await
        .expect(204);
    assert_eq!(
        s.get(&partner, &path).await.at("/data/Context_First_Name"),
        &Value::Null
    );

    // An expired grant is no grant.
    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(1200)).to_rfc3339();
    s.post(
        s.lab(),
        "/v1/grants",
        json!({"principal": partner_id, "expiresAt": soon}),
    )
    .await
    .expect(201);
    assert_eq!(
        s.get(&partner, &path).await.str("/data/Context_First_Name"),
        "Petra"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        s.get(&partner, &path).await.at("/data/Context_First_Name"),
        &Value::Null
    );

    // Grants are for partners of this partition only.
    let (agent_id, _) = key(&s, "agent").await;
    s.post(
        s.lab(),
        "/v1/grants",
        json!({"principal": agent_id, "expiresAt": "2099-01-01T00:00:00Z"}),
    )
    .await
    .expect(400);
    s.post(
        s.prod(),
        "/v1/grants",
        json!({"principal": partner_id, "expiresAt": "2099-01-01T00:00:00Z"}),
    )
    .await
    .expect(400);
    s.post(
        s.lab(),
        "/v1/grants",
        json!({"principal": partner_id, "expiresAt": "2001-01-01T00:00:00Z"}),
    )
    .await
    .expect(400);
}

#[tokio::test]
async fn api_keys_are_shown_once_listed_without_secrets_and_revoked_at_once() {
    let s = TestServer::start().await;
    let (id, token) = key(&s, "agent").await;
    s.get(&token, "/v1/status").await.expect(200);
    let list = s.get(s.lab(), "/v1/keys").await;
    list.expect(200);
    let text = list.body.to_string();
    assert!(
        !text.contains(&token) && !text.contains("secret"),
        "listing shows no secrets"
    );
    assert!(list.body.as_array().is_some_and(|a| a
        .iter()
        .any(|k| k["id"] == id.as_str() && k["role"] == "agent")));
    s.delete(s.lab(), &format!("/v1/keys/{id}"))
        .await
        .expect(204);
    s.get(&token, "/v1/status").await.expect(401);
    s.delete(s.lab(), &format!("/v1/keys/{id}"))
        .await
        .expect(404);
    s.post(
        s.lab(),
        "/v1/keys",
        json!({"name": "old", "role": "agent", "expiresAt": "2001-01-01T00:00:00Z"}),
    )
    .await
    .expect(400);
    let short = s.post(s.lab(), "/v1/keys", json!({"name": "short", "role": "agent", "expiresAt": (chrono::Utc::now() + chrono::Duration::milliseconds(800)).to_rfc3339()})).await;
    short.expect(201);
    s.get(&short.str("/token"), "/v1/status").await.expect(200);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    s.get(&short.str("/token"), "/v1/status").await.expect(401);
    // A lab admin's keys are lab keys.
    let r = s.get(&token, "/v1/sessions/current").await;
    assert_eq!(r.status, 401);
    let lab_agent = key(&s, "agent").await.1;
    assert_eq!(
        s.get(&lab_agent, "/v1/sessions/current")
            .await
            .str("/partition"),
        "lab"
    );
}

#[tokio::test]
async fn sessions_use_strict_http_only_cookies_csrf_tokens_and_server_side_sign_out() {
    let s = TestServer::start_with(
        ContextConfig::default(),
        ServerConfig {
            sign_in_per_minute: 4,
            ..ServerConfig::default()
        },
    )
    .await;
    s.post(
        s.lab(),
        "/v1/users",
        json!({"name": "ada", "role": "agent", "password": "short"}),
    )
    .await
    .expect(400);
    let user = s
        .post(
            s.lab(),
            "/v1/users",
            json!({"name": "ada", "role": "agent", "password": "correct horse battery"}),
        )
        .await;
    user.expect(201);
    assert!(
        user.at("/password").is_null() && !user.body.to_string().contains("argon2"),
        "no password material is returned"
    );
    s.post(
        s.lab(),
        "/v1/users",
        json!({"name": "ada", "role": "agent", "password": "correct horse battery"}),
    )
    .await
    .expect(409);

    let sign_in = |password: &'static str| {
        let s = &s;
        async move {
            let r = s
                .http
                .post(format!("{}/v1/sessions", s.url))
                .json(&json!({"partition": "lab", "name": "ada", "password": password}))
                .send()
                .await
                .expect("sent");
            TestServer::read(r).await
        }
    };
    sign_in("wrong password!").await.expect(401);
    let ok = sign_in("correct horse battery").await;
    ok.expect(201);
    let cookie = ok
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "cookie flags: {cookie}"
    );
    let session = cookie.split(';').next().unwrap_or("").to_owned();
    let csrf = ok.str("/csrfToken");
    let with_cookie = |method: Method, path: &str, csrf: Option<&str>, body: Option<Value>| {
        let mut req = s
            .http
            .request(method, format!("{}{path}", s.url))
            .header("cookie", session.clone());
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move { TestServer::read(req.send().await.expect("sent")).await }
    };
    let me = with_cookie(Method::GET, "/v1/sessions/current", None, None).await;
    me.expect(200);
    assert_eq!(me.str("/role"), "agent");
    with_cookie(Method::POST, "/v1/customers", None, Some(json!({})))
        .await
        .expect(403);
    with_cookie(
        Method::POST,
        "/v1/customers",
        Some("forged"),
        Some(json!({})),
    )
    .await
    .expect(403);
    let created = with_cookie(Method::POST, "/v1/customers", Some(&csrf), Some(json!({}))).await;
    created.expect(201);
    assert_eq!(
        created.at("/contributors/0/type"),
        "user",
        "people contribute as users"
    );
    with_cookie(Method::DELETE, "/v1/sessions/current", None, None)
        .await
        .expect(204);
    with_cookie(Method::GET, "/v1/sessions/current", None, None)
        .await
        .expect(401);

    // Throttling: the fifth attempt within the minute is refused, right password or not.
    for _ in 0..2 {
        let r = sign_in("wrong password!").await;
        assert_eq!(r.status, 401);
    }
    let throttled = sign_in("correct horse battery").await;
    throttled.expect(429);
    assert!(throttled.headers.get("retry-after").is_some());
    let failures = s.get(s.lab(), "/v1/audit?action=signin.failed").await;
    assert_eq!(failures.at("/items").as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn erase_shreds_the_customer_key_so_old_copies_cannot_be_read() {
    let s = TestServer::start().await;
    let t = s.lab();
    let customer = s
        .customer(
            t,
            json!({"Context_First_Name": "Gone", "Context_Home_Email": "gone@example.com"}),
        )
        .await;
    let request = s.post(t, "/v1/requests", json!({"customerId": customer, "fieldsets": ["cisco.base.request"], "data": {"Context_Title": "Old case"}})).await.str("/id");
    let activity = s.post(t, "/v1/activities", json!({"parentId": request, "mediaType": "email", "fieldsets": ["cisco.base.pod"], "data": {"Context_Notes": "secret note"}})).await.str("/id");
    let detail = s.post(t, "/v1/details", json!({"parentId": activity, "detailType": "comment", "fieldsets": ["cisco.base.comment"], "data": {"Context_Comment": "c"}})).await.str("/id");
    let bystander = s.customer(t, json!({"Context_First_Name": "Stays"})).await;

    let export = s.get(t, &format!("/v1/customers/{customer}/export")).await;
    export.expect(200);
    assert_eq!(
        export.str("/customer/data/Context_Home_Email"),
        "gone@example.com"
    );
    assert_eq!(export.at("/objects").as_array().map(Vec::len), Some(3));

    // A "backup": copies of the data and key databases taken before the erase.
    let backup = tempfile::tempdir().expect("tempdir");
    for f in ["contextd.db", "contextd.db-wal", "keys.db"] {
        let from = s.dir.path().join(f);
        if from.exists() {
            std::fs::copy(&from, backup.path().join(f)).expect("copy");
        }
    }
    s.post(
        s.prod(),
        &format!("/v1/customers/{customer}/erase"),
        json!({}),
    )
    .await
    .expect(404);
    let erased = s
        .post(t, &format!("/v1/customers/{customer}/erase"), json!({}))
        .await;
    erased.expect(200);
    assert_eq!(erased.at("/erased"), 4);
    for (kind, id) in [
        ("customers", &customer),
        ("requests", &request),
        ("activities", &activity),
        ("details", &detail),
    ] {
        s.get(t, &format!("/v1/{kind}/{id}")).await.expect(404);
    }
    s.get(t, &format!("/v1/customers/{bystander}"))
        .await
        .expect(200);
    // Erase is idempotent: a repeat is answered with what was erased.
    let repeated = s
        .post(t, &format!("/v1/customers/{customer}/erase"), json!({}))
        .await;
    repeated.expect(200);
    assert_eq!(repeated.at("/erased"), 4);

    let read_from = |keys_dir: &std::path::Path| {
        let store = SqliteStore::open(&backup.path().join("contextd.db")).expect("open backup");
        let keys = SqliteKeyStore::open(&keys_dir.join("keys.db")).expect("open keys");
        Context::new(
            Arc::new(store),
            Keyring::new(s.master.clone(), Arc::new(keys), 10),
            ContextConfig::default(),
        )
    };
    let admin = Principal {
        id: uuid::Uuid::now_v7(),
        scope: Scope {
            org: s.org.org_id,
            partition: contextd_core::Partition::Lab,
        },
        role: Role::Admin,
        kind: PrincipalKind::ApiKey,
        granted: false,
    };
    let id = ObjectId::parse(&customer).expect("id");
    // With the old key store the backup is readable: the test can tell the difference…
    let with_old_keys = read_from(backup.path())
        .get(&admin, Kind::Customer, id)
        .await
        .expect("readable before erase");
    assert_eq!(with_old_keys.data["Context_First_Name"], "Gone");
    // …with the live key store, the customer's key is gone and the backup's values are noise.
    match read_from(s.dir.path())
        .get(&admin, Kind::Customer, id)
        .await
    {
        Err(CoreError::Keys(_)) => {}
        other => panic!("the backup must be unreadable after erase, got {other:?}"),
    }
    let erase_audit = s
        .get(
            t,
            &format!("/v1/audit?action=customer.erase&objectId={customer}"),
        )
        .await;
    assert_eq!(
        erase_audit.at("/items").as_array().map(Vec::len),
        Some(2),
        "the erase and its repeat"
    );
}

#[tokio::test]
async fn audit_log_records_pii_reads_searches_and_admin_actions_without_values() {
    let s = TestServer::start().await;
    let t = s.lab();
    let (agent_id, agent) = key(&s, "agent").await;
    let customer = s.customer(t, json!({"Context_First_Name": "Audra", "Context_Mobile_Phone": "5551234567", "Context_Preferred_Language": "en_US"})).await;
    s.get(&agent, &format!("/v1/customers/{customer}"))
        .await
        .expect(200);
    s.post(
        &agent,
        "/v1/customers/search",
        json!({"terms": {"Context_Mobile_Phone": "555-123-4567"}}),
    )
    .await
    .expect(200);

    let reads = s
        .get(t, &format!("/v1/audit?action=pii.read&actor={agent_id}"))
        .await;
    reads.expect(200);
    let items = reads.at("/items").as_array().cloned().unwrap_or_default();
    assert_eq!(
        items.len(),
        2,
        "one for the read, one for the search result"
    );
    assert_eq!(items[0]["objectId"], customer.as_str());
    assert_eq!(
        items[0]["fields"],
        json!(["Context_First_Name", "Context_Mobile_Phone"])
    );
    // A page is audited once per customer it reveals, not once per object.
    for note in ["first call", "second call", "third call"] {
        s.post(
            t,
            "/v1/activities",
            json!({"customerId": customer, "mediaType": "voice", "fieldsets": ["cisco.base.pod"],
                   "data": {"Context_Notes": note}}),
        )
        .await
        .expect(201);
    }
    s.get(&agent, &format!("/v1/customers/{customer}/timeline"))
        .await
        .expect(200);
    let reads = s
        .get(t, &format!("/v1/audit?action=pii.read&actor={agent_id}"))
        .await;
    let items = reads.at("/items").as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 3, "one more entry for the whole timeline page");
    assert_eq!(items[0]["objectId"], customer.as_str());
    assert_eq!(items[0]["objectType"], "customer");
    assert_eq!(items[0]["fields"], json!(["Context_Notes"]));
    assert_eq!(items[0]["detail"], "timeline: 3 objects");
    // A search page naming two customers is one entry for each.
    let twin = s
        .customer(
            t,
            json!({"Context_First_Name": "Audra", "Context_Preferred_Language": "en_US"}),
        )
        .await;
    s.post(
        &agent,
        "/v1/customers/search",
        json!({"terms": {"Context_First_Name": "audra"}}),
    )
    .await
    .expect(200);
    let reads = s
        .get(t, &format!("/v1/audit?action=pii.read&actor={agent_id}"))
        .await;
    let items = reads.at("/items").as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 5, "two more entries, one per customer found");
    let mut named: Vec<&str> = items[..2]
        .iter()
        .filter_map(|e| e["objectId"].as_str())
        .collect();
    named.sort_unstable();
    let mut expected = vec![customer.as_str(), twin.as_str()];
    expected.sort_unstable();
    assert_eq!(named, expected);
    assert!(items[..2].iter().all(|e| e["detail"] == "search: 1 object"));

    let searches = s.get(t, "/v1/audit?action=pii.search").await;
    assert_eq!(
        searches.at("/items/0/fields"),
        &json!(["Context_First_Name"])
    );
    assert_eq!(
        searches.at("/items/1/fields"),
        &json!(["Context_Mobile_Phone"])
    );
    let admin_actions = s.get(t, "/v1/audit?action=key.create").await;
    assert_eq!(admin_actions.at("/items/0/objectId"), agent_id.as_str());
    let everything = s.get(t, "/v1/audit?limit=200").await.body.to_string();
    for value in ["Audra", "5551234567", "555-123-4567"] {
        assert!(
            !everything.contains(value),
            "the audit log holds no values ({value})"
        );
    }
    // Paging, and the log can't be changed through the API.
    let first = s.get(t, "/v1/audit?limit=1").await;
    let second = s
        .get(
            t,
            &format!("/v1/audit?limit=1&cursor={}", first.str("/nextCursor")),
        )
        .await;
    assert_ne!(first.at("/items/0/id"), second.at("/items/0/id"));
    s.call(Method::DELETE, "/v1/audit", Some(t), None)
        .await
        .expect(405);
    s.get(t, "/v1/audit?limit=0").await.expect(400);
    s.get(&agent, "/v1/audit").await.expect(403);
}

#[tokio::test]
async fn abuse_limits_answer_429_431_and_400() {
    let config = ServerConfig {
        rate_limit_per_second: 1,
        rate_limit_burst: 5,
        ..ServerConfig::default()
    };
    let s = TestServer::start_with(ContextConfig::default(), config).await;
    let other = s.prod().to_owned();
    let mut limited = None;
    for _ in 0..20 {
        let r = s.get(s.lab(), "/v1/status").await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let limited = limited.expect("the sixth quick request is limited");
    limited.expect(429);
    let retry: u64 = limited
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!(retry >= 1);
    s.get(&other, "/v1/status").await.expect(200);

    let huge = "x".repeat(20 * 1024);
    let r = s
        .http
        .get(format!("{}/v1/ping", s.url))
        .header("x-padding", huge)
        .send()
        .await
        .expect("sent");
    assert_eq!(TestServer::read(r).await.expect(431).status, 431);
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    let r = s
        .raw(
            Method::POST,
            "/v1/customers/search",
            &other,
            "application/json",
            format!("{{\"terms\": {{\"x\": {deep}}}}}").into_bytes(),
        )
        .await;
    r.expect(400);
    assert!(r.str("/detail").contains("nested"));
}

#[tokio::test]
async fn search_limits_are_configurable() {
    let limits = contextd_core::search::SearchLimits {
        max_terms: 1,
        max_values: 2,
        max_value_chars: 6,
    };
    let s = TestServer::start_with(
        ContextConfig {
            search_limits: limits,
            ..ContextConfig::default()
        },
        ServerConfig::default(),
    )
    .await;
    let t = s.lab();
    s.post(
        t,
        "/v1/customers/search",
        json!({"terms": {"state": "active"}}),
    )
    .await
    .expect(200);
    s.post(
        t,
        "/v1/customers/search",
        json!({"terms": {"state": "active", "tags": "x"}}),
    )
    .await
    .expect(400);
    s.post(
        t,
        "/v1/customers/search",
        json!({"terms": {"tags": ["a", "b", "c"]}}),
    )
    .await
    .expect(400);
    s.post(
        t,
        "/v1/customers/search",
        json!({"terms": {"tags": "abcdefg"}}),
    )
    .await
    .expect(400);
    s.post(
        t,
        "/v1/customers/search",
        json!({"terms": {"tags": ["abcdef", "x"]}}),
    )
    .await
    .expect(200);
}

#[tokio::test]
async fn partners_change_clear_fields_and_learn_nothing_of_withheld_values() {
    let s = TestServer::start().await;
    let (_, partner) = key(&s, "partner").await;
    for field in [
        json!({"id": "p_clear", "dataType": "string", "classification": "UNENCRYPTED"}),
        json!({"id": "p_secret", "dataType": "string", "classification": "PII", "maxLength": 100}),
    ] {
        s.post(s.lab(), "/v1/fields", field).await.expect(201);
    }
    s.post(
        s.lab(),
        "/v1/fieldsets",
        json!({"id": "p_set", "fields": ["p_clear", "p_secret"]}),
    )
    .await
    .expect(201);
    let secret = "s".repeat(60);
    let created = s
        .post(
            s.lab(),
            "/v1/customers",
            json!({"fieldsets": ["cisco.base.customer", "p_set"],
                   "data": {"Context_First_Name": "Wanda", "Context_Preferred_Language": "en_US",
                            "p_clear": "visible", "p_secret": secret}}),
        )
        .await;
    created.expect(201);
    let path = format!("/v1/customers/{}", created.str("/id"));

    // A partner removes a clear value (it was put back before) and sets another.
    s.patch(
        &partner,
        &path,
        json!({"data": {"Context_Preferred_Language": null, "p_clear": "changed"}}),
    )
    .await
    .expect(200);
    let full = s.get(s.lab(), &path).await;
    assert_eq!(full.at("/data/Context_Preferred_Language"), &Value::Null);
    assert_eq!(full.str("/data/p_clear"), "changed");
    assert_eq!(
        full.str("/data/Context_First_Name"),
        "Wanda",
        "sealed values kept"
    );
    assert_eq!(full.str("/data/p_secret"), secret);

    // A too-large answer doesn't tell a partner how big the withheld values are.
    let big = s
        .patch(
            &partner,
            &path,
            json!({"data": {"p_clear": "x".repeat(262_100)}}),
        )
        .await;
    assert_eq!(big.status.as_u16(), 413, "the object is over 256 KB");
    let detail = big.str("/detail");
    assert!(
        !detail.contains("the object is"),
        "no size of the object: {detail}"
    );
    let admin_big = s
        .patch(
            s.lab(),
            &path,
            json!({"data": {"p_clear": "x".repeat(262_100)}}),
        )
        .await;
    assert_eq!(admin_big.status.as_u16(), 413);
    assert!(admin_big.str("/detail").contains("bytes serialized;"));

    // A withheld value that no longer validates is not described to the partner.
    let mut field = s.get(s.lab(), "/v1/fields/p_secret").await.body;
    field["maxLength"] = json!(10);
    s.put(s.lab(), "/v1/fields/p_secret", field)
        .await
        .expect(200);
    let refused = s
        .patch(&partner, &path, json!({"data": {"p_clear": "again"}}))
        .await;
    refused.expect(400);
    let text = refused.body.to_string();
    assert!(text.contains("data.p_secret"), "{text}");
    assert!(
        !text.contains("60"),
        "the withheld value's length is not told: {text}"
    );
    // Someone who sees the value is told exactly what is wrong.
    let told = s
        .patch(s.lab(), &path, json!({"data": {"p_clear": "again"}}))
        .await;
    told.expect(400);
    assert!(told.body.to_string().contains("60 characters"));
}
