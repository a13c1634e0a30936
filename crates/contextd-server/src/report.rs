//! The periodic report (DESIGN §7, "Status"): every interval, on the wall clock's boundaries
//! (30 minutes: :00 and :30), one status line under `contextd.status` and one statistics
//! summary under `contextd.stats`, after which the interval's statistics start again empty.
//! The Prometheus counters of `/metrics` are not reset: they stay cumulative.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contextd_core::service::Context;
use contextd_stats::{report_every, Clock, Stats};
use serde_json::json;

use crate::events::nats::Link;
use crate::routes::system::{health, VERSION};

/// What the server reports: its dependencies' health, version and uptime, and the
/// statistics of the interval.
pub struct Reporter {
    context: Arc<Context>,
    stats: Arc<Stats>,
    started: Instant,
    nats: Option<Arc<Link>>,
}

impl Reporter {
    /// Reports on `context`'s dependencies and the operations counted in `stats`, with the
    /// uptime counted from `started`.
    pub fn new(context: Arc<Context>, stats: Arc<Stats>, started: Instant) -> Self {
        Self {
            context,
            stats,
            started,
            nats: None,
        }
    }

    /// Reports on the NATS JetStream publisher's connection too, when there is one.
    pub fn with_nats(mut self, nats: Option<Arc<Link>>) -> Self {
        self.nats = nats;
        self
    }

    /// Logs the status line (`source="server"`, the overall status; in `detail`: each
    /// dependency with its reachability and latency, the version, the uptime) and the
    /// statistics summary, and starts a new interval.
    pub async fn report(&self) {
        let health = health(&self.context, self.nats.as_deref()).await;
        let detail = json!({
            "dependencies": health.dependencies,
            "version": VERSION,
            "uptimeSeconds": self.started.elapsed().as_secs(),
        });
        contextd_stats::log_status("server", health.status, &detail);
        contextd_stats::log_summary("server", &self.stats);
    }

    /// Reports at every boundary of `interval` on `clock`, for as long as it is polled.
    pub async fn run<C: Clock>(self, clock: C, interval: Duration) {
        let this = &self;
        report_every(clock, interval, move |_| async move {
            this.report().await;
            ControlFlow::Continue(())
        })
        .await;
    }
}
