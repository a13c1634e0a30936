//! [`EventStore`] for [`PgStore`]: the events outbox, its sequencer and its wake-up signal,
//! and the cursors of the channels that forward events.
//!
//! Writers insert their events in the transaction of the change with `id` NULL (see
//! `objects.rs` and `access.rs`), which readers do not see. Ids are given after commit by
//! `publish` (`outbox.rs`), the sequencer: one at a time across every instance sharing the database (an
//! advisory lock), in insert order, each above every id given before, then committed before
//! the next sequencer starts. So ids become readable in increasing order, and a reader that
//! has seen id n never finds one below it later — which a sequence value taken inside the
//! writers' transactions, committing in any order, would not ensure.
//!
//! The sequencer and the LISTEN connection that wakes every instance's readers run in the
//! store's background (`outbox.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextd_core::ids::{ObjectId, OrgId, Scope};
use contextd_core::object::Contributor;
use contextd_core::store::{EventStore, StoreError, StoredEvent};
use contextd_proto::events::{Event, EventType};
use tokio::sync::watch;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::{col, corrupt, count, ms, opt_parse_col, parse_col, Failure};
use crate::outbox::publish;
use crate::store::PgStore;

/// The `INSERT INTO events (…)` of the events a change records, for statement texts built
/// with `concat!` (a macro: `concat!` takes literals only). The rows it inserts have no id.
macro_rules! insert_events {
    () => {
        "INSERT INTO events (org_id, partition, event_type, object_id, object_type, customer_id, \
         parent_id, media_type, state, last_updated, contributor_id, contributor_type, time) "
    };
}
pub(crate) use insert_events;

/// [`insert_events`] with the column only object writes fill: the agent an activity is
/// addressed to.
macro_rules! insert_write_events {
    () => {
        "INSERT INTO events (org_id, partition, event_type, object_id, object_type, customer_id, \
         parent_id, media_type, state, last_updated, contributor_id, contributor_type, time, \
         addressed_to) "
    };
}
pub(crate) use insert_write_events;

/// The columns [`event_from_row`] reads, in order.
const EVENT_COLUMNS: &str = "id, org_id, partition, event_type, object_id, object_type, \
     customer_id, parent_id, media_type, state, last_updated, contributor_id, contributor_type, time, \
     addressed_to";

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
            addressed_to: col(r, 14, "addressed_to")?,
        },
    })
}

/// An event id or position as bound; ids above `i64::MAX` are never given.
fn position(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
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
                // The sequencer's mark survives the rows' pruning.
                self.query("SELECT last_id FROM event_sequence WHERE only_row", &[])
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
