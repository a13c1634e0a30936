//! The outbox across instances: two stores on one database (as two contextd instances),
//! written concurrently, each read from the start while the writes go on, see every event
//! exactly once and in increasing id order — ids are given after commit, one sequencer at a
//! time (`src/events.rs`) — and each is woken by the other's writes through LISTEN/NOTIFY,
//! also after its LISTEN connection was cut.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use contextd_core::ids::{ObjectId, Scope};
use contextd_core::object::{Contributor, ContributorType, Kind};
use contextd_core::store::{
    Change, CredentialStore, EventStore, ObjectStore, ObjectWrite, StoredObject,
};
use contextd_proto::events::EventType;
use contextd_store_conformance::fixtures::{lab, now, object};
use contextd_store_postgres::PgStore;
use tokio::sync::watch;

use crate::TestDatabase;

const TASKS: usize = 4;
const WRITES_PER_TASK: usize = 50;

/// An insert of `o` recording `object.created`.
fn created(o: &StoredObject) -> ObjectWrite {
    ObjectWrite {
        object: o.clone(),
        tokens: Vec::new(),
        expected_version: None,
        parent_check: None,
        customer_check: None,
        dictionary_version: None,
        change: Change {
            event_type: EventType::Created,
            by: Contributor {
                id: "writer".into(),
                kind: ContributorType::Machine,
            },
            history: false,
        },
    }
}

/// Two stores on one fresh database, or `None` without a test server.
async fn two_instances() -> Option<(TestDatabase, Arc<PgStore>, Arc<PgStore>)> {
    let db = TestDatabase::create().await?;
    let a = PgStore::connect(&db.url).await.expect("instance a");
    let b = PgStore::connect(&db.url).await.expect("instance b");
    Some((db, Arc::new(a), Arc::new(b)))
}

/// Waits until the store's LISTEN connection is up (it signals once when it is).
async fn listening(store: &PgStore) {
    let mut signal = store.event_signal();
    tokio::time::timeout(Duration::from_secs(10), signal.wait_for(|n| *n > 0))
        .await
        .expect("the LISTEN connection comes up")
        .expect("signal");
}

/// Writes one object through `writer` and asserts that `watcher` is signalled, and has the
/// event readable, within 1 s.
async fn woken_within_a_second(writer: &PgStore, watcher: &PgStore, scope: Scope) {
    let mut signal: watch::Receiver<u64> = watcher.event_signal();
    signal.borrow_and_update();
    let mark = watcher.last_event_id(Some(scope)).await.expect("last");
    let o = object(scope, Kind::Customer, now());
    writer.write_object(&created(&o)).await.expect("write");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    tokio::time::timeout_at(deadline, signal.changed())
        .await
        .expect("the other instance is signalled within 1 s")
        .expect("signal");
    loop {
        let events = watcher
            .events_after(Some(scope), mark, 10)
            .await
            .expect("events_after");
        if events.iter().any(|e| e.event.object_id == o.id) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the event is readable on the other instance within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads `scope` from the start while it is written, woken by the store's signal, until
/// `expected` events were read (or 30 s passed); returns (event id, object id) in order.
async fn read_from_start(
    store: Arc<PgStore>,
    scope: Scope,
    expected: usize,
) -> Vec<(u64, ObjectId)> {
    let mut signal = store.event_signal();
    let mut seen = Vec::new();
    let mut mark = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < expected && tokio::time::Instant::now() < deadline {
        let page = store
            .events_after(Some(scope), mark, 7)
            .await
            .expect("events_after");
        for e in &page {
            assert!(
                e.event.id > mark,
                "ids strictly increase: {} after {mark}",
                e.event.id
            );
            mark = e.event.id;
            seen.push((e.event.id, e.event.object_id));
        }
        if page.is_empty() {
            let _ = tokio::time::timeout(Duration::from_millis(50), signal.changed()).await;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_read_every_event_once_in_order_and_wake_each_other() {
    let Some((_db, a, b)) = two_instances().await else {
        return;
    };
    listening(&a).await;
    listening(&b).await;
    let quiet = lab();
    woken_within_a_second(&a, &b, quiet).await;
    woken_within_a_second(&b, &a, quiet).await;

    let scope = lab();
    let total = TASKS * WRITES_PER_TASK;
    let readers =
        [a.clone(), b.clone()].map(|store| tokio::spawn(read_from_start(store, scope, total)));
    let writers: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let mut ids = Vec::with_capacity(WRITES_PER_TASK);
                for _ in 0..WRITES_PER_TASK {
                    let o = object(scope, Kind::Customer, now());
                    store.write_object(&created(&o)).await.expect("write");
                    ids.push(o.id);
                }
                ids
            })
        })
        .collect();
    let mut written = HashSet::new();
    for w in writers {
        written.extend(w.await.expect("writer"));
    }
    assert_eq!(written.len(), total);

    let mut orders = Vec::new();
    for (name, reader) in ["a", "b"].into_iter().zip(readers) {
        let seen = reader.await.expect("reader");
        let objects: HashSet<ObjectId> = seen.iter().map(|(_, o)| *o).collect();
        assert_eq!(seen.len(), total, "instance {name} read every event once");
        assert_eq!(objects, written, "instance {name} read the events written");
        orders.push(seen);
    }
    assert_eq!(orders[0], orders[1], "both instances read one order");
    assert_eq!(
        a.publish_events().await.expect("publish"),
        0,
        "nothing left"
    );
    assert_eq!(
        b.last_event_id(Some(scope)).await.expect("last"),
        orders[0].last().map_or(0, |(id, _)| *id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_listen_connection_is_reconnected() {
    let Some((db, a, b)) = two_instances().await else {
        return;
    };
    listening(&a).await;
    listening(&b).await;
    // The credential feeds too: live once notifications are proven to arrive.
    let mut feeds = [&a, &b].map(|s| s.credential_changes().expect("PostgreSQL has a feed"));
    for f in &mut feeds {
        tokio::time::timeout(Duration::from_secs(10), f.wait_for(|e| e.live))
            .await
            .expect("the credential feed comes live")
            .expect("feed");
    }
    let epochs = feeds.each_ref().map(|f| f.borrow().epoch);
    let sql = db.connect().await;
    let cut = sql
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND query LIKE 'LISTEN%'",
            &[&db.name],
        )
        .await
        .expect("terminate the LISTEN connections");
    assert_eq!(cut.len(), 2, "one LISTEN connection per instance");
    // Each feed went down with its connection and came back live: the epoch moved on both
    // times, so nothing kept from before the cut answers again.
    for (f, before) in feeds.iter_mut().zip(epochs) {
        let back = f.wait_for(|e| e.live && e.epoch >= before + 2);
        tokio::time::timeout(Duration::from_secs(10), back)
            .await
            .expect("the credential feed went down and came back live")
            .expect("feed");
    }
    // Reconnected after a short backoff; then a notification reaches both again (nothing
    // else is written meanwhile, so only LISTEN can change the signals).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut signals = [a.event_signal(), b.event_signal()];
    for s in &mut signals {
        s.borrow_and_update();
    }
    sql.batch_execute("NOTIFY contextd_events")
        .await
        .expect("notify");
    for s in &mut signals {
        tokio::time::timeout(Duration::from_secs(1), s.changed())
            .await
            .expect("a notification wakes the reconnected instance")
            .expect("signal");
    }
    let scope = lab();
    woken_within_a_second(&a, &b, scope).await;
    woken_within_a_second(&b, &a, scope).await;
}
