//! The server's CPU per operation, read from its `/metrics` around a measurement: the growth
//! of `process_cpu_seconds_total` over the growth of `contextd_operations_total` (every
//! operation the server answered meanwhile, warm-up included; `/metrics` itself is not one).
//! The headline figure of a run on a noisy machine: it does not depend on how much CPU the
//! load generator and other processes took.

/// One reading of a server's counters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    /// CPU seconds the server process has used.
    pub cpu_seconds: f64,
    /// Operations it has answered.
    pub operations: f64,
}

/// Reads the counters at `url` (a `/metrics` endpoint); `None` when it can't be reached or
/// does not expose them (another server, or a platform without `/proc`).
pub async fn read(http: &reqwest::Client, url: &str) -> Option<Reading> {
    let text = http.get(url).send().await.ok()?.text().await.ok()?;
    parse(&text)
}

/// The counters in a Prometheus text exposition.
fn parse(text: &str) -> Option<Reading> {
    let mut cpu_seconds = None;
    let mut operations = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        if name == "process_cpu_seconds_total" {
            cpu_seconds = Some(value);
        } else if name.starts_with("contextd_operations_total{") {
            operations += value;
        }
    }
    Some(Reading {
        cpu_seconds: cpu_seconds?,
        operations,
    })
}

/// Server CPU microseconds per operation between two readings, if any operation was served.
pub fn per_operation(before: Reading, after: Reading) -> Option<f64> {
    let operations = after.operations - before.operations;
    (operations > 0.0).then(|| (after.cpu_seconds - before.cpu_seconds) * 1e6 / operations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_summed_over_operations_and_divided() {
        let text = "# HELP contextd_operations_total Operations answered.\n\
            # TYPE contextd_operations_total counter\n\
            contextd_operations_total{operation=\"customer.search\"} 100\n\
            contextd_operations_total{operation=\"GET /v1/fields\"} 50\n\
            process_cpu_seconds_total 2.5\n";
        let before = parse(text).expect("reading");
        assert_eq!(
            before,
            Reading {
                cpu_seconds: 2.5,
                operations: 150.0
            }
        );
        let after = Reading {
            cpu_seconds: 3.0,
            operations: 1150.0,
        };
        assert_eq!(per_operation(before, after), Some(500.0));
        assert_eq!(per_operation(after, after), None);
        assert!(parse("contextd_operations_total{operation=\"x\"} 1\n").is_none());
    }
}
