//! Webhooks: signed CloudEvents delivered in event order, filters, retries with the same
//! `webhook-id`, dead letters and redelivery, a restart mid-stream, the private-address rule,
//! admin-only administration, partition isolation, and secrets sealed in the database.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use contextd_client::proto::access::Role;
use contextd_client::proto::events::{
    DeliveriesQuery, Delivery, DeliveryOutcome, Event, EventFilter, EventType, WebhookCreated,
    WebhookInput,
};
use contextd_client::webhooks::verify_signature;
use contextd_client::Client;
use contextd_core::crypto::{Keyring, MasterKey};
use contextd_core::service::{Context, ContextConfig};
use contextd_core::Scope;
use contextd_proto::{Kind, ObjectId, Partition};
use contextd_server::events::EventsConfig;
use contextd_server::ServerConfig;
use contextd_store_sqlite::{SqliteKeyStore, SqliteStore};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::support::{forbidden, input, key, new_customer, patch, TestServer};

/// A secret given at registration (base64 of 32 bytes).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo=";
/// How long a test waits for deliveries.
const PATIENCE: Duration = Duration::from_secs(30);

/// A server that may deliver to this machine, retrying failures for `retry_for`.
fn config(retry_for: Duration) -> ServerConfig {
    ServerConfig {
        events: EventsConfig {
            allow_private_webhooks: true,
            webhook_retry_for: retry_for,
            webhook_timeout: Duration::from_secs(5),
            ..EventsConfig::default()
        },
        ..ServerConfig::default()
    }
}

async fn server(retry_for: Duration) -> TestServer {
    TestServer::start_with(ContextConfig::default(), config(retry_for)).await
}

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    webhook_id: String,
    timestamp: String,
    signature: String,
    content_type: String,
    body: Vec<u8>,
}

impl Received {
    fn cloud_event(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn event(&self) -> Event {
        serde_json::from_value(self.cloud_event()["data"].clone()).expect("an Event as data")
    }
}

#[derive(Default)]
struct ReceiverState {
    got: Mutex<Vec<Received>>,
    /// Answer 500 to this many more requests.
    fail_next: AtomicUsize,
    /// Take this long to answer.
    delay_ms: AtomicU64,
}

/// A webhook receiver on this machine.
struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Self {
        Self::on(TcpListener::bind("127.0.0.1:0").await.expect("bind")).await
    }

    async fn on(listener: TcpListener) -> Self {
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(ReceiverState::default());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state, task }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn got(&self) -> Vec<Received> {
        self.state.got.lock().expect("lock").clone()
    }

    /// Waits until the receiver got `n` requests; returns them.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let got = self.got();
            if got.len() >= n {
                return got;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{} of {n} deliveries arrived",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let delay = state.delay_ms.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    state.got.lock().expect("lock").push(Received {
        webhook_id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        content_type: header("content-type"),
        body: body.to_vec(),
    });
    let failing = state
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

/// The signature of a delivery, computed here from the secret as Standard Webhooks define it.
fn expected_signature(secret: &str, r: &Received) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64 secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("an HMAC key");
    mac.update(format!("{}.{}.", r.webhook_id, r.timestamp).as_bytes());
    mac.update(&r.body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Asserts a delivery is a signed CloudEvent of `event` from `scope`.
#[track_caller]
fn assert_delivery_of(r: &Received, event: &Event, scope: Scope, secret: &str) {
    assert_eq!(r.content_type, "application/cloudevents+json");
    assert_eq!(r.webhook_id, format!("evt_{}", event.id));
    assert_eq!(r.signature, expected_signature(secret, r));
    assert!(verify_signature(
        secret,
        &r.webhook_id,
        &r.timestamp,
        &r.body,
        &r.signature
    ));
    let sent: i64 = r.timestamp.parse().expect("unix seconds");
    assert!((chrono::Utc::now().timestamp() - sent).abs() < 120);
    let ce = r.cloud_event();
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(ce["id"], event.id.to_string());
    assert_eq!(
        ce["source"],
        format!("/contextd/{}/{}", scope.org, scope.partition.as_str())
    );
    assert_eq!(ce["type"], format!("contextd.{}", event.event_type));
    assert_eq!(ce["subject"], event.object_id.to_string());
    assert_eq!(ce["datacontenttype"], "application/json");
    let time = chrono::DateTime::parse_from_rfc3339(ce["time"].as_str().expect("time"));
    assert_eq!(
        time.map(|t| t.timestamp_millis()),
        Ok(event.time.timestamp_millis())
    );
    assert_eq!(&r.event(), event);
}

/// The outbox's events of `scope` after `after`, oldest first.
async fn events(context: &Context, scope: Scope, after: u64) -> Vec<Event> {
    let all = context.all_events_after(after, 500).await.expect("events");
    all.into_iter()
        .filter(|e| e.scope == scope)
        .map(|e| e.event)
        .collect()
}

fn lab(s: &TestServer) -> Scope {
    Scope {
        org: s.org.org_id,
        partition: Partition::Lab,
    }
}

async fn register(admin: &Client, url: String) -> WebhookCreated {
    let input = WebhookInput {
        url,
        description: "test receiver".into(),
        ..WebhookInput::default()
    };
    admin.create_webhook(&input).await.expect("webhook")
}

/// Waits until the webhook's attempts satisfy `done`; returns them, newest first.
async fn attempts(
    admin: &Client,
    webhook: Uuid,
    outcome: Option<&str>,
    done: impl Fn(&[Delivery]) -> bool,
) -> Vec<Delivery> {
    let query = DeliveriesQuery {
        outcome: outcome.map(str::to_owned),
        limit: None,
    };
    let started = Instant::now();
    loop {
        let items = admin
            .webhook_deliveries(webhook, &query)
            .await
            .expect("deliveries")
            .items;
        if done(&items) {
            return items;
        }
        assert!(started.elapsed() < PATIENCE, "attempts so far: {items:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn customer(admin: &Client, name: &str) -> ObjectId {
    new_customer(admin, json!({"Context_First_Name": name})).await
}

#[tokio::test]
async fn deliveries_are_signed_cloudevents_of_the_events_the_filter_passes() {
    let s = server(Duration::from_secs(60)).await;
    let admin = s.client(s.lab());
    let (all, picky) = (Receiver::start().await, Receiver::start().await);
    let x = customer(&admin, "Xavier").await;
    let everything = register(&admin, all.url()).await;
    assert!(everything.secret.starts_with("whsec_"));
    let only = WebhookInput {
        url: picky.url(),
        types: vec![EventType::Created],
        filter: EventFilter {
            customer_id: Some(x),
            ..EventFilter::default()
        },
        secret: Some(SECRET.into()),
        description: "activities of x".into(),
    };
    let only = admin.create_webhook(&only).await.expect("webhook");
    assert_eq!(only.secret, SECRET, "a given secret is kept");
    let registered_at = everything.webhook.delivered_through;

    let chat = input(json!({"customerId": x, "mediaType": "chat"}));
    let activity = admin.create(Kind::Activity, &chat).await.expect("activity");
    let rename = patch(json!({"data": {"Context_First_Name": "Xavi"}}));
    admin
        .patch(Kind::Customer, x, &rename, None)
        .await
        .expect("patch");
    let y = customer(&admin, "Yolanda").await;
    let voice = input(json!({"customerId": y, "mediaType": "voice"}));
    admin
        .create(Kind::Activity, &voice)
        .await
        .expect("activity");

    let expected = events(&s.context, lab(&s), registered_at).await;
    assert!(expected.len() >= 4, "{expected:?}");
    let got = all.wait_for(expected.len()).await;
    assert_eq!(got.len(), expected.len(), "each event once");
    for (r, event) in got.iter().zip(&expected) {
        assert_delivery_of(r, event, lab(&s), &everything.secret);
    }
    assert!(
        !got.iter()
            .any(|r| r.event().object_id == x && r.event().event_type == EventType::Created),
        "events before the registration are not delivered"
    );

    let passing: Vec<&Event> = expected
        .iter()
        .filter(|e| e.event_type == EventType::Created && e.customer_id == Some(x))
        .collect();
    assert_eq!(passing.len(), 1);
    assert_eq!(passing[0].object_id, activity.id);
    let got = picky.wait_for(1).await;
    assert_delivery_of(&got[0], passing[0], lab(&s), SECRET);

    // The filtered webhook's cursor passes the events it skips; neither shows its secret.
    let last = expected.last().map(|e| e.id);
    let started = Instant::now();
    loop {
        let listed = s.get(s.lab(), "/v1/webhooks").await;
        listed.expect(200);
        let items = listed.body.as_array().expect("a list").clone();
        assert_eq!(items.len(), 2);
        assert!(items.iter().all(|w| w.get("secret").is_none()));
        if items.iter().all(|w| w["deliveredThrough"].as_u64() == last) {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "{items:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(picky.got().len(), 1, "nothing else passed the filter");
}

#[tokio::test]
async fn a_failing_receiver_gets_the_same_webhook_id_until_it_answers_2xx() {
    let s = server(Duration::from_secs(60)).await;
    let admin = s.client(s.lab());
    let receiver = Receiver::start().await;
    receiver.state.fail_next.store(2, Ordering::SeqCst);
    let webhook = register(&admin, receiver.url()).await;
    customer(&admin, "Retry").await;

    let got = receiver.wait_for(3).await;
    let event = &events(&s.context, lab(&s), webhook.webhook.delivered_through).await[0];
    for r in &got {
        assert_delivery_of(r, event, lab(&s), &webhook.secret);
    }
    let items = attempts(&admin, webhook.webhook.id, None, |d| d.len() >= 3).await;
    let summary: Vec<_> = items
        .iter()
        .map(|d| (d.attempt, d.outcome, d.status, d.event_id))
        .collect();
    assert_eq!(
        summary,
        [
            (3, DeliveryOutcome::Delivered, Some(200), event.id),
            (2, DeliveryOutcome::Failed, Some(500), event.id),
            (1, DeliveryOutcome::Failed, Some(500), event.id),
        ]
    );
    assert!(items[1].error.is_some() && items[0].error.is_none());
    let failed = attempts(&admin, webhook.webhook.id, Some("failed"), |_| true).await;
    assert_eq!(failed.len(), 2);
    assert!(
        items[0].at - items[2].at >= chrono::Duration::milliseconds(900),
        "backoff"
    );

    // Deleted: its attempts go, and so do its deliveries.
    admin
        .delete_webhook(webhook.webhook.id)
        .await
        .expect("delete");
    assert!(admin.webhooks().await.expect("list").is_empty());
    let gone = admin
        .webhook_deliveries(webhook.webhook.id, &DeliveriesQuery::default())
        .await;
    crate::support::not_found(gone);
    customer(&admin, "After").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        receiver.got().len(),
        3,
        "nothing delivered after the deletion"
    );
}

#[tokio::test]
async fn a_receiver_that_stays_down_gets_a_dead_letter_then_later_events_and_a_redelivery() {
    let s = server(Duration::from_secs(2)).await;
    let admin = s.client(s.lab());
    // A port with nobody listening, until the receiver comes back on it.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let webhook = register(&admin, format!("http://{addr}/hook")).await;
    let id = webhook.webhook.id;
    customer(&admin, "Lost").await;
    let first = events(&s.context, lab(&s), webhook.webhook.delivered_through).await[0].clone();

    let dead = attempts(&admin, id, Some("dead"), |d| !d.is_empty()).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event_id, first.id);
    assert_eq!(dead[0].outcome, DeliveryOutcome::Dead);
    assert!(dead[0].attempt >= 2 && dead[0].status.is_none());
    assert!(dead[0]
        .error
        .as_deref()
        .is_some_and(|e| e.contains("connect")));
    let all = attempts(&admin, id, None, |_| true).await;
    assert!(all[1..]
        .iter()
        .all(|d| d.outcome == DeliveryOutcome::Failed));
    let listed = admin.webhooks().await.expect("list");
    assert_eq!(listed[0].dead_letters, 1);
    assert_eq!(
        listed[0].delivered_through, first.id,
        "moved past the dead letter"
    );

    let receiver = Receiver::on(TcpListener::bind(addr).await.expect("rebind")).await;
    customer(&admin, "Found").await;
    let got = receiver.wait_for(1).await;
    assert_ne!(
        got[0].event().id,
        first.id,
        "a dead letter is not sent again by itself"
    );
    assert!(got[0].event().id > first.id);

    let again = admin.redeliver(id, dead[0].id).await.expect("redeliver");
    assert_eq!(
        (again.event_id, again.attempt, again.outcome, again.status),
        (first.id, 1, DeliveryOutcome::Delivered, Some(200))
    );
    let got = receiver.wait_for(2).await;
    assert_delivery_of(&got[1], &first, lab(&s), &webhook.secret);
    let latest = attempts(&admin, id, None, |d| d.iter().any(|a| a.id == again.id)).await;
    assert!(latest.contains(&again), "the redelivery is recorded");
    let unknown = admin.redeliver(id, again.id + 1000).await;
    crate::support::not_found(unknown);
}

#[tokio::test]
async fn a_burst_is_delivered_in_event_order_each_event_once() {
    let s = server(Duration::from_secs(60)).await;
    let admin = s.client(s.lab());
    let receiver = Receiver::start().await;
    let webhook = register(&admin, receiver.url()).await;
    let writes = (0..30).map(|i| {
        let admin = admin.clone();
        async move {
            let c = customer(&admin, &format!("Burst {i}")).await;
            let renamed = patch(json!({"data": {"Context_First_Name": format!("Burst {i}b")}}));
            admin
                .patch(Kind::Customer, c, &renamed, None)
                .await
                .expect("patch");
        }
    });
    futures::future::join_all(writes).await;
    let expected = events(&s.context, lab(&s), webhook.webhook.delivered_through).await;
    assert!(expected.len() >= 60);
    let got = receiver.wait_for(expected.len()).await;
    let ids: Vec<u64> = got.iter().map(|r| r.event().id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order: {ids:?}");
    let want: Vec<u64> = expected.iter().map(|e| e.id).collect();
    assert_eq!(ids, want);
}

/// A server over existing files, as after a restart.
struct Restarted {
    context: Arc<Context>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Restarted {
    async fn start(dir: &Path, master: MasterKey, config: ServerConfig) -> Self {
        let store = SqliteStore::open(&dir.join("contextd.db")).expect("open the data");
        let keys = SqliteKeyStore::open(&dir.join("keys.db")).expect("open the keys");
        let keyring = Keyring::new(master, Arc::new(keys), 1000);
        let context = Arc::new(Context::new(
            Arc::new(store),
            keyring,
            ContextConfig::default(),
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let (tx, rx) = oneshot::channel();
        tokio::spawn(contextd_server::serve(
            listener,
            context.clone(),
            config,
            async {
                let _ = rx.await;
            },
        ));
        Self {
            context,
            shutdown: Some(tx),
        }
    }
}

impl Drop for Restarted {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

#[tokio::test]
async fn a_restart_mid_stream_skips_no_event() {
    let mut s = server(Duration::from_secs(60)).await;
    let admin = s.client(s.lab());
    let receiver = Receiver::start().await;
    receiver.state.delay_ms.store(100, Ordering::SeqCst);
    let webhook = register(&admin, receiver.url()).await;
    for i in 0..25 {
        customer(&admin, &format!("Stream {i}")).await;
    }
    let scope = lab(&s);
    let expected = events(&s.context, scope, webhook.webhook.delivered_through).await;
    receiver.wait_for(3).await;

    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().expect("tempdir"));
    let master = s.master.clone();
    s.stop().await;
    let at_stop = receiver.got().len();
    assert!(at_stop < expected.len(), "stopped mid-stream");

    let again = Restarted::start(dir.path(), master, config(Duration::from_secs(60))).await;
    let started = Instant::now();
    loop {
        let got: Vec<u64> = receiver.got().iter().map(|r| r.event().id).collect();
        if expected.iter().all(|e| got.contains(&e.id)) {
            // First deliveries in event order; a repeat only of what was in flight.
            let mut firsts = got.clone();
            firsts.dedup();
            let mut seen = std::collections::HashSet::new();
            firsts.retain(|id| seen.insert(*id));
            assert!(firsts.windows(2).all(|w| w[0] < w[1]), "{got:?}");
            assert!(got.len() <= expected.len() + 2, "{got:?}");
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "after the restart got {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kept = events(&again.context, scope, webhook.webhook.delivered_through).await;
    assert_eq!(kept, expected);
}

#[tokio::test]
async fn private_addresses_are_refused_unless_the_server_allows_them() {
    let s = TestServer::start().await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]/hook",
        "http://10.0.0.8/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://2130706433/",
        "http://[::ffff:127.0.0.1]/",
        "http://224.0.0.1/",
    ] {
        let r = s.post(s.lab(), "/v1/webhooks", json!({"url": url})).await;
        r.expect(400);
        assert!(
            r.body.to_string().contains("--allow-private-webhooks"),
            "{url}: {}",
            r.body
        );
    }
    let allowed = server(Duration::from_secs(60)).await;
    let r = allowed
        .post(
            allowed.lab(),
            "/v1/webhooks",
            json!({"url": "http://127.0.0.1:9/hook"}),
        )
        .await;
    r.expect(201);
    assert!(r.str("/secret").starts_with("whsec_"));
    assert_eq!(
        r.headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
}

#[tokio::test]
async fn registrations_are_checked_and_a_partition_has_at_most_twenty() {
    let s = server(Duration::from_secs(60)).await;
    let hook = "http://127.0.0.1:9/hook";
    let long = format!("https://example.com/{}", "a".repeat(2048));
    for (body, field) in [
        (json!({"url": "ftp://example.com/"}), "url"),
        (json!({"url": "/relative"}), "url"),
        (json!({"url": "https://user:pw@example.com/"}), "url"),
        (json!({"url": long}), "url"),
        (json!({"url": hook, "secret": "whsec_c2hvcnQ="}), "secret"),
        (
            json!({"url": hook, "secret": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
            "secret",
        ),
        (
            json!({"url": hook, "secret": "whsec_not base64!"}),
            "secret",
        ),
    ] {
        let r = s.post(s.lab(), "/v1/webhooks", body.clone()).await;
        r.expect(400);
        assert_eq!(r.str("/errors/0/field"), field, "{body}: {}", r.body);
    }
    let r = s
        .post(
            s.lab(),
            "/v1/webhooks",
            json!({"url": hook, "types": ["object.nope"]}),
        )
        .await;
    r.expect(400);
    let admin = s.client(s.lab());
    for _ in 0..20 {
        register(&admin, hook.into()).await;
    }
    let r = s.post(s.lab(), "/v1/webhooks", json!({"url": hook})).await;
    r.expect(409);
    // The limit is per partition.
    let r = s.post(s.prod(), "/v1/webhooks", json!({"url": hook})).await;
    r.expect(201);
    let r = s
        .get(s.lab(), "/v1/webhooks/not-an-id/deliveries?outcome=dead")
        .await;
    r.expect(400);
    let webhook = admin.webhooks().await.expect("list")[0].id;
    let r = s
        .get(
            s.lab(),
            &format!("/v1/webhooks/{webhook}/deliveries?outcome=lost"),
        )
        .await;
    r.expect(400);
    let r = s.delete(s.prod(), &format!("/v1/webhooks/{webhook}")).await;
    r.expect(404);
}

#[tokio::test]
async fn only_admins_manage_webhooks() {
    let s = server(Duration::from_secs(60)).await;
    let admin = s.client(s.lab());
    let webhook = register(&admin, "http://127.0.0.1:9/hook".into()).await;
    let id = webhook.webhook.id;
    for role in [Role::Agent, Role::Machine, Role::Partner] {
        let c = s.client(&key(&admin, role).await.1);
        let input = WebhookInput {
            url: "http://127.0.0.1:9/hook".into(),
            ..WebhookInput::default()
        };
        forbidden(c.create_webhook(&input).await);
        forbidden(c.webhooks().await);
        forbidden(c.webhook_deliveries(id, &DeliveriesQuery::default()).await);
        forbidden(c.redeliver(id, 1).await);
        forbidden(c.delete_webhook(id).await);
    }
    assert_eq!(admin.webhooks().await.expect("list").len(), 1);
}

#[tokio::test]
async fn a_partitions_webhooks_never_receive_another_partitions_events() {
    let s = server(Duration::from_secs(60)).await;
    let other = s
        .context
        .create_org("other", &s.url)
        .await
        .expect("second org");
    let tokens = [
        (s.lab().to_owned(), lab(&s)),
        (
            s.prod().to_owned(),
            Scope {
                org: s.org.org_id,
                partition: Partition::Production,
            },
        ),
        (
            other.lab_admin_token.clone(),
            Scope {
                org: other.org_id,
                partition: Partition::Lab,
            },
        ),
    ];
    let mut receivers = Vec::new();
    for (token, scope) in &tokens {
        let admin = s.client(token);
        let receiver = Receiver::start().await;
        let webhook = register(&admin, receiver.url()).await;
        receivers.push((admin, receiver, webhook, *scope));
    }
    for (i, (admin, ..)) in receivers.iter().enumerate() {
        for n in 0..=i {
            customer(admin, &format!("Scope {i} customer {n}")).await;
        }
    }
    for (_, receiver, webhook, scope) in &receivers {
        let expected = events(&s.context, *scope, webhook.webhook.delivered_through).await;
        assert!(!expected.is_empty());
        let got = receiver.wait_for(expected.len()).await;
        for (r, event) in got.iter().zip(&expected) {
            assert_delivery_of(r, event, *scope, &webhook.secret);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (_, receiver, webhook, scope) in &receivers {
        let expected = events(&s.context, *scope, webhook.webhook.delivered_through).await;
        assert_eq!(receiver.got().len(), expected.len(), "only its own events");
    }
}

#[tokio::test]
async fn the_database_never_holds_a_webhook_secret_in_the_clear() {
    let s = server(Duration::from_secs(60)).await;
    let admin = s.client(s.lab());
    let receiver = Receiver::start().await;
    let given = WebhookInput {
        url: receiver.url(),
        secret: Some(SECRET.into()),
        ..WebhookInput::default()
    };
    let given = admin.create_webhook(&given).await.expect("webhook");
    let generated = register(&admin, receiver.url()).await;
    customer(&admin, "Secretive").await;
    receiver.wait_for(2).await;

    let mut files = Vec::new();
    for entry in std::fs::read_dir(s.dir.path()).expect("data dir") {
        let path = entry.expect("entry").path();
        files.push((path.clone(), std::fs::read(&path).expect("read")));
    }
    assert!(files.iter().any(|(p, _)| p.ends_with("contextd.db")));
    for secret in [&given.secret, &generated.secret] {
        let encoded = secret.strip_prefix("whsec_").expect("prefix");
        let decoded = STANDARD.decode(encoded).expect("base64");
        for (path, bytes) in &files {
            for needle in [secret.as_bytes(), encoded.as_bytes(), &decoded] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{} holds a webhook secret in the clear",
                    path.display()
                );
            }
        }
    }
}
