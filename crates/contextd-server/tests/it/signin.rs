//! Sign-in under abuse (issue 9, item 4): oversize names are refused before they cost memory
//! or a password check, and password checks run a bounded number at a time. (The memory
//! bound under a flood is measured on the real server process, in the `contextd` crate's tests.)

use std::time::Duration;

use contextd_core::service::ContextConfig;
use contextd_server::ServerConfig;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::support::{Resp, TestServer};

/// Taken by the tests that measure this process's memory or hold thousands of sockets, so they
/// don't disturb each other's measurements.
pub static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn sign_in(s: &TestServer, body: &Value) -> Resp {
    let r = s
        .http
        .post(format!("{}/v1/sessions", s.url))
        .json(body)
        .send()
        .await
        .expect("sent");
    TestServer::read(r).await
}

async fn add_user(s: &TestServer, name: &str, password: &str) {
    s.post(
        s.lab(),
        "/v1/users",
        json!({"name": name, "role": "agent", "password": password}),
    )
    .await
    .expect(201);
}

#[tokio::test]
async fn names_up_to_400_characters_get_the_usual_answer_longer_ones_400() {
    let s = TestServer::start().await;
    add_user(&s, "ada", "correct horse battery").await;
    // Characters, not bytes: 'é' is two bytes.
    let chars = |n: usize| "é".repeat(n);
    let attempt = |org: String, name: String| json!({"org": org, "partition": "lab", "name": name, "password": "wrong password!"});

    sign_in(&s, &attempt("default".into(), chars(400)))
        .await
        .expect(401);
    let long_name = sign_in(&s, &attempt("default".into(), chars(401))).await;
    long_name.expect(400);
    assert_eq!(long_name.str("/errors/0/field"), "name");
    assert!(long_name.str("/errors/0/message").contains("400"));

    sign_in(&s, &attempt(chars(400), "ada".into()))
        .await
        .expect(401);
    let long_org = sign_in(&s, &attempt(chars(401), "ada".into())).await;
    long_org.expect(400);
    assert_eq!(long_org.str("/errors/0/field"), "org");

    // A wrong password for a real user is still 401, the right one 201.
    sign_in(&s, &attempt("default".into(), "ada".into()))
        .await
        .expect(401);
    sign_in(
        &s,
        &json!({"partition": "lab", "name": "ada", "password": "correct horse battery"}),
    )
    .await
    .expect(201);

    // Only the attempts that were looked up in the default org are audited: the 400-character
    // name and the wrong password; the 401-character name never reached the store.
    let failures = s.get(s.lab(), "/v1/audit?action=signin.failed").await;
    assert_eq!(
        failures.at("/items").as_array().map(Vec::len),
        Some(2),
        "{}",
        failures.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_checks_beyond_the_bound_are_refused_with_429_and_retry_after() {
    let s = TestServer::start_with(
        ContextConfig::default(),
        ServerConfig {
            sign_in_concurrency: 1,
            // Off, so that every 429 below comes from the bound on password checks.
            sign_in_per_minute: 0,
            ..ServerConfig::default()
        },
    )
    .await;
    add_user(&s, "ada", "correct horse battery").await;
    // 200 at once against one permit: an Argon2id check takes milliseconds, so 200 of them
    // can't all run within the one second a sign-in waits for a permit.
    let answers: Vec<Resp> = futures::stream::iter(0..200)
        .map(|i| {
            let s = &s;
            async move {
                sign_in(
                    s,
                    &json!({"partition": "lab", "name": format!("user{i}"), "password": "guess guess guess"}),
                )
                .await
            }
        })
        .buffer_unordered(200)
        .collect()
        .await;
    let count = |status: u16| answers.iter().filter(|r| r.status == status).count();
    assert!(
        answers.iter().all(|r| r.status == 401 || r.status == 429),
        "only 401 and 429, no 5xx: {:?}",
        answers
            .iter()
            .map(|r| r.status.as_u16())
            .collect::<Vec<_>>()
    );
    assert!(count(401) >= 1, "some attempts were checked");
    assert!(count(429) >= 1, "the excess was refused");
    for r in answers.iter().filter(|r| r.status == 429) {
        r.expect(429);
        let retry: u64 = r
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("Retry-After in whole seconds");
        assert!(retry >= 1);
    }
    // Once the burst is over, sign-in works again.
    tokio::time::sleep(Duration::from_millis(100)).await;
    sign_in(
        &s,
        &json!({"partition": "lab", "name": "ada", "password": "correct horse battery"}),
    )
    .await
    .expect(201);
}
