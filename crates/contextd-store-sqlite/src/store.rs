//! [`SqliteStore`]: the data database — its files, schema and the [`Store`] trait itself. The
//! traits per concern are implemented one file each: `objects.rs`, `dictionary.rs`,
//! `credentials.rs`, `audit.rs`, `jobs.rs`, `connectors.rs`, `events.rs` and `webhooks.rs`.

use std::path::Path;

use async_trait::async_trait;
use contextd_core::store::{Migration, Store, StoreError, Token};
use rusqlite::{params, Connection};
use tokio::sync::watch;
use uuid::Uuid;

use crate::db::{Db, DbResultExt, Profile};

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
        sql: include_str!("../migrations/data/0004_audit_moved.sql"),
    },
    Migration {
        version: 5,
        sql: include_str!("../migrations/data/0005_erasures.sql"),
    },
    Migration {
        version: 6,
        sql: include_str!("../migrations/data/0006_sessions_by_user.sql"),
    },
    Migration {
        version: 7,
        sql: include_str!("../migrations/data/0007_connectors.sql"),
    },
    Migration {
        version: 8,
        sql: include_str!("../migrations/data/0008_events.sql"),
    },
    Migration {
        version: 9,
        sql: include_str!("../migrations/data/0009_desktop.sql"),
    },
    Migration {
        version: 10,
        sql: include_str!("../migrations/data/0010_journey_count.sql"),
    },
    Migration {
        version: 11,
        sql: include_str!("../migrations/data/0011_journey_clustered.sql"),
    },
];

const AUDIT_MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("../migrations/audit/0001_init.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("../migrations/audit/0002_segments.sql"),
    },
];

const AUDIT_PROFILE: Profile = Profile {
    name: "audit",
    journal_mode: "WAL",
    secure_delete: false,
    migrations: AUDIT_MIGRATIONS,
};

const PROFILE: Profile = Profile {
    name: "data",
    journal_mode: "WAL",
    secure_delete: false,
    migrations: MIGRATIONS,
};

/// The data database in one SQLite file (WAL mode): objects, tokens, dictionary, orgs,
/// API keys, connectors and flush jobs. Writes are group-committed by one writer thread;
/// reads run on a pool of query-only connections.
pub struct SqliteStore {
    pub(crate) db: Db,
    /// The audit log, in a file of its own (`<name>-audit.db` beside the data file): a commit
    /// to the data file empties its readers' page caches, and the audit log commits under
    /// every read load.
    pub(crate) audit: Db,
    /// Bumped after every commit that recorded events: the wake-up of
    /// `EventStore::event_signal`.
    pub(crate) events: watch::Sender<u64>,
}

impl SqliteStore {
    /// Opens the file (creating it and its parent directories if missing) and its audit file,
    /// and applies pending migrations. Audit entries of older schemas are moved into the
    /// chained monthly segments (`audit.rs`) once the data file holds none any more.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let audit_path = Self::audit_path(path);
        let audit = Db::open(&audit_path, &AUDIT_PROFILE)?;
        move_audit_out(path, &audit_path)?;
        let db = Db::open(path, &PROFILE)?;
        Self::chain_legacy_entries(&audit_path)?;
        Ok(Self {
            db,
            audit,
            events: watch::Sender::new(0),
        })
    }

    /// Where the audit file of the data file `path` lives: `contextd.db` → `contextd-audit.db`.
    pub fn audit_path(path: &Path) -> std::path::PathBuf {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "contextd".into());
        path.with_file_name(format!("{stem}-audit.db"))
    }

    /// The backend's name: `sqlite`.
    pub fn backend(&self) -> &'static str {
        "sqlite"
    }

    /// Write transactions committed since open. Concurrent writes share commits (group
    /// commit), so under load this grows slower than the number of writes.
    pub fn commit_count(&self) -> u64 {
        self.db.commits()
    }

    /// Wakes the readers of [`SqliteStore::events`]: called after a write that recorded
    /// events has committed.
    pub(crate) fn events_recorded(&self) {
        self.events.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Copies the audit rows of a data file from before schema 4 into the audit file's table of
/// schema 1 (made again if the audit file's entries were chained already); schema 4 then drops
/// them, and opening chains them. Safe to repeat (a crash between the two copies again; ids
/// are unique).
fn move_audit_out(path: &Path, audit_path: &Path) -> Result<(), StoreError> {
    if !path.exists() {
        return Ok(());
    }
    let mut conn = Connection::open(path).db()?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).db()?;
    let target = audit_path
        .to_str()
        .ok_or_else(|| StoreError::Backend("the audit file path is not UTF-8".into()))?;
    conn.execute("ATTACH DATABASE ?1 AS audit_file", params![target])
        .db()?;
    // Looked for under the write lock: another process may be migrating the file right now,
    // creating the table (schema 2) and dropping it (schema 4).
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .db()?;
    let legacy: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = 'audit')",
            [],
            |r| r.get(0),
        )
        .db()?;
    if legacy {
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS audit_file.audit (
                 id          BLOB    NOT NULL,
                 org_id      BLOB    NOT NULL,
                 partition   TEXT    NOT NULL,
                 at          INTEGER NOT NULL,
                 actor       BLOB,
                 actor_role  TEXT,
                 action      TEXT    NOT NULL,
                 object_kind TEXT,
                 object_id   TEXT,
                 fields      TEXT    NOT NULL,
                 detail      TEXT    NOT NULL,
                 PRIMARY KEY (org_id, partition, id)
             ) WITHOUT ROWID;
             INSERT OR IGNORE INTO audit_file.audit SELECT * FROM main.audit;",
        )
        .db()?;
    }
    tx.commit().db()?;
    conn.execute_batch("DETACH DATABASE audit_file;").db()
}

/// An id as stored: 16 bytes.
pub(crate) fn blob(id: Uuid) -> [u8; 16] {
    id.into_bytes()
}

/// Tokens as stored: 16 bytes each.
pub(crate) fn token_blobs(tokens: &[Token]) -> Vec<[u8; 16]> {
    tokens.iter().map(|t| t.0).collect()
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        SqliteStore::backend(self)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await?;
        self.audit.ping().await
    }
}
