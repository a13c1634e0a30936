//! The settings of `contextd serve` from a TOML file (`--config PATH`, env
//! `CONTEXTD_SERVE_CONFIG`), beneath the environment and the flags; and `contextd config
//! check`, which validates them and prints each with where it came from, secrets redacted.
//!
//! A file's key is a flag of `serve` (`body_limit` or `body-limit`); its value becomes that
//! flag's default, so that clap's own order applies: flag, then environment, then file, then
//! the built-in default. Values are checked by the flag's own parser.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgMatches, Command, CommandFactory, FromArgMatches};
use figment::providers::{Format as _, Toml};
use figment::Figment;
use serde_json::Value;

use crate::Cli;

/// The subcommands that read a settings file.
const READERS: [&[&str]; 2] = [&["serve"], &["config", "check"]];
/// Flags that are not settings of a file.
const NOT_SETTINGS: [&str; 2] = ["config", "help"];
/// Settings whose values may hold credentials (URLs with a password).
const URL_SETTINGS: [&str; 2] = ["database-url", "events-nats"];

/// A settings file, read: its path and its keys (with `-` for `_`) and values as text.
struct Settings {
    path: PathBuf,
    values: BTreeMap<String, Vec<String>>,
}

/// Parses the command line, with the settings file's values as the defaults of `serve` and
/// `config check`.
pub fn parse_cli() -> anyhow::Result<Cli> {
    let (matches, _) = matches()?;
    Ok(Cli::from_arg_matches(&matches)?)
}

/// The command line's matches, and the settings file read (if any).
fn matches() -> anyhow::Result<(ArgMatches, Option<Settings>)> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let mut command = Cli::command();
    let settings = match settings_path(&args) {
        Some(path) => Some(read(&path, &command)?),
        None => None,
    };
    if let Some(settings) = &settings {
        for path in READERS {
            command = with_defaults(command, path, settings);
        }
    }
    match command.try_get_matches_from(&args) {
        Ok(m) => Ok((m, settings)),
        Err(e) => {
            if let Some(settings) = &settings {
                explain(&e, settings);
            }
            e.exit()
        }
    }
}

/// The settings file of a `serve` or `config check` command line: `--config PATH`, else
/// `CONTEXTD_SERVE_CONFIG`.
fn settings_path(args: &[OsString]) -> Option<PathBuf> {
    let words: Vec<&str> = args.iter().skip(1).filter_map(|a| a.to_str()).collect();
    let reads = READERS
        .iter()
        .any(|path| words.len() >= path.len() && words[..path.len()] == **path);
    if !reads {
        return None;
    }
    let mut it = words.iter();
    while let Some(word) = it.next() {
        if *word == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(path) = word.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("CONTEXTD_SERVE_CONFIG").map(PathBuf::from)
}

/// Reads a settings file; a key that is no flag of `serve`, or a value that is no string,
/// number, boolean or list of them, is an error that names the key.
fn read(path: &Path, command: &Command) -> anyhow::Result<Settings> {
    if !path.is_file() {
        bail!(
            "the settings file {} does not exist (--config or CONTEXTD_SERVE_CONFIG)",
            path.display()
        );
    }
    let table: serde_json::Map<String, Value> = Figment::from(Toml::file_exact(path))
        .extract()
        .with_context(|| format!("{} is not a TOML table of settings", path.display()))?;
    let flags: Vec<&str> = command
        .find_subcommand("serve")
        .map(|serve| serve.get_arguments().filter_map(|a| a.get_long()).collect())
        .unwrap_or_default();
    let mut values = BTreeMap::new();
    for (key, value) in table {
        let name = key.replace('_', "-");
        if NOT_SETTINGS.contains(&name.as_str()) || !flags.contains(&name.as_str()) {
            bail!(
                "{}: `{key}` is not a setting of `contextd serve` (the keys are its flags, \
                 e.g. body_limit; see `contextd serve --help`)",
                path.display()
            );
        }
        let texts = match value {
            Value::Array(items) => items.iter().map(text).collect::<Option<Vec<_>>>(),
            other => text(&other).map(|t| vec![t]),
        };
        let Some(texts) = texts else {
            bail!(
                "{}: `{key}` must be a string, a number, a boolean or a list of them",
                path.display()
            );
        };
        values.insert(name, texts);
    }
    Ok(Settings {
        path: path.to_owned(),
        values,
    })
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `command` with the settings as the defaults of the subcommand at `path`.
fn with_defaults(command: Command, path: &'static [&'static str], settings: &Settings) -> Command {
    let Some((first, rest)) = path.split_first() else {
        return set_defaults(command, settings);
    };
    command.mut_subcommand(*first, |sub| with_defaults(sub, rest, settings))
}

fn set_defaults(mut command: Command, settings: &Settings) -> Command {
    let ids: Vec<(String, String)> = command
        .get_arguments()
        .filter_map(|a| Some((a.get_long()?.to_owned(), a.get_id().to_string())))
        .collect();
    for (long, id) in ids {
        if let Some(values) = settings.values.get(&long) {
            // Read once at start; clap keeps defaults as 'static text.
            let values: Vec<&'static str> = values
                .iter()
                .map(|v| &*Box::leak(v.clone().into_boxed_str()))
                .collect();
            command = command.mut_arg(id, |a| a.default_values(values));
        }
    }
    command
}

/// Adds, to a refused value that came from the settings file, which key of which file.
fn explain(e: &clap::Error, settings: &Settings) {
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return;
    }
    let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) = (
        e.get(ContextKind::InvalidArg),
        e.get(ContextKind::InvalidValue),
    ) else {
        return;
    };
    let long = arg
        .trim_start_matches("--")
        .split([' ', '='])
        .next()
        .unwrap_or_default();
    if settings
        .values
        .get(long)
        .is_some_and(|values| values.contains(value))
    {
        eprintln!(
            "note: '{value}' comes from {}, key `{}`",
            settings.path.display(),
            long.replace('-', "_")
        );
    }
}

/// `contextd config check`: the settings `serve` would run with, one `key = "value"` line
/// each with where it came from; credentials in URLs and the master key are never printed.
pub fn check() -> anyhow::Result<()> {
    let (matches, settings) = matches()?;
    let Some(check) = matches
        .subcommand_matches("config")
        .and_then(|m| m.subcommand_matches("check"))
    else {
        bail!("not a `config check` command line");
    };
    let command = Cli::command();
    let args = command
        .find_subcommand("config")
        .and_then(|c| c.find_subcommand("check"))
        .map(|c| c.get_arguments().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    if let Some(s) = &settings {
        println!("# settings file: {}", s.path.display());
    }
    for arg in args {
        let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else {
            continue;
        };
        if NOT_SETTINGS.contains(&long) {
            continue;
        }
        let values: Vec<String> = check
            .get_raw(id)
            .map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let shown: Vec<String> = values
            .iter()
            .map(|v| match URL_SETTINGS.contains(&long) {
                true => redact_url(v),
                false => v.clone(),
            })
            .collect();
        let from = match check.value_source(id) {
            Some(ValueSource::CommandLine) => "flag".to_owned(),
            Some(ValueSource::EnvVariable) => arg.get_env().map_or("environment".to_owned(), |e| {
                e.to_string_lossy().into_owned()
            }),
            Some(ValueSource::DefaultValue)
                if settings
                    .as_ref()
                    .is_some_and(|s| s.values.contains_key(long)) =>
            {
                "file".to_owned()
            }
            Some(_) => "default".to_owned(),
            None => "unset".to_owned(),
        };
        let key = long.replace('-', "_");
        match shown.as_slice() {
            [] => println!("# {key} (unset)"),
            [one] => println!("{key} = {}  # {from}", toml_string(one)),
            many => {
                let list: Vec<String> = many.iter().map(|v| toml_string(v)).collect();
                println!("{key} = [{}]  # {from}", list.join(", "));
            }
        }
    }
    if std::env::var_os("CONTEXTD_MASTER_KEY").is_some() {
        println!("# master key: from CONTEXTD_MASTER_KEY (not shown)");
    }
    println!("# the configuration is valid");
    Ok(())
}

/// A URL with its password replaced by `***`.
fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "(not a URL; not shown)".to_owned(),
    }
}

fn toml_string(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "\"\"".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settings_file_is_found_for_serve_and_config_check_only() {
        let args = |words: &[&str]| -> Vec<OsString> {
            std::iter::once("contextd")
                .chain(words.iter().copied())
                .map(OsString::from)
                .collect()
        };
        assert_eq!(
            settings_path(&args(&["serve", "--config", "a.toml"])),
            Some(PathBuf::from("a.toml"))
        );
        assert_eq!(
            settings_path(&args(&["config", "check", "--config=b.toml"])),
            Some(PathBuf::from("b.toml"))
        );
        assert_eq!(
            settings_path(&args(&["customers", "get", "--config", "c.toml"])),
            None
        );
    }

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/contextd"),
            "postgres://app:***@db:5432/contextd"
        );
        assert_eq!(redact_url("nats://n:4222"), "nats://n:4222");
        assert!(!redact_url("garbage s3cret").contains("s3cret"));
    }
}
