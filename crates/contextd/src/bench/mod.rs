//! `contextd bench`: fills a running server with realistic data (`load`), drives it over HTTP
//! and measures it against a bare HTTP echo server started in the same process (`run`), and
//! draws the results (`plot`). See BENCHMARKS.md and the README's "Benchmarks".
//!
//! The load generator is an ordinary client of the public API: it never opens the database,
//! so every figure includes authentication, validation, encryption, blind indexing, the audit
//! log and a durable commit, exactly as a production client sees them.

mod data;
mod echo;
mod load;
mod plot;
mod run;
mod server_cpu;
mod state;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand, ValueEnum};

pub use run::Scenario;

/// `contextd bench …`.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Fill a running server with customers, requests, activities of every media type and
    /// details, concurrently; records what it made in the state file for `bench run`.
    Load(LoadArgs),
    /// Drive a running server with one or more scenarios; each is preceded by the same client
    /// loop against a bare HTTP echo server in this process (the ceiling).
    Run(RunArgs),
    /// Draw SVG plots from saved run results (`bench run --results FILE`).
    Plot(PlotArgs),
}

/// How to reach the server.
#[derive(Args, Clone, Debug)]
pub struct ClientArgs {
    /// Base URL of the server.
    #[arg(long, env = "CONTEXTD_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// A lab admin token (printed by `contextd serve`, or by `contextd org create NAME --json`).
    #[arg(long, env = "CONTEXTD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// State file: what `load` made (ids, phone numbers, the benchmark's API keys).
    #[arg(long, default_value = "bench-state.json")]
    pub state: PathBuf,
}

/// `bench load`.
#[derive(Args, Clone, Debug)]
pub struct LoadArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Customers to create.
    #[arg(long, default_value_t = 1000)]
    pub customers: u64,
    /// Activities per customer (media types in turn; about half of them inside a request).
    #[arg(long, default_value_t = 10)]
    pub activities_per_customer: u64,
    /// Requests (cases) per customer.
    #[arg(long, default_value_t = 1)]
    pub requests_per_customer: u64,
    /// Details (a comment on each request, feedback on the first activity) per customer.
    #[arg(long, default_value_t = 1)]
    pub details_per_customer: u64,
    /// Customers with a long journey, for the timeline scenario.
    #[arg(long, default_value_t = 16)]
    pub timeline_customers: u64,
    /// Activities of each of those customers (the timeline scenario reads 100).
    #[arg(long, default_value_t = 110)]
    pub timeline_activities: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Customers made together through the batch endpoints (`POST /v1/{kind}/batch`: the
    /// customers, then their requests, activities and details, each up to 1,000 objects a
    /// request); 0 makes every object with a create of its own.
    #[arg(long, default_value_t = 100)]
    pub batch: u64,
    /// Machine API keys to create and spread load over: the server limits each credential
    /// (20,000/s by default), so a benchmark past that needs several (or a server started
    /// with `--rate-limit 0`).
    #[arg(long, default_value_t = 8)]
    pub keys: usize,
    /// Customers remembered in the state file for lookups (evenly spread over those made).
    #[arg(long, default_value_t = 20_000)]
    pub sample: u64,
}

/// `bench run`.
#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Scenarios to run, in order (comma-separated or repeated).
    #[arg(long, value_enum, value_delimiter = ',', required = true)]
    pub scenario: Vec<Scenario>,
    /// Measured time of each scenario (and of its baseline).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Unmeasured warm-up before each measurement.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Closed loop: workers, each sending its next request when the last one is answered.
    /// Open loop (`--rate`): most requests in flight.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Open loop: fixed arrival rates, requests per second (comma-separated: one run each).
    /// Latency counts from the scheduled start, so queueing is not hidden.
    #[arg(long, value_delimiter = ',')]
    pub rate: Vec<u64>,
    /// Print one JSON object per scenario (per rate) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Append each result as a JSON line to this file (input of `bench plot`).
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// A label stored with each result (e.g. `sqlite`, `postgres`); default: the server's
    /// storage backend.
    #[arg(long)]
    pub label: Option<String>,
    /// Skip the echo-server baseline (its fields are then 0).
    #[arg(long)]
    pub no_baseline: bool,
    /// The server's `/metrics`, read around each measurement for its CPU per operation
    /// (default: URL/metrics; give the `--metrics-listen` address when the server uses one).
    #[arg(long, value_name = "URL")]
    pub metrics_url: Option<String>,
}

/// `bench plot`.
#[derive(Args, Clone, Debug)]
pub struct PlotArgs {
    /// JSON-lines results written by `bench run --results`.
    #[arg(long, default_value = "bench-results.jsonl")]
    pub results: PathBuf,
    /// Directory for `latency-vs-load.svg` and `lookup-vs-size.svg`.
    #[arg(long, default_value = ".")]
    pub out_dir: PathBuf,
}

/// Runs a bench command.
pub async fn main(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Load(args) => load::load(args).await,
        BenchCommand::Run(args) => run::run(args).await,
        BenchCommand::Plot(args) => plot::plot(&args),
    }
}

/// The HTTP client of the load generator: HTTP/1.1 keep-alive, a pool as large as the number
/// of requests in flight, no proxy.
pub(crate) fn http_client(in_flight: usize) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(in_flight.max(1))
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot build the HTTP client")
}

/// Which storage backend a server runs (from `/v1/status`).
pub(crate) async fn server_backend(
    http: &reqwest::Client,
    url: &str,
    token: &str,
) -> anyhow::Result<String> {
    let response = http
        .get(format!("{url}{}", contextd_proto::paths::STATUS))
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    if !response.status().is_success() {
        bail!(
            "{url}/v1/status answered {}: is the token right?",
            response.status()
        );
    }
    let status: contextd_proto::system::Status =
        response.json().await.context("bad /v1/status answer")?;
    Ok(status
        .dependencies
        .into_iter()
        .find(|d| d.name == "storage")
        .map_or_else(|| "unknown".to_owned(), |d| d.backend))
}

/// Value of a `ValueEnum` as typed on the command line.
pub(crate) fn enum_name<T: ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_owned())
        .unwrap_or_default()
}
