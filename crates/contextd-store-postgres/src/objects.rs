//! [`ObjectStore`] for [`PgStore`]: object writes with their tokens and parent checks,
//! reads, search and timeline pages, the auto-close sweep, flushes and erasure.
//!
//! Every change records its events in its own statement (see `events.rs`): a data-modifying
//! `event` step inserts one row per object the statement wrote, from the rows it wrote, so
//! that a write that changes nothing records nothing, and a failed one rolls its events back
//! with it. After a change commits, the sequencer is told (`Outbox::wrote`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextd_core::ids::{ObjectId, OrgId, Scope};
use contextd_core::object::{Contributor, Kind};
use contextd_core::store::{
    check_ids_read, system_contributor, Erasure, IdPage, ObjectPage, ObjectStore, ObjectWrite,
    PagePosition, ParentCheck, ParentRow, RawObject, SearchPlan, StoreError, StoredEvent,
    StoredObject, TimelineQuery,
};
use contextd_proto::events::EventType;
use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::{col, count, ms, parse_col, prepare_dynamic, refs, Failure};
use crate::events::{insert_events, insert_write_events, ChangeRow};
use crate::rows::{
    object_from_row, raw_object_from_row, ObjectRow, OBJECT_COLUMNS, OBJECT_COLUMN_COUNT,
};
use crate::search::{Filter, Statement};
use crate::store::{token_bytes, PgStore};

// `$18` is the dictionary version the write was validated against (NULL: unchecked). The
// statement takes its lock on `objects` before its snapshot, so a dictionary change holding
// `objects` in SHARE mode (see `PgStore::change_dictionary`) either waits for it or is seen by it.
// `$19`…`$22` are the event's change columns (`ChangeRow::params`), `$23` its `addressed_to`.
const INSERT_OBJECT: &str = concat!(
    "WITH dict AS (
         SELECT coalesce((SELECT version FROM dictionary_versions WHERE org_id = $1), 0) AS v
     ), inserted AS (
         INSERT INTO objects (org_id, partition, id, kind, customer_id, parent_id, state, media_type,
             detail_type, created, last_updated, touched, version, body, sealed, key_version)
         SELECT $1::uuid, $2::text, $3::uuid, $4::text, $5::uuid, $6::uuid, $7::text, $8::text,
             $9::text, $10::timestamptz, $11::timestamptz, $12::timestamptz, $13::bigint, $14::jsonb,
             $15::bytea, $16::bigint
         FROM dict WHERE $18::bigint IS NULL OR dict.v = $18
         ON CONFLICT DO NOTHING
         RETURNING id
     ), tokens_added AS (
         INSERT INTO tokens (org_id, partition, token, object_id)
         SELECT DISTINCT $1::uuid, $2::text, n.token, i.id FROM inserted i, unnest($17::bytea[]) AS n (token)
         ON CONFLICT DO NOTHING
     ), event AS (
         ",
    insert_write_events!(),
    "SELECT $1, $2, $19, i.id, $4, $5, $6, $8, $7, $11, $20, $21, $22, $23 FROM inserted i
     )
     SELECT (SELECT count(*) FROM inserted), (SELECT v FROM dict)"
);

// An insert linked to a customer: the customer row is locked (KEY SHARE) by the same statement,
// so an erase, which locks it FOR UPDATE first, either waits for this insert and then deletes
// it too, or runs first and leaves this insert nothing to link to. `$18` is the customer,
// `$19` the dictionary version, `$20`…`$23` the event's change columns, `$24` its
// `addressed_to`.
const INSERT_LINKED_OBJECT: &str = concat!(
    "WITH customer AS (
         SELECT id FROM objects
         WHERE org_id = $1 AND partition = $2 AND id = $18 AND kind = 'customer'
         FOR KEY SHARE
     ), dict AS (
         SELECT coalesce((SELECT version FROM dictionary_versions WHERE org_id = $1), 0) AS v
     ), inserted AS (
         INSERT INTO objects (org_id, partition, id, kind, customer_id, parent_id, state, media_type,
             detail_type, created, last_updated, touched, version, body, sealed, key_version)
         SELECT $1::uuid, $2::text, $3::uuid, $4::text, $5::uuid, $6::uuid, $7::text, $8::text,
             $9::text, $10::timestamptz, $11::timestamptz, $12::timestamptz, $13::bigint, $14::jsonb,
             $15::bytea, $16::bigint
         FROM customer, dict WHERE $19::bigint IS NULL OR dict.v = $19
         ON CONFLICT DO NOTHING
         RETURNING id
     ), tokens_added AS (
         INSERT INTO tokens (org_id, partition, token, object_id)
         SELECT DISTINCT $1::uuid, $2::text, n.token, i.id FROM inserted i, unnest($17::bytea[]) AS n (token)
         ON CONFLICT DO NOTHING
     ), event AS (
         ",
    insert_write_events!(),
    "SELECT $1, $2, $20, i.id, $4, $5, $6, $8, $7, $11, $21, $22, $23, $24 FROM inserted i
     )
     SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM customer), (SELECT v FROM dict)"
);

// `touched` never moves back: a child written meanwhile may have advanced it. Tokens are
// replaced by difference, so unchanged ones are not rewritten. `$18` is the expected version,
// `$19` the dictionary version, `$20`…`$23` the event's change columns.
const UPDATE_OBJECT: &str = concat!(
    "WITH dict AS (
         SELECT coalesce((SELECT version FROM dictionary_versions WHERE org_id = $1), 0) AS v
     ), updated AS (
         UPDATE objects SET kind = $4, customer_id = $5, parent_id = $6, state = $7, media_type = $8,
             detail_type = $9, created = $10, last_updated = $11, touched = greatest(touched, $12),
             version = $13, body = $14, sealed = $15, key_version = $16
         FROM dict
         WHERE org_id = $1 AND partition = $2 AND id = $3 AND version = $18
             AND ($19::bigint IS NULL OR dict.v = $19)
         RETURNING id
     ), tokens_dropped AS (
         DELETE FROM tokens t USING updated u
         WHERE t.org_id = $1 AND t.partition = $2 AND t.object_id = u.id AND t.token <> ALL ($17::bytea[])
     ), tokens_added AS (
         INSERT INTO tokens (org_id, partition, token, object_id)
         SELECT DISTINCT $1::uuid, $2::text, n.token, u.id FROM updated u, unnest($17::bytea[]) AS n (token)
         ON CONFLICT DO NOTHING
     ), event AS (
         ",
    insert_write_events!(),
    "SELECT $1, $2, $20, u.id, $4, $5, $6, $8, $7, $11, $21, $22, $23, $24 FROM updated u
     )
     SELECT (SELECT count(*) FROM updated), (SELECT v FROM dict)"
);

/// An object write as bound: the row, its tokens and its event's change columns.
struct BoundWrite {
    row: ObjectRow,
    tokens: Vec<Vec<u8>>,
    change: ChangeRow,
    addressed_to: Option<String>,
}

impl BoundWrite {
    /// Binds a write, its event made once ([`StoredEvent::of_write`]) so that retries record
    /// the same.
    fn new(w: &ObjectWrite) -> Result<Self, StoreError> {
        let event = StoredEvent::of_write(&w.object, &w.change);
        Ok(Self {
            row: ObjectRow::new(&w.object)?,
            tokens: token_bytes(&w.tokens),
            change: ChangeRow::of(&event),
            addressed_to: event.event.addressed_to,
        })
    }
}

impl PgStore {
    /// One attempt at a write. Without a parent to check it is a single statement; with one,
    /// a transaction that locks the parent row first, so that the check, the write and the
    /// parent's `touched` refresh are one atomic step that the auto-close sweep and other
    /// children wait for.
    async fn write_once(&self, bound: &BoundWrite, write: &ObjectWrite) -> Result<(), Failure> {
        let mut client = self.db.client().await?;
        let Some(check) = &write.parent_check else {
            if write.expected_version.is_none() || write.customer_check.is_none() {
                return write_row(&client, bound, write).await;
            }
            let tx = client.transaction().await?;
            write_row(&tx, bound, write).await?;
            tx.commit().await?;
            return Ok(());
        };
        let tx = client.transaction().await?;
        write_checked(&tx, bound, write, check).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Several writes in one transaction, pipelined: the statements of every write are sent
    /// without waiting for the answers to the others' (the connection runs them in the order
    /// sent; no write of a batch depends on another's), so a batch of a thousand costs about
    /// one round trip per statement of one write, not of all.
    async fn write_all(&self, bound: &[BoundWrite], writes: &[ObjectWrite]) -> Result<(), Failure> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let each = bound.iter().zip(writes).map(|(b, write)| {
            let tx = &tx;
            async move {
                match &write.parent_check {
                    Some(check) => write_checked(tx, b, write, check).await,
                    None => write_row(tx, b, write).await,
                }
            }
        });
        let results = futures::future::join_all(each).await;
        if let Some(cause) = first_cause(results) {
            return Err(cause);
        }
        tx.commit().await?;
        Ok(())
    }

    /// Runs a page statement and splits its rows into items and the total.
    async fn page<T>(
        &self,
        statement: Statement,
        limit: usize,
        map: impl Fn(&Row) -> Result<(T, PagePosition), Failure>,
        total_column: usize,
    ) -> Result<(Vec<T>, u64, Option<PagePosition>), StoreError> {
        let client = self.db.client().await?;
        let stmt = prepare_dynamic(&client, &statement.sql).await?;
        let rows = client
            .query(&stmt, &refs(&statement.params))
            .await
            .map_err(Failure::from)?;
        let mut total = 0;
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            total = count(col(r, total_column, "total")?)?;
            if col::<Option<Uuid>>(r, 0, "id")?.is_some() {
                items.push(map(r)?);
            }
        }
        let more = items.len() > limit;
        items.truncate(limit);
        let next = if more {
            items.last().map(|(_, p)| *p)
        } else {
            None
        };
        Ok((items.into_iter().map(|(t, _)| t).collect(), total, next))
    }
}

/// The failure that refused a pipelined transaction: an answer for the caller if there is
/// one, else the first database error other than the "transaction is aborted" that every
/// statement sent after the first failure gets.
fn first_cause(results: Vec<Result<(), Failure>>) -> Option<Failure> {
    let mut errors: Vec<Failure> = results.into_iter().filter_map(Result::err).collect();
    let rank = |f: &Failure| match f {
        Failure::Store(_) => 0,
        f if f.code() == Some(&SqlState::IN_FAILED_SQL_TRANSACTION) => 2,
        _ => 1,
    };
    let best = (0..errors.len()).min_by_key(|&i| rank(&errors[i]))?;
    Some(errors.swap_remove(best))
}

/// Locks the parent, writes, and refreshes the parent's `touched`, inside `tx`.
async fn write_checked(
    tx: &deadpool_postgres::Transaction<'_>,
    bound: &BoundWrite,
    write: &ObjectWrite,
    check: &ParentCheck,
) -> Result<(), Failure> {
    let row = &bound.row;
    let refresh_parent = check_parent(tx, row, check).await?;
    write_row(tx, bound, write).await?;
    if refresh_parent {
        let stmt = tx
            .prepare_cached(
                "UPDATE objects SET touched = greatest(touched, $4)
                 WHERE org_id = $1 AND partition = $2 AND id = $3",
            )
            .await?;
        tx.execute(
            &stmt,
            &[&row.org, &row.partition, &check.id.0, &row.last_updated],
        )
        .await?;
    }
    Ok(())
}

/// Locks the customer an update moves the object to (as [`INSERT_LINKED_OBJECT`] does).
async fn lock_customer(
    c: &impl GenericClient,
    row: &ObjectRow,
    customer: Uuid,
) -> Result<(), Failure> {
    let stmt = c
        .prepare_cached(
            "SELECT id FROM objects WHERE org_id = $1 AND partition = $2 AND id = $3 AND kind = 'customer'
             FOR KEY SHARE",
        )
        .await?;
    match c
        .query_opt(&stmt, &[&row.org, &row.partition, &customer])
        .await?
    {
        Some(_) => Ok(()),
        None => Err(StoreError::CustomerNotFound.into()),
    }
}

/// Inserts (`expected_version` `None`) or updates the object with its tokens and its event,
/// in one statement (an update that moves the object to a customer locks that customer first).
async fn write_row(
    c: &impl GenericClient,
    bound: &BoundWrite,
    write: &ObjectWrite,
) -> Result<(), Failure> {
    let row = &bound.row;
    let mut params = refs(&row.params);
    params.push(&bound.tokens);
    let customer = write.customer_check.map(|c| c.0);
    let dictionary = write
        .dictionary_version
        .map(|v| i64::try_from(v).unwrap_or(i64::MAX));
    let stale = |seen: i64| dictionary.is_some_and(|v| v != seen);
    let Some(expected) = &write.expected_version else {
        if let Some(customer) = &customer {
            params.push(customer);
            params.push(&dictionary);
            params.extend(bound.change.params());
            params.push(&bound.addressed_to);
            let stmt = c.prepare_cached(INSERT_LINKED_OBJECT).await?;
            let r = c.query_one(&stmt, &params).await?;
            let (inserted, found, seen): (i64, i64, i64) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            return match (inserted, found) {
                (_, 0) => Err(StoreError::CustomerNotFound.into()),
                (0, _) if stale(seen) => Err(StoreError::DictionaryChanged.into()),
                (0, _) => Err(StoreError::AlreadyExists.into()),
                _ => Ok(()),
            };
        }
        params.push(&dictionary);
        params.extend(bound.change.params());
        params.push(&bound.addressed_to);
        let stmt = c.prepare_cached(INSERT_OBJECT).await?;
        let r = c.query_one(&stmt, &params).await?;
        let (inserted, seen): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
        return match inserted {
            0 if stale(seen) => Err(StoreError::DictionaryChanged.into()),
            0 => Err(StoreError::AlreadyExists.into()),
            _ => Ok(()),
        };
    };
    if let Some(customer) = customer {
        lock_customer(c, row, customer).await?;
    }
    params.push(expected);
    params.push(&dictionary);
    params.extend(bound.change.params());
    params.push(&bound.addressed_to);
    let stmt = c.prepare_cached(UPDATE_OBJECT).await?;
    let r = c.query_one(&stmt, &params).await?;
    let (updated, seen): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
    if updated > 0 {
        return Ok(());
    }
    if stale(seen) {
        return Err(StoreError::DictionaryChanged.into());
    }
    // A statement of its own: at READ COMMITTED it sees the version that made the update
    // miss, which the update's snapshot may predate.
    let stmt = c
        .prepare_cached(
            "SELECT version FROM objects WHERE org_id = $1 AND partition = $2 AND id = $3",
        )
        .await?;
    Err(match c
        .query_opt(&stmt, &[&row.org, &row.partition, &row.id])
        .await?
    {
        Some(r) => StoreError::VersionConflict {
            current: col(&r, 0, "version")?,
        },
        None => StoreError::NotFound,
    }
    .into())
}

/// Locks the parent row and applies the parent rules ([`ParentCheck::check`]); returns
/// whether it is a request whose `touched` the write must refresh.
async fn check_parent(
    tx: &deadpool_postgres::Transaction<'_>,
    row: &ObjectRow,
    check: &ParentCheck,
) -> Result<bool, Failure> {
    let stmt = tx
        .prepare_cached(
            "SELECT kind, state, touched FROM objects
             WHERE org_id = $1 AND partition = $2 AND id = $3 FOR UPDATE",
        )
        .await?;
    let parent = match tx
        .query_opt(&stmt, &[&row.org, &row.partition, &check.id.0])
        .await?
    {
        Some(r) => Some(ParentRow {
            kind: parse_col(&r, 0, "kind")?,
            state: parse_col(&r, 1, "state")?,
            touched: col(&r, 2, "touched")?,
        }),
        None => None,
    };
    Ok(check.check(parent)?)
}

/// A delete of the objects of scope `$1`/`$2` whose `$which` column is `$3`, with their
/// tokens, recording one `object.deleted` event per object deleted (from the rows the delete
/// returns, so none for a row a concurrent delete took first): `$4`…`$7` are the events'
/// change columns. Answers the count.
macro_rules! delete_recording_events {
    ($which:literal) => {
        concat!(
            "WITH deleted AS (
                 DELETE FROM objects WHERE org_id = $1 AND partition = $2 AND ",
            $which,
            " = $3
                 RETURNING id, kind, customer_id, parent_id, media_type, state, last_updated
             ), tokens_deleted AS (
                 DELETE FROM tokens t USING deleted d
                 WHERE t.org_id = $1 AND t.partition = $2 AND t.object_id = d.id
             ), event AS (
                 ",
            insert_events!(),
            "SELECT $1, $2, $4, d.id, d.kind, d.customer_id, d.parent_id, d.media_type, d.state,
                     d.last_updated, $5, $6, $7
                 FROM deleted d
             )
             SELECT count(*) FROM deleted"
        )
    };
}

/// Deletes one object (`$3` its id) with its tokens and its event.
const DELETE_OBJECT: &str = delete_recording_events!("id");

/// Deletes every object of a kind (`$3`) in scope with their tokens and events.
const FLUSH: &str = delete_recording_events!("kind");

// The auto-close sweep, with one `object.closed` event per request closed: `$3`…`$6` are the
// events' change columns. The literals match the partial index `objects_active_requests`.
// Rows a child write has locked are waited for and checked again, so a request refreshed
// meanwhile stays open.
const CLOSE_STALE_REQUESTS: &str = concat!(
    "WITH closed AS (
         UPDATE objects SET state = 'closed', version = version + 1, last_updated = $2
         WHERE kind = 'request' AND state = 'active' AND touched < $1
         RETURNING org_id, partition, id, kind, customer_id, parent_id, media_type, state,
             last_updated
     ), event AS (
         ",
    insert_events!(),
    "SELECT c.org_id, c.partition, $3, c.id, c.kind, c.customer_id, c.parent_id, c.media_type,
             c.state, c.last_updated, $4, $5, $6
         FROM closed c
     )
     SELECT count(*) FROM closed"
);

/// Reads an (id, last_updated) row of `search_ids`.
fn id_position(r: &Row) -> Result<(ObjectId, PagePosition), Failure> {
    let id = ObjectId(col(r, 0, "id")?);
    Ok((
        id,
        PagePosition {
            time: col(r, 1, "last_updated")?,
            id,
        },
    ))
}

#[async_trait]
impl ObjectStore for PgStore {
    async fn write_object(&self, write: &ObjectWrite) -> Result<(), StoreError> {
        let bound = BoundWrite::new(write)?;
        self.db.retry(|| self.write_once(&bound, write)).await?;
        self.outbox.wrote();
        Ok(())
    }

    async fn write_objects(&self, writes: &[ObjectWrite]) -> Result<(), StoreError> {
        let bound = writes
            .iter()
            .map(BoundWrite::new)
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.db.retry(|| self.write_all(&bound, writes)).await?;
        if !writes.is_empty() {
            self.outbox.wrote();
        }
        Ok(())
    }

    async fn object(&self, scope: Scope, id: ObjectId) -> Result<Option<StoredObject>, StoreError> {
        let row = self
            .query_opt(
                &format!(
                    "SELECT {OBJECT_COLUMNS} FROM objects o
                     WHERE o.org_id = $1 AND o.partition = $2 AND o.id = $3"
                ),
                &[&scope.org.0, &scope.partition.as_str(), &id.0],
            )
            .await?;
        Ok(row.map(|r| object_from_row(scope, &r)).transpose()?)
    }

    async fn objects(
        &self,
        scope: Scope,
        ids: &[ObjectId],
    ) -> Result<Vec<StoredObject>, StoreError> {
        check_ids_read(ids)?;
        let ids: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
        let rows = self
            .query(
                &format!(
                    "SELECT {OBJECT_COLUMNS} FROM objects o
                     WHERE o.org_id = $1 AND o.partition = $2 AND o.id = ANY($3)"
                ),
                &[&scope.org.0, &scope.partition.as_str(), &ids],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| object_from_row(scope, r))
            .collect::<Result<Vec<_>, _>>()?)
    }

    async fn erased(&self, scope: Scope, ids: &[ObjectId]) -> Result<Vec<ObjectId>, StoreError> {
        check_ids_read(ids)?;
        let ids: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
        let rows = self
            .query(
                "SELECT customer_id FROM erasures
                 WHERE org_id = $1 AND partition = $2 AND customer_id = ANY($3)",
                &[&scope.org.0, &scope.partition.as_str(), &ids],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| col::<Uuid>(r, 0, "customer_id").map(ObjectId))
            .collect::<Result<Vec<_>, _>>()?)
    }

    async fn delete_object(
        &self,
        scope: Scope,
        id: ObjectId,
        by: &Contributor,
    ) -> Result<(), StoreError> {
        let change = ChangeRow::now(EventType::Deleted, by);
        let [event_type, contributor_id, contributor_type, time] = change.params();
        let rows = self
            .query(
                DELETE_OBJECT,
                &[
                    &scope.org.0,
                    &scope.partition.as_str(),
                    &id.0,
                    event_type,
                    contributor_id,
                    contributor_type,
                    time,
                ],
            )
            .await?;
        let n: i64 = match rows.first() {
            Some(r) => col(r, 0, "count")?,
            None => 0,
        };
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        self.outbox.wrote();
        Ok(())
    }

    async fn search(&self, scope: Scope, plan: &SearchPlan) -> Result<ObjectPage, StoreError> {
        let Some(filter) = Filter::search(scope, plan) else {
            return Ok(ObjectPage::default());
        };
        let statement = filter.page(OBJECT_COLUMNS, plan.after, plan.limit);
        let (items, total, next) = self
            .page(
                statement,
                plan.limit,
                |r| {
                    let o = object_from_row(scope, r)?;
                    let position = PagePosition {
                        time: o.last_updated,
                        id: o.id,
                    };
                    Ok((o, position))
                },
                OBJECT_COLUMN_COUNT,
            )
            .await?;
        Ok(ObjectPage { items, total, next })
    }

    async fn search_ids(&self, scope: Scope, plan: &SearchPlan) -> Result<IdPage, StoreError> {
        let Some(filter) = Filter::search(scope, plan) else {
            return Ok(IdPage::default());
        };
        let statement = filter.page("o.id, o.last_updated", plan.after, plan.limit);
        let (ids, total, next) = self.page(statement, plan.limit, id_position, 2).await?;
        Ok(IdPage { ids, total, next })
    }

    async fn timeline(
        &self,
        scope: Scope,
        query: &TimelineQuery,
    ) -> Result<ObjectPage<RawObject>, StoreError> {
        let statement =
            Filter::timeline(scope, query).page(OBJECT_COLUMNS, query.after, query.limit);
        let (items, total, next) = self
            .page(
                statement,
                query.limit,
                |r| {
                    let o = raw_object_from_row(r)?;
                    let position = PagePosition {
                        time: o.created,
                        id: o.id,
                    };
                    Ok((o, position))
                },
                OBJECT_COLUMN_COUNT,
            )
            .await?;
        Ok(ObjectPage { items, total, next })
    }

    async fn close_stale_requests(
        &self,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let change = ChangeRow::now(EventType::Closed, &system_contributor());
        let [event_type, contributor_id, contributor_type, time] = change.params();
        let rows = self
            .query(
                CLOSE_STALE_REQUESTS,
                &[
                    &ms(&cutoff),
                    &ms(&now),
                    event_type,
                    contributor_id,
                    contributor_type,
                    time,
                ],
            )
            .await?;
        let closed = match rows.first() {
            Some(r) => count(col(r, 0, "count")?)?,
            None => 0,
        };
        if closed > 0 {
            self.outbox.wrote();
        }
        Ok(closed)
    }

    async fn flush(&self, scope: Scope, kind: Kind, by: &Contributor) -> Result<u64, StoreError> {
        let change = ChangeRow::now(EventType::Deleted, by);
        let [event_type, contributor_id, contributor_type, time] = change.params();
        let rows = self
            .query(
                FLUSH,
                &[
                    &scope.org.0,
                    &scope.partition.as_str(),
                    &kind.as_str(),
                    event_type,
                    contributor_id,
                    contributor_type,
                    time,
                ],
            )
            .await?;
        let flushed = match rows.first() {
            Some(r) => count(col(r, 0, "count")?)?,
            None => 0,
        };
        if flushed > 0 {
            self.outbox.wrote();
        }
        Ok(flushed)
    }

    async fn erase_customer(
        &self,
        scope: Scope,
        customer: ObjectId,
        by: &Contributor,
    ) -> Result<Erasure, StoreError> {
        let change = ChangeRow::now(EventType::Erased, by);
        let erasure = self
            .db
            .retry(|| self.erase(scope, customer, &change))
            .await?;
        self.outbox.wrote();
        Ok(erasure)
    }

    async fn complete_erasure(&self, scope: Scope, customer: ObjectId) -> Result<(), StoreError> {
        let n = self
            .execute(
                "UPDATE erasures SET completed = true
                 WHERE org_id = $1 AND partition = $2 AND customer_id = $3",
                &[&scope.org.0, &scope.partition.as_str(), &customer.0],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn pending_erasures(&self, limit: usize) -> Result<Vec<(Scope, ObjectId)>, StoreError> {
        let rows = self
            .query(
                "SELECT org_id, partition, customer_id FROM erasures WHERE NOT completed
                 ORDER BY erased_at LIMIT $1",
                &[&i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let partition: String = col(r, 1, "partition")?;
            let partition = partition
                .parse()
                .map_err(|_| StoreError::Backend("corrupt erasure row".into()))?;
            let scope = Scope {
                org: OrgId(col(r, 0, "org_id")?),
                partition,
            };
            out.push((scope, ObjectId(col(r, 2, "customer_id")?)));
        }
        Ok(out)
    }
}
