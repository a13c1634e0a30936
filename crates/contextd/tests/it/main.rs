//! Tests of the `contextd` binary itself: the operator commands (README, "Operator commands").

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

mod audit;
mod cli;
mod observe;
mod operate;
mod postgres;
mod signin;
mod transfer;
mod users;
mod watch;

const BIN: &str = env!("CARGO_BIN_EXE_contextd");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn contextd(dir: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("CONTEXTD_MASTER_KEY")
        .env_remove("CONTEXTD_MASTER_KEY_FILE")
        .env_remove("CONTEXTD_DATABASE_URL")
        .env("CONTEXTD_DATA_DIR", dir);
    c
}

#[tokio::test]
async fn org_create_json_prints_exactly_one_object_with_working_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = contextd(dir.path())
        .args(["org", "create", "acme", "--json"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let v: Value = serde_json::from_str(stdout.trim()).expect("exactly one JSON object on stdout");
    let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["connectionData", "lab", "orgId", "production"]);
    let lab = v["lab"]["adminToken"]
        .as_str()
        .expect("lab token")
        .to_owned();
    let prod = v["production"]["adminToken"]
        .as_str()
        .expect("production token")
        .to_owned();
    assert_ne!(lab, prod);
    let conn = STANDARD
        .decode(v["connectionData"].as_str().expect("connectionData"))
        .expect("base64");
    let conn: Value = serde_json::from_slice(&conn).expect("connectionData is base64 JSON");
    assert_eq!(conn["orgId"], v["orgId"]);
    assert!(
        conn["credentials"]["clientId"].is_string()
            && conn["credentialsLabMode"]["clientSecret"].is_string()
    );

    // The same name again is refused, with a non-zero exit.
    let again = contextd(dir.path())
        .args(["org", "create", "acme", "--json"])
        .output()
        .expect("run");
    assert!(!again.status.success());

    // The tokens work against a server on the same data, each in its own partition.
    let port = free_port();
    let mut server = contextd(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await;
    for (token, partition) in [(&lab, "lab"), (&prod, "production")] {
        let status: Value = http
            .get(format!("{base}/v1/status"))
            .bearer_auth(token)
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("json");
        assert_eq!(status["partition"], partition);
    }
    terminate(&mut server);
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not start");
}

/// A `contextd serve` of its own, on a free port over `dir`, ready, with its lab and
/// production admin tokens and its connectionData.
pub struct Served {
    pub child: std::process::Child,
    pub base: String,
    pub lab: String,
    pub production: String,
    pub connection_data: String,
    /// Kept open: the server prints more after the token, and a closed pipe would stop it.
    _stdout: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

/// Starts [`Served`] with extra environment variables.
async fn serve_fresh(dir: &std::path::Path, env: &[(&str, &str)]) -> Served {
    let port = free_port();
    let mut child = contextd(dir)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let lab = banner_value(&mut lines, "lab admin token:");
    let production = banner_value(&mut lines, "production admin token:");
    let connection_data = banner_value(&mut lines, "connectionData:");
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&reqwest::Client::new(), &base).await;
    Served {
        child,
        base,
        lab,
        production,
        connection_data,
        _stdout: lines,
    }
}

/// The value after `label` on the next banner line that has it.
fn banner_value(lines: &mut impl Iterator<Item = std::io::Result<String>>, label: &str) -> String {
    lines
        .map_while(Result::ok)
        .find_map(|l| l.trim().strip_prefix(label).map(|t| t.trim().to_owned()))
        .unwrap_or_else(|| panic!("the banner prints {label}"))
}

fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn serve_bootstraps_once_prints_tokens_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    let mut first = contextd(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut lines = BufReader::new(first.stdout.take().expect("stdout")).lines();
    let mut printed = Vec::new();
    for _ in 0..8 {
        printed.push(lines.next().expect("a line").expect("utf-8"));
    }
    let token = |label: &str| {
        printed
            .iter()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(|t| t.trim().to_owned())
            .expect(label)
    };
    let lab = token("lab admin token:");
    assert!(token("connectionData:").len() > 40);
    assert!(
        printed.iter().any(|l| l.contains("/desktop")),
        "the desktop URL is printed"
    );
    wait_ready(&http, &base).await;
    // The printed pages answer, and the printed admin password signs in to both partitions.
    for page in ["/desktop", "/admin"] {
        let url = printed
            .iter()
            .find_map(|l| l.split_whitespace().find(|w| w.ends_with(page)))
            .expect("the page's URL is printed");
        assert_eq!(
            http.get(url).send().await.expect("page").status(),
            200,
            "{url}"
        );
    }
    let sign_in = token("sign in:");
    let password = sign_in
        .split_whitespace()
        .skip_while(|w| *w != "password")
        .nth(1)
        .expect("the admin password is printed");
    for partition in ["lab", "production"] {
        let session = http
            .post(format!("{base}/v1/sessions"))
            .json(
                &serde_json::json!({"partition": partition, "name": "admin", "password": password}),
            )
            .send()
            .await
            .expect("sign in");
        assert_eq!(session.status(), 201, "admin signs in to {partition}");
    }
    let created = http.post(format!("{base}/v1/customers")).bearer_auth(&lab).json(&serde_json::json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": "Ola"}})).send().await.expect("create");
    assert_eq!(created.status(), 201);
    let status = terminate(&mut first);
    assert!(status.success(), "SIGTERM must exit 0, got {status:?}");
    assert!(dir.path().join("master.key").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("master.key"))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the master key file is private");
    }

    // Second start on the same data: no new org, nothing printed, the data and tokens survive.
    let mut second = contextd(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    wait_ready(&http, &base).await;
    let found: Value = http
        .post(format!("{base}/v1/customers/search"))
        .bearer_auth(&lab)
        .json(&serde_json::json!({"terms": {"Context_First_Name": ["ola"]}}))
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    assert_eq!(found["total"], 1, "data and keys survive a restart");
    let status = terminate(&mut second);
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut second.stdout.take().expect("stdout"), &mut rest)
        .expect("read");
    assert!(rest.is_empty(), "tokens are printed once only, got: {rest}");
}

/// An operator's terminal that goes away (or a supervisor that closes stdout) must not stop
/// the server: the first-start banner is best-effort, the service is not.
#[tokio::test]
async fn serve_keeps_running_when_its_stdout_is_closed_before_the_banner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut server = contextd(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    drop(server.stdout.take());
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&reqwest::Client::new(), &base).await;
    assert!(
        server.try_wait().expect("wait").is_none(),
        "the server is still running"
    );
    assert!(terminate(&mut server).success());
}

#[tokio::test]
async fn keys_rotate_and_bring_your_own_key_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = contextd(dir.path())
        .args(["org", "create", "acme", "--json"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let lab = v["lab"]["adminToken"].as_str().expect("token").to_owned();
    let http = reqwest::Client::new();
    let start = |extra: &[&str]| {
        let port = free_port();
        let mut args = vec![
            "serve".to_owned(),
            "--listen".to_owned(),
            format!("127.0.0.1:{port}"),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let child = contextd(dir.path())
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve");
        (child, format!("http://127.0.0.1:{port}"))
    };

    let (mut server, base) = start(&[]);
    wait_ready(&http, &base).await;
    let created: Value = http
        .post(format!("{base}/v1/customers"))
        .bearer_auth(&lab)
        .json(&serde_json::json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": "Kira"}}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let path = format!("/v1/customers/{}", created["id"].as_str().expect("id"));
    terminate(&mut server);

    let rotate = contextd(dir.path())
        .args(["keys", "rotate", "--org", "acme", "--partition", "lab"])
        .output()
        .expect("rotate");
    assert!(
        rotate.status.success(),
        "{}",
        String::from_utf8_lossy(&rotate.stderr)
    );
    assert!(String::from_utf8_lossy(&rotate.stdout).contains("version 2"));

    let kek = dir.path().join("acme.kek");
    std::fs::write(&kek, "ab".repeat(32)).expect("write kek");
    let set = contextd(dir.path())
        .args(["org", "set-kek", "acme", "--kek-file"])
        .arg(&kek)
        .output()
        .expect("set-kek");
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );

    // Without the org's key the server can't read the org's data…
    let (mut server, base) = start(&[]);
    wait_ready(&http, &base).await;
    let denied = http
        .get(format!("{base}{path}"))
        .bearer_auth(&lab)
        .send()
        .await
        .expect("get");
    assert!(denied.status().is_server_error(), "got {}", denied.status());
    terminate(&mut server);
    // …with it, it can, and the rotated key version is in use.
    let spec = format!("acme={}", kek.display());
    let (mut server, base) = start(&["--org-kek", &spec]);
    wait_ready(&http, &base).await;
    let read: Value = http
        .get(format!("{base}{path}"))
        .bearer_auth(&lab)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(read["data"]["Context_First_Name"], "Kira");
    let status: Value = http
        .get(format!("{base}/v1/status"))
        .bearer_auth(&lab)
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(status["encryption"]["dataKeyVersion"], 2);
    // The command-line rotation is audited like the API's, with no actor.
    let audit: Value = http
        .get(format!("{base}/v1/audit?action=datakey.rotate"))
        .bearer_auth(&lab)
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    let items = audit["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{audit}");
    assert!(items[0]["actor"].is_null(), "{audit}");
    let detail = items[0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("version=2") && detail.contains("cli"),
        "{audit}"
    );
    assert!(terminate(&mut server).success());
}

/// Runs a command that must exit by itself within `limit`; kills it and fails if it doesn't
/// (a server that should have refused to start, and serves instead).
fn exits_within(command: &mut Command, limit: Duration) -> std::process::Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "still running after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

#[tokio::test]
async fn serve_refuses_to_start_without_the_keys_or_with_another_master_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut first = contextd(dir.path())
        .args(["serve", "--listen", &listen])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let mut lines = BufReader::new(first.stdout.take().expect("stdout")).lines();
    let created = lines.next().expect("a line").expect("utf-8");
    assert!(
        created.contains("created organization \"default\""),
        "{created}"
    );
    wait_ready(&reqwest::Client::new(), &format!("http://{listen}")).await;
    assert!(terminate(&mut first).success());

    let refused = |out: &std::process::Output, needles: &[&str]| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "must refuse to start; stderr: {stderr}"
        );
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "'{needle}' missing from stderr: {stderr}"
            );
        }
        assert!(
            String::from_utf8_lossy(&out.stdout).is_empty(),
            "no new organization or tokens"
        );
    };
    let another_master = "cd".repeat(32);
    let out = exits_within(
        contextd(dir.path())
            .args(["serve", "--listen", &listen])
            .env("CONTEXTD_MASTER_KEY", &another_master),
        Duration::from_secs(30),
    );
    refused(
        &out,
        &[
            "organization 'default'",
            "wrong master key (CONTEXTD_MASTER_KEY / master.key)?",
        ],
    );

    std::fs::remove_file(dir.path().join("keys.db")).expect("remove keys.db");
    let missing = [
        "the key store has no keys for organization 'default'",
        "wrong --data-dir, or a key store of another deployment?",
    ];
    let out = exits_within(
        contextd(dir.path()).args(["serve", "--listen", &listen]),
        Duration::from_secs(30),
    );
    refused(&out, &missing);
    // The other commands that open the data refuse too, and make no keys either.
    let out = exits_within(
        contextd(dir.path()).args(["keys", "rotate", "--partition", "lab"]),
        Duration::from_secs(30),
    );
    refused(&out, &missing);
    let out = exits_within(
        contextd(dir.path()).args(["org", "create", "acme"]),
        Duration::from_secs(30),
    );
    refused(&out, &missing);
}

#[tokio::test]
async fn the_master_key_file_lives_apart_from_the_data_and_one_beside_it_is_warned_about() {
    let (data, vault) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let key = vault.path().join("contextd.key");
    let key_arg = key.to_str().expect("path");
    let mut served = serve_fresh(data.path(), &[("CONTEXTD_MASTER_KEY_FILE", key_arg)]).await;
    assert!(terminate(&mut served.child).success());
    let meta = std::fs::metadata(&key).expect("the key file is created where it was named");
    #[cfg(unix)]
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    assert!(
        !data.path().join("master.key").exists(),
        "no key beside the data"
    );

    // Without it, the data directory alone opens nothing, and the start says why it warns.
    let listen = format!("127.0.0.1:{}", free_port());
    let out = exits_within(
        contextd(data.path()).args(["serve", "--listen", &listen]),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("sits beside the data"), "{stderr}");
    assert!(stderr.contains("--master-key-file"), "{stderr}");

    // With the flag again, it serves the same data.
    let mut again = contextd(data.path())
        .args(["serve", "--listen", &listen, "--master-key-file", key_arg])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    wait_ready(&reqwest::Client::new(), &format!("http://{listen}")).await;
    let status: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{listen}/v1/status"))
        .bearer_auth(&served.lab)
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(status["status"], "ok", "{status}");
    assert!(terminate(&mut again).success());
}

#[tokio::test]
async fn serve_reads_a_settings_file_beneath_the_environment_and_the_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let file = dir.path().join("contextd.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:{port}\"\nbody_limit = 2097152\nrate_limit = 7\n\
             events_nats = \"nats://svc:s3cret@127.0.0.1:4222\"\norg_kek = [\"a=/k/a\", \"b=/k/b\"]\n"
        ),
    )
    .expect("write");
    let path = file.to_str().expect("path");
    let out = contextd(dir.path())
        .args(["config", "check", "--config", path, "--rate-limit", "9"])
        .env("CONTEXTD_BODY_LIMIT", "4096")
        .output()
        .expect("config check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        format!("listen = \"127.0.0.1:{port}\"  # file"),
        "body_limit = \"4096\"  # CONTEXTD_BODY_LIMIT".to_owned(),
        "rate_limit = \"9\"  # flag".to_owned(),
        "org_kek = [\"a=/k/a\", \"b=/k/b\"]  # file".to_owned(),
        "header_limit = \"16384\"  # default".to_owned(),
        "events_nats = \"nats://svc:***@127.0.0.1:4222\"  # file".to_owned(),
    ] {
        assert!(text.contains(&line), "'{line}' missing from:\n{text}");
    }
    assert!(!text.contains("s3cret"), "{text}");

    // The server runs with a file: it listens where the file says.
    std::fs::write(
        &file,
        format!("listen = \"127.0.0.1:{port}\"\nbody_limit = 2097152\n"),
    )
    .expect("write");
    let mut child = contextd(dir.path())
        .args(["serve", "--config", path])
        .env_remove("CONTEXTD_LISTEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    wait_ready(&reqwest::Client::new(), &format!("http://127.0.0.1:{port}")).await;
    assert!(terminate(&mut child).success());

    // A key that is no setting, or a value its flag refuses, is named.
    for (body, needle) in [
        ("bodylimit = 1\n", "`bodylimit` is not a setting"),
        ("body_limit = \"big\"\n", "key `body_limit`"),
        ("body_limit = { a = 1 }\n", "`body_limit` must be"),
    ] {
        std::fs::write(&file, body).expect("write");
        let out = contextd(dir.path())
            .args(["serve", "--config", path])
            .output()
            .expect("serve");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(needle), "'{needle}' missing: {stderr}");
    }
}

/// `contextd bench load` and `contextd bench run … --json` against a real server (the README's "Benchmarks"):
/// one JSON object per scenario with every key, no errors, and lookups that really find their
/// customer (the tool counts any other answer as an error).
#[tokio::test]
async fn bench_load_and_run_report_every_key_without_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Served {
        child: mut server,
        base,
        lab: token,
        ..
    } = serve_fresh(dir.path(), &[]).await;
    let state = dir.path().join("bench-state.json");
    let bench = |args: &[&str]| {
        let out = contextd(dir.path())
            .arg("bench")
            .args(args)
            .arg("--state")
            .arg(&state)
            .env("CONTEXTD_URL", &base)
            .env("CONTEXTD_TOKEN", &token)
            .output()
            .expect("bench");
        assert!(
            out.status.success(),
            "contextd bench {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };

    // Through the batch endpoints, 7 customers a time (the last batch short), then with one
    // create per object: the same objects either way.
    let load = [
        "load",
        "--activities-per-customer",
        "3",
        "--timeline-customers",
        "0",
    ];
    bench(&[&load[..], &["--customers", "20", "--batch", "7"]].concat());
    bench(&[&load[..], &["--customers", "4", "--batch", "0"]].concat());
    let saved: Value =
        serde_json::from_slice(&std::fs::read(&state).expect("state file")).expect("state JSON");
    assert_eq!(saved["customers"].as_array().map(Vec::len), Some(24));
    // customer + request + 3 activities + a comment, per customer
    assert_eq!(saved["objects"], 24 * 6);
    // Each customer, batched or not, holds its whole journey: a request, three activities
    // (two inside the request) and a comment on the request.
    for sample in saved["customers"].as_array().expect("customers") {
        let id = sample["id"].as_str().expect("id");
        let journey: Value = reqwest::Client::new()
            .get(format!("{base}/v1/customers/{id}/timeline"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("timeline")
            .json()
            .await
            .expect("json");
        assert_eq!(journey["total"], 5, "the journey of {id}: {journey}");
        let inside = journey["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|o| o["parentId"].is_string())
            .count();
        assert_eq!(
            inside, 3,
            "two activities and the comment hang under the request"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&state)
            .expect("state")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the state file holds tokens");
    }

    for scenario in ["lookup", "ingest"] {
        let stdout = bench(&[
            "run",
            "--scenario",
            scenario,
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--concurrency",
            "4",
            "--json",
        ]);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "one JSON object per scenario: {stdout}");
        let result: Value = serde_json::from_str(lines[0]).expect("JSON");
        for key in [
            "scenario",
            "ops_per_sec",
            "p50_ms",
            "p99_ms",
            "p999_ms",
            "errors",
            "baseline_ops_per_sec",
            "ratio",
        ] {
            assert!(result.get(key).is_some(), "{key} missing from {result}");
        }
        assert_eq!(result["scenario"], scenario);
        assert_eq!(result["errors"], 0, "{result}");
        assert!(
            result["ops_per_sec"].as_f64().unwrap_or(0.0) > 0.0,
            "{result}"
        );
        assert!(
            result["baseline_ops_per_sec"].as_f64().unwrap_or(0.0) > 0.0,
            "{result}"
        );
        assert!(result["ratio"].as_f64().unwrap_or(0.0) > 0.0, "{result}");
        // Read from the server's /metrics around the run (process_cpu_seconds_total over
        // contextd_operations_total).
        assert!(
            result["server_cpu_us_per_op"].as_f64().unwrap_or(0.0) > 0.0,
            "{result}"
        );
        assert!(
            result["p50_ms"].as_f64().unwrap_or(0.0) <= result["p99_ms"].as_f64().unwrap_or(0.0)
        );
    }

    // Every lookup counted as a success found exactly one customer: check one by hand too,
    // in another format than stored, as the tool does.
    let sample = &saved["customers"][0];
    let digits: String = sample["mobile"]
        .as_str()
        .expect("mobile")
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let found: Value = reqwest::Client::new()
        .post(format!("{base}/v1/customers/search"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"terms": {"Context_Mobile_Phone": [digits]}}))
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    assert_eq!(found["total"], 1);
    assert_eq!(found["items"][0]["id"], sample["id"]);

    assert!(terminate(&mut server).success());
}
