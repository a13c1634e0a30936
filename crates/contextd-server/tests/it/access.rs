//! Access control (docs/security.md): roles on every endpoint, partner grants, sessions and CSRF, API keys,
//! the right to be forgotten, export, the audit log and abuse limits.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use contextd_client::{Client, Error, Search, Settings};
use contextd_core::auth::{Principal, PrincipalKind};
use contextd_core::crypto::Keyring;
use contextd_core::service::{Context, ContextConfig};
use contextd_core::{CoreError, Scope};
use contextd_proto::access::{AuditParams, NewGrant, NewKey, NewUser, Role, UserPatch};
use contextd_proto::dictionary::{Field, FieldSet};
use contextd_proto::object::{ObjectInput, TimelineParams};
use contextd_proto::{ContextObject, ErrorCode, Kind, ObjectId, Partition};
use contextd_server::ServerConfig;
use contextd_store_sqlite::{SqliteKeyStore, SqliteStore};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{input, invalid, key, new_customer, patch, search, value, TestServer};

fn field(body: Value) -> Field {
    serde_json::from_value(body).expect("a Field")
}

fn fieldset(body: Value) -> FieldSet {
    serde_json::from_value(body).expect("a FieldSet")
}

fn far_future() -> DateTime<Utc> {
    "2099-01-01T00:00:00Z".parse().expect("a time")
}

fn grant(principal: Uuid, expires_at: DateTime<Utc>) -> NewGrant {
    NewGrant {
        principal,
        expires_at,
    }
}

fn audit(action: &str) -> AuditParams {
    AuditParams {
        action: Some(action.into()),
        ..AuditParams::default()
    }
}

const ALL: &[Role] = &[Role::Admin, Role::Agent, Role::Machine, Role::Partner];
const STAFF: &[Role] = &[Role::Admin, Role::Agent, Role::Machine];
const ADMIN: &[Role] = &[Role::Admin];

/// Every endpoint, by the SDK operation that calls it, and the roles that may call it.
const MATRIX: &[(&str, &[Role])] = &[
    ("customer.create", ALL),
    ("customer.get", ALL),
    ("customer.replace", ALL),
    ("customer.patch", ALL),
    ("activity.delete", ALL),
    ("customer.search", ALL),
    ("customer.timeline", ALL),
    ("request.flush", STAFF),
    ("flush.status", ALL),
    ("field.list", ALL),
    ("field.get", ALL),
    ("field.create", ADMIN),
    ("field.update", ADMIN),
    ("fieldset.list", ALL),
    ("fieldset.get", ALL),
    ("fieldset.create", ADMIN),
    ("fieldset.update", ADMIN),
    ("fieldset.delete", ADMIN),
    ("field.delete", ADMIN),
    ("status.get", ALL),
    ("session.whoami", ALL),
    ("user.create", ADMIN),
    ("user.list", ADMIN),
    ("user.update", ADMIN),
    ("user.revokeSessions", ADMIN),
    ("user.delete", ADMIN),
    ("key.create", ADMIN),
    ("key.list", ADMIN),
    ("key.revoke", ADMIN),
    ("grant.create", ADMIN),
    ("grant.revoke", ADMIN),
    ("audit.list", ADMIN),
    ("customer.export", ADMIN),
    ("customer.erase", ADMIN),
];

/// What one role's pass over the matrix works on.
struct Fixture {
    customer: ObjectId,
    activity: ObjectId,
    flush: Uuid,
    other_key: Uuid,
    partner_key: Uuid,
    grant: Uuid,
    person: Uuid,
}

/// Calls the operation `op` of [`MATRIX`] as `c`, a credential of `role`.
async fn attempt(c: &Client, op: &str, role: Role, f: &Fixture) -> contextd_client::Result<()> {
    let r = role.as_str();
    let matrix_f = || {
        field(
            json!({"id": "matrix_f", "dataType": "string", "classification": "UNENCRYPTED", "description": r}),
        )
    };
    let person = || NewUser {
        name: format!("u_{r}"),
        role: Role::Agent,
        password: "correct horse battery".into(),
    };
    match op {
        "customer.create" => c
            .create(Kind::Customer, &ObjectInput::default())
            .await
            .map(drop),
        "customer.get" => c.get(Kind::Customer, f.customer).await.map(drop),
        "customer.replace" => {
            let body = ObjectInput {
                version: Some(1),
                ..ObjectInput::default()
            };
            c.replace(Kind::Customer, f.customer, &body).await.map(drop)
        }
        "customer.patch" => {
            let tags = patch(json!({"tags": ["x"]}));
            c.patch(Kind::Customer, f.customer, &tags, None)
                .await
                .map(drop)
        }
        "activity.delete" => c.delete(Kind::Activity, f.activity).await,
        "customer.search" => c
            .search(Kind::Customer, &Search::all().build())
            .await
            .map(drop),
        "customer.timeline" => c
            .timeline(f.customer, &TimelineParams::default())
            .await
            .map(drop),
        "request.flush" => c.flush(Kind::Request).await.map(drop),
        "flush.status" => c.flush_status(f.flush).await.map(drop),
        "field.list" => c.fields().await.map(drop),
        "field.get" => c.field("matrix_f").await.map(drop),
        "field.create" => c
            .create_field(&field(
                json!({"id": format!("f_{r}"), "dataType": "string", "classification": "PII"}),
            ))
            .await
            .map(drop),
        "field.update" => c.update_field(&matrix_f()).await.map(drop),
        "fieldset.list" => c.fieldsets().await.map(drop),
        "fieldset.get" => c.fieldset("matrix_s").await.map(drop),
        "fieldset.create" => c
            .create_fieldset(&fieldset(
                json!({"id": format!("s_{r}"), "fields": ["matrix_f"]}),
            ))
            .await
            .map(drop),
        "fieldset.update" => c
            .update_fieldset(&fieldset(
                json!({"id": "matrix_s", "fields": ["matrix_f"], "description": r}),
            ))
            .await
            .map(drop),
        "fieldset.delete" => c.delete_fieldset(&format!("s_{r}")).await,
        "field.delete" => c.delete_field(&format!("f_{r}")).await,
        "status.get" => c.status().await.map(drop),
        "session.whoami" => c.whoami().await.map(drop),
        "user.create" => c.create_user(&person()).await.map(drop),
        "user.list" => c.users().await.map(drop),
        "user.update" => {
            let demote = UserPatch {
                role: Some(Role::Partner),
                ..UserPatch::default()
            };
            c.update_user(f.person, &demote).await.map(drop)
        }
        "user.revokeSessions" => c.revoke_user_sessions(f.person).await.map(drop),
        "user.delete" => c.delete_user(f.person).await,
        "key.create" => c
            .create_key(&NewKey {
                name: "k".into(),
                role: Role::Agent,
                expires_at: None,
            })
            .await
            .map(drop),
        "key.list" => c.keys().await.map(drop),
        "key.revoke" => c.revoke_key(f.other_key).await,
        "grant.create" => c
            .create_grant(&grant(f.partner_key, far_future()))
            .await
            .map(drop),
        "grant.revoke" => c.revoke_grant(f.grant).await,
        "audit.list" => c.audit(&AuditParams::default()).await.map(drop),
        "customer.export" => c.export_customer(f.customer).await.map(drop),
        "customer.erase" => c.erase_customer(f.customer).await.map(drop),
        other => unreachable!("no operation {other} in the matrix"),
    }
}

/// Every endpoint × every role: allowed roles never get 403, the others always do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_matrix_covers_every_endpoint() {
    let s = TestServer::start().await;
    let admin = s.client(s.lab());
    let mut tokens = vec![(Role::Admin, s.lab().to_owned())];
    for role in [Role::Agent, Role::Machine, Role::Partner] {
        tokens.push((role, key(&admin, role).await.1));
    }
    admin
        .create_field(&field(
            json!({"id": "matrix_f", "dataType": "string", "classification": "UNENCRYPTED"}),
        ))
        .await
        .expect("field");
    admin
        .create_fieldset(&fieldset(json!({"id": "matrix_s", "fields": ["matrix_f"]})))
        .await
        .expect("field set");
    for (role, token) in &tokens {
        let customer = new_customer(&admin, json!({"Context_First_Name": "Matrix"})).await;
        let activity = admin
            .create(
                Kind::Activity,
                &input(json!({"customerId": customer, "mediaType": "web"})),
            )
            .await
            .expect("activity")
            .id;
        let flush = admin.flush(Kind::Detail).await.expect("flush").id;
        let other_key = key(&admin, Role::Agent).await.0;
        let partner_key = key(&admin, Role::Partner).await.0;
        let grant = admin
            .create_grant(&grant(partner_key, far_future()))
            .await
            .expect("grant")
            .id;
        let person = admin
            .create_user(&NewUser {
                name: format!("p_{role}"),
                role: Role::Agent,
                password: "correct horse battery".into(),
            })
            .await
            .expect("user")
            .id;
        let f = Fixture {
            customer,
            activity,
            flush,
            other_key,
            partner_key,
            grant,
            person,
        };
        let c = s.client(token);
        for (op, allowed) in MATRIX {
            let r = attempt(&c, op, *role, &f).await;
            assert_eq!(
                c.stats_summary()[*op]["count"],
                1,
                "{role} {op}: the matrix calls the operation it names"
            );
            assert!(
                !matches!(r, Err(Error::Unauthorized { .. })),
                "{role} {op}: the credential is valid"
            );
            if allowed.contains(role) {
                assert!(
                    matches!(
                        r,
                        Ok(())
                            | Err(Error::NotFound { .. }
                                | Error::Conflict { .. }
                                | Error::Validation { .. }
                                | Error::BadRequest { .. }
                                | Error::TooLarge { .. }
                                | Error::RateLimited { .. })
                    ),
                    "{role} may {op}, got {r:?}"
                );
            } else {
                assert!(
                    matches!(r, Err(Error::Forbidden { .. })),
                    "{role} may not {op}, got {r:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn partners_see_sealed_values_only_under_an_unexpired_grant() {
    let s = TestServer::start().await;
    let admin = s.client(s.lab());
    let (partner_id, partner) = key(&admin, Role::Partner).await;
    let partner = s.client(&partner);
    let customer = new_customer(&admin, json!({"Context_First_Name": "Petra", "Context_Mobile_Phone": "555 0100", "Context_Preferred_Language": "de_DE"})).await;
    let first_name = |o: &ContextObject| value(o, "Context_First_Name").clone();
    let by_phone = || {
        Search::all()
            .term("Context_Mobile_Phone", "5550100")
            .build()
    };

    let hidden = partner.get(Kind::Customer, customer).await.expect("read");
    assert_eq!(first_name(&hidden), Value::Null);
    assert_eq!(
        hidden.data["Context_Preferred_Language"], "de_DE",
        "UNENCRYPTED values are shown"
    );
    assert_eq!(
        hidden.withheld,
        ["Context_First_Name", "Context_Mobile_Phone"]
    );
    invalid(
        partner.search(Kind::Customer, &by_phone()).await,
        "terms.Context_Mobile_Phone",
    );
    let by_clear = partner
        .search(
            Kind::Customer,
            &Search::all()
                .term("Context_Preferred_Language", "de_DE")
                .build(),
        )
        .await
        .expect("search");
    assert_eq!(by_clear.total, 1);

    // A partner's write keeps the values it was not shown, and its answer withholds them too.
    let patched = partner
        .patch(
            Kind::Customer,
            customer,
            &patch(json!({"data": {"Context_Preferred_Language": "fr_FR"}})),
            None,
        )
        .await
        .expect("patch");
    assert_eq!(first_name(&patched), Value::Null);
    let full = admin.get(Kind::Customer, customer).await.expect("read");
    assert_eq!(full.data["Context_First_Name"], "Petra");
    assert_eq!(full.data["Context_Preferred_Language"], "fr_FR");

    // A grant lifts the withholding at once; revoking it restores it at once.
    let granted = admin
        .create_grant(&grant(partner_id, far_future()))
        .await
        .expect("grant");
    let shown = partner.get(Kind::Customer, customer).await.expect("read");
    assert_eq!(shown.data["Context_First_Name"], "Petra");
    assert!(shown.withheld.is_empty(), "nothing withheld under a grant");
    let found = partner.search(Kind::Customer, &by_phone()).await;
    assert_eq!(found.expect("search").total, 1);
    admin.revoke_grant(granted.id).await.expect("revoke");
    let hidden = partner.get(Kind::Customer, customer).await.expect("read");
    assert_eq!(first_name(&hidden), Value::Null);

    // An expired grant is no grant.
    let soon = Utc::now() + chrono::Duration::milliseconds(1200);
    admin
        .create_grant(&grant(partner_id, soon))
        .await
        .expect("short grant");
    let shown = partner.get(Kind::Customer, customer).await.expect("read");
    assert_eq!(shown.data["Context_First_Name"], "Petra");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let hidden = partner.get(Kind::Customer, customer).await.expect("read");
    assert_eq!(first_name(&hidden), Value::Null);

    // Grants are for partners of this partition only.
    let (agent_id, _) = key(&admin, Role::Agent).await;
    let prod = s.client(s.prod());
    invalid(
        admin.create_grant(&grant(agent_id, far_future())).await,
        "principal",
    );
    invalid(
        prod.create_grant(&grant(partner_id, far_future())).await,
        "principal",
    );
    let past = "2001-01-01T00:00:00Z".parse().expect("a time");
    invalid(
        admin.create_grant(&grant(partner_id, past)).await,
        "expiresAt",
    );
}

#[tokio::test]
async fn api_keys_are_shown_once_listed_without_secrets_and_revoked_at_once() {
    let s = TestServer::start().await;
    let admin = s.client(s.lab());
    let (id, token) = key(&admin, Role::Agent).await;
    s.client(&token).status().await.expect("the key works");
    let list = admin.keys().await.expect("list");
    assert!(
        list.iter().all(|k| k.token.is_none()),
        "listing shows no tokens"
    );
    assert!(list.iter().any(|k| k.id == id && k.role == Role::Agent));
    // Raw HTTP: the listing's bytes, members the SDK's types don't read included.
    let text = s.get(s.lab(), "/v1/keys").await.body.to_string();
    assert!(
        !text.contains(&token) && !text.contains("secret"),
        "listing shows no secrets"
    );
    admin.revoke_key(id).await.expect("revoke");
    let revoked = s.client(&token).status().await;
    assert!(
        matches!(revoked, Err(Error::Unauthorized { .. })),
        "{revoked:?}"
    );
    let again = admin.revoke_key(id).await;
    assert!(matches!(again, Err(Error::NotFound { .. })), "{again:?}");
    let old = NewKey {
        name: "old".into(),
        role: Role::Agent,
        expires_at: Some("2001-01-01T00:00:00Z".parse().expect("a time")),
    };
    invalid(admin.create_key(&old).await, "expiresAt");
    let short = admin
        .create_key(&NewKey {
            name: "short".into(),
            role: Role::Agent,
            expires_at: Some(Utc::now() + chrono::Duration::milliseconds(800)),
        })
        .await
        .expect("short-lived key");
    let short = s.client(&short.token.expect("token"));
    short.status().await.expect("before expiry");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let expired = short.status().await;
    assert!(
        matches!(expired, Err(Error::Unauthorized { .. })),
        "{expired:?}"
    );
    // A lab admin's keys are lab keys.
    let r = s.client(&token).whoami().await;
    assert!(matches!(r, Err(Error::Unauthorized { .. })), "{r:?}");
    let lab_agent = key(&admin, Role::Agent).await.1;
    let me = s.client(&lab_agent).whoami().await.expect("whoami");
    assert_eq!(me.partition, Partition::Lab);
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
    let admin = s.client(s.lab());
    let ada = |password: &str| NewUser {
        name: "ada".into(),
        role: Role::Agent,
        password: password.into(),
    };
    invalid(admin.create_user(&ada("short")).await, "password");
    // Raw HTTP: the answer's bytes must hold no password material, in any member.
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
    let twice = admin.create_user(&ada("correct horse battery")).await;
    assert!(
        matches!(
            twice,
            Err(Error::Conflict {
                code: ErrorCode::AlreadyExists,
                ..
            })
        ),
        "{twice:?}"
    );

    // Raw HTTP from here on: sign-in, cookies and CSRF tokens are what this test is about.
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
    let failures = admin.audit(&audit("signin.failed")).await.expect("audit");
    assert_eq!(failures.items.len(), 3);
}

#[tokio::test]
async fn erase_shreds_the_customer_key_so_old_copies_cannot_be_read() {
    let s = TestServer::start().await;
    let c = s.client(s.lab());
    let customer = new_customer(
        &c,
        json!({"Context_First_Name": "Gone", "Context_Home_Email": "gone@example.com"}),
    )
    .await;
    let create = |kind: Kind, body: Value| {
        let c = c.clone();
        async move { c.create(kind, &input(body)).await.expect("create").id }
    };
    let request = create(Kind::Request, json!({"customerId": customer, "fieldsets": ["cisco.base.request"], "data": {"Context_Title": "Old case"}})).await;
    let activity = create(Kind::Activity, json!({"parentId": request, "mediaType": "email", "fieldsets": ["cisco.base.pod"], "data": {"Context_Notes": "secret note"}})).await;
    let detail = create(Kind::Detail, json!({"parentId": activity, "detailType": "comment", "fieldsets": ["cisco.base.comment"], "data": {"Context_Comment": "c"}})).await;
    let bystander = new_customer(&c, json!({"Context_First_Name": "Stays"})).await;

    let export = c.export_customer(customer).await.expect("export");
    assert_eq!(
        export.customer.data["Context_Home_Email"],
        "gone@example.com"
    );
    assert_eq!(export.objects.len(), 3);

    // A "backup": copies of the data and key databases taken before the erase.
    let backup = tempfile::tempdir().expect("tempdir");
    for f in ["contextd.db", "contextd.db-wal", "keys.db"] {
        let from = s.dir.path().join(f);
        if from.exists() {
            std::fs::copy(&from, backup.path().join(f)).expect("copy");
        }
    }
    let other_partition = s.client(s.prod()).erase_customer(customer).await;
    assert!(
        matches!(other_partition, Err(Error::NotFound { .. })),
        "{other_partition:?}"
    );
    let erased = c.erase_customer(customer).await.expect("erase");
    assert_eq!(erased.erased, 4);
    for (kind, id) in [
        (Kind::Customer, customer),
        (Kind::Request, request),
        (Kind::Activity, activity),
        (Kind::Detail, detail),
    ] {
        let r = c.get(kind, id).await;
        assert!(matches!(r, Err(Error::NotFound { .. })), "{kind}: {r:?}");
    }
    c.get(Kind::Customer, bystander).await.expect("bystander");
    // Erase is idempotent: a repeat is answered with what was erased.
    let repeated = c.erase_customer(customer).await.expect("repeat");
    assert_eq!(repeated.erased, 4);

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
    // With the old key store the backup is readable: the test can tell the difference…
    let with_old_keys = read_from(backup.path())
        .get(&admin, Kind::Customer, customer)
        .await
        .expect("readable before erase");
    assert_eq!(with_old_keys.data["Context_First_Name"], "Gone");
    // …with the live key store, the customer's key is gone and the backup's values are noise.
    match read_from(s.dir.path())
        .get(&admin, Kind::Customer, customer)
        .await
    {
        Err(CoreError::Keys(_)) => {}
        other => panic!("the backup must be unreadable after erase, got {other:?}"),
    }
    let erase_audit = c
        .audit(&AuditParams {
            object_id: Some(customer.to_string()),
            ..audit("customer.erase")
        })
        .await
        .expect("audit");
    assert_eq!(erase_audit.items.len(), 2, "the erase and its repeat");
}

#[tokio::test]
async fn audit_log_records_pii_reads_searches_and_admin_actions_without_values() {
    let s = TestServer::start().await;
    let t = s.lab();
    let c = s.client(t);
    let (agent_id, agent) = key(&c, Role::Agent).await;
    let agent = s.client(&agent);
    let customer = new_customer(&c, json!({"Context_First_Name": "Audra", "Context_Mobile_Phone": "5551234567", "Context_Preferred_Language": "en_US"})).await;
    let named = customer.to_string();
    agent.get(Kind::Customer, customer).await.expect("read");
    agent
        .search(
            Kind::Customer,
            &Search::all()
                .term("Context_Mobile_Phone", "555-123-4567")
                .build(),
        )
        .await
        .expect("search");
    let reads = || {
        let c = c.clone();
        let params = AuditParams {
            actor: Some(agent_id.to_string()),
            ..audit("pii.read")
        };
        async move { c.audit(&params).await.expect("audit").items }
    };

    let items = reads().await;
    assert_eq!(
        items.len(),
        2,
        "one for the read, one for the search result"
    );
    assert_eq!(items[0].object_id.as_deref(), Some(named.as_str()));
    assert_eq!(
        items[0].fields,
        ["Context_First_Name", "Context_Mobile_Phone"]
    );
    // A lookup is one entry: the customer it revealed, naming the fields searched by.
    assert_eq!(items[0].detail, "search by Context_Mobile_Phone: 1 object");
    let everything = |action: &'static str| {
        let c = c.clone();
        let params = AuditParams {
            actor: Some(agent_id.to_string()),
            limit: Some(200),
            ..audit(action)
        };
        async move { c.audit(&params).await.expect("audit").items }
    };
    assert!(everything("pii.search").await.is_empty());
    // A page is audited once per customer it reveals, not once per object.
    for note in ["first call", "second call", "third call"] {
        c.create(
            Kind::Activity,
            &input(json!({"customerId": customer, "mediaType": "voice", "fieldsets": ["cisco.base.pod"],
                   "data": {"Context_Notes": note}})),
        )
        .await
        .expect("activity");
    }
    agent
        .timeline(customer, &TimelineParams::default())
        .await
        .expect("timeline");
    let items = reads().await;
    assert_eq!(items.len(), 3, "one more entry for the whole timeline page");
    assert_eq!(items[0].object_id.as_deref(), Some(named.as_str()));
    assert_eq!(items[0].object_type, Some(Kind::Customer));
    assert_eq!(items[0].fields, ["Context_Notes"]);
    assert_eq!(items[0].detail, "timeline: 3 objects");
    // A search page naming two customers is one entry for each.
    let twin = new_customer(
        &c,
        json!({"Context_First_Name": "Audra", "Context_Preferred_Language": "en_US"}),
    )
    .await;
    agent
        .search(
            Kind::Customer,
            &Search::all().term("Context_First_Name", "audra").build(),
        )
        .await
        .expect("search");
    let items = reads().await;
    assert_eq!(items.len(), 5, "two more entries, one per customer found");
    let mut found: Vec<String> = items[..2]
        .iter()
        .filter_map(|e| e.object_id.clone())
        .collect();
    found.sort_unstable();
    let mut expected = vec![named.clone(), twin.to_string()];
    expected.sort_unstable();
    assert_eq!(found, expected);
    assert!(items[..2]
        .iter()
        .all(|e| e.detail == "search by Context_First_Name: 1 object"));
    // A search that reveals nothing is audited by what it searched for.
    let none = agent
        .search(
            Kind::Customer,
            &Search::all()
                .term("Context_Mobile_Phone", "555-000-0000")
                .build(),
        )
        .await
        .expect("search");
    assert_eq!(none.total, 0);
    let searches = everything("pii.search").await;
    assert_eq!(searches.len(), 1, "{searches:?}");
    assert_eq!(searches[0].fields, ["Context_Mobile_Phone"]);
    assert_eq!(reads().await.len(), 5, "and no pii.read entry");
    let admin_actions = c.audit(&audit("key.create")).await.expect("audit").items;
    assert_eq!(
        admin_actions[0].object_id.as_deref(),
        Some(agent_id.to_string().as_str())
    );
    // Raw HTTP: the log's bytes, members the SDK's types don't read included.
    let everything = s.get(t, "/v1/audit?limit=200").await.body.to_string();
    for value in ["Audra", "5551234567", "555-123-4567"] {
        assert!(
            !everything.contains(value),
            "the audit log holds no values ({value})"
        );
    }
    // Paging, and the log can't be changed through the API.
    let page = |cursor: Option<String>| AuditParams {
        limit: Some(1),
        cursor,
        ..AuditParams::default()
    };
    let first = c.audit(&page(None)).await.expect("first page");
    let second = c
        .audit(&page(Some(first.next_cursor.clone().expect("a next page"))))
        .await
        .expect("second page");
    assert_ne!(first.items[0].id, second.items[0].id);
    // Raw HTTP: the SDK has no way to send a method the API doesn't offer.
    s.call(Method::DELETE, "/v1/audit", Some(t), None)
        .await
        .expect(405);
    invalid(
        c.audit(&AuditParams {
            limit: Some(0),
            ..AuditParams::default()
        })
        .await,
        "limit",
    );
    let refused = agent.audit(&AuditParams::default()).await;
    assert!(
        matches!(refused, Err(Error::Forbidden { .. })),
        "{refused:?}"
    );
}

/// A client that tries every operation once, so that a 429 is seen rather than waited out.
fn without_retries(s: &TestServer, token: &str) -> Client {
    let settings = Settings::standard()
        .with_timeout(Duration::from_millis(15_000))
        .with_retries(1);
    Client::new(&s.url, token, settings).expect("an SDK client")
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
    let lab = without_retries(&s, s.lab());
    let mut limited = None;
    for _ in 0..20 {
        if let Err(Error::RateLimited { retry_after }) = lab.status().await {
            limited = Some(retry_after);
            break;
        }
    }
    let retry = limited
        .expect("the sixth quick request is limited")
        .expect("Retry-After");
    assert!(retry >= Duration::from_secs(1));
    without_retries(&s, &other)
        .status()
        .await
        .expect("another credential is not limited");

    // Raw HTTP: oversized headers and a too-deeply nested body are hostile input.
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
    let c = s.client(s.lab());
    let find = |body: Value| {
        let c = c.clone();
        async move { c.search(Kind::Customer, &search(body)).await }
    };
    find(json!({"terms": {"state": "active"}}))
        .await
        .expect("one key");
    invalid(
        find(json!({"terms": {"state": "active", "tags": "x"}})).await,
        "terms",
    );
    invalid(
        find(json!({"terms": {"tags": ["a", "b", "c"]}})).await,
        "terms.tags",
    );
    invalid(
        find(json!({"terms": {"tags": "abcdefg"}})).await,
        "terms.tags",
    );
    find(json!({"terms": {"tags": ["abcdef", "x"]}}))
        .await
        .expect("within every limit");
}

#[tokio::test]
async fn partners_change_clear_fields_and_learn_nothing_of_withheld_values() {
    let s = TestServer::start().await;
    let admin = s.client(s.lab());
    let (_, partner) = key(&admin, Role::Partner).await;
    let partner = s.client(&partner);
    for f in [
        json!({"id": "p_clear", "dataType": "string", "classification": "UNENCRYPTED"}),
        json!({"id": "p_secret", "dataType": "string", "classification": "PII", "maxLength": 100}),
    ] {
        admin.create_field(&field(f)).await.expect("field");
    }
    admin
        .create_fieldset(&fieldset(
            json!({"id": "p_set", "fields": ["p_clear", "p_secret"]}),
        ))
        .await
        .expect("field set");
    let secret = "s".repeat(60);
    let id = admin
        .create(
            Kind::Customer,
            &input(json!({"fieldsets": ["cisco.base.customer", "p_set"],
                   "data": {"Context_First_Name": "Wanda", "Context_Preferred_Language": "en_US",
                            "p_clear": "visible", "p_secret": secret}})),
        )
        .await
        .expect("customer")
        .id;
    let write = |c: &Client, body: Value| {
        let c = c.clone();
        async move { c.patch(Kind::Customer, id, &patch(body), None).await }
    };

    // A partner removes a clear value (it was put back before) and sets another.
    write(
        &partner,
        json!({"data": {"Context_Preferred_Language": null, "p_clear": "changed"}}),
    )
    .await
    .expect("partner patch");
    let full = admin.get(Kind::Customer, id).await.expect("read");
    assert_eq!(value(&full, "Context_Preferred_Language"), &Value::Null);
    assert_eq!(full.data["p_clear"], "changed");
    assert_eq!(
        full.data["Context_First_Name"], "Wanda",
        "sealed values kept"
    );
    assert_eq!(full.data["p_secret"], secret.as_str());

    // A too-large answer doesn't tell a partner how big the withheld values are.
    let too_big = || json!({"data": {"p_clear": "x".repeat(262_100)}});
    match write(&partner, too_big()).await {
        Err(Error::TooLarge { detail }) => assert!(
            !detail.contains("the object is"),
            "no size of the object: {detail}"
        ),
        other => panic!("the object is over 256 KB: {other:?}"),
    }
    match write(&admin, too_big()).await {
        Err(Error::TooLarge { detail }) => {
            assert!(detail.contains("bytes serialized;"), "{detail}")
        }
        other => panic!("the object is over 256 KB: {other:?}"),
    }

    // A withheld value that no longer validates is not described to the partner.
    let mut narrowed = admin.field("p_secret").await.expect("field");
    narrowed.max_length = Some(10);
    admin.update_field(&narrowed).await.expect("update field");
    match write(&partner, json!({"data": {"p_clear": "again"}})).await {
        Err(Error::Validation { detail, errors }) => {
            assert!(
                errors.iter().any(|e| e.field == "data.p_secret"),
                "{errors:?}"
            );
            let text = format!("{detail} {errors:?}");
            assert!(
                !text.contains("60"),
                "the withheld value's length is not told: {text}"
            );
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
    // Someone who sees the value is told exactly what is wrong.
    match write(&admin, json!({"data": {"p_clear": "again"}})).await {
        Err(Error::Validation { detail, errors }) => {
            let text = format!("{detail} {errors:?}");
            assert!(text.contains("60 characters"), "{text}");
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
}
