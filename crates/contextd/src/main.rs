//! The `contextd` binary: the operator commands (`serve`, `org`, `keys rotate`), `bench`,
//! and the client commands of a running server (`customers`, `timeline`, `fields`, `status`,
//! `users`, …; see [`client`]).

mod audit_cmd;
mod backup;
mod bench;
mod client;
mod config;
mod startup;

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use contextd_server::ServerConfig;
use tracing_subscriber::EnvFilter;

use crate::startup::StorageArgs;

/// mimalloc instead of the system allocator: a request allocates and frees many small buffers
/// across threads, where glibc's allocator spent ~15 % of the server's CPU (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "contextd",
    version,
    about = "Omnichannel customer context service",
    after_long_help = client::exit::help()
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server. Every setting is a flag, an environment variable or a key of the TOML
    /// file --config names (file, then environment, then flags; see `contextd config check`).
    Serve(ServeArgs),
    /// The server's configuration: `check` validates it and prints it, secrets redacted.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage organizations.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Keys: `rotate` adds an encryption key version (an operator command on the database);
    /// `list`, `create` and `revoke` manage the API keys of a running server over HTTP.
    #[command(after_long_help = client::exit::help())]
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Copy the embedded store (data, audit log, key store) into a new directory while the
    /// server keeps serving; never the master key (docs/deploy.md, "Backup and restore").
    Backup(backup::BackupArgs),
    /// Put a backup into an empty data directory (needs the master key of the backup).
    Restore(backup::RestoreArgs),
    /// Apply pending schema migrations and exit (`serve` does it at start too); safe with
    /// several instances starting at once.
    Migrate {
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Load, benchmark and plot a running server over HTTP (BENCHMARKS.md).
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    #[command(flatten)]
    Client(client::ClientCommand),
}

/// The settings of `contextd serve`.
#[derive(Clone, Debug, clap::Args)]
struct ServeArgs {
    /// A TOML file of settings: any flag of `serve` as a key (`body_limit = 2097152`,
    /// `listen = "0.0.0.0:8080"`); the environment and flags override it (env
    /// CONTEXTD_SERVE_CONFIG).
    #[arg(long = "config", env = "CONTEXTD_SERVE_CONFIG", value_name = "PATH")]
    config: Option<std::path::PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "CONTEXTD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The URL clients reach this server at (for connectionData); default http://LISTEN.
    #[arg(long, env = "CONTEXTD_PUBLIC_URL")]
    public_url: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM: the server's certificate first, then its
    /// intermediates); needs --tls-key. Both files are read again on SIGHUP.
    #[arg(long, env = "CONTEXTD_TLS_CERT", value_name = "PATH")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, RSA or EC); needs --tls-cert.
    #[arg(long, env = "CONTEXTD_TLS_KEY", value_name = "PATH")]
    tls_key: Option<std::path::PathBuf>,
    /// How long the audit log's monthly segments are kept after their month ends (then
    /// dropped whole; archive them first with `contextd audit archive`); 0: forever.
    #[arg(long, env = "CONTEXTD_AUDIT_RETENTION", default_value = "400days", value_parser = humantime::parse_duration)]
    audit_retention: std::time::Duration,
    /// How often objects expired under the organizations' retention rules (GET/PUT
    /// /v1/retention) are deleted; 0 turns the job off on this instance.
    #[arg(long, env = "CONTEXTD_RETENTION_INTERVAL", default_value = "1h", value_parser = humantime::parse_duration)]
    retention_interval: std::time::Duration,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    observe: ObserveArgs,
    #[command(flatten)]
    events: EventArgs,
    #[command(flatten)]
    storage: StorageArgs,
}

/// `contextd config …`.
#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration `serve` would run with (file, environment, flags) and print
    /// it, each setting with where it came from; secrets redacted.
    Check(ServeArgs),
}

/// Abuse limits of the server.
#[derive(Clone, Debug, clap::Args)]
struct LimitArgs {
    /// Largest request body, bytes (413 above).
    #[arg(long, env = "CONTEXTD_BODY_LIMIT", default_value_t = 1024 * 1024)]
    body_limit: usize,
    /// Largest body of a batch (POST /v1/{kind}/batch, up to 1,000 objects; what
    /// `contextd import` sends), bytes (413 above).
    #[arg(long, env = "CONTEXTD_BATCH_BODY_LIMIT", default_value_t = contextd_server::DEFAULT_BATCH_BODY_LIMIT)]
    batch_body_limit: usize,
    /// Largest total size of request headers, bytes (431 above).
    #[arg(long, env = "CONTEXTD_HEADER_LIMIT", default_value_t = 16 * 1024)]
    header_limit: usize,
    /// Deepest JSON nesting accepted in a body.
    #[arg(long, env = "CONTEXTD_JSON_DEPTH", default_value_t = 32)]
    json_depth: usize,
    /// Requests per second per credential (0: unlimited; 429 with Retry-After above).
    #[arg(long, env = "CONTEXTD_RATE_LIMIT", default_value_t = 20_000)]
    rate_limit: u32,
    /// Burst allowance of the per-credential rate limit.
    #[arg(long, env = "CONTEXTD_RATE_BURST", default_value_t = 40_000)]
    rate_burst: u32,
    /// Sign-in attempts per minute per account (0: unlimited).
    #[arg(long, env = "CONTEXTD_SIGNIN_PER_MINUTE", default_value_t = 10)]
    sign_in_per_minute: u32,
    /// Password checks run at once (default: the number of CPUs); a sign-in that finds none
    /// free within a second is answered 429 with Retry-After.
    #[arg(long, env = "CONTEXTD_SIGNIN_CONCURRENCY", value_parser = at_least_one())]
    sign_in_concurrency: Option<usize>,
    /// Time a client has to send a whole request head before its connection is closed.
    #[arg(long, env = "CONTEXTD_HEADER_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    header_timeout: std::time::Duration,
    /// Time a client has to send a whole request body after its head (408 above).
    #[arg(long, env = "CONTEXTD_BODY_TIMEOUT", default_value = "30s", value_parser = positive_duration)]
    body_timeout: std::time::Duration,
    /// Time a kept-alive connection may sit idle between requests before it is closed.
    #[arg(long, env = "CONTEXTD_IDLE_TIMEOUT", default_value = "60s", value_parser = positive_duration)]
    idle_timeout: std::time::Duration,
    /// Connections served at once; further ones wait in the listen backlog until one ends.
    #[arg(long, env = "CONTEXTD_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = at_least_one())]
    max_connections: usize,
    /// Mark the session cookie Secure (default: on when serving HTTPS, off on plain HTTP); set
    /// it true behind a proxy that terminates TLS. `--cookie-secure` alone means true.
    #[arg(long, env = "CONTEXTD_COOKIE_SECURE", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new(), value_name = "BOOL")]
    cookie_secure: Option<bool>,
    /// How long an approval page of the browser registration (/register, /deregister) stays
    /// valid.
    #[arg(long, env = "CONTEXTD_REGISTRATION_APPROVAL_TTL", default_value = "10m", value_parser = positive_duration)]
    registration_approval_ttl: std::time::Duration,
}

/// Metrics and the periodic status and statistics log lines of the server.
#[derive(Clone, Debug, clap::Args)]
struct ObserveArgs {
    /// Serve /metrics on this address, an operator listener of its own, instead of on --listen.
    #[arg(long, env = "CONTEXTD_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// How often the status line (contextd.status) and the statistics summary
    /// (contextd.stats) are logged, at the wall clock's whole multiples of it since midnight
    /// UTC (30m: at :00 and :30); 1s to 24h.
    #[arg(long, env = "CONTEXTD_STATS_INTERVAL", default_value = "30m", value_parser = stats_interval)]
    stats_interval: std::time::Duration,
}

impl ObserveArgs {
    fn apply(&self, config: ServerConfig) -> ServerConfig {
        ServerConfig {
            metrics_listen: self.metrics_listen,
            stats_interval: self.stats_interval,
            ..config
        }
    }
}

/// The event channels: the outbox's retention, Server-Sent Events, webhooks, NATS JetStream.
#[derive(Clone, Debug, clap::Args)]
struct EventArgs {
    /// How long events (and webhook delivery attempts) are kept; a client, webhook or NATS
    /// cursor further behind than this misses what was pruned.
    #[arg(long, env = "CONTEXTD_EVENT_RETENTION", default_value = "7d", value_parser = positive_duration)]
    event_retention: std::time::Duration,
    /// Events buffered per event-stream subscriber; one further behind is told to resume.
    #[arg(long, env = "CONTEXTD_SSE_BUFFER", default_value_t = 1024, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    sse_buffer: usize,
    /// Interval of keep-alive comments on an idle event stream.
    #[arg(long, env = "CONTEXTD_SSE_KEEP_ALIVE", default_value = "15s", value_parser = positive_duration)]
    sse_keep_alive: std::time::Duration,
    /// Accept webhook URLs on loopback, private and link-local addresses (for tests and
    /// closed networks; refused by default, at registration and at delivery).
    #[arg(long, env = "CONTEXTD_ALLOW_PRIVATE_WEBHOOKS")]
    allow_private_webhooks: bool,
    /// How long a failing webhook delivery is retried (exponential backoff) before it is
    /// dead-lettered.
    #[arg(long, env = "CONTEXTD_WEBHOOK_RETRY_FOR", default_value = "24h", value_parser = positive_duration)]
    webhook_retry_for: std::time::Duration,
    /// Time allowed for one webhook delivery attempt.
    #[arg(long, env = "CONTEXTD_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    webhook_timeout: std::time::Duration,
    /// Publish every event to this NATS server's JetStream (nats://HOST:PORT).
    #[arg(long, env = "CONTEXTD_EVENTS_NATS")]
    events_nats: Option<String>,
    /// The JetStream stream events go to, created when missing (subjects contextd.>).
    #[arg(long, env = "CONTEXTD_EVENTS_NATS_STREAM", default_value = "contextd")]
    events_nats_stream: String,
}

impl EventArgs {
    fn config(&self) -> contextd_server::events::EventsConfig {
        contextd_server::events::EventsConfig {
            retention: self.event_retention,
            sse_buffer: self.sse_buffer,
            sse_keep_alive: self.sse_keep_alive,
            allow_private_webhooks: self.allow_private_webhooks,
            webhook_retry_for: self.webhook_retry_for,
            webhook_timeout: self.webhook_timeout,
            nats_url: self.events_nats.clone(),
            nats_stream: self.events_nats_stream.clone(),
        }
    }
}

/// A report interval such as `30m` or `1h`, within what the schedule honours.
fn stats_interval(text: &str) -> Result<std::time::Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    let range = contextd_stats::MIN_INTERVAL..=contextd_stats::MAX_INTERVAL;
    if range.contains(&interval) {
        Ok(interval)
    } else {
        Err("must be from 1s to 24h".into())
    }
}

fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

/// A duration such as `10s` or `2min`; zero would close every connection at once.
fn positive_duration(text: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

impl LimitArgs {
    fn server_config(&self) -> ServerConfig {
        ServerConfig {
            body_limit: self.body_limit,
            batch_body_limit: self.batch_body_limit,
            header_limit: self.header_limit,
            json_depth_limit: self.json_depth,
            rate_limit_per_second: self.rate_limit,
            rate_limit_burst: self.rate_burst,
            sign_in_per_minute: self.sign_in_per_minute,
            sign_in_concurrency: self
                .sign_in_concurrency
                .unwrap_or_else(contextd_server::default_sign_in_concurrency),
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            cookie_secure: self.cookie_secure,
            registration_approval_ttl: self.registration_approval_ttl,
            ..ServerConfig::default()
        }
    }
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Operator command, on the database (not over HTTP): add a data-encryption key version
    /// to an organization's partition; a running server re-encrypts older values in the
    /// background (progress in /v1/status).
    Rotate {
        /// Organization name.
        #[arg(long, default_value = "default")]
        org: String,
        /// `lab` or `production`.
        #[arg(long)]
        partition: contextd_core::Partition,
        #[command(flatten)]
        storage: StorageArgs,
    },
    #[command(flatten)]
    Api(client::people::ApiKeyCommand),
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Create an organization with admin tokens for both partitions.
    Create {
        /// Unique name.
        name: String,
        /// Print exactly one JSON object.
        #[arg(long)]
        json: bool,
        /// The URL clients reach the server at (for connectionData).
        #[arg(
            long,
            env = "CONTEXTD_PUBLIC_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        public_url: String,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Bring your own key: re-wrap an organization's keys under its own key-encryption key.
    /// Afterwards the server needs `--org-kek NAME=PATH` to read that organization's data.
    SetKek {
        /// Organization name.
        name: String,
        /// File holding the organization's key (64 hex digits or base64 of 32 bytes).
        #[arg(long)]
        kek_file: std::path::PathBuf,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

/// Logs to standard error at `default` level unless `CONTEXTD_LOG` says otherwise.
fn init_logging(default: &str) {
    let filter =
        EnvFilter::try_from_env("CONTEXTD_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("CONTEXTD_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = match config::parse_cli() {
        Ok(cli) => cli,
        Err(e) => {
            // A settings file that can't be used: like a bad flag, status 2.
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    // A client command's output is its result; only warnings may join its error line.
    let is_client = matches!(
        cli.command,
        Command::Client(_)
            | Command::Keys {
                command: KeysCommand::Api(_)
            }
    );
    init_logging(if is_client { "warn" } else { "info" });
    let done = match cli.command {
        Command::Client(client::ClientCommand::Audit {
            operator: Some(command),
            client: c,
            ..
        }) => return audit_cmd::run(command, c.json()).await,
        Command::Client(command) => return Ok(client::run(command).await),
        Command::Keys {
            command: KeysCommand::Api(command),
        } => return Ok(client::exit::finish(client::people::keys(command).await)),
        Command::Keys {
            command:
                KeysCommand::Rotate {
                    org,
                    partition,
                    storage,
                },
        } => rotate(&org, partition, &storage).await,
        Command::Bench { command } => bench::main(command).await,
        Command::Serve(args) => {
            let mut config = args.observe.apply(args.limits.server_config());
            config.events = args.events.config();
            config.tls = load_tls(args.tls_cert, args.tls_key)?;
            config.retention_interval = args.retention_interval;
            config.audit_retention = args.audit_retention;
            serve(args.listen, args.public_url, config, args.storage).await
        }
        Command::Config {
            command: ConfigCommand::Check(args),
        } => load_tls(args.tls_cert, args.tls_key).and_then(|_| config::check()),
        Command::Org { command } => org(command).await,
        Command::Backup(args) => backup::backup(&args),
        Command::Restore(args) => backup::restore(&args).await,
        Command::Migrate { storage } => backup::migrate(&storage).await,
    };
    // An operator command's failure is reported by `main`'s error, with its causes.
    done.map(|()| ExitCode::SUCCESS)
}

/// `contextd keys rotate`: on the database, not over HTTP.
async fn rotate(
    org: &str,
    partition: contextd_core::Partition,
    storage: &StorageArgs,
) -> anyhow::Result<()> {
    let context = startup::open_context(storage).await?;
    let org_record = context
        .store()
        .org_by_name(org)
        .await?
        .with_context(|| format!("no organization named '{org}'"))?;
    let scope = contextd_core::Scope {
        org: org_record.id,
        partition,
    };
    let version = context.rotate_data_key_as_operator(scope).await?;
    println!("{org}/{partition}: data key version {version}; running servers re-encrypt older values in the background");
    Ok(())
}

/// `contextd org …`.
async fn org(command: OrgCommand) -> anyhow::Result<()> {
    match command {
        OrgCommand::SetKek {
            name,
            kek_file,
            storage,
        } => {
            let context = startup::open_context(&storage).await?;
            let org = context
                .store()
                .org_by_name(&name)
                .await?
                .with_context(|| format!("no organization named '{name}'"))?;
            let kek = startup::read_key_file(&kek_file)?;
            context.keyring().adopt_org_kek(org.id, &kek).await?;
            println!("{name}: keys re-wrapped under the organization's own key; start servers with --org-kek {name}=PATH");
            Ok(())
        }
        OrgCommand::Create {
            name,
            json,
            public_url,
            storage,
        } => {
            let context = startup::open_context(&storage).await?;
            let org = context
                .create_org(&name, &public_url)
                .await
                .context("cannot create the organization")?;
            if json {
                let out = serde_json::json!({
                    "orgId": org.org_id,
                    "lab": {"adminToken": org.lab_admin_token},
                    "production": {"adminToken": org.production_admin_token},
                    "connectionData": org.connection_data,
                });
                println!("{out}");
            } else {
                println!("created organization {} ({})", org.name, org.org_id);
                println!("lab admin token:        {}", org.lab_admin_token);
                println!("production admin token: {}", org.production_admin_token);
                println!("connectionData:         {}", org.connection_data);
            }
            Ok(())
        }
    }
}

/// Prints the first start's tokens, once. Best-effort: a closed stdout (a terminal gone, a
/// supervisor that discards output) must not stop the service, so a failed write is logged
/// (without the secrets) instead of panicking as `println!` would.
fn print_first_start_banner(
    org: &contextd_core::service::OrgBootstrap,
    admin_password: Option<&str>,
    url: &str,
) {
    use std::io::Write;
    let sign_in = match admin_password {
        Some(p) => format!(
            "user \"{FIRST_ADMIN}\", password {p} (both partitions; change it in the console)"
        ),
        None => "create users with `contextd users create` first".to_owned(),
    };
    let banner = format!(
        "contextd: created organization \"default\" ({}); these secrets are shown once:\n  \
         lab admin token:        {}\n  \
         production admin token: {}\n  \
         connectionData:         {}\n  \
         API:                    {url}/v1 (OpenAPI document: {url}/v1/openapi.json)\n  \
         agent desktop:          {url}/desktop\n  \
         admin console:          {url}/admin\n  \
         sign in:                {sign_in}\n",
        org.org_id, org.lab_admin_token, org.production_admin_token, org.connection_data
    );
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(banner.as_bytes()).and_then(|()| out.flush()) {
        tracing::warn!(
            error = %e,
            "the first start's admin tokens could not be printed (stdout is closed); \
             create new ones with `contextd keys create` or `contextd org create`"
        );
    }
}

/// The name of the admin user the first start creates in both partitions.
const FIRST_ADMIN: &str = "admin";

/// Creates the user `admin` in both partitions of a new organization, with one random
/// password, so that people can sign in to the desktop and the console at once. Best-effort:
/// on failure the tokens still let an operator create users.
async fn first_admin_users(
    context: &contextd_core::service::Context,
    org: &contextd_core::service::OrgBootstrap,
) -> Option<String> {
    let password = contextd_core::auth::random_secret();
    for token in [&org.lab_admin_token, &org.production_admin_token] {
        let created = async {
            let admin = context.authenticate(token).await?;
            let new = contextd_proto::access::NewUser {
                name: FIRST_ADMIN.into(),
                role: contextd_core::auth::Role::Admin,
                password: password.clone(),
            };
            context.create_user(&admin, new).await
        };
        if let Err(e) = created.await {
            tracing::warn!(error = %e, "the first admin user could not be created");
            return None;
        }
    }
    Some(password)
}

async fn serve(
    listen: SocketAddr,
    public_url: Option<String>,
    config: ServerConfig,
    storage: StorageArgs,
) -> anyhow::Result<()> {
    let context = startup::open_context(&storage).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr()?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let url = public_url.unwrap_or_else(|| format!("{scheme}://{local}"));
    if context.is_empty().await? {
        match context.create_org("default", &url).await {
            Ok(org) => {
                let password = first_admin_users(&context, &org).await;
                print_first_start_banner(&org, password.as_deref(), &url);
            }
            // Another instance on the same database created it first.
            Err(contextd_core::CoreError::AlreadyExists(_)) => {}
            Err(e) => return Err(e).context("cannot create the default organization"),
        }
    }
    tracing::info!(%local, backend = context.store().backend(), tls = config.tls.is_some(), "contextd listening");
    let config = ServerConfig {
        public_url: Some(url),
        ..config
    };
    let shutdown = shutdown_signal()?;
    contextd_server::serve(listener, context, config, shutdown).await?;
    tracing::info!("contextd stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is called, before
/// the server answers anything: a SIGTERM sent as soon as it answers drains it, rather than
/// finding the default action (death by signal) still in place.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let (mut term, mut interrupt) = {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        (term, interrupt)
    };
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => {},
            _ = interrupt.recv() => {},
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!("shutdown signal received; draining in-flight requests");
    })
}

/// The certificate and key of --tls-cert/--tls-key, loaded and checked: both or neither (the
/// check is here, not in clap, so that it sees values from the settings file too).
fn load_tls(
    cert: Option<std::path::PathBuf>,
    key: Option<std::path::PathBuf>,
) -> anyhow::Result<Option<contextd_server::tls::Tls>> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(contextd_server::tls::Tls::load(
            contextd_server::tls::TlsSettings { cert, key },
        )?)),
        _ => anyhow::bail!(
            "--tls-cert and --tls-key go together (flags, CONTEXTD_TLS_CERT/CONTEXTD_TLS_KEY, or \
             tls_cert/tls_key in the settings file): give both or neither"
        ),
    }
}
