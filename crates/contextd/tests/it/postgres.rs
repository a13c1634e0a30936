//! Issue item 3: several contextd instances on one PostgreSQL database. Runs when
//! `CONTEXTD_TEST_POSTGRES_URL` names a server whose role may create databases; each run uses
//! a fresh database, `contextd_test_<random>`, dropped at the end whether the test passed or not.

use std::process::{Child, Stdio};

use reqwest::Method;
use serde_json::{json, Value};
use tokio_postgres::NoTls;

use crate::{contextd, free_port, terminate, wait_ready};

pub const URL_VAR: &str = "CONTEXTD_TEST_POSTGRES_URL";

/// `url` with its database replaced by `name` (URL form: `postgres://…/db?…`).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let mut out = format!("{}/{name}", &base[..path]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Runs one statement on the server `url` names, on a runtime of its own (so that it can run
/// from `Drop`, inside or outside the test's runtime).
fn admin(url: &str, sql: &str) -> Result<(), String> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, NoTls)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client.batch_execute(&sql).await.map_err(|e| e.to_string())
        })
    })
    .join()
    .map_err(|_| "the admin thread panicked".to_owned())?
}

/// A fresh database, dropped (connections and all) on drop.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl TestDatabase {
    pub fn create(admin_url: String) -> Self {
        let name = format!("contextd_test_{}", uuid::Uuid::new_v4().simple());
        admin(&admin_url, &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        Self {
            url: with_database(&admin_url, &name),
            admin_url,
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = admin(&self.admin_url, &sql) {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// A `contextd serve` that is stopped (SIGTERM) when dropped, also when an assertion fails.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(dir: &std::path::Path, url: &str, master_key: &str) -> Self {
        let port = free_port();
        let child = contextd(dir)
            .env("CONTEXTD_MASTER_KEY", master_key)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--database-url",
                url,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    fn stop(mut self) -> std::process::ExitStatus {
        let status = terminate(&mut self.child);
        std::mem::forget(self);
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn create_customer(
    http: &reqwest::Client,
    server: &Server,
    token: &str,
    name: &str,
) -> String {
    let created = http
        .post(format!("{}/v1/customers", server.base))
        .bearer_auth(token)
        .json(&json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": name}}))
        .send()
        .await
        .expect("create");
    assert_eq!(
        created.status(),
        201,
        "create a customer via {}",
        server.base
    );
    let body: Value = created.json().await.expect("json");
    body["id"].as_str().expect("id").to_owned()
}

/// Searches by first name and reads the customer back, through `server`.
async fn find_and_read(http: &reqwest::Client, server: &Server, token: &str, name: &str, id: &str) {
    let found: Value = http
        .post(format!("{}/v1/customers/search", server.base))
        .bearer_auth(token)
        .json(&json!({"terms": {"Context_First_Name": [name.to_lowercase()]}}))
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    assert_eq!(
        found["total"], 1,
        "{name} is found via {}: {found}",
        server.base
    );
    assert_eq!(found["items"][0]["id"], id);
    let read = http
        .get(format!("{}/v1/customers/{id}", server.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("read");
    assert_eq!(read.status(), 200, "{name} is readable via {}", server.base);
    let body: Value = read.json().await.expect("json");
    assert_eq!(
        body["data"]["Context_First_Name"], name,
        "decrypted via {}",
        server.base
    );
}

/// An activity created through one instance is on the customer's timeline through the other,
/// written from its `jsonb` body straight into the response: clear and decrypted values, tags.
async fn timeline_shows_an_activity(
    http: &reqwest::Client,
    (a, b): (&Server, &Server),
    token: &str,
    customer: &str,
) {
    let created = http
        .post(format!("{}/v1/activities", a.base))
        .bearer_auth(token)
        .json(&json!({"customerId": customer, "mediaType": "chat",
            "fieldsets": ["cisco.base.pod"], "tags": ["vip"],
            "data": {"Context_Notes": "asked about \"fees\"", "Context_POD_Activity_Link": "https://x.test/1"}}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    let page: Value = http
        .get(format!("{}/v1/customers/{customer}/timeline", b.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("timeline")
        .json()
        .await
        .expect("a JSON timeline page");
    assert_eq!(page["total"], 1, "{page}");
    let item = &page["items"][0];
    assert_eq!(
        item["data"]["Context_Notes"], "asked about \"fees\"",
        "{page}"
    );
    assert_eq!(
        item["data"]["Context_POD_Activity_Link"],
        "https://x.test/1"
    );
    assert_eq!(
        (&item["tags"], &item["fieldsets"]),
        (&json!(["vip"]), &json!(["cisco.base.pod"]))
    );
    assert_eq!(
        item["contributors"].as_array().map(Vec::len),
        Some(1),
        "{page}"
    );
}

/// A fresh database holding the org `acme`, and two instances serving it; the servers stop
/// before the database is dropped.
struct Pair {
    a: Server,
    b: Server,
    /// The lab admin token of `acme`.
    token: String,
    dirs: [tempfile::TempDir; 2],
    _database: TestDatabase,
}

impl Pair {
    /// `None` (saying so) without `CONTEXTD_TEST_POSTGRES_URL`.
    async fn start() -> Option<Self> {
        let Ok(admin_url) = std::env::var(URL_VAR) else {
            eprintln!("PostgreSQL tests skipped: {URL_VAR} is not set");
            return None;
        };
        let database = TestDatabase::create(admin_url);
        let master_key = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let dirs = [
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        ];
        let cli = tempfile::tempdir().expect("tempdir");
        let out = contextd(cli.path())
            .env("CONTEXTD_MASTER_KEY", &master_key)
            .args([
                "org",
                "create",
                "acme",
                "--json",
                "--database-url",
                &database.url,
            ])
            .output()
            .expect("org create");
        assert!(
            out.status.success(),
            "org create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let org: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        let token = org["lab"]["adminToken"]
            .as_str()
            .expect("lab token")
            .to_owned();
        let a = Server::start(dirs[0].path(), &database.url, &master_key);
        let b = Server::start(dirs[1].path(), &database.url, &master_key);
        let http = reqwest::Client::new();
        wait_ready(&http, &a.base).await;
        wait_ready(&http, &b.base).await;
        Some(Self {
            a,
            b,
            token,
            dirs,
            _database: database,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_postgres_database() {
    let Some(Pair {
        a,
        b,
        token,
        dirs,
        _database,
    }) = Pair::start().await
    else {
        return;
    };
    let http = reqwest::Client::new();
    let ola = create_customer(&http, &a, &token, "Ola").await;
    find_and_read(&http, &b, &token, "Ola", &ola).await;
    let kari = create_customer(&http, &b, &token, "Kari").await;
    find_and_read(&http, &a, &token, "Kari", &kari).await;
    find_and_read(&http, &a, &token, "Ola", &ola).await;
    timeline_shows_an_activity(&http, (&a, &b), &token, &ola).await;

    assert!(a.stop().success(), "instance A exits cleanly on SIGTERM");
    assert!(b.stop().success(), "instance B exits cleanly on SIGTERM");
    assert!(
        dirs.iter().all(|d| !d.path().join("master.key").exists()),
        "with CONTEXTD_MASTER_KEY set no key file is written"
    );
}

/// One request with a credential header (if any) and a JSON body (if any): its status, its
/// JSON body (`null` if none) and the `name=value` of the cookie it sets (if any).
async fn status(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    auth: Option<(&str, &str)>,
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let mut request = http.request(method, url);
    if let Some((name, value)) = auth {
        request = request.header(name, value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let code = response.status().as_u16();
    let cookie = response
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    let body = response.json().await.unwrap_or(Value::Null);
    (code, body, cookie)
}

/// The status of `GET /v1/sessions/current` on `base` with one credential header.
async fn whoami(http: &reqwest::Client, base: &str, auth: (&str, &str)) -> u16 {
    let url = format!("{base}/v1/sessions/current");
    status(http, Method::GET, url, Some(auth), None).await.0
}

/// `contextd_credential_cache_total{result}` of a server.
async fn cache_count(http: &reqwest::Client, server: &Server, result: &str) -> f64 {
    let text = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let line = format!("contextd_credential_cache_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line} in {}/metrics", server.base))
}

/// Item 5 of issue 16: API keys and sessions are kept in memory on PostgreSQL, and a change
/// through one instance (NOTIFY from a trigger, in the changing transaction) holds on the
/// other on its very next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_cached_and_a_revocation_through_one_instance_holds_on_another_at_once() {
    let Some(pair) = Pair::start().await else {
        return;
    };
    let http = reqwest::Client::new();
    let admin = format!("Bearer {}", pair.token);
    let (a, b) = (&pair.a.base, &pair.b.base);
    let hits_before = cache_count(&http, &pair.b, "hit").await;
    for round in 0..5 {
        let body = json!({"name": format!("desk {round}"), "role": "agent"});
        let (code, key, _) = status(
            &http,
            Method::POST,
            format!("{a}/v1/keys"),
            Some(("authorization", &admin)),
            Some(body),
        )
        .await;
        assert_eq!(code, 201, "key created through A: {key}");
        let bearer = format!("Bearer {}", key["token"].as_str().expect("token"));
        for _ in 0..3 {
            let code = whoami(&http, b, ("authorization", &bearer)).await;
            assert_eq!(code, 200, "round {round}: the new key works on B");
        }
        let id = key["id"].as_str().expect("id");
        let (code, ..) = status(
            &http,
            Method::DELETE,
            format!("{a}/v1/keys/{id}"),
            Some(("authorization", &admin)),
            None,
        )
        .await;
        assert_eq!(code, 204, "revoked through A");
        let code = whoami(&http, b, ("authorization", &bearer)).await;
        assert_eq!(
            code, 401,
            "round {round}: revoked through A, refused by B at once"
        );
    }
    let hits = cache_count(&http, &pair.b, "hit").await - hits_before;
    assert!(
        hits >= 10.0,
        "B answered repeated requests from memory: {hits} hits"
    );

    // A session signed in through B, kept there, ended by disabling its user through A.
    let password = "correct horse battery staple";
    let user = json!({"name": "ada", "role": "agent", "password": password});
    let (code, ada, _) = status(
        &http,
        Method::POST,
        format!("{a}/v1/users"),
        Some(("authorization", &admin)),
        Some(user),
    )
    .await;
    assert_eq!(code, 201, "user created: {ada}");
    let sign_in = json!({"org": "acme", "partition": "lab", "name": "ada", "password": password});
    let (code, _, cookie) = status(
        &http,
        Method::POST,
        format!("{b}/v1/sessions"),
        None,
        Some(sign_in),
    )
    .await;
    assert_eq!(code, 201, "signed in through B");
    let cookie = cookie.expect("a session cookie");
    for _ in 0..3 {
        let code = whoami(&http, b, ("cookie", &cookie)).await;
        assert_eq!(code, 200, "the session works on B");
    }
    let id = ada["id"].as_str().expect("user id");
    let disable = json!({"disabled": true});
    let (code, ..) = status(
        &http,
        Method::PATCH,
        format!("{a}/v1/users/{id}"),
        Some(("authorization", &admin)),
        Some(disable),
    )
    .await;
    assert_eq!(code, 200, "disabled through A");
    let code = whoami(&http, b, ("cookie", &cookie)).await;
    assert_eq!(
        code, 401,
        "disabled through A, the session is refused by B at once"
    );
}

/// Waits for a `contextd.status` log line whose status is `want`; false when none came in time.
fn await_status(lines: &std::sync::mpsc::Receiver<String>, want: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(45);
    while std::time::Instant::now() < deadline {
        let Ok(line) = lines.recv_timeout(std::time::Duration::from_millis(200)) else {
            continue;
        };
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if event["target"] == "contextd.status" && event["fields"]["status"] == want {
            return true;
        }
    }
    false
}

/// With PostgreSQL refusing every connection under a running server, its status goes `down`
/// (storage and key store both unreachable), and back to `ok` once access returns; meanwhile
/// requests are refused with 503 `storage`, never answered wrongly.
#[tokio::test]
async fn status_goes_down_when_postgresql_refuses_connections_and_recovers() {
    use std::io::{BufRead, BufReader};
    let Ok(admin_url) = std::env::var(URL_VAR) else {
        eprintln!("PostgreSQL tests skipped: {URL_VAR} is not set");
        return;
    };
    let db = TestDatabase::create(admin_url);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut child = contextd(dir.path())
        .env("CONTEXTD_MASTER_KEY", "a".repeat(64))
        .env("CONTEXTD_LOG_FORMAT", "json")
        .env("CONTEXTD_LOG", "contextd.status=info,warn")
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--database-url", &db.url, "--stats-interval", "1s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let token = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.contains("lab admin token")
                .then(|| l.split_whitespace().last().map(str::to_owned))
                .flatten()
        })
        .expect("the lab admin token is printed");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await;
    assert!(await_status(&lines, "ok"), "a status line says ok");

    let name = &db.name;
    admin(
        &db.admin_url,
        &format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
        ),
    )
    .expect("cut the server off");
    assert!(await_status(&lines, "down"), "the status line says down");
    let refused = http
        .get(format!("{base}/v1/status"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("answered");
    assert_eq!(
        refused.status(),
        503,
        "no credential can be checked without the database"
    );
    let problem: Value = refused.json().await.expect("problem JSON");
    assert_eq!(problem["type"], "urn:contextd:problem:storage");

    admin(
        &db.admin_url,
        &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"),
    )
    .expect("let the server back in");
    assert!(await_status(&lines, "ok"), "the status line recovers");
    let status: Value = http
        .get(format!("{base}/v1/status"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("status JSON");
    assert_eq!(status["status"], "ok");
    assert_eq!(
        status["connectors"]["registered"], 1,
        "the default connector: {status}"
    );
    assert!(terminate(&mut child).success());
}
