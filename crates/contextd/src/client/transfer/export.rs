//! `contextd export`: the partition of the credential as JSON Lines on standard output.

use std::collections::HashSet;
use std::io::{BufWriter, Write};

use anyhow::Context as _;
use clap::ValueEnum;
use contextd_client::proto::object::SearchRequest;
use contextd_client::proto::transfer::{ExportHeader, Record, FORMAT};
use contextd_client::proto::{Kind, ObjectId};
use contextd_client::Client;

use super::{ExportArgs, Part};
use crate::client::output::progress;
use crate::client::ClientArgs;

/// Objects per search page of an export (the search maximum).
const PAGE: usize = 200;
/// Passes of an export over a kind: the first, then over what changed during the one before.
const EXPORT_PASSES: usize = 5;

/// Writes the partition of the credential as JSON Lines on standard output.
pub async fn export(client: &ClientArgs, args: ExportArgs) -> anyhow::Result<()> {
    let sdk = client.connect()?;
    let out = client.output();
    let mut parts = if args.kinds.is_empty() {
        Part::value_variants().to_vec()
    } else {
        args.kinds
    };
    parts.sort_by_key(|p| *p as u8);
    parts.dedup();
    let me = sdk.whoami().await?;
    let header = ExportHeader {
        format: FORMAT,
        org_id: me.org_id.clone(),
        partition: me.partition.as_str().to_owned(),
        exported_at: chrono::Utc::now(),
        kinds: parts.iter().map(|p| p.name().to_owned()).collect(),
    };
    let stdout = std::io::stdout();
    let mut w = BufWriter::new(stdout.lock());
    writeln!(w, "{}", Record::header_line(&header)?)?;
    let bar = progress(out, None);
    let mut counts = Vec::new();
    for part in parts {
        let n = match part.kind() {
            None => export_dictionary(&sdk, &mut w).await?,
            Some(kind) => export_kind(&sdk, kind, &mut w, &bar).await?,
        };
        counts.push((part.name(), n));
    }
    w.flush().context("cannot write standard output")?;
    bar.finish_and_clear();
    let summary: Vec<String> = counts.iter().map(|(p, n)| format!("{n} {p}")).collect();
    eprintln!("exported {}", summary.join(", "));
    Ok(())
}

async fn export_dictionary(sdk: &Client, w: &mut impl Write) -> anyhow::Result<u64> {
    let mut n = 0;
    for field in sdk.fields().await?.iter().filter(|f| !f.base) {
        writeln!(w, "{}", Record::field_line(field)?)?;
        n += 1;
    }
    for set in sdk.fieldsets().await?.iter().filter(|s| !s.base) {
        writeln!(w, "{}", Record::fieldset_line(set)?)?;
        n += 1;
    }
    Ok(n)
}

/// Writes every object of a kind: a pass through all of them, newest `lastUpdated` first, then
/// passes over those written since the previous pass began (an object updated meanwhile moves
/// ahead of the cursor and would be missed), until one finds nothing new.
async fn export_kind(
    sdk: &Client,
    kind: Kind,
    w: &mut impl Write,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<u64> {
    let mut seen: HashSet<ObjectId> = HashSet::new();
    let mut since: Option<String> = None;
    for pass in 0..EXPORT_PASSES {
        let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut request = SearchRequest {
            limit: Some(PAGE),
            updated_from: since.take(),
            ..SearchRequest::default()
        };
        let before = seen.len();
        loop {
            let page = sdk.search(kind, &request).await?;
            for o in page.items.unwrap_or_default() {
                if !o.withheld.is_empty() {
                    anyhow::bail!(
                        "this credential is not shown the values of {} of {kind} {}; export \
                         with an admin token",
                        o.withheld.join(", "),
                        o.id
                    );
                }
                if seen.insert(o.id) {
                    writeln!(w, "{}", serde_json::to_string(&o)?)?;
                }
            }
            bar.set_message(format!("exporting {}: {}", kind.plural(), seen.len()));
            match page.next_cursor {
                Some(cursor) => request.cursor = Some(cursor),
                None => break,
            }
        }
        if pass > 0 && seen.len() == before {
            break;
        }
        since = Some(started);
    }
    Ok(seen.len() as u64)
}
