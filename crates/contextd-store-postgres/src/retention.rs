//! [`RetentionStore`] for [`PgStore`]: the objects an [`ExpirySelector`] selects, oldest
//! first, and their deletion with their tokens and events in one statement.
//!
//! A selector's field set and its keep-forever exceptions are matched against the field set
//! names of the `body` document; the exceptions are bound as two parallel arrays (channel,
//! field set), so that each query is one fixed, prepared statement whatever the rules. The
//! range on `last_updated` within a kind is served by `objects_by_kind`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextd_core::ids::{ObjectId, Scope};
use contextd_core::object::{Contributor, State};
use contextd_core::store::{
    check_ids_read, ExpirySelector, PagePosition, RetentionStore, StoreError,
};
use contextd_proto::events::EventType;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::db::{col, ms};
use crate::events::{insert_events, ChangeRow};
use crate::store::PgStore;

/// The query of [`RetentionStore::expired`]: `$1`/`$2` the scope, `$3` the kind, `$4` the
/// cutoff, `$5` the channel, `$6` the field set, `$7` the state required (each NULL: any),
/// `$8`/`$9` the exceptions' channels and field sets (NULL: any), `$10` the limit; `$after`
/// adds the position to start after (`$11`, `$12`).
macro_rules! expired_sql {
    ($after:literal) => {
        concat!(
            "SELECT o.id, o.last_updated FROM objects o
             WHERE o.org_id = $1 AND o.partition = $2 AND o.kind = $3 AND o.last_updated < $4
               AND ($5::text IS NULL OR o.media_type = $5::text)
               AND ($6::text IS NULL
                    OR coalesce(o.body -> 'fieldsets', '[]'::jsonb) @> jsonb_build_array($6::text))
               AND ($7::text IS NULL OR o.state = $7::text)
               AND NOT EXISTS (
                     SELECT 1 FROM unnest($8::text[], $9::text[]) AS k (media, fieldset)
                     WHERE (k.media IS NULL OR k.media = o.media_type)
                       AND (k.fieldset IS NULL
                            OR coalesce(o.body -> 'fieldsets', '[]'::jsonb)
                               @> jsonb_build_array(k.fieldset)))
               ",
            $after,
            "
             ORDER BY o.last_updated, o.id LIMIT $10"
        )
    };
}

const EXPIRED: &str = expired_sql!("");
const EXPIRED_AFTER: &str =
    expired_sql!("AND (o.last_updated, o.id) > ($11::timestamptz, $12::uuid)");

/// Deletes the objects of scope `$1`/`$2` among `$3` still last written before `$4`, with
/// their tokens, recording one `object.deleted` event per object deleted (from the rows the
/// delete returns): `$5`…`$8` are the events' change columns. Answers the ids deleted.
const DELETE_EXPIRED: &str = concat!(
    "WITH deleted AS (
         DELETE FROM objects
         WHERE org_id = $1 AND partition = $2 AND id = ANY($3) AND last_updated < $4
         RETURNING id, kind, customer_id, parent_id, media_type, state, last_updated
     ), tokens_deleted AS (
         DELETE FROM tokens t USING deleted d
         WHERE t.org_id = $1 AND t.partition = $2 AND t.object_id = d.id
     ), event AS (
         ",
    insert_events!(),
    "SELECT $1, $2, $5, d.id, d.kind, d.customer_id, d.parent_id, d.media_type, d.state,
                 d.last_updated, $6, $7, $8
             FROM deleted d
     )
     SELECT id FROM deleted"
);

#[async_trait]
impl RetentionStore for PgStore {
    async fn expired(
        &self,
        scope: Scope,
        selector: &ExpirySelector,
        after: Option<PagePosition>,
        limit: usize,
    ) -> Result<Vec<PagePosition>, StoreError> {
        let partition = scope.partition.as_str();
        let kind = selector.kind.as_str();
        let before = ms(&selector.updated_before);
        let media = selector.media_type.map(|m| m.as_str());
        let fieldset = selector.fieldset.as_deref();
        let state = selector.only_closed.then_some(State::Closed.as_str());
        let keep_media: Vec<Option<&str>> = selector
            .keep
            .iter()
            .map(|k| k.media_type.map(|m| m.as_str()))
            .collect();
        let keep_fieldsets: Vec<Option<&str>> = selector
            .keep
            .iter()
            .map(|k| k.fieldset.as_deref())
            .collect();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let after = after.map(|p| (ms(&p.time), p.id.0));
        let params: [&(dyn ToSql + Sync); 10] = [
            &scope.org.0,
            &partition,
            &kind,
            &before,
            &media,
            &fieldset,
            &state,
            &keep_media,
            &keep_fieldsets,
            &limit,
        ];
        let rows = match &after {
            None => self.query(EXPIRED, &params).await?,
            Some((time, id)) => {
                let mut params = params.to_vec();
                params.push(time);
                params.push(id);
                self.query(EXPIRED_AFTER, &params).await?
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(PagePosition {
                id: ObjectId(col::<Uuid>(r, 0, "id")?),
                time: col::<DateTime<Utc>>(r, 1, "last_updated")?,
            });
        }
        Ok(out)
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
        let ids: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
        let change = ChangeRow::now(EventType::Deleted, by);
        let [event_type, contributor_id, contributor_type, time] = change.params();
        let rows = self
            .query(
                DELETE_EXPIRED,
                &[
                    &scope.org.0,
                    &scope.partition.as_str(),
                    &ids,
                    &ms(&updated_before),
                    event_type,
                    contributor_id,
                    contributor_type,
                    time,
                ],
            )
            .await?;
        let deleted = rows
            .iter()
            .map(|r| col::<Uuid>(r, 0, "id").map(ObjectId))
            .collect::<Result<Vec<_>, _>>()?;
        if !deleted.is_empty() {
            self.outbox.wrote();
        }
        Ok(deleted)
    }
}
