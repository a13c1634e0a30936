//! [`WebhookStore`] for [`PgStore`]: the webhooks an organization registered, each with its
//! cursor in `event_cursors` (named by `webhook_cursor`), and their delivery attempts.

use async_trait::async_trait;
use contextd_core::ids::{OrgId, Scope};
use contextd_core::store::{webhook_cursor, StoreError, WebhookRecord, WebhookState, WebhookStore};
use contextd_proto::events::{Delivery, DeliveryOutcome, EventFilter};
use tokio_postgres::types::Json;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::{col, corrupt, count, execute_cached, ms, parse_col, Failure};
use crate::store::PgStore;

// A webhook with its position and dead-letter count, as [`state_from_row`] reads it. The join
// spells the cursor name as `webhook_cursor` does: `webhook:` and the hyphenated lowercase
// UUID, which is also how PostgreSQL writes a uuid as text.
const WEBHOOK_SELECT: &str =
    "SELECT w.org_id, w.partition, w.id, w.url, w.filter, w.description, w.secret, w.created,
         coalesce(c.position, 0),
         (SELECT count(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id AND d.outcome = 'dead')
     FROM webhooks w LEFT JOIN event_cursors c ON c.name = 'webhook:' || w.id::text";

const DELIVERY_COLUMNS: &str =
    "id, event_id, event_type, attempt, outcome, status, error, at, duration_ms";

/// Reads a row of [`WEBHOOK_SELECT`].
fn state_from_row(r: &Row) -> Result<WebhookState, Failure> {
    let Json(filter): Json<EventFilter> = col(r, 4, "filter")?;
    Ok(WebhookState {
        webhook: WebhookRecord {
            id: col(r, 2, "id")?,
            scope: Scope {
                org: OrgId(col(r, 0, "org_id")?),
                partition: parse_col(r, 1, "partition")?,
            },
            url: col(r, 3, "url")?,
            filter,
            description: col(r, 5, "description")?,
            secret: col(r, 6, "secret")?,
            created: col(r, 7, "created")?,
        },
        position: count(col(r, 8, "position")?)?,
        dead_letters: count(col(r, 9, "dead_letters")?)?,
    })
}

/// Reads a row of [`DELIVERY_COLUMNS`].
fn delivery_from_row(r: &Row) -> Result<Delivery, Failure> {
    let unsigned = |i: usize, what: &str| -> Result<u64, Failure> {
        u64::try_from(col::<i64>(r, i, what)?).map_err(|_| corrupt(what))
    };
    let status: Option<i32> = col(r, 5, "status")?;
    Ok(Delivery {
        id: unsigned(0, "id")?,
        event_id: unsigned(1, "event_id")?,
        event_type: parse_col(r, 2, "event_type")?,
        attempt: u32::try_from(unsigned(3, "attempt")?).map_err(|_| corrupt("attempt"))?,
        outcome: parse_col(r, 4, "outcome")?,
        status: status
            .map(|s| u16::try_from(s).map_err(|_| corrupt("status")))
            .transpose()?,
        error: col(r, 6, "error")?,
        at: col(r, 7, "at")?,
        duration_ms: unsigned(8, "duration_ms")?,
    })
}

/// A number as bound to a `bigint` column.
fn bigint(n: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Backend(format!("{what} out of range")))
}

impl PgStore {
    /// One attempt at storing a webhook and its cursor, in one transaction.
    async fn insert_webhook(&self, w: &WebhookRecord, position: i64) -> Result<(), Failure> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO webhooks (org_id, partition, id, url, filter, description, secret, created)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        let inserted = tx
            .execute(
                &stmt,
                &[
                    &w.scope.org.0,
                    &w.scope.partition.as_str(),
                    &w.id,
                    &w.url,
                    &Json(&w.filter),
                    &w.description,
                    &w.secret,
                    &ms(&w.created),
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::AlreadyExists.into());
        }
        // A cursor left by an earlier webhook of that id would not be this one's.
        let stmt = tx
            .prepare_cached(
                "INSERT INTO event_cursors (name, position) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE
                 SET position = excluded.position, owner = NULL, lease_until = NULL",
            )
            .await?;
        tx.execute(&stmt, &[&w.cursor_name(), &position]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One attempt at deleting a webhook with its cursor and attempts, in one transaction.
    async fn remove_webhook(&self, scope: Scope, id: Uuid) -> Result<(), Failure> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let deleted = tx
            .execute(
                "DELETE FROM webhooks WHERE org_id = $1 AND partition = $2 AND id = $3",
                &[&scope.org.0, &scope.partition.as_str(), &id],
            )
            .await?;
        if deleted == 0 {
            return Err(StoreError::NotFound.into());
        }
        execute_cached(
            &tx,
            "DELETE FROM event_cursors WHERE name = $1",
            &[&webhook_cursor(id)],
        )
        .await?;
        execute_cached(
            &tx,
            "DELETE FROM webhook_deliveries WHERE webhook_id = $1",
            &[&id],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl WebhookStore for PgStore {
    async fn create_webhook(
        &self,
        webhook: &WebhookRecord,
        position: u64,
    ) -> Result<(), StoreError> {
        let position = bigint(position, "cursor position")?;
        self.db
            .retry(|| self.insert_webhook(webhook, position))
            .await
    }

    async fn webhooks(&self, scope: Option<Scope>) -> Result<Vec<WebhookState>, StoreError> {
        let rows = match scope {
            Some(s) => {
                self.query(
                    &format!(
                        "{WEBHOOK_SELECT} WHERE w.org_id = $1 AND w.partition = $2
                         ORDER BY w.created, w.id"
                    ),
                    &[&s.org.0, &s.partition.as_str()],
                )
                .await?
            }
            None => {
                self.query(&format!("{WEBHOOK_SELECT} ORDER BY w.created, w.id"), &[])
                    .await?
            }
        };
        Ok(rows
            .iter()
            .map(state_from_row)
            .collect::<Result<_, Failure>>()?)
    }

    async fn webhook(&self, scope: Scope, id: Uuid) -> Result<Option<WebhookState>, StoreError> {
        let row = self
            .query_opt(
                &format!("{WEBHOOK_SELECT} WHERE w.org_id = $1 AND w.partition = $2 AND w.id = $3"),
                &[&scope.org.0, &scope.partition.as_str(), &id],
            )
            .await?;
        Ok(row.map(|r| state_from_row(&r)).transpose()?)
    }

    async fn delete_webhook(&self, scope: Scope, id: Uuid) -> Result<(), StoreError> {
        self.db.retry(|| self.remove_webhook(scope, id)).await
    }

    async fn record_delivery(&self, webhook: Uuid, d: &Delivery) -> Result<u64, StoreError> {
        let row = self
            .query_opt(
                "INSERT INTO webhook_deliveries
                     (webhook_id, event_id, event_type, attempt, outcome, status, error, at, duration_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 RETURNING id",
                &[
                    &webhook,
                    &bigint(d.event_id, "event id")?,
                    &d.event_type.as_str(),
                    &i64::from(d.attempt),
                    &d.outcome.as_str(),
                    &d.status.map(i32::from),
                    &d.error,
                    &ms(&d.at),
                    &bigint(d.duration_ms, "duration")?,
                ],
            )
            .await?;
        match row {
            Some(r) => Ok(count(col(&r, 0, "id")?)?),
            None => Err(StoreError::Backend(
                "postgres: no delivery id returned".into(),
            )),
        }
    }

    async fn deliveries(
        &self,
        webhook: Uuid,
        outcome: Option<DeliveryOutcome>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match outcome {
            Some(o) => {
                self.query(
                    &format!(
                        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
                         WHERE webhook_id = $1 AND outcome = $2 ORDER BY id DESC LIMIT $3"
                    ),
                    &[&webhook, &o.as_str(), &limit],
                )
                .await?
            }
            None => {
                self.query(
                    &format!(
                        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
                         WHERE webhook_id = $1 ORDER BY id DESC LIMIT $2"
                    ),
                    &[&webhook, &limit],
                )
                .await?
            }
        };
        Ok(rows
            .iter()
            .map(delivery_from_row)
            .collect::<Result<_, Failure>>()?)
    }
}
