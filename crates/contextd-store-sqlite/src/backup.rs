//! Online backup and restore of one database file, while a server may be writing to it.
//!
//! A backup is `VACUUM INTO`: one read transaction of the source, so the copy is the database
//! as of one commit, and a WAL reader never blocks the writer — the server keeps committing
//! while the copy is made. Restoring checks the copy's integrity before it takes the place of
//! a database.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use contextd_core::store::StoreError;
use rusqlite::{Connection, OpenFlags};

use crate::db::DbResultExt;

/// How long a backup waits for a lock (the key store's rollback journal locks it for a moment
/// on each write).
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Copies the database at `source` as of one commit into the new file `target` (which must
/// not exist) and syncs it to disk. Returns the copy's size in bytes.
pub fn backup_file(source: &Path, target: &Path) -> Result<u64, StoreError> {
    if !source.exists() {
        return Err(StoreError::Backend(format!(
            "no database at {}",
            source.display()
        )));
    }
    if target.exists() {
        return Err(StoreError::Backend(format!(
            "{} exists: a backup never overwrites a file",
            target.display()
        )));
    }
    let conn = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .db()?;
    conn.busy_timeout(BUSY_TIMEOUT).db()?;
    let target_text = target
        .to_str()
        .ok_or_else(|| StoreError::Backend("the backup path is not UTF-8".into()))?;
    conn.execute("VACUUM INTO ?1", [target_text]).db()?;
    drop(conn);
    sync(target)
}

/// Checks that the copy at `source` is a whole SQLite database, then puts it at `target`
/// (which must not exist) by copy, sync and rename, so that a crash leaves no half file there.
pub fn restore_file(source: &Path, target: &Path) -> Result<u64, StoreError> {
    check_integrity(source)?;
    if target.exists() {
        return Err(StoreError::Backend(format!(
            "{} exists: restore only into an empty data directory",
            target.display()
        )));
    }
    let partial = target.with_extension("restoring");
    let io = |e: std::io::Error| StoreError::Backend(format!("{}: {e}", target.display()));
    std::fs::copy(source, &partial).map_err(io)?;
    sync(&partial)?;
    std::fs::rename(&partial, target).map_err(io)?;
    if let Some(dir) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    std::fs::metadata(target).map(|m| m.len()).map_err(io)
}

/// `PRAGMA quick_check` of a database file: every page and index readable and consistent.
pub fn check_integrity(path: &Path) -> Result<(), StoreError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).db()?;
    let verdict: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .db()?;
    if verdict == "ok" {
        Ok(())
    } else {
        Err(StoreError::Backend(format!(
            "{} is damaged: {verdict}",
            path.display()
        )))
    }
}

fn sync(path: &Path) -> Result<u64, StoreError> {
    let file = File::open(path)
        .and_then(|f| f.sync_all().map(|()| f))
        .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
    file.metadata()
        .map(|m| m.len())
        .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))
}
