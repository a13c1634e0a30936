//! [`AuditStore`] for [`SqliteStore`]: the audit log, in a file of its own
//! (`<name>-audit.db`), in monthly segments, hash-chained per organization and partition (the
//! rules are the core's: `contextd_core::store::AuditStore`).
//!
//! Each segment is a table of its own, `audit_YYYY_MM`, created by the append that first
//! needs it, with triggers refusing UPDATE and DELETE; retention drops the table. Its rows are
//! compact: the chain (a small integer standing for the organization and partition, from
//! `audit_heads`), `seq`, the 16-byte ids, `at` in milliseconds, the role, action and kind as
//! small integers (actions through `audit_actions`), the field ids comma-joined, and the
//! entry's hash. `audit_heads` holds each chain's newest link, `audit_segment_heads` where
//! each chain enters each segment; appends update both in their transaction, on the file's one
//! writer thread, so no two appends race for a chain.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::path::Path;

use async_trait::async_trait;
use chrono::Utc;
use contextd_core::ids::{OrgId, Partition, Scope};
use contextd_core::store::{
    audit_codes, chain_hash, check_droppable, segment_of, AuditEntry, AuditQuery, AuditSegment,
    AuditStore, ChainHash, ChainHead, ChainedEntry, Month, SegmentHead, SegmentPosition,
    StoreError, GENESIS,
};
use contextd_core::time::now_ms;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row, Transaction};
use uuid::Uuid;

use crate::db::{
    int_col, ms, opt_parse_col, opt_text_col, opt_uuid_col, parse_col, text_col, time_col,
    uuid_col, DbResultExt,
};
use crate::store::SqliteStore;

/// Legacy entries chained per append while converting schema 1's table.
const LEGACY_BATCH: usize = 1000;

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let entries = entries.to_vec();
        self.audit.write(move |tx| append(tx, &entries)).await
    }

    fn groups_audit_appends(&self) -> bool {
        true
    }

    async fn audit(&self, scope: Scope, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let query = query.clone();
        self.audit.read(move |c| read(c, scope, &query)).await
    }

    async fn audit_segments(&self) -> Result<Vec<AuditSegment>, StoreError> {
        self.audit.read(segments).await
    }

    async fn audit_segment_entries(
        &self,
        month: Month,
        after: Option<SegmentPosition>,
        limit: usize,
    ) -> Result<Vec<ChainedEntry>, StoreError> {
        self.audit
            .read(move |c| segment_entries(c, month, after, limit))
            .await
    }

    async fn audit_segment_heads(&self, month: Month) -> Result<Vec<SegmentHead>, StoreError> {
        self.audit.read(move |c| segment_heads(c, month)).await
    }

    async fn audit_heads(&self) -> Result<Vec<ChainHead>, StoreError> {
        self.audit.read(heads).await
    }

    async fn drop_audit_segment(&self, month: Month) -> Result<(), StoreError> {
        check_droppable(month, Utc::now())?;
        self.audit.write(move |tx| drop_segment(tx, month)).await
    }

    async fn audit_months(&self) -> Result<Vec<Month>, StoreError> {
        self.audit.read(|c| months(c)).await
    }

    async fn prepare_audit_segment(&self, month: Month) -> Result<(), StoreError> {
        self.audit.write(move |tx| ensure_segment(tx, month)).await
    }
}

/// The months that have a segment, oldest first.
fn months(c: &Connection) -> Result<Vec<Month>, StoreError> {
    let mut stmt = c
        .prepare_cached("SELECT month FROM audit_segments ORDER BY month")
        .db()?;
    let mut rows = stmt.query([]).db()?;
    let mut months = Vec::new();
    while let Some(r) = rows.next().db()? {
        months.push(month_value(r.get_ref(0).db()?, "audit_segments.month")?);
    }
    Ok(months)
}

/// The table of a segment.
fn table(month: Month) -> String {
    format!("audit_{}", month.table_suffix())
}

/// Creates a segment's table, its indexes and its append-only triggers. `object_id` is
/// declared BLOB (no type conversion): it holds 16 bytes for a UUID, else text.
fn segment_schema(month: Month) -> String {
    let t = table(month);
    format!(
        "CREATE TABLE IF NOT EXISTS {t} (
             chain       INTEGER NOT NULL,
             seq         INTEGER NOT NULL,
             id          BLOB    NOT NULL,
             at          INTEGER NOT NULL,
             actor       BLOB,
             actor_role  INTEGER,
             action      INTEGER NOT NULL,
             object_kind INTEGER,
             object_id   BLOB,
             fields      TEXT    NOT NULL,
             detail      TEXT    NOT NULL,
             hash        BLOB    NOT NULL,
             PRIMARY KEY (chain, seq)
         ) WITHOUT ROWID;
         CREATE UNIQUE INDEX IF NOT EXISTS {t}_by_id ON {t} (chain, id);
         CREATE INDEX IF NOT EXISTS {t}_by_object ON {t} (chain, object_id, id)
             WHERE object_id IS NOT NULL;
         CREATE TRIGGER IF NOT EXISTS {t}_no_update BEFORE UPDATE ON {t}
         BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
         CREATE TRIGGER IF NOT EXISTS {t}_no_delete BEFORE DELETE ON {t}
         BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
    )
}

/// Creates the segment's table unless it exists.
fn ensure_segment(tx: &Connection, month: Month) -> Result<(), StoreError> {
    let exists: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM audit_segments WHERE month = ?1)")
        .db()?
        .query_row([month.to_string()], |r| r.get(0))
        .db()?;
    if !exists {
        tx.execute_batch(&segment_schema(month)).db()?;
        tx.prepare_cached("INSERT INTO audit_segments (month, created_at) VALUES (?1, ?2)")
            .db()?
            .execute(params![month.to_string(), ms(&now_ms())])
            .db()?;
    }
    Ok(())
}

/// Where a chain stands during an append.
struct Chain {
    id: i64,
    seq: u64,
    hash: ChainHash,
    month: Option<Month>,
}

fn hash_value(v: ValueRef<'_>, what: &str) -> Result<ChainHash, StoreError> {
    v.as_blob()
        .ok()
        .and_then(|b| ChainHash::try_from(b).ok())
        .ok_or_else(|| StoreError::corrupt(what))
}

fn seq_value(v: ValueRef<'_>, what: &str) -> Result<u64, StoreError> {
    u64::try_from(int_col(v, what)?).map_err(|_| StoreError::corrupt(what))
}

fn month_value(v: ValueRef<'_>, what: &str) -> Result<Month, StoreError> {
    parse_col(v, what)
}

/// The chain of `scope`, or `None` if it has had no entry.
fn chain_id(c: &Connection, scope: Scope) -> Result<Option<i64>, StoreError> {
    c.prepare_cached("SELECT chain FROM audit_heads WHERE org_id = ?1 AND partition = ?2")
        .db()?
        .query_row(
            params![
                scope.org.0.as_bytes(),
                audit_codes::partition(scope.partition)
            ],
            |r| r.get(0),
        )
        .optional()
        .db()
}

/// The chain of `scope` as it stands, created (at seq 0, before its first entry) if new.
fn load_chain(tx: &Connection, scope: Scope) -> Result<Chain, StoreError> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT chain, seq, hash, month FROM audit_heads WHERE org_id = ?1 AND partition = ?2",
        )
        .db()?;
    let mut rows = stmt
        .query(params![
            scope.org.0.as_bytes(),
            audit_codes::partition(scope.partition)
        ])
        .db()?;
    if let Some(r) = rows.next().db()? {
        let month = match r.get_ref(3).db()? {
            ValueRef::Null => None,
            v => Some(month_value(v, "audit_heads.month")?),
        };
        return Ok(Chain {
            id: int_col(r.get_ref(0).db()?, "audit_heads.chain")?,
            seq: seq_value(r.get_ref(1).db()?, "audit_heads.seq")?,
            hash: hash_value(r.get_ref(2).db()?, "audit_heads.hash")?,
            month,
        });
    }
    tx.prepare_cached(
        "INSERT INTO audit_heads (org_id, partition, seq, hash, month) VALUES (?1, ?2, 0, ?3, NULL)",
    )
    .db()?
    .execute(params![
        scope.org.0.as_bytes(),
        audit_codes::partition(scope.partition),
        &GENESIS[..]
    ])
    .db()?;
    Ok(Chain {
        id: tx.last_insert_rowid(),
        seq: 0,
        hash: GENESIS,
        month: None,
    })
}

/// The code of an action name, added to `audit_actions` on its first use.
fn action_code(
    tx: &Connection,
    name: &str,
    codes: &mut HashMap<String, i64>,
) -> Result<i64, StoreError> {
    if let Some(code) = codes.get(name) {
        return Ok(*code);
    }
    let found: Option<i64> = tx
        .prepare_cached("SELECT code FROM audit_actions WHERE name = ?1")
        .db()?
        .query_row([name], |r| r.get(0))
        .optional()
        .db()?;
    let code = match found {
        Some(code) => code,
        None => {
            tx.prepare_cached("INSERT INTO audit_actions (name) VALUES (?1)")
                .db()?
                .execute([name])
                .db()?;
            tx.last_insert_rowid()
        }
    };
    codes.insert(name.to_owned(), code);
    Ok(code)
}

/// An object id as stored: 16 bytes for a UUID written the canonical way, else text.
fn object_value(id: Option<&str>) -> Value {
    match id {
        None => Value::Null,
        Some(id) => match audit_codes::object_uuid(id) {
            Some(u) => Value::Blob(u.as_bytes().to_vec()),
            None => Value::Text(id.to_owned()),
        },
    }
}

/// Chains and stores entries, in order, inside the writer's transaction: reads the head of
/// each chain touched, computes each entry's link, records where a chain enters a segment,
/// and leaves each head at its chain's newest entry.
pub(crate) fn append(tx: &Connection, entries: &[AuditEntry]) -> Result<(), StoreError> {
    let mut chains: HashMap<Scope, Chain> = HashMap::new();
    let mut segments: HashSet<Month> = HashSet::new();
    let mut actions: HashMap<String, i64> = HashMap::new();
    for e in entries {
        let chain = match chains.entry(e.scope) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => v.insert(load_chain(tx, e.scope)?),
        };
        let month = segment_of(e.at, chain.month);
        if segments.insert(month) {
            ensure_segment(tx, month)?;
        }
        let seq = chain.seq + 1;
        let hash = chain_hash(&chain.hash, seq, e);
        if chain.month != Some(month) {
            tx.prepare_cached(
                "INSERT INTO audit_segment_heads (month, chain, first_seq, prev_hash)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .db()?
            .execute(params![
                month.to_string(),
                chain.id,
                seq as i64,
                &chain.hash[..]
            ])
            .db()?;
        }
        let action = action_code(tx, &e.action, &mut actions)?;
        tx.prepare_cached(&format!(
            "INSERT INTO {} (chain, seq, id, at, actor, actor_role, action, object_kind,
                 object_id, fields, detail, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            table(month)
        ))
        .db()?
        .execute(params![
            chain.id,
            seq as i64,
            e.id.as_bytes(),
            ms(&e.at),
            e.actor.as_ref().map(|a| a.as_bytes().to_vec()),
            e.actor_role.map(audit_codes::role),
            action,
            e.object_kind.map(audit_codes::kind),
            object_value(e.object_id.as_deref()),
            audit_codes::fields(&e.fields),
            e.detail,
            &hash[..],
        ])
        .db()?;
        chain.seq = seq;
        chain.hash = hash;
        chain.month = Some(month);
    }
    let mut update = tx
        .prepare_cached("UPDATE audit_heads SET seq = ?2, hash = ?3, month = ?4 WHERE chain = ?1")
        .db()?;
    for chain in chains.values() {
        update
            .execute(params![
                chain.id,
                chain.seq as i64,
                &chain.hash[..],
                chain.month.map(|m| m.to_string()),
            ])
            .db()?;
    }
    Ok(())
}

/// The columns of an entry in a segment's table (its scope is its chain's), the action by name.
const ENTRY_COLUMNS: &str = "id, at, actor, actor_role,
    (SELECT name FROM audit_actions WHERE code = action), object_kind, object_id, fields, detail";

/// An entry of `scope` from [`ENTRY_COLUMNS`] starting at column `i`.
fn entry_from_row(r: &Row<'_>, scope: Scope, i: usize) -> Result<AuditEntry, StoreError> {
    let code = |j: usize, what: &str| -> Result<Option<i64>, StoreError> {
        r.get_ref(i + j)
            .db()?
            .as_i64_or_null()
            .map_err(|_| StoreError::corrupt(what))
    };
    let actor_role = code(3, "actor_role")?
        .map(|c| audit_codes::role_of(c).ok_or_else(|| StoreError::corrupt("actor_role")))
        .transpose()?;
    let object_kind = code(5, "object_kind")?
        .map(|c| audit_codes::kind_of(c).ok_or_else(|| StoreError::corrupt("object_kind")))
        .transpose()?;
    let object_id = match r.get_ref(i + 6).db()? {
        ValueRef::Null => None,
        ValueRef::Blob(b) => Some(
            Uuid::from_slice(b)
                .map_err(|_| StoreError::corrupt("object_id"))?
                .to_string(),
        ),
        v => Some(text_col(v, "object_id")?.to_owned()),
    };
    Ok(AuditEntry {
        id: uuid_col(r.get_ref(i).db()?, "id")?,
        scope,
        at: time_col(r.get_ref(i + 1).db()?, "at")?,
        actor: opt_uuid_col(r.get_ref(i + 2).db()?, "actor")?,
        actor_role,
        // NULL: a code without a name.
        action: text_col(r.get_ref(i + 4).db()?, "action")?.to_owned(),
        object_kind,
        object_id,
        fields: audit_codes::fields_of(text_col(r.get_ref(i + 7).db()?, "fields")?)
            .ok_or_else(|| StoreError::corrupt("fields"))?,
        detail: text_col(r.get_ref(i + 8).db()?, "detail")?.to_owned(),
    })
}

/// A page of a scope's entries, newest first: one statement over the segments the scope's
/// chain has entries in (newest first), merged by id, so that the page is the same as one
/// table would give. Segments that end before `from` are left out.
fn read(c: &mut Connection, scope: Scope, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
    // One snapshot: no segment dropped between listing and reading it.
    let tx = c.transaction().db()?;
    let Some(chain) = chain_id(&tx, scope)? else {
        return Ok(Vec::new());
    };
    let mut months = Vec::new();
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT month FROM audit_segment_heads WHERE chain = ?1 ORDER BY month DESC",
            )
            .db()?;
        let mut rows = stmt.query([chain]).db()?;
        while let Some(r) = rows.next().db()? {
            let month = month_value(r.get_ref(0).db()?, "audit_segment_heads.month")?;
            if q.from.is_none_or(|from| month.end() > from) {
                months.push(month);
            }
        }
    }
    if months.is_empty() || q.limit == 0 {
        return Ok(Vec::new());
    }
    let mut conditions = String::from("chain = ?1");
    let mut values: Vec<Value> = vec![Value::Integer(chain)];
    let mut and = |condition: &str, v: Value| {
        values.push(v);
        conditions.push_str(" AND ");
        conditions.push_str(&condition.replace('#', &format!("?{}", values.len())));
    };
    if let Some(a) = &q.action {
        and(
            "action = (SELECT code FROM audit_actions WHERE name = #)",
            Value::Text(a.clone()),
        );
    }
    if let Some(a) = q.actor {
        and("actor = #", Value::Blob(a.as_bytes().to_vec()));
    }
    if let Some(o) = &q.object_id {
        and("object_id = #", object_value(Some(o)));
    }
    if let Some(t) = q.from {
        and("at >= #", Value::Integer(ms(&t)));
    }
    if let Some(t) = q.to {
        and("at <= #", Value::Integer(ms(&t)));
    }
    if let Some(b) = q.before {
        and("id < #", Value::Blob(b.as_bytes().to_vec()));
    }
    let arms: Vec<String> = months
        .iter()
        .map(|m| {
            format!(
                "SELECT {ENTRY_COLUMNS} FROM {} WHERE {conditions}",
                table(*m)
            )
        })
        .collect();
    values.push(Value::Integer(i64::try_from(q.limit).unwrap_or(i64::MAX)));
    let sql = format!(
        "{} ORDER BY id DESC LIMIT ?{}",
        arms.join(" UNION ALL "),
        values.len()
    );
    let mut stmt = tx.prepare_cached(&sql).db()?;
    let mut rows = stmt.query(params_from_iter(values)).db()?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().db()? {
        out.push(entry_from_row(r, scope, 0)?);
    }
    Ok(out)
}

fn segment_exists(c: &Connection, month: Month) -> Result<bool, StoreError> {
    c.prepare_cached("SELECT EXISTS (SELECT 1 FROM audit_segments WHERE month = ?1)")
        .db()?
        .query_row([month.to_string()], |r| r.get(0))
        .db()
}

fn segments(c: &mut Connection) -> Result<Vec<AuditSegment>, StoreError> {
    let tx = c.transaction().db()?;
    let months = months(&tx)?;
    let mut out = Vec::with_capacity(months.len());
    for month in months {
        let n: i64 = tx
            .prepare_cached(&format!("SELECT count(*) FROM {}", table(month)))
            .db()?
            .query_row([], |r| r.get(0))
            .db()?;
        out.push(AuditSegment {
            month,
            entries: u64::try_from(n).unwrap_or(0),
        });
    }
    Ok(out)
}

/// The organization and partition of each chain met, looked up once per call.
struct Scopes(HashMap<i64, Scope>);

impl Scopes {
    fn of(&mut self, c: &Connection, chain: i64) -> Result<Scope, StoreError> {
        if let Some(s) = self.0.get(&chain) {
            return Ok(*s);
        }
        let scope = c
            .prepare_cached("SELECT org_id, partition FROM audit_heads WHERE chain = ?1")
            .db()?
            .query_row([chain], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?))
            })
            .optional()
            .db()?
            .and_then(|(org, partition)| {
                Some(Scope {
                    org: OrgId(Uuid::from_slice(&org).ok()?),
                    partition: audit_codes::partition_of(partition)?,
                })
            })
            .ok_or_else(|| StoreError::corrupt("audit chain"))?;
        self.0.insert(chain, scope);
        Ok(scope)
    }
}

fn scope_cols(r: &Row<'_>, i: usize) -> Result<Scope, StoreError> {
    let partition = int_col(r.get_ref(i + 1).db()?, "partition")?;
    Ok(Scope {
        org: OrgId(uuid_col(r.get_ref(i).db()?, "org_id")?),
        partition: audit_codes::partition_of(partition)
            .ok_or_else(|| StoreError::corrupt("partition"))?,
    })
}

/// A page of a segment's entries in (chain, seq) order, after `after`.
fn segment_entries(
    c: &mut Connection,
    month: Month,
    after: Option<SegmentPosition>,
    limit: usize,
) -> Result<Vec<ChainedEntry>, StoreError> {
    let tx = c.transaction().db()?;
    if !segment_exists(&tx, month)? || limit == 0 {
        return Ok(Vec::new());
    }
    let (chain, seq) = match after {
        None => (i64::MIN, 0),
        Some(p) => (
            chain_id(&tx, p.scope)?
                .ok_or_else(|| StoreError::Backend("no audit chain for that position".into()))?,
            i64::try_from(p.seq).unwrap_or(i64::MAX),
        ),
    };
    let mut scopes = Scopes(HashMap::new());
    let mut stmt = tx
        .prepare_cached(&format!(
            "SELECT chain, seq, hash, {ENTRY_COLUMNS} FROM {}
             WHERE (chain, seq) > (?1, ?2) ORDER BY chain, seq LIMIT ?3",
            table(month)
        ))
        .db()?;
    let mut rows = stmt
        .query(params![
            chain,
            seq,
            i64::try_from(limit).unwrap_or(i64::MAX)
        ])
        .db()?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().db()? {
        let scope = scopes.of(&tx, int_col(r.get_ref(0).db()?, "chain")?)?;
        out.push(ChainedEntry {
            seq: seq_value(r.get_ref(1).db()?, "seq")?,
            hash: hash_value(r.get_ref(2).db()?, "hash")?,
            entry: entry_from_row(r, scope, 3)?,
        });
    }
    Ok(out)
}

fn segment_heads(c: &mut Connection, month: Month) -> Result<Vec<SegmentHead>, StoreError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT h.org_id, h.partition, s.first_seq, s.prev_hash
             FROM audit_segment_heads s JOIN audit_heads h ON h.chain = s.chain
             WHERE s.month = ?1",
        )
        .db()?;
    let mut rows = stmt.query([month.to_string()]).db()?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().db()? {
        out.push(SegmentHead {
            scope: scope_cols(r, 0)?,
            first_seq: seq_value(r.get_ref(2).db()?, "first_seq")?,
            prev_hash: hash_value(r.get_ref(3).db()?, "prev_hash")?,
        });
    }
    Ok(out)
}

fn heads(c: &mut Connection) -> Result<Vec<ChainHead>, StoreError> {
    let mut stmt = c
        .prepare_cached("SELECT org_id, partition, seq, hash FROM audit_heads WHERE seq > 0")
        .db()?;
    let mut rows = stmt.query([]).db()?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().db()? {
        out.push(ChainHead {
            scope: scope_cols(r, 0)?,
            seq: seq_value(r.get_ref(2).db()?, "seq")?,
            hash: hash_value(r.get_ref(3).db()?, "hash")?,
        });
    }
    Ok(out)
}

/// Drops a segment's table (its triggers and indexes with it) and its bookkeeping.
fn drop_segment(tx: &Transaction<'_>, month: Month) -> Result<(), StoreError> {
    tx.execute_batch(&format!("DROP TABLE IF EXISTS {}", table(month)))
        .db()?;
    for sql in [
        "DELETE FROM audit_segment_heads WHERE month = ?1",
        "DELETE FROM audit_segments WHERE month = ?1",
    ] {
        tx.prepare_cached(sql)
            .db()?
            .execute([month.to_string()])
            .db()?;
    }
    Ok(())
}

/// An entry of schema 1's `audit` table (text codes, fields as JSON).
fn legacy_entry(r: &Row<'_>) -> Result<AuditEntry, StoreError> {
    let fields: Vec<String> = serde_json::from_str(text_col(r.get_ref(9).db()?, "fields")?)
        .map_err(|_| StoreError::corrupt("fields"))?;
    Ok(AuditEntry {
        id: uuid_col(r.get_ref(0).db()?, "id")?,
        scope: Scope {
            org: OrgId(uuid_col(r.get_ref(1).db()?, "org_id")?),
            partition: parse_col::<Partition>(r.get_ref(2).db()?, "partition")?,
        },
        at: time_col(r.get_ref(3).db()?, "at")?,
        actor: opt_uuid_col(r.get_ref(4).db()?, "actor")?,
        actor_role: opt_parse_col(r.get_ref(5).db()?, "actor_role")?,
        action: text_col(r.get_ref(6).db()?, "action")?.to_owned(),
        object_kind: opt_parse_col(r.get_ref(7).db()?, "object_kind")?,
        object_id: opt_text_col(r.get_ref(8).db()?, "object_id")?.map(str::to_owned),
        fields,
        detail: text_col(r.get_ref(10).db()?, "detail")?.to_owned(),
    })
}

impl SqliteStore {
    /// Moves the entries of schema 1's `audit` table into the chained segments, in (at, id)
    /// order, and drops it — in one transaction, so a crash leaves the old table whole and the
    /// next open does it again. Nothing to do once done.
    pub(crate) fn chain_legacy_entries(audit_path: &Path) -> Result<(), StoreError> {
        const LEGACY: &str =
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit')";
        let mut conn = Connection::open(audit_path).db()?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).db()?;
        let legacy: bool = conn.query_row(LEGACY, [], |r| r.get(0)).db()?;
        if !legacy {
            return Ok(());
        }
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .db()?;
        // Another process may have done it meanwhile.
        let legacy: bool = tx.query_row(LEGACY, [], |r| r.get(0)).db()?;
        if !legacy {
            return Ok(());
        }
        // The segments the entries need exist before the entries are read: no schema change while
        // the read is under way. Those left empty (months without entries) are dropped after.
        let (first, last): (Option<i64>, Option<i64>) = tx
            .query_row("SELECT min(at), max(at) FROM audit", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .db()?;
        let mut created = Vec::new();
        if let (Some(first), Some(last)) = (first, last) {
            let (mut month, last) = (
                Month::of(contextd_core::time::from_millis(first)),
                Month::of(contextd_core::time::from_millis(last)),
            );
            loop {
                if !segment_exists(&tx, month)? {
                    ensure_segment(&tx, month)?;
                    created.push(month);
                }
                if month >= last {
                    break;
                }
                month = month.next();
            }
        }
        let mut moved = 0u64;
        {
            let mut stmt = tx
                .prepare(
                    "SELECT id, org_id, partition, at, actor, actor_role, action, object_kind, object_id,
                         fields, detail
                     FROM audit ORDER BY at, id",
                )
                .db()?;
            let mut rows = stmt.query([]).db()?;
            let mut batch = Vec::with_capacity(LEGACY_BATCH);
            while let Some(r) = rows.next().db()? {
                batch.push(legacy_entry(r)?);
                if batch.len() == LEGACY_BATCH {
                    append(&tx, &batch)?;
                    moved += batch.len() as u64;
                    batch.clear();
                }
            }
            append(&tx, &batch)?;
            moved += batch.len() as u64;
        }
        for month in created {
            let used: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM audit_segment_heads WHERE month = ?1)",
                    [month.to_string()],
                    |r| r.get(0),
                )
                .db()?;
            if !used {
                drop_segment(&tx, month)?;
            }
        }
        tx.execute_batch("DROP TABLE audit").db()?;
        tx.commit().db()?;
        tracing::info!(
            entries = moved,
            "audit log moved into chained monthly segments"
        );
        Ok(())
    }
}
