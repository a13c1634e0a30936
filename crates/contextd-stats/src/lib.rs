//! Operation statistics and the wall-clock-aligned report schedule, shared by the server and
//! the SDK (DESIGN §7, "Status").
//!
//! [`Stats`] counts each operation (`customer.create`): count, errors by kind, min/mean/max/p99
//! latency, in bounded memory. [`report_every`] runs a report on the wall clock's boundaries
//! of an interval (30 minutes: :00 and :30, [`next_boundary`]); [`log_status`] and
//! [`log_summary`] write the two lines a report is made of, each under a fixed target an
//! operator can grep for ([`STATUS_TAG`], [`STATS_TAG`]). A summary hands the interval's
//! statistics over and starts the next interval empty, as the original product did.
//!
//! This crate knows nothing of HTTP or storage, and a log line it writes carries operation
//! names, counts, latencies and error kinds only: never a value, a token or a URL's query.

mod schedule;
mod stats;

pub use schedule::{
    next_boundary, report_every, Clock, ManualClock, SystemClock, DEFAULT_INTERVAL, MAX_INTERVAL,
    MIN_INTERVAL,
};
pub use stats::Stats;

use serde_json::Value;

/// The log target of the periodic status line (`grep contextd.status`).
pub const STATUS_TAG: &str = "contextd.status";
/// The log target of the periodic statistics summary (`grep contextd.stats`).
pub const STATS_TAG: &str = "contextd.stats";

/// Logs one status line under [`STATUS_TAG`]: who reports (`server`, `sdk`), the overall
/// status (`ok`, `degraded`, `down`, …) and the details as one JSON value.
pub fn log_status(source: &str, overall: &str, detail: &Value) {
    tracing::info!(target: STATUS_TAG, source, status = overall, detail = %detail, "status");
}

/// Logs the interval's statistics as one line under [`STATS_TAG`] and starts the next
/// interval empty; returns what it logged.
pub fn log_summary(source: &str, stats: &Stats) -> Value {
    let summary = stats.take_summary();
    tracing::info!(target: STATS_TAG, source, summary = %summary, "statistics summary");
    summary
}
