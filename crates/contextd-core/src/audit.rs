//! The audit log writer, fail-closed: [`AuditLog::record`] returns only once the entries are
//! durable, and an append that fails is an error for the caller (a 503), never a silent loss.
//!
//! Concurrent callers share commits (group commit, like the data writer): one background task
//! appends whatever has queued while the previous append was in flight as one batch, and wakes
//! every caller whose entries that batch held. A lightly loaded server commits each entry at
//! once; a busy one commits hundreds per append. A store whose appends already share commits
//! (SQLite's writer thread) gets each caller's entries directly, without that task's hop.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::auth::Principal;
use crate::error::CoreError;
use crate::ids::Scope;
use crate::object::Kind;
use crate::store::{AuditEntry, Store};
use crate::time::now_ms;
use uuid::Uuid;

/// Most entries appended in one transaction.
const BATCH: usize = 1024;
/// Queue depth, in requests; callers wait (backpressure) when it is full.
const QUEUE: usize = 16_384;
/// Attempts of one append before its callers are told it failed.
const ATTEMPTS: u64 = 2;
/// Times the writer yields to the scheduler before an append, so that requests already
/// running on other workers join this commit rather than wait for the next (no fixed delay:
/// on an idle server a yield returns at once).
const GATHER_YIELDS: usize = 4;

/// One caller's entries and where to report their fate.
struct Msg {
    entries: Vec<AuditEntry>,
    done: oneshot::Sender<Result<(), String>>,
}

/// Queues audit entries, appends them in shared batches, and reports each commit.
pub struct AuditLog {
    store: Arc<dyn Store>,
    tx: Option<mpsc::Sender<Msg>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditLog")
    }
}

fn unavailable(reason: impl std::fmt::Display) -> CoreError {
    CoreError::AuditUnavailable(reason.to_string())
}

impl AuditLog {
    /// Starts the background writer on the current Tokio runtime. Without one, or when the
    /// store groups concurrent appends itself ([`crate::store::AuditStore::groups_audit_appends`]), entries
    /// are appended by the caller.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return Self { store, tx: None };
        };
        if store.groups_audit_appends() {
            return Self { store, tx: None };
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        handle.spawn(run(store.clone(), rx));
        Self {
            store,
            tx: Some(tx),
        }
    }

    /// Records entries and waits until they are durable; an error means they are not, and the
    /// caller must not go on as if they were.
    pub async fn record(&self, entries: Vec<AuditEntry>) -> Result<(), CoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let Some(tx) = &self.tx else {
            return append(&*self.store, &entries).await.map_err(unavailable);
        };
        let (done, wait) = oneshot::channel();
        tx.send(Msg { entries, done })
            .await
            .map_err(|_| unavailable("the audit writer has stopped"))?;
        match wait.await {
            Ok(result) => result.map_err(unavailable),
            Err(_) => Err(unavailable("the audit writer has stopped")),
        }
    }

    /// Waits until every entry recorded before this call is stored. Every [`Self::record`]
    /// already waits for its own entries; this is for readers of the log.
    pub async fn flush(&self) {
        if let Some(tx) = &self.tx {
            let (done, wait) = oneshot::channel();
            let msg = Msg {
                entries: Vec::new(),
                done,
            };
            if tx.send(msg).await.is_ok() {
                let _ = wait.await;
            }
        }
    }
}

async fn append(store: &dyn Store, entries: &[AuditEntry]) -> Result<(), String> {
    let mut attempt = 1;
    loop {
        match store.append_audit(entries).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < ATTEMPTS => {
                tracing::warn!(error = %e, attempt, "audit append failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
                attempt += 1;
            }
            Err(e) => {
                // The entries' callers answer 503; the log line names what was not recorded
                // (never values: entries hold field names and ids only).
                for entry in entries {
                    tracing::error!(
                        error = %e,
                        action = %entry.action,
                        actor = ?entry.actor,
                        object = ?entry.object_id,
                        "audit append failed; the request is refused"
                    );
                }
                return Err(e.to_string());
            }
        }
    }
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Msg>) {
    let mut msgs = Vec::with_capacity(BATCH);
    let mut entries = Vec::with_capacity(BATCH);
    // Whatever queued while the previous append ran is the next batch.
    while rx.recv_many(&mut msgs, BATCH).await > 0 {
        for _ in 0..GATHER_YIELDS {
            tokio::task::yield_now().await;
            while msgs.len() < BATCH {
                match rx.try_recv() {
                    Ok(m) => msgs.push(m),
                    Err(_) => break,
                }
            }
        }
        let mut waiters = Vec::with_capacity(msgs.len());
        for m in msgs.drain(..) {
            entries.extend(m.entries);
            waiters.push(m.done);
        }
        let result = if entries.is_empty() {
            Ok(())
        } else {
            append(&*store, &entries).await
        };
        entries.clear();
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

/// An audit entry of `actor` (none: an anonymous or operator action) at this moment.
pub(crate) fn audit_entry(
    actor: Option<&Principal>,
    scope: Scope,
    action: &str,
    object: Option<(Option<Kind>, String)>,
    fields: Vec<String>,
    detail: String,
) -> AuditEntry {
    let (object_kind, object_id) = match object {
        Some((k, id)) => (k, Some(id)),
        None => (None, None),
    };
    AuditEntry {
        id: Uuid::now_v7(),
        scope,
        at: now_ms(),
        actor: actor.map(|a| a.id),
        actor_role: actor.map(|a| a.role),
        action: action.to_owned(),
        object_kind,
        object_id,
        fields,
        // Details quote client text (a sign-in name): keep it printable.
        detail: detail.chars().filter(|c| !c.is_control()).collect(),
    }
}
