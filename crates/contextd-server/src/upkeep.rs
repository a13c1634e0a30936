//! Audit-log retention: once at start and then daily, the segments (months) of the audit log
//! whose whole month ended more than `audit_retention` ago are dropped whole
//! (`contextd_core::audit_admin::prune`); the chains stay verifiable from the segments kept.
//! Archive them first with `contextd audit archive` if they must outlive retention.
//!
//! Several instances sharing a database may all run it: a segment another instance dropped
//! first is simply found gone.

use std::sync::Arc;
use std::time::Duration;

use contextd_core::audit_admin;
use contextd_core::service::Context;

/// How often the audit log's segments are looked at.
pub const AUDIT_RETENTION_EVERY: Duration = Duration::from_secs(24 * 60 * 60);

/// Runs at start, then every [`AUDIT_RETENTION_EVERY`]; a `keep` of zero keeps the audit log
/// forever (nothing is dropped on this instance).
pub async fn prune_audit(context: Arc<Context>, keep: Duration) {
    if keep.is_zero() {
        tracing::info!("audit retention off on this instance (audit retention 0): kept forever");
        return;
    }
    let Ok(keep) = chrono::Duration::from_std(keep) else {
        tracing::info!("audit retention beyond any date: kept forever");
        return;
    };
    let mut tick = tokio::time::interval(AUDIT_RETENTION_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match audit_admin::prune(&**context.store(), chrono::Utc::now(), keep).await {
            Ok(dropped) => {
                for month in dropped {
                    tracing::info!(%month, "audit segment past retention dropped");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "audit retention failed; will retry at the next run")
            }
        }
    }
}
