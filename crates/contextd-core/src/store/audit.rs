//! The audit log: [`AuditStore`], its entries, and the rules both backends keep it by.
//!
//! The log is append-only and tamper-evident. Each organization and partition has one hash
//! chain: its entries are numbered 1, 2, 3, … (`seq`) and each carries
//! [`chain_hash`]`(previous hash, seq, entry)`, the first chained to [`GENESIS`]. A store
//! computes the hashes with that function inside its append transaction, and records each
//! chain's newest link (its head) in the same transaction.
//!
//! Entries are kept in monthly segments ([`Month`], UTC), so that retention drops whole
//! segments rather than deleting rows. A chain's entries go to the month of their `at`, but
//! never to a month before the one its previous entry went to (an entry stamped just before
//! midnight on the last day of a month and appended after one of the next month's joins the
//! later segment): each chain thus runs through the segments in order, a contiguous stretch
//! of it in each. When a chain first writes into a segment, the store records where it
//! enters (its first `seq` and the hash before it, a [`SegmentHead`]), so that a segment can
//! be verified after the ones before it were dropped.
//!
//! The compact encodings of a stored entry (codes of partitions, roles and kinds, the field
//! list as one string, object ids as 16 bytes when they are UUIDs) are in [`audit_codes`],
//! shared by both backends.

use async_trait::async_trait;
use chrono::{DateTime, Datelike, TimeZone, Utc};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

use super::StoreError;
use crate::auth::Role;
use crate::ids::{ParseError, Scope};
use crate::object::Kind;

/// One audit-log entry: who did what to which object and fields — never the values.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    /// Entry id (UUIDv7: time-ordered).
    pub id: Uuid,
    /// Scope.
    pub scope: Scope,
    /// When.
    pub at: DateTime<Utc>,
    /// Acting principal (key or user id), if known.
    pub actor: Option<Uuid>,
    /// Its role, if known.
    pub actor_role: Option<Role>,
    /// What happened (`pii.read`, `pii.search`, `key.create`, `signin.failed`, …).
    pub action: String,
    /// The object kind, if any.
    pub object_kind: Option<Kind>,
    /// The object or resource id, if any.
    pub object_id: Option<String>,
    /// Field ids involved.
    pub fields: Vec<String>,
    /// Extra non-sensitive detail (a name, a role).
    pub detail: String,
}

/// Filters of the audit log; newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Only this action.
    pub action: Option<String>,
    /// Only this actor.
    pub actor: Option<Uuid>,
    /// Only this object or resource.
    pub object_id: Option<String>,
    /// At or after.
    pub from: Option<DateTime<Utc>>,
    /// At or before.
    pub to: Option<DateTime<Utc>>,
    /// Page size.
    pub limit: usize,
    /// Entries older than this id.
    pub before: Option<Uuid>,
}

/// A link of a hash chain: SHA-256.
pub type ChainHash = [u8; 32];

/// The hash every chain starts from (the "previous hash" of its entry 1).
pub const GENESIS: ChainHash = [0; 32];

/// The hash of entry `seq` of a chain whose previous entry's hash is `prev`: SHA-256 over a
/// version tag, `prev`, `seq` and every field of the entry as stored (`at` in whole
/// milliseconds), each length-prefixed, an absent value distinct from an empty one. Changing
/// any of it — or this encoding — changes the hash.
pub fn chain_hash(prev: &ChainHash, seq: u64, entry: &AuditEntry) -> ChainHash {
    let mut h = Sha256::new();
    h.update(b"contextd audit chain v1\0");
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(entry.id.as_bytes());
    h.update(entry.scope.org.0.as_bytes());
    bytes(&mut h, entry.scope.partition.as_str().as_bytes());
    h.update(entry.at.timestamp_millis().to_be_bytes());
    optional(
        &mut h,
        entry.actor.as_ref().map(|a| a.as_bytes().as_slice()),
    );
    optional(&mut h, entry.actor_role.map(|r| r.as_str().as_bytes()));
    bytes(&mut h, entry.action.as_bytes());
    optional(&mut h, entry.object_kind.map(|k| k.as_str().as_bytes()));
    optional(&mut h, entry.object_id.as_deref().map(str::as_bytes));
    h.update((entry.fields.len() as u64).to_be_bytes());
    for f in &entry.fields {
        bytes(&mut h, f.as_bytes());
    }
    bytes(&mut h, entry.detail.as_bytes());
    h.finalize().into()
}

fn bytes(h: &mut Sha256, b: &[u8]) {
    h.update((b.len() as u64).to_be_bytes());
    h.update(b);
}

fn optional(h: &mut Sha256, b: Option<&[u8]>) {
    match b {
        None => h.update([0u8]),
        Some(b) => {
            h.update([1u8]);
            bytes(h, b);
        }
    }
}

/// A calendar month in UTC, the unit of the audit log's segments: written `YYYY-MM`.
/// Ordered in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: u16,
    month: u8,
}

impl Month {
    /// The first month a segment can be (`0000-01`).
    pub const MIN: Month = Month { year: 0, month: 1 };
    /// The last month a segment can be (`9999-12`).
    pub const MAX: Month = Month {
        year: 9999,
        month: 12,
    };

    /// The month `month` (1–12) of `year` (0–9999).
    pub fn new(year: i32, month: u32) -> Option<Self> {
        let year = u16::try_from(year).ok().filter(|y| *y <= 9999)?;
        let month = u8::try_from(month).ok().filter(|m| (1..=12).contains(m))?;
        Some(Self { year, month })
    }

    /// The month `at` falls in (UTC); times beyond the years 0–9999 fall in the first or last.
    pub fn of(at: DateTime<Utc>) -> Self {
        Self::new(at.year(), at.month()).unwrap_or(if at.year() < 0 {
            Self::MIN
        } else {
            Self::MAX
        })
    }

    /// The year.
    pub fn year(self) -> i32 {
        i32::from(self.year)
    }

    /// The month of the year, 1–12.
    pub fn month(self) -> u32 {
        u32::from(self.month)
    }

    /// The month after (the last month is its own successor).
    pub fn next(self) -> Self {
        match (self.year, self.month) {
            (9999, 12) => self,
            (y, 12) => Self {
                year: y + 1,
                month: 1,
            },
            (y, m) => Self {
                year: y,
                month: m + 1,
            },
        }
    }

    /// Its first instant.
    pub fn start(self) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(self.year(), self.month(), 1, 0, 0, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// The first instant after it (the start of the next month).
    pub fn end(self) -> DateTime<Utc> {
        if self == Self::MAX {
            DateTime::<Utc>::MAX_UTC
        } else {
            self.next().start()
        }
    }

    /// `YYYYMM` as a number (`202405`): how PostgreSQL keys its partitions.
    pub fn number(self) -> i32 {
        self.year() * 100 + self.month() as i32
    }

    /// The month of a [`Month::number`].
    pub fn from_number(n: i64) -> Option<Self> {
        Self::new(i32::try_from(n / 100).ok()?, u32::try_from(n % 100).ok()?)
    }

    /// `YYYY_MM`: the suffix of a segment's table name (digits and `_` only).
    pub fn table_suffix(self) -> String {
        format!("{:04}_{:02}", self.year, self.month)
    }

    /// Parses `YYYY-MM`.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let bad = || {
            ParseError(format!(
                "'{}' is not a month: use YYYY-MM",
                crate::ids::truncate(s, 32)
            ))
        };
        let b = s.as_bytes();
        if !s.is_ascii() || b.len() != 7 || b[4] != b'-' {
            return Err(bad());
        }
        let digits = |r: std::ops::Range<usize>| -> Option<u32> {
            let part = &s[r];
            part.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| part.parse().ok())
                .flatten()
        };
        let (Some(year), Some(month)) = (digits(0..4), digits(5..7)) else {
            return Err(bad());
        };
        Self::new(year as i32, month).ok_or_else(bad)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Month {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for Month {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Month {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The segment an entry of a chain goes to: the month of its `at`, or the segment of the
/// chain's previous entry if that is later (a chain never goes back to an earlier segment).
pub fn segment_of(at: DateTime<Utc>, previous: Option<Month>) -> Month {
    let month = Month::of(at);
    match previous {
        Some(p) if p > month => p,
        _ => month,
    }
}

/// One month of the audit log, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditSegment {
    /// Its month.
    pub month: Month,
    /// The entries it holds.
    pub entries: u64,
}

/// An entry with its place in its chain.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainedEntry {
    /// The entry.
    pub entry: AuditEntry,
    /// Its number in its chain (the chain of `entry.scope`), from 1.
    pub seq: u64,
    /// Its link: [`chain_hash`] of the previous entry's hash, `seq` and the entry.
    pub hash: ChainHash,
}

/// Where a chain enters a segment: its first entry there, and the hash before it (that of
/// its last entry in an earlier segment, or [`GENESIS`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentHead {
    /// The chain.
    pub scope: Scope,
    /// The `seq` of its first entry in the segment.
    pub first_seq: u64,
    /// The hash that entry is chained to.
    pub prev_hash: ChainHash,
}

/// The newest link of a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainHead {
    /// The chain.
    pub scope: Scope,
    /// Its newest entry's `seq` (how many entries it has had).
    pub seq: u64,
    /// That entry's hash.
    pub hash: ChainHash,
}

/// A place in a segment's entries, which are listed chain after chain, each in `seq` order:
/// just after entry `seq` of the chain of `scope`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentPosition {
    /// The chain.
    pub scope: Scope,
    /// The entry of that chain last listed.
    pub seq: u64,
}

impl SegmentPosition {
    /// The position just after `e`, to ask for the next page from.
    pub fn after(e: &ChainedEntry) -> Self {
        Self {
            scope: e.entry.scope,
            seq: e.seq,
        }
    }
}

/// The audit log: who did what to which object and fields, appended and read per scope,
/// hash-chained per scope and kept in monthly segments (see the module documentation).
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Appends audit entries (one transaction), chaining each, in the order given, to the
    /// previous entry of its scope.
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError>;
    /// Whether concurrent [`Self::append_audit`] calls already share commits (the SQLite
    /// store's writer thread batches whatever queued while it committed). Then the service
    /// hands each request's entries straight to the store rather than through a batching task
    /// of its own: one thread hop less per audited request. Default: no.
    fn groups_audit_appends(&self) -> bool {
        false
    }
    /// Reads the audit log of a scope, newest (greatest id) first, across segments.
    async fn audit(&self, scope: Scope, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;

    /// The segments, oldest first, with how many entries each holds (a count, which reads
    /// through each segment).
    async fn audit_segments(&self) -> Result<Vec<AuditSegment>, StoreError>;
    /// Up to `limit` entries of a segment, chain after chain (in an order of the chains of the
    /// backend's choosing, the same on every call), each chain's in `seq` order; from the
    /// start, or just after `after`. An unknown month has none.
    async fn audit_segment_entries(
        &self,
        month: Month,
        after: Option<SegmentPosition>,
        limit: usize,
    ) -> Result<Vec<ChainedEntry>, StoreError>;
    /// Where each chain with entries in the segment enters it.
    async fn audit_segment_heads(&self, month: Month) -> Result<Vec<SegmentHead>, StoreError>;
    /// Every chain's newest link (chains that have had an entry).
    async fn audit_heads(&self) -> Result<Vec<ChainHead>, StoreError>;
    /// Drops a whole segment, its entries and its segment heads (the chains' heads stay).
    /// Months that ended less than a day ago are refused (`InUse`, see [`check_droppable`]).
    /// A month without a segment is not an error.
    async fn drop_audit_segment(&self, month: Month) -> Result<(), StoreError>;
    /// The months that have a segment, oldest first, without reading their entries.
    async fn audit_months(&self) -> Result<Vec<Month>, StoreError>;
    /// Makes the segment of `month` ready for appends (idempotent), so that the first append
    /// of a month does not create it: on PostgreSQL creating a partition waits for every
    /// transaction reading the log (a `pg_dump`, say), and appends would wait behind it.
    async fn prepare_audit_segment(&self, month: Month) -> Result<(), StoreError>;
}

/// Whether `month` may be dropped now: only months that ended a day ago or more. Entries of a
/// month's last moments may still be in a group commit's queue, or come from an instance
/// whose clock is behind, when the next month begins.
pub fn check_droppable(month: Month, now: DateTime<Utc>) -> Result<(), StoreError> {
    if month.end() + chrono::Duration::days(1) > now {
        Err(StoreError::InUse)
    } else {
        Ok(())
    }
}

/// The compact encodings of a stored audit entry, shared by both backends: small integer
/// codes for the partition, role and object kind; the field ids as one string; object ids
/// that are UUIDs as 16 bytes. Actions are coded by each store's own table of names.
pub mod audit_codes {
    use uuid::Uuid;

    use crate::auth::Role;
    use crate::ids::Partition;
    use crate::object::Kind;

    /// The partition's code: lab 0, production 1.
    pub fn partition(p: Partition) -> i16 {
        match p {
            Partition::Lab => 0,
            Partition::Production => 1,
        }
    }

    /// The partition of a code.
    pub fn partition_of(code: i64) -> Option<Partition> {
        match code {
            0 => Some(Partition::Lab),
            1 => Some(Partition::Production),
            _ => None,
        }
    }

    /// The role's code (1–4).
    pub fn role(r: Role) -> i16 {
        match r {
            Role::Admin => 1,
            Role::Agent => 2,
            Role::Machine => 3,
            Role::Partner => 4,
        }
    }

    /// The role of a code.
    pub fn role_of(code: i64) -> Option<Role> {
        match code {
            1 => Some(Role::Admin),
            2 => Some(Role::Agent),
            3 => Some(Role::Machine),
            4 => Some(Role::Partner),
            _ => None,
        }
    }

    /// The kind's code (1–4).
    pub fn kind(k: Kind) -> i16 {
        match k {
            Kind::Customer => 1,
            Kind::Request => 2,
            Kind::Activity => 3,
            Kind::Detail => 4,
        }
    }

    /// The kind of a code.
    pub fn kind_of(code: i64) -> Option<Kind> {
        match code {
            1 => Some(Kind::Customer),
            2 => Some(Kind::Request),
            3 => Some(Kind::Activity),
            4 => Some(Kind::Detail),
            _ => None,
        }
    }

    /// The field ids as stored: comma-joined (`a,b`) when every id is non-empty and has no
    /// comma and the first does not start with `[` — always so for dictionary ids
    /// (`[A-Za-z][A-Za-z0-9_.]*`) — else a JSON array, which starts with `[`.
    pub fn fields(fields: &[String]) -> String {
        let plain = fields
            .iter()
            .all(|f| !f.is_empty() && !f.contains(',') && !f.starts_with('['));
        if plain {
            fields.join(",")
        } else {
            serde_json::to_string(fields).unwrap_or_else(|_| "[]".to_owned())
        }
    }

    /// The field ids of a stored [`fields`] string; `None` if it is not one.
    pub fn fields_of(stored: &str) -> Option<Vec<String>> {
        if stored.starts_with('[') {
            serde_json::from_str(stored).ok()
        } else if stored.is_empty() {
            Some(Vec::new())
        } else {
            Some(stored.split(',').map(str::to_owned).collect())
        }
    }

    /// The UUID an object id is stored as, when it is one written the canonical way
    /// (lowercase, hyphenated) — so that it reads back as the same text; `None`: stored as
    /// text.
    pub fn object_uuid(id: &str) -> Option<Uuid> {
        Uuid::try_parse(id)
            .ok()
            .filter(|u| u.hyphenated().to_string() == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{OrgId, Partition};

    fn entry() -> AuditEntry {
        AuditEntry {
            id: Uuid::now_v7(),
            scope: Scope {
                org: OrgId::new(),
                partition: Partition::Lab,
            },
            at: crate::time::now_ms(),
            actor: Some(Uuid::now_v7()),
            actor_role: Some(Role::Agent),
            action: "pii.read".into(),
            object_kind: Some(Kind::Customer),
            object_id: Some(Uuid::now_v7().to_string()),
            fields: vec!["Context_First_Name".into()],
            detail: "get: 1 object".into(),
        }
    }

    #[test]
    fn a_month_is_droppable_a_day_after_it_ends() {
        let nov = Month::of(chrono::Utc::now()).next().next();
        let dec = nov.next();
        let refused = |now| matches!(check_droppable(nov, now), Err(StoreError::InUse));
        assert!(refused(nov.start()), "its own month");
        assert!(refused(dec.start()), "the moment it ended");
        assert!(
            refused(dec.start() + chrono::Duration::hours(23)),
            "late entries may come"
        );
        assert!(
            !refused(dec.start() + chrono::Duration::days(1)),
            "a day after"
        );
        assert!(
            refused(nov.start() - chrono::Duration::days(40)),
            "a month to come"
        );
    }

    #[test]
    fn every_field_and_the_link_count() {
        let e = entry();
        let h = chain_hash(&GENESIS, 1, &e);
        assert_eq!(h, chain_hash(&GENESIS, 1, &e), "deterministic");
        assert_ne!(h, chain_hash(&GENESIS, 2, &e), "seq");
        assert_ne!(h, chain_hash(&[1; 32], 1, &e), "previous hash");
        let changes: [fn(&mut AuditEntry); 11] = [
            |e| e.id = Uuid::now_v7(),
            |e| e.scope.org = OrgId::new(),
            |e| e.scope.partition = Partition::Production,
            |e| e.at += chrono::Duration::milliseconds(1),
            |e| e.actor = None,
            |e| e.actor_role = Some(Role::Admin),
            |e| e.action = "pii.search".into(),
            |e| e.object_kind = None,
            |e| e.object_id = Some(String::new()),
            |e| e.fields.push("x".into()),
            |e| e.detail.push('!'),
        ];
        for change in changes {
            let mut other = e.clone();
            change(&mut other);
            assert_ne!(h, chain_hash(&GENESIS, 1, &other), "{other:?}");
        }
        // Absent and empty differ; so do field boundaries.
        let mut a = e.clone();
        a.object_id = None;
        let mut b = e.clone();
        b.object_id = Some(String::new());
        assert_ne!(chain_hash(&GENESIS, 1, &a), chain_hash(&GENESIS, 1, &b));
        let mut c = e.clone();
        c.fields = vec!["ab".into()];
        let mut d = e;
        d.fields = vec!["a".into(), "b".into()];
        assert_ne!(chain_hash(&GENESIS, 1, &c), chain_hash(&GENESIS, 1, &d));
    }

    #[test]
    fn months() {
        let m = Month::parse("2024-05").expect("month");
        assert_eq!(m.to_string(), "2024-05");
        assert_eq!(m.table_suffix(), "2024_05");
        assert_eq!(m.number(), 202405);
        assert_eq!(Month::from_number(202405), Some(m));
        assert_eq!(m.start().to_rfc3339(), "2024-05-01T00:00:00+00:00");
        assert_eq!(m.end(), Month::parse("2024-06").expect("june").start());
        assert_eq!(
            Month::parse("2024-12")
                .expect("december")
                .next()
                .to_string(),
            "2025-01"
        );
        assert_eq!(Month::of(m.end() - chrono::Duration::milliseconds(1)), m);
        for bad in [
            "2024-5",
            "2024-13",
            "2024-00",
            "24-05",
            "2024/05",
            "２０２４-05",
            "+024-05",
        ] {
            assert!(Month::parse(bad).is_err(), "{bad}");
        }
        assert!(Month::parse("2024-04").expect("april") < m);
    }

    #[test]
    fn a_chain_never_goes_back_a_segment() {
        let feb = Month::parse("2024-02").expect("month");
        let late_january = feb.start() - chrono::Duration::milliseconds(1);
        assert_eq!(segment_of(late_january, Some(feb)), feb);
        assert_eq!(segment_of(late_january, None).to_string(), "2024-01");
        assert_eq!(segment_of(feb.end(), Some(feb)), feb.next());
    }

    #[test]
    fn codes_round_trip() {
        for p in Partition::ALL {
            assert_eq!(
                audit_codes::partition_of(audit_codes::partition(p).into()),
                Some(p)
            );
        }
        for r in [Role::Admin, Role::Agent, Role::Machine, Role::Partner] {
            assert_eq!(audit_codes::role_of(audit_codes::role(r).into()), Some(r));
        }
        for k in Kind::ALL {
            assert_eq!(audit_codes::kind_of(audit_codes::kind(k).into()), Some(k));
        }
        for fields in [
            vec![],
            vec!["Context_First_Name".to_owned()],
            vec!["a".to_owned(), "b.c".to_owned()],
            vec![String::new()],
            vec!["a,b".to_owned(), "[x".to_owned()],
        ] {
            let stored = audit_codes::fields(&fields);
            assert_eq!(
                audit_codes::fields_of(&stored),
                Some(fields.clone()),
                "{stored}"
            );
        }
        assert_eq!(audit_codes::fields(&["a".into(), "b".into()]), "a,b");
        let id = Uuid::now_v7();
        assert_eq!(audit_codes::object_uuid(&id.to_string()), Some(id));
        assert_eq!(
            audit_codes::object_uuid(&id.to_string().to_uppercase()),
            None
        );
        assert_eq!(audit_codes::object_uuid(&id.simple().to_string()), None);
        assert_eq!(audit_codes::object_uuid("cisco.base.customer"), None);
    }
}
