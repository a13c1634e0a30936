//! `contextd serve`'s metrics and report flags (README, "Metrics and logs") on the real binary.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{contextd, free_port, terminate, wait_ready};

#[tokio::test]
async fn metrics_move_to_the_operator_listener_and_the_report_is_logged_on_each_boundary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, operator) = (free_port(), free_port());
    let mut server = contextd(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("CONTEXTD_METRICS_LISTEN", format!("127.0.0.1:{operator}"))
        .args(["--stats-interval", "1s"])
        .env("CONTEXTD_LOG_FORMAT", "json")
        .env(
            "CONTEXTD_LOG",
            "contextd.status=info,contextd.stats=info,warn",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let stderr = BufReader::new(server.stderr.take().expect("stderr"));
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await;

    let main = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("sent");
    assert_eq!(main.status(), 404, "not on the main listener");
    let scraped = http
        .get(format!("http://127.0.0.1:{operator}/metrics"))
        .send()
        .await
        .expect("scraped");
    assert_eq!(scraped.status(), 200);
    let text = scraped.text().await.expect("text");
    // The main listener's requests, the refused scrape among them (no route there).
    let refused = r#"http_requests_total{method="GET",route="unmatched",status="404"} 1"#;
    assert!(text.contains(refused), "{text}");

    // Each boundary of a 1 s interval: a status line, then a summary.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut targets = Vec::new();
    while targets.len() < 4 && Instant::now() < deadline {
        let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let event: Value = serde_json::from_str(&line).expect("a JSON log line");
        let target = event["target"].as_str().unwrap_or_default().to_owned();
        if target.starts_with("contextd.stat") {
            assert_eq!(event["fields"]["source"], "server");
            targets.push(target);
        }
    }
    let expected = [
        "contextd.status",
        "contextd.stats",
        "contextd.status",
        "contextd.stats",
    ];
    assert_eq!(targets, expected);
    assert!(terminate(&mut server).success());
}

#[test]
fn a_report_interval_outside_a_second_to_a_day_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for interval in ["0s", "25h"] {
        // Were the interval accepted, this database URL would end the start at once.
        let out = contextd(dir.path())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--stats-interval",
                interval,
            ])
            .env("CONTEXTD_DATABASE_URL", "unknown://nowhere")
            .output()
            .expect("run");
        assert!(!out.status.success(), "{interval} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--stats-interval"), "{stderr}");
    }
}
