//! [`AuditStore`] for [`PgStore`]: the audit log in monthly segments, hash-chained per
//! organization and partition (the rules are the core's: `contextd_core::store::AuditStore`).
//!
//! `audit` is partitioned by month (`month` = YYYYMM, the segment), one partition per month,
//! `audit_YYYY_MM`, created by the append that first needs it; retention drops the partition.
//! Several instances append at once: an append locks the head row of each chain it extends
//! (`audit_heads`, in key order, so that appends queue rather than deadlock), computes the
//! links from the heads it read, and moves the heads on, all in one transaction. Partitions
//! are created under an advisory lock, so that two instances never race to create one.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextd_core::ids::{OrgId, Scope};
use contextd_core::object::Kind;
use contextd_core::store::{
    audit_codes, chain_hash, check_droppable, segment_of, AuditEntry, AuditQuery, AuditSegment,
    AuditStore, ChainHash, ChainHead, ChainedEntry, Month, SegmentHead, SegmentPosition,
    StoreError, GENESIS,
};
use deadpool_postgres::Transaction;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::{
    col, corrupt, execute_cached, ms, opt_parse_col, parse_col, prepare_dynamic, refs, Failure,
    Param,
};
use crate::known_months::KnownMonths;
use crate::store::PgStore;

/// The advisory lock under which segments are created and dropped ("ctxaudit" in ASCII).
const SEGMENT_LOCK: i64 = 0x6374_7861_7564_6974;

/// Legacy entries chained per append while converting the version 2 table.
const LEGACY_BATCH: i64 = 1000;

#[async_trait]
impl AuditStore for PgStore {
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.db
            .retry(|| async {
                let mut client = self.db.client().await?;
                let tx = client.transaction().await?;
                let made = append(&tx, entries, &self.audit_months).await?;
                tx.commit().await?;
                self.audit_months.learn(made);
                Ok(())
            })
            .await
    }

    async fn audit(&self, scope: Scope, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self.read_audit(scope, query).await?)
    }

    async fn audit_segments(&self) -> Result<Vec<AuditSegment>, StoreError> {
        let rows = self
            .query(
                "SELECT s.month, (SELECT count(*) FROM audit a WHERE a.month = s.month)
                 FROM audit_segments s ORDER BY s.month",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditSegment {
                    month: month_col(r, 0)?,
                    entries: u64::try_from(col::<i64>(r, 1, "count")?)
                        .map_err(|_| corrupt("count"))?,
                })
            })
            .collect::<Result<_, Failure>>()
            .map_err(StoreError::from)
    }

    async fn audit_segment_entries(
        &self,
        month: Month,
        after: Option<SegmentPosition>,
        limit: usize,
    ) -> Result<Vec<ChainedEntry>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let columns = format!("org_id, partition, seq, hash, {ENTRY_COLUMNS}");
        let rows = match after {
            None => {
                self.query(
                    &format!(
                        "SELECT {columns} FROM audit WHERE month = $1
                         ORDER BY org_id, partition, seq LIMIT $2"
                    ),
                    &[&month.number(), &limit],
                )
                .await?
            }
            Some(p) => {
                self.query(
                    &format!(
                        "SELECT {columns} FROM audit
                         WHERE month = $1 AND (org_id, partition, seq) > ($2, $3, $4)
                         ORDER BY org_id, partition, seq LIMIT $5"
                    ),
                    &[
                        &month.number(),
                        &p.scope.org.0,
                        &audit_codes::partition(p.scope.partition),
                        &i64::try_from(p.seq).unwrap_or(i64::MAX),
                        &limit,
                    ],
                )
                .await?
            }
        };
        rows.iter()
            .map(|r| {
                let scope = scope_cols(r, 0)?;
                Ok(ChainedEntry {
                    seq: seq_col(r, 2, "seq")?,
                    hash: hash_col(r, 3, "hash")?,
                    entry: entry_from_row(r, scope, 4)?,
                })
            })
            .collect::<Result<_, Failure>>()
            .map_err(StoreError::from)
    }

    async fn audit_segment_heads(&self, month: Month) -> Result<Vec<SegmentHead>, StoreError> {
        let rows = self
            .query(
                "SELECT org_id, partition, first_seq, prev_hash FROM audit_segment_heads
                 WHERE month = $1",
                &[&month.number()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SegmentHead {
                    scope: scope_cols(r, 0)?,
                    first_seq: seq_col(r, 2, "first_seq")?,
                    prev_hash: hash_col(r, 3, "prev_hash")?,
                })
            })
            .collect::<Result<_, Failure>>()
            .map_err(StoreError::from)
    }

    async fn audit_heads(&self) -> Result<Vec<ChainHead>, StoreError> {
        let rows = self
            .query(
                "SELECT org_id, partition, seq, hash FROM audit_heads WHERE seq > 0",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ChainHead {
                    scope: scope_cols(r, 0)?,
                    seq: seq_col(r, 2, "seq")?,
                    hash: hash_col(r, 3, "hash")?,
                })
            })
            .collect::<Result<_, Failure>>()
            .map_err(StoreError::from)
    }

    async fn drop_audit_segment(&self, month: Month) -> Result<(), StoreError> {
        check_droppable(month, Utc::now())?;
        self.audit_months.forget(month.number());
        self.db
            .retry(|| async {
                let mut client = self.db.client().await?;
                let tx = client.transaction().await?;
                // DROP locks the whole log: rather fail (and retry at the next run) than make
                // every append wait behind a long reader such as pg_dump.
                tx.batch_execute(SEGMENT_LOCK_TIMEOUT).await?;
                execute_cached(&tx, "SELECT pg_advisory_xact_lock($1)", &[&SEGMENT_LOCK]).await?;
                tx.batch_execute(&format!("DROP TABLE IF EXISTS {}", table(month)))
                    .await?;
                for sql in [
                    "DELETE FROM audit_segment_heads WHERE month = $1",
                    "DELETE FROM audit_segments WHERE month = $1",
                ] {
                    execute_cached(&tx, sql, &[&month.number()]).await?;
                }
                tx.commit().await?;
                Ok(())
            })
            .await
    }

    async fn audit_months(&self) -> Result<Vec<Month>, StoreError> {
        let rows = self
            .query("SELECT month FROM audit_segments ORDER BY month", &[])
            .await?;
        rows.iter()
            .map(|r| month_col(r, 0))
            .collect::<Result<_, Failure>>()
            .map_err(StoreError::from)
    }

    async fn prepare_audit_segment(&self, month: Month) -> Result<(), StoreError> {
        self.db
            .retry(|| async {
                let mut client = self.db.client().await?;
                let tx = client.transaction().await?;
                tx.batch_execute(SEGMENT_LOCK_TIMEOUT).await?;
                create_segment(&tx, month).await?;
                tx.commit().await?;
                Ok(())
            })
            .await
    }
}

/// How long creating or dropping a partition may wait for the lock on the whole log.
const SEGMENT_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '5s'";

/// The partition of a segment.
fn table(month: Month) -> String {
    format!("audit_{}", month.table_suffix())
}

fn month_col(r: &Row, i: usize) -> Result<Month, Failure> {
    Month::from_number(col::<i32>(r, i, "month")?.into()).ok_or_else(|| corrupt("month"))
}

fn seq_col(r: &Row, i: usize, what: &str) -> Result<u64, Failure> {
    u64::try_from(col::<i64>(r, i, what)?).map_err(|_| corrupt(what))
}

fn hash_col(r: &Row, i: usize, what: &str) -> Result<ChainHash, Failure> {
    col::<&[u8]>(r, i, what)?
        .try_into()
        .map_err(|_| corrupt(what))
}

fn scope_cols(r: &Row, i: usize) -> Result<Scope, Failure> {
    Ok(Scope {
        org: OrgId(col(r, i, "org_id")?),
        partition: audit_codes::partition_of(col::<i16>(r, i + 1, "partition")?.into())
            .ok_or_else(|| corrupt("partition"))?,
    })
}

/// The columns of an entry, after its scope.
const ENTRY_COLUMNS: &str = "id, at, actor, actor_role,
    (SELECT name FROM audit_actions WHERE code = action), object_kind, object_uuid, object_text,
    fields, detail";

/// An entry of `scope` from [`ENTRY_COLUMNS`] starting at column `i`.
fn entry_from_row(r: &Row, scope: Scope, i: usize) -> Result<AuditEntry, Failure> {
    let actor_role = col::<Option<i16>>(r, i + 3, "actor_role")?
        .map(|c| audit_codes::role_of(c.into()).ok_or_else(|| corrupt("actor_role")))
        .transpose()?;
    let object_kind = col::<Option<i16>>(r, i + 5, "object_kind")?
        .map(|c| audit_codes::kind_of(c.into()).ok_or_else(|| corrupt("object_kind")))
        .transpose()?;
    let object_id = match col::<Option<Uuid>>(r, i + 6, "object_uuid")? {
        Some(u) => Some(u.to_string()),
        None => col::<Option<String>>(r, i + 7, "object_text")?,
    };
    Ok(AuditEntry {
        id: col(r, i, "id")?,
        scope,
        at: col(r, i + 1, "at")?,
        actor: col(r, i + 2, "actor")?,
        actor_role,
        // NULL: a code without a name.
        action: col(r, i + 4, "action")?,
        object_kind,
        object_id,
        fields: audit_codes::fields_of(col::<&str>(r, i + 8, "fields")?)
            .ok_or_else(|| corrupt("fields"))?,
        detail: col(r, i + 9, "detail")?,
    })
}

/// Where a chain stands during an append.
struct Chain {
    seq: u64,
    hash: ChainHash,
    month: Option<Month>,
}

/// Chains and stores entries, in order, in the caller's transaction; returns the months whose
/// segment it found or made, for `known` to learn once the transaction commits.
async fn append(
    tx: &Transaction<'_>,
    entries: &[AuditEntry],
    known: &KnownMonths,
) -> Result<Vec<i32>, Failure> {
    // New action names first, in name order (a concurrent append adding the same one waits
    // for this transaction, never the other way round as well).
    let names: BTreeSet<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    let names: Vec<&str> = names.into_iter().collect();
    let add_actions = tx
        .prepare_cached(
            "INSERT INTO audit_actions (name)
             SELECT n FROM unnest($1::text[]) AS u (n)
             WHERE NOT EXISTS (SELECT 1 FROM audit_actions a WHERE a.name = u.n)
             ORDER BY n
             ON CONFLICT (name) DO NOTHING",
        )
        .await?;

    // The heads of the chains, created if new, then locked in key order.
    let scopes: BTreeSet<(Uuid, i16)> = entries
        .iter()
        .map(|e| (e.scope.org.0, audit_codes::partition(e.scope.partition)))
        .collect();
    let (orgs, partitions): (Vec<Uuid>, Vec<i16>) = scopes.into_iter().unzip();
    let add_heads = tx
        .prepare_cached(
            "INSERT INTO audit_heads (org_id, partition, seq, hash, month)
             SELECT k.o, k.p, 0::int8, $3::bytea, NULL::int4
             FROM unnest($1::uuid[], $2::int2[]) AS k (o, p)
             ORDER BY k.o, k.p
             ON CONFLICT DO NOTHING",
        )
        .await?;
    let lock_heads = tx
        .prepare_cached(
            "SELECT h.org_id, h.partition, h.seq, h.hash, h.month FROM audit_heads h
             WHERE (h.org_id, h.partition) IN
                 (SELECT k.o, k.p FROM unnest($1::uuid[], $2::int2[]) AS k (o, p))
             ORDER BY h.org_id, h.partition
             FOR UPDATE OF h",
        )
        .await?;
    // One round trip: the three statements are pipelined, and run in this order.
    let genesis = &GENESIS[..];
    let actions_params: [&(dyn ToSql + Sync); 1] = [&names];
    let heads_params: [&(dyn ToSql + Sync); 3] = [&orgs, &partitions, &genesis];
    let lock_params: [&(dyn ToSql + Sync); 2] = [&orgs, &partitions];
    let (_, _, locked) = futures::try_join!(
        tx.execute(&add_actions, &actions_params),
        tx.execute(&add_heads, &heads_params),
        tx.query(&lock_heads, &lock_params),
    )?;
    let mut chains: HashMap<Scope, Chain> = HashMap::new();
    for r in locked {
        let month = match col::<Option<i32>>(&r, 4, "month")? {
            Some(n) => Some(Month::from_number(n.into()).ok_or_else(|| corrupt("month"))?),
            None => None,
        };
        chains.insert(
            scope_cols(&r, 0)?,
            Chain {
                seq: seq_col(&r, 2, "seq")?,
                hash: hash_col(&r, 3, "hash")?,
                month,
            },
        );
    }

    // The links, computed in order from the heads read.
    let n = entries.len();
    let mut rows = Rows::with_capacity(n);
    let mut entered = Entered::default();
    for e in entries {
        let chain = match chains.entry(e.scope) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(_) => return Err(corrupt("audit head")),
        };
        let month = segment_of(e.at, chain.month);
        let seq = chain.seq + 1;
        let hash = chain_hash(&chain.hash, seq, e);
        if chain.month != Some(month) {
            entered.push(month, e.scope, seq, &chain.hash);
        }
        rows.push(e, month, seq, &hash);
        chain.seq = seq;
        chain.hash = hash;
        chain.month = Some(month);
    }

    // The segments the entries go to, created where missing (asked only about months this
    // instance has not seen yet).
    let months: BTreeSet<i32> = rows.months.iter().copied().collect();
    let unknown = known.unknown(&months);
    if !unknown.is_empty() {
        let stmt = tx
            .prepare_cached("SELECT month FROM audit_segments WHERE month = ANY($1::int4[])")
            .await?;
        let existing: Vec<i32> = tx
            .query(&stmt, &[&unknown])
            .await?
            .iter()
            .map(|r| col::<i32>(r, 0, "month"))
            .collect::<Result<_, _>>()?;
        for m in unknown.iter().filter(|m| !existing.contains(*m)) {
            let month = Month::from_number((*m).into()).ok_or_else(|| corrupt("month"))?;
            create_segment(tx, month).await?;
        }
    }

    let add_segment_heads = tx
        .prepare_cached(
            "INSERT INTO audit_segment_heads (month, org_id, partition, first_seq, prev_hash)
             SELECT * FROM unnest($1::int4[], $2::uuid[], $3::int2[], $4::int8[], $5::bytea[])",
        )
        .await?;
    let add_entries = tx
        .prepare_cached(
            "INSERT INTO audit (org_id, id, actor, object_uuid, seq, at, month, action, partition,
                 actor_role, object_kind, object_text, fields, detail, hash)
             SELECT u.org_id, u.id, u.actor, u.object_uuid, u.seq, u.at, u.month, a.code,
                 u.partition, u.actor_role, u.object_kind, u.object_text, u.fields, u.detail, u.hash
             FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::int8[],
                     $6::timestamptz[], $7::int4[], $8::text[], $9::int2[], $10::int2[],
                     $11::int2[], $12::text[], $13::text[], $14::text[], $15::bytea[])
                 AS u (org_id, id, actor, object_uuid, seq, at, month, action, partition,
                     actor_role, object_kind, object_text, fields, detail, hash)
             JOIN audit_actions a ON a.name = u.action",
        )
        .await?;
    let move_heads = tx
        .prepare_cached(
            "UPDATE audit_heads h SET seq = u.seq, hash = u.hash, month = u.month
             FROM unnest($1::uuid[], $2::int2[], $3::int8[], $4::bytea[], $5::int4[])
                 AS u (org_id, partition, seq, hash, month)
             WHERE h.org_id = u.org_id AND h.partition = u.partition",
        )
        .await?;
    let (mut orgs, mut partitions, mut seqs, mut hashes, mut months) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (scope, chain) in &chains {
        orgs.push(scope.org.0);
        partitions.push(audit_codes::partition(scope.partition));
        seqs.push(chain.seq as i64);
        hashes.push(chain.hash.to_vec());
        months.push(chain.month.map(Month::number));
    }
    // One round trip: the segment heads (an empty insert when no chain entered a segment),
    // the entries and the new chain heads, pipelined.
    let segment_heads_params: [&(dyn ToSql + Sync); 5] = [
        &entered.months,
        &entered.orgs,
        &entered.partitions,
        &entered.first_seqs,
        &entered.prev_hashes,
    ];
    let entries_params: [&(dyn ToSql + Sync); 15] = [
        &rows.orgs,
        &rows.ids,
        &rows.actors,
        &rows.object_uuids,
        &rows.seqs,
        &rows.ats,
        &rows.months,
        &rows.actions,
        &rows.partitions,
        &rows.roles,
        &rows.kinds,
        &rows.object_texts,
        &rows.fields,
        &rows.details,
        &rows.hashes,
    ];
    let move_params: [&(dyn ToSql + Sync); 5] = [&orgs, &partitions, &seqs, &hashes, &months];
    let (_, inserted, _) = futures::try_join!(
        tx.execute(&add_segment_heads, &segment_heads_params),
        tx.execute(&add_entries, &entries_params),
        tx.execute(&move_heads, &move_params),
    )?;

    if inserted != n as u64 {
        return Err(StoreError::Backend(format!(
            "audit append stored {inserted} of {n} entries (an action without a code)"
        ))
        .into());
    }
    Ok(unknown)
}

/// The columns of the entries of one append, as arrays.
struct Rows<'a> {
    orgs: Vec<Uuid>,
    ids: Vec<Uuid>,
    actors: Vec<Option<Uuid>>,
    object_uuids: Vec<Option<Uuid>>,
    seqs: Vec<i64>,
    ats: Vec<DateTime<Utc>>,
    months: Vec<i32>,
    actions: Vec<&'a str>,
    partitions: Vec<i16>,
    roles: Vec<Option<i16>>,
    kinds: Vec<Option<i16>>,
    object_texts: Vec<Option<&'a str>>,
    fields: Vec<String>,
    details: Vec<&'a str>,
    hashes: Vec<Vec<u8>>,
}

impl<'a> Rows<'a> {
    fn with_capacity(n: usize) -> Self {
        Self {
            orgs: Vec::with_capacity(n),
            ids: Vec::with_capacity(n),
            actors: Vec::with_capacity(n),
            object_uuids: Vec::with_capacity(n),
            seqs: Vec::with_capacity(n),
            ats: Vec::with_capacity(n),
            months: Vec::with_capacity(n),
            actions: Vec::with_capacity(n),
            partitions: Vec::with_capacity(n),
            roles: Vec::with_capacity(n),
            kinds: Vec::with_capacity(n),
            object_texts: Vec::with_capacity(n),
            fields: Vec::with_capacity(n),
            details: Vec::with_capacity(n),
            hashes: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, e: &'a AuditEntry, month: Month, seq: u64, hash: &ChainHash) {
        let object_uuid = e.object_id.as_deref().and_then(audit_codes::object_uuid);
        self.orgs.push(e.scope.org.0);
        self.ids.push(e.id);
        self.actors.push(e.actor);
        self.object_uuids.push(object_uuid);
        self.seqs.push(seq as i64);
        self.ats.push(ms(&e.at));
        self.months.push(month.number());
        self.actions.push(&e.action);
        self.partitions
            .push(audit_codes::partition(e.scope.partition));
        self.roles.push(e.actor_role.map(audit_codes::role));
        self.kinds.push(e.object_kind.map(audit_codes::kind));
        self.object_texts.push(match object_uuid {
            Some(_) => None,
            None => e.object_id.as_deref(),
        });
        self.fields.push(audit_codes::fields(&e.fields));
        self.details.push(&e.detail);
        self.hashes.push(hash.to_vec());
    }
}

/// The segment heads an append records, as arrays.
#[derive(Default)]
struct Entered {
    months: Vec<i32>,
    orgs: Vec<Uuid>,
    partitions: Vec<i16>,
    first_seqs: Vec<i64>,
    prev_hashes: Vec<Vec<u8>>,
}

impl Entered {
    fn push(&mut self, month: Month, scope: Scope, first_seq: u64, prev_hash: &ChainHash) {
        self.months.push(month.number());
        self.orgs.push(scope.org.0);
        self.partitions
            .push(audit_codes::partition(scope.partition));
        self.first_seqs.push(first_seq as i64);
        self.prev_hashes.push(prev_hash.to_vec());
    }
}

/// Creates a segment's partition, with its TRUNCATE trigger, unless another transaction did
/// (under the advisory lock: one at a time, whichever instance).
async fn create_segment(tx: &Transaction<'_>, month: Month) -> Result<(), Failure> {
    execute_cached(tx, "SELECT pg_advisory_xact_lock($1)", &[&SEGMENT_LOCK]).await?;
    let exists = tx
        .query_opt(
            "SELECT 1 FROM audit_segments WHERE month = $1",
            &[&month.number()],
        )
        .await?
        .is_some();
    if exists {
        return Ok(());
    }
    let t = table(month);
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {t} PARTITION OF audit FOR VALUES IN ({n});
         CREATE OR REPLACE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t}
             FOR EACH STATEMENT EXECUTE FUNCTION audit_is_append_only();",
        n = month.number()
    ))
    .await?;
    execute_cached(
        tx,
        "INSERT INTO audit_segments (month, created_at) VALUES ($1, now()) ON CONFLICT DO NOTHING",
        &[&month.number()],
    )
    .await?;
    Ok(())
}

/// An entry of the version 2 table (text codes, fields as JSON).
fn legacy_entry(r: &Row) -> Result<AuditEntry, Failure> {
    let Json(fields): Json<Vec<String>> = col(r, 9, "fields")?;
    Ok(AuditEntry {
        id: col(r, 0, "id")?,
        scope: Scope {
            org: OrgId(col(r, 1, "org_id")?),
            partition: parse_col(r, 2, "partition")?,
        },
        at: col(r, 3, "at")?,
        actor: col(r, 4, "actor")?,
        actor_role: opt_parse_col(r, 5, "actor_role")?,
        action: col(r, 6, "action")?,
        object_kind: opt_parse_col::<Kind>(r, 7, "object_kind")?,
        object_id: col(r, 8, "object_id")?,
        fields,
        detail: col(r, 10, "detail")?,
    })
}

impl PgStore {
    /// A page of a scope's entries, newest first, across the segments (PostgreSQL merges the
    /// partitions' indexes by id).
    async fn read_audit(&self, scope: Scope, q: &AuditQuery) -> Result<Vec<AuditEntry>, Failure> {
        let mut sql =
            format!("SELECT {ENTRY_COLUMNS} FROM audit WHERE org_id = $1 AND partition = $2");
        let mut params: Vec<Param> = vec![
            Box::new(scope.org.0),
            Box::new(audit_codes::partition(scope.partition)),
        ];
        let mut and = |condition: &str, value: Param| {
            params.push(value);
            sql.push_str(" AND ");
            sql.push_str(&condition.replace('#', &format!("${}", params.len())));
        };
        if let Some(a) = &q.action {
            and(
                "action = (SELECT code FROM audit_actions WHERE name = #)",
                Box::new(a.clone()),
            );
        }
        if let Some(a) = q.actor {
            and("actor = #", Box::new(a));
        }
        if let Some(o) = &q.object_id {
            match audit_codes::object_uuid(o) {
                Some(u) => and("object_uuid = #", Box::new(u)),
                None => and("object_text = #", Box::new(o.clone())),
            }
        }
        if let Some(t) = q.from {
            // An entry's segment is never before the month of its time.
            and("month >= #", Box::new(Month::of(t).number()));
            and("at >= #", Box::new(ms(&t)));
        }
        if let Some(t) = q.to {
            and("at <= #", Box::new(ms(&t)));
        }
        if let Some(b) = q.before {
            and("id < #", Box::new(b));
        }
        params.push(Box::new(i64::try_from(q.limit).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", params.len()));
        let client = self.db.client().await?;
        let stmt = prepare_dynamic(&client, &sql).await?;
        let rows = client.query(&stmt, &refs(&params)).await?;
        rows.iter().map(|r| entry_from_row(r, scope, 0)).collect()
    }

    /// Moves the entries of the version 2 table (`audit_v1`) into the chained segments, in
    /// (at, id) order, and drops it — in one transaction under the segments' advisory lock,
    /// so that instances starting together do it once and a crash leaves `audit_v1` whole.
    /// Nothing to do once done. Called when the store connects, after the migrations.
    pub(crate) async fn chain_legacy_audit(&self) -> Result<(), StoreError> {
        const LEGACY: &str = "SELECT to_regclass('audit_v1') IS NOT NULL";
        let legacy: bool = {
            let client = self.db.client().await?;
            let row = client.query_one(LEGACY, &[]).await.map_err(Failure::from)?;
            col(&row, 0, "exists")?
        };
        if !legacy {
            return Ok(());
        }
        let mut client = self.db.client().await?;
        let tx = client.transaction().await.map_err(Failure::from)?;
        let moved = async {
            execute_cached(&tx, "SELECT pg_advisory_xact_lock($1)", &[&SEGMENT_LOCK]).await?;
            // Looked up in the catalog by a query of its own: an advisory lock does not make
            // this session take in another's DROP, and to_regclass would still find the table
            // that an instance moved and dropped while this one waited for the lock.
            let row = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                         WHERE c.relname = 'audit_v1' AND n.nspname = current_schema())",
                    &[],
                )
                .await?;
            if !col::<bool>(&row, 0, "exists")? {
                return Ok(None);
            }
            // Pages by (at, id) rather than through a portal: a portal left open would keep
            // the table in use, and DROP TABLE below refuses a table in use. The index makes
            // each page one range read (it goes with the table).
            tx.batch_execute("CREATE INDEX IF NOT EXISTS audit_v1_by_time ON audit_v1 (at, id)")
                .await?;
            let first = tx
                .prepare(
                    "SELECT id, org_id, partition, at, actor, actor_role, action, object_kind,
                         object_id, fields, detail
                     FROM audit_v1 ORDER BY at, id LIMIT $1",
                )
                .await?;
            let next = tx
                .prepare(
                    "SELECT id, org_id, partition, at, actor, actor_role, action, object_kind,
                         object_id, fields, detail
                     FROM audit_v1 WHERE (at, id) > ($2, $3) ORDER BY at, id LIMIT $1",
                )
                .await?;
            let mut moved = 0u64;
            let mut after: Option<(DateTime<Utc>, Uuid)> = None;
            loop {
                let rows = match &after {
                    None => tx.query(&first, &[&LEGACY_BATCH]).await?,
                    Some((at, id)) => tx.query(&next, &[&LEGACY_BATCH, at, id]).await?,
                };
                let entries = rows
                    .iter()
                    .map(legacy_entry)
                    .collect::<Result<Vec<_>, Failure>>()?;
                if let Some(last) = entries.last() {
                    after = Some((last.at, last.id));
                    append(&tx, &entries, &KnownMonths::default()).await?;
                }
                moved += entries.len() as u64;
                if rows.len() < LEGACY_BATCH as usize {
                    break;
                }
            }
            tx.batch_execute("DROP TABLE audit_v1").await?;
            Ok::<_, Failure>(Some(moved))
        }
        .await?;
        if let Some(moved) = moved {
            tx.commit().await.map_err(Failure::from)?;
            tracing::info!(
                entries = moved,
                "audit log moved into chained monthly segments"
            );
        }
        Ok(())
    }
}
