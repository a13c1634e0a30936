//! Running contextd in production (issue 15): online backup and restore, migrations with
//! several instances at once, an upgrade from the first release's schema, and SIGKILL in the
//! middle of a write burst, on SQLite and on PostgreSQL.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::Client;
use serde_json::{json, Value};

use crate::postgres::{TestDatabase, URL_VAR};
use crate::{banner_value, contextd, free_port, wait_ready};

const MASTER_KEY: &str = "7f3a9c1e5b2d4f6081a3c5e7092b4d6f8e1a3c5b7d9f0e2a4c6b8d0f1e3a5c7b";

/// A data directory (and, for PostgreSQL, a database) that servers and commands run over,
/// with the master key in the environment.
struct Site {
    dir: PathBuf,
    url: Option<String>,
}

impl Site {
    fn command(&self) -> std::process::Command {
        let mut c = contextd(&self.dir);
        c.env("CONTEXTD_MASTER_KEY", MASTER_KEY);
        if let Some(url) = &self.url {
            c.env("CONTEXTD_DATABASE_URL", url);
        }
        c
    }

    /// `contextd org create NAME --json`: the organization's lab admin token.
    fn org(&self, name: &str) -> String {
        let out = self
            .command()
            .args(["org", "create", name, "--json"])
            .output()
            .expect("org create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        v["lab"]["adminToken"].as_str().expect("token").to_owned()
    }

    /// Starts a server and waits until it answers.
    async fn serve(&self) -> (Running, String) {
        let port = free_port();
        let child = self
            .command()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve");
        let server = Running(child);
        let base = format!("http://127.0.0.1:{port}");
        wait_ready(&Client::new(), &base).await;
        (server, base)
    }
}

/// A server process, killed (SIGKILL) when dropped, also when an assertion fails.
struct Running(Child);

impl Running {
    fn id(&self) -> u32 {
        self.0.id()
    }

    /// Whether it still runs.
    fn runs(&mut self) -> bool {
        self.0.try_wait().expect("wait").is_none()
    }

    /// SIGKILL, and the exit collected.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes activities from `writers` tasks until `stop` is set or the server stops answering;
/// returns each acknowledged id with its notes and the moment its 201 arrived.
fn burst(
    base: &str,
    token: &str,
    writers: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<(String, String, Instant)>> {
    let (base, token) = (base.to_owned(), token.to_owned());
    tokio::spawn(async move {
        let http = Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let (http, base, token, stop) =
                    (http.clone(), base.clone(), token.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut acked = Vec::new();
                    for n in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let notes = format!("writer {w} note {n}");
                        let sent = http
                            .post(format!("{base}/v1/activities"))
                            .bearer_auth(&token)
                            .json(
                                &json!({"mediaType": "chat", "fieldsets": ["cisco.base.pod"],
                                "data": {"Context_Notes": notes}}),
                            )
                            .send()
                            .await;
                        let Ok(response) = sent else { break };
                        if response.status() != 201 {
                            break;
                        }
                        let Ok(body) = response.json::<Value>().await else {
                            break;
                        };
                        let id = body["id"].as_str().expect("id").to_owned();
                        acked.push((id, notes, Instant::now()));
                    }
                    acked
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.expect("writer"));
        }
        all
    })
}

/// Reads `id` and checks its notes decrypt to `notes`.
async fn assert_readable(http: &Client, base: &str, token: &str, id: &str, notes: Option<&str>) {
    let read = http
        .get(format!("{base}/v1/activities/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("read");
    assert_eq!(read.status(), 200, "activity {id} is readable");
    let body: Value = read.json().await.expect("json");
    let stored = body["data"]["Context_Notes"].as_str();
    assert!(stored.is_some(), "activity {id} is whole: {body}");
    if let Some(notes) = notes {
        assert_eq!(stored, Some(notes), "activity {id} decrypts");
    }
}

/// Every activity id the partition holds.
async fn all_activities(http: &Client, base: &str, token: &str) -> Vec<String> {
    let found: Value = http
        .post(format!("{base}/v1/activities/search"))
        .bearer_auth(token)
        .json(&json!({"terms": {}, "summary": true}))
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    found["ids"]
        .as_array()
        .unwrap_or_else(|| panic!("summary search: {found}"))
        .iter()
        .map(|v| v.as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_during_writes_restores_every_write_acknowledged_before_it_began() {
    let root = tempfile::tempdir().expect("tempdir");
    let site = Site {
        dir: root.path().join("data"),
        url: None,
    };
    let token = site.org("acme");
    let (mut server, base) = site.serve().await;
    let http = Client::new();

    let stop = Arc::new(AtomicBool::new(false));
    let writes = burst(&base, &token, 4, stop.clone());
    tokio::time::sleep(Duration::from_millis(800)).await;
    let began = Instant::now();
    let backup_dir = root.path().join("backup");
    let out = site
        .command()
        .args(["backup", "--to"])
        .arg(&backup_dir)
        .output()
        .expect("backup");
    let ended = Instant::now();
    assert!(
        out.status.success(),
        "backup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("apart"),
        "the backup says what to store apart: {said}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = writes.await.expect("writes");
    server.kill();
    let during = acked
        .iter()
        .filter(|(_, _, at)| *at > began && *at < ended)
        .count();
    let before: Vec<_> = acked.iter().filter(|(_, _, at)| *at < began).collect();
    assert!(
        !before.is_empty(),
        "writes were acknowledged before the backup"
    );
    eprintln!(
        "{} writes before the backup, {during} during it",
        before.len()
    );

    // Data and key store as separate files, a manifest, and never the master key.
    for file in [
        "data/contextd.db",
        "data/contextd-audit.db",
        "keys/keys.db",
        "manifest.json",
    ] {
        assert!(backup_dir.join(file).is_file(), "{file} is in the backup");
    }
    let no_key = |dir: &Path| {
        std::fs::read_dir(dir).expect("list").flatten().all(|e| {
            std::fs::read(e.path()).map_or(true, |bytes| {
                !String::from_utf8_lossy(&bytes).contains(MASTER_KEY)
            })
        })
    };
    assert!(
        no_key(&backup_dir) && no_key(&backup_dir.join("data")) && no_key(&backup_dir.join("keys"))
    );
    assert!(!backup_dir.join("master.key").exists());

    // A restore needs the master key and an empty data directory.
    let restored = Site {
        dir: root.path().join("restored"),
        url: None,
    };
    let without_key = contextd(&restored.dir)
        .args(["restore", "--from"])
        .arg(&backup_dir)
        .output()
        .expect("restore");
    assert!(!without_key.status.success(), "no master key: refused");
    assert!(
        !restored.dir.join("contextd.db").exists(),
        "and nothing restored"
    );
    let out = restored
        .command()
        .args(["restore", "--from"])
        .arg(&backup_dir)
        .output()
        .expect("restore");
    assert!(
        out.status.success(),
        "restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = restored
        .command()
        .args(["restore", "--from"])
        .arg(&backup_dir)
        .output()
        .expect("restore");
    assert!(
        !again.status.success(),
        "a second restore over the data is refused"
    );

    let (restored_server, base) = restored.serve().await;
    for (id, notes, _) in &before {
        assert_readable(&http, &base, &token, id, Some(notes)).await;
    }
    // Everything the copy holds is whole, and it holds no write acknowledged after it ended.
    let held = all_activities(&http, &base, &token).await;
    let late: HashSet<&str> = acked
        .iter()
        .filter(|(_, _, at)| *at > ended)
        .map(|(id, _, _)| id.as_str())
        .collect();
    for id in &held {
        assert!(
            !late.contains(id.as_str()),
            "{id} was written after the backup ended"
        );
        assert_readable(&http, &base, &token, id, None).await;
    }
    drop(restored_server);

    // PostgreSQL is backed up by its own tools.
    let out = contextd(root.path())
        .args([
            "backup",
            "--to",
            "/tmp/never",
            "--database-url",
            "postgres://127.0.0.1/x",
        ])
        .output()
        .expect("backup");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pg_dump"));
}

/// Reads every event of the partition from the start (raw Server-Sent Events, so that a
/// repeated id would be seen) until `want` objects have their `object.created` event.
async fn events_from_start(base: &str, token: &str, want: usize) -> Vec<(u64, Value)> {
    let response = Client::new()
        .get(format!("{base}/v1/events"))
        .bearer_auth(token)
        .header("Last-Event-ID", "0")
        .send()
        .await
        .expect("events");
    assert_eq!(response.status(), 200);
    let mut bytes = response.bytes_stream();
    let mut text = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while events
        .iter()
        .filter(|(_, e): &&(u64, Value)| e["type"] == "object.created")
        .count()
        < want
    {
        let chunk = tokio::time::timeout_at(deadline, bytes.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {want} events came", events.len()))
            .expect("stream open")
            .expect("bytes");
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let frame: String = text.drain(..end + 2).collect();
            let id = frame
                .lines()
                .find_map(|l| l.strip_prefix("id:"))
                .map(|v| v.trim().parse::<u64>());
            let data = frame.lines().find_map(|l| l.strip_prefix("data:"));
            if let (Some(Ok(id)), Some(data)) = (id, data) {
                let event: Value = serde_json::from_str(data.trim()).expect("event json");
                if event.get("objectId").is_some() {
                    events.push((id, event));
                }
            }
        }
    }
    events
}

/// Kills the server with SIGKILL in the middle of a write burst, restarts it, and checks that
/// every acknowledged write is there, every stored object is whole, and the events are each
/// object's once, in increasing ids, resuming after the restart.
async fn sigkill_mid_burst(site: &Site) {
    let token = site.org("acme");
    let (mut server, base) = site.serve().await;
    let stop = Arc::new(AtomicBool::new(false));
    let writes = burst(&base, &token, 8, stop);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill();
    let acked = writes.await.expect("writes");
    assert!(acked.len() > 20, "the burst wrote ({})", acked.len());

    let (_restarted, base) = site.serve().await;
    let http = Client::new();
    for (id, notes, _) in &acked {
        assert_readable(&http, &base, &token, id, Some(notes)).await;
    }
    let held = all_activities(&http, &base, &token).await;
    for id in &held {
        assert_readable(&http, &base, &token, id, None).await;
    }
    let acked_ids: HashSet<&str> = acked.iter().map(|(id, _, _)| id.as_str()).collect();
    let held_ids: HashSet<&str> = held.iter().map(String::as_str).collect();
    assert!(acked_ids.is_subset(&held_ids));
    eprintln!("{} acknowledged, {} stored", acked.len(), held.len());

    // One write after the restart: its event follows the others.
    let after = http
        .post(format!("{base}/v1/activities"))
        .bearer_auth(&token)
        .json(&json!({"mediaType": "voice"}))
        .send()
        .await
        .expect("create");
    assert_eq!(after.status(), 201);
    let after: Value = after.json().await.expect("json");

    let events = events_from_start(&base, &token, held.len() + 1).await;
    let mut created: HashMap<String, u64> = HashMap::new();
    let mut last = 0;
    for (id, event) in &events {
        assert!(
            *id > last,
            "event ids increase without repeats: {id} after {last}"
        );
        last = *id;
        if event["type"] == "object.created" {
            let object = event["objectId"].as_str().expect("objectId").to_owned();
            assert!(
                held_ids.contains(object.as_str()) || object == after["id"],
                "an event of a stored object"
            );
            assert!(
                created.insert(object, *id).is_none(),
                "one created event per object"
            );
        }
    }
    for id in &held {
        assert!(created.contains_key(id), "the event of {id} is not lost");
    }
    let after_id = after["id"].as_str().expect("id");
    let before_restart = created
        .iter()
        .filter(|(o, _)| o.as_str() != after_id)
        .map(|(_, id)| *id)
        .max()
        .unwrap_or(0);
    assert!(
        created[after_id] > before_restart,
        "the outbox resumes after the events before the crash"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_burst_loses_no_acknowledged_write_nor_event_on_sqlite() {
    let root = tempfile::tempdir().expect("tempdir");
    sigkill_mid_burst(&Site {
        dir: root.path().to_owned(),
        url: None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_burst_loses_no_acknowledged_write_nor_event_on_postgres() {
    let Ok(admin_url) = std::env::var(URL_VAR) else {
        eprintln!("{URL_VAR} is not set: skipped");
        return;
    };
    let db = TestDatabase::create(admin_url);
    let root = tempfile::tempdir().expect("tempdir");
    sigkill_mid_burst(&Site {
        dir: root.path().to_owned(),
        url: Some(db.url.clone()),
    })
    .await;
}

/// Runs `contextd migrate` from four processes at once over a new database: each succeeds,
/// and a server then starts on it.
async fn migrate_at_once(site: &Site) {
    let children: Vec<Child> = (0..4)
        .map(|_| {
            site.command()
                .arg("migrate")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("migrate")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "migrate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let token = site.org("acme");
    let (mut server, base) = site.serve().await;
    let created = Client::new()
        .post(format!("{base}/v1/activities"))
        .bearer_auth(&token)
        .json(&json!({"mediaType": "voice"}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    // `systemctl reload` of a plain-HTTP server: SIGHUP is logged, the server runs on.
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &server.id().to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.runs(), "SIGHUP did not stop the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_when_several_instances_start_at_once() {
    let root = tempfile::tempdir().expect("tempdir");
    migrate_at_once(&Site {
        dir: root.path().to_owned(),
        url: None,
    })
    .await;
    if let Ok(admin_url) = std::env::var(URL_VAR) {
        let db = TestDatabase::create(admin_url);
        let root = tempfile::tempdir().expect("tempdir");
        migrate_at_once(&Site {
            dir: root.path().to_owned(),
            url: Some(db.url.clone()),
        })
        .await;
    }
}

/// The fixture of the first release: its SQLite files as SQL text and what they hold.
fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema-2026-12")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_made_by_the_first_releases_migrations_upgrades_with_its_data_intact() {
    let fixture = fixture_dir();
    let facts: Value =
        serde_json::from_slice(&std::fs::read(fixture.join("fixture.json")).expect("fixture"))
            .expect("json");
    let root = tempfile::tempdir().expect("tempdir");
    for (sql, file) in [
        ("contextd.sql", "contextd.db"),
        ("contextd-audit.sql", "contextd-audit.db"),
        ("keys.sql", "keys.db"),
    ] {
        let text = std::fs::read_to_string(fixture.join(sql)).expect("dump");
        let conn = rusqlite::Connection::open(root.path().join(file)).expect("open");
        conn.execute_batch(&text).expect("load the dump");
    }
    let site = Site {
        dir: root.path().to_owned(),
        url: None,
    };
    let mut command = site.command();
    command.env(
        "CONTEXTD_MASTER_KEY",
        facts["masterKey"].as_str().expect("key"),
    );
    let out = command.arg("migrate").output().expect("migrate");
    assert!(
        out.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let port = free_port();
    let _server = Running(
        site.command()
            .env(
                "CONTEXTD_MASTER_KEY",
                facts["masterKey"].as_str().expect("key"),
            )
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = Client::new();
    wait_ready(&http, &base).await;
    let token = facts["token"].as_str().expect("token");
    let get = |path: String| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let response = http
                .get(format!("{base}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .expect("get");
            assert_eq!(response.status(), 200, "{path}");
            response.json::<Value>().await.expect("json")
        }
    };
    let objects: BTreeMap<String, Value> =
        serde_json::from_value(facts["objects"].clone()).expect("objects");
    for (path, expected) in &objects {
        let got = get(path.clone()).await;
        for (key, value) in expected.as_object().expect("object") {
            assert_eq!(&got[key], value, "{path}: {key} after the upgrade");
        }
    }
    let found: Value = http
        .post(format!("{base}/v1/customers/search"))
        .bearer_auth(token)
        .json(&json!({"terms": {"Context_Mobile_Phone": [facts["phone"].clone()]}}))
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    assert_eq!(
        found["total"], 1,
        "the blind index still finds the customer: {found}"
    );
    let audit = get("/v1/audit?limit=200".into()).await;
    assert!(
        audit["items"]
            .as_array()
            .is_some_and(|a| a.len() >= facts["auditEntries"].as_u64().unwrap_or(1) as usize),
        "the audit log kept its entries: {audit}"
    );
}

/// A CA of the test and a certificate for 127.0.0.1 it issued: (CA PEM, cert PEM, key PEM).
fn issue(name: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} CA"));
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("parameters");
    leaf.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("key");
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).expect("issued");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_https_and_takes_a_new_certificate_on_sighup() {
    let root = tempfile::tempdir().expect("tempdir");
    let tls = root.path().join("tls");
    std::fs::create_dir_all(&tls).expect("mkdir");
    let (ca1, cert1, key1) = issue("first");
    let (ca2, cert2, key2) = issue("second");
    for (file, text) in [
        ("ca1.pem", &ca1),
        ("ca2.pem", &ca2),
        ("cert.pem", &cert1),
        ("key.pem", &key1),
    ] {
        std::fs::write(tls.join(file), text).expect("write");
    }
    let site = Site {
        dir: root.path().join("data"),
        url: None,
    };
    let port = free_port();
    let mut server = site
        .command()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--tls-cert",
        ])
        .arg(tls.join("cert.pem"))
        .arg("--tls-key")
        .arg(tls.join("key.pem"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut banner = std::io::BufRead::lines(std::io::BufReader::new(
        server.stdout.take().expect("stdout"),
    ));
    let mut server = Running(server);
    let token = banner_value(&mut banner, "lab admin token:");
    let desktop = banner
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("/desktop"))
        .expect("the desktop URL is printed");
    assert!(
        desktop.contains(&format!("https://127.0.0.1:{port}/desktop")),
        "{desktop}"
    );
    let base = format!("https://127.0.0.1:{port}");
    // The CLI verifies the certificate against the CA file it is given, and only that.
    let status = |ca: &str| {
        site.command()
            .args(["status", "--url", &base, "--token", &token, "--ca-file"])
            .arg(tls.join(ca))
            .env_remove("CONTEXTD_CONNECTION_DATA")
            .output()
            .expect("status")
            .status
            .success()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !status("ca1.pem") {
        assert!(
            Instant::now() < deadline,
            "the server answers HTTPS with the first certificate"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !status("ca2.pem"),
        "a certificate from another CA is refused"
    );

    // New files, then SIGHUP: new connections get the new certificate; the server runs on.
    std::fs::write(tls.join("cert.pem"), &cert2).expect("write");
    std::fs::write(tls.join("key.pem"), &key2).expect("write");
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &server.id().to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !status("ca2.pem") {
        assert!(
            Instant::now() < deadline,
            "the second certificate is served after SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!status("ca1.pem"));
    assert!(server.runs(), "SIGHUP did not stop the server");
    drop(banner);
}
