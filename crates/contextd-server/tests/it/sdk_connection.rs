//! The SDK's connection against a real server: a rotation under load costs no call, the state
//! listener follows registered → invalid → unregistered (and unreachable), a component following
//! its registration resource switches by itself, and "test connection" names the step that fails
//! — through a real forwarding proxy too.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, SubsecRound, Utc};
use contextd_client::proto::connection::ConnectionData;
use contextd_client::proto::connectors::{
    AppType, ConnectorCreated, NewConnector, RotateConnector,
};
use contextd_client::proto::Kind;
use contextd_client::registration::{MemoryStore, Registration, Verdict};
use contextd_client::{Client, ConnectionCheck, ConnectionState, Error, Settings, StepOutcome};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

use crate::support::{input, new_customer, TestServer};

fn settings() -> Settings {
    Settings::standard().with_timeout(Duration::from_millis(15_000))
}

fn sdk(connection_data: &str) -> Client {
    Client::from_connection_data(connection_data, settings()).expect("an SDK client")
}

fn decoded(connection_data: &str) -> ConnectionData {
    let json = base64::engine::general_purpose::STANDARD
        .decode(connection_data)
        .expect("base64");
    serde_json::from_slice(&json).expect("connectionData JSON")
}

fn encoded(data: &ConnectionData) -> String {
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(data).expect("JSON"))
}

async fn connector(s: &TestServer, name: &str) -> ConnectorCreated {
    s.client(s.prod())
        .create_connector(&NewConnector {
            name: name.into(),
            app_type: AppType::Voice,
            version: Some("1.0".into()),
        })
        .await
        .expect("create a connector")
}

async fn rotate(s: &TestServer, id: Uuid, grace: u64) -> String {
    s.client(s.prod())
        .rotate_connector(
            id,
            &RotateConnector {
                grace_seconds: Some(grace),
            },
        )
        .await
        .expect("rotate")
        .connection_data
}

async fn last_seen(s: &TestServer, id: Uuid) -> DateTime<Utc> {
    s.client(s.prod())
        .connectors()
        .await
        .expect("list connectors")
        .into_iter()
        .find(|c| c.id == id)
        .and_then(|c| c.last_seen)
        .expect("the connector has been seen")
}

/// Now, to the millisecond, as the server keeps `lastSeen`.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// A port nobody listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Waits (up to 10 s) until `state` holds `expected`.
async fn state_becomes(
    state: &mut tokio::sync::watch::Receiver<ConnectionState>,
    expected: ConnectionState,
) {
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        state
            .wait_for(|s| *s == expected)
            .await
            .map(|_| ())
            .expect("the client is alive")
    })
    .await;
    assert!(
        waited.is_ok(),
        "the state never became {expected}: {}",
        *state.borrow()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_under_load_is_picked_up_without_a_single_failed_call() {
    let s = TestServer::start().await;
    let created = connector(&s, "IVR under load").await;
    let id = created.connector.id;
    let client = sdk(&created.connection_data);
    let customer = new_customer(&client, json!({"Context_First_Name": "Loaded"})).await;

    // Every state change the listener sees during the run.
    let changes = Arc::new(Mutex::new(Vec::new()));
    let mut listener = client.connection_state();
    let seen = changes.clone();
    tokio::spawn(async move {
        while listener.changed().await.is_ok() {
            seen.lock().unwrap().push(*listener.borrow_and_update());
        }
    });

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for worker in 0..8 {
        let (client, stop, ok, errors) = (client.clone(), stop.clone(), ok.clone(), errors.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let result = if n.is_multiple_of(2) {
                    client.get(Kind::Customer, customer).await.map(|_| ())
                } else {
                    let activity = input(json!({
                        "customerId": customer.to_string(),
                        "mediaType": "voice",
                        "fieldsets": ["cisco.base.pod"],
                        "data": {"Context_Notes": format!("worker {worker}, call {n}")},
                    }));
                    client.create(Kind::Activity, &activity).await.map(|_| ())
                };
                match result {
                    Ok(()) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => errors.lock().unwrap().push(e.to_string()),
                }
            }
        }));
    }

    // A rotation with the default grace, and the component switches mid-run…
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = rotate(&s, id, 3600).await;
    let swapped = now();
    client
        .set_connection_data(Some(&second))
        .expect("the new connectionData");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        last_seen(&s, id).await >= swapped,
        "a token was fetched with the new connectionData"
    );

    // …then one without grace: the secret in use stops at once (tokens already issued live
    // on), and the component switches again.
    let third = rotate(&s, id, 0).await;
    let rotated = now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before_swap = ok.load(Ordering::Relaxed);
    client
        .set_connection_data(Some(&third))
        .expect("the newest connectionData");
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("a worker");
    }

    let errors = errors.lock().unwrap().clone();
    let total = ok.load(Ordering::Relaxed);
    assert!(
        errors.is_empty(),
        "{} of {} calls failed: {:?}",
        errors.len(),
        total + errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(total > 50, "only {total} calls in ~2 s");
    assert!(total > before_swap, "calls were made after the last swap");
    // Only the newest secret is accepted since the grace-0 rotation, so a token fetched after
    // it was fetched with the newest connectionData.
    assert!(
        last_seen(&s, id).await >= rotated,
        "the newest connectionData was exchanged"
    );
    for old in [&created.connection_data, &second] {
        assert!(
            matches!(sdk(old).status().await, Err(Error::Unauthorized { .. })),
            "a replaced secret no longer works"
        );
    }
    client.status().await.expect("the client works on");
    assert_eq!(
        *client.connection_state().borrow(),
        ConnectionState::Registered
    );
    assert!(
        changes.lock().unwrap().is_empty(),
        "the state never left registered: {:?}",
        changes.lock().unwrap()
    );
}

#[tokio::test]
async fn the_state_listener_hears_registered_invalid_unreachable_and_unregistered() {
    let s = TestServer::start().await;
    let created = connector(&s, "desktop").await;
    let client = sdk(&created.connection_data);
    let other = sdk(&created.connection_data);
    let mut state = client.connection_state();
    let mut other_state = other.connection_state();

    client.status().await.expect("a first call");
    other.status().await.expect("a first call");
    assert_eq!(*state.borrow_and_update(), ConnectionState::Registered);

    // Revoked: with the token dropped (the same connectionData set again) the next exchange is
    // refused; without, the revoked token's 401 leads to the same refused exchange.
    s.client(s.prod())
        .revoke_connector(created.connector.id)
        .await
        .expect("revoke");
    client
        .set_connection_data(Some(&created.connection_data))
        .expect("the same connectionData");
    let refused = client.status().await;
    assert!(
        matches!(refused, Err(Error::Unauthorized { .. })),
        "{refused:?}"
    );
    state_becomes(&mut state, ConnectionState::Invalid).await;
    assert!(matches!(
        other.status().await,
        Err(Error::Unauthorized { .. })
    ));
    state_becomes(&mut other_state, ConnectionState::Invalid).await;

    // Deregistered: no request, at once.
    client.set_connection_data(None).expect("none");
    state_becomes(&mut state, ConnectionState::Unregistered).await;
    assert!(matches!(client.status().await, Err(Error::NotRegistered)));

    // A service URL nobody listens on.
    let mut dead = decoded(&s.org.connection_data);
    dead.service_url = format!("http://127.0.0.1:{}", closed_port());
    let unreachable = Client::from_connection_data(
        &encoded(&dead),
        Settings::standard().with_timeout(Duration::from_millis(1000)),
    )
    .expect("a client");
    let mut dead_state = unreachable.connection_state();
    assert_eq!(*dead_state.borrow_and_update(), ConnectionState::Registered);
    let e = unreachable.status().await.unwrap_err();
    assert!(
        matches!(e, Error::Unreachable { .. } | Error::Timeout { .. }),
        "{e:?}"
    );
    state_becomes(&mut dead_state, ConnectionState::Unreachable).await;

    // Registered again: a working connectionData brings the state back.
    client
        .set_connection_data(Some(&s.org.connection_data))
        .expect("the bootstrap connectionData");
    client.status().await.expect("works again");
    state_becomes(&mut state, ConnectionState::Registered).await;
}

#[tokio::test]
async fn a_component_following_its_registration_switches_on_re_registration() {
    let s = TestServer::start().await;
    let created = connector(&s, "chat").await;
    let registration = Registration::new(
        MemoryStore::with_connection_data(created.connection_data.clone()),
        |_data: String| async { Verdict::Valid },
    );
    let client = sdk(&created.connection_data);
    client.status().await.expect("registered");
    let _following = client.follow(registration.subscribe().await.expect("subscribe"));

    // The administrator rotates without grace and registers the component again with the new
    // connectionData: deregister, then register (as the resource requires).
    let rotated = rotate(&s, created.connector.id, 0).await;
    let mut state = client.connection_state();
    registration
        .set_connection_data("")
        .await
        .expect("deregister");
    state_becomes(&mut state, ConnectionState::Unregistered).await;
    registration
        .set_connection_data(&rotated)
        .await
        .expect("register again");
    state_becomes(&mut state, ConnectionState::Registered).await;
    let swapped = now();
    client
        .whoami()
        .await
        .expect("the new connectionData works without a restart");
    assert!(last_seen(&s, created.connector.id).await >= swapped);
}

/// A minimal HTTP forward proxy (absolute-form requests over plain HTTP): each connection is
/// relayed to the host its first request names. Counts the connections it relayed.
async fn forward_proxy() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let relayed = Arc::new(AtomicUsize::new(0));
    let count = relayed.clone();
    tokio::spawn(async move {
        while let Ok((mut downstream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match downstream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let target = text.split(' ').nth(1).unwrap_or_default();
                let Some(authority) = target
                    .strip_prefix("http://")
                    .and_then(|rest| rest.split('/').next())
                else {
                    return;
                };
                let Ok(mut upstream) = TcpStream::connect(authority).await else {
                    let _ = downstream
                        .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                if upstream.write_all(&head).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await;
                }
            });
        }
    });
    (url, relayed)
}

#[tokio::test]
async fn test_connection_checks_every_step_and_names_the_one_that_fails() {
    let s = TestServer::start().await;
    let data = s.org.connection_data.clone();

    let report = Client::test_connection(&data, settings()).await;
    assert!(report.ok, "{report:?}");
    let outcomes: Vec<_> = report.steps.iter().map(|s| (s.step, s.outcome)).collect();
    assert_eq!(
        outcomes,
        [
            (ConnectionCheck::ConnectionData, StepOutcome::Ok),
            (ConnectionCheck::Proxy, StepOutcome::Skipped),
            (ConnectionCheck::Reachability, StepOutcome::Ok),
            (ConnectionCheck::ProductionCredentials, StepOutcome::Ok),
            (ConnectionCheck::LabCredentials, StepOutcome::Ok),
        ]
    );
    assert!(
        report.steps[3].message.contains("production"),
        "{}",
        report.steps[3].message
    );
    assert!(
        report.steps[4].message.contains("lab"),
        "{}",
        report.steps[4].message
    );

    // Through a working proxy: every request goes through it.
    let (proxy, relayed) = forward_proxy().await;
    let report = Client::test_connection(&data, settings().with_proxy(proxy.clone())).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.steps[1].outcome, StepOutcome::Ok);
    assert_eq!(report.steps[1].message, proxy);
    assert!(
        relayed.load(Ordering::SeqCst) >= 1,
        "the proxy relayed the calls"
    );

    // A proxy that can't reach the service: its 502 is the service being unreachable.
    let mut elsewhere = decoded(&data);
    elsewhere.service_url = format!("http://127.0.0.1:{}", closed_port());
    let report = Client::test_connection(&encoded(&elsewhere), settings().with_proxy(proxy)).await;
    let failed = report.failed_step().expect("a failure");
    assert_eq!(failed.step, ConnectionCheck::Reachability);
    assert_eq!(failed.error_kind, Some("unreachable"), "{}", failed.message);

    // A changed lab secret: production passes, lab is refused.
    let mut wrong_lab = decoded(&data);
    wrong_lab.credentials_lab_mode.client_secret.push('x');
    let mut report = Client::test_connection(&encoded(&wrong_lab), settings()).await;
    let failed = report.failed_step().expect("a failure");
    assert_eq!(failed.step, ConnectionCheck::LabCredentials);
    assert!(failed.message.contains("refused"), "{}", failed.message);
    assert_eq!(report.steps[3].outcome, StepOutcome::Ok);
    assert!(matches!(
        report.take_error(),
        Some(Error::Unauthorized { .. })
    ));
    let text = serde_json::to_string(&report).expect("JSON");
    assert!(!text.contains(&wrong_lab.credentials_lab_mode.client_secret));
    assert!(!text.contains(&wrong_lab.credentials.client_secret));

    // Credentials of the wrong partition: production's set in both places.
    let mut swapped = decoded(&data);
    swapped.credentials_lab_mode = swapped.credentials.clone();
    let report = Client::test_connection(&encoded(&swapped), settings()).await;
    let failed = report.failed_step().expect("a failure");
    assert_eq!(failed.step, ConnectionCheck::LabCredentials);
    assert!(
        failed.message.contains("production partition"),
        "{}",
        failed.message
    );
}
