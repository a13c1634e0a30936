//! [`EventStore`] for [`PgStore`]: the events outbox, its sequencer and its wake-up signal,
//! and the cursors of the channels that forward events.
//!
//! Writers insert their events in the transaction of the change with `id` NULL (see
//! `objects.rs` and `access.rs`), which readers do not see. Ids are given after commit by
//! [`publish`], the sequencer: one at a time across every instance sharing the database (an
//! advisory lock), in insert order, each above every id given before, then committed before
//! the next sequencer starts. So ids become readable in increasing order, and a reader that
//! has seen id n never finds one below it later — which a sequence value taken inside the
//! writers' transactions, committing in any order, would not ensure.
//!
//! Each store runs two background tasks ([`Outbox`]): the sequencer loop, woken by this
//! store's writes and every [`PUBLISH_EVERY`], and a LISTEN connection on [`CHANNEL`], on
//! which every sequencer that gave ids notifies, so that readers on every instance wake up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextd_core::ids::{ObjectId, OrgId, Scope};
use contextd_core::object::Contributor;
use contextd_core::store::{EventStore, StoreError, StoredEvent};
use contextd_proto::events::{Event, EventType};
use tokio::sync::{watch, Notify};
use tokio::task::AbortHandle;
use tokio_postgres::{AsyncMessage, IsolationLevel, Row};
use uuid::Uuid;

use crate::db::{col, corrupt, count, db_error, ms, opt_parse_col, parse_col, Db, Failure};
use crate::store::PgStore;

/// The channel every sequencer that gave ids notifies on.
pub(crate) const CHANNEL: &str = "contextd_events";
/// The advisory lock that makes sequencers take turns ("contextd" in ASCII).
const SEQUENCER_LOCK: i64 = 0x636f_6e74_6578_7464;
/// The sequencer runs at least this often, to publish other instances' events should theirs
/// have stopped.
const PUBLISH_EVERY: Duration = Duration::from_millis(500);
/// How often the LISTEN connection is checked, and how long a check may take.
const LISTEN_CHECK_EVERY: Duration = Duration::from_secs(30);
const LISTEN_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// The wait before reconnecting the LISTEN connection: doubling from the first to the last.
const LISTEN_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// The `INSERT INTO events (…)` of the events a change records, for statement texts built
/// with `concat!` (a macro: `concat!` takes literals only). The rows it inserts have no id.
macro_rules! insert_events {
    () => {
        "INSERT INTO events (org_id, partition, event_type, object_id, object_type, customer_id, \
         parent_id, media_type, state, last_updated, contributor_id, contributor_type, time) "
    };
}
pub(crate) use insert_events;

/// The columns [`event_from_row`] reads, in order.
const EVENT_COLUMNS: &str = "id, org_id, partition, event_type, object_id, object_type, \
     customer_id, parent_id, media_type, state, last_updated, contributor_id, contributor_type, time";

// Numbers every committed event without an id, in insert order, after the last id given, and
// moves the last id on. Runs under the sequencer lock (see `publish_once`).
const PUBLISH: &str = "WITH last AS (
         SELECT last_id FROM event_sequence WHERE only_row
     ), numbered AS (
         SELECT e.seq, l.last_id + row_number() OVER (ORDER BY e.seq) AS id
         FROM events e, last l WHERE e.id IS NULL
     ), published AS (
         UPDATE events e SET id = n.id FROM numbered n
         WHERE e.seq = n.seq AND e.id IS NULL
         RETURNING e.id
     ), moved AS (
         UPDATE event_sequence SET last_id = (SELECT max(id) FROM published)
         WHERE only_row AND EXISTS (SELECT 1 FROM published)
     )
     SELECT count(*) FROM published";

/// The change columns of an event a write records, bound after the statement's own
/// parameters: its type, its contributor's id and type, and when it was recorded. The other
/// columns are the object's, which the statement has.
pub(crate) struct ChangeRow {
    /// `event_type`.
    pub event_type: &'static str,
    /// `contributor_id`.
    pub contributor_id: String,
    /// `contributor_type`.
    pub contributor_type: &'static str,
    /// `time`.
    pub time: DateTime<Utc>,
}

impl ChangeRow {
    /// The change columns of an event as the core defines it ([`StoredEvent::of`]).
    pub(crate) fn of(event: &StoredEvent) -> Self {
        Self::new(
            event.event.event_type,
            &event.event.contributor,
            event.event.time,
        )
    }

    /// The change columns of an event of `event_type` by `by`, recorded now.
    pub(crate) fn now(event_type: EventType, by: &Contributor) -> Self {
        Self::new(event_type, by, contextd_core::time::now_ms())
    }

    fn new(event_type: EventType, by: &Contributor, time: DateTime<Utc>) -> Self {
        Self {
            event_type: event_type.as_str(),
            contributor_id: by.id.clone(),
            contributor_type: by.kind.as_str(),
            time: ms(&time),
        }
    }

    /// The four parameters, in the order above.
    pub(crate) fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 4] {
        [
            &self.event_type,
            &self.contributor_id,
            &self.contributor_type,
            &self.time,
        ]
    }
}

/// Reads a row of [`EVENT_COLUMNS`] (its id not NULL).
fn event_from_row(r: &Row) -> Result<StoredEvent, Failure> {
    let id: i64 = col(r, 0, "id")?;
    Ok(StoredEvent {
        scope: Scope {
            org: OrgId(col(r, 1, "org_id")?),
            partition: parse_col(r, 2, "partition")?,
        },
        event: Event {
            id: u64::try_from(id).map_err(|_| corrupt("id"))?,
            event_type: parse_col(r, 3, "event_type")?,
            object_id: ObjectId(col(r, 4, "object_id")?),
            object_type: parse_col(r, 5, "object_type")?,
            customer_id: col::<Option<Uuid>>(r, 6, "customer_id")?.map(ObjectId),
            parent_id: col::<Option<Uuid>>(r, 7, "parent_id")?.map(ObjectId),
            media_type: opt_parse_col(r, 8, "media_type")?,
            state: parse_col(r, 9, "state")?,
            last_updated: col(r, 10, "last_updated")?,
            contributor: Contributor {
                id: col(r, 11, "contributor_id")?,
                kind: parse_col(r, 12, "contributor_type")?,
            },
            time: col(r, 13, "time")?,
        },
    })
}

/// An event id or position as bound; ids above `i64::MAX` are never given.
fn position(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Gives every committed event without an id its id (see the module documentation) and
/// notifies [`CHANNEL`] if there were any; returns how many.
pub(crate) async fn publish(db: &Db) -> Result<u64, StoreError> {
    db.retry(|| publish_once(db)).await
}

async fn publish_once(db: &Db) -> Result<u64, Failure> {
    let mut client = db.client().await?;
    // Most passes find nothing: they end here, without a transaction or the lock.
    let stmt = client
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM events WHERE id IS NULL)")
        .await?;
    let pending: bool = col(&client.query_one(&stmt, &[]).await?, 0, "exists")?;
    if !pending {
        return Ok(0);
    }
    // READ COMMITTED whatever the server's default: each statement after the lock must see
    // what the sequencer before this one committed.
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await?;
    let stmt = tx
        .prepare_cached("SELECT pg_advisory_xact_lock($1)")
        .await?;
    tx.execute(&stmt, &[&SEQUENCER_LOCK]).await?;
    let stmt = tx.prepare_cached(PUBLISH).await?;
    let published = count(col(&tx.query_one(&stmt, &[]).await?, 0, "count")?)?;
    if published > 0 {
        let stmt = tx.prepare_cached("SELECT pg_notify($1, '')").await?;
        tx.execute(&stmt, &[&CHANNEL]).await?;
    }
    tx.commit().await?;
    Ok(published)
}

/// The background side of the outbox: the wake-up signal, the sequencer loop and the LISTEN
/// connection, whose tasks stop when this is dropped.
pub(crate) struct Outbox {
    signal: watch::Sender<u64>,
    written: Arc<Notify>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Outbox {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Outbox {
    /// Starts the sequencer loop and the LISTEN connection on the pool of `db`.
    pub(crate) fn start(db: &Db) -> Self {
        let (signal, _) = watch::channel(0);
        let written = Arc::new(Notify::new());
        let sequencer = tokio::spawn(sequence(db.detached(), written.clone(), signal.clone()));
        let listener = tokio::spawn(listen(db.detached(), signal.clone()));
        Self {
            signal,
            written,
            tasks: vec![sequencer.abort_handle(), listener.abort_handle()],
        }
    }

    /// Tells the sequencer that a write that recorded events committed.
    pub(crate) fn wrote(&self) {
        self.written.notify_one();
    }

    /// Wakes the readers of this store.
    pub(crate) fn bump(&self) {
        self.signal.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver of the wake-up signal.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.signal.subscribe()
    }
}

/// The sequencer loop: publishes when a write of this store committed, and every
/// [`PUBLISH_EVERY`] in any case.
async fn sequence(db: Db, written: Arc<Notify>, signal: watch::Sender<u64>) {
    let mut failing = false;
    loop {
        // A write while publishing left a permit: the next pass starts at once.
        let _ = tokio::time::timeout(PUBLISH_EVERY, written.notified()).await;
        match publish(&db).await {
            Ok(n) => {
                if n > 0 {
                    signal.send_modify(|n| *n = n.wrapping_add(1));
                }
                if failing {
                    tracing::info!("events are published again");
                }
                failing = false;
            }
            Err(e) if !failing => {
                tracing::warn!(error = %e, "events not published; retrying");
                failing = true;
            }
            Err(e) => tracing::debug!(error = %e, "events not published"),
        }
    }
}

/// The LISTEN connection: bumps the signal on every notification of [`CHANNEL`], and once
/// on each (re)connection for what it may have missed meanwhile; reconnects with backoff.
async fn listen(db: Db, signal: watch::Sender<u64>) {
    let mut backoff = LISTEN_BACKOFF.0;
    loop {
        let started = Instant::now();
        let e = listen_once(&db, &signal).await;
        if started.elapsed() > LISTEN_CHECK_EVERY {
            backoff = LISTEN_BACKOFF.0;
        }
        tracing::debug!(error = %e, ?backoff, "event notifications interrupted; reconnecting");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(LISTEN_BACKOFF.1);
    }
}

/// One LISTEN connection, until it fails; returns why.
async fn listen_once(db: &Db, signal: &watch::Sender<u64>) -> StoreError {
    let (client, mut connection) = match db.dedicated().await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let bump = || signal.send_modify(|n| *n = n.wrapping_add(1));
    // The connection does the client's work only while it is polled, so the driver runs
    // beside the commands below.
    let driver = async {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => bump(),
                Some(Ok(_)) => {}
                Some(Err(e)) => return db_error(&e),
                None => return StoreError::Backend("postgres: connection closed".into()),
            }
        }
    };
    let commands = async {
        if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
            return db_error(&e);
        }
        bump();
        loop {
            tokio::time::sleep(LISTEN_CHECK_EVERY).await;
            match tokio::time::timeout(LISTEN_CHECK_TIMEOUT, client.simple_query("")).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return db_error(&e),
                Err(_) => {
                    return StoreError::Backend("postgres: connection check timed out".into())
                }
            }
        }
    };
    tokio::select! {
        e = driver => e,
        e = commands => e,
    }
}

#[async_trait]
impl EventStore for PgStore {
    async fn events_after(
        &self,
        scope: Option<Scope>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let (after, limit) = (position(after), i64::try_from(limit).unwrap_or(i64::MAX));
        let rows = match scope {
            Some(s) => {
                self.query(
                    &format!(
                        "SELECT {EVENT_COLUMNS} FROM events
                         WHERE org_id = $1 AND partition = $2 AND id > $3 ORDER BY id LIMIT $4"
                    ),
                    &[&s.org.0, &s.partition.as_str(), &after, &limit],
                )
                .await?
            }
            None => {
                self.query(
                    &format!(
                        "SELECT {EVENT_COLUMNS} FROM events WHERE id > $1 ORDER BY id LIMIT $2"
                    ),
                    &[&after, &limit],
                )
                .await?
            }
        };
        Ok(rows
            .iter()
            .map(event_from_row)
            .collect::<Result<_, Failure>>()?)
    }

    async fn last_event_id(&self, scope: Option<Scope>) -> Result<u64, StoreError> {
        let rows = match scope {
            Some(s) => {
                self.query(
                    "SELECT coalesce(max(id), 0) FROM events WHERE org_id = $1 AND partition = $2",
                    &[&s.org.0, &s.partition.as_str()],
                )
                .await?
            }
            None => {
                self.query("SELECT coalesce(max(id), 0) FROM events", &[])
                    .await?
            }
        };
        match rows.first() {
            Some(r) => Ok(count(col(r, 0, "id")?)?),
            None => Ok(0),
        }
    }

    async fn publish_events(&self) -> Result<u64, StoreError> {
        let n = publish(&self.db).await?;
        if n > 0 {
            self.outbox.bump();
        }
        Ok(n)
    }

    fn event_signal(&self) -> watch::Receiver<u64> {
        self.outbox.subscribe()
    }

    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let rows = self
            .query(
                "WITH attempts AS (
                     DELETE FROM webhook_deliveries WHERE at < $1
                 ), pruned AS (
                     DELETE FROM events WHERE time < $1 RETURNING 1
                 )
                 SELECT count(*) FROM pruned",
                &[&ms(&before)],
            )
            .await?;
        match rows.first() {
            Some(r) => Ok(count(col(r, 0, "count")?)?),
            None => Ok(0),
        }
    }

    async fn ensure_cursor(&self, name: &str, position: u64) -> Result<(), StoreError> {
        let position = i64::try_from(position)
            .map_err(|_| StoreError::Backend("cursor position out of range".into()))?;
        self.execute(
            "INSERT INTO event_cursors (name, position) VALUES ($1, $2)
             ON CONFLICT (name) DO NOTHING",
            &[&name, &position],
        )
        .await?;
        Ok(())
    }

    async fn claim_cursor(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<u64>, StoreError> {
        let row = self
            .query_opt(
                "UPDATE event_cursors SET owner = $2, lease_until = $4
                 WHERE name = $1
                     AND (owner IS NULL OR owner = $2 OR lease_until IS NULL OR lease_until < $3)
                 RETURNING position",
                &[&name, &owner, &ms(&now), &ms(&until)],
            )
            .await?;
        Ok(match row {
            Some(r) => Some(count(col(&r, 0, "position")?)?),
            None => None,
        })
    }

    async fn advance_cursor(
        &self,
        name: &str,
        owner: &str,
        position: u64,
    ) -> Result<bool, StoreError> {
        let position = i64::try_from(position)
            .map_err(|_| StoreError::Backend("cursor position out of range".into()))?;
        let n = self
            .execute(
                "UPDATE event_cursors SET position = $3 WHERE name = $1 AND owner = $2",
                &[&name, &owner, &position],
            )
            .await?;
        Ok(n > 0)
    }
}
