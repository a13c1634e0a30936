//! `contextd import`: an export (or an array of objects of the original wire shape) into the
//! partition of the credential, as import batches.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use contextd_client::proto::object::{BatchRequest, BatchResult, BatchStatus, ObjectInput};
use contextd_client::proto::transfer::{compat_object, Record, FORMAT};
use contextd_client::proto::{Kind, ObjectId};
use contextd_client::{Client, Error as SdkError};
use futures::StreamExt as _;
use serde::Serialize;
use serde_json::Value;

use super::{ImportArgs, KINDS};
use crate::client::exit::usage;
use crate::client::output::{progress, Output};
use crate::client::ClientArgs;

/// Failures printed one by one before the rest are only counted.
const SHOWN_FAILURES: usize = 50;
/// Attempts at one batch that failed as a whole (an import batch is safe to send again).
const BATCH_ATTEMPTS: u32 = 3;
/// Import batches of one kind sent at once.
const IN_FLIGHT: usize = 2;

/// What an import did, printed at the end (`--json`: as one object).
#[derive(Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    fields_created: u64,
    fields_existing: u64,
    fieldsets_created: u64,
    fieldsets_existing: u64,
    created: u64,
    existing: u64,
    failed: u64,
    /// Objects whose customerId or parentId is not in the file.
    links_outside: u64,
}

/// Where the objects of a file are: lines of JSON Lines, or the items of an original array.
enum Source {
    Lines {
        path: PathBuf,
        /// The (first, last) line numbers of each run of one kind, per kind.
        runs: Vec<(Kind, usize, usize)>,
    },
    Array(Vec<(usize, Kind, ObjectInput)>),
}

/// What a first read of the file found.
struct Scan {
    source: Source,
    /// Every object id in the file.
    ids: HashSet<String>,
    /// Objects per kind, in the order of [`KINDS`].
    totals: [u64; 4],
    /// The dictionary's lines.
    dictionary: Vec<Record>,
}

/// Loads a file into the partition of the credential.
pub async fn import(client: &ClientArgs, args: ImportArgs) -> anyhow::Result<()> {
    let sdk = client.connect()?;
    let out = client.output();
    let scan = scan(&args.file)?;
    let mut summary = Summary::default();
    load_dictionary(&sdk, &scan.dictionary, &mut summary).await?;
    let mut book = Book {
        bar: progress(out, Some(scan.totals.iter().sum())),
        summary,
        failures: Failures {
            unit: match scan.source {
                Source::Lines { .. } => "line",
                Source::Array(_) => "item",
            },
            ..Failures::default()
        },
        sent: HashSet::new(),
    };
    let size = usize::from(args.batch_size);
    let unit = book.failures.unit;
    for (k, kind) in KINDS.into_iter().enumerate() {
        if scan.totals[k] == 0 {
            continue;
        }
        book.bar.set_message(kind.plural().to_string());
        // Batches of one kind are independent: IN_FLIGHT at a time keep the server busy
        // while the next is read and encoded. A kind ends before the next (its children) starts.
        let mut in_flight = futures::stream::FuturesOrdered::new();
        let mut items = scan.source.items(kind)?;
        let mut exhausted = false;
        loop {
            if !exhausted && in_flight.len() < IN_FLIGHT {
                let batch = book.next_batch(kind, &mut items, &scan.ids, size)?;
                if batch.is_empty() {
                    exhausted = true;
                } else {
                    // A task of its own: it goes on while the next batch is read.
                    in_flight.push_back(tokio::spawn(send(sdk.clone(), kind, batch, unit)));
                }
                continue;
            }
            let Some(joined) = in_flight.next().await else {
                break;
            };
            for (lines, items, result) in joined.context("an import task failed")?? {
                book.count(kind, &lines, &items, &result);
            }
        }
    }
    book.finish(out)
}

/// The objects of one kind, numbered, as the file gives them.
type Items<'a> = Box<dyn Iterator<Item = anyhow::Result<(usize, ObjectInput)>> + 'a>;

/// A batch sent, with its line numbers, and what the server answered.
type Sent = (Vec<usize>, Vec<ObjectInput>, BatchResult);

/// What an import has done so far.
struct Book {
    summary: Summary,
    failures: Failures,
    bar: indicatif::ProgressBar,
    /// Ids sent: an id the file repeats (two exports concatenated) is sent once.
    sent: HashSet<String>,
}

impl Book {
    /// The next batch of up to `size` objects (empty at the end), noting repeated ids and
    /// links outside the file.
    fn next_batch(
        &mut self,
        kind: Kind,
        items: &mut Items<'_>,
        ids: &HashSet<String>,
        size: usize,
    ) -> anyhow::Result<Vec<(usize, ObjectInput)>> {
        let mut batch = Vec::with_capacity(size);
        while batch.len() < size {
            let Some(item) = items.next() else { break };
            let (line, input) = item?;
            if let Some(id) = input.id.as_ref().and_then(Value::as_str) {
                if !self.sent.insert(id.to_owned()) {
                    self.summary.existing += 1;
                    self.bar.inc(1);
                    continue;
                }
            }
            if links_outside(&input, ids) {
                self.failures.outside(line, kind, &input);
            }
            batch.push((line, input));
        }
        Ok(batch)
    }

    fn count(&mut self, kind: Kind, lines: &[usize], items: &[ObjectInput], result: &BatchResult) {
        for ((line, input), item) in lines.iter().zip(items).zip(&result.items) {
            match item.status {
                BatchStatus::Created => self.summary.created += 1,
                BatchStatus::Exists => self.summary.existing += 1,
                BatchStatus::Failed => {
                    self.summary.failed += 1;
                    self.failures
                        .failed(*line, kind, input, item.problem.as_ref());
                }
            }
        }
        self.bar.inc(items.len() as u64);
    }

    /// Prints the summary; an error if anything was not imported.
    fn finish(mut self, out: Output) -> anyhow::Result<()> {
        self.bar.finish_and_clear();
        self.summary.links_outside = self.failures.outside;
        self.failures.finish();
        let s = &self.summary;
        if out.is_json() {
            println!("{}", serde_json::to_string(s)?);
        } else {
            println!(
                "imported: {} created, {} already there, {} failed; {} linked outside the \
                 file; fields {} created, {} already there; field sets {} created, {} already \
                 there",
                s.created,
                s.existing,
                s.failed,
                s.links_outside,
                s.fields_created,
                s.fields_existing,
                s.fieldsets_created,
                s.fieldsets_existing
            );
        }
        if s.failed > 0 {
            anyhow::bail!(
                "{} objects were not imported (see the lines above); fix them and run the \
                 import again: what is there already is left alone",
                s.failed
            );
        }
        Ok(())
    }
}

/// Sends one import batch. One the server fails as a whole for a passing reason is sent
/// again (an import batch is safe to send again); one too large for the server's batch limit
/// is sent in halves.
async fn send(
    sdk: Client,
    kind: Kind,
    batch: Vec<(usize, ObjectInput)>,
    unit: &'static str,
) -> anyhow::Result<Vec<Sent>> {
    let mut queue = vec![batch];
    let mut sent = Vec::new();
    while let Some(chunk) = queue.pop() {
        let (lines, items): (Vec<usize>, Vec<ObjectInput>) = chunk.into_iter().unzip();
        let request = BatchRequest {
            items,
            import: true,
        };
        let result = match send_one(&sdk, kind, &request).await {
            Err(SdkError::TooLarge { .. }) if request.items.len() > 1 => {
                let mut halves: Vec<(usize, ObjectInput)> =
                    lines.into_iter().zip(request.items).collect();
                let second = halves.split_off(halves.len() / 2);
                queue.push(second);
                queue.push(halves);
                continue;
            }
            Err(e) => {
                let first = lines.first().copied().unwrap_or_default();
                return Err(anyhow::Error::from(e).context(format!(
                    "the batch of {} from {unit} {first} was refused",
                    kind.plural()
                )));
            }
            Ok(r) => r,
        };
        if result.items.len() != request.items.len() {
            anyhow::bail!(
                "the server answered {} results for a batch of {}",
                result.items.len(),
                request.items.len()
            );
        }
        sent.push((lines, request.items, result));
    }
    Ok(sent)
}

/// One batch, sent again (after a pause) while it fails for a reason that may pass.
async fn send_one(
    sdk: &Client,
    kind: Kind,
    request: &BatchRequest,
) -> Result<BatchResult, SdkError> {
    let mut attempt = 1;
    loop {
        match sdk.create_batch(kind, request).await {
            Err(e) if attempt < BATCH_ATTEMPTS && retryable(&e) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
            other => return other,
        }
    }
}

/// Reads the file once, changing nothing: the dictionary's lines, the objects' ids and counts
/// per kind, and (for JSON Lines) where each kind's lines are. Any line that can't be read
/// stops the import before anything is written.
fn scan(path: &Path) -> anyhow::Result<Scan> {
    let mut found = Scan {
        source: Source::Array(Vec::new()),
        ids: HashSet::new(),
        totals: [0; 4],
        dictionary: Vec::new(),
    };
    if starts_with_array(path)? {
        let text = read_file(path)?;
        let values: Vec<Value> = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => return usage(format!("{} is not a JSON array: {e}", path.display())),
        };
        let mut items = Vec::with_capacity(values.len());
        for (i, value) in values.into_iter().enumerate() {
            match compat_object(value) {
                Ok((kind, input)) => {
                    found.count(kind, &input);
                    items.push((i + 1, kind, input));
                }
                Err(e) => return usage(format!("{} item {}: {e}", path.display(), i + 1)),
            }
        }
        found.source = Source::Array(items);
        return Ok(found);
    }
    let mut runs: Vec<(Kind, usize, usize)> = Vec::new();
    for (i, line) in lines(path)?.enumerate() {
        let n = i + 1;
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match Record::parse(&line) {
            Ok(Record::Header(h)) if h.format > FORMAT => {
                return usage(format!(
                    "{} is of format {}; this contextd reads format {FORMAT}: import it with a \
                     newer contextd",
                    path.display(),
                    h.format
                ))
            }
            Ok(Record::Header(_)) => {}
            Ok(Record::Object(kind, input)) => {
                found.count(kind, &input);
                match runs.last_mut() {
                    Some((k, _, last)) if *k == kind => *last = n,
                    _ => runs.push((kind, n, n)),
                }
            }
            Ok(record) => found.dictionary.push(record),
            Err(e) => return usage(format!("{} line {n}: {e}", path.display())),
        }
    }
    found.source = Source::Lines {
        path: path.to_owned(),
        runs,
    };
    Ok(found)
}

impl Scan {
    fn count(&mut self, kind: Kind, input: &ObjectInput) {
        self.totals[kind_index(kind)] += 1;
        if let Some(id) = input.id.as_ref().and_then(Value::as_str) {
            self.ids.insert(id.to_owned());
        }
    }
}

/// Creates the file's fields, then its field sets, unless one of that id exists. A field
/// that exists with another type or classification stops the import: values classified PII
/// in the file must not land in a field stored in the clear.
async fn load_dictionary(
    sdk: &Client,
    dictionary: &[Record],
    summary: &mut Summary,
) -> anyhow::Result<()> {
    for record in dictionary {
        let Record::Field(field) = record else {
            continue;
        };
        match sdk.field(&field.id).await {
            Ok(there)
                if there.data_type != field.data_type
                    || there.classification != field.classification =>
            {
                return usage(format!(
                    "field {} is {:?} {:?} here but {:?} {:?} in the file; align the two \
                     (or rename one) before importing",
                    field.id,
                    there.classification,
                    there.data_type,
                    field.classification,
                    field.data_type
                ))
            }
            Ok(_) => summary.fields_existing += 1,
            Err(SdkError::NotFound { .. }) => {
                sdk.create_field(field).await?;
                summary.fields_created += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    for record in dictionary {
        let Record::FieldSet(set) = record else {
            continue;
        };
        match sdk.fieldset(&set.id).await {
            Ok(there) => {
                summary.fieldsets_existing += 1;
                let missing: Vec<&String> = set
                    .fields
                    .iter()
                    .filter(|f| !there.fields.contains(f))
                    .collect();
                if !missing.is_empty() {
                    eprintln!(
                        "field set {} here lacks {:?} of the file's: objects with values of \
                         them will be refused",
                        set.id, missing
                    );
                }
            }
            Err(SdkError::NotFound { .. }) => {
                sdk.create_fieldset(set).await?;
                summary.fieldsets_created += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

impl Source {
    /// The objects of one kind, with their line (or item) numbers.
    fn items(&self, kind: Kind) -> anyhow::Result<Items<'_>> {
        match self {
            Source::Array(items) => Ok(Box::new(
                items
                    .iter()
                    .filter(move |(_, k, _)| *k == kind)
                    .map(|(n, _, input)| Ok((*n, input.clone()))),
            )),
            Source::Lines { path, runs } => {
                let wanted: Vec<(usize, usize)> = runs
                    .iter()
                    .filter(|(k, _, _)| *k == kind)
                    .map(|(_, first, last)| (*first, *last))
                    .collect();
                let lines = lines(path)?.enumerate().filter_map(move |(i, line)| {
                    let n = i + 1;
                    if !wanted
                        .iter()
                        .any(|(first, last)| (*first..=*last).contains(&n))
                    {
                        return None;
                    }
                    let line = match line {
                        Ok(l) => l,
                        Err(e) => return Some(Err(e.into())),
                    };
                    // Within a run, only this kind's objects (blank and dictionary lines may
                    // sit between them).
                    match Record::parse(&line) {
                        Ok(Record::Object(k, input)) if k == kind => Some(Ok((n, *input))),
                        Ok(_) => None,
                        Err(_) if line.trim().is_empty() => None,
                        Err(e) => Some(Err(anyhow::anyhow!("line {n}: {e}"))),
                    }
                });
                Ok(Box::new(lines))
            }
        }
    }
}

/// Whether a batch failed as a whole for a reason that may pass (the server busy, contended,
/// unreachable): sending the same import batch again is safe.
fn retryable(e: &SdkError) -> bool {
    matches!(
        e,
        SdkError::Conflict { .. }
            | SdkError::Server { .. }
            | SdkError::RateLimited { .. }
            | SdkError::Timeout { .. }
            | SdkError::Unreachable { .. }
    )
}

/// Whether an object names a customer or parent that is not in the file.
fn links_outside(input: &ObjectInput, ids: &HashSet<String>) -> bool {
    let own = input.id.as_ref().and_then(Value::as_str);
    [&input.customer_id, &input.parent_id]
        .into_iter()
        .flatten()
        .any(|link| Some(link.as_str()) != own && !ids.contains(link))
}

/// The failures of an import, printed as they come on standard error (the first
/// [`SHOWN_FAILURES`] of each sort), then counted.
#[derive(Default)]
struct Failures {
    failed: u64,
    outside: u64,
    /// What the numbers count: `line` (JSON Lines) or `item` (an array).
    unit: &'static str,
}

impl Failures {
    fn failed(
        &mut self,
        line: usize,
        kind: Kind,
        input: &ObjectInput,
        problem: Option<&contextd_client::proto::error::Problem>,
    ) {
        self.failed += 1;
        if self.failed as usize > SHOWN_FAILURES {
            return;
        }
        let why = match problem {
            Some(p) if !p.errors.is_empty() => p
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; "),
            Some(p) => p.detail.clone(),
            None => "refused".into(),
        };
        eprintln!(
            "{} {line}: {kind} {}: not imported: {why}",
            self.unit,
            id_of(input)
        );
    }

    fn outside(&mut self, line: usize, kind: Kind, input: &ObjectInput) {
        self.outside += 1;
        if self.outside as usize > SHOWN_FAILURES {
            return;
        }
        let links: Vec<String> = [
            ("customerId", &input.customer_id),
            ("parentId", &input.parent_id),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.as_ref().map(|v| format!("{name} {v}")))
        .collect();
        eprintln!(
            "{} {line}: {kind} {} links outside the file ({}): imported only if this \
             partition holds it",
            self.unit,
            id_of(input),
            links.join(", ")
        );
    }

    fn finish(&self) {
        for (n, what) in [
            (self.failed, "failures"),
            (self.outside, "links outside the file"),
        ] {
            if n as usize > SHOWN_FAILURES {
                eprintln!("… and {} more {what}", n as usize - SHOWN_FAILURES);
            }
        }
    }
}

fn id_of(input: &ObjectInput) -> String {
    match input.id.as_ref().and_then(Value::as_str) {
        Some(id) => ObjectId::parse(id).map_or_else(|_| id.to_owned(), |i| i.to_string()),
        None => "(no id)".into(),
    }
}

fn kind_index(kind: Kind) -> usize {
    KINDS.iter().position(|k| *k == kind).unwrap_or(0)
}

/// Whether the file's first non-blank character opens a JSON array.
fn starts_with_array(path: &Path) -> anyhow::Result<bool> {
    for line in lines(path)? {
        let line = line?;
        if let Some(c) = line.trim_start().chars().next() {
            return Ok(c == '[');
        }
    }
    usage(format!("{} is empty", path.display()))
}

fn lines(path: &Path) -> anyhow::Result<std::io::Lines<BufReader<std::fs::File>>> {
    match std::fs::File::open(path) {
        Ok(f) => Ok(BufReader::new(f).lines()),
        Err(e) => usage(format!("cannot read {}: {e}", path.display())),
    }
}

fn read_file(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}
