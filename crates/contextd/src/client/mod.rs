//! The client commands of `contextd` (README, "Command-line client"): objects, timeline, flush,
//! dictionary, status, users, API keys, grants, connectors, audit, the live events (`watch`),
//! and export and import of a running server, all through the SDK (`contextd-client`), never over raw HTTP.
//!
//! Connection settings are layered: a TOML config file (`--config`, `CONTEXTD_CONFIG`), then
//! the environment (`CONTEXTD_URL`, `CONTEXTD_TOKEN`, …), then flags. Secrets (tokens,
//! connectionData) are never printed, and every failure ends with one line on standard error
//! and an exit status from the table in [`exit`].

mod connectors;
pub mod dictionary;
mod events;
pub mod exit;
pub mod objects;
mod output;
pub mod people;
mod system;
mod transfer;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use contextd_client::{Client, Profile, Settings};
use figment::providers::{Env, Format as _, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use self::exit::usage;
use self::output::Output;

/// The service URL used when none is configured.
const DEFAULT_URL: &str = "http://127.0.0.1:8080";
/// The standard profile's timeout when none is configured: a person at a terminal can wait
/// longer than an agent desktop (the SDK's default, 1200 ms), and a search or a password
/// hash on a busy server may need it.
const CLI_TIMEOUT: Duration = Duration::from_secs(10);
/// The settings read from the environment, as `CONTEXTD_<KEY>`.
const ENV_KEYS: &[&str] = &[
    "url",
    "token",
    "connection_data",
    "timeout_ms",
    "profile",
    "proxy",
    "lab_mode",
    "ca_file",
];

/// How to reach the server, and how to print: shared by every client command.
#[derive(Args, Clone, Default)]
#[command(next_help_heading = "Connection and output")]
pub struct ClientArgs {
    /// TOML config file with any of: url, token, connection_data, timeout_ms, profile
    /// ("standard" or "voice"), proxy, lab_mode, ca_file. Env CONTEXTD_CONFIG. The
    /// environment overrides it, and flags override both.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Base URL of the server, used with a token (env CONTEXTD_URL; default
    /// http://127.0.0.1:8080); a connectionData names its own.
    #[arg(long, global = true)]
    url: Option<String>,
    /// A bearer token, e.g. an admin token printed by `contextd serve` (env CONTEXTD_TOKEN);
    /// wins over a connectionData.
    #[arg(long, global = true, value_name = "TOKEN")]
    token: Option<String>,
    /// A component's connectionData, which names the server and the credentials (env
    /// CONTEXTD_CONNECTION_DATA); its production credentials, or its lab ones with --lab.
    #[arg(long, global = true, value_name = "DATA")]
    connection_data: Option<String>,
    /// Timeout of one call, retries included, in ms (env CONTEXTD_TIMEOUT_MS; default
    /// 10000, or 2400 with --voice; clamped to the profile's range).
    #[arg(long, global = true, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// Use the voice/IVR profile (timeouts 1200–5000 ms) instead of the standard one.
    #[arg(long, global = true)]
    voice: bool,
    /// Send every request through this proxy (env CONTEXTD_PROXY).
    #[arg(long, global = true, value_name = "URL")]
    proxy: Option<String>,
    /// Use a connectionData's lab credentials (env CONTEXTD_LAB_MODE=true).
    #[arg(long, global = true)]
    lab: bool,
    /// Also trust the CA certificates of this PEM file, for a server whose certificate no
    /// public CA signed (env CONTEXTD_CA_FILE). Certificates are always verified.
    #[arg(long, global = true, value_name = "PATH")]
    ca_file: Option<PathBuf>,
    /// Print exactly one JSON value on standard output instead of text.
    #[arg(long, global = true)]
    json: bool,
}

impl ClientArgs {
    /// Whether `--json` was given.
    pub fn json(&self) -> bool {
        self.json
    }
}

/// The connection settings of every layer, merged.
#[derive(Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Connection {
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connection_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<ProfileName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proxy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lab_mode: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
enum ProfileName {
    Standard,
    Voice,
}

impl ClientArgs {
    /// The flags as the top layer of the settings.
    fn flags(&self) -> Connection {
        Connection {
            url: self.url.clone(),
            token: self.token.clone(),
            connection_data: self.connection_data.clone(),
            timeout_ms: self.timeout_ms,
            profile: self.voice.then_some(ProfileName::Voice),
            proxy: self.proxy.clone(),
            lab_mode: self.lab.then_some(true),
            ca_file: self.ca_file.clone(),
        }
    }

    /// The config file, the environment and the flags, merged in that order.
    fn resolve(&self) -> anyhow::Result<Connection> {
        let mut figment = Figment::new();
        let path = self
            .config
            .clone()
            .or_else(|| std::env::var_os("CONTEXTD_CONFIG").map(PathBuf::from));
        if let Some(path) = path {
            if !path.is_file() {
                return usage(format!(
                    "the config file {} does not exist (--config or CONTEXTD_CONFIG)",
                    path.display()
                ));
            }
            figment = figment.merge(Toml::file_exact(&path));
        }
        let merged = figment
            .merge(Env::prefixed("CONTEXTD_").only(ENV_KEYS))
            .merge(Serialized::defaults(self.flags()))
            .extract::<Connection>();
        match merged {
            Ok(connection) => Ok(connection),
            Err(e) => usage(format!("connection settings: {e}")),
        }
    }

    /// A client of the configured server with the configured credential.
    pub fn connect(&self) -> anyhow::Result<Client> {
        let (target, settings) = self.target()?;
        Ok(match target {
            Target::Token { url, token } => Client::new(&url, token, settings)?,
            Target::ConnectionData(data) => Client::from_connection_data(&data, settings)?,
        })
    }

    /// What the layers name to connect with, and the client settings.
    fn target(&self) -> anyhow::Result<(Target, Settings)> {
        let c = self.resolve()?;
        let profile = match c.profile {
            Some(ProfileName::Voice) => Profile::Voice,
            _ => Profile::Standard,
        };
        let timeout = match (c.timeout_ms, profile) {
            (Some(ms), _) => Duration::from_millis(ms),
            (None, Profile::Standard) => CLI_TIMEOUT,
            (None, other) => other.default_timeout(),
        };
        let mut settings = Settings::for_profile(profile)
            .with_timeout(timeout)
            .with_lab_mode(c.lab_mode.unwrap_or(false));
        if let Some(proxy) = c.proxy.filter(|p| !p.is_empty()) {
            settings = settings.with_proxy(proxy);
        }
        if let Some(ca_file) = c.ca_file.filter(|p| !p.as_os_str().is_empty()) {
            settings = settings.with_ca_file(ca_file);
        }
        let present = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        let target = match (present(c.token), present(c.connection_data)) {
            (Some(token), _) => Target::Token {
                url: present(c.url).unwrap_or_else(|| DEFAULT_URL.to_owned()),
                token,
            },
            (None, Some(data)) => Target::ConnectionData(data),
            (None, None) => {
                return usage(
                    "no credential: give a token or a connectionData as a flag (--token, \
                     --connection-data), in the environment (CONTEXTD_TOKEN, \
                     CONTEXTD_CONNECTION_DATA), or in a config file (token, connection_data; \
                     --config or CONTEXTD_CONFIG)",
                )
            }
        };
        Ok((target, settings))
    }

    /// How results are printed.
    pub fn output(&self) -> Output {
        Output::new(self.json)
    }
}

/// What a client command connects with: a token wins over a connectionData.
enum Target {
    /// A base URL and a bearer token.
    Token { url: String, token: String },
    /// A component's connectionData (it names the service).
    ConnectionData(String),
}

/// The client commands that sit at the top level of `contextd`.
#[derive(Subcommand)]
pub enum ClientCommand {
    /// Customers (people; PII lives here): create, get, update, delete, search.
    #[command(after_long_help = exit::help())]
    Customers {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: objects::ObjectCommand,
    },
    /// Requests (cases grouping activities; need --customer): create, get, update, delete,
    /// search.
    #[command(after_long_help = exit::help())]
    Requests {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: objects::ObjectCommand,
    },
    /// Activities (one interaction each; --media-type, optional --customer and --parent):
    /// create, get, update, delete, search.
    #[command(alias = "pods", after_long_help = exit::help())]
    Activities {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: objects::ObjectCommand,
    },
    /// Details (comments or feedback; --detail-type and --parent): create, get, update,
    /// delete, search.
    #[command(after_long_help = exit::help())]
    Details {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: objects::ObjectCommand,
    },
    /// A customer's journey, newest first: time, channel, request and summary of each entry.
    #[command(after_long_help = exit::help())]
    Timeline {
        #[command(flatten)]
        args: objects::TimelineArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete every object of a kind (lab partition only), with progress until done.
    #[command(after_long_help = exit::help())]
    Flush {
        #[command(flatten)]
        args: objects::FlushArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The dictionary's fields: list, get, create, update, delete.
    #[command(after_long_help = exit::help())]
    Fields {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: dictionary::FieldCommand,
    },
    /// The dictionary's field sets: list, get, create, update, delete.
    #[command(after_long_help = exit::help())]
    Fieldsets {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: dictionary::FieldSetCommand,
    },
    /// The server's status: overall, dependencies, version, uptime, partition, encryption.
    /// With a connectionData (and no token): first "test connection" — the connectionData,
    /// the proxy, reachability, and the production and lab credentials, each step shown with
    /// ✓/✗ and its latency; the exit status is that of the step that failed.
    #[command(after_long_help = system::status_help())]
    Status {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The people of the token's partition (an admin token): list, create, disable, enable,
    /// delete, reset-password, revoke-sessions.
    #[command(after_long_help = exit::help())]
    Users {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: people::UsersCommand,
    },
    /// Partner grants (an admin token): let a partner principal see ENCRYPTED and PII values
    /// until a time.
    #[command(after_long_help = exit::help())]
    Grants {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: people::GrantCommand,
    },
    /// Connectors, the components that reach the server with a connectionData: list (an
    /// admin token); create, rotate, revoke (a production admin token: a connector carries
    /// production credentials). A connectionData is printed once, by create or rotate.
    #[command(after_long_help = exit::help())]
    Connectors {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: connectors::ConnectorCommand,
    },
    /// The partition's audit log, newest first (an admin token); `verify` and `archive` are
    /// operator commands on the database itself.
    #[command(after_long_help = exit::help(), args_conflicts_with_subcommands = true)]
    Audit {
        #[command(flatten)]
        args: people::AuditArgs,
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        operator: Option<crate::audit_cmd::AuditCommand>,
    },
    /// Write the token's partition as JSON Lines on standard output: the dictionary the
    /// organization added, then customers, requests, activities and details with their ids
    /// and history (an admin token; `> FILE`).
    #[command(after_long_help = exit::help())]
    Export {
        #[command(flatten)]
        args: transfer::ExportArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Load an export (or a JSON array of objects in the original product's wire shape)
    /// into the token's partition, keeping ids and history (an admin token). Running it
    /// again changes nothing; objects linked to ids outside the file are reported.
    #[command(after_long_help = exit::help())]
    Import {
        #[command(flatten)]
        args: transfer::ImportArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The live events of the token's partition, one line each (`--json`: one JSON object
    /// per line), until Ctrl-C: time, id, type, object type, object id and customer.
    #[command(after_long_help = exit::help())]
    Watch {
        #[command(flatten)]
        args: events::WatchArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Runs a client command to its exit status, printing one error line on failure.
pub async fn run(command: ClientCommand) -> ExitCode {
    exit::finish(dispatch(command).await)
}

async fn dispatch(command: ClientCommand) -> anyhow::Result<()> {
    use contextd_client::proto::Kind;
    use ClientCommand as C;
    match command {
        C::Customers { client, command } => objects::run(&client, Kind::Customer, command).await,
        C::Requests { client, command } => objects::run(&client, Kind::Request, command).await,
        C::Activities { client, command } => objects::run(&client, Kind::Activity, command).await,
        C::Details { client, command } => objects::run(&client, Kind::Detail, command).await,
        C::Timeline { client, args } => objects::timeline(&client, args).await,
        C::Flush { client, args } => objects::flush(&client, args).await,
        C::Fields { client, command } => dictionary::fields(&client, command).await,
        C::Fieldsets { client, command } => dictionary::fieldsets(&client, command).await,
        C::Status { client } => system::status(&client).await,
        C::Users { client, command } => people::users(&client, command).await,
        C::Grants { client, command } => people::grants(&client, command).await,
        C::Connectors { client, command } => connectors::connectors(&client, command).await,
        C::Audit { client, args, .. } => people::audit(&client, args).await,
        C::Watch { client, args } => events::watch(&client, args).await,
        C::Export { client, args } => transfer::export(&client, args).await,
        C::Import { client, args } => transfer::import(&client, args).await,
    }
}

/// Splits `NAME=VALUE` (the value may hold further `=`).
pub fn name_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected NAME=VALUE, got '{text}'")),
    }
}

/// A time: RFC 3339 (`2026-12-31T00:00:00Z`), or a duration from now (`30d`, `12h`).
pub fn time_ahead(text: &str) -> Result<DateTime<Utc>, String> {
    time_or_offset(text, 1)
}

/// A time: RFC 3339, or a duration before now (`1h` = an hour ago).
pub fn time_ago(text: &str) -> Result<DateTime<Utc>, String> {
    time_or_offset(text, -1)
}

fn time_or_offset(text: &str, sign: i32) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = humantime::parse_duration(text).map_err(|_| {
        format!(
            "'{text}' is neither an RFC 3339 time (2026-12-31T00:00:00Z) nor a duration (30d, 12h)"
        )
    })?;
    let d = chrono::Duration::from_std(d).map_err(|e| e.to_string())?;
    Ok(if sign > 0 {
        Utc::now() + d
    } else {
        Utc::now() - d
    })
}

/// Reads a JSON body from a file (`-` for standard input).
pub fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> anyhow::Result<T> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
    } else {
        match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => return usage(format!("cannot read {}: {e}", path.display())),
        }
    };
    match serde_json::from_str(&text) {
        Ok(value) => Ok(value),
        Err(e) => usage(format!("{} is not the JSON expected: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_value_splits_at_the_first_equals() {
        assert_eq!(
            name_value("Context_Notes=a=b"),
            Ok(("Context_Notes".into(), "a=b".into()))
        );
        assert_eq!(name_value("X="), Ok(("X".into(), String::new())));
        assert!(name_value("=x").is_err());
        assert!(name_value("nothing").is_err());
    }

    #[test]
    fn times_are_rfc3339_or_durations() {
        let t = time_ahead("2026-12-31T00:00:00Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-31T00:00:00+00:00");
        assert!(time_ahead("1h").unwrap() > Utc::now());
        assert!(time_ago("1h").unwrap() < Utc::now());
        assert!(time_ahead("tomorrow").is_err());
    }

    #[test]
    fn flags_are_the_top_layer_and_secrets_stay_out_of_errors() {
        let args = ClientArgs {
            url: Some("http://flag:1".into()),
            token: Some("ctxd_secret_value".into()),
            voice: true,
            ..ClientArgs::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.url.as_deref(), Some("http://flag:1"));
        assert!(matches!(c.profile, Some(ProfileName::Voice)));
        let bad = ClientArgs {
            url: Some("not a url".into()),
            token: Some("ctxd_secret_value".into()),
            ..ClientArgs::default()
        };
        let e = bad.connect().unwrap_err();
        assert_eq!(exit::code(&e), 2);
        assert!(!exit::line(&e).contains("ctxd_secret_value"));
    }
}
