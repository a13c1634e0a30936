//! [`WebhookStore`] for [`SqliteStore`]: registered webhooks (`webhooks`), whose delivery
//! position is their cursor in `event_cursors` (named by [`webhook_cursor`]), and their
//! delivery attempts (`webhook_deliveries`).

use async_trait::async_trait;
use contextd_core::ids::{OrgId, Scope};
use contextd_core::store::{webhook_cursor, StoreError, WebhookRecord, WebhookState, WebhookStore};
use contextd_proto::events::{Delivery, DeliveryOutcome};
use rusqlite::{params, Connection, OptionalExtension, Row};
use uuid::Uuid;

use crate::db::{int_col, ms, opt_text_col, parse_col, text_col, time_col, uuid_col, DbResultExt};
use crate::events::{signed, unsigned};
use crate::store::{blob, SqliteStore};

/// The columns [`webhook_from_row`] reads, in order.
const WEBHOOK_COLUMNS: &str = "id, org_id, partition, url, filter, description, secret, created";

/// The columns [`delivery_from_row`] reads, in order.
const DELIVERY_COLUMNS: &str =
    "id, event_id, event_type, attempt, outcome, status, error, at, duration_ms";

/// Reads a row selected with [`WEBHOOK_COLUMNS`].
fn webhook_from_row(r: &Row<'_>) -> Result<WebhookRecord, StoreError> {
    let col = |i: usize| r.get_ref(i).db();
    Ok(WebhookRecord {
        id: uuid_col(col(0)?, "id")?,
        scope: Scope {
            org: OrgId(uuid_col(col(1)?, "org_id")?),
            partition: parse_col(col(2)?, "partition")?,
        },
        url: text_col(col(3)?, "url")?.to_owned(),
        filter: serde_json::from_str(text_col(col(4)?, "filter")?)
            .map_err(|_| StoreError::corrupt("filter"))?,
        description: text_col(col(5)?, "description")?.to_owned(),
        secret: col(6)?
            .as_blob()
            .map_err(|_| StoreError::corrupt("secret"))?
            .to_vec(),
        created: time_col(col(7)?, "created")?,
    })
}

/// Reads a row selected with [`DELIVERY_COLUMNS`].
fn delivery_from_row(r: &Row<'_>) -> Result<Delivery, StoreError> {
    let col = |i: usize| r.get_ref(i).db();
    let status = col(5)?
        .as_i64_or_null()
        .map_err(|_| StoreError::corrupt("status"))?
        .map(|s| u16::try_from(s).map_err(|_| StoreError::corrupt("status")))
        .transpose()?;
    Ok(Delivery {
        id: unsigned(int_col(col(0)?, "id")?, "id")?,
        event_id: unsigned(int_col(col(1)?, "event_id")?, "event_id")?,
        event_type: parse_col(col(2)?, "event_type")?,
        attempt: u32::try_from(int_col(col(3)?, "attempt")?)
            .map_err(|_| StoreError::corrupt("attempt"))?,
        outcome: parse_col(col(4)?, "outcome")?,
        status,
        error: opt_text_col(col(6)?, "error")?.map(str::to_owned),
        at: time_col(col(7)?, "at")?,
        duration_ms: unsigned(int_col(col(8)?, "duration_ms")?, "duration_ms")?,
    })
}

/// Adds each webhook's cursor position and dead-letter count, reading on `conn` (inside the
/// caller's read transaction, so all agree).
fn with_state(
    conn: &Connection,
    webhooks: Vec<WebhookRecord>,
) -> Result<Vec<WebhookState>, StoreError> {
    let mut position = conn
        .prepare_cached("SELECT position FROM event_cursors WHERE name = ?1")
        .db()?;
    // The literal matches the partial index `webhook_deliveries_dead`.
    let mut dead = conn
        .prepare_cached(
            "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = ?1 AND outcome = 'dead'",
        )
        .db()?;
    webhooks
        .into_iter()
        .map(|webhook| {
            let p: Option<i64> = position
                .query_row(params![webhook_cursor(webhook.id)], |r| r.get(0))
                .optional()
                .db()?;
            let n: i64 = dead
                .query_row(params![blob(webhook.id)], |r| r.get(0))
                .db()?;
            Ok(WebhookState {
                position: p.map_or(Ok(0), |p| unsigned(p, "position"))?,
                dead_letters: unsigned(n, "count")?,
                webhook,
            })
        })
        .collect()
}

/// The webhooks a query selects (with its parameters), with their state, in one snapshot.
fn read_webhooks<P: rusqlite::Params>(
    conn: &mut Connection,
    sql: &str,
    params: P,
) -> Result<Vec<WebhookState>, StoreError> {
    let tx = conn.transaction().db()?;
    let mut records = Vec::new();
    {
        let mut stmt = tx.prepare_cached(sql).db()?;
        let mut rows = stmt.query(params).db()?;
        while let Some(r) = rows.next().db()? {
            records.push(webhook_from_row(r)?);
        }
    }
    let states = with_state(&tx, records)?;
    tx.commit().db()?;
    Ok(states)
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn create_webhook(
        &self,
        webhook: &WebhookRecord,
        position: u64,
    ) -> Result<(), StoreError> {
        let w = webhook.clone();
        let filter = serde_json::to_string(&w.filter)
            .map_err(|e| StoreError::Backend(format!("webhook filter: {e}")))?;
        let (cursor, position) = (webhook_cursor(w.id), signed(position));
        self.db
            .write(move |tx| {
                let n = tx
                    .prepare_cached(
                        "INSERT INTO webhooks (id, org_id, partition, url, filter, description, secret,
                             created)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
                    )
                    .db()?
                    .execute(params![
                        blob(w.id),
                        blob(w.scope.org.0),
                        w.scope.partition.as_str(),
                        w.url,
                        filter,
                        w.description,
                        w.secret,
                        ms(&w.created),
                    ])
                    .db()?;
                if n == 0 {
                    return Err(StoreError::AlreadyExists);
                }
                // A cursor left by an earlier webhook of the same id is taken over, unleased.
                tx.prepare_cached(
                    "INSERT INTO event_cursors (name, position) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE
                         SET position = excluded.position, owner = NULL, lease_until = NULL",
                )
                .db()?
                .execute(params![cursor, position])
                .db()?;
                Ok(())
            })
            .await
    }

    async fn webhooks(&self, scope: Option<Scope>) -> Result<Vec<WebhookState>, StoreError> {
        self.db
            .read(move |c| match scope {
                Some(s) => read_webhooks(
                    c,
                    &format!(
                        "SELECT {WEBHOOK_COLUMNS} FROM webhooks
                         WHERE org_id = ?1 AND partition = ?2 ORDER BY created, id"
                    ),
                    params![blob(s.org.0), s.partition.as_str()],
                ),
                None => read_webhooks(
                    c,
                    &format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY created, id"),
                    [],
                ),
            })
            .await
    }

    async fn webhook(&self, scope: Scope, id: Uuid) -> Result<Option<WebhookState>, StoreError> {
        let found = self
            .db
            .read(move |c| {
                read_webhooks(
                    c,
                    &format!(
                        "SELECT {WEBHOOK_COLUMNS} FROM webhooks
                         WHERE id = ?1 AND org_id = ?2 AND partition = ?3"
                    ),
                    params![blob(id), blob(scope.org.0), scope.partition.as_str()],
                )
            })
            .await?;
        Ok(found.into_iter().next())
    }

    async fn delete_webhook(&self, scope: Scope, id: Uuid) -> Result<(), StoreError> {
        let cursor = webhook_cursor(id);
        self.db
            .write(move |tx| {
                let n = tx
                    .prepare_cached(
                        "DELETE FROM webhooks WHERE id = ?1 AND org_id = ?2 AND partition = ?3",
                    )
                    .db()?
                    .execute(params![
                        blob(id),
                        blob(scope.org.0),
                        scope.partition.as_str()
                    ])
                    .db()?;
                if n == 0 {
                    return Err(StoreError::NotFound);
                }
                tx.prepare_cached("DELETE FROM event_cursors WHERE name = ?1")
                    .db()?
                    .execute(params![cursor])
                    .db()?;
                tx.prepare_cached("DELETE FROM webhook_deliveries WHERE webhook_id = ?1")
                    .db()?
                    .execute(params![blob(id)])
                    .db()?;
                Ok(())
            })
            .await
    }

    async fn record_delivery(&self, webhook: Uuid, delivery: &Delivery) -> Result<u64, StoreError> {
        let d = delivery.clone();
        let id = self
            .db
            .write(move |tx| {
                tx.prepare_cached(
                    "INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, attempt,
                         outcome, status, error, at, duration_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .db()?
                .execute(params![
                    blob(webhook),
                    signed(d.event_id),
                    d.event_type.as_str(),
                    d.attempt,
                    d.outcome.as_str(),
                    d.status,
                    d.error,
                    ms(&d.at),
                    signed(d.duration_ms),
                ])
                .db()?;
                Ok(tx.last_insert_rowid())
            })
            .await?;
        unsigned(id, "id")
    }

    async fn deliveries(
        &self,
        webhook: Uuid,
        outcome: Option<DeliveryOutcome>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(&format!(
                        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
                         WHERE webhook_id = ?1 AND (?2 IS NULL OR outcome = ?2)
                         ORDER BY id DESC LIMIT ?3"
                    ))
                    .db()?;
                let mut rows = stmt
                    .query(params![blob(webhook), outcome.map(|o| o.as_str()), limit])
                    .db()?;
                let mut out = Vec::new();
                while let Some(r) = rows.next().db()? {
                    out.push(delivery_from_row(r)?);
                }
                Ok(out)
            })
            .await
    }
}
