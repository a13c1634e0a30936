//! The NATS JetStream publisher against a real `nats-server` of each test's own (a free port,
//! a temporary store directory), killed and restarted like a real outage.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use contextd_core::service::events::EVENT_PAGE;
use contextd_core::service::ContextConfig;
use contextd_core::store::StoredEvent;
use contextd_proto::Kind;
use contextd_server::events::EventsConfig;
use contextd_server::ServerConfig;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::support::{new_customer, patch, TestServer};

/// Where Debian's `nats-server` package installs the server (`.ci/run` installs it).
const NATS_SERVER: &str = "/usr/sbin/nats-server";
/// A value written into every object of the tests; no message may carry it.
const MARKER: &str = "NatsMarkerValue";

/// A `nats-server` with JetStream, on its own port and store directory.
struct Nats {
    port: u16,
    store: TempDir,
    child: Option<Child>,
}

impl Nats {
    /// Starts one on a free port; fails the test when the binary is missing.
    fn start() -> Self {
        assert!(
            Path::new(NATS_SERVER).exists(),
            "{NATS_SERVER} is missing: install Debian's nats-server package \
             (apt-get install nats-server; .ci/run does)"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut nats = Self {
            port,
            store: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        nats.restart();
        nats
    }

    /// `nats://127.0.0.1:PORT`.
    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL nats-server");
            child.wait().expect("reap nats-server");
        }
    }

    /// Starts the server (again) on the same port and store directory; returns once it
    /// accepts connections.
    fn restart(&mut self) {
        let store: PathBuf = self.store.path().to_owned();
        let child = Command::new(NATS_SERVER)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A JetStream client of the test's own.
    async fn jetstream(&self) -> jetstream::Context {
        let client = async_nats::connect(self.url())
            .await
            .expect("connect to nats-server");
        jetstream::new(client)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A server publishing its events to `nats`'s stream `stream`.
async fn server(nats: &Nats, stream: &str) -> TestServer {
    let server = ServerConfig {
        events: EventsConfig {
            nats_url: Some(nats.url()),
            nats_stream: stream.into(),
            ..EventsConfig::default()
        },
        ..ServerConfig::default()
    };
    TestServer::start_with(ContextConfig::default(), server).await
}

/// Every event of the outbox, of all orgs and partitions, oldest first.
async fn outbox(s: &TestServer) -> Vec<StoredEvent> {
    let mut all: Vec<StoredEvent> = Vec::new();
    loop {
        let after = all.last().map_or(0, |e| e.event.id);
        let page = s
            .context
            .all_events_after(after, EVENT_PAGE)
            .await
            .expect("outbox");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// The number of messages in the stream, once it exists and answers.
async fn messages(js: &jetstream::Context, name: &str) -> Option<u64> {
    let mut stream = js.get_stream(name).await.ok()?;
    Some(stream.info().await.ok()?.state.messages)
}

/// Waits (up to 30 s) until the stream holds `count` messages.
async fn until_stream_holds(js: &jetstream::Context, name: &str, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let held = messages(js, name).await;
        if held == Some(count) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the stream holds {held:?} messages, expected {count}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every message of the stream: (its subject, its `Nats-Msg-Id`, its body).
async fn read_all(js: &jetstream::Context, name: &str) -> Vec<(String, String, Value)> {
    let mut stream = js.get_stream(name).await.expect("the stream");
    let state = stream.info().await.expect("stream info").state.clone();
    let mut all = Vec::new();
    for sequence in state.first_sequence..=state.last_sequence {
        let message = stream.get_raw_message(sequence).await.expect("a message");
        let id = message
            .headers
            .get("Nats-Msg-Id")
            .expect("every message has a Nats-Msg-Id")
            .to_string();
        let body: Value = serde_json::from_slice(&message.payload).expect("a JSON body");
        assert!(
            !String::from_utf8_lossy(&message.payload).contains(MARKER),
            "a message carries a field value: {body}"
        );
        all.push((message.subject.to_string(), id, body));
    }
    all
}

/// Writes `count` objects (creates, every other one also updated), from a lab and a
/// production writer, counting each finished write in `done`.
async fn burst(s: &TestServer, count: usize, done: Arc<AtomicUsize>) {
    let mut writers = Vec::new();
    for (n, token) in [s.lab(), s.prod(), s.lab()].into_iter().enumerate() {
        let client = s.client(token);
        let done = done.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..count / 3 {
                let name = format!("{MARKER}{n}x{i}");
                let id = new_customer(&client, json!({"Context_First_Name": name})).await;
                if i % 2 == 0 {
                    let change = patch(json!({"data": {"Context_Last_Name": MARKER}}));
                    client
                        .patch(Kind::Customer, id, &change, None)
                        .await
                        .expect("update");
                }
                done.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
}

/// Waits until `done` reaches `n`.
async fn until_done(done: &AtomicUsize, n: usize) {
    while done.load(Ordering::SeqCst) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_outage_delays_events_but_publishes_each_exactly_once() {
    let mut nats = Nats::start();
    let s = server(&nats, "contextd").await;
    let done = Arc::new(AtomicUsize::new(0));
    let burst = burst(&s, 300, done.clone());
    let outage = async {
        until_done(&done, 100).await;
        nats.kill();
        until_done(&done, 200).await;
        nats.restart();
    };
    tokio::join!(burst, outage);

    let outbox = outbox(&s).await;
    assert!(outbox.len() >= 300, "{} events", outbox.len());
    let js = nats.jetstream().await;
    until_stream_holds(&js, "contextd", outbox.len() as u64).await;

    let messages = read_all(&js, "contextd").await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (_, id, _) in &messages {
        *seen.entry(id.clone()).or_default() += 1;
    }
    let by_id: HashMap<String, &StoredEvent> =
        outbox.iter().map(|e| (e.event.id.to_string(), e)).collect();
    assert_eq!(seen.len(), outbox.len(), "every event, no other message");
    assert!(seen.values().all(|n| *n == 1), "an event published twice");
    for (subject, id, body) in &messages {
        let stored = by_id.get(id).expect("a message of an outbox event");
        let event = &stored.event;
        let (org, partition) = (stored.scope.org, stored.scope.partition);
        let kind = event.event_type.as_str();
        assert_eq!(subject, &format!("contextd.{org}.{partition}.{kind}"));
        assert_eq!(body["specversion"], "1.0");
        assert_eq!(body["id"], id.as_str());
        assert_eq!(body["source"], format!("/contextd/{org}/{partition}"));
        assert_eq!(body["type"], format!("contextd.{kind}"));
        assert_eq!(body["subject"], event.object_id.to_string());
        assert_eq!(body["datacontenttype"], "application/json");
        assert_eq!(body["data"]["id"], event.id);
        assert_eq!(body["data"]["objectId"], event.object_id.to_string());
        assert!(body["time"].is_string());
    }

    let status = s.client(s.lab()).status().await.expect("status");
    let dependency = status
        .dependencies
        .iter()
        .find(|d| d.name == "nats")
        .expect("NATS among the dependencies");
    assert!(dependency.reachable, "{dependency:?}");
    assert_eq!(status.status, "ok");
}

#[tokio::test]
async fn nats_stream_is_created_when_missing_with_the_configured_name() {
    let nats = Nats::start();
    let s = server(&nats, "changes_it").await;
    let js = nats.jetstream().await;
    // Created at start, before any event.
    until_stream_holds(&js, "changes_it", 0).await;
    let mut created = js.get_stream("changes_it").await.expect("the stream");
    let config = created.info().await.expect("info").config.clone();
    assert_eq!(config.subjects, vec!["contextd.>".to_owned()]);
    assert_eq!(config.storage, stream::StorageType::File);
    assert!(config.duplicate_window >= Duration::from_secs(120));

    // Deleted while the server runs: made again, and the next event lands in it.
    js.delete_stream("changes_it").await.expect("delete");
    let admin = s.client(s.lab());
    new_customer(&admin, json!({"Context_First_Name": MARKER})).await;
    until_stream_holds(&js, "changes_it", 1).await;
    let messages = read_all(&js, "changes_it").await;
    assert_eq!(messages[0].2["type"], "contextd.object.created");
}
