//! The WAL checkpointer: a thread of its own copies committed pages from the write-ahead log
//! into the database file, so that the writer thread never does it inside a group commit.
//!
//! SQLite's automatic checkpoint runs on the connection that commits, after the commit that
//! crosses the threshold: every caller of that batch waits for thousands of pages to be
//! copied and the database file synced. A PASSIVE checkpoint from another connection does the
//! same work beside the writer and never blocks it or any reader. The writer keeps an
//! automatic threshold (see `db.rs`) that bounds the log under sustained writes; by the time
//! it fires, this thread has already copied nearly everything.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use contextd_core::store::StoreError;
use rusqlite::Connection;

use crate::db::DbResultExt;

/// How often the log is checkpointed.
const EVERY: Duration = Duration::from_millis(250);

/// Handle to the checkpointer thread; dropping it stops the thread.
pub(crate) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the WAL database at `path` every [`EVERY`].
    pub(crate) fn start(path: &Path, name: &str) -> Result<Self, StoreError> {
        let conn = Connection::open(path).db()?;
        conn.busy_timeout(Duration::from_secs(5)).db()?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-checkpoint"))
            .spawn(move || loop {
                match stopped.recv_timeout(EVERY) {
                    Err(RecvTimeoutError::Timeout) => {
                        if let Err(e) =
                            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                        {
                            tracing::warn!(error = %e, "WAL checkpoint failed");
                        }
                    }
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            })
            .map_err(|e| StoreError::Backend(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the SQLite checkpoint thread panicked");
            }
        }
    }
}
