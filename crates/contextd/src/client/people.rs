//! `contextd users|keys|grants|audit`: the people and credentials of a partition, through
//! the SDK with an admin token (docs/security.md). Passwords are read from standard input or the
//! environment, never from the command line, where other users of the machine and the
//! shell history would see them.

use std::io::Read as _;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use contextd_client::proto::access::{
    AuditPage, AuditParams, KeyView, NewGrant, NewKey, NewUser, Role, UserPatch, UserView,
};
use contextd_client::Client;
use serde_json::json;
use uuid::Uuid;

use super::exit::{usage, Missing};
use super::output;
use super::{time_ago, time_ahead, ClientArgs};

/// Where `create` and `reset-password` read the password from unless `--password-stdin`.
const PASSWORD_ENV: &str = "CONTEXTD_USER_PASSWORD";

/// `contextd users …`.
#[derive(Subcommand)]
pub enum UsersCommand {
    /// List the users of the token's partition.
    List,
    /// Create a user; the password comes from stdin (--password-stdin) or CONTEXTD_USER_PASSWORD.
    Create {
        /// Sign-in name.
        name: String,
        /// admin, agent or partner.
        #[arg(long, value_parser = ["admin", "agent", "partner"])]
        role: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Disable a user: they can't sign in, and every session of theirs ends at once.
    Disable {
        /// The user's name or id.
        user: String,
    },
    /// Enable a disabled user again.
    Enable {
        /// The user's name or id.
        user: String,
    },
    /// Delete a user and every session of theirs.
    Delete {
        /// The user's name or id.
        user: String,
    },
    /// Set a new password (from stdin with --password-stdin, or CONTEXTD_USER_PASSWORD); every
    /// session of the user ends.
    ResetPassword {
        /// The user's name or id.
        user: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// End every session of a user at once (they can sign in again).
    RevokeSessions {
        /// The user's name or id.
        user: String,
    },
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
            Err(_) => usage(format!(
                "give the password on standard input with --password-stdin, or in {PASSWORD_ENV}"
            )),
        }
    }
}

/// The user `name_or_id` names, from the partition's list.
async fn find_user(client: &Client, name_or_id: &str) -> anyhow::Result<UserView> {
    let users = client.users().await?;
    let by_id = users.iter().find(|u| u.id.to_string() == name_or_id);
    let found = by_id.or_else(|| users.iter().find(|u| u.name == name_or_id));
    match found {
        Some(user) => Ok(user.clone()),
        None => Err(Missing(format!(
            "no user named, or with the id, '{name_or_id}' in this partition"
        ))
        .into()),
    }
}

fn describe(user: &UserView) -> String {
    format!("{} ({})", user.name, user.id)
}

/// Runs one `contextd users …` command.
pub async fn users(args: &ClientArgs, command: UsersCommand) -> anyhow::Result<()> {
    let client = args.connect()?;
    let out = args.output();
    match command {
        UsersCommand::List => {
            let users = client.users().await?;
            out.emit(&users, || users_table(&users))
        }
        UsersCommand::Create {
            name,
            role,
            password,
        } => {
            let password = password.read()?;
            let role: Role = role.parse()?;
            let new = NewUser {
                name,
                role,
                password,
            };
            let user = client.create_user(&new).await?;
            out.emit(&user, || {
                format!("created user {}, role {}", describe(&user), user.role)
            })
        }
        UsersCommand::Disable { user } => {
            let found = find_user(&client, &user).await?;
            let change = UserPatch {
                disabled: Some(true),
                ..UserPatch::default()
            };
            let user = client.update_user(found.id, &change).await?;
            out.emit(&user, || {
                format!(
                    "disabled user {}; every session of theirs has ended",
                    describe(&user)
                )
            })
        }
        UsersCommand::Enable { user } => {
            let found = find_user(&client, &user).await?;
            let change = UserPatch {
                disabled: Some(false),
                ..UserPatch::default()
            };
            let user = client.update_user(found.id, &change).await?;
            out.emit(&user, || format!("enabled user {}", describe(&user)))
        }
        UsersCommand::ResetPassword { user, password } => {
            let password = password.read()?;
            let found = find_user(&client, &user).await?;
            let change = UserPatch {
                password: Some(password),
                ..UserPatch::default()
            };
            let user = client.update_user(found.id, &change).await?;
            out.emit(&user, || {
                format!(
                    "reset the password of {}; every session of theirs has ended",
                    describe(&user)
                )
            })
        }
        UsersCommand::Delete { user } => {
            let found = find_user(&client, &user).await?;
            client.delete_user(found.id).await?;
            let done = json!({"id": found.id, "name": found.name, "deleted": true});
            out.emit(&done, || format!("deleted user {}", describe(&found)))
        }
        UsersCommand::RevokeSessions { user } => {
            let found = find_user(&client, &user).await?;
            let revoked = client.revoke_user_sessions(found.id).await?;
            out.emit(&revoked, || {
                format!(
                    "ended {} session(s) of {}",
                    revoked.revoked,
                    describe(&found)
                )
            })
        }
    }
}

fn users_table(users: &[UserView]) -> String {
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            let state = if u.disabled { "disabled" } else { "enabled" };
            vec![
                u.id.to_string(),
                u.name.clone(),
                u.role.to_string(),
                state.to_owned(),
            ]
        })
        .collect();
    output::table(&["ID", "NAME", "ROLE", "STATE"], &rows)
}

/// `contextd keys list|create|revoke`: API keys of a running server, over HTTP (beside the
/// operator command `keys rotate`).
#[derive(Subcommand)]
pub enum ApiKeyCommand {
    /// API keys (bearer tokens) of a running server's partition, over HTTP with an admin
    /// token: list them, without their secrets.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// API keys over HTTP: create one; its token is printed this once.
    Create {
        /// A name saying who or what uses the key.
        name: String,
        /// admin, agent, machine or partner.
        #[arg(long)]
        role: Role,
        /// When it stops working: RFC 3339, or a duration from now (90d).
        #[arg(long, value_parser = time_ahead, value_name = "TIME")]
        expires_at: Option<DateTime<Utc>>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// API keys over HTTP: revoke one, effective at once.
    Revoke {
        /// The key's id.
        id: Uuid,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Runs one `contextd keys list|create|revoke` command.
pub async fn keys(command: ApiKeyCommand) -> anyhow::Result<()> {
    match command {
        ApiKeyCommand::List { client: args } => {
            let keys = args.connect()?.keys().await?;
            args.output().emit(&keys, || keys_table(&keys))
        }
        ApiKeyCommand::Create {
            name,
            role,
            expires_at,
            client: args,
        } => {
            let new = NewKey {
                name,
                role,
                expires_at,
            };
            let key = args.connect()?.create_key(&new).await?;
            args.output().emit(&key, || {
                format!(
                    "created API key {} ({}), role {}; its token, shown this once:\n{}",
                    key.name,
                    key.id,
                    key.role,
                    key.token.as_deref().unwrap_or_default()
                )
            })
        }
        ApiKeyCommand::Revoke { id, client: args } => {
            args.connect()?.revoke_key(id).await?;
            args.output().emit(&json!({"id": id, "revoked": true}), || {
                format!("revoked API key {id}")
            })
        }
    }
}

fn keys_table(keys: &[KeyView]) -> String {
    let now = Utc::now();
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            let state = match k.expires_at {
                _ if k.revoked => "revoked",
                Some(t) if t <= now => "expired",
                _ => "active",
            };
            vec![
                k.id.to_string(),
                k.name.clone(),
                k.role.to_string(),
                output::time(&k.created),
                k.expires_at.as_ref().map(output::time).unwrap_or_default(),
                state.to_owned(),
            ]
        })
        .collect();
    output::table(
        &["ID", "NAME", "ROLE", "CREATED", "EXPIRES", "STATE"],
        &rows,
    )
}

/// `contextd grants …`.
#[derive(Subcommand)]
pub enum GrantCommand {
    /// Let a partner principal (a user or API key id) see ENCRYPTED and PII values.
    Create {
        /// The partner's user or API key id.
        principal: Uuid,
        /// Until when: RFC 3339, or a duration from now (8h).
        #[arg(long, value_parser = time_ahead, value_name = "TIME")]
        expires_at: DateTime<Utc>,
    },
    /// Revoke a grant, effective at once.
    Revoke {
        /// The grant's id.
        id: Uuid,
    },
}

/// Runs one `contextd grants …` command.
pub async fn grants(args: &ClientArgs, command: GrantCommand) -> anyhow::Result<()> {
    let client = args.connect()?;
    let out = args.output();
    match command {
        GrantCommand::Create {
            principal,
            expires_at,
        } => {
            let grant = NewGrant {
                principal,
                expires_at,
            };
            let created = client.create_grant(&grant).await?;
            out.emit(&created, || {
                format!(
                    "created grant {} for {principal} until {}",
                    created.id,
                    output::time(&expires_at)
                )
            })
        }
        GrantCommand::Revoke { id } => {
            client.revoke_grant(id).await?;
            out.emit(&json!({"id": id, "revoked": true}), || {
                format!("revoked grant {id}")
            })
        }
    }
}

/// `contextd audit` filters.
#[derive(Args)]
pub struct AuditArgs {
    /// Only this action (object.create, datakey.rotate, …).
    #[arg(long)]
    action: Option<String>,
    /// Only what this principal did.
    #[arg(long, value_name = "ID")]
    actor: Option<String>,
    /// Only what concerned this object.
    #[arg(long, value_name = "ID")]
    object_id: Option<String>,
    /// From this time on: RFC 3339, or a duration ago (24h).
    #[arg(long, value_parser = time_ago, value_name = "TIME")]
    from: Option<DateTime<Utc>>,
    /// Up to this time: RFC 3339, or a duration ago.
    #[arg(long, value_parser = time_ago, value_name = "TIME")]
    to: Option<DateTime<Utc>>,
    /// Page size.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Continue after a previous page (its nextCursor).
    #[arg(long)]
    cursor: Option<String>,
}

/// Runs `contextd audit`.
pub async fn audit(args: &ClientArgs, filter: AuditArgs) -> anyhow::Result<()> {
    let params = AuditParams {
        action: filter.action,
        actor: filter.actor,
        object_id: filter.object_id,
        from: filter.from,
        to: filter.to,
        limit: filter.limit,
        cursor: filter.cursor,
    };
    let page = args.connect()?.audit(&params).await?;
    args.output().emit(&page, || audit_table(&page))
}

fn audit_table(page: &AuditPage) -> String {
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|a| {
            let actor = match (a.actor, a.actor_role) {
                (Some(id), Some(role)) => format!("{} ({role})", output::short_id(&id)),
                (Some(id), None) => output::short_id(&id),
                (None, _) => "operator".to_owned(),
            };
            let object = match (a.object_type, &a.object_id) {
                (Some(kind), Some(id)) => format!("{kind} {id}"),
                (None, Some(id)) => id.clone(),
                _ => String::new(),
            };
            vec![
                output::time(&a.at),
                a.action.clone(),
                actor,
                object,
                output::cut(&a.detail, 60),
            ]
        })
        .collect();
    let mut text = output::table(&["AT", "ACTION", "ACTOR", "OBJECT", "DETAIL"], &rows);
    if let Some(cursor) = &page.next_cursor {
        text.push_str(&format!("\nmore with --cursor {cursor}"));
    }
    text
}
