//! Sign-in floods against the real server process (issue 9, item 4): 20,000 attempts with
//! unique 10 KB names leave its resident memory within a stated bound and are all answered
//! 4xx. Measured on a process of its own, so no other test's allocations blur the figure.

use std::time::Instant;

use futures::StreamExt;
use serde_json::json;

use crate::{serve_fresh, terminate, Served};

/// The bound on the server's memory growth over 20,000 oversize attempts. Before the fix each
/// attempt left its 10 KB name in the limiter for good (200 MB in all) and ran an Argon2id
/// check (19 MiB each, unbounded in number).
const GROWTH_BOUND: u64 = 64 * 1024 * 1024;

/// Resident memory of a process, bytes.
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line");
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_sign_ins_with_10_kb_names_leave_memory_bounded_and_get_4xx() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Served {
        child: mut server,
        base,
        lab,
        ..
    } = serve_fresh(dir.path(), &[("CONTEXTD_LOG", "warn")]).await;
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{base}/v1/users"))
        .bearer_auth(&lab)
        .json(&json!({"name": "ada", "role": "agent", "password": "correct horse battery"}))
        .send()
        .await
        .expect("create user");
    assert_eq!(created.status(), 201);

    let attempt = |i: usize| {
        let (http, base) = (&http, &base);
        async move {
            // Unique 10 KB names; every fifth attempt also has a 10 KB organization name.
            let name = format!("{i:08}{}", "n".repeat(10_232));
            let org = if i.is_multiple_of(5) {
                format!("{i:08}{}", "o".repeat(10_232))
            } else {
                "default".to_owned()
            };
            let body = format!(
                r#"{{"org": "{org}", "partition": "lab", "name": "{name}", "password": "guess guess guess"}}"#
            );
            http.post(format!("{base}/v1/sessions"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    let run = |range: std::ops::Range<usize>| {
        futures::stream::iter(range)
            .map(attempt)
            .buffer_unordered(32)
    };
    // Warm up: the allocator's arenas and the connection pool reach their working size.
    run(0..500).for_each(|_| async {}).await;
    let pid = server.id();
    let before = resident_bytes(pid);
    let started = Instant::now();
    let mut answers = run(500..20_500).enumerate();
    while let Some((n, status)) = answers.next().await {
        assert_eq!(status, 400, "attempt {n}: an oversize name is a 400");
        if n.is_multiple_of(2_000) {
            let grown = resident_bytes(pid).saturating_sub(before);
            assert!(
                grown < GROWTH_BOUND,
                "after {n} attempts the server's resident memory grew by {} MiB",
                grown >> 20
            );
        }
    }
    let after = resident_bytes(pid);
    assert!(
        after.saturating_sub(before) < GROWTH_BOUND,
        "20,000 oversize sign-ins grew the server's resident memory by {} MiB (bound {} MiB)",
        after.saturating_sub(before) >> 20,
        GROWTH_BOUND >> 20
    );
    eprintln!(
        "20,000 oversize sign-ins in {:?}; server resident memory {} → {} MiB",
        started.elapsed(),
        before >> 20,
        after >> 20
    );
    // The flood cost no one else anything: a real user still signs in.
    let ok = http
        .post(format!("{base}/v1/sessions"))
        .json(&json!({"partition": "lab", "name": "ada", "password": "correct horse battery"}))
        .send()
        .await
        .expect("sign in");
    assert_eq!(ok.status(), 201);
    // Nothing was looked up: no failed sign-in was audited.
    let failures: serde_json::Value = http
        .get(format!("{base}/v1/audit?action=signin.failed"))
        .bearer_auth(&lab)
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    assert_eq!(failures["items"].as_array().map(Vec::len), Some(0));
    assert!(terminate(&mut server).success());
}
