//! The background side of the PostgreSQL events outbox: the sequencer that gives committed
//! events their ids (see `events.rs` for why ids are given after commit), its loop, and the
//! LISTEN connection on [`CHANNEL`] that wakes this instance's readers when any instance's
//! sequencer gave ids.
//!
//! Each store runs two background tasks ([`Outbox`]): the sequencer loop, woken by this
//! store's writes and every [`PUBLISH_EVERY`], and the LISTEN connection. That connection
//! also listens on [`CREDENTIALS_CHANNEL`], notified by triggers (migration 0010) whenever
//! an API key, user or session changes, and keeps the store's credential feed
//! ([`CredentialEpoch`]): live while connected, its epoch moved on every notification and
//! every reconnection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use contextd_core::store::{CredentialEpoch, StoreError};
use tokio::sync::{watch, Notify};
use tokio::task::AbortHandle;
use tokio_postgres::{AsyncMessage, IsolationLevel};

use crate::db::{col, count, db_error, Db, Failure};

/// How long the sequencer waits after a write's wake-up, gathering more events per pass.
const COALESCE: Duration = Duration::from_millis(10);
/// The channel every sequencer that gave ids notifies on.
pub(crate) const CHANNEL: &str = "contextd_events";
/// The channel the credential triggers notify on.
pub(crate) const CREDENTIALS_CHANNEL: &str = "contextd_credentials";
/// The advisory lock that makes sequencers take turns ("contextd" in ASCII).
const SEQUENCER_LOCK: i64 = 0x636f_6e74_6578_7464;
/// The sequencer runs at least this often, to publish other instances' events should theirs
/// have stopped.
const PUBLISH_EVERY: Duration = Duration::from_millis(500);
/// How often the LISTEN connection is checked (a notification on a channel of its own, sent
/// through the pool, must come back: `probe`), and how long a check may take: a connection
/// lost without a word (a dead network path) is noticed within their sum, and until then the
/// credential feed says live while it hears nothing. Kept short for that reason.
const LISTEN_CHECK_EVERY: Duration = Duration::from_secs(5);
const LISTEN_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// The wait before reconnecting the LISTEN connection: doubling from the first to the last.
const LISTEN_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

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
    credentials: watch::Sender<CredentialEpoch>,
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
        let (credentials, _) = watch::channel(CredentialEpoch::default());
        let written = Arc::new(Notify::new());
        let sequencer = tokio::spawn(sequence(db.detached(), written.clone(), signal.clone()));
        let signals = Signals {
            events: signal.clone(),
            credentials: credentials.clone(),
        };
        let listener = tokio::spawn(listen(db.detached(), signals));
        Self {
            signal,
            credentials,
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

    /// A receiver of the credential feed.
    pub(crate) fn credential_changes(&self) -> watch::Receiver<CredentialEpoch> {
        self.credentials.subscribe()
    }
}

/// What the LISTEN connection tells: readers of events, and the credential feed.
struct Signals {
    events: watch::Sender<u64>,
    credentials: watch::Sender<CredentialEpoch>,
}

impl Signals {
    fn events(&self) {
        self.events.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Moves the credential epoch on and says whether the feed is `live`.
    fn credentials(&self, live: bool) {
        self.credentials.send_modify(|e| {
            e.epoch = e.epoch.wrapping_add(1);
            e.live = live;
        });
    }
}

/// The sequencer loop: publishes when a write of this store committed, and every
/// [`PUBLISH_EVERY`] in any case.
async fn sequence(db: Db, written: Arc<Notify>, signal: watch::Sender<u64>) {
    let mut failing = false;
    loop {
        // A write while publishing left a permit: the next pass starts soon. Each pass is a
        // transaction of its own (a WAL flush); waiting a few milliseconds after a write
        // lets one pass number the events of many concurrent writes.
        if tokio::time::timeout(PUBLISH_EVERY, written.notified())
            .await
            .is_ok()
        {
            tokio::time::sleep(COALESCE).await;
        }
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

/// The LISTEN connection: bumps the events signal on every notification of [`CHANNEL`], and
/// once on each (re)connection for what it may have missed meanwhile; moves the credential
/// feed on every notification of [`CREDENTIALS_CHANNEL`], and takes it down while
/// disconnected; reconnects with backoff.
async fn listen(db: Db, signals: Signals) {
    let mut backoff = LISTEN_BACKOFF.0;
    loop {
        let started = Instant::now();
        let e = listen_once(&db, &signals).await;
        signals.credentials(false);
        if started.elapsed() > LISTEN_CHECK_EVERY {
            backoff = LISTEN_BACKOFF.0;
        }
        tracing::debug!(error = %e, ?backoff, "event notifications interrupted; reconnecting");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(LISTEN_BACKOFF.1);
    }
}

/// Proves that notifications reach the LISTEN connection: notifies its own `channel` through a
/// pooled connection and waits for it to be `heard`, at most [`LISTEN_CHECK_TIMEOUT`]. A
/// LISTEN accepted by a pooler in transaction mode (PgBouncer) stays on a server connection
/// this one no longer has, so it succeeds and then hears nothing; trusting it would keep
/// revoked credentials cached.
async fn probe(db: &Db, channel: &str, heard: &Notify) -> Result<(), StoreError> {
    let sent = async {
        let client = db.client().await?;
        let stmt = client.prepare_cached("SELECT pg_notify($1, '')").await?;
        client.execute(&stmt, &[&channel]).await?;
        heard.notified().await;
        Ok::<_, Failure>(())
    };
    match tokio::time::timeout(LISTEN_CHECK_TIMEOUT, sent).await {
        Ok(result) => result.map_err(StoreError::from),
        Err(_) => Err(StoreError::Backend(
            "postgres: notifications do not reach the LISTEN connection".into(),
        )),
    }
}

/// One LISTEN connection, until it fails; returns why.
async fn listen_once(db: &Db, signals: &Signals) -> StoreError {
    let (client, mut connection) = match db.dedicated().await {
        Ok(c) => c,
        Err(e) => return e,
    };
    // A channel of this connection alone, notified through the pool to prove that
    // notifications reach it (see `probe`).
    let probe_channel = format!("contextd_probe_{}", uuid::Uuid::new_v4().simple());
    let heard = Notify::new();
    // The connection does the client's work only while it is polled, so the driver runs
    // beside the commands below.
    let driver = async {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) if n.channel() == CREDENTIALS_CHANNEL => {
                    signals.credentials(true);
                }
                Some(Ok(AsyncMessage::Notification(n))) if n.channel() == probe_channel => {
                    heard.notify_one();
                }
                Some(Ok(AsyncMessage::Notification(_))) => signals.events(),
                Some(Ok(_)) => {}
                Some(Err(e)) => return db_error(&e),
                None => return StoreError::Backend("postgres: connection closed".into()),
            }
        }
    };
    let commands = async {
        let listen =
            format!("LISTEN {CHANNEL}; LISTEN {CREDENTIALS_CHANNEL}; LISTEN {probe_channel}");
        if let Err(e) = client.batch_execute(&listen).await {
            return db_error(&e);
        }
        signals.events();
        if let Err(e) = probe(db, &probe_channel, &heard).await {
            return e;
        }
        // Live from here: whatever changed while it was down is behind the new epoch.
        signals.credentials(true);
        loop {
            tokio::time::sleep(LISTEN_CHECK_EVERY).await;
            if let Err(e) = probe(db, &probe_channel, &heard).await {
                return e;
            }
        }
    };
    tokio::select! {
        e = driver => e,
        e = commands => e,
    }
}
