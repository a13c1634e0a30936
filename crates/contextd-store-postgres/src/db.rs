//! One schema of a PostgreSQL database: its connection pool, error mapping, retries and
//! migrations.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use contextd_core::store::{check_schema_version, Migration, StoreError};
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Connection, Row, Socket, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::tls;

/// Statement texts each connection keeps prepared. Searches build their text from the
/// conditions, so the number of texts has no fixed bound: past this many, a statement is
/// prepared for one use only.
const CACHED_STATEMENTS: usize = 512;
/// Attempts of a transaction that failed on a serialization failure or a deadlock.
const ATTEMPTS: u32 = 5;

/// A bound value of a statement.
pub(crate) type Param = Box<dyn ToSql + Sync + Send>;

/// What an internal step can fail with: a domain answer, or the database.
#[derive(Debug)]
pub(crate) enum Failure {
    /// An answer for the caller (`NotFound`, `VersionConflict`, …).
    Store(StoreError),
    /// The driver or the server failed.
    Db(tokio_postgres::Error),
    /// No connection could be had.
    Pool(PoolError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e)
    }
}

impl From<PoolError> for Failure {
    fn from(e: PoolError) -> Self {
        Self::Pool(e)
    }
}

impl From<Failure> for StoreError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Store(e) => e,
            Failure::Db(e) => db_error(&e),
            Failure::Pool(e) => StoreError::Backend(format!("postgres: no connection: {e}")),
        }
    }
}

/// A driver error as a backend error. Only the SQLSTATE and the server's message are kept:
/// PostgreSQL's DETAIL lines quote row values, which must not reach logs or clients.
pub(crate) fn db_error(e: &tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Backend(format!("postgres {}: {}", db.code().code(), db.message())),
        None => StoreError::Backend(format!("postgres: {e}")),
    }
}

impl Failure {
    pub(crate) fn code(&self) -> Option<&SqlState> {
        match self {
            Failure::Db(e) => e.code(),
            _ => None,
        }
    }

    /// Whether running the whole transaction again may succeed.
    fn is_transient(&self) -> bool {
        matches!(
            self.code(),
            Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
        )
    }
}

/// A corrupt or unexpected column value.
pub(crate) fn corrupt(what: &str) -> Failure {
    Failure::Store(StoreError::corrupt(what))
}

/// Reads column `i` of a row, which must have the expected type.
pub(crate) fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    i: usize,
    what: &str,
) -> Result<T, Failure> {
    row.try_get(i).map_err(|_| corrupt(what))
}

/// Parses a stored enum name.
pub(crate) fn parse_col<T: std::str::FromStr>(
    row: &Row,
    i: usize,
    what: &str,
) -> Result<T, Failure> {
    col::<&str>(row, i, what)?
        .parse()
        .map_err(|_| corrupt(what))
}

/// Parses a nullable stored enum name.
pub(crate) fn opt_parse_col<T: std::str::FromStr>(
    row: &Row,
    i: usize,
    what: &str,
) -> Result<Option<T>, Failure> {
    col::<Option<&str>>(row, i, what)?
        .map(|s| s.parse().map_err(|_| corrupt(what)))
        .transpose()
}

/// A time as stored: whole milliseconds, as the SQLite backend keeps them, so that both
/// compare and round-trip alike.
pub(crate) fn ms(t: &DateTime<Utc>) -> DateTime<Utc> {
    contextd_core::time::from_millis(t.timestamp_millis())
}

/// A count as returned by the server.
pub(crate) fn count(n: i64) -> Result<u64, Failure> {
    u64::try_from(n).map_err(|_| corrupt("count"))
}

/// Borrows boxed parameters as the driver wants them.
pub(crate) fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// How a schema is set up.
pub(crate) struct Profile {
    /// Used in logs.
    pub name: &'static str,
    /// Most pooled connections.
    pub connections: usize,
    /// The schema, in order; each migration runs with the schema first on the search path.
    pub migrations: &'static [Migration],
}

/// A connection of its own, outside the pool (see [`Db::dedicated`]).
pub(crate) type Dedicated = (
    Client,
    Connection<Socket, <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream>,
);

/// A pool of connections whose search path is one schema.
pub(crate) struct Db {
    pool: Pool,
    schema: String,
    /// How the pool connects, for connections of their own ([`Db::dedicated`]).
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    /// The background task of [`Db::refresh_statistics`]; stopped with the pool.
    statistics: Option<tokio::task::AbortHandle>,
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some(task) = &self.statistics {
            task.abort();
        }
    }
}

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How often the schema's planner statistics are checked.
const STATISTICS_EVERY: Duration = Duration::from_secs(10);

impl Db {
    /// Connects to `url`, creates `schema` if missing and applies pending migrations.
    pub(crate) async fn connect(
        url: &str,
        schema: &str,
        profile: &Profile,
    ) -> Result<Self, StoreError> {
        check_schema_name(schema)?;
        let (mut config, tls) = tls::parse(url)?;
        // Unqualified names resolve in our schema only; every connection starts that way.
        let options = match config.get_options() {
            Some(o) if !o.trim().is_empty() => format!("{o} -c search_path={schema}"),
            _ => format!("-c search_path={schema}"),
        };
        config.options(&options);
        if config.get_application_name().is_none() {
            config.application_name("contextd");
        }
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(profile.connections)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT))
            .wait_timeout(Some(Duration::from_secs(30)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| StoreError::Backend(format!("postgres pool: {e}")))?;
        let mut db = Self {
            pool,
            schema: schema.to_owned(),
            config,
            tls,
            statistics: None,
        };
        db.migrate(schema, profile).await?;
        db.statistics = Some(db.keep_statistics());
        Ok(db)
    }

    /// Analyzes each table of the schema changed by more than 500 rows + 10 % since its
    /// statistics were last gathered (by anyone); returns the tables analyzed.
    ///
    /// The plans of searches and timelines depend on statistics: with none (a new database, a
    /// bulk load) PostgreSQL estimates one row per organization and may walk every object
    /// of a partition for a lookup by phone. Autovacuum gathers them, but operators turn it
    /// off, and it waits a minute; this keeps the plans right either way, and costs nothing
    /// when autovacuum has done the work. On engines without `pg_stat_user_tables` it
    /// analyzes nothing.
    pub(crate) async fn refresh_statistics(&self) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let stale: Vec<String> = client
            .query(
                "SELECT relname::text FROM pg_stat_user_tables
                 WHERE schemaname = $1 AND n_mod_since_analyze > 500 + 0.1 * n_live_tup
                 ORDER BY relname",
                &[&self.schema],
            )
            .await
            .map_err(|e| db_error(&e))?
            .iter()
            .map(|r| r.try_get::<_, String>(0))
            .collect::<Result<_, _>>()
            .map_err(|e| db_error(&e))?;
        for table in &stale {
            let quoted = table.replace('"', "\"\"");
            client
                .batch_execute(&format!("ANALYZE \"{}\".\"{quoted}\"", self.schema))
                .await
                .map_err(|e| db_error(&e))?;
        }
        Ok(stale)
    }

    /// The same pool, for a background task: without tasks of its own to stop when dropped.
    pub(crate) fn detached(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            schema: self.schema.clone(),
            config: self.config.clone(),
            tls: self.tls.clone(),
            statistics: None,
        }
    }

    /// A connection of its own, outside the pool, with the pool's settings (for LISTEN); the
    /// caller drives the [`Connection`]. Gives up after [`CONNECT_TIMEOUT`].
    pub(crate) async fn dedicated(&self) -> Result<Dedicated, StoreError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, self.config.connect(self.tls.clone())).await {
            Ok(Ok(connected)) => Ok(connected),
            Ok(Err(e)) => Err(db_error(&e)),
            Err(_) => Err(StoreError::Backend("postgres: connecting timed out".into())),
        }
    }

    fn keep_statistics(&self) -> tokio::task::AbortHandle {
        let db = self.detached();
        tokio::spawn(async move {
            loop {
                match db.refresh_statistics().await {
                    Ok(tables) if !tables.is_empty() => {
                        tracing::debug!(schema = %db.schema, ?tables, "planner statistics refreshed");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "planner statistics not refreshed"),
                }
                tokio::time::sleep(STATISTICS_EVERY).await;
            }
        })
        .abort_handle()
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> Result<Object, Failure> {
        Ok(self.pool.get().await?)
    }

    /// Runs `attempt` — one whole transaction — again while it fails on a serialization
    /// failure or a deadlock (rare on PostgreSQL at READ COMMITTED, the rule on CockroachDB).
    pub(crate) async fn retry<T, F, Fut>(&self, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            match attempt().await {
                Err(f) if f.is_transient() && tries < ATTEMPTS => {
                    tracing::debug!(tries, "postgres transaction retried");
                    tokio::time::sleep(Duration::from_millis(5 << tries)).await;
                }
                other => return other.map_err(StoreError::from),
            }
        }
    }

    /// Checks the database answers.
    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| db_error(&e))?;
        Ok(())
    }

    /// Applies every migration not yet recorded in the schema's `schema_migrations`, in one
    /// transaction that first locks that table: instances starting together wait for the
    /// first, then find its work done. A table lock rather than an advisory lock, which
    /// CockroachDB and YugabyteDB lack.
    async fn migrate(&self, schema: &str, profile: &Profile) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let mut tries = 0;
        loop {
            tries += 1;
            match bootstrap(&client, schema).await {
                Ok(()) => break,
                // Two `CREATE … IF NOT EXISTS` at once can both pass the check and collide in
                // the catalog; the loser finds the object there on its next try.
                Err(e) if tries < ATTEMPTS && is_duplicate(&e) => {
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(tries))).await;
                }
                Err(e) => return Err(db_error(&e)),
            }
        }
        let tx = client.transaction().await.map_err(|e| db_error(&e))?;
        tx.batch_execute(&format!(
            "LOCK TABLE \"{schema}\".schema_migrations IN EXCLUSIVE MODE; SET LOCAL search_path TO \"{schema}\";"
        ))
        .await
        .map_err(|e| db_error(&e))?;
        let applied: Vec<i64> = tx
            .query(
                "SELECT version FROM schema_migrations ORDER BY version",
                &[],
            )
            .await
            .map_err(|e| db_error(&e))?
            .iter()
            .map(|r| r.try_get::<_, i64>(0))
            .collect::<Result<_, _>>()
            .map_err(|e| db_error(&e))?;
        check_schema_version(
            &format!("{} schema \"{schema}\"", profile.name),
            applied.iter().copied().max().unwrap_or(0),
            profile.migrations,
        )?;
        for migration in profile.migrations {
            if applied.contains(&migration.version) {
                continue;
            }
            tx.batch_execute(migration.sql).await.map_err(|e| {
                StoreError::Backend(format!(
                    "migration {} of the {} schema failed: {}",
                    migration.version,
                    profile.name,
                    db_error(&e)
                ))
            })?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())",
                &[&migration.version],
            )
            .await
            .map_err(|e| db_error(&e))?;
            tracing::info!(
                db = profile.name,
                version = migration.version,
                "applied migration"
            );
        }
        tx.commit().await.map_err(|e| db_error(&e))
    }
}

/// Creates the schema and its migrations table where missing. Looks first, so that a role
/// without the CREATE privilege can run against a schema set up for it.
async fn bootstrap(client: &Object, schema: &str) -> Result<(), tokio_postgres::Error> {
    let table = format!("\"{schema}\".schema_migrations");
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1),
                    to_regclass($2) IS NOT NULL",
            &[&schema, &table],
        )
        .await?;
    let (has_schema, has_table): (bool, bool) = (row.try_get(0)?, row.try_get(1)?);
    if !has_schema {
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .await?;
    }
    if !has_table {
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (
                     version    bigint      NOT NULL PRIMARY KEY,
                     applied_at timestamptz NOT NULL
                 )"
            ))
            .await?;
    }
    Ok(())
}

fn is_duplicate(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::UNIQUE_VIOLATION
            || *c == SqlState::DUPLICATE_SCHEMA
            || *c == SqlState::DUPLICATE_TABLE
            || *c == SqlState::DUPLICATE_OBJECT
    )
}

/// Schema names are spliced into SQL and connection options, so only plain lowercase
/// identifiers are accepted.
fn check_schema_name(schema: &str) -> Result<(), StoreError> {
    let mut chars = schema.chars();
    let ok = schema.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Backend(format!(
            "invalid schema name {schema:?}: use lowercase letters, digits and _"
        )))
    }
}

/// Runs a fixed statement prepared through the connection's statement cache (prepared once
/// per connection, then only bound and executed: one round trip).
pub(crate) async fn execute_cached(
    client: &impl deadpool_postgres::GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    let stmt = client.prepare_cached(sql).await?;
    client.execute(&stmt, params).await
}

/// Prepares a statement whose text is built per call (searches): from the connection's
/// cache while it has room, else for this use only. Fixed texts use `prepare_cached`.
pub(crate) async fn prepare_dynamic(client: &Object, sql: &str) -> Result<Statement, Failure> {
    if client.statement_cache.size() < CACHED_STATEMENTS {
        Ok(client.prepare_cached(sql).await?)
    } else {
        Ok(client.prepare(sql).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for ok in ["contextd", "contextd_keys", "_x1"] {
            assert!(check_schema_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1x", "Contextd", "a-b", "a\"b", "a b", &"x".repeat(64)] {
            assert!(check_schema_name(bad).is_err(), "{bad}");
        }
    }
}
