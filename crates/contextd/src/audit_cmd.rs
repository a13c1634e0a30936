//! `contextd audit verify` and `contextd audit archive`: operator commands on the audit log,
//! run on the database itself (beside running servers or not), never over HTTP. They need
//! neither the key store nor the master key: the audit log holds no values.
//!
//! `verify` checks every hash chain, segment by segment, and names the first link that does
//! not hold (exit status 1); with `--file` it checks an archive file instead. `archive`
//! writes each segment older than `--before` as `DIR/audit-YYYY-MM.jsonl` (written aside,
//! synced, renamed, read back and verified) and, with `--drop`, only then drops the segment.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use chrono::Utc;
use contextd_core::audit_admin::{self, Archived, VerifyReport};
use contextd_core::store::{Month, Store};
use serde_json::json;

use crate::startup::{self, StorageArgs};

/// `contextd audit verify|archive`.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chains, segment by segment, against the recorded heads;
    /// exit status 0 when whole, 1 naming the first broken link (month, organization,
    /// partition, entry number, entry id, what is wrong).
    Verify(VerifyArgs),
    /// Write each segment (month) older than --before to DIR/audit-YYYY-MM.jsonl, JSON Lines
    /// that verify on their own (`contextd audit verify --file`); with --drop, drop each
    /// segment once its file is written, synced and verified.
    Archive(ArchiveArgs),
}

/// `contextd audit verify` (`--json`, the client commands' global flag, prints one JSON
/// object).
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Verify this archive file (`contextd audit archive` wrote it) instead of the database.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// `contextd audit archive`.
#[derive(Debug, clap::Args)]
pub struct ArchiveArgs {
    /// Archive the segments of the months before this one (YYYY-MM; never the current month).
    #[arg(long, value_name = "YYYY-MM", value_parser = parse_month)]
    pub before: Month,
    /// The directory to write the files into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Drop each segment from the database once its file is written, synced and verified.
    #[arg(long)]
    pub drop: bool,
    #[command(flatten)]
    pub storage: StorageArgs,
}

fn parse_month(s: &str) -> Result<Month, String> {
    Month::parse(s).map_err(|e| e.to_string())
}

/// Runs an audit command (`json`: print one JSON object); the exit status of `verify` says
/// whether the log is whole.
pub async fn run(command: AuditCommand, json: bool) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify(args) => verify(args, json).await,
        AuditCommand::Archive(args) => archive(args).await.map(|()| ExitCode::SUCCESS),
    }
}

async fn verify(args: VerifyArgs, json: bool) -> anyhow::Result<ExitCode> {
    let report = match &args.file {
        Some(path) => {
            let file =
                File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
            audit_admin::verify_archive(BufReader::new(file))
                .with_context(|| format!("{} is not an audit archive", path.display()))?
        }
        None => {
            let store = startup::open_store(&args.storage).await?;
            audit_admin::verify(&*store)
                .await
                .context("cannot read the audit log")?
        }
    };
    if json {
        println!("{}", report_json(&report));
    } else {
        println!("{}", report_text(&report));
    }
    Ok(if report.is_whole() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn report_json(report: &VerifyReport) -> serde_json::Value {
    json!({
        "whole": report.is_whole(),
        "segments": report.segments,
        "entries": report.entries,
        "chains": report.chains,
        "firstBroken": report.first_broken.as_ref().map(|b| json!({
            "month": b.month,
            "org": b.scope.org,
            "partition": b.scope.partition,
            "seq": b.seq,
            "entryId": b.entry_id,
            "reason": b.reason.as_str(),
            "message": b.reason.describe(),
        })),
    })
}

fn report_text(report: &VerifyReport) -> String {
    let counts = format!(
        "{} segment{}, {} entr{}, {} chain{}",
        report.segments,
        plural(report.segments, "", "s"),
        report.entries,
        plural(report.entries, "y", "ies"),
        report.chains,
        plural(report.chains, "", "s"),
    );
    match &report.first_broken {
        None => format!("the audit log is whole: {counts}"),
        Some(broken) => format!(
            "the audit log is BROKEN at {broken}\n({counts} checked before it; every link \
             before it holds)"
        ),
    }
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

async fn archive(args: ArchiveArgs) -> anyhow::Result<()> {
    let store = startup::open_store(&args.storage).await?;
    fs::create_dir_all(&args.to).with_context(|| format!("cannot create {}", args.to.display()))?;
    let segments = audit_admin::segments_before(&*store, args.before, Utc::now())
        .await
        .context("cannot list the audit segments")?;
    if segments.is_empty() {
        println!("no audit segment before {}", args.before);
        return Ok(());
    }
    for segment in segments {
        let month = segment.month;
        let path = args.to.join(format!("audit-{month}.jsonl"));
        let archived = write_archive(&*store, month, &path).await?;
        // Read back what was written: nothing is dropped that could not be verified later.
        let file = File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let report = audit_admin::verify_archive(BufReader::new(file))
            .with_context(|| format!("{} does not read back", path.display()))?;
        if report.entries != archived.entries {
            bail!(
                "{} holds {} entries, {} were written; segment {month} kept",
                path.display(),
                report.entries,
                archived.entries
            );
        }
        if let Some(broken) = &report.first_broken {
            bail!(
                "segment {month} does not verify ({broken}); it was written to {} and kept",
                path.display()
            );
        }
        let mut done = format!(
            "{month}: {} entries of {} chains written to {}",
            archived.entries,
            archived.chains,
            path.display()
        );
        if args.drop {
            store
                .drop_audit_segment(month)
                .await
                .with_context(|| format!("cannot drop segment {month}"))?;
            done.push_str("; segment dropped");
        }
        println!("{done}");
    }
    Ok(())
}

/// Writes the segment beside `path`, syncs it, then renames it into place (and syncs the
/// directory): `path` is either absent or the whole segment.
async fn write_archive(store: &dyn Store, month: Month, path: &Path) -> anyhow::Result<Archived> {
    let partial = path.with_extension("jsonl.partial");
    let file =
        File::create(&partial).with_context(|| format!("cannot write {}", partial.display()))?;
    let mut out = BufWriter::new(file);
    let archived = audit_admin::archive_segment(store, month, &mut out)
        .await
        .with_context(|| format!("cannot archive segment {month}"))?;
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("cannot write {}", partial.display()))?;
    file.sync_all()
        .with_context(|| format!("cannot sync {}", partial.display()))?;
    drop(file);
    fs::rename(&partial, path)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), path.display()))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir).with_context(|| format!("cannot sync {}", dir.display()))?;
    }
    Ok(archived)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}
