//! Audit-log upkeep: once at start and then daily, this month's and next month's segments are
//! made ready (so that no append has to create one), and the segments (months) of the audit log
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
use contextd_core::store::Month;

/// How often the audit log's segments are looked at.
pub const AUDIT_RETENTION_EVERY: Duration = Duration::from_secs(24 * 60 * 60);

/// Runs at start, then every [`AUDIT_RETENTION_EVERY`]; a `keep` of zero keeps the audit log
/// forever (nothing is dropped on this instance).
pub async fn prune_audit(context: Arc<Context>, keep: Duration) {
    // Zero, or beyond any date: kept forever.
    let keep = chrono::Duration::from_std(keep)
        .ok()
        .filter(|k| !k.is_zero());
    if keep.is_none() {
        tracing::info!("audit retention off on this instance: the audit log is kept forever");
    }
    let mut tick = tokio::time::interval(AUDIT_RETENTION_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        prepare_segments(&context).await;
        let Some(keep) = keep else { continue };
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

/// Makes this month's and next month's segments ready, so that no append creates one.
async fn prepare_segments(context: &Context) {
    let this = Month::of(chrono::Utc::now());
    for month in [this, this.next()] {
        if let Err(e) = context.store().prepare_audit_segment(month).await {
            tracing::warn!(error = %e, %month,
                "audit segment not prepared; the first append of the month will make it");
        }
    }
}
