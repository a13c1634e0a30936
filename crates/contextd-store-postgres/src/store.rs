//! [`PgStore`]: the data schema — its connection, migrations, statement helpers and the
//! [`Store`] trait itself. The traits per concern are implemented one file each:
//! `objects.rs`, `dictionary.rs`, `credentials.rs`, `audit.rs`, `jobs.rs`, `connectors.rs`,
//! `events.rs` and `webhooks.rs`.

use async_trait::async_trait;
use contextd_core::store::{Migration, Store, StoreError, Token};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::db::{Db, Failure, Profile};
use crate::outbox::Outbox;

/// The schema of the data, unless told otherwise.
pub const DATA_SCHEMA: &str = "contextd";

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("../migrations/data/0001_init.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("../migrations/data/0002_access.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("../migrations/data/0003_key_versions.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("../migrations/data/0004_erasures.sql"),
    },
    Migration {
        version: 5,
        sql: include_str!("../migrations/data/0005_sessions_by_user.sql"),
    },
    Migration {
        version: 6,
        sql: include_str!("../migrations/data/0006_connectors.sql"),
    },
    Migration {
        version: 7,
        sql: include_str!("../migrations/data/0007_events.sql"),
    },
    Migration {
        version: 8,
        sql: include_str!("../migrations/data/0008_desktop.sql"),
    },
    Migration {
        version: 9,
        sql: include_str!("../migrations/data/0009_audit_segments.sql"),
    },
    Migration {
        version: 10,
        sql: include_str!("../migrations/data/0010_credential_notify.sql"),
    },
];

/// Concurrent writers each hold a connection for one short transaction; PostgreSQL flushes
/// the WAL of concurrent commits together, so they share fsyncs (group commit) instead of
/// queuing behind one another's.
const PROFILE: Profile = Profile {
    name: "data",
    connections: 16,
    migrations: MIGRATIONS,
};

/// The data in one schema of a PostgreSQL database: objects, tokens, dictionary, orgs,
/// credentials, people, grants, connectors, the audit log, flush jobs, the events outbox and
/// webhooks. Several contextd instances may share it.
///
/// Connecting starts background tasks, stopped when the store is dropped: planner statistics,
/// the events sequencer and a LISTEN connection for other instances' events (`events.rs`).
pub struct PgStore {
    pub(crate) db: Db,
    pub(crate) outbox: Outbox,
    /// The audit segments known to exist (they are only dropped months after their last
    /// append), so that an append does not ask.
    pub(crate) audit_months: crate::known_months::KnownMonths,
}

impl PgStore {
    /// Connects (`postgres://…`, libpq's `sslmode` honoured), creates the `contextd` schema
    /// if missing and applies pending migrations; safe when several instances start at once.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_schema(url, DATA_SCHEMA).await
    }

    /// As [`PgStore::connect`], with the data in `schema` (lowercase letters, digits, `_`).
    pub async fn connect_with_schema(url: &str, schema: &str) -> Result<Self, StoreError> {
        let db = Db::connect(url, schema, &PROFILE).await?;
        let outbox = Outbox::start(&db);
        let store = Self {
            db,
            outbox,
            audit_months: Default::default(),
        };
        store.chain_legacy_audit().await?;
        Ok(store)
    }

    /// The backend's name: `postgres`.
    pub fn backend(&self) -> &'static str {
        "postgres"
    }

    /// Gathers planner statistics of the tables that changed much since they were last
    /// gathered; returns their names. A background task of the store does this every 10 s.
    pub async fn refresh_statistics(&self) -> Result<Vec<String>, StoreError> {
        self.db.refresh_statistics().await
    }
}

/// Tokens as bound: one `bytea` each.
pub(crate) fn token_bytes(tokens: &[Token]) -> Vec<Vec<u8>> {
    tokens.iter().map(|t| t.0.to_vec()).collect()
}

impl PgStore {
    /// Runs one fixed statement outside any explicit transaction; returns the rows changed.
    pub(crate) async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let client = self.db.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(Failure::from)?;
        Ok(client.execute(&stmt, params).await.map_err(Failure::from)?)
    }

    /// Runs one fixed query; returns its rows.
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.db.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(Failure::from)?;
        Ok(client.query(&stmt, params).await.map_err(Failure::from)?)
    }

    /// Runs one fixed query expected to return one row at most.
    pub(crate) async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        let client = self.db.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(Failure::from)?;
        Ok(client
            .query_opt(&stmt, params)
            .await
            .map_err(Failure::from)?)
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        PgStore::backend(self)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await
    }
}
