//! `contextd watch` against the real binary: it prints the events written after it starts, one
//! JSON object per line with `--json`, until it is stopped; a refused token is exit status 6.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{contextd, serve_fresh, terminate};

#[tokio::test]
async fn watch_json_prints_each_event_written_after_it_starts_as_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut served = serve_fresh(dir.path(), &[]).await;
    let http = reqwest::Client::new();
    let create = |name: &str| {
        let request = http
            .post(format!("{}/v1/customers", served.base))
            .bearer_auth(&served.lab)
            .json(&json!({"fieldsets": ["cisco.base.customer"],
                "data": {"Context_First_Name": name}}));
        async move {
            let created: Value = request
                .send()
                .await
                .expect("create")
                .json()
                .await
                .expect("json");
            created["id"].as_str().expect("an id").to_owned()
        }
    };
    let before = create("Before").await;

    let mut watch = contextd(dir.path())
        .args(["watch", "--json"])
        .env("CONTEXTD_URL", &served.base)
        .env("CONTEXTD_TOKEN", &served.lab)
        .env_remove("CONTEXTD_CONNECTION_DATA")
        .env_remove("CONTEXTD_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("contextd watch");
    let stdout = watch.stdout.take().expect("stdout");
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    // It connects in its own time: write until a line comes, each write after it started.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut written = Vec::new();
    let line = loop {
        assert!(Instant::now() < deadline, "contextd watch printed nothing");
        written.push(create("During").await);
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(500)) {
            break line;
        }
    };
    let event: Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(event["type"], "object.created");
    assert_eq!(event["objectType"], "customer");
    let object = event["objectId"].as_str().expect("objectId").to_owned();
    assert!(
        written.contains(&object),
        "an event of a write made after it started"
    );
    assert_ne!(object, before);
    assert!(event["id"].as_u64().is_some());
    assert!(!line.contains("During"), "no value: {line}");

    watch.kill().expect("kill contextd watch");
    let _ = watch.wait();

    // A refused credential ends it at once with the client commands' exit status.
    let refused = contextd(dir.path())
        .args([
            "watch",
            "--url",
            &served.base,
            "--token",
            "ctxd_not_a_real_token",
        ])
        .env_remove("CONTEXTD_CONNECTION_DATA")
        .env_remove("CONTEXTD_CONFIG")
        .output()
        .expect("contextd watch");
    assert_eq!(refused.status.code(), Some(6));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.starts_with("error: unauthorized"), "{stderr}");
    terminate(&mut served.child);
}
