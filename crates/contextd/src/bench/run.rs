//! `bench run`: the scenarios, the closed- and open-loop drivers, HDR latency histograms and
//! the results (table, JSON lines, results file).
//!
//! Every scenario is measured twice with the same client loop, concurrency, rate and duration:
//! first against the in-process echo server (the ceiling of HTTP on this machine with this
//! client), then against the server. A response that is not what the scenario expects (a
//! lookup that does not find exactly one customer, a timeline page short of 100 entries, a
//! create that is not a 201) counts as an error: a benchmark of empty answers would lie.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::ValueEnum;
use contextd_proto::{paths, Kind};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::echo::Echo;
use super::state::BenchState;
use super::{data, enum_name, http_client, server_backend, server_cpu, RunArgs};

/// Entries the timeline scenario reads per request.
pub const TIMELINE_PAGE: usize = 100;
/// Highest latency the histograms hold, microseconds (60 s).
const MAX_MICROS: u64 = 60_000_000;

/// What a run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// `POST /v1/activities` (a customer's activity with notes), durable.
    Ingest,
    /// `POST /v1/customers/search` by `Context_Mobile_Phone`, written differently than stored.
    Lookup,
    /// `GET /v1/customers/{id}/timeline?limit=100` of customers with ≥ 100 activities.
    Timeline,
    /// 35 % lookup, 35 % timeline, 30 % ingest.
    Mixed,
}

/// What makes an answer right.
#[derive(Clone, Copy, Debug)]
enum Check {
    Created,
    FoundOne,
    FullPage,
    /// The baseline: any 2xx.
    Any,
}

/// One request to send.
struct Op {
    method: Method,
    path: String,
    body: Option<Vec<u8>>,
    check: Check,
}

/// Makes the requests of a scenario from the state file.
struct Workload {
    scenario: Scenario,
    state: BenchState,
}

impl Workload {
    fn new(scenario: Scenario, state: BenchState) -> anyhow::Result<Self> {
        let needs_timeline = matches!(scenario, Scenario::Timeline);
        if state.customers.is_empty() {
            bail!("the state file lists no customers: run `contextd bench load` first");
        }
        if needs_timeline
            && (state.timeline.is_empty() || state.timeline_len < TIMELINE_PAGE as u64)
        {
            bail!("the timeline scenario needs customers with at least {TIMELINE_PAGE} activities: run `contextd bench load --timeline-customers 16 --timeline-activities 110`");
        }
        Ok(Self { scenario, state })
    }

    fn next(&self, rng: &mut StdRng) -> Op {
        let scenario = match self.scenario {
            Scenario::Mixed => match rng.gen_range(0..100) {
                0..35 => Scenario::Lookup,
                35..70 if self.timeline_ready() => Scenario::Timeline,
                35..70 => Scenario::Lookup,
                _ => Scenario::Ingest,
            },
            s => s,
        };
        let customers = &self.state.customers;
        match scenario {
            Scenario::Ingest => {
                let c = &customers[rng.gen_range(0..customers.len())];
                let body = data::ingest(&c.id, rng.gen());
                Op {
                    method: Method::POST,
                    path: paths::objects(Kind::Activity),
                    body: serde_json::to_vec(&body).ok(),
                    check: Check::Created,
                }
            }
            Scenario::Lookup | Scenario::Mixed => {
                let c = &customers[rng.gen_range(0..customers.len())];
                let phone = data::other_format(&c.mobile, rng.gen_range(0..8));
                let body = data::lookup(&phone);
                Op {
                    method: Method::POST,
                    path: paths::search(Kind::Customer),
                    body: serde_json::to_vec(&body).ok(),
                    check: Check::FoundOne,
                }
            }
            Scenario::Timeline => {
                let id = &self.state.timeline[rng.gen_range(0..self.state.timeline.len())];
                Op {
                    method: Method::GET,
                    path: format!(
                        "{}?limit={TIMELINE_PAGE}",
                        paths::with_id(paths::TIMELINE, id)
                    ),
                    body: None,
                    check: Check::FullPage,
                }
            }
        }
    }

    fn timeline_ready(&self) -> bool {
        !self.state.timeline.is_empty() && self.state.timeline_len >= TIMELINE_PAGE as u64
    }
}

/// Where and how to drive.
#[derive(Clone, Debug)]
struct Drive {
    base: String,
    baseline: bool,
    concurrency: usize,
    rate: Option<u64>,
    warmup: Duration,
    duration: Duration,
}

/// What one measurement saw.
struct Measure {
    ok: u64,
    errors: u64,
    histogram: Histogram<u64>,
    elapsed: Duration,
    first_error: Option<String>,
    /// Objects created (warm-up included).
    created: u64,
}

impl Measure {
    fn ops_per_sec(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn ms(&self, quantile: f64) -> f64 {
        if self.histogram.is_empty() {
            return 0.0;
        }
        self.histogram.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// Microseconds from 1 µs to 60 s at 3 significant digits.
fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).context("cannot make a latency histogram")
}

/// The one member of a search answer ([`contextd_proto::object::SearchResult`]) the check
/// reads: decoding whole objects would spend the load generator's CPU, not the server's.
#[derive(Deserialize)]
struct Total {
    total: u64,
}

/// The timeline page ([`contextd_proto::object::TimelinePage`]) counted, not decoded.
#[derive(Deserialize)]
struct Items {
    items: Vec<serde::de::IgnoredAny>,
}

/// Sends one request; `Ok(())` when the answer is right, else why not.
async fn send(http: &reqwest::Client, base: &str, token: &str, op: Op) -> Result<(), String> {
    let mut request = http
        .request(op.method, format!("{base}{}", op.path))
        .bearer_auth(token);
    if let Some(body) = op.body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    let wrong = |what: &str| {
        format!(
            "{status} {what}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )
    };
    match op.check {
        Check::Any if status.is_success() => Ok(()),
        Check::Created if status == StatusCode::CREATED => Ok(()),
        Check::FoundOne if status == StatusCode::OK => match serde_json::from_slice::<Total>(&body)
        {
            Ok(t) if t.total == 1 => Ok(()),
            Ok(t) => Err(format!("lookup found {} customers, not 1", t.total)),
            Err(_) => Err(wrong("not a search result")),
        },
        Check::FullPage if status == StatusCode::OK => match serde_json::from_slice::<Items>(&body)
        {
            Ok(p) if p.items.len() == TIMELINE_PAGE => Ok(()),
            Ok(p) => Err(format!(
                "timeline page of {} entries, not {TIMELINE_PAGE}",
                p.items.len()
            )),
            Err(_) => Err(wrong("not a timeline page")),
        },
        _ => Err(wrong("unexpected answer")),
    }
}

/// Runs one measurement: workers send the workload to `drive.base` until the end.
async fn measure(
    workload: Arc<Workload>,
    tokens: Arc<Vec<String>>,
    drive: Drive,
) -> anyhow::Result<Measure> {
    // A client of its own per measurement, so that no connection outlives it.
    let http = http_client(drive.concurrency)?;
    let start = Instant::now() + Duration::from_millis(20);
    let from = start + drive.warmup;
    let end = from + drive.duration;
    let arrivals = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..drive.concurrency.max(1) {
        let (http, workload, tokens, drive, arrivals) = (
            http.clone(),
            workload.clone(),
            tokens.clone(),
            drive.clone(),
            arrivals.clone(),
        );
        let mut histogram = histogram()?;
        workers.spawn(async move {
            let token = &tokens[worker % tokens.len()];
            let mut rng = StdRng::seed_from_u64(worker as u64 * 7919 + 1);
            let (mut ok, mut errors, mut first_error, mut created) = (0u64, 0u64, None, 0u64);
            let mut last_done = end;
            tokio::time::sleep_until(start.into()).await;
            loop {
                // Closed loop: now. Open loop: the i-th arrival's scheduled time, and latency
                // counts from then (no coordinated omission when the server falls behind).
                let scheduled = match drive.rate {
                    None => Instant::now(),
                    Some(rate) => {
                        let i = arrivals.fetch_add(1, Ordering::Relaxed);
                        let at = start + Duration::from_secs_f64(i as f64 / rate.max(1) as f64);
                        if at >= end {
                            break;
                        }
                        if at > Instant::now() {
                            tokio::time::sleep_until(at.into()).await;
                        }
                        at
                    }
                };
                if scheduled >= end {
                    break;
                }
                let mut op = workload.next(&mut rng);
                if drive.baseline {
                    op.check = Check::Any;
                }
                let creates = matches!(op.check, Check::Created);
                let result = send(&http, &drive.base, token, op).await;
                if creates && result.is_ok() {
                    created += 1;
                }
                if scheduled < from {
                    continue;
                }
                let done = Instant::now();
                last_done = last_done.max(done);
                let micros = u64::try_from((done - scheduled).as_micros()).unwrap_or(MAX_MICROS);
                histogram.saturating_record(micros.clamp(1, MAX_MICROS));
                match result {
                    Ok(()) => ok += 1,
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (ok, errors, histogram, first_error, last_done, created)
        });
    }
    let mut total = Measure {
        ok: 0,
        errors: 0,
        histogram: histogram()?,
        elapsed: drive.duration,
        first_error: None,
        created: 0,
    };
    while let Some(joined) = workers.join_next().await {
        let (ok, errors, h, first_error, last_done, created) =
            joined.context("a bench worker failed")?;
        total.created += created;
        // Open loop: a server that falls behind finishes the window's arrivals late, and its
        // throughput is what it finished over the time it took.
        if drive.rate.is_some() {
            total.elapsed = total.elapsed.max(last_done.saturating_duration_since(from));
        }
        total.ok += ok;
        total.errors += errors;
        total
            .histogram
            .add(&h)
            .context("cannot merge latency histograms")?;
        if total.first_error.is_none() {
            total.first_error = first_error;
        }
    }
    Ok(total)
}

/// One result line: the keys the README's "Benchmarks" lists first, then context.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunResult {
    pub scenario: String,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub errors: u64,
    pub baseline_ops_per_sec: f64,
    pub ratio: f64,
    /// The server process's CPU time per operation it answered during the run (warm-up
    /// included), in µs, from its `/metrics`; `null` when they can't be read.
    pub server_cpu_us_per_op: Option<f64>,
    /// `closed` (workers) or `open` (fixed arrival rate).
    pub mode: String,
    pub concurrency: usize,
    /// Offered load of an open-loop run, requests/s.
    pub rate: Option<u64>,
    pub duration_s: f64,
    pub ok: u64,
    pub max_ms: f64,
    pub baseline_p50_ms: f64,
    pub baseline_p99_ms: f64,
    /// `--label`, or the server's storage backend.
    pub label: String,
    /// Objects the bench loads put on the server (the dataset size).
    pub objects: u64,
    pub customers: u64,
    /// RFC 3339 time of the run.
    pub at: String,
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// `bench run`.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let url = args.client.url.trim_end_matches('/').to_owned();
    let mut state = BenchState::read(&args.client.state)?.with_context(|| {
        format!(
            "no state file {}: run `contextd bench load` first",
            args.client.state.display()
        )
    })?;
    if state.url != url {
        eprintln!(
            "bench: note: {} was made for {}, not {url}",
            args.client.state.display(),
            state.url
        );
    }
    let tokens: Vec<String> = if state.tokens.is_empty() {
        vec![args
            .client
            .token
            .clone()
            .context("the state file has no keys: give --token")?]
    } else {
        state.tokens.clone()
    };
    let probe = http_client(1)?;
    let label = match &args.label {
        Some(l) => l.clone(),
        None => server_backend(&probe, &url, &tokens[0]).await?,
    };
    let metrics_url = args
        .metrics_url
        .clone()
        .unwrap_or_else(|| format!("{url}/metrics"));
    let tokens = Arc::new(tokens);
    let rates: Vec<Option<u64>> = if args.rate.is_empty() {
        vec![None]
    } else {
        args.rate.iter().map(|r| Some(*r)).collect()
    };
    let mut results_file = match &args.results {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open {}", path.display()))?,
        ),
        None => None,
    };
    if !args.json {
        println!(
            "{:<9} {:>6} {:>8} {:>10} {:>8} {:>8} {:>8} {:>7} {:>12} {:>6} {:>11}",
            "scenario",
            "mode",
            "load",
            "ops/s",
            "p50 ms",
            "p99 ms",
            "p999 ms",
            "errors",
            "echo ops/s",
            "ratio",
            "server µs/op"
        );
    }
    for scenario in &args.scenario {
        let workload = Arc::new(Workload::new(*scenario, state.clone())?);
        for rate in &rates {
            let drive = Drive {
                base: url.clone(),
                baseline: false,
                concurrency: args.concurrency.max(1),
                rate: *rate,
                warmup: args.warmup,
                duration: args.duration,
            };
            let baseline = if args.no_baseline {
                None
            } else {
                let echo = Echo::start(2)?;
                let m = measure(
                    workload.clone(),
                    tokens.clone(),
                    Drive {
                        base: echo.url.clone(),
                        baseline: true,
                        ..drive.clone()
                    },
                )
                .await?;
                drop(echo);
                Some(m)
            };
            let objects_before = state.objects;
            let cpu_before = server_cpu::read(&probe, &metrics_url).await;
            let m = measure(workload.clone(), tokens.clone(), drive).await?;
            let cpu_after = server_cpu::read(&probe, &metrics_url).await;
            let server_cpu_us_per_op = cpu_before
                .zip(cpu_after)
                .and_then(|(b, a)| server_cpu::per_operation(b, a))
                .map(|us| round(us, 1));
            if m.created > 0 {
                // Ingested objects grow the dataset: later runs report the size they ran on.
                state.objects += m.created;
                state.write(&args.client.state)?;
            }
            let baseline_ops = baseline.as_ref().map_or(0.0, Measure::ops_per_sec);
            let result = RunResult {
                scenario: enum_name(scenario),
                ops_per_sec: round(m.ops_per_sec(), 1),
                p50_ms: round(m.ms(0.5), 3),
                p99_ms: round(m.ms(0.99), 3),
                p999_ms: round(m.ms(0.999), 3),
                errors: m.errors,
                baseline_ops_per_sec: round(baseline_ops, 1),
                ratio: if baseline_ops > 0.0 {
                    round(m.ops_per_sec() / baseline_ops, 4)
                } else {
                    0.0
                },
                server_cpu_us_per_op,
                mode: if rate.is_some() { "open" } else { "closed" }.into(),
                concurrency: args.concurrency.max(1),
                rate: *rate,
                duration_s: args.duration.as_secs_f64(),
                ok: m.ok,
                max_ms: round(m.histogram.max() as f64 / 1000.0, 3),
                baseline_p50_ms: baseline.as_ref().map_or(0.0, |b| round(b.ms(0.5), 3)),
                baseline_p99_ms: baseline.as_ref().map_or(0.0, |b| round(b.ms(0.99), 3)),
                label: label.clone(),
                objects: objects_before,
                customers: state.customers_total,
                at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            };
            if let Some(e) = &m.first_error {
                eprintln!(
                    "bench: {}: {} errors; the first: {e}",
                    result.scenario, m.errors
                );
            }
            if let Some(e) = baseline.as_ref().and_then(|b| b.first_error.as_ref()) {
                eprintln!(
                    "bench: {} baseline: errors; the first: {e}",
                    result.scenario
                );
            }
            let line = serde_json::to_string(&result)?;
            if let Some(f) = results_file.as_mut() {
                writeln!(f, "{line}").context("cannot append to the results file")?;
            }
            if args.json {
                println!("{line}");
            } else {
                let load = match rate {
                    Some(r) => format!("{r}/s"),
                    None => format!("c={}", result.concurrency),
                };
                let cpu = result
                    .server_cpu_us_per_op
                    .map_or_else(|| "-".to_owned(), |us| format!("{us:.0}"));
                println!(
                    "{:<9} {:>6} {:>8} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>12.0} {:>6.2} {:>11}",
                    result.scenario,
                    result.mode,
                    load,
                    result.ops_per_sec,
                    result.p50_ms,
                    result.p99_ms,
                    result.p999_ms,
                    result.errors,
                    result.baseline_ops_per_sec,
                    result.ratio,
                    cpu
                );
            }
        }
    }
    Ok(())
}
