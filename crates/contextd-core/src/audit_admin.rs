//! Keeping the audit log for years: verifying its hash chains ([`verify`]), archiving a
//! segment as JSON Lines that can be verified on their own ([`archive_segment`],
//! [`verify_archive`]), and choosing the segments past retention ([`retention`], [`prune`]).
//!
//! Everything goes through [`AuditStore`]; no SQL here. How the chains and segments are kept
//! is described in [`crate::store::AuditStore`]'s module.
//!
//! An archive file holds one segment: a first line `{"type":"segment","month":"2024-05",…}`,
//! then one line per entry (`"type":"entry"`, every field of the entry with its `seq` and its
//! `hash` in hex), chain after chain, each in `seq` order, and a last line
//! (`"type":"heads"`) with where each chain enters the segment and the number of entries.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::{BufRead, Write};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Role;
use crate::ids::{OrgId, Partition, Scope};
use crate::object::Kind;
use crate::store::{
    chain_hash, check_droppable, AuditEntry, AuditSegment, AuditStore, ChainHash, ChainedEntry,
    Month, SegmentHead, SegmentPosition, StoreError, GENESIS,
};

/// How long audit segments are kept unless configured otherwise: 400 days.
pub fn default_retention() -> chrono::Duration {
    chrono::Duration::days(400)
}

/// Entries read from the store at a time.
const PAGE: usize = 1000;

/// The format tag of an archive file's first line.
pub const ARCHIVE_FORMAT: &str = "contextd-audit-1";

/// What keeping the audit log can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AuditAdminError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing or reading an archive failed.
    #[error("archive file: {0}")]
    Io(#[from] std::io::Error),
    /// An archive line is not what the format says.
    #[error("line {line} of the archive: {reason}")]
    Format {
        /// 1-based.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
}

/// What is wrong at a broken link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Break {
    /// The entry differs from what its chain recorded: its content or its hash was changed.
    Altered,
    /// The entry is missing: its chain jumps past it, or ends before its recorded head.
    Missing,
    /// An entry its chain has no place for: a `seq` already passed (duplicated or inserted).
    Unexpected,
    /// A segment's record of where the chain enters it disagrees with the chain.
    SegmentHead,
    /// The chain's recorded head disagrees with its newest entry.
    Head,
}

impl Break {
    /// A stable name, for JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Break::Altered => "altered",
            Break::Missing => "missing",
            Break::Unexpected => "unexpected",
            Break::SegmentHead => "segment-head",
            Break::Head => "head",
        }
    }

    /// What it means, in a sentence.
    pub fn describe(self) -> &'static str {
        match self {
            Break::Altered => "the entry differs from what its chain recorded (altered)",
            Break::Missing => "the entry is missing (a gap in the chain)",
            Break::Unexpected => "the chain has no place for this entry (duplicated or inserted)",
            Break::SegmentHead => {
                "the segment's record of where the chain enters it disagrees with the chain"
            }
            Break::Head => "the chain's recorded head disagrees with its newest entry",
        }
    }
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// The first place a chain does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokenLink {
    /// The segment it was found in.
    pub month: Month,
    /// The chain.
    pub scope: Scope,
    /// The entry's number in the chain (for a gap: the first missing one).
    pub seq: u64,
    /// The entry's id, when there is an entry (not for a gap).
    pub entry_id: Option<Uuid>,
    /// What is wrong.
    pub reason: Break,
}

impl fmt::Display for BrokenLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "segment {}, org {}, partition {}, entry {}",
            self.month, self.scope.org, self.scope.partition, self.seq
        )?;
        if let Some(id) = self.entry_id {
            write!(f, " (id {id})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// What a verification found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segments read.
    pub segments: u64,
    /// Entries whose links were checked (up to the first broken one).
    pub entries: u64,
    /// Chains (organization and partition pairs).
    pub chains: u64,
    /// The first link that does not hold; `None`: the log is whole.
    pub first_broken: Option<BrokenLink>,
}

impl VerifyReport {
    /// Whether every link held.
    pub fn is_whole(&self) -> bool {
        self.first_broken.is_none()
    }
}

/// The last link verified of a chain.
#[derive(Clone, Copy)]
struct Link {
    seq: u64,
    hash: ChainHash,
    month: Month,
}

fn broken(
    month: Month,
    scope: Scope,
    seq: u64,
    entry_id: Option<Uuid>,
    reason: Break,
) -> Option<BrokenLink> {
    Some(BrokenLink {
        month,
        scope,
        seq,
        entry_id,
        reason,
    })
}

/// Chains in a stable order, for reports that do not depend on a map's.
fn chain_key(scope: &Scope) -> (OrgId, Partition) {
    (scope.org, scope.partition)
}

/// Checks every chain of the audit log: segment by segment, oldest first, that each chain
/// enters a segment where its previous segment left it (or, in the oldest segment kept, where
/// that segment's record says), that its entries follow one another without gap and each
/// hash is [`chain_hash`] of the one before, and that each chain ends at its recorded head.
/// Stops at the first link that does not hold.
///
/// Safe while servers append: the heads are read first, and what is appended after (entries
/// past a chain's head then, chains begun since) is left for the next run — a chain with
/// entries but no head, then or at the end, is reported.
pub async fn verify<S: AuditStore + ?Sized>(store: &S) -> Result<VerifyReport, StoreError> {
    // A segment dropped by retention or an archive while it was read would look like a
    // break: a report of a break is only kept if the segments did not change meanwhile.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let months = store.audit_months().await?;
        let report = verify_once(store).await?;
        if report.first_broken.is_none() || attempts == 3 || store.audit_months().await? == months {
            return Ok(report);
        }
    }
}

async fn verify_once<S: AuditStore + ?Sized>(store: &S) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    let mut heads = store.audit_heads().await?;
    heads.sort_by_key(|h| chain_key(&h.scope));
    report.chains = heads.len() as u64;
    let mut walk = Walk {
        until: heads.iter().map(|h| (h.scope, h.seq)).collect(),
        links: HashMap::new(),
        headless: BTreeMap::new(),
    };
    for segment in store.audit_segments().await? {
        report.segments += 1;
        let (entries, broken) = verify_segment(store, segment.month, &mut walk).await?;
        report.entries += entries;
        if broken.is_some() {
            report.first_broken = broken;
            return Ok(report);
        }
    }
    for head in &heads {
        let Some(last) = walk.links.remove(&head.scope) else {
            // Every segment it wrote to has been dropped: nothing left to check.
            continue;
        };
        report.first_broken = if head.seq > last.seq {
            broken(last.month, head.scope, last.seq + 1, None, Break::Missing)
        } else if head.hash != last.hash {
            broken(last.month, head.scope, head.seq, None, Break::Head)
        } else {
            None
        };
        if report.first_broken.is_some() {
            return Ok(report);
        }
    }
    if !walk.headless.is_empty() {
        // Chains begun during the walk have a head by now; others never had one.
        let now: HashSet<Scope> = store
            .audit_heads()
            .await?
            .into_iter()
            .map(|h| h.scope)
            .collect();
        report.first_broken = walk
            .headless
            .into_values()
            .find(|b| !now.contains(&b.scope));
    }
    Ok(report)
}

/// What a verification carries from segment to segment.
struct Walk {
    /// Each chain's head when the walk began: entries past it are left alone.
    until: HashMap<Scope, u64>,
    /// The last link verified of each chain.
    links: HashMap<Scope, Link>,
    /// Chains met without a head when the walk began, with their first entry met.
    headless: BTreeMap<(OrgId, Partition), BrokenLink>,
}

impl Walk {
    /// Whether entry `seq` of `scope` is left for a later run (appended after the walk
    /// began); notes a chain that had no head then.
    fn later(&mut self, month: Month, scope: Scope, seq: u64, id: Option<Uuid>) -> bool {
        match self.until.get(&scope) {
            Some(until) => seq > *until,
            None => {
                self.headless
                    .entry(chain_key(&scope))
                    .or_insert(BrokenLink {
                        month,
                        scope,
                        seq,
                        entry_id: id,
                        reason: Break::Head,
                    });
                true
            }
        }
    }
}

/// Verifies one segment, continuing each chain from the walk's links and leaving it at the
/// segment's last entry; returns the entries checked and the first broken link.
async fn verify_segment<S: AuditStore + ?Sized>(
    store: &S,
    month: Month,
    walk: &mut Walk,
) -> Result<(u64, Option<BrokenLink>), StoreError> {
    let mut heads: Vec<SegmentHead> = store.audit_segment_heads(month).await?;
    heads.sort_by_key(|h| chain_key(&h.scope));
    heads.retain(|h| !walk.later(month, h.scope, h.first_seq, None));
    // Where each chain stands in this segment: the next seq and the hash it chains to.
    let mut at: HashMap<Scope, (u64, ChainHash)> = HashMap::new();
    for head in &heads {
        let entered = match walk.links.get(&head.scope) {
            Some(last) if head.first_seq > last.seq + 1 => {
                broken(last.month, head.scope, last.seq + 1, None, Break::Missing)
            }
            Some(last) if head.first_seq <= last.seq || head.prev_hash != last.hash => {
                broken(month, head.scope, head.first_seq, None, Break::SegmentHead)
            }
            None if head.first_seq == 0 || (head.first_seq == 1 && head.prev_hash != GENESIS) => {
                broken(month, head.scope, head.first_seq, None, Break::SegmentHead)
            }
            _ => None,
        };
        if entered.is_some() {
            return Ok((0, entered));
        }
        at.insert(head.scope, (head.first_seq, head.prev_hash));
    }
    let mut checked = 0;
    let mut seen: HashSet<Scope> = HashSet::new();
    let mut after = None;
    loop {
        let page = store.audit_segment_entries(month, after, PAGE).await?;
        for e in &page {
            let scope = e.entry.scope;
            if walk.later(month, scope, e.seq, Some(e.entry.id)) {
                continue;
            }
            let Some((next, prev)) = at.get_mut(&scope) else {
                return Ok((
                    checked,
                    broken(month, scope, e.seq, Some(e.entry.id), Break::SegmentHead),
                ));
            };
            let link = if e.seq > *next {
                broken(month, scope, *next, None, Break::Missing)
            } else if e.seq < *next {
                broken(month, scope, e.seq, Some(e.entry.id), Break::Unexpected)
            } else if chain_hash(prev, e.seq, &e.entry) != e.hash {
                broken(month, scope, e.seq, Some(e.entry.id), Break::Altered)
            } else {
                None
            };
            if link.is_some() {
                return Ok((checked, link));
            }
            *next = e.seq + 1;
            *prev = e.hash;
            seen.insert(scope);
            checked += 1;
        }
        match page.last() {
            Some(last) if page.len() == PAGE => after = Some(SegmentPosition::after(last)),
            _ => break,
        }
    }
    for head in &heads {
        if !seen.contains(&head.scope) {
            // The segment says the chain entered it, but none of its entries are there.
            return Ok((
                checked,
                broken(month, head.scope, head.first_seq, None, Break::Missing),
            ));
        }
        let (next, hash) = at[&head.scope];
        walk.links.insert(
            head.scope,
            Link {
                seq: next - 1,
                hash,
                month,
            },
        );
    }
    Ok((checked, None))
}

/// The segments older than `before` (and than the current month), oldest first.
pub async fn segments_before<S: AuditStore + ?Sized>(
    store: &S,
    before: Month,
    now: DateTime<Utc>,
) -> Result<Vec<AuditSegment>, StoreError> {
    let current = Month::of(now);
    Ok(store
        .audit_segments()
        .await?
        .into_iter()
        .filter(|s| s.month < before && s.month < current)
        .collect())
}

/// The segments whose whole month ended more than `keep` before `now`, oldest first.
pub async fn retention<S: AuditStore + ?Sized>(
    store: &S,
    now: DateTime<Utc>,
    keep: chrono::Duration,
) -> Result<Vec<Month>, StoreError> {
    Ok(past_retention(store.audit_months().await?, now, keep))
}

/// Of `months`, those that ended more than `keep` before `now` (never the current one).
pub fn past_retention(
    months: impl IntoIterator<Item = Month>,
    now: DateTime<Utc>,
    keep: chrono::Duration,
) -> Vec<Month> {
    let Some(cutoff) = now.checked_sub_signed(keep) else {
        return Vec::new();
    };
    let current = Month::of(now);
    months
        .into_iter()
        .filter(|m| *m < current && m.end() <= cutoff && check_droppable(*m, now).is_ok())
        .collect()
}

/// Drops the segments past retention ([`retention`]); returns them.
pub async fn prune<S: AuditStore + ?Sized>(
    store: &S,
    now: DateTime<Utc>,
    keep: chrono::Duration,
) -> Result<Vec<Month>, StoreError> {
    let months = retention(store, now, keep).await?;
    for month in &months {
        store.drop_audit_segment(*month).await?;
    }
    Ok(months)
}

/// The lines of an archive file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Line {
    Segment(ArchiveStart),
    Entry(ArchivedEntry),
    Heads(ArchiveEnd),
}

/// The first line: which segment, in which format.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchiveStart {
    month: Month,
    format: String,
}

/// One entry, every field of it, with its place in its chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchivedEntry {
    /// Its number in its chain.
    pub seq: u64,
    /// Its link, hex.
    pub hash: String,
    /// Entry id.
    pub id: Uuid,
    /// Organization.
    pub org: OrgId,
    /// Partition.
    pub partition: Partition,
    /// When.
    #[serde(with = "crate::time::rfc3339_ms")]
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: Option<Uuid>,
    /// Their role.
    pub actor_role: Option<Role>,
    /// What.
    pub action: String,
    /// Object kind.
    pub object_type: Option<Kind>,
    /// Object or resource id.
    pub object_id: Option<String>,
    /// Field ids.
    pub fields: Vec<String>,
    /// Extra detail.
    pub detail: String,
}

impl ArchivedEntry {
    /// The archived form of a stored entry.
    pub fn from_chained(e: &ChainedEntry) -> Self {
        let entry = &e.entry;
        Self {
            seq: e.seq,
            hash: hex(&e.hash),
            id: entry.id,
            org: entry.scope.org,
            partition: entry.scope.partition,
            at: entry.at,
            actor: entry.actor,
            actor_role: entry.actor_role,
            action: entry.action.clone(),
            object_type: entry.object_kind,
            object_id: entry.object_id.clone(),
            fields: entry.fields.clone(),
            detail: entry.detail.clone(),
        }
    }

    /// The stored entry it is, or `None` if its hash is not 64 hex digits.
    pub fn to_chained(&self) -> Option<ChainedEntry> {
        Some(ChainedEntry {
            entry: AuditEntry {
                id: self.id,
                scope: Scope {
                    org: self.org,
                    partition: self.partition,
                },
                at: self.at,
                actor: self.actor,
                actor_role: self.actor_role,
                action: self.action.clone(),
                object_kind: self.object_type,
                object_id: self.object_id.clone(),
                fields: self.fields.clone(),
                detail: self.detail.clone(),
            },
            seq: self.seq,
            hash: unhex(&self.hash)?,
        })
    }
}

/// The last line: where each chain enters the segment, and how many entries came before.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchiveEnd {
    month: Month,
    entries: u64,
    heads: Vec<ArchivedHead>,
}

/// Where a chain enters the segment.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchivedHead {
    org: OrgId,
    partition: Partition,
    first_seq: u64,
    prev_hash: String,
}

/// What [`archive_segment`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Archived {
    /// The segment.
    pub month: Month,
    /// Entries written.
    pub entries: u64,
    /// Chains with entries in it.
    pub chains: u64,
}

/// Writes segment `month` as JSON Lines to `out` (see the module documentation). The caller
/// makes it durable (flush, fsync) before dropping the segment.
pub async fn archive_segment<S: AuditStore + ?Sized, W: Write + ?Sized>(
    store: &S,
    month: Month,
    out: &mut W,
) -> Result<Archived, AuditAdminError> {
    write_line(
        out,
        &Line::Segment(ArchiveStart {
            month,
            format: ARCHIVE_FORMAT.to_owned(),
        }),
    )?;
    let mut entries = 0;
    let mut after = None;
    loop {
        let page = store.audit_segment_entries(month, after, PAGE).await?;
        for e in &page {
            write_line(out, &Line::Entry(ArchivedEntry::from_chained(e)))?;
            entries += 1;
        }
        match page.last() {
            Some(last) if page.len() == PAGE => after = Some(SegmentPosition::after(last)),
            _ => break,
        }
    }
    let mut heads = store.audit_segment_heads(month).await?;
    heads.sort_by_key(|h| chain_key(&h.scope));
    let chains = heads.len() as u64;
    write_line(
        out,
        &Line::Heads(ArchiveEnd {
            month,
            entries,
            heads: heads
                .iter()
                .map(|h| ArchivedHead {
                    org: h.scope.org,
                    partition: h.scope.partition,
                    first_seq: h.first_seq,
                    prev_hash: hex(&h.prev_hash),
                })
                .collect(),
        }),
    )?;
    out.flush()?;
    Ok(Archived {
        month,
        entries,
        chains,
    })
}

fn write_line<W: Write + ?Sized>(out: &mut W, line: &Line) -> Result<(), AuditAdminError> {
    let mut text = serde_json::to_vec(line).map_err(|e| AuditAdminError::Format {
        line: 0,
        reason: e.to_string(),
    })?;
    text.push(b'\n');
    out.write_all(&text)?;
    Ok(())
}

/// One line of an archive file read back.
#[derive(Clone, Debug, PartialEq)]
pub enum ArchiveLine {
    /// The first line: the segment's month.
    Segment(Month),
    /// An entry.
    Entry(ChainedEntry),
    /// The last line: how many entries, and where each chain enters the segment.
    Heads {
        /// The segment's month.
        month: Month,
        /// The entries the file holds.
        entries: u64,
        /// Where each chain enters it.
        heads: Vec<SegmentHead>,
    },
}

/// Parses one line of an archive file (`number`, 1-based, for the error).
pub fn parse_archive_line(text: &str, number: u64) -> Result<ArchiveLine, AuditAdminError> {
    let bad = |reason: String| AuditAdminError::Format {
        line: number,
        reason,
    };
    let line: Line = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    Ok(match line {
        Line::Segment(start) if start.format == ARCHIVE_FORMAT => ArchiveLine::Segment(start.month),
        Line::Segment(start) => return Err(bad(format!("unknown format '{}'", start.format))),
        Line::Entry(e) => ArchiveLine::Entry(
            e.to_chained()
                .ok_or_else(|| bad("hash is not 64 hex digits".into()))?,
        ),
        Line::Heads(end) => ArchiveLine::Heads {
            month: end.month,
            entries: end.entries,
            heads: end
                .heads
                .into_iter()
                .map(|h| {
                    Ok(SegmentHead {
                        scope: Scope {
                            org: h.org,
                            partition: h.partition,
                        },
                        first_seq: h.first_seq,
                        prev_hash: unhex(&h.prev_hash)
                            .ok_or_else(|| bad("prevHash is not 64 hex digits".into()))?,
                    })
                })
                .collect::<Result<_, AuditAdminError>>()?,
        },
    })
}

/// Where a chain stands while an archive is read: its first entry (checked against the
/// heads line at the end) and its last.
struct ArchivedChain {
    first: ChainedEntry,
    last_seq: u64,
    last_hash: ChainHash,
}

/// Verifies an archive file on its own, in one pass: each entry's hash links it to the one
/// before in its chain, without gaps, and each chain's first entry links to where the heads
/// line says it enters the segment. A file that is not an archive, or is cut short, is an
/// error; a link that does not hold is reported.
pub fn verify_archive<R: BufRead>(input: R) -> Result<VerifyReport, AuditAdminError> {
    let mut report = VerifyReport::default();
    let mut month = None;
    let mut chains: BTreeMap<(OrgId, Partition), ArchivedChain> = BTreeMap::new();
    let mut number = 0;
    let mut end = None;
    for text in input.lines() {
        let text = text?;
        number += 1;
        if end.is_some() {
            return Err(AuditAdminError::Format {
                line: number,
                reason: "a line after the heads line".into(),
            });
        }
        match (parse_archive_line(&text, number)?, month) {
            (ArchiveLine::Segment(m), None) => {
                month = Some(m);
                report.segments = 1;
            }
            (ArchiveLine::Entry(e), Some(m)) => {
                let scope = e.entry.scope;
                match chains.get_mut(&chain_key(&scope)) {
                    None => {
                        chains.insert(
                            chain_key(&scope),
                            ArchivedChain {
                                last_seq: e.seq,
                                last_hash: e.hash,
                                first: e,
                            },
                        );
                    }
                    Some(chain) => {
                        let link = if e.seq > chain.last_seq + 1 {
                            broken(m, scope, chain.last_seq + 1, None, Break::Missing)
                        } else if e.seq <= chain.last_seq {
                            broken(m, scope, e.seq, Some(e.entry.id), Break::Unexpected)
                        } else if chain_hash(&chain.last_hash, e.seq, &e.entry) != e.hash {
                            broken(m, scope, e.seq, Some(e.entry.id), Break::Altered)
                        } else {
                            None
                        };
                        if link.is_some() {
                            report.first_broken = link;
                            return Ok(report);
                        }
                        chain.last_seq = e.seq;
                        chain.last_hash = e.hash;
                    }
                }
                report.entries += 1;
            }
            (
                ArchiveLine::Heads {
                    month: m,
                    entries,
                    heads,
                },
                Some(first),
            ) if m == first => end = Some((entries, heads)),
            _ => {
                return Err(AuditAdminError::Format {
                    line: number,
                    reason: "out of place: a segment line, then entries, then a heads line".into(),
                })
            }
        }
    }
    let (Some(month), Some((entries, heads))) = (month, end) else {
        return Err(AuditAdminError::Format {
            line: number,
            reason: "the file ends before its heads line".into(),
        });
    };
    if entries != report.entries {
        return Err(AuditAdminError::Format {
            line: number,
            reason: format!(
                "the heads line counts {entries} entries, the file holds {}",
                report.entries
            ),
        });
    }
    report.chains = heads.len() as u64;
    let mut heads: BTreeMap<(OrgId, Partition), SegmentHead> = heads
        .into_iter()
        .map(|h| (chain_key(&h.scope), h))
        .collect();
    for (key, chain) in &chains {
        let first = &chain.first;
        let link = match heads.remove(key) {
            None => broken(
                month,
                first.entry.scope,
                first.seq,
                Some(first.entry.id),
                Break::SegmentHead,
            ),
            Some(h) if h.first_seq < first.seq => {
                broken(month, h.scope, h.first_seq, None, Break::Missing)
            }
            Some(h) if h.first_seq > first.seq => broken(
                month,
                h.scope,
                first.seq,
                Some(first.entry.id),
                Break::Unexpected,
            ),
            Some(h) if chain_hash(&h.prev_hash, first.seq, &first.entry) != first.hash => broken(
                month,
                h.scope,
                first.seq,
                Some(first.entry.id),
                Break::Altered,
            ),
            Some(_) => None,
        };
        if link.is_some() {
            report.first_broken = link;
            return Ok(report);
        }
    }
    if let Some(h) = heads.into_values().next() {
        report.first_broken = broken(month, h.scope, h.first_seq, None, Break::Missing);
    }
    Ok(report)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    s
}

/// A chain hash from 64 hex digits.
pub fn unhex(s: &str) -> Option<ChainHash> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn month(s: &str) -> Month {
        Month::parse(s).expect("month")
    }

    #[test]
    fn hex_round_trips() {
        let h: ChainHash = std::array::from_fn(|i| (i * 7) as u8);
        assert_eq!(unhex(&hex(&h)), Some(h));
        assert_eq!(unhex(&hex(&h).to_uppercase()), Some(h));
        assert_eq!(unhex("00"), None);
        assert_eq!(unhex(&"g".repeat(64)), None);
    }

    #[test]
    fn a_segment_is_past_retention_once_its_whole_month_is() {
        let keep = default_retention();
        let now = month("2025-06").start() + chrono::Duration::days(10);
        let cutoff = now - keep;
        let months = [
            Month::of(cutoff),
            month("2024-01"),
            Month::of(cutoff - chrono::Duration::days(40)),
            Month::of(now),
        ];
        let dropped = past_retention(months, now, keep);
        assert_eq!(
            dropped,
            vec![
                month("2024-01"),
                Month::of(cutoff - chrono::Duration::days(40))
            ],
            "the month holding the cutoff is kept; the current one always"
        );
        assert!(past_retention([Month::of(now)], now, chrono::Duration::zero()).is_empty());
        assert_eq!(
            past_retention([month("2025-05")], now, chrono::Duration::zero()),
            vec![month("2025-05")]
        );
    }
}
