//! The audit log writer: entries are queued and appended in batches by a background task, so
//! that auditing a hot read path costs a channel send, not a database write per read.
//! [`AuditLog::flush`] waits until everything queued so far is stored.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::store::{AuditEntry, Store};

/// Most entries appended in one transaction.
const BATCH: usize = 1024;
/// Queue depth; writers wait (backpressure) when it is full.
const QUEUE: usize = 65_536;
/// How long a batch gathers entries before it is appended. Every commit to the data database
/// empties the page caches of its readers, so a commit per entry (the natural batch of a
/// lightly loaded server) costs the hot read paths far more than the row itself; a batch
/// every few milliseconds bounds that. An entry is lost only if the process dies inside
/// this window.
const WINDOW: std::time::Duration = std::time::Duration::from_millis(10);

enum Msg {
    Entry(AuditEntry),
    Flush(oneshot::Sender<()>),
}

/// Queues audit entries and appends them in batches.
pub struct AuditLog {
    store: Arc<dyn Store>,
    tx: Option<mpsc::Sender<Msg>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditLog")
    }
}

impl AuditLog {
    /// Starts the background writer on the current Tokio runtime (without one, entries are
    /// appended synchronously).
    pub fn start(store: Arc<dyn Store>) -> Self {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return Self { store, tx: None };
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        handle.spawn(run(store.clone(), rx));
        Self {
            store,
            tx: Some(tx),
        }
    }

    /// Records one entry.
    pub async fn record(&self, entry: AuditEntry) {
        match &self.tx {
            Some(tx) => {
                if tx.send(Msg::Entry(entry)).await.is_err() {
                    tracing::error!("the audit writer has stopped; an entry was lost");
                }
            }
            None => append(&*self.store, &[entry]).await,
        }
    }

    /// Waits until every entry recorded before this call is stored.
    pub async fn flush(&self) {
        if let Some(tx) = &self.tx {
            let (done, wait) = oneshot::channel();
            if tx.send(Msg::Flush(done)).await.is_ok() {
                let _ = wait.await;
            }
        }
    }
}

async fn append(store: &dyn Store, entries: &[AuditEntry]) {
    for attempt in 1..=3 {
        match store.append_audit(entries).await {
            Ok(()) => return,
            Err(e) if attempt < 3 => {
                tracing::warn!(error = %e, attempt, "audit append failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
            }
            Err(e) => {
                tracing::error!(error = %e, lost = entries.len(), "audit append failed; entries lost")
            }
        }
    }
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Msg>) {
    let mut msgs = Vec::with_capacity(BATCH);
    let mut entries = Vec::with_capacity(BATCH);
    let mut waiters = Vec::new();
    while rx.recv_many(&mut msgs, BATCH).await > 0 {
        // Gather for up to WINDOW (less when a batch fills or someone waits on a flush).
        let deadline = tokio::time::Instant::now() + WINDOW;
        loop {
            for m in msgs.drain(..) {
                match m {
                    Msg::Entry(e) => entries.push(e),
                    Msg::Flush(w) => waiters.push(w),
                }
            }
            if !waiters.is_empty() || entries.len() >= BATCH {
                break;
            }
            match tokio::time::timeout_at(deadline, rx.recv_many(&mut msgs, BATCH - entries.len()))
                .await
            {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
        if !entries.is_empty() {
            append(&*store, &entries).await;
            entries.clear();
        }
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
}
