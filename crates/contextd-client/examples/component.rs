//! A sample component: it serves the registration resource at
//! `/unifiedconfig/config/contextservice`, keeps its connectionData in a file, and once
//! registered talks to contextd with it.
//!
//! ```text
//! cargo run -p contextd-client --example component -- --listen 127.0.0.1:8090 --state ./component.connectiondata
//! curl 'http://127.0.0.1:8090/unifiedconfig/config/contextservice?callbackUrl=http://127.0.0.1:8090/done'
//! ```
//!
//! Following the registrationUrl, an administrator approves the component; the service
//! redirects the browser to `callbackUrl?connectionData=…`, and the component's page PUTs that
//! value to the resource. Here, do it by hand:
//!
//! ```text
//! curl -X PUT -H 'Content-Type: application/json' -d '{"connectionData":"…"}' \
//!     http://127.0.0.1:8090/unifiedconfig/config/contextservice
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Router;
use clap::Parser;
use contextd_client::proto::connectors::AppType;
use contextd_client::registration::{FileStore, Registration, ServiceValidator, DEFAULT_REF_URL};
use contextd_client::{Client, Settings};

/// A sample component exposing the contextd registration resource.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// File keeping the component's connectionData (created on registration, mode 0600).
    #[arg(long, value_name = "FILE")]
    state: PathBuf,
    /// The contextd service to register with.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    service_url: String,
    /// The kind of component: voice, desktop, chat, email or custom.
    #[arg(long, value_name = "TYPE", default_value = "custom")]
    app_type: AppType,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();

    let registration = Registration::new(
        FileStore::new(&args.state),
        ServiceValidator::new(Settings::default()),
    )
    .service_url(&args.service_url)?
    .app_type(args.app_type);

    // Once registered (now, or later through the resource), say who the connectionData is.
    let mut changes = registration.subscribe().await?;
    tokio::spawn(async move {
        loop {
            let current = changes.borrow_and_update().clone();
            match current {
                Some(data) => introduce(&data).await,
                None => tracing::info!("not registered with contextd"),
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    });

    let app = Router::new().nest(DEFAULT_REF_URL, registration.router());
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    println!("registration resource: http://{addr}{DEFAULT_REF_URL}");
    println!("connectionData file:   {}", args.state.display());
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Builds an SDK client from the connectionData and logs `whoami` once.
async fn introduce(connection_data: &str) {
    let client = match Client::from_connection_data(connection_data, Settings::default()) {
        Ok(client) => client,
        Err(e) => {
            tracing::warn!("registered, but the connectionData can't be used: {e}");
            return;
        }
    };
    match client.whoami().await {
        Ok(me) => tracing::info!(
            service = client.base_url(),
            id = %me.id,
            role = ?me.role,
            partition = ?me.partition,
            org = %me.org_id,
            "registered with contextd"
        ),
        Err(e) => tracing::warn!(
            service = client.base_url(),
            "registered, but whoami failed: {e}"
        ),
    }
}
