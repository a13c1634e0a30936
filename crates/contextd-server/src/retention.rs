//! The retention job: every `retention_interval` it deletes, in every organization and both
//! partitions, the objects the organization's retention rules (`/v1/retention`) let go
//! (`Context::apply_retention`, which audits each page and records an `object.deleted` event
//! per object), and logs what it did: counts per org and partition, never an id or a value.
//!
//! Several instances sharing a database may all run it: a page another instance deleted
//! first is simply found gone.

use std::sync::Arc;
use std::time::Duration;

use contextd_core::service::Context;

/// Runs the job at start and then every `every` (zero: never, on this instance).
pub async fn run(context: Arc<Context>, every: Duration) {
    if every.is_zero() {
        tracing::info!("retention job off on this instance (retention interval 0)");
        return;
    }
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        apply(&context).await;
    }
}

/// One run, with its summary logged.
async fn apply(context: &Context) {
    match context.apply_retention(chrono::Utc::now()).await {
        Ok(report) => {
            for (scope, deleted) in &report.deleted {
                tracing::info!(
                    org = %scope.org,
                    partition = scope.partition.as_str(),
                    deleted,
                    "retention deleted expired objects"
                );
            }
            for (scope, error) in &report.failed {
                tracing::warn!(
                    org = %scope.org,
                    partition = scope.partition.as_str(),
                    error = %error,
                    "retention stopped in a partition; will retry at the next run"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "retention run failed; will retry at the next run"),
    }
}
