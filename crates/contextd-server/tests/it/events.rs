//! The event stream, `GET /v1/events`, over real HTTP through the SDK: what a subscriber sees
//! (and that it never sees a value), filters, failed writes, resume after a dropped stream and
//! after a restart, isolation of orgs and partitions, keep-alives, shutdown, and two instances
//! on one PostgreSQL database (when `CONTEXTD_TEST_POSTGRES_URL` is set).

use std::sync::Arc;
use std::time::{Duration, Instant};

use contextd_client::proto::events::{Event, EventFilter, EventType};
use contextd_client::{Client, EventStream, Settings};
use contextd_core::crypto::{Keyring, MasterKey};
use contextd_core::service::{Context, ContextConfig};
use contextd_proto::access::Role;
use contextd_proto::object::{MediaType, State};
use contextd_proto::{Kind, ObjectId};
use contextd_server::events::EventsConfig;
use contextd_server::ServerConfig;
use futures::StreamExt;
use reqwest::Method;
use serde_json::json;

use crate::support::{client_at, input, key, new_customer, patch, TestServer};

/// How long a test waits for an event before failing.
const WAIT: Duration = Duration::from_secs(10);

/// A stream that is connected: the server holds its subscription.
async fn subscribe(c: &Client, filter: EventFilter, after: Option<u64>) -> EventStream {
    let mut events = c.events(filter, after);
    events.connected().await.expect("the event stream connects");
    events
}

/// The next event of a stream.
async fn next(events: &mut EventStream) -> Event {
    tokio::time::timeout(WAIT, events.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream goes on")
        .expect("an event, not an error")
}

/// The next `n` events of a stream.
async fn take(events: &mut EventStream, n: usize) -> Vec<Event> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(next(events).await);
    }
    out
}

/// Asserts that nothing more comes for a while.
async fn quiet(events: &mut EventStream) {
    let more = tokio::time::timeout(Duration::from_millis(500), events.next()).await;
    assert!(more.is_err(), "no further event: {more:?}");
}

/// What the events say happened: (type, object).
fn story(events: &[Event]) -> Vec<(EventType, ObjectId)> {
    events.iter().map(|e| (e.event_type, e.object_id)).collect()
}

#[track_caller]
fn increasing(events: &[Event]) {
    assert!(
        events.windows(2).all(|w| w[0].id < w[1].id),
        "ids increase: {:?}",
        events.iter().map(|e| e.id).collect::<Vec<_>>()
    );
}

/// A raw event stream: its text as it arrives.
struct Raw {
    response: reqwest::Response,
    text: String,
}

impl Raw {
    /// `GET /v1/events{query}` with `token` and an optional `Last-Event-ID`; must be 200.
    async fn open(s: &TestServer, token: &str, query: &str, last_event_id: Option<&str>) -> Self {
        let mut request = s
            .http
            .get(format!("{}/v1/events{query}", s.url))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.expect("request sent");
        assert_eq!(response.status(), 200);
        Self {
            response,
            text: String::new(),
        }
    }

    /// Reads until the text holds `needle`; `false` if it did not come within [`WAIT`].
    async fn until(&mut self, needle: &str) -> bool {
        let deadline = Instant::now() + WAIT;
        while !self.text.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.text.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return false,
            }
        }
        true
    }

    /// Whether the server ended the stream within [`WAIT`].
    async fn ends(&mut self) -> bool {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.text.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(Ok(None) | Err(_)) => return true,
                Err(_) => return false,
            }
        }
    }
}

#[tokio::test]
async fn a_subscriber_sees_every_change_made_after_it_connected_and_never_a_value() {
    let s = TestServer::start().await;
    let c = s.client(s.lab());
    new_customer(&c, json!({"Context_First_Name": "Before"})).await;
    let mut events = subscribe(&c, EventFilter::default(), None).await;
    let mut raw = Raw::open(&s, s.lab(), "", None).await;

    let customer = new_customer(
        &c,
        json!({"Context_First_Name": "Quillonna", "Context_Mobile_Phone": "+1 (555) 010-7788"}),
    )
    .await;
    let other = new_customer(&c, json!({"Context_First_Name": "Othello"})).await;
    let request = c
        .create(
            Kind::Request,
            &input(
                json!({"customerId": customer, "fieldsets": ["cisco.base.request"],
                "data": {"Context_Title": "Zanzibarish"}}),
            ),
        )
        .await
        .expect("request")
        .id;
    let activity = c
        .create(
            Kind::Activity,
            &input(
                json!({"parentId": request, "mediaType": "chat", "fieldsets": ["cisco.base.pod"],
                "data": {"Context_Notes": "Xylophonic"}}),
            ),
        )
        .await
        .expect("activity")
        .id;
    let updated = patch(json!({"data": {"Context_First_Name": "Quillonnb"}}));
    c.patch(Kind::Customer, customer, &updated, None)
        .await
        .expect("update");
    let moved = patch(json!({"customerId": other}));
    c.patch(Kind::Request, request, &moved, None)
        .await
        .expect("move");
    c.delete(Kind::Activity, activity).await.expect("delete");
    let close = patch(json!({"state": "closed"}));
    c.patch(Kind::Request, request, &close, None)
        .await
        .expect("close");

    let seen = take(&mut events, 9).await;
    assert_eq!(
        story(&seen),
        vec![
            (EventType::Created, customer),
            (EventType::Created, other),
            (EventType::Created, request),
            (EventType::Created, activity),
            (EventType::Updated, customer),
            (EventType::Moved, request),
            (EventType::Moved, activity),
            (EventType::Deleted, activity),
            (EventType::Closed, request),
        ],
        "every change after the connection, in order, none before it"
    );
    increasing(&seen);
    let created = &seen[3];
    assert_eq!(created.object_type, Kind::Activity);
    assert_eq!(created.customer_id, Some(customer));
    assert_eq!(created.parent_id, Some(request));
    assert_eq!(created.media_type, Some(MediaType::Chat));
    assert_eq!(
        seen[5].customer_id,
        Some(other),
        "a move names the new customer"
    );
    assert_eq!(seen[8].state, State::Closed);
    assert!(seen.iter().all(|e| !e.contributor.id.is_empty()));
    quiet(&mut events).await;

    let last = seen[8].id;
    assert!(raw.until(&format!("id: {last}\n")).await, "{}", raw.text);
    assert!(
        raw.text.starts_with("event: open\nid: ") && raw.text.contains("retry: 1000\n"),
        "{}",
        raw.text
    );
    assert!(raw.text.contains("event: object.moved\n"), "{}", raw.text);
    for value in [
        "Quillonna",
        "Quillonnb",
        "Othello",
        "Zanzibarish",
        "Xylophonic",
        "5550107788",
        "Context_",
    ] {
        assert!(!raw.text.contains(value), "{value} in the stream");
    }
    s.stop().await;
}

#[tokio::test]
async fn filters_deliver_only_matching_events() {
    let s = TestServer::start().await;
    let admin = s.client(s.lab());
    let (agent_id, agent_token) = key(&admin, Role::Agent).await;
    let agent = s.client(&agent_token);
    let a = new_customer(&admin, json!({"Context_First_Name": "Ann"})).await;
    let b = new_customer(&admin, json!({"Context_First_Name": "Ben"})).await;
    let filters = [
        EventFilter {
            customer_id: Some(a),
            ..EventFilter::default()
        },
        EventFilter {
            types: vec![EventType::Closed, EventType::Updated],
            ..EventFilter::default()
        },
        EventFilter {
            media_type: Some(MediaType::Sms),
            ..EventFilter::default()
        },
        EventFilter {
            contributor: Some(agent_id.to_string()),
            ..EventFilter::default()
        },
    ];
    let mut all = subscribe(&admin, EventFilter::default(), None).await;
    let mut filtered = Vec::new();
    for filter in &filters {
        filtered.push(subscribe(&admin, filter.clone(), None).await);
    }

    let request = |c: &Client, customer: ObjectId| {
        let c = c.clone();
        async move {
            c.create(Kind::Request, &input(json!({"customerId": customer})))
                .await
                .expect("request")
                .id
        }
    };
    let ra = request(&admin, a).await;
    let rb = request(&agent, b).await;
    for (c, parent, channel) in [(&agent, ra, "sms"), (&admin, rb, "chat")] {
        c.create(
            Kind::Activity,
            &input(json!({"parentId": parent, "mediaType": channel})),
        )
        .await
        .expect("activity");
    }
    let close = patch(json!({"state": "closed"}));
    admin
        .patch(Kind::Request, ra, &close, None)
        .await
        .expect("close");
    let update = patch(json!({"data": {"Context_First_Name": "Benedict"}}));
    agent
        .patch(Kind::Customer, b, &update, None)
        .await
        .expect("update");

    let everything = take(&mut all, 6).await;
    for (filter, stream) in filters.iter().zip(&mut filtered) {
        let expected: Vec<u64> = everything
            .iter()
            .filter(|e| filter.matches(e))
            .map(|e| e.id)
            .collect();
        assert!(
            !expected.is_empty(),
            "{filter:?} matches some of the writes"
        );
        assert!(
            expected.len() < everything.len(),
            "{filter:?} leaves some out"
        );
        let got: Vec<u64> = take(stream, expected.len())
            .await
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(got, expected, "{filter:?}");
        quiet(stream).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn a_refused_write_records_no_event() {
    let s = TestServer::start().await;
    let c = s.client(s.lab());
    let id = new_customer(&c, json!({"Context_First_Name": "Vera"})).await;
    let mut events = subscribe(&c, EventFilter::default(), None).await;
    let stale = json!({"version": 99, "fieldsets": ["cisco.base.customer"],
        "data": {"Context_First_Name": "Vera Stale"}});
    s.put(s.lab(), &format!("/v1/customers/{id}"), stale)
        .await
        .expect(409);
    let marker = new_customer(&c, json!({"Context_First_Name": "Marker"})).await;
    let first = next(&mut events).await;
    assert_eq!(
        (first.event_type, first.object_id),
        (EventType::Created, marker),
        "the refused replace left no event before the next write's"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_resumed_stream_gets_exactly_the_missed_events() {
    let s = TestServer::start().await;
    let c = s.client(s.lab());
    let mut events = subscribe(&c, EventFilter::default(), None).await;
    for name in ["R1", "R2"] {
        new_customer(&c, json!({"Context_First_Name": name})).await;
    }
    let read = take(&mut events, 2).await;
    drop(events);
    let mut missed = Vec::new();
    for name in ["R3", "R4", "R5"] {
        missed.push(new_customer(&c, json!({"Context_First_Name": name})).await);
    }
    let mut resumed = subscribe(&c, EventFilter::default(), Some(read[1].id)).await;
    let got = take(&mut resumed, 3).await;
    assert_eq!(got.iter().map(|e| e.object_id).collect::<Vec<_>>(), missed);
    assert!(got[0].id > read[1].id);
    increasing(&got);
    quiet(&mut resumed).await;
    let live = new_customer(&c, json!({"Context_First_Name": "R6"})).await;
    assert_eq!(next(&mut resumed).await.object_id, live, "then live");

    // `?lastEventId=` resumes too, and `Last-Event-ID` wins over it.
    let ids: Vec<u64> = read.iter().chain(&got).map(|e| e.id).collect();
    let mut by_query = Raw::open(&s, s.lab(), &format!("?lastEventId={}", ids[0]), None).await;
    assert!(by_query.until(&format!("id: {}\n", ids[4])).await);
    // The opening frame names the position (`event: open`, `id:` the resume id); no event
    // at or before it is sent again.
    assert!(by_query
        .text
        .starts_with(&format!("event: open\nid: {}\n", ids[0])));
    assert!(!by_query
        .text
        .contains(&format!("event: object.created\nid: {}\n", ids[0])));
    assert!(by_query.text.contains(&format!("id: {}\n", ids[1])));
    let header = ids[3].to_string();
    let query = format!("?lastEventId={}", ids[0]);
    let mut both = Raw::open(&s, s.lab(), &query, Some(&header)).await;
    assert!(both.until(&format!("id: {}\n", ids[4])).await);
    assert!(
        !both.text.contains(&format!("id: {}\n", ids[1])),
        "{}",
        both.text
    );
    s.stop().await;
}

#[tokio::test]
async fn a_stream_resumes_by_itself_after_a_server_restart() {
    let mut s = TestServer::start().await;
    let c = s.client(s.lab());
    let mut events = subscribe(&c, EventFilter::default(), None).await;
    let before = new_customer(&c, json!({"Context_First_Name": "Before"})).await;
    assert_eq!(next(&mut events).await.object_id, before);
    s.restart().await;
    // A new client: the old one's pooled connections went with the old server.
    let c = s.client(s.lab());
    let during = new_customer(&c, json!({"Context_First_Name": "During"})).await;
    let after = new_customer(&c, json!({"Context_First_Name": "After"})).await;
    let got = take(&mut events, 2).await;
    assert_eq!(
        got.iter().map(|e| e.object_id).collect::<Vec<_>>(),
        vec![during, after]
    );
    quiet(&mut events).await;
    s.stop().await;
}

/// A stream that had seen no event yet resumes from where it started (the `open` frame's
/// id), so what is written while it reconnects is not lost.
#[tokio::test]
async fn a_stream_that_saw_no_event_yet_loses_nothing_across_a_restart() {
    let mut s = TestServer::start().await;
    let c = s.client(s.lab());
    let mut events = subscribe(&c, EventFilter::default(), None).await;
    s.restart().await;
    let c = s.client(s.lab());
    let written = vec![
        new_customer(&c, json!({"Context_First_Name": "Early"})).await,
        new_customer(&c, json!({"Context_First_Name": "Later"})).await,
    ];
    let got = take(&mut events, 2).await;
    assert_eq!(got.iter().map(|e| e.object_id).collect::<Vec<_>>(), written);
    quiet(&mut events).await;
    s.stop().await;
}

#[tokio::test]
async fn bad_resume_ids_and_filters_are_400_and_a_missing_token_401() {
    let s = TestServer::start().await;
    for (query, header) in [
        ("", Some("abc")),
        ("?lastEventId=-5", None),
        ("?lastEventId=1e3", None),
        ("?lastEventId=999999999", None),
        ("?customerId=nope", None),
        ("?types=object.created,object.exploded", None),
        ("?mediaType=pigeon", None),
    ] {
        let mut request = s
            .http
            .get(format!("{}/v1/events{query}", s.url))
            .bearer_auth(s.lab());
        if let Some(h) = header {
            request = request.header("last-event-id", h);
        }
        let r = TestServer::read(request.send().await.expect("sent")).await;
        r.expect(400);
    }
    s.call(Method::GET, "/v1/events", None, None)
        .await
        .expect(401);
    s.stop().await;
}

#[tokio::test]
async fn partners_and_connection_data_clients_get_events_and_other_scopes_never_do() {
    let s = TestServer::start().await;
    let admin = s.client(s.lab());
    let (_, partner_token) = key(&admin, Role::Partner).await;
    let mut partner = subscribe(&s.client(&partner_token), EventFilter::default(), None).await;
    let component = Client::from_connection_data(
        &s.org.connection_data,
        Settings::standard()
            .with_timeout(Duration::from_millis(15_000))
            .with_lab_mode(true),
    )
    .expect("a connectionData client");
    let mut exchanged = subscribe(&component, EventFilter::default(), None).await;
    let other = s
        .context
        .create_org("other", &s.url)
        .await
        .expect("another org");
    let other_lab = s.client(&other.lab_admin_token);
    let mut foreign = subscribe(&other_lab, EventFilter::default(), None).await;
    let production = s.client(s.prod());
    let mut prod = subscribe(&production, EventFilter::default(), None).await;

    let lab_write = new_customer(&admin, json!({"Context_First_Name": "Lab"})).await;
    assert_eq!(next(&mut partner).await.object_id, lab_write);
    assert_eq!(next(&mut exchanged).await.object_id, lab_write);
    let foreign_write = new_customer(&other_lab, json!({"Context_First_Name": "Foreign"})).await;
    let prod_write = new_customer(&production, json!({"Context_First_Name": "Prod"})).await;
    assert_eq!(
        next(&mut foreign).await.object_id,
        foreign_write,
        "another org sees its own events only"
    );
    assert_eq!(
        next(&mut prod).await.object_id,
        prod_write,
        "another partition sees its own events only"
    );
    quiet(&mut partner).await;
    s.stop().await;
}

#[tokio::test]
async fn idle_streams_get_keep_alive_comments_and_shutdown_ends_them() {
    let server = ServerConfig {
        events: EventsConfig {
            sse_keep_alive: Duration::from_millis(200),
            ..EventsConfig::default()
        },
        ..ServerConfig::default()
    };
    let s = TestServer::start_with(ContextConfig::default(), server).await;
    let mut raw = Raw::open(&s, s.lab(), "", None).await;
    let headers = raw.response.headers().clone();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    assert!(raw.until(": keep-alive\n").await, "{}", raw.text);

    let stop = tokio::time::timeout(WAIT, s.stop()).await;
    assert!(
        stop.is_ok(),
        "an open event stream does not hold the shutdown"
    );
    assert!(raw.ends().await, "the stream ended with the server");
}

#[tokio::test]
async fn a_revoked_key_ends_its_stream_and_the_sdk_reports_it() {
    // Streams check their credential at each keep-alive interval (at most every 10 s).
    let server = ServerConfig {
        events: EventsConfig {
            sse_keep_alive: Duration::from_millis(200),
            ..EventsConfig::default()
        },
        ..ServerConfig::default()
    };
    let s = TestServer::start_with(ContextConfig::default(), server).await;
    let admin = s.client(s.lab());
    let (agent_key, agent_token) = key(&admin, Role::Agent).await;
    let mut events = subscribe(&s.client(&agent_token), EventFilter::default(), None).await;
    let first = new_customer(&admin, json!({"Context_First_Name": "Seen"})).await;
    assert_eq!(next(&mut events).await.object_id, first);
    admin.revoke_key(agent_key).await.expect("revoke");
    let end = tokio::time::timeout(WAIT, events.next())
        .await
        .expect("the stream ends within 10 s");
    assert!(
        matches!(end, Some(Err(contextd_client::Error::Unauthorized { .. }))),
        "{end:?}"
    );
    let after = tokio::time::timeout(WAIT, events.next()).await;
    assert!(matches!(after, Ok(None)), "then the stream is over");
    s.stop().await;
}

/// Fresh schemas (data and keys) in the database `CONTEXTD_TEST_POSTGRES_URL` names, or
/// `None` without it; left behind, as the store's own tests leave theirs.
struct PgSchemas {
    url: String,
    data: String,
    keys: String,
}

impl PgSchemas {
    fn create() -> Option<Self> {
        let Ok(url) = std::env::var("CONTEXTD_TEST_POSTGRES_URL") else {
            eprintln!("PostgreSQL event test skipped: CONTEXTD_TEST_POSTGRES_URL is not set");
            return None;
        };
        let id = uuid::Uuid::new_v4().simple();
        Some(Self {
            url,
            data: format!("events_{id}"),
            keys: format!("events_{id}_keys"),
        })
    }
}

/// A server over the PostgreSQL schemas `db`: its URL, its context and its stop switch.
async fn pg_instance(
    db: &PgSchemas,
    master: &MasterKey,
) -> (String, Arc<Context>, tokio::sync::oneshot::Sender<()>) {
    let store = contextd_store_postgres::PgStore::connect_with_schema(&db.url, &db.data)
        .await
        .expect("the data store connects");
    let keys = contextd_store_postgres::PgKeyStore::connect_with_schema(&db.url, &db.keys)
        .await
        .expect("the key store connects");
    let keyring = Keyring::new(master.clone(), Arc::new(keys), 1000);
    let context = Arc::new(Context::new(
        Arc::new(store),
        keyring,
        ContextConfig::default(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel();
    tokio::spawn(contextd_server::serve(
        listener,
        context.clone(),
        ServerConfig::default(),
        async {
            let _ = stopped.await;
        },
    ));
    (base, context, stop)
}

#[tokio::test]
async fn on_postgresql_a_write_through_one_instance_reaches_a_subscriber_of_another_within_a_second(
) {
    let Some(db) = PgSchemas::create() else {
        return;
    };
    let master = MasterKey::generate();
    let (url_a, context_a, stop_a) = pg_instance(&db, &master).await;
    let (url_b, _context_b, stop_b) = pg_instance(&db, &master).await;
    let org = context_a
        .create_org("default", &url_a)
        .await
        .expect("create org");
    let on_a = client_at(&url_a, &org.lab_admin_token);
    let on_b = client_at(&url_b, &org.lab_admin_token);
    let mut events = subscribe(&on_a, EventFilter::default(), None).await;
    for round in 0..3 {
        let id = new_customer(&on_b, json!({"Context_First_Name": format!("Pg{round}")})).await;
        let written = Instant::now();
        let event = next(&mut events).await;
        let latency = written.elapsed();
        assert_eq!(event.object_id, id);
        assert!(
            latency < Duration::from_secs(1),
            "round {round}: the event reached the other instance after {latency:?}"
        );
    }
    drop(events);
    let _ = stop_a.send(());
    let _ = stop_b.send(());
}
