//! The `contextd` binary: `serve`, `org`, and (later) client and bench commands.

mod startup;

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use contextd_server::ServerConfig;
use tracing_subscriber::EnvFilter;

use crate::startup::StorageArgs;

#[derive(Parser)]
#[command(
    name = "contextd",
    version,
    about = "Omnichannel customer context service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "CONTEXTD_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The URL clients reach this server at (for connectionData); default http://LISTEN.
        #[arg(long, env = "CONTEXTD_PUBLIC_URL")]
        public_url: Option<String>,
        /// Largest request body, bytes.
        #[arg(long, env = "CONTEXTD_BODY_LIMIT", default_value_t = 1024 * 1024)]
        body_limit: usize,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Manage organizations.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
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
}

fn init_logging() {
    let filter = EnvFilter::try_from_env("CONTEXTD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
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
async fn main() -> anyhow::Result<()> {
    init_logging();
    match Cli::parse().command {
        Command::Serve {
            listen,
            public_url,
            body_limit,
            storage,
        } => serve(listen, public_url, body_limit, storage).await,
        Command::Org {
            command:
                OrgCommand::Create {
                    name,
                    json,
                    public_url,
                    storage,
                },
        } => {
            let context = startup::open_context(&storage)?;
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

async fn serve(
    listen: SocketAddr,
    public_url: Option<String>,
    body_limit: usize,
    storage: StorageArgs,
) -> anyhow::Result<()> {
    let context = startup::open_context(&storage)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr()?;
    let url = public_url.unwrap_or_else(|| format!("http://{local}"));
    if context.is_empty().await? {
        match context.create_org("default", &url).await {
            Ok(org) => {
                println!(
                    "contextd: created organization \"default\" ({}); these tokens are shown once:",
                    org.org_id
                );
                println!("  lab admin token:        {}", org.lab_admin_token);
                println!("  production admin token: {}", org.production_admin_token);
                println!("  connectionData:         {}", org.connection_data);
                println!(
                    "  API:                    {url}/v1 (OpenAPI document: {url}/v1/openapi.json)"
                );
                println!("  agent desktop:          {url}/desktop");
                println!("  admin console:          {url}/admin");
            }
            // Another instance on the same database created it first.
            Err(contextd_core::CoreError::Conflict(_)) => {}
            Err(e) => return Err(e).context("cannot create the default organization"),
        }
    }
    tracing::info!(%local, backend = context.store().backend(), "contextd listening");
    let config = ServerConfig {
        body_limit,
        ..ServerConfig::default()
    };
    contextd_server::serve(listener, context, config, shutdown_signal()).await?;
    tracing::info!("contextd stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; draining in-flight requests");
}
