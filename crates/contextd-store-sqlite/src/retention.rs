//! [`RetentionStore`] for [`SqliteStore`]: the objects an [`ExpirySelector`] selects, oldest
//! first, and their deletion with their tokens and events in one write job.
//!
//! A selector's field set and its keep-forever exceptions are matched against the field set
//! names of the `body` document (`json_each`); the exceptions are bound as one JSON array, so
//! that each query is one fixed statement whatever the rules.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextd_core::ids::{ObjectId, Scope};
use contextd_core::object::{Contributor, State};
use contextd_core::store::{
    check_ids_read, ExpirySelector, PagePosition, RetentionStore, StoreError,
};
use contextd_proto::events::EventType;
use rusqlite::{params, Rows};

use crate::db::{ms, time_col, uuid_col, DbResultExt};
use crate::events::insert_events;
use crate::store::{blob, SqliteStore};

/// The query of [`RetentionStore::expired`]: `?1`/`?2` the scope, `?3` the kind, `?4` the
/// cutoff, `?5` the channel, `?6` the field set, `?7` the state required (each NULL: any),
/// `?8` the exceptions as `[{"m": channel, "f": field set}]` (either NULL: any), `?9` the
/// limit; `$after` adds the position to start after.
macro_rules! expired_sql {
    ($after:literal) => {
        concat!(
            "SELECT o.id, o.last_updated FROM objects o
             WHERE o.org_id = ?1 AND o.partition = ?2 AND o.kind = ?3 AND o.last_updated < ?4
               AND (?5 IS NULL OR o.media_type = ?5)
               AND (?6 IS NULL OR EXISTS
                     (SELECT 1 FROM json_each(o.body, '$.fieldsets') f WHERE f.value = ?6))
               AND (?7 IS NULL OR o.state = ?7)
               AND NOT EXISTS (
                     SELECT 1 FROM json_each(?8) k
                     WHERE (json_extract(k.value, '$.m') IS NULL
                            OR json_extract(k.value, '$.m') IS o.media_type)
                       AND (json_extract(k.value, '$.f') IS NULL OR EXISTS
                             (SELECT 1 FROM json_each(o.body, '$.fieldsets') f
                              WHERE f.value = json_extract(k.value, '$.f'))))
               ",
            $after,
            "
             ORDER BY o.last_updated, o.id LIMIT ?9"
        )
    };
}

const EXPIRED: &str = expired_sql!("");
const EXPIRED_AFTER: &str = expired_sql!("AND (o.last_updated, o.id) > (?10, ?11)");

/// Records the `object.deleted` event of object `?3` if it is still last written before
/// `?8`: `?4`…`?7` are the event's type, contributor and time.
const RECORD_EXPIRED: &str = concat!(
    insert_events!(),
    "SELECT org_id, partition, ?4, id, kind, customer_id, parent_id, media_type, state, \
     last_updated, ?5, ?6, ?7 FROM objects \
     WHERE org_id = ?1 AND partition = ?2 AND id = ?3 AND last_updated < ?8"
);

/// Reads the (id, last_updated) rows of an expiry query.
fn positions(mut rows: Rows<'_>) -> Result<Vec<PagePosition>, StoreError> {
    let mut out = Vec::new();
    while let Some(r) = rows.next().db()? {
        out.push(PagePosition {
            id: ObjectId(uuid_col(r.get_ref(0).db()?, "id")?),
            time: time_col(r.get_ref(1).db()?, "last_updated")?,
        });
    }
    Ok(out)
}

#[async_trait]
impl RetentionStore for SqliteStore {
    async fn expired(
        &self,
        scope: Scope,
        selector: &ExpirySelector,
        after: Option<PagePosition>,
        limit: usize,
    ) -> Result<Vec<PagePosition>, StoreError> {
        let (org, partition) = (blob(scope.org.0), scope.partition.as_str());
        let kind = selector.kind.as_str();
        let before = ms(&selector.updated_before);
        let media = selector.media_type.map(|m| m.as_str());
        let fieldset = selector.fieldset.clone();
        let state = selector.only_closed.then_some(State::Closed.as_str());
        let keep = serde_json::Value::Array(
            selector
                .keep
                .iter()
                .map(|k| {
                    serde_json::json!({
                        "m": k.media_type.map(|m| m.as_str()),
                        "f": k.fieldset,
                    })
                })
                .collect(),
        )
        .to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .read(move |c| match after {
                None => {
                    let mut stmt = c.prepare_cached(EXPIRED).db()?;
                    let rows = stmt
                        .query(params![
                            org, partition, kind, before, media, fieldset, state, keep, limit
                        ])
                        .db()?;
                    positions(rows)
                }
                Some(p) => {
                    let mut stmt = c.prepare_cached(EXPIRED_AFTER).db()?;
                    let rows = stmt
                        .query(params![
                            org,
                            partition,
                            kind,
                            before,
                            media,
                            fieldset,
                            state,
                            keep,
                            limit,
                            ms(&p.time),
                            blob(p.id.0)
                        ])
                        .db()?;
                    positions(rows)
                }
            })
            .await
    }

    async fn delete_expired(
        &self,
        scope: Scope,
        ids: &[ObjectId],
        updated_before: DateTime<Utc>,
        by: &Contributor,
    ) -> Result<Vec<ObjectId>, StoreError> {
        check_ids_read(ids)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let (org, partition) = (blob(scope.org.0), scope.partition.as_str());
        let ids: Vec<ObjectId> = ids.to_vec();
        let before = ms(&updated_before);
        let event_type = EventType::Deleted.as_str();
        let (by_id, by_type) = (by.id.clone(), by.kind.as_str());
        let at = ms(&contextd_core::time::now_ms());
        let deleted = self
            .db
            .write(move |tx| {
                let mut record = tx.prepare_cached(RECORD_EXPIRED).db()?;
                let mut delete_object = tx
                    .prepare_cached(
                        "DELETE FROM objects WHERE org_id = ?1 AND partition = ?2 AND id = ?3",
                    )
                    .db()?;
                let mut delete_tokens = tx
                    .prepare_cached(
                        "DELETE FROM tokens WHERE org_id = ?1 AND partition = ?2 AND object_id = ?3",
                    )
                    .db()?;
                let mut deleted = Vec::new();
                for id in ids {
                    let key = blob(id.0);
                    // The event is recorded only for a row still expired; the writer thread
                    // serializes this with every write, so the delete finds the same row.
                    let recorded = record
                        .execute(params![
                            org, partition, key, event_type, by_id, by_type, at, before
                        ])
                        .db()?;
                    if recorded == 0 {
                        continue;
                    }
                    delete_object.execute(params![org, partition, key]).db()?;
                    delete_tokens.execute(params![org, partition, key]).db()?;
                    deleted.push(id);
                }
                Ok(deleted)
            })
            .await?;
        if !deleted.is_empty() {
            self.events_recorded();
        }
        Ok(deleted)
    }
}
