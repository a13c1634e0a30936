//! `contextd connectors list|create|rotate|revoke`: the components (IVR, agent desktop, chat and
//! email servers, custom apps) that reach the server with a connectionData, through the SDK.
//! Listing needs an admin token; creating, rotating and revoking need a production admin
//! token, because a connector carries production credentials. A connectionData is printed
//! only by `create` and `rotate`, this once.

use std::time::Duration;

use clap::Subcommand;
use contextd_client::proto::connectors::{
    AppType, ConnectorCreated, ConnectorState, ConnectorView, NewConnector, RotateConnector,
};
use serde_json::json;
use uuid::Uuid;

use super::output;
use super::ClientArgs;

/// `contextd connectors …`.
#[derive(Subcommand)]
pub enum ConnectorCommand {
    /// List the organization's connectors, with their state (an admin token of either
    /// partition); never their secrets.
    List,
    /// Create a connector (a production admin token); its connectionData is printed this once.
    Create {
        /// Display name (1–100 characters).
        name: String,
        /// The kind of component.
        #[arg(long, value_parser = AppType::ALL.map(AppType::as_str))]
        app_type: String,
        /// The component's version.
        #[arg(long, value_name = "V")]
        version: Option<String>,
    },
    /// Give a connector new secrets (a production admin token); the new connectionData is
    /// printed this once, and the old one keeps working for the grace period.
    Rotate {
        /// The connector's id.
        id: Uuid,
        /// How long the old connectionData keeps working, in whole seconds: 0s, 30m, 1h, 7d
        /// (default: the server's, an hour; at most a week).
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        grace: Option<Duration>,
    },
    /// Revoke a connector (a production admin token): its connectionData and every token
    /// issued to it stop working at once.
    Revoke {
        /// The connector's id.
        id: Uuid,
    },
}

/// Runs one `contextd connectors …` command.
pub async fn connectors(args: &ClientArgs, command: ConnectorCommand) -> anyhow::Result<()> {
    let client = args.connect()?;
    let out = args.output();
    match command {
        ConnectorCommand::List => {
            let connectors = client.connectors().await?;
            out.emit(&connectors, || table(&connectors))
        }
        ConnectorCommand::Create {
            name,
            app_type,
            version,
        } => {
            let new = NewConnector {
                name,
                app_type: app_type.parse()?,
                version,
            };
            let created = client.create_connector(&new).await?;
            out.emit(&created, || {
                format!(
                    "created connector {}\n{}\n\n{}",
                    describe(&created.connector),
                    view(&created.connector),
                    connection_data(&created)
                )
            })
        }
        ConnectorCommand::Rotate { id, grace } => {
            let options = RotateConnector {
                grace_seconds: grace.map(|d| d.as_secs()),
            };
            let rotated = client.rotate_connector(id, &options).await?;
            out.emit(&rotated, || {
                let old = match rotated.connector.grace_until {
                    Some(until) => format!("works until {}", output::time(&until)),
                    None => "no longer works".to_owned(),
                };
                format!(
                    "rotated the secrets of connector {}; the old connectionData {old}\n\n{}",
                    describe(&rotated.connector),
                    connection_data(&rotated)
                )
            })
        }
        ConnectorCommand::Revoke { id } => {
            client.revoke_connector(id).await?;
            out.emit(&json!({"id": id, "revoked": true}), || {
                format!("revoked connector {id}; its connectionData and tokens no longer work")
            })
        }
    }
}

fn describe(connector: &ConnectorView) -> String {
    format!("{} ({})", connector.name, connector.id)
}

fn state(state: ConnectorState) -> &'static str {
    match state {
        ConnectorState::Registered => "registered",
        ConnectorState::Stale => "stale",
        ConnectorState::Revoked => "revoked",
    }
}

/// The connectionData of a created or rotated connector, said to be shown this once.
fn connection_data(created: &ConnectorCreated) -> String {
    format!(
        "its connectionData, shown this once (give it to the component; keep it secret):\n{}",
        created.connection_data
    )
}

/// A connector as aligned `key: value` lines.
fn view(c: &ConnectorView) -> String {
    let mut rows: Vec<(String, String)> = vec![
        ("id".into(), c.id.to_string()),
        ("name".into(), c.name.clone()),
        ("appType".into(), c.app_type.as_str().to_owned()),
        ("state".into(), state(c.state).to_owned()),
    ];
    if let Some(version) = &c.version {
        rows.push(("version".into(), version.clone()));
    }
    rows.push(("created".into(), output::time(&c.created)));
    let ids: Vec<String> = c.client_ids.iter().map(Uuid::to_string).collect();
    rows.push(("clientIds".into(), ids.join(", ")));
    output::pairs(&rows)
}

fn table(connectors: &[ConnectorView]) -> String {
    let rows: Vec<Vec<String>> = connectors
        .iter()
        .map(|c| {
            vec![
                c.id.to_string(),
                c.name.clone(),
                c.app_type.as_str().to_owned(),
                state(c.state).to_owned(),
                c.version.clone().unwrap_or_default(),
                c.last_seen
                    .as_ref()
                    .map_or_else(|| "never".to_owned(), output::time),
            ]
        })
        .collect();
    output::table(
        &["ID", "NAME", "APP TYPE", "STATE", "VERSION", "LAST SEEN"],
        &rows,
    )
}
