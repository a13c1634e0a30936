//! Per-operation statistics: count, errors by kind, and min/mean/max/p99 latency, in bounded
//! memory (one HDR histogram per name, 2 significant digits).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

/// Longest latency told apart, microseconds (an hour); longer ones count as an hour.
const MAX_MICROS: u64 = 3_600_000_000;

/// The counters of one name (`customer.create`, or `customer.create.error.timeout`).
struct Counter {
    count: u64,
    errors: u64,
    min_us: u64,
    max_us: u64,
    sum_us: u128,
    histogram: Option<Histogram<u64>>,
}

impl Counter {
    fn new() -> Self {
        Self {
            count: 0,
            errors: 0,
            min_us: u64::MAX,
            max_us: 0,
            sum_us: 0,
            // The bounds are constants that `new_with_bounds` accepts; `None` only if that
            // ever changed, and then p99 falls back to the maximum.
            histogram: Histogram::new_with_bounds(1, MAX_MICROS, 2).ok(),
        }
    }

    fn record(&mut self, micros: u64, failed: bool) {
        let micros = micros.clamp(1, MAX_MICROS);
        self.count += 1;
        if failed {
            self.errors += 1;
        }
        self.min_us = self.min_us.min(micros);
        self.max_us = self.max_us.max(micros);
        self.sum_us += u128::from(micros);
        if let Some(h) = self.histogram.as_mut() {
            h.saturating_record(micros);
        }
    }

    fn summary(&self) -> Value {
        if self.count == 0 {
            return json!({"count": 0, "errors": 0, "minMs": 0.0, "meanMs": 0.0, "maxMs": 0.0, "p99Ms": 0.0});
        }
        let mean_us = self.sum_us as f64 / self.count as f64;
        let p99_us = match &self.histogram {
            // The histogram's bucket may round past the true maximum.
            Some(h) => h.value_at_quantile(0.99).min(self.max_us),
            None => self.max_us,
        };
        json!({
            "count": self.count,
            "errors": self.errors,
            "minMs": ms(self.min_us as f64),
            "meanMs": ms(mean_us),
            "maxMs": ms(self.max_us as f64),
            "p99Ms": ms(p99_us as f64),
        })
    }
}

/// Microseconds as milliseconds, to the microsecond.
fn ms(micros: f64) -> f64 {
    (micros).round() / 1000.0
}

/// The statistics of one process part (the server, one SDK client), by operation name.
///
/// ```
/// use std::time::Duration;
/// use contextd_stats::Stats;
///
/// let stats = Stats::new();
/// stats.record("customer.create", Duration::from_millis(3), None);
/// stats.record("customer.get", Duration::from_millis(1), Some("notFound"));
/// let summary = stats.take_summary();
/// assert_eq!(summary["customer.create"]["count"], 1);
/// assert_eq!(summary["customer.get.error.notFound"]["count"], 1);
/// assert_eq!(stats.summary(), serde_json::json!({}));
/// ```
#[derive(Default)]
pub struct Stats {
    counters: Mutex<BTreeMap<String, Counter>>,
}

impl Stats {
    /// No counter yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Counter>> {
        // A panic while holding the lock leaves counters that are still counters.
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one call of `op` that took `elapsed`; a failure of `error_kind` is also counted
    /// under `<op>.error.<error_kind>`.
    pub fn record(&self, op: &str, elapsed: Duration, error_kind: Option<&str>) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let mut counters = self.lock();
        // The name is copied only the first time it is seen: this runs on every request.
        match counters.get_mut(op) {
            Some(counter) => counter.record(micros, error_kind.is_some()),
            None => {
                let mut counter = Counter::new();
                counter.record(micros, error_kind.is_some());
                counters.insert(op.to_owned(), counter);
            }
        }
        if let Some(kind) = error_kind {
            counters
                .entry(format!("{op}.error.{kind}"))
                .or_insert_with(Counter::new)
                .record(micros, true);
        }
    }

    /// One JSON object: name → `{count, errors, minMs, meanMs, maxMs, p99Ms}`. Names are
    /// operations and, for failures, `<operation>.error.<kind>` with the same members.
    pub fn summary(&self) -> Value {
        summarize(&self.lock())
    }

    /// The summary, and every counter forgotten in the same step: what a reporting interval
    /// hands over, without losing a call made between reading and resetting.
    pub fn take_summary(&self) -> Value {
        let counters = std::mem::take(&mut *self.lock());
        summarize(&counters)
    }

    /// Forgets every counter.
    pub fn reset(&self) {
        self.lock().clear();
    }
}

fn summarize(counters: &BTreeMap<String, Counter>) -> Value {
    let map: Map<String, Value> = counters
        .iter()
        .map(|(name, c)| (name.clone(), c.summary()))
        .collect();
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn summary_math() {
        let stats = Stats::default();
        for i in 1..=100 {
            stats.record("customer.create", ms(i), None);
        }
        let s = stats.summary();
        let c = &s["customer.create"];
        assert_eq!(c["count"], 100);
        assert_eq!(c["errors"], 0);
        assert_eq!(c["minMs"], 1.0);
        assert_eq!(c["maxMs"], 100.0);
        assert_eq!(c["meanMs"], 50.5);
        let p99 = c["p99Ms"].as_f64().unwrap();
        assert!((98.0..=100.0).contains(&p99), "{p99}");
    }

    #[test]
    fn errors_count_under_the_operation_and_their_kind() {
        let stats = Stats::default();
        stats.record("activity.search", ms(2), None);
        stats.record("activity.search", ms(4), Some("notFound"));
        stats.record("activity.search", ms(6), Some("notFound"));
        stats.record("activity.search", ms(8), Some("timeout"));
        let s = stats.summary();
        assert_eq!(s["activity.search"]["count"], 4);
        assert_eq!(s["activity.search"]["errors"], 3);
        assert_eq!(s["activity.search"]["meanMs"], 5.0);
        let nf = &s["activity.search.error.notFound"];
        assert_eq!(nf["count"], 2);
        assert_eq!(nf["errors"], 2);
        assert_eq!(nf["minMs"], 4.0);
        assert_eq!(nf["maxMs"], 6.0);
        assert_eq!(s["activity.search.error.timeout"]["count"], 1);
        assert_eq!(s.as_object().unwrap().len(), 3);
    }

    #[test]
    fn sub_millisecond_latency_keeps_microseconds() {
        let stats = Stats::default();
        stats.record("ping", Duration::from_micros(250), None);
        assert_eq!(stats.summary()["ping"]["minMs"], 0.25);
    }

    #[test]
    fn reset_forgets_everything() {
        let stats = Stats::default();
        stats.record("ping", ms(1), None);
        stats.reset();
        assert_eq!(stats.summary(), json!({}));
        stats.record("ping", ms(3), None);
        assert_eq!(stats.summary()["ping"]["count"], 1);
        assert_eq!(stats.summary()["ping"]["minMs"], 3.0);
    }

    #[test]
    fn take_summary_hands_over_the_interval_and_starts_a_new_one() {
        let stats = Stats::default();
        stats.record("customer.create", ms(2), None);
        stats.record("customer.create", ms(4), Some("validation"));
        let first = stats.take_summary();
        assert_eq!(first["customer.create"]["count"], 2);
        assert_eq!(first["customer.create"]["errors"], 1);
        assert_eq!(first["customer.create.error.validation"]["count"], 1);
        assert_eq!(stats.summary(), json!({}));
        stats.record("customer.create", ms(8), None);
        let second = stats.take_summary();
        assert_eq!(second["customer.create"]["count"], 1);
        assert_eq!(second["customer.create"]["minMs"], 8.0);
        assert!(second.get("customer.create.error.validation").is_none());
    }

    #[test]
    fn huge_latencies_saturate() {
        let stats = Stats::default();
        stats.record("status.get", Duration::from_secs(10_000), None);
        assert_eq!(stats.summary()["status.get"]["maxMs"], 3_600_000.0);
    }
}
