//! The single write connection and its group-commit loop.
//!
//! One OS thread owns the write connection. Callers send jobs over a channel; the thread
//! blocks for the first, drains whatever else is queued (up to [`MAX_BATCH`]), runs them all in
//! one `BEGIN IMMEDIATE` transaction — each inside its own savepoint, so a failing job undoes
//! only itself — commits once, and only then answers every caller. One fsync thus acknowledges
//! a whole batch of concurrent writes.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use contextd_core::store::StoreError;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::error::DbResultExt;

/// Most jobs committed together.
pub(crate) const MAX_BATCH: usize = 512;
/// Jobs that may wait in the queue before senders wait too (back-pressure).
const QUEUE: usize = 4096;

/// A job whose result type has been erased so that jobs of any type share one queue.
trait AnyJob: Send {
    /// Runs the job inside the open transaction; `true` if it succeeded.
    fn run(&mut self, tx: &Transaction<'_>) -> bool;
    /// Answers the caller. `batch_error` is set when the batch did not commit.
    fn finish(self: Box<Self>, batch_error: Option<&str>);
}

struct TypedJob<T, F> {
    work: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> AnyJob for TypedJob<T, F>
where
    T: Send,
    F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, tx: &Transaction<'_>) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        let result = catch_unwind(AssertUnwindSafe(|| work(tx))).unwrap_or_else(|panic| {
            Err(StoreError::Backend(format!(
                "write job panicked: {}",
                panic_message(&*panic)
            )))
        });
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, batch_error: Option<&str>) {
        let result = match (self.result, batch_error) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), None) => Ok(value),
            (_, Some(msg)) => Err(StoreError::Backend(msg.to_owned())),
            (None, None) => Err(StoreError::Backend("write job was not run".into())),
        };
        // The caller may have gone away (its future dropped); the write stands regardless.
        let _ = self.reply.send(result);
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload")
}

/// Handle to the writer thread. Dropping it lets the thread finish the queued jobs, close the
/// connection and exit; the drop waits for that.
pub(crate) struct Writer {
    sender: Option<mpsc::Sender<Box<dyn AnyJob>>>,
    thread: Option<JoinHandle<()>>,
    commits: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the writer thread, which takes ownership of `conn`.
    pub(crate) fn start(conn: Connection, name: &str) -> Result<Self, StoreError> {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let counter = commits.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-writer"))
            .spawn(move || run(conn, receiver, &counter))
            .map_err(|e| StoreError::Backend(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            sender: Some(sender),
            thread: Some(thread),
            commits,
        })
    }

    /// Transactions committed so far; concurrent writes share them.
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Runs `work` in the next group-committed transaction and returns its result once the
    /// transaction is durable. An error from `work` rolls back only `work`'s own changes.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let sender = self.sender.as_ref().ok_or_else(stopped)?;
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn AnyJob> = Box::new(TypedJob {
            work: Some(work),
            result: None,
            reply,
        });
        sender.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Whether the writer thread is still taking jobs.
    pub(crate) fn is_running(&self) -> bool {
        self.sender.as_ref().is_some_and(|s| !s.is_closed())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the SQLite writer thread panicked");
            }
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Backend("the SQLite writer has stopped".into())
}

fn run(mut conn: Connection, mut receiver: mpsc::Receiver<Box<dyn AnyJob>>, commits: &AtomicU64) {
    let mut batch: Vec<Box<dyn AnyJob>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = receiver.blocking_recv() {
        batch.push(first);
        drain(&mut receiver, &mut batch);
        let outcome = catch_unwind(AssertUnwindSafe(|| run_batch(&mut conn, &mut batch)))
            .unwrap_or_else(|panic| {
                Err(StoreError::Backend(format!(
                    "writer panicked: {}",
                    panic_message(&*panic)
                )))
            });
        let error = match outcome {
            Ok(()) => {
                commits.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) => {
                tracing::error!(jobs = batch.len(), error = %e, "SQLite write batch failed");
                Some(e.to_string())
            }
        };
        tracing::trace!(jobs = batch.len(), "SQLite write batch done");
        for job in batch.drain(..) {
            job.finish(error.as_deref());
        }
    }
}

/// Moves queued jobs into the batch, up to [`MAX_BATCH`].
fn drain(receiver: &mut mpsc::Receiver<Box<dyn AnyJob>>, batch: &mut Vec<Box<dyn AnyJob>>) {
    while batch.len() < MAX_BATCH {
        match receiver.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

/// Runs every job of the batch in one transaction. An error here fails the whole batch.
fn run_batch(conn: &mut Connection, batch: &mut [Box<dyn AnyJob>]) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .db()?;
    for job in batch.iter_mut() {
        tx.prepare_cached("SAVEPOINT job").db()?.execute([]).db()?;
        if !job.run(&tx) {
            tx.prepare_cached("ROLLBACK TO job")
                .db()?
                .execute([])
                .db()?;
        }
        tx.prepare_cached("RELEASE job").db()?.execute([]).db()?;
    }
    tx.commit().db()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn open(dir: &tempfile::TempDir) -> (Arc<Writer>, std::path::PathBuf) {
        let path = dir.path().join("w.db");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;
             CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE t (v INTEGER PRIMARY KEY,
                             p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .expect("schema");
        (Arc::new(Writer::start(conn, "test").expect("start")), path)
    }

    fn count(path: &std::path::Path) -> i64 {
        let conn = Connection::open(path).expect("open");
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count")
    }

    fn insert(v: i64) -> impl FnOnce(&Transaction<'_>) -> Result<(), StoreError> + Send + 'static {
        move |tx| {
            tx.execute("INSERT INTO t (v) VALUES (?1)", [v])
                .map(|_| ())
                .db()
        }
    }

    type TestJob = Box<dyn FnOnce(&Transaction<'_>) -> Result<(), StoreError> + Send>;

    /// Queues `jobs` behind a job that holds the writer busy, so they land in one batch.
    async fn batch(writer: &Arc<Writer>, jobs: Vec<TestJob>) -> Vec<Result<(), StoreError>> {
        let w = writer.clone();
        let blocker = tokio::spawn(async move {
            w.write(|_| {
                std::thread::sleep(Duration::from_millis(200));
                Ok(())
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut handles = Vec::new();
        for job in jobs {
            let w = writer.clone();
            handles.push(tokio::spawn(async move { w.write(job).await }));
        }
        assert!(
            blocker.await.expect("join").is_ok(),
            "the blocking job must commit"
        );
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.expect("join"));
        }
        out
    }

    #[tokio::test]
    async fn a_failing_job_rolls_back_only_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (writer, path) = open(&dir);
        let results = batch(
            &writer,
            vec![
                Box::new(insert(1)),
                Box::new(|tx: &Transaction<'_>| {
                    insert(2)(tx)?;
                    Err(StoreError::AlreadyExists)
                }),
                Box::new(insert(3)),
            ],
        )
        .await;
        assert!(results[0].is_ok());
        assert!(
            matches!(results[1], Err(StoreError::AlreadyExists)),
            "the job's own error is returned"
        );
        assert!(results[2].is_ok());
        assert_eq!(
            count(&path),
            2,
            "the failed job's insert is rolled back, the others committed"
        );
    }

    #[tokio::test]
    async fn a_panicking_job_reports_an_error_and_the_writer_survives() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (writer, path) = open(&dir);
        let results = batch(
            &writer,
            vec![
                Box::new(|tx: &Transaction<'_>| {
                    insert(7)(tx)?;
                    panic!("boom")
                }),
                Box::new(insert(8)),
            ],
        )
        .await;
        match &results[0] {
            Err(StoreError::Backend(msg)) => {
                assert!(msg.contains("boom"), "message names the panic: {msg}")
            }
            other => panic!("expected a backend error, got {other:?}"),
        }
        assert!(results[1].is_ok());
        assert!(writer.is_running());
        writer
            .write(insert(9))
            .await
            .expect("the writer still takes jobs");
        assert_eq!(count(&path), 2);
    }

    #[tokio::test]
    async fn a_failed_commit_fails_every_job_of_the_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (writer, path) = open(&dir);
        // The deferred foreign key is checked only at COMMIT, so the whole batch fails there.
        let results = batch(
            &writer,
            vec![
                Box::new(insert(1)),
                Box::new(|tx: &Transaction<'_>| {
                    tx.execute("INSERT INTO t (v, p) VALUES (2, 99)", [])
                        .map(|_| ())
                        .db()
                }),
                Box::new(insert(3)),
            ],
        )
        .await;
        for (i, r) in results.iter().enumerate() {
            assert!(
                matches!(r, Err(StoreError::Backend(_))),
                "job {i} must see the commit failure, got {r:?}"
            );
        }
        assert_eq!(count(&path), 0, "nothing of the failed batch is stored");
        writer
            .write(insert(4))
            .await
            .expect("the next batch commits");
        assert_eq!(count(&path), 1);
    }
}
