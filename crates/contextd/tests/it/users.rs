//! `contextd users list|create|disable|enable|delete|reset-password` against a running server
//! : the real binary on both sides, the effect checked by signing in over HTTP.

use std::io::Write;
use std::process::{Output, Stdio};

use serde_json::{json, Value};

use crate::{contextd, serve_fresh, terminate, Served};

/// Runs `contextd users ARGS` against `base` with `token`, feeding `stdin`.
fn users(
    dir: &std::path::Path,
    base: &str,
    token: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    let mut child = contextd(dir)
        .arg("users")
        .args(args)
        .env("CONTEXTD_URL", base)
        .env("CONTEXTD_TOKEN", token)
        .env_remove("CONTEXTD_USER_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run contextd users");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("wait")
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "contextd users failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8")
}

#[track_caller]
fn failed(out: &Output, says: &str) {
    assert!(
        !out.status.success(),
        "must fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(says),
        "stderr should say '{says}': {stderr}"
    );
}

async fn sign_in(http: &reqwest::Client, base: &str, name: &str, password: &str) -> (u16, String) {
    let r = http
        .post(format!("{base}/v1/sessions"))
        .json(&json!({"partition": "lab", "name": name, "password": password}))
        .send()
        .await
        .expect("sign in");
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .unwrap_or_default()
        .to_owned();
    (r.status().as_u16(), cookie)
}

async fn whoami(http: &reqwest::Client, base: &str, cookie: &str) -> u16 {
    http.get(format!("{base}/v1/sessions/current"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("whoami")
        .status()
        .as_u16()
}

#[tokio::test]
async fn users_commands_create_list_disable_enable_reset_and_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Served {
        child: mut server,
        base,
        lab: token,
        ..
    } = serve_fresh(dir.path(), &[]).await;
    let http = reqwest::Client::new();
    let run = |args: &[&str], stdin: Option<&str>| users(dir.path(), &base, &token, args, stdin);

    // create: the password from stdin, or from the environment; never from argv.
    let created: Value = serde_json::from_str(&ok(&run(
        &[
            "create",
            "ada",
            "--role",
            "agent",
            "--password-stdin",
            "--json",
        ],
        Some("correct horse battery\n"),
    )))
    .expect("one JSON object");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(
        (&created["name"], &created["role"], &created["disabled"]),
        (&json!("ada"), &json!("agent"), &json!(false))
    );
    let out = contextd(dir.path())
        .args(["users", "create", "bob", "--role", "admin"])
        .env("CONTEXTD_URL", &base)
        .env("CONTEXTD_TOKEN", &token)
        .env("CONTEXTD_USER_PASSWORD", "another good password")
        .output()
        .expect("run");
    assert!(ok(&out).contains("created user bob"));
    failed(
        &run(&["create", "cy", "--role", "agent"], None),
        "--password-stdin",
    );
    failed(
        &run(
            &["create", "cy", "--role", "agent", "--password", "x"],
            None,
        ),
        "--password",
    );
    failed(
        &run(
            &["create", "ada", "--role", "agent", "--password-stdin"],
            Some("correct horse battery"),
        ),
        "a user named 'ada' exists",
    );
    failed(
        &run(
            &["create", "cy", "--role", "agent", "--password-stdin"],
            Some("short"),
        ),
        "password: at least 12 characters",
    );

    // list
    let listed: Value = serde_json::from_str(&ok(&run(&["list", "--json"], None))).expect("JSON");
    let names: Vec<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    // "admin" is the user the first start creates in both partitions.
    assert_eq!(names, ["ada", "admin", "bob"]);
    let table = ok(&run(&["list"], None));
    assert!(table
        .lines()
        .any(|l| l.contains(&id) && l.contains("ada") && l.contains("enabled")));

    // disable: the live session ends and sign-in is refused.
    let (status, cookie) = sign_in(&http, &base, "ada", "correct horse battery").await;
    assert_eq!(status, 201);
    assert_eq!(whoami(&http, &base, &cookie).await, 200);
    assert!(ok(&run(&["disable", "ada"], None)).contains("disabled user ada"));
    assert_eq!(
        whoami(&http, &base, &cookie).await,
        401,
        "the session ended"
    );
    assert_eq!(
        sign_in(&http, &base, "ada", "correct horse battery")
            .await
            .0,
        401
    );
    assert!(ok(&run(&["list"], None))
        .lines()
        .any(|l| l.contains("ada") && l.contains("disabled")));

    // enable, addressed by id
    let enabled: Value =
        serde_json::from_str(&ok(&run(&["enable", &id, "--json"], None))).expect("JSON");
    assert_eq!(enabled["disabled"], false);
    let (status, cookie) = sign_in(&http, &base, "ada", "correct horse battery").await;
    assert_eq!(status, 201, "enabled: sign-in works again");

    // reset-password: old sessions end, the old password is refused, the new one works.
    ok(&run(
        &["reset-password", "ada", "--password-stdin"],
        Some("a brand new password\r\n"),
    ));
    assert_eq!(whoami(&http, &base, &cookie).await, 401);
    assert_eq!(
        sign_in(&http, &base, "ada", "correct horse battery")
            .await
            .0,
        401
    );
    let (status, cookie) = sign_in(&http, &base, "ada", "a brand new password").await;
    assert_eq!(
        status, 201,
        "the trailing newline is not part of the password"
    );

    // delete
    let deleted: Value =
        serde_json::from_str(&ok(&run(&["delete", "ada", "--json"], None))).expect("JSON");
    assert_eq!(deleted, json!({"id": id, "name": "ada", "deleted": true}));
    assert_eq!(whoami(&http, &base, &cookie).await, 401);
    assert_eq!(
        sign_in(&http, &base, "ada", "a brand new password").await.0,
        401
    );
    failed(&run(&["disable", "ada"], None), "no user named");

    // The server's refusals reach the operator, with a non-zero exit: once the first start's
    // "admin" is gone, bob is the partition's last enabled admin.
    ok(&run(&["delete", "admin"], None));
    failed(&run(&["delete", "bob"], None), "last enabled admin");
    failed(
        &users(dir.path(), &base, "ctxd_wrong", &["list"], None),
        "401 Unauthorized",
    );
    assert!(terminate(&mut server).success());
}
