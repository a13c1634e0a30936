//! One SQLite database file: the writer thread, the reader pool, pragmas and migrations.

use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use contextd_core::store::{check_schema_version, Migration, StoreError};
use r2d2::{Pool, PooledConnection};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::config::DbConfig;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use tokio::sync::{Semaphore, SemaphorePermit};
use uuid::Uuid;

use crate::writer::Writer;

const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);
const READERS: u32 = 8;
const STATEMENT_CACHE: usize = 256;
/// SQLite virtual-machine steps between two looks at a read's budget.
const PROGRESS_STEPS: i32 = 1000;
/// How long a read may hold an async worker thread (see [`Db::short_read`]).
const SHORT_READ_BUDGET: Duration = Duration::from_millis(1);

thread_local! {
    /// Until when the read running on this thread may go on; none: no limit.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Whether the last budgeted read on this thread was stopped for overrunning.
    static OVERRAN: Cell<bool> = const { Cell::new(false) };
}

/// The readers' progress handler: interrupts a budgeted read that overran its deadline.
fn over_budget() -> bool {
    let over = DEADLINE.with(|d| d.get().is_some_and(|at| Instant::now() >= at));
    if over {
        OVERRAN.with(|o| o.set(true));
    }
    over
}

/// A deadline for the reads of this thread while it lives.
struct Budget;

impl Budget {
    fn start(budget: Duration) -> Self {
        OVERRAN.with(|o| o.set(false));
        DEADLINE.with(|d| d.set(Some(Instant::now() + budget)));
        Self
    }

    /// Whether a read was interrupted for overrunning the deadline.
    fn overran(&self) -> bool {
        OVERRAN.with(Cell::get)
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        DEADLINE.with(|d| d.set(None));
    }
}

pub(crate) use crate::error::DbResultExt;

/// How a database file is set up.
pub(crate) struct Profile {
    /// Used in thread names and logs.
    pub name: &'static str,
    /// `WAL` for the data, `DELETE` for the key store (see `keys.rs`).
    pub journal_mode: &'static str,
    /// Overwrite deleted content with zeros.
    pub secure_delete: bool,
    /// The schema, in order.
    pub migrations: &'static [Migration],
}

/// A database file: one writer thread, a pool of query-only readers.
pub(crate) struct Db {
    writer: Writer,
    readers: Pool<SqliteConnectionManager>,
    /// One permit per pooled connection: reads wait here, asynchronously, rather than as
    /// blocked threads inside the pool.
    read_permits: Arc<Semaphore>,
}

impl Db {
    /// Opens (creating if needed) the file, applies pending migrations and starts the writer.
    pub(crate) fn open(path: &Path, profile: &Profile) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Backend(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        // Migrate on a connection of its own: a connection loads planner statistics when it
        // opens, so the writer and readers must open after the migrations wrote them.
        migrate(&mut open_writer(path, profile)?, profile)?;
        let writer = Writer::start(open_writer(path, profile)?, profile.name)?;

        let manager = SqliteConnectionManager::file(path)
            .with_flags(
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI,
            )
            .with_init(|c| configure_reader(c));
        let readers = Pool::builder()
            .max_size(READERS)
            .test_on_check_out(false)
            .connection_timeout(Duration::from_secs(30))
            .build(manager)
            .map_err(|e| StoreError::Backend(format!("sqlite reader pool: {e}")))?;
        Ok(Self {
            writer,
            readers,
            read_permits: Arc::new(Semaphore::new(READERS as usize)),
        })
    }

    /// Runs `work` in the next group commit; see [`Writer::write`].
    /// Write transactions committed since open.
    pub(crate) fn commits(&self) -> u64 {
        self.writer.commits()
    }

    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.writer.write(work).await
    }

    /// Runs `work` on a pooled query-only connection, off the async threads.
    pub(crate) async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = self
            .read_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Backend("sqlite reader pool closed".into()))?;
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut conn = pool
                .get()
                .map_err(|e| StoreError::Backend(format!("sqlite reader pool: {e}")))?;
            work(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("sqlite read task failed: {e}")))?
    }

    /// Runs a primary-key lookup (an API key, an object by id, a session) on the calling
    /// thread when a pooled connection is free at once, else as [`Db::read`] does.
    ///
    /// Such a read is a few B-tree pages already in memory — microseconds, less than the two
    /// thread switches of a hop to the blocking pool, which on a small machine were a quarter
    /// of the CPU of a lookup. WAL readers never wait for the writer. Only use it for reads
    /// bounded by a key: scans and searches go through [`Db::read`].
    pub(crate) async fn point_read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        if let Some((_permit, mut conn)) = self.free_reader() {
            return work(&mut conn);
        }
        self.read(work).await
    }

    /// A pooled reader and its permit, when both are free at once (for a read on the calling
    /// thread, which must not wait for one).
    fn free_reader(
        &self,
    ) -> Option<(
        SemaphorePermit<'_>,
        PooledConnection<SqliteConnectionManager>,
    )> {
        let permit = self.read_permits.try_acquire().ok()?;
        Some((permit, self.readers.try_get()?))
    }

    /// Runs a read that is usually short (a search by an indexed value, a page of a journey)
    /// on the calling thread when a pooled connection is free at once, with a budget of
    /// [`SHORT_READ_BUDGET`]: SQLite's progress handler interrupts it once it runs longer,
    /// and it runs again from the start on the blocking pool, as [`Db::read`] does. So the
    /// common read skips the two thread switches of the hop, and no read holds an async
    /// worker for long. `work` must be read-only (it may run twice).
    pub(crate) async fn short_read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        if let Some((_permit, mut conn)) = self.free_reader() {
            let budget = Budget::start(SHORT_READ_BUDGET);
            let result = work(&mut conn);
            if !budget.overran() {
                return result;
            }
            tracing::debug!("a read overran its budget on the calling thread; moved to the pool");
        }
        self.read(work).await
    }

    /// Checks that the writer runs and a reader answers.
    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        if !self.writer.is_running() {
            return Err(StoreError::Backend("the SQLite writer has stopped".into()));
        }
        self.read(|c| {
            c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .db()
                .map(|_| ())
        })
        .await
    }
}

/// Settings every connection shares. The query-planner stability guarantee makes plans
/// independent of bound values; without it SQLite (built with STAT4) recompiles a cached
/// statement whenever a value compared with an indexed column changes — on every call.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

/// Sets up a pooled reader connection: query-only.
pub(crate) fn configure_reader(conn: &Connection) -> rusqlite::Result<()> {
    configure(conn)?;
    conn.progress_handler(PROGRESS_STEPS, Some(over_budget))?;
    conn.execute_batch("PRAGMA query_only=ON; PRAGMA temp_store=MEMORY; PRAGMA cache_size=-16384;")
}

/// Opens a read-write connection with the pragmas every writer uses.
fn open_writer(path: &Path, profile: &Profile) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).db()?;
    configure(&conn).db()?;
    let mode = set_journal_mode(&conn, profile.journal_mode)?;
    if !mode.eq_ignore_ascii_case(profile.journal_mode) {
        tracing::warn!(db = profile.name, wanted = profile.journal_mode, got = %mode, "SQLite journal mode not applied");
    }
    conn.execute_batch(
        // A checkpoint every 2,500 pages (10 MB of log), in the writer, after the commit that
        // crosses it. The writes of that batch wait for it, so its size is the ingest tail:
        // measured open loop at 3,000 and 6,000 creates/s (p99) and closed loop (creates/s):
        // 1,000 pages (SQLite's default) 7–8 / 10 ms, ~9,000/s; 2,500 pages 11 / 15–23 ms,
        // ~11,000/s; 10,000 pages 25–28 / 35–39 ms, ~12,000/s (BENCHMARKS.md). A checkpoint on
        // a thread of its own was tried and made the tail worse (its syncs stall the writer's).
        "PRAGMA synchronous=FULL;
         PRAGMA temp_store=MEMORY;
         PRAGMA cache_size=-65536;
         PRAGMA wal_autocheckpoint=2500;
         PRAGMA journal_size_limit=67108864;",
    )
    .db()?;
    if profile.secure_delete {
        conn.execute_batch("PRAGMA secure_delete=ON;").db()?;
    }
    Ok(conn)
}

/// Sets the journal mode, again while SQLite answers busy, for up to [`BUSY_TIMEOUT`].
/// Turning a rollback-journal file (one another process has just created) into WAL reads
/// page 1 and then upgrades to a write lock (`sqlite3BtreeSetVersion`); SQLite refuses that
/// upgrade at once, without the busy handler, while another connection holds RESERVED —
/// another process converting the same new file, or `move_audit_out`'s `BEGIN IMMEDIATE`.
fn set_journal_mode(conn: &Connection, mode: &str) -> Result<String, StoreError> {
    let sql = format!("PRAGMA journal_mode={mode}");
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        match conn.query_row(&sql, [], |r| r.get::<_, String>(0)) {
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            result => return result.db(),
        }
    }
}

/// Applies, in order, each migration not yet recorded in `schema_migrations`, each in its own
/// `BEGIN IMMEDIATE` transaction so that two processes opening the file at once cannot both
/// apply it.
fn migrate(conn: &mut Connection, profile: &Profile) -> Result<(), StoreError> {
    // A migration that rewrites a table sorts it: in temporary files, so that memory stays
    // bounded by the page cache whatever the table's size (this connection is closed after).
    conn.execute_batch(
        "PRAGMA temp_store=FILE;
         CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             applied_at INTEGER NOT NULL
         );",
    )
    .db()?;
    let newest_applied: i64 = conn
        .query_row(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .db()?;
    check_schema_version(
        &format!("{} database", profile.name),
        newest_applied,
        profile.migrations,
    )?;
    for migration in profile.migrations {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db()?;
        let applied: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)",
                [migration.version],
                |r| r.get(0),
            )
            .db()?;
        if applied {
            continue;
        }
        tracing::info!(
            db = profile.name,
            version = migration.version,
            "applying migration"
        );
        tx.execute_batch(migration.sql).db()?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            [migration.version, Utc::now().timestamp_millis()],
        )
        .db()?;
        tx.commit().db()?;
        tracing::info!(
            db = profile.name,
            version = migration.version,
            "applied migration"
        );
    }
    Ok(())
}

/// Reads a 16-byte id column.
pub(crate) fn uuid_col(v: ValueRef<'_>, what: &str) -> Result<Uuid, StoreError> {
    v.as_blob()
        .ok()
        .and_then(|b| Uuid::from_slice(b).ok())
        .ok_or_else(|| StoreError::corrupt(what))
}

/// Reads a nullable 16-byte id column.
pub(crate) fn opt_uuid_col(v: ValueRef<'_>, what: &str) -> Result<Option<Uuid>, StoreError> {
    match v {
        ValueRef::Null => Ok(None),
        v => uuid_col(v, what).map(Some),
    }
}

/// Reads a text column.
pub(crate) fn text_col<'a>(v: ValueRef<'a>, what: &str) -> Result<&'a str, StoreError> {
    v.as_str().map_err(|_| StoreError::corrupt(what))
}

/// Reads a nullable text column.
pub(crate) fn opt_text_col<'a>(v: ValueRef<'a>, what: &str) -> Result<Option<&'a str>, StoreError> {
    v.as_str_or_null().map_err(|_| StoreError::corrupt(what))
}

/// Reads an integer column.
pub(crate) fn int_col(v: ValueRef<'_>, what: &str) -> Result<i64, StoreError> {
    v.as_i64().map_err(|_| StoreError::corrupt(what))
}

/// Milliseconds since the epoch, as stored.
pub(crate) fn ms(t: &DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A stored time.
pub(crate) fn time_col(v: ValueRef<'_>, what: &str) -> Result<DateTime<Utc>, StoreError> {
    int_col(v, what).map(contextd_core::time::from_millis)
}

/// A nullable stored time.
pub(crate) fn opt_time_col(
    v: ValueRef<'_>,
    what: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    v.as_i64_or_null()
        .map(|o| o.map(contextd_core::time::from_millis))
        .map_err(|_| StoreError::corrupt(what))
}

/// Parses a stored enum name.
pub(crate) fn parse_col<T: std::str::FromStr>(
    v: ValueRef<'_>,
    what: &str,
) -> Result<T, StoreError> {
    text_col(v, what)?
        .parse()
        .map_err(|_| StoreError::corrupt(what))
}

/// Parses a nullable stored enum name.
pub(crate) fn opt_parse_col<T: std::str::FromStr>(
    v: ValueRef<'_>,
    what: &str,
) -> Result<Option<T>, StoreError> {
    opt_text_col(v, what)?
        .map(|s| s.parse().map_err(|_| StoreError::corrupt(what)))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: Profile = Profile {
        name: "test",
        journal_mode: "WAL",
        secure_delete: false,
        migrations: &[],
    };

    /// Turning a new file into WAL takes a read lock and then upgrades it, and SQLite fails
    /// that upgrade at once (no busy handler) while another connection holds RESERVED: the
    /// open must wait for it like for any other lock (several `contextd migrate` at once).
    #[test]
    fn opening_a_new_file_waits_for_another_writer_instead_of_failing_busy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("new.db");
        let holder = Connection::open(&path).expect("open");
        holder
            .execute_batch("BEGIN IMMEDIATE")
            .expect("hold RESERVED");
        let opening = path.clone();
        let opener = std::thread::spawn(move || Db::open(&opening, &PROFILE).map(|_| ()));
        std::thread::sleep(Duration::from_millis(300));
        holder.execute_batch("ROLLBACK").expect("release");
        opener
            .join()
            .expect("the opener does not panic")
            .expect("the open waited instead of failing with SQLITE_BUSY");
    }

    /// Counts to `n` in SQL: a read whose length the test chooses.
    fn count_to(
        n: i64,
    ) -> impl Fn(&mut Connection) -> Result<(i64, std::thread::ThreadId), StoreError> {
        move |c: &mut Connection| {
            let total = c
                .query_row(
                    "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?1)
                     SELECT count(*) FROM k",
                    [n],
                    |r| r.get(0),
                )
                .db()?;
            Ok((total, std::thread::current().id()))
        }
    }

    #[tokio::test]
    async fn a_short_read_runs_on_the_calling_thread_and_a_long_one_moves_to_the_pool() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(&dir.path().join("t.db"), &PROFILE).expect("open");
        let here = std::thread::current().id();

        let (n, thread) = db.short_read(count_to(10)).await.expect("short read");
        assert_eq!((n, thread), (10, here), "answered on the calling thread");

        // Tens of millions of steps: far past the budget, interrupted, then run in full.
        let (n, thread) = db.short_read(count_to(3_000_000)).await.expect("long read");
        assert_eq!(n, 3_000_000, "the interrupted read ran again to the end");
        assert_ne!(thread, here, "the long read finished on the blocking pool");

        // The budget is gone with the read: the same connection serves long pool reads.
        let (n, _) = db.read(count_to(3_000_000)).await.expect("pool read");
        assert_eq!(n, 3_000_000);
        let (_, thread) = db.short_read(count_to(10)).await.expect("short read again");
        assert_eq!(thread, here);
    }

    #[test]
    fn sqlite_is_built_without_memory_statistics() {
        // `.cargo/config.toml` sets it; without it every SQLite allocation takes a global mutex.
        let conn = Connection::open_in_memory().expect("open");
        let mut stmt = conn.prepare("PRAGMA compile_options").expect("prepare");
        let options: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("options");
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
    }
}
