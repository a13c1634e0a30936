//! What the server counts: every request, by route template, into Prometheus metrics (served
//! at `/metrics`) and into per-operation statistics (the periodic summary, [`crate::report`]).
//!
//! Labels come from bounded sets only — the route template axum matched (never the raw path,
//! which holds ids), a known method, a status code, an operation name built from those and a
//! known kind, an error code of the table — so no client can grow the metrics.
//!
//! The recorder is the server's own, not installed process-wide: two servers in one process
//! (the tests) count apart, and `/metrics` shows this server's requests only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use contextd_proto::{paths, Kind};
use contextd_stats::Stats;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

use crate::error::ErrorCode;
use crate::AppState;

/// Where the metrics are served.
pub const METRICS_PATH: &str = "/metrics";
/// How often histogram samples are folded into their buckets between scrapes.
pub(crate) const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// Upper bounds of the latency histogram buckets, seconds: 0.5 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// The route label of a request no route matched.
const UNMATCHED: &str = "unmatched";

/// The server's counters: the Prometheus recorder behind `/metrics` (cumulative) and the
/// per-operation statistics of the current report interval.
pub struct Telemetry {
    recorder: PrometheusRecorder,
    stats: Arc<Stats>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// A recorder with latency histograms of 0.5 ms to 10 s buckets, and empty statistics.
    pub fn new() -> Self {
        // Refused only for an empty list; then latencies are rendered as summaries.
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_duration_seconds".into()),
                &LATENCY_BUCKETS,
            )
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        metrics::with_local_recorder(&recorder, describe);
        Self {
            recorder,
            stats: Arc::new(Stats::new()),
        }
    }

    /// The per-operation statistics of the current report interval.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Every metric in the Prometheus text format, and the process's CPU time
    /// (`process_cpu_seconds_total`, where the platform tells it): what `contextd bench run`
    /// divides by the operations served to report server CPU per operation.
    pub fn render(&self) -> String {
        let mut text = self.recorder.handle().render();
        if let Some(seconds) = process_cpu_seconds() {
            use std::fmt::Write as _;
            let _ = write!(
                text,
                "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
                 # TYPE process_cpu_seconds_total counter\n\
                 process_cpu_seconds_total {seconds}\n"
            );
        }
        text
    }

    /// Folds recorded latencies into their buckets, so memory stays bounded between scrapes.
    pub(crate) fn upkeep(&self) {
        self.recorder.handle().run_upkeep();
    }

    /// Counts one answered request.
    fn record(&self, request: &Seen, response: &Response, elapsed: Duration) {
        let status = response.status();
        let error = (status.as_u16() >= 400).then(|| error_kind(response));
        self.stats
            .record(&request.operation, elapsed, error.as_deref());
        let seconds = elapsed.as_secs_f64();
        // Shared strings: each label below is a reference count, not a copy.
        let (method, route) = (request.method, &request.route);
        let operation = &request.operation;
        metrics::with_local_recorder(&self.recorder, || {
            metrics::counter!("http_requests_total", "method" => method, "route" => route.clone(), "status" => status.as_str().to_owned())
                .increment(1);
            metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route.clone())
                .record(seconds);
            metrics::counter!("contextd_operations_total", "operation" => operation.clone())
                .increment(1);
            metrics::histogram!("contextd_operation_duration_seconds", "operation" => operation.clone())
                .record(seconds);
            if let Some(kind) = error {
                metrics::counter!("contextd_operation_errors_total", "operation" => operation.clone(), "kind" => kind)
                    .increment(1);
            }
        });
    }
}

/// The HELP lines of every metric.
fn describe() {
    metrics::describe_counter!(
        "http_requests_total",
        "HTTP requests answered, by method, route template and status."
    );
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time from a request's head to its answer, by method and route template."
    );
    metrics::describe_counter!(
        "contextd_operations_total",
        "Operations answered, by name (customer.create, GET /v1/fields, ...)."
    );
    metrics::describe_counter!(
        "contextd_operation_errors_total",
        "Operations answered with an error, by name and error kind (notFound, versionConflict, ...)."
    );
    metrics::describe_histogram!(
        "contextd_operation_duration_seconds",
        metrics::Unit::Seconds,
        "Time from a request's head to its answer, by operation name."
    );
}

/// What a request is, read before it is handled.
struct Seen {
    method: &'static str,
    route: Arc<str>,
    operation: Arc<str>,
}

impl Seen {
    fn of(request: &Request) -> Self {
        let method = method_label(request.method());
        let template = request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str);
        let operation = operation(method, template, request.uri().path());
        Self {
            method,
            route: template.unwrap_or(UNMATCHED).into(),
            operation: operation.into(),
        }
    }
}

/// The middleware that counts every request (added outside the panic handler, so a panic
/// is counted as the 500 it is answered with).
pub(crate) async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let seen = Seen::of(&request);
    let response = next.run(request).await;
    state.telemetry.record(&seen, &response, started.elapsed());
    response
}

/// `GET /metrics`: every metric in the Prometheus text format, without authentication (serve
/// it on an operator listener, `--metrics-listen`, to keep it off the public address).
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = state.telemetry.render();
    let (hits, misses) = state.context.credential_cache_counts();
    use std::fmt::Write as _;
    let _ = write!(
        text,
        "# HELP contextd_credential_cache_total API key and session lookups answered from memory (hit) or read from the store (miss); zero on stores without a change feed.\n\
         # TYPE contextd_credential_cache_total counter\n\
         contextd_credential_cache_total{{result=\"hit\"}} {hits}\n\
         contextd_credential_cache_total{{result=\"miss\"}} {misses}\n"
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// A standard method's name; `OTHER` for any extension method a client may invent.
fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "TRACE" => "TRACE",
        "CONNECT" => "CONNECT",
        _ => "OTHER",
    }
}

/// The operation a request is: `{kind}.{action}` on the object routes (`customer.create`,
/// `activity.get`, `request.search`, `customer.timeline`), as the SDK names them; else
/// `{method} {route template}` (`GET /v1/fields`), or `{method} unmatched`.
fn operation(method: &'static str, template: Option<&str>, path: &str) -> String {
    let Some(template) = template else {
        return format!("{method} {UNMATCHED}");
    };
    let kind = || path.split('/').nth(2).and_then(Kind::from_path);
    let object_action = match (method, template) {
        ("POST", paths::OBJECTS) => kind().map(|k| (k, "create")),
        ("GET", paths::OBJECT) => kind().map(|k| (k, "get")),
        ("PUT", paths::OBJECT) => kind().map(|k| (k, "replace")),
        ("PATCH", paths::OBJECT) => kind().map(|k| (k, "patch")),
        ("DELETE", paths::OBJECT) => kind().map(|k| (k, "delete")),
        ("POST", paths::SEARCH) => kind().map(|k| (k, "search")),
        ("POST", paths::FLUSH) => kind().map(|k| (k, "flush")),
        ("GET", paths::TIMELINE) => Some((Kind::Customer, "timeline")),
        ("POST", paths::ERASE) => Some((Kind::Customer, "erase")),
        ("GET", paths::EXPORT) => Some((Kind::Customer, "export")),
        _ => None,
    };
    match object_action {
        Some((kind, action)) => format!("{}.{action}", kind.as_str()),
        None => format!("{method} {template}"),
    }
}

/// The kind of an error answer: its code in camel case as the SDK names kinds (`notFound`,
/// `versionConflict`, `validation`), or `http{status}` for an answer without one.
fn error_kind(response: &Response) -> String {
    match response.extensions().get::<ErrorCode>() {
        Some(code) => camel_case(code.code()),
        None => format!("http{}", response.status().as_u16()),
    }
}

fn camel_case(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut upper = false;
    for c in code.chars() {
        match c {
            '-' => upper = true,
            c if upper => {
                out.push(c.to_ascii_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_routes_are_named_by_kind_and_action_others_by_method_and_template() {
        let cases = [
            (
                "POST",
                Some(paths::OBJECTS),
                "/v1/customers",
                "customer.create",
            ),
            (
                "GET",
                Some(paths::OBJECT),
                "/v1/activities/0190",
                "activity.get",
            ),
            ("GET", Some(paths::OBJECT), "/v1/pods/0190", "activity.get"),
            (
                "PUT",
                Some(paths::OBJECT),
                "/v1/requests/0190",
                "request.replace",
            ),
            (
                "PATCH",
                Some(paths::OBJECT),
                "/v1/details/0190",
                "detail.patch",
            ),
            (
                "DELETE",
                Some(paths::OBJECT),
                "/v1/customers/0190",
                "customer.delete",
            ),
            (
                "POST",
                Some(paths::SEARCH),
                "/v1/requests/search",
                "request.search",
            ),
            (
                "POST",
                Some(paths::FLUSH),
                "/v1/activities/flush",
                "activity.flush",
            ),
            (
                "GET",
                Some(paths::TIMELINE),
                "/v1/customers/0190/timeline",
                "customer.timeline",
            ),
            (
                "POST",
                Some(paths::ERASE),
                "/v1/customers/0190/erase",
                "customer.erase",
            ),
            (
                "GET",
                Some(paths::EXPORT),
                "/v1/customers/0190/export",
                "customer.export",
            ),
            ("GET", Some(paths::FIELDS), "/v1/fields", "GET /v1/fields"),
            (
                "GET",
                Some(paths::FIELD),
                "/v1/fields/x",
                "GET /v1/fields/{id}",
            ),
            ("GET", Some(METRICS_PATH), "/metrics", "GET /metrics"),
            // An unknown kind is not a name: the template stands in for the raw segment.
            (
                "GET",
                Some(paths::OBJECT),
                "/v1/x'or1=1/0190",
                "GET /v1/{kind}/{id}",
            ),
            // A method the route does not serve.
            (
                "POST",
                Some(paths::OBJECT),
                "/v1/customers/0190",
                "POST /v1/{kind}/{id}",
            ),
            ("GET", None, "/nowhere/at/all", "GET unmatched"),
        ];
        for (method, template, path, expected) in cases {
            assert_eq!(
                operation(method, template, path),
                expected,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn methods_outside_the_standard_set_share_one_label() {
        let invented = Method::from_bytes(b"BREW").expect("a token is a method");
        assert_eq!(method_label(&invented), "OTHER");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
    }

    #[test]
    fn error_codes_become_camel_case_kinds() {
        assert_eq!(camel_case("not-found"), "notFound");
        assert_eq!(camel_case("version-conflict"), "versionConflict");
        assert_eq!(camel_case("validation"), "validation");
        assert_eq!(camel_case("unsupported-media-type"), "unsupportedMediaType");
    }
}

/// Clock ticks per second of `/proc/PID/stat` (`USER_HZ`, 100 on every Linux architecture
/// contextd is built for).
const CLOCK_TICKS: f64 = 100.0;

/// User plus system CPU time of this process, every thread, from `/proc/self/stat`; `None`
/// where there is no such file.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_seconds_of_stat(&stat)
}

/// `utime` + `stime` (fields 14 and 15) of a `/proc/PID/stat` line, in seconds. The command
/// name (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
fn cpu_seconds_of_stat(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / CLOCK_TICKS)
}

#[cfg(test)]
mod cpu_tests {
    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1205 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(super::cpu_seconds_of_stat(stat), Some(3.25));
        assert_eq!(super::cpu_seconds_of_stat("4242 (cut) S 1"), None);
        assert!(super::process_cpu_seconds().is_some_and(|s| s >= 0.0));
    }
}
