//! [`ObjectStore`] for [`SqliteStore`]: object writes with their tokens and parent checks,
//! reads, search and timeline pages, the auto-close sweep, flushes and erasure.
//!
//! Every change records its events (`events.rs`) inside its own write job, so in the
//! transaction of the change: a write that fails leaves no event, and no event is missing
//! for a change that committed. Deletes record theirs from the rows before deleting them.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextd_core::ids::{ObjectId, Scope};
use contextd_core::object::{Contributor, Kind};
use contextd_core::store::{
    check_ids_read, system_contributor, Erasure, IdPage, ObjectPage, ObjectStore, ObjectWrite,
    PagePosition, ParentCheck, ParentRow, RawObject, SearchPlan, StoreError, StoredEvent,
    StoredObject, TimelineQuery,
};
use contextd_proto::events::EventType;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row, Transaction};
use uuid::Uuid;

use crate::access;
use crate::db::{int_col, ms, parse_col, time_col, uuid_col, DbResultExt};
use crate::dictionary::dictionary_version;
use crate::events::{insert_events, EventRow};
use crate::rows::{object_from_row, raw_object_from_row, ObjectRow, OBJECT_COLUMNS};
use crate::search::Filter;
use crate::store::{blob, token_blobs, SqliteStore};

/// Inserts or updates the object with its tokens, checking the parent first, and records its
/// event.
fn write_object(
    tx: &Transaction<'_>,
    row: &ObjectRow,
    tokens: &[[u8; 16]],
    write: WriteMode,
    event: &EventRow,
) -> Result<(), StoreError> {
    let parent_key = match write.parent_check {
        Some(check) => check_parent(tx, row, &check)?,
        None => None,
    };
    if let Some(version) = write.dictionary_version {
        // The writer thread serializes this with dictionary changes.
        if dictionary_version(tx, row.org)? != version {
            return Err(StoreError::DictionaryChanged);
        }
    }
    if let Some(customer) = write.customer_check {
        check_customer(tx, row, customer)?;
    }
    match write.expected_version {
        None => insert_object(tx, row, tokens)?,
        Some(expected) => update_object(tx, row, tokens, expected)?,
    }
    if let Some(parent) = parent_key {
        tx.prepare_cached(
            "UPDATE objects SET touched = max(touched, ?1)
             WHERE org_id = ?2 AND partition = ?3 AND journey = ?4 AND created = ?5 AND id = ?6",
        )
        .db()?
        .execute(params![
            row.last_updated,
            row.org,
            row.partition,
            blob(parent.journey),
            parent.created,
            blob(parent.id)
        ])
        .db()?;
    }
    event.record(tx)
}

/// The event type, contributor and time of the events a statement records from `objects`
/// rows (flush, delete, erase, sweep), bound after the statement's own parameters.
struct Recorded {
    event_type: &'static str,
    by_id: String,
    by_type: &'static str,
    at: i64,
}

impl Recorded {
    fn new(event_type: EventType, by: &Contributor) -> Self {
        Self {
            event_type: event_type.as_str(),
            by_id: by.id.clone(),
            by_type: by.kind.as_str(),
            at: ms(&contextd_core::time::now_ms()),
        }
    }
}

/// Records an event for every object of the scope that `filter` (on `?3`) selects, as the
/// row is now; returns how many. `sql` is one of the `RECORD_*` statements.
fn record_from_objects(
    tx: &Transaction<'_>,
    sql: &'static str,
    org: [u8; 16],
    partition: &str,
    filter: &dyn rusqlite::ToSql,
    change: &Recorded,
) -> Result<u64, StoreError> {
    let n = tx
        .prepare_cached(sql)
        .db()?
        .execute(params![
            org,
            partition,
            filter,
            change.event_type,
            change.by_id,
            change.by_type,
            change.at
        ])
        .db()?;
    Ok(n as u64)
}

/// The projection of an `objects` row into an event, with the bindings of [`Recorded`].
macro_rules! object_event {
    () => {
        "SELECT org_id, partition, ?4, id, kind, customer_id, parent_id, media_type, state, \
         last_updated, ?5, ?6, ?7 FROM objects WHERE org_id = ?1 AND partition = ?2 "
    };
}

/// See [`record_from_objects`]: the object `?3`.
const RECORD_OBJECT: &str = concat!(insert_events!(), object_event!(), "AND id = ?3");
/// The objects of kind `?3`.
const RECORD_KIND: &str = concat!(insert_events!(), object_event!(), "AND kind = ?3");
/// Customer `?3` and the objects linked to it, unless its erasure is already recorded.
const RECORD_ERASED: &str = concat!(
    insert_events!(),
    object_event!(),
    "AND (journey = ?3 OR id = ?3) AND NOT EXISTS
         (SELECT 1 FROM erasures WHERE org_id = ?1 AND partition = ?2 AND customer_id = ?3)"
);

/// The customer an object newly links to is there (the writer thread serializes this with an
/// erase: the customer is there, or gone).
fn check_customer(
    tx: &Transaction<'_>,
    row: &ObjectRow,
    customer: ObjectId,
) -> Result<(), StoreError> {
    let exists: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM objects
             WHERE org_id = ?1 AND partition = ?2 AND id = ?3 AND kind = 'customer')",
        )
        .db()?
        .query_row(params![row.org, row.partition, blob(customer.0)], |r| {
            r.get(0)
        })
        .db()?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::CustomerNotFound)
    }
}

/// Inserts a new object and its tokens.
fn insert_object(
    tx: &Transaction<'_>,
    row: &ObjectRow,
    tokens: &[[u8; 16]],
) -> Result<(), StoreError> {
    let inserted = tx
        .prepare_cached(
            "INSERT INTO objects (org_id, partition, id, kind, customer_id, parent_id, state, media_type,
                 detail_type, created, last_updated, touched, version, body, sealed, key_version,
                 journey)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                 coalesce(?5, ?3))
             ON CONFLICT DO NOTHING",
        )
        .db()?
        .execute(&row.columns()[..])
        .db()?;
    if inserted == 0 {
        return Err(StoreError::AlreadyExists);
    }
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO tokens (org_id, partition, token, object_id) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
        )
        .db()?;
    for token in tokens {
        insert
            .execute(params![row.org, row.partition, token, row.id])
            .db()?;
    }
    Ok(())
}

/// Replaces the stored object if it still has the `expected` version, and its tokens.
fn update_object(
    tx: &Transaction<'_>,
    row: &ObjectRow,
    tokens: &[[u8; 16]],
    expected: i64,
) -> Result<(), StoreError> {
    // `touched` never moves back: a child written meanwhile may have advanced it.
    let updated = tx
        .prepare_cached(
            "UPDATE objects SET kind = ?4, customer_id = ?5, journey = coalesce(?5, id),
                 parent_id = ?6, state = ?7, media_type = ?8,
                 detail_type = ?9, created = ?10, last_updated = ?11, touched = max(touched, ?12),
                 version = ?13, body = ?14, sealed = ?15, key_version = ?16
             WHERE org_id = ?1 AND partition = ?2 AND id = ?3 AND version = ?17",
        )
        .db()?
        .execute(&[&row.columns()[..], &[&expected as &dyn rusqlite::ToSql]].concat()[..])
        .db()?;
    if updated == 0 {
        let current: Option<i64> = tx
            .prepare_cached(
                "SELECT version FROM objects WHERE org_id = ?1 AND partition = ?2 AND id = ?3",
            )
            .db()?
            .query_row(params![row.org, row.partition, row.id], |r| r.get(0))
            .optional()
            .db()?;
        return Err(match current {
            Some(current) => StoreError::VersionConflict { current },
            None => StoreError::NotFound,
        });
    }
    replace_tokens(tx, row, tokens)?;
    Ok(())
}

#[derive(Clone, Copy)]
struct WriteMode {
    expected_version: Option<i64>,
    parent_check: Option<ParentCheck>,
    customer_check: Option<ObjectId>,
    dictionary_version: Option<u64>,
}

impl WriteMode {
    fn of(write: &ObjectWrite) -> Self {
        Self {
            expected_version: write.expected_version,
            parent_check: write.parent_check,
            customer_check: write.customer_check,
            dictionary_version: write.dictionary_version,
        }
    }
}

/// The primary key of an object in its org and partition.
struct ObjectKey {
    journey: Uuid,
    created: i64,
    id: Uuid,
}

/// Applies the parent rules ([`ParentCheck::check`]); returns the key of a parent request
/// whose `touched` the write must refresh.
fn check_parent(
    tx: &Transaction<'_>,
    row: &ObjectRow,
    check: &ParentCheck,
) -> Result<Option<ObjectKey>, StoreError> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT journey, created, kind, state, touched FROM objects
             WHERE org_id = ?1 AND partition = ?2 AND id = ?3",
        )
        .db()?;
    let mut rows = stmt
        .query(params![row.org, row.partition, blob(check.id.0)])
        .db()?;
    let parent = match rows.next().db()? {
        Some(r) => Some((
            ObjectKey {
                journey: uuid_col(r.get_ref(0).db()?, "journey")?,
                created: int_col(r.get_ref(1).db()?, "created")?,
                id: check.id.0,
            },
            ParentRow {
                kind: parse_col(r.get_ref(2).db()?, "kind")?,
                state: parse_col(r.get_ref(3).db()?, "state")?,
                touched: time_col(r.get_ref(4).db()?, "touched")?,
            },
        )),
        None => None,
    };
    let refresh = check.check(parent.as_ref().map(|(_, p)| *p))?;
    Ok(parent.filter(|_| refresh).map(|(key, _)| key))
}

/// Makes the object's token set equal to `tokens`, touching only the rows that change.
fn replace_tokens(
    tx: &Transaction<'_>,
    row: &ObjectRow,
    tokens: &[[u8; 16]],
) -> Result<(), StoreError> {
    let wanted: BTreeSet<[u8; 16]> = tokens.iter().copied().collect();
    let mut existing = BTreeSet::new();
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT token FROM tokens WHERE org_id = ?1 AND partition = ?2 AND object_id = ?3",
            )
            .db()?;
        let mut rows = stmt.query(params![row.org, row.partition, row.id]).db()?;
        while let Some(r) = rows.next().db()? {
            let token: [u8; 16] = r
                .get_ref(0)
                .db()?
                .as_blob()
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| StoreError::corrupt("token"))?;
            existing.insert(token);
        }
    }
    let mut delete = tx
        .prepare_cached("DELETE FROM tokens WHERE org_id = ?1 AND partition = ?2 AND token = ?3 AND object_id = ?4")
        .db()?;
    for token in existing.difference(&wanted) {
        delete
            .execute(params![row.org, row.partition, token, row.id])
            .db()?;
    }
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO tokens (org_id, partition, token, object_id) VALUES (?1, ?2, ?3, ?4)",
        )
        .db()?;
    for token in wanted.difference(&existing) {
        insert
            .execute(params![row.org, row.partition, token, row.id])
            .db()?;
    }
    Ok(())
}

/// A read transaction over cached `BEGIN`/`COMMIT` statements (rusqlite's `Transaction`
/// parses them on every call), ended on drop so that no connection goes back to the pool
/// holding a snapshot.
struct ReadTransaction<'c>(&'c Connection);

impl<'c> ReadTransaction<'c> {
    fn begin(conn: &'c Connection) -> Result<Self, StoreError> {
        if !conn.is_autocommit() {
            // Left open by a failed COMMIT on an earlier use of this pooled connection.
            conn.prepare_cached("ROLLBACK").db()?.execute([]).db()?;
        }
        conn.prepare_cached("BEGIN").db()?.execute([]).db()?;
        Ok(Self(conn))
    }
}

impl std::ops::Deref for ReadTransaction<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.0
    }
}

impl Drop for ReadTransaction<'_> {
    fn drop(&mut self) {
        if !self.0.is_autocommit() {
            if let Err(e) = self
                .0
                .prepare_cached("COMMIT")
                .and_then(|mut s| s.execute([]))
            {
                tracing::warn!(error = %e, "ending a SQLite read transaction failed");
            }
        }
    }
}

/// Runs a page query and, only when the page does not tell it, the count query, in one read
/// transaction so that both see the same snapshot.
fn page<T>(
    conn: &Connection,
    filter: &Filter,
    columns: &str,
    after: Option<PagePosition>,
    limit: usize,
    map: impl Fn(&Row<'_>) -> Result<(T, PagePosition), StoreError>,
) -> Result<(Vec<T>, u64, Option<PagePosition>), StoreError> {
    let tx = ReadTransaction::begin(conn)?;
    let statement = filter.page(columns, after, limit.saturating_add(1));
    let mut items = Vec::with_capacity(limit.min(256) + 1);
    {
        let mut stmt = tx.prepare_cached(&statement.sql).db()?;
        let mut rows = stmt.query(params_from_iter(statement.params.iter())).db()?;
        while let Some(r) = rows.next().db()? {
            items.push(map(r)?);
        }
    }
    let more = items.len() > limit;
    items.truncate(limit);
    let total = if after.is_none() && !more {
        items.len() as u64
    } else {
        let count = filter.count();
        let n: i64 = tx
            .prepare_cached(&count.sql)
            .db()?
            .query_row(params_from_iter(count.params.iter()), |r| r.get(0))
            .db()?;
        u64::try_from(n).map_err(|_| StoreError::corrupt("count"))?
    };
    let next = if more {
        items.last().map(|(_, p)| *p)
    } else {
        None
    };
    drop(tx);
    Ok((items.into_iter().map(|(t, _)| t).collect(), total, next))
}

/// The event a write records.
fn event_of(write: &ObjectWrite) -> EventRow {
    EventRow::new(&StoredEvent::of_write(&write.object, &write.change))
}

#[async_trait]
impl ObjectStore for SqliteStore {
    async fn write_object(&self, write: &ObjectWrite) -> Result<(), StoreError> {
        let row = ObjectRow::new(&write.object)?;
        let tokens = token_blobs(&write.tokens);
        let mode = WriteMode::of(write);
        let event = event_of(write);
        self.db
            .write(move |tx| write_object(tx, &row, &tokens, mode, &event))
            .await?;
        self.events_recorded();
        Ok(())
    }

    async fn write_objects(&self, writes: &[ObjectWrite]) -> Result<(), StoreError> {
        let rows = writes
            .iter()
            .map(|w| {
                Ok((
                    ObjectRow::new(&w.object)?,
                    token_blobs(&w.tokens),
                    WriteMode::of(w),
                    event_of(w),
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.db
            .write(move |tx| {
                for (row, tokens, mode, event) in &rows {
                    write_object(tx, row, tokens, *mode, event)?;
                }
                Ok(())
            })
            .await?;
        if !writes.is_empty() {
            self.events_recorded();
        }
        Ok(())
    }

    async fn object(&self, scope: Scope, id: ObjectId) -> Result<Option<StoredObject>, StoreError> {
        self.db
            .point_read(move |c| {
                let mut stmt = c
                    .prepare_cached(&format!(
                        "SELECT {OBJECT_COLUMNS} FROM objects o WHERE o.org_id = ?1 AND o.partition = ?2 AND o.id = ?3"
                    ))
                    .db()?;
                let mut rows = stmt.query(params![blob(scope.org.0), scope.partition.as_str(), blob(id.0)]).db()?;
                rows.next().db()?.map(|r| object_from_row(scope, r)).transpose()
            })
            .await
    }

    async fn objects(
        &self,
        scope: Scope,
        ids: &[ObjectId],
    ) -> Result<Vec<StoredObject>, StoreError> {
        check_ids_read(ids)?;
        let ids: Vec<ObjectId> = ids.to_vec();
        self.db
            .read(move |c| {
                // One indexed probe per id, on one connection and one prepared statement.
                let mut stmt = c
                    .prepare_cached(&format!(
                        "SELECT {OBJECT_COLUMNS} FROM objects o WHERE o.org_id = ?1 AND o.partition = ?2 AND o.id = ?3"
                    ))
                    .db()?;
                let mut found = Vec::with_capacity(ids.len());
                for id in ids {
                    let mut rows = stmt
                        .query(params![blob(scope.org.0), scope.partition.as_str(), blob(id.0)])
                        .db()?;
                    if let Some(r) = rows.next().db()? {
                        found.push(object_from_row(scope, r)?);
                    }
                }
                Ok(found)
            })
            .await
    }

    async fn erased(&self, scope: Scope, ids: &[ObjectId]) -> Result<Vec<ObjectId>, StoreError> {
        check_ids_read(ids)?;
        let ids: Vec<ObjectId> = ids.to_vec();
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT 1 FROM erasures WHERE org_id = ?1 AND partition = ?2 AND customer_id = ?3",
                    )
                    .db()?;
                let mut erased = Vec::new();
                for id in ids {
                    let found = stmt
                        .exists(params![blob(scope.org.0), scope.partition.as_str(), blob(id.0)])
                        .db()?;
                    if found {
                        erased.push(id);
                    }
                }
                Ok(erased)
            })
            .await
    }

    async fn delete_object(
        &self,
        scope: Scope,
        id: ObjectId,
        by: &Contributor,
    ) -> Result<(), StoreError> {
        let (org, partition, id) = (blob(scope.org.0), scope.partition.as_str(), blob(id.0));
        let change = Recorded::new(EventType::Deleted, by);
        self.db
            .write(move |tx| {
                record_from_objects(tx, RECORD_OBJECT, org, partition, &id, &change)?;
                let n = tx
                    .prepare_cached(
                        "DELETE FROM objects WHERE org_id = ?1 AND partition = ?2 AND id = ?3",
                    )
                    .db()?
                    .execute(params![org, partition, id])
                    .db()?;
                if n == 0 {
                    return Err(StoreError::NotFound);
                }
                tx.prepare_cached(
                    "DELETE FROM tokens WHERE org_id = ?1 AND partition = ?2 AND object_id = ?3",
                )
                .db()?
                .execute(params![org, partition, id])
                .db()?;
                Ok(())
            })
            .await?;
        self.events_recorded();
        Ok(())
    }

    async fn search(&self, scope: Scope, plan: &SearchPlan) -> Result<ObjectPage, StoreError> {
        let Some(filter) = Filter::search(scope, plan)? else {
            return Ok(ObjectPage::default());
        };
        let (after, limit) = (plan.after, plan.limit);
        let (items, total, next) = self
            .db
            .short_read(move |c| {
                page(c, &filter, OBJECT_COLUMNS, after, limit, |r| {
                    let o = object_from_row(scope, r)?;
                    let position = PagePosition {
                        time: o.last_updated,
                        id: o.id,
                    };
                    Ok((o, position))
                })
            })
            .await?;
        Ok(ObjectPage { items, total, next })
    }

    async fn search_ids(&self, scope: Scope, plan: &SearchPlan) -> Result<IdPage, StoreError> {
        let Some(filter) = Filter::search(scope, plan)? else {
            return Ok(IdPage::default());
        };
        let (after, limit) = (plan.after, plan.limit);
        let (ids, total, next) = self
            .db
            .short_read(move |c| {
                page(c, &filter, "o.id, o.last_updated", after, limit, |r| {
                    let id = ObjectId(uuid_col(r.get_ref(0).db()?, "id")?);
                    Ok((
                        id,
                        PagePosition {
                            time: time_col(r.get_ref(1).db()?, "last_updated")?,
                            id,
                        },
                    ))
                })
            })
            .await?;
        Ok(IdPage { ids, total, next })
    }

    async fn timeline(
        &self,
        scope: Scope,
        query: &TimelineQuery,
    ) -> Result<ObjectPage<RawObject>, StoreError> {
        let filter = Filter::timeline(scope, query);
        let (after, limit) = (query.after, query.limit);
        let (items, total, next) = self
            .db
            .short_read(move |c| {
                page(c, &filter, OBJECT_COLUMNS, after, limit, |r| {
                    let o = raw_object_from_row(r)?;
                    let position = PagePosition {
                        time: o.created,
                        id: o.id,
                    };
                    Ok((o, position))
                })
            })
            .await?;
        Ok(ObjectPage { items, total, next })
    }

    async fn close_stale_requests(
        &self,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let (cutoff, now) = (ms(&cutoff), ms(&now));
        let change = Recorded::new(EventType::Closed, &system_contributor());
        let n = self
            .db
            .write(move |tx| {
                // The literals match the partial index `objects_active_requests`.
                tx.prepare_cached(concat!(
                    insert_events!(),
                    "SELECT org_id, partition, ?3, id, kind, customer_id, parent_id, media_type,
                         'closed', ?2, ?4, ?5, ?6
                     FROM objects WHERE kind = 'request' AND state = 'active' AND touched < ?1"
                ))
                .db()?
                .execute(params![
                    cutoff,
                    now,
                    change.event_type,
                    change.by_id,
                    change.by_type,
                    change.at
                ])
                .db()?;
                let n = tx
                    .prepare_cached(
                        "UPDATE objects SET state = 'closed', version = version + 1, last_updated = ?2
                         WHERE kind = 'request' AND state = 'active' AND touched < ?1",
                    )
                    .db()?
                    .execute(params![cutoff, now])
                    .db()?;
                Ok(n as u64)
            })
            .await?;
        if n > 0 {
            self.events_recorded();
        }
        Ok(n)
    }

    async fn flush(&self, scope: Scope, kind: Kind, by: &Contributor) -> Result<u64, StoreError> {
        let (org, partition, kind) = (blob(scope.org.0), scope.partition.as_str(), kind.as_str());
        let change = Recorded::new(EventType::Deleted, by);
        let n = self
            .db
            .write(move |tx| {
                record_from_objects(tx, RECORD_KIND, org, partition, &kind, &change)?;
                tx.prepare_cached(
                    "DELETE FROM tokens WHERE org_id = ?1 AND partition = ?2 AND object_id IN
                         (SELECT id FROM objects WHERE org_id = ?1 AND partition = ?2 AND kind = ?3)",
                )
                .db()?
                .execute(params![org, partition, kind])
                .db()?;
                let n = tx
                    .prepare_cached("DELETE FROM objects WHERE org_id = ?1 AND partition = ?2 AND kind = ?3")
                    .db()?
                    .execute(params![org, partition, kind])
                    .db()?;
                Ok(n as u64)
            })
            .await?;
        if n > 0 {
            self.events_recorded();
        }
        Ok(n)
    }

    async fn erase_customer(
        &self,
        scope: Scope,
        customer: ObjectId,
        by: &Contributor,
    ) -> Result<Erasure, StoreError> {
        let (org, partition) = (blob(scope.org.0), scope.partition.as_str());
        let change = Recorded::new(EventType::Erased, by);
        let (erasure, events) = self
            .db
            .write(move |tx| {
                // Only the first erase finds objects to record (and no record of an erasure);
                // if it then fails (`NotFound`), the job's savepoint takes the events back.
                let events = record_from_objects(
                    tx,
                    RECORD_ERASED,
                    org,
                    partition,
                    &blob(customer.0),
                    &change,
                )?;
                Ok((access::erase_customer(tx, scope, customer)?, events))
            })
            .await?;
        if events > 0 {
            self.events_recorded();
        }
        Ok(erasure)
    }

    async fn complete_erasure(&self, scope: Scope, customer: ObjectId) -> Result<(), StoreError> {
        self.db
            .write(move |tx| access::complete_erasure(tx, scope, customer))
            .await
    }

    async fn pending_erasures(&self, limit: usize) -> Result<Vec<(Scope, ObjectId)>, StoreError> {
        self.db
            .read(move |c| access::pending_erasures(c, limit))
            .await
    }
}
