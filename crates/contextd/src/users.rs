//! `contextd users …`: the people of a running server's partition, managed over its HTTP API
//! (`/v1/users`, DESIGN §5 and §11) with an admin token. Passwords are read from standard input
//! or the environment, never from the command line, where other users of the machine and the
//! shell history would see them.

use std::io::Read as _;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

/// Where `create` and `reset-password` read the password from unless `--password-stdin`.
const PASSWORD_ENV: &str = "CONTEXTD_USER_PASSWORD";

/// `contextd users …`.
#[derive(Subcommand)]
pub enum UsersCommand {
    /// List the users of the token's partition.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create a user; the password comes from stdin (--password-stdin) or CONTEXTD_USER_PASSWORD.
    Create {
        /// Sign-in name.
        name: String,
        /// admin, agent or partner.
        #[arg(long, value_parser = ["admin", "agent", "partner"])]
        role: String,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Disable a user: they can't sign in, and every session of theirs ends at once.
    Disable {
        /// The user's name or id.
        user: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Enable a disabled user again.
    Enable {
        /// The user's name or id.
        user: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a user and every session of theirs.
    Delete {
        /// The user's name or id.
        user: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Set a new password (from stdin with --password-stdin, or CONTEXTD_USER_PASSWORD); every
    /// session of the user ends.
    ResetPassword {
        /// The user's name or id.
        user: String,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// How to reach the server.
#[derive(Args, Clone, Debug)]
pub struct ClientArgs {
    /// Base URL of the server.
    #[arg(long, env = "CONTEXTD_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An admin token of the partition (an API key).
    #[arg(long, env = "CONTEXTD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print machine-readable JSON.
    #[arg(long)]
    json: bool,
}

/// Where the password comes from.
#[derive(Args, Clone, Debug)]
pub struct PasswordArgs {
    /// Read the password from standard input (one trailing newline is dropped).
    #[arg(long)]
    password_stdin: bool,
}

impl PasswordArgs {
    fn read(&self) -> anyhow::Result<String> {
        if self.password_stdin {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the password from standard input")?;
            let text = text
                .strip_suffix('\n')
                .map(|t| t.strip_suffix('\r').unwrap_or(t))
                .unwrap_or(&text);
            return Ok(text.to_owned());
        }
        match std::env::var(PASSWORD_ENV) {
            Ok(p) => Ok(p),
            Err(_) => bail!(
                "give the password on standard input with --password-stdin, or in {PASSWORD_ENV}"
            ),
        }
    }
}

/// An HTTP client of one server with one token.
struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
    json: bool,
}

impl Client {
    fn new(args: ClientArgs) -> anyhow::Result<Self> {
        let token = args
            .token
            .context("give an admin token with --token or CONTEXTD_TOKEN")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            http,
            url: args.url.trim_end_matches('/').to_owned(),
            token,
            json: args.json,
        })
    }

    /// Sends a request; a non-2xx answer becomes an error carrying the server's problem detail.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = &body {
            request = request.json(b);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.url))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("{method} {path}: the answer was cut off"))?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{method} {path}: {}", problem(status, &value, &bytes));
        }
        Ok(value)
    }

    /// The user `name_or_id` names, from the partition's list.
    async fn find(&self, name_or_id: &str) -> anyhow::Result<Value> {
        let users = self.call(Method::GET, "/v1/users", None).await?;
        users
            .as_array()
            .and_then(|list| {
                list.iter()
                    .find(|u| u["id"] == name_or_id)
                    .or_else(|| list.iter().find(|u| u["name"] == name_or_id))
            })
            .cloned()
            .with_context(|| {
                format!("no user named, or with the id, '{name_or_id}' in this partition")
            })
    }

    async fn patch(&self, name_or_id: &str, body: Value) -> anyhow::Result<Value> {
        let user = self.find(name_or_id).await?;
        self.call(
            Method::PATCH,
            &format!("/v1/users/{}", text(&user["id"])),
            Some(body),
        )
        .await
    }

    /// Prints `value` as JSON with `--json`, else `line`.
    fn print(&self, value: &Value, line: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            println!("{}", line());
        }
    }
}

/// A problem answer as one line: status, detail and each field error.
fn problem(status: reqwest::StatusCode, value: &Value, bytes: &[u8]) -> String {
    let mut out = status.to_string();
    match value["detail"].as_str() {
        Some(detail) => {
            out.push_str(": ");
            out.push_str(detail);
        }
        None if !bytes.is_empty() => {
            out.push_str(": ");
            out.extend(String::from_utf8_lossy(bytes).chars().take(300));
        }
        None => {}
    }
    for e in value["errors"].as_array().into_iter().flatten() {
        out.push_str(&format!("; {}: {}", text(&e["field"]), text(&e["message"])));
    }
    out
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn describe(user: &Value) -> String {
    format!("{} ({})", text(&user["name"]), text(&user["id"]))
}

/// Runs one `contextd users …` command.
pub async fn main(command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::List { client } => {
            let client = Client::new(client)?;
            let users = client.call(Method::GET, "/v1/users", None).await?;
            if client.json {
                println!("{users}");
                return Ok(());
            }
            println!("{:<36}  {:<24}  {:<8}  STATE", "ID", "NAME", "ROLE");
            for u in users.as_array().into_iter().flatten() {
                let state = if u["disabled"] == true {
                    "disabled"
                } else {
                    "enabled"
                };
                println!(
                    "{:<36}  {:<24}  {:<8}  {state}",
                    text(&u["id"]),
                    text(&u["name"]),
                    text(&u["role"])
                );
            }
        }
        UsersCommand::Create {
            name,
            role,
            password,
            client,
        } => {
            let client = Client::new(client)?;
            let password = password.read()?;
            let body = json!({"name": name, "role": role, "password": password});
            let user = client.call(Method::POST, "/v1/users", Some(body)).await?;
            client.print(&user, || {
                format!(
                    "created user {}, role {}",
                    describe(&user),
                    text(&user["role"])
                )
            });
        }
        UsersCommand::Disable { user, client } => {
            let client = Client::new(client)?;
            let user = client.patch(&user, json!({"disabled": true})).await?;
            client.print(&user, || {
                format!(
                    "disabled user {}; every session of theirs has ended",
                    describe(&user)
                )
            });
        }
        UsersCommand::Enable { user, client } => {
            let client = Client::new(client)?;
            let user = client.patch(&user, json!({"disabled": false})).await?;
            client.print(&user, || format!("enabled user {}", describe(&user)));
        }
        UsersCommand::ResetPassword {
            user,
            password,
            client,
        } => {
            let client = Client::new(client)?;
            let password = password.read()?;
            let user = client.patch(&user, json!({"password": password})).await?;
            client.print(&user, || {
                format!(
                    "reset the password of {}; every session of theirs has ended",
                    describe(&user)
                )
            });
        }
        UsersCommand::Delete { user, client } => {
            let client = Client::new(client)?;
            let user = client.find(&user).await?;
            client
                .call(
                    Method::DELETE,
                    &format!("/v1/users/{}", text(&user["id"])),
                    None,
                )
                .await?;
            let out = json!({"id": user["id"], "name": user["name"], "deleted": true});
            client.print(&out, || format!("deleted user {}", describe(&user)));
        }
    }
    Ok(())
}
