//! [`EventStore`] for [`SqliteStore`]: the events outbox (rows of `events`, written by the
//! object writes of `objects.rs` in their own transactions), its pruning, and the leased
//! cursors of the channels that forward it (`event_cursors`).
//!
//! The single writer thread commits in id order, so every committed event is readable at once
//! and in order: `publish_events` has nothing to do.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextd_core::ids::{ObjectId, OrgId, Scope};
use contextd_core::object::Contributor;
use contextd_core::store::{EventStore, StoreError, StoredEvent};
use contextd_proto::events::Event;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use tokio::sync::watch;

use crate::db::{
    int_col, ms, opt_parse_col, opt_text_col, opt_uuid_col, parse_col, text_col, time_col,
    uuid_col, DbResultExt,
};
use crate::store::{blob, SqliteStore};

/// Events (and delivery attempts) deleted per write job when pruning: a large prune runs as
/// several short jobs rather than one that holds up every other write.
const PRUNE_CHUNK: i64 = 5_000;

/// The start of every statement that records events, for `concat!`: the columns of `events`
/// but its id, in the order the values follow.
macro_rules! insert_events {
    () => {
        "INSERT INTO events (org_id, partition, event_type, object_id, kind, customer_id, \
         parent_id, media_type, state, last_updated, contributor_id, contributor_type, recorded) "
    };
}
pub(crate) use insert_events;

/// The columns [`event_from_row`] reads, in order.
const EVENT_COLUMNS: &str = "id, org_id, partition, event_type, object_id, kind, customer_id, \
     parent_id, media_type, state, last_updated, contributor_id, contributor_type, recorded, \
     addressed_to";

/// An event flattened into the values of an `events` row, built on the caller's thread.
pub(crate) struct EventRow {
    org: [u8; 16],
    partition: &'static str,
    event_type: &'static str,
    object_id: [u8; 16],
    kind: &'static str,
    customer_id: Option<[u8; 16]>,
    parent_id: Option<[u8; 16]>,
    media_type: Option<&'static str>,
    state: &'static str,
    last_updated: i64,
    contributor_id: String,
    contributor_type: &'static str,
    recorded: i64,
    addressed_to: Option<String>,
}

impl EventRow {
    /// Flattens an event (its `id` is the store's to assign).
    pub(crate) fn new(e: &StoredEvent) -> Self {
        let ev = &e.event;
        Self {
            org: blob(e.scope.org.0),
            partition: e.scope.partition.as_str(),
            event_type: ev.event_type.as_str(),
            object_id: blob(ev.object_id.0),
            kind: ev.object_type.as_str(),
            customer_id: ev.customer_id.map(|c| blob(c.0)),
            parent_id: ev.parent_id.map(|p| blob(p.0)),
            media_type: ev.media_type.map(|m| m.as_str()),
            state: ev.state.as_str(),
            last_updated: ms(&ev.last_updated),
            contributor_id: ev.contributor.id.clone(),
            contributor_type: ev.contributor.kind.as_str(),
            recorded: ms(&ev.time),
            addressed_to: ev.addressed_to.clone(),
        }
    }

    /// Appends the event to the outbox, in the caller's transaction.
    pub(crate) fn record(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        tx.prepare_cached(
            "INSERT INTO events (org_id, partition, event_type, object_id, kind, customer_id, \
             parent_id, media_type, state, last_updated, contributor_id, contributor_type, \
             recorded, addressed_to) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )
        .db()?
        .execute(params![
            self.org,
            self.partition,
            self.event_type,
            self.object_id,
            self.kind,
            self.customer_id,
            self.parent_id,
            self.media_type,
            self.state,
            self.last_updated,
            self.contributor_id,
            self.contributor_type,
            self.recorded,
            self.addressed_to,
        ])
        .db()?;
        Ok(())
    }
}

/// Reads a row selected with [`EVENT_COLUMNS`].
fn event_from_row(r: &Row<'_>) -> Result<StoredEvent, StoreError> {
    let col = |i: usize| r.get_ref(i).db();
    Ok(StoredEvent {
        scope: Scope {
            org: OrgId(uuid_col(col(1)?, "org_id")?),
            partition: parse_col(col(2)?, "partition")?,
        },
        event: Event {
            id: unsigned(int_col(col(0)?, "id")?, "id")?,
            event_type: parse_col(col(3)?, "event_type")?,
            object_id: ObjectId(uuid_col(col(4)?, "object_id")?),
            object_type: parse_col(col(5)?, "kind")?,
            customer_id: opt_uuid_col(col(6)?, "customer_id")?.map(ObjectId),
            parent_id: opt_uuid_col(col(7)?, "parent_id")?.map(ObjectId),
            media_type: opt_parse_col(col(8)?, "media_type")?,
            state: parse_col(col(9)?, "state")?,
            last_updated: time_col(col(10)?, "last_updated")?,
            contributor: Contributor {
                id: text_col(col(11)?, "contributor_id")?.to_owned(),
                kind: parse_col(col(12)?, "contributor_type")?,
            },
            time: time_col(col(13)?, "recorded")?,
            addressed_to: opt_text_col(col(14)?, "addressed_to")?.map(str::to_owned),
        },
    })
}

/// The events a query selecting [`EVENT_COLUMNS`] returns, in its order.
fn query_events<P: rusqlite::Params>(
    c: &Connection,
    sql: &str,
    params: P,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut stmt = c.prepare_cached(sql).db()?;
    let mut rows = stmt.query(params).db()?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().db()? {
        out.push(event_from_row(r)?);
    }
    Ok(out)
}

/// A stored non-negative integer (an id, a position, a count).
pub(crate) fn unsigned(n: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::corrupt(what))
}

/// An id or position as bound to a statement; SQLite integers stop at `i64::MAX`, beyond
/// which no id is ever assigned, so a larger bound means "past every row".
pub(crate) fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Runs one chunk of a prune: `sql` deletes up to `?2` rows recorded before `?1`.
async fn prune_chunk(
    store: &SqliteStore,
    sql: &'static str,
    before: i64,
) -> Result<u64, StoreError> {
    store
        .db
        .write(move |tx| {
            let n = tx
                .prepare_cached(sql)
                .db()?
                .execute(params![before, PRUNE_CHUNK])
                .db()?;
            Ok(n as u64)
        })
        .await
}

/// Runs [`prune_chunk`] until a chunk comes back short; returns how many rows it deleted.
async fn prune(store: &SqliteStore, sql: &'static str, before: i64) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let n = prune_chunk(store, sql, before).await?;
        total += n;
        if n < PRUNE_CHUNK as u64 {
            return Ok(total);
        }
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn events_after(
        &self,
        scope: Option<Scope>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let (after, limit) = (signed(after), i64::try_from(limit).unwrap_or(i64::MAX));
        self.db
            .read(move |c| match scope {
                Some(s) => query_events(
                    c,
                    &format!(
                        "SELECT {EVENT_COLUMNS} FROM events
                         WHERE org_id = ?1 AND partition = ?2 AND id > ?3 ORDER BY id LIMIT ?4"
                    ),
                    params![blob(s.org.0), s.partition.as_str(), after, limit],
                ),
                None => query_events(
                    c,
                    &format!(
                        "SELECT {EVENT_COLUMNS} FROM events WHERE id > ?1 ORDER BY id LIMIT ?2"
                    ),
                    params![after, limit],
                ),
            })
            .await
    }

    async fn last_event_id(&self, scope: Option<Scope>) -> Result<u64, StoreError> {
        let newest = self
            .db
            .point_read(move |c| {
                match scope {
                    Some(s) => c
                        .prepare_cached(
                            "SELECT max(id) FROM events WHERE org_id = ?1 AND partition = ?2",
                        )
                        .db()?
                        .query_row(params![blob(s.org.0), s.partition.as_str()], |r| {
                            r.get::<_, Option<i64>>(0)
                        }),
                    None => c
                        .prepare_cached(
                            // AUTOINCREMENT's high-water mark survives the rows' pruning.
                            "SELECT (SELECT seq FROM sqlite_sequence WHERE name = 'events')",
                        )
                        .db()?
                        .query_row([], |r| r.get::<_, Option<i64>>(0)),
                }
                .db()
            })
            .await?;
        newest.map_or(Ok(0), |n| unsigned(n, "id"))
    }

    async fn publish_events(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    fn event_signal(&self) -> watch::Receiver<u64> {
        self.events.subscribe()
    }

    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let before = ms(&before);
        let events = prune(
            self,
            "DELETE FROM events WHERE id IN
                 (SELECT id FROM events WHERE recorded < ?1 ORDER BY recorded LIMIT ?2)",
            before,
        )
        .await?;
        prune(
            self,
            "DELETE FROM webhook_deliveries WHERE id IN
                 (SELECT id FROM webhook_deliveries WHERE at < ?1 ORDER BY at LIMIT ?2)",
            before,
        )
        .await?;
        Ok(events)
    }

    async fn ensure_cursor(&self, name: &str, position: u64) -> Result<(), StoreError> {
        let (name, position) = (name.to_owned(), signed(position));
        self.db
            .write(move |tx| {
                tx.prepare_cached(
                    "INSERT INTO event_cursors (name, position) VALUES (?1, ?2)
                     ON CONFLICT DO NOTHING",
                )
                .db()?
                .execute(params![name, position])
                .db()?;
                Ok(())
            })
            .await
    }

    async fn claim_cursor(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<u64>, StoreError> {
        let (name, owner, now, until) = (name.to_owned(), owner.to_owned(), ms(&now), ms(&until));
        let position = self
            .db
            .write(move |tx| {
                tx.prepare_cached(
                    "UPDATE event_cursors SET owner = ?2, lease_until = ?4
                     WHERE name = ?1
                       AND (owner IS NULL OR owner = ?2 OR lease_until IS NULL OR lease_until < ?3)
                     RETURNING position",
                )
                .db()?
                .query_row(params![name, owner, now, until], |r| r.get::<_, i64>(0))
                .optional()
                .db()
            })
            .await?;
        position.map(|p| unsigned(p, "position")).transpose()
    }

    async fn advance_cursor(
        &self,
        name: &str,
        owner: &str,
        position: u64,
    ) -> Result<bool, StoreError> {
        let (name, owner, position) = (name.to_owned(), owner.to_owned(), signed(position));
        self.db
            .write(move |tx| {
                let n = tx
                    .prepare_cached(
                        "UPDATE event_cursors SET position = ?3 WHERE name = ?1 AND owner = ?2",
                    )
                    .db()?
                    .execute(params![name, owner, position])
                    .db()?;
                Ok(n > 0)
            })
            .await
    }
}
