//! Observability: `/metrics` in the Prometheus text format (labelled by route template, never
//! by raw path), its operator listener, and the periodic status and statistics log lines.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use contextd_core::service::ContextConfig;
use contextd_proto::{paths, Kind, ObjectId};
use contextd_server::report::Reporter;
use contextd_server::ServerConfig;
use contextd_stats::{ManualClock, Stats, STATS_TAG, STATUS_TAG};
use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tracing::instrument::WithSubscriber;

use crate::support::{new_customer, not_found, TestServer};

type Exposition = MetricsExposition<PrometheusType, PrometheusValue>;

/// `/metrics` fetched and parsed as Prometheus would, strictly: every line, every family.
async fn scrape(http: &reqwest::Client, base: &str) -> Exposition {
    let response = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scraped");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.expect("a text body");
    match parse_prometheus(&text) {
        Ok(exposition) => exposition,
        Err(e) => panic!("not the Prometheus text format ({e:?}):\n{text}"),
    }
}

/// Every sample of a family: its labels and value.
fn samples<'a>(
    exposition: &'a Exposition,
    family: &str,
) -> Vec<(HashMap<String, String>, &'a PrometheusValue)> {
    let Some(family) = exposition.families.get(family) else {
        return Vec::new();
    };
    family
        .iter_samples()
        .map(|sample| {
            let labels = sample.get_labelset().expect("a label set");
            let labels = labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            (labels, &sample.value)
        })
        .collect()
}

/// The one sample of `family` whose labels include `labels`, if any.
fn find<'a>(
    exposition: &'a Exposition,
    family: &str,
    labels: &[(&str, &str)],
) -> Option<&'a PrometheusValue> {
    let found: Vec<_> = samples(exposition, family)
        .into_iter()
        .filter(|(have, _)| {
            labels
                .iter()
                .all(|(k, v)| have.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(found.len() <= 1, "{family} {labels:?} matches {found:?}");
    found.first().map(|(_, value)| *value)
}

/// The value of a counter (0 when it has no sample yet).
fn counter(exposition: &Exposition, family: &str, labels: &[(&str, &str)]) -> f64 {
    match find(exposition, family, labels) {
        Some(PrometheusValue::Counter(c)) => c.value.as_f64(),
        Some(other) => panic!("{family} is not a counter: {other:?}"),
        None => 0.0,
    }
}

/// The number of observations of a histogram.
fn observations(exposition: &Exposition, family: &str, labels: &[(&str, &str)]) -> u64 {
    match find(exposition, family, labels) {
        Some(PrometheusValue::Histogram(h)) => {
            let infinite = h.buckets.iter().find(|b| b.upper_bound.is_infinite());
            let in_buckets = infinite.map(|b| b.count.as_f64());
            assert_eq!(in_buckets, h.count.map(|n| n as f64), "+Inf bucket = count");
            h.count.unwrap_or(0)
        }
        other => panic!("no histogram {family} {labels:?}: {other:?}"),
    }
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_label_routes_by_template_never_by_id() {
    let s = TestServer::start().await;
    let c = s.client(s.lab());
    let ada = new_customer(&c, json!({"Context_First_Name": "Ada"})).await;
    let bob = new_customer(&c, json!({"Context_First_Name": "Bob"})).await;
    c.get(Kind::Customer, ada).await.expect("read");
    c.get(Kind::Customer, bob).await.expect("read");
    let missing = ObjectId::new();
    not_found(c.get(Kind::Customer, missing).await);
    c.timeline(ada, &Default::default())
        .await
        .expect("timeline");
    let nowhere = format!("/nowhere/{}", ObjectId::new());
    s.call(Method::GET, &nowhere, None, None).await.expect(404);

    let samples = scrape(&s.http, &s.url).await;
    let object = paths::OBJECT;
    let get = [("method", "GET"), ("route", object)];
    assert_eq!(
        counter(
            &samples,
            "http_requests_total",
            &[get[0], get[1], ("status", "200")]
        ),
        2.0
    );
    assert_eq!(
        counter(
            &samples,
            "http_requests_total",
            &[get[0], get[1], ("status", "404")]
        ),
        1.0
    );
    let created = [
        ("method", "POST"),
        ("route", paths::OBJECTS),
        ("status", "201"),
    ];
    assert_eq!(counter(&samples, "http_requests_total", &created), 2.0);
    let unmatched = [("method", "GET"), ("route", "unmatched"), ("status", "404")];
    assert_eq!(counter(&samples, "http_requests_total", &unmatched), 1.0);
    assert_eq!(
        observations(&samples, "http_request_duration_seconds", &get),
        3
    );

    // The per-operation counters of the statistics summary, under the SDK's names.
    let ops = "contextd_operations_total";
    assert_eq!(
        counter(&samples, ops, &[("operation", "customer.create")]),
        2.0
    );
    assert_eq!(
        counter(&samples, ops, &[("operation", "customer.get")]),
        3.0
    );
    assert_eq!(
        counter(&samples, ops, &[("operation", "customer.timeline")]),
        1.0
    );
    assert_eq!(
        counter(&samples, ops, &[("operation", "GET unmatched")]),
        1.0
    );
    // The process's CPU time, which `contextd bench run` divides by the operations.
    let cpu = counter(&samples, "process_cpu_seconds_total", &[]);
    assert!(cpu > 0.0, "process_cpu_seconds_total {cpu}");
    // SQLite has no credential feed: every request reads its key, nothing is counted.
    let cache = "contextd_credential_cache_total";
    assert!(
        find(&samples, cache, &[("result", "hit")]).is_some(),
        "{cache} is exported"
    );
    assert_eq!(counter(&samples, cache, &[("result", "hit")]), 0.0);
    assert_eq!(counter(&samples, cache, &[("result", "miss")]), 0.0);
    let errors = "contextd_operation_errors_total";
    let not_found_kind = [("operation", "customer.get"), ("kind", "notFound")];
    assert_eq!(counter(&samples, errors, &not_found_kind), 1.0);
    let timing = [("operation", "customer.get")];
    assert_eq!(
        observations(&samples, "contextd_operation_duration_seconds", &timing),
        3
    );

    // Labels come from templates and names only: never an id or a raw path.
    let templates: HashSet<&str> = paths::ALL
        .iter()
        .copied()
        .chain(["/metrics", "unmatched"])
        .collect();
    let mut routes = 0;
    for family in samples.families.keys() {
        for (labels, _) in self::samples(&samples, family) {
            if let Some(route) = labels.get("route") {
                routes += 1;
                assert!(
                    templates.contains(route.as_str()),
                    "route label {route:?} is not a template"
                );
            }
            for value in labels.values() {
                for id in [ada.to_string(), bob.to_string(), missing.to_string()] {
                    assert!(!value.contains(&id), "an id in {family} {labels:?}");
                }
                assert!(
                    !value.contains("nowhere"),
                    "a raw path in {family} {labels:?}"
                );
            }
        }
    }
    assert!(routes >= 8, "the route labels were read");

    // Counts grow, and stay cumulative.
    new_customer(&c, json!({"Context_First_Name": "Cy"})).await;
    let later = scrape(&s.http, &s.url).await;
    assert_eq!(counter(&later, "http_requests_total", &created), 3.0);
    assert_eq!(
        counter(&later, ops, &[("operation", "customer.create")]),
        3.0
    );
    let scrapes = [("method", "GET"), ("route", "/metrics"), ("status", "200")];
    assert_eq!(counter(&later, "http_requests_total", &scrapes), 1.0);
    s.stop().await;
}

#[tokio::test]
async fn an_operator_listener_serves_metrics_and_the_main_listener_then_does_not() {
    let operator = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let operator_url = format!("http://{}", operator.local_addr().expect("addr"));
    let s = TestServer::start_on(
        ContextConfig::default(),
        ServerConfig::default(),
        Some(operator),
    )
    .await;
    s.call(Method::GET, paths::PING, None, None)
        .await
        .expect(200);
    s.call(Method::GET, "/metrics", None, None)
        .await
        .expect(404);

    let samples = scrape(&s.http, &operator_url).await;
    let pings = [("method", "GET"), ("route", paths::PING), ("status", "200")];
    assert_eq!(counter(&samples, "http_requests_total", &pings), 1.0);
    let refused = [("method", "GET"), ("route", "unmatched"), ("status", "404")];
    assert_eq!(counter(&samples, "http_requests_total", &refused), 1.0);

    // The operator listener serves nothing else.
    let api = s
        .http
        .get(format!("{operator_url}{}", paths::PING))
        .send()
        .await
        .expect("sent");
    assert_eq!(api.status(), StatusCode::NOT_FOUND);
    s.stop().await;
}

/// Log lines written as JSON into memory, one per event.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
        let out = self.clone();
        tracing_subscriber::fmt()
            .json()
            .with_writer(move || out.clone())
            .finish()
    }

    /// Every line so far: (target, fields).
    fn lines(&self) -> Vec<(String, Value)> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|line| {
                let event: Value = serde_json::from_str(line).expect("a JSON log line");
                (
                    event["target"].as_str().unwrap().to_owned(),
                    event["fields"].clone(),
                )
            })
            .collect()
    }
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("an RFC 3339 time")
}

#[tokio::test]
async fn a_status_line_and_a_statistics_summary_are_logged_on_the_half_hour_then_the_interval_starts_again(
) {
    let s = TestServer::start().await;
    let stats = Arc::new(Stats::new());
    stats.record("customer.create", Duration::from_millis(3), None);
    stats.record("customer.get", Duration::from_millis(1), Some("notFound"));
    let started = Instant::now() - Duration::from_secs(90);
    let reporter = Reporter::new(s.context.clone(), stats.clone(), started);
    let clock = Arc::new(ManualClock::new(at("2026-03-01T10:17:12Z")));
    let log = Captured::default();
    let task = tokio::spawn(
        reporter
            .run(clock.clone(), Duration::from_secs(30 * 60))
            .with_subscriber(log.subscriber()),
    );

    assert_eq!(clock.sleeper().await, at("2026-03-01T10:30:00Z"));
    assert!(log.lines().is_empty(), "nothing before 10:30");
    clock.set(at("2026-03-01T10:30:00Z"));
    // Asleep until 11:00: the 10:30 report is done.
    assert_eq!(clock.sleeper().await, at("2026-03-01T11:00:00Z"));
    let lines = log.lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let (target, status) = &lines[0];
    assert_eq!(target, STATUS_TAG);
    assert_eq!(status["source"], "server");
    assert_eq!(status["status"], "ok");
    let detail: Value = serde_json::from_str(status["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["version"], env!("CARGO_PKG_VERSION"));
    assert!(detail["uptimeSeconds"].as_u64().unwrap() >= 90);
    let dependencies = detail["dependencies"].as_array().unwrap();
    let names: Vec<_> = dependencies
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["storage", "keyStore"]);
    assert!(dependencies
        .iter()
        .all(|d| d["reachable"] == true && d["latencyMs"].is_number()));
    let (target, summary) = &lines[1];
    assert_eq!(target, STATS_TAG);
    let summary: Value = serde_json::from_str(summary["summary"].as_str().unwrap()).unwrap();
    assert_eq!(summary["customer.create"]["count"], 1);
    assert_eq!(summary["customer.get"]["errors"], 1);
    assert_eq!(summary["customer.get.error.notFound"]["count"], 1);
    assert_eq!(
        stats.summary(),
        json!({}),
        "the summary starts a new interval"
    );

    // The next interval holds only what happened in it.
    stats.record("activity.create", Duration::from_millis(2), None);
    clock.set(at("2026-03-01T11:00:00Z"));
    assert_eq!(clock.sleeper().await, at("2026-03-01T11:30:00Z"));
    let lines = log.lines();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[2].0, STATUS_TAG);
    assert_eq!(lines[3].0, STATS_TAG);
    let summary: Value = serde_json::from_str(lines[3].1["summary"].as_str().unwrap()).unwrap();
    assert_eq!(
        summary,
        json!({"activity.create": summary["activity.create"].clone()})
    );
    assert_eq!(summary["activity.create"]["count"], 1);
    task.abort();
    s.stop().await;
}
