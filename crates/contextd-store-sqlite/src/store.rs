//! [`SqliteStore`]: the data database.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextd_core::dictionary::{Field, FieldSet};
use contextd_core::ids::{ObjectId, OrgId, Partition, Scope};
use contextd_core::object::{Kind, State};
use contextd_core::store::{
    encode_sealed, ApiKeyRecord, AuditEntry, AuditQuery, Erasure, FlushJob, GrantRecord, IdPage,
    ObjectPage, ObjectWrite, OrgRecord, PagePosition, ParentCheck, SearchPlan, SessionRecord,
    Store, StoreError, StoredObject, TimelineQuery, Token, UserChange, UserRecord,
};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row, Transaction};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use crate::access;
use crate::db::{
    corrupt, int_col, ms, opt_time_col, parse_col, text_col, time_col, uuid_col, Db, DbResultExt,
    Migration, Profile,
};
use crate::rows::{object_from_row, ObjectRow, OBJECT_COLUMNS};
use crate::search::Filter;

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("../migrations/data/0001_init.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("../migrations/data/0002_access.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("../migrations/data/0003_key_versions.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("../migrations/data/0004_audit_moved.sql"),
    },
    Migration {
        version: 5,
        sql: include_str!("../migrations/data/0005_erasures.sql"),
    },
    Migration {
        version: 6,
        sql: include_str!("../migrations/data/0006_sessions_by_user.sql"),
    },
];

const AUDIT_MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sql: include_str!("../migrations/audit/0001_init.sql"),
}];

const AUDIT_PROFILE: Profile = Profile {
    name: "audit",
    journal_mode: "WAL",
    secure_delete: false,
    migrations: AUDIT_MIGRATIONS,
};

const PROFILE: Profile = Profile {
    name: "data",
    journal_mode: "WAL",
    secure_delete: false,
    migrations: MIGRATIONS,
};

/// The data database in one SQLite file (WAL mode): objects, tokens, dictionary, orgs,
/// API keys and flush jobs. Writes are group-committed by one writer thread; reads run on a
/// pool of query-only connections.
pub struct SqliteStore {
    db: Db,
    /// The audit log, in a file of its own (`<name>-audit.db` beside the data file): a commit
    /// to the data file empties its readers' page caches, and the audit log commits under
    /// every read load.
    audit: Db,
}

impl SqliteStore {
    /// Opens the file (creating it and its parent directories if missing) and its audit file,
    /// and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let audit_path = Self::audit_path(path);
        let audit = Db::open(&audit_path, &AUDIT_PROFILE)?;
        move_audit_out(path, &audit_path)?;
        Ok(Self {
            db: Db::open(path, &PROFILE)?,
            audit,
        })
    }

    /// Where the audit file of the data file `path` lives: `contextd.db` → `contextd-audit.db`.
    pub fn audit_path(path: &Path) -> std::path::PathBuf {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "contextd".into());
        path.with_file_name(format!("{stem}-audit.db"))
    }

    /// The backend's name: `sqlite`.
    pub fn backend(&self) -> &'static str {
        "sqlite"
    }

    /// Write transactions committed since open. Concurrent writes share commits (group
    /// commit), so under load this grows slower than the number of writes.
    pub fn commit_count(&self) -> u64 {
        self.db.commits()
    }
}

/// Copies the audit rows of a data file from before schema 4 into the audit file; schema 4 then
/// drops them. Safe to repeat (a crash between the two copies again; ids are unique).
fn move_audit_out(path: &Path, audit_path: &Path) -> Result<(), StoreError> {
    if !path.exists() {
        return Ok(());
    }
    let conn = Connection::open(path).db()?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).db()?;
    let legacy: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit')",
            [],
            |r| r.get(0),
        )
        .db()?;
    if !legacy {
        return Ok(());
    }
    let target = audit_path
        .to_str()
        .ok_or_else(|| StoreError::Backend("the audit file path is not UTF-8".into()))?;
    conn.execute("ATTACH DATABASE ?1 AS audit_file", params![target])
        .db()?;
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         INSERT OR IGNORE INTO audit_file.audit SELECT * FROM main.audit;
         COMMIT;
         DETACH DATABASE audit_file;",
    )
    .db()
}

fn blob(id: Uuid) -> [u8; 16] {
    id.into_bytes()
}

fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Backend(format!("cannot encode definition: {e}")))
}

fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|_| corrupt("definition"))
}

/// Inserts or updates the object with its tokens, checking the parent first.
fn write_object(
    tx: &Transaction<'_>,
    row: &ObjectRow,
    tokens: &[[u8; 16]],
    write: WriteMode,
) -> Result<(), StoreError> {
    let parent_rowid = match write.parent_check {
        Some(check) => check_parent(tx, row, &check)?,
        None => None,
    };
    if let Some(version) = write.dictionary_version {
        // The writer thread serializes this with dictionary changes.
        if dictionary_version(tx, row.org)? != version {
            return Err(StoreError::DictionaryChanged);
        }
    }
    if let Some(customer) = write.customer_check {
        // The writer thread serializes this with an erase: the customer is there, or gone.
        let exists: bool = tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM objects
                 WHERE org_id = ?1 AND partition = ?2 AND id = ?3 AND kind = 'customer')",
            )
            .db()?
            .query_row(params![row.org, row.partition, blob(customer.0)], |r| {
                r.get(0)
            })
            .db()?;
        if !exists {
            return Err(StoreError::CustomerNotFound);
        }
    }
    match write.expected_version {
        None => {
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO objects (org_id, partition, id, kind, customer_id, parent_id, state, media_type,
                         detail_type, created, last_updated, touched, version, body, sealed, key_version)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                     ON CONFLICT DO NOTHING",
                )
                .db()?
                .execute(params![
                    row.org,
                    row.partition,
                    row.id,
                    row.kind,
                    row.customer_id,
                    row.parent_id,
                    row.state,
                    row.media_type,
                    row.detail_type,
                    row.created,
                    row.last_updated,
                    row.touched,
                    row.version,
                    row.body,
                    row.sealed,
                    row.key_version,
                ])
                .db()?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists);
            }
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO tokens (org_id, partition, token, object_id) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO NOTHING",
                )
                .db()?;
            for token in tokens {
                insert
                    .execute(params![row.org, row.partition, token, row.id])
                    .db()?;
            }
        }
        Some(expected) => {
            // `touched` never moves back: a child written meanwhile may have advanced it.
            let updated = tx
                .prepare_cached(
                    "UPDATE objects SET kind = ?4, customer_id = ?5, parent_id = ?6, state = ?7, media_type = ?8,
                         detail_type = ?9, created = ?10, last_updated = ?11, touched = max(touched, ?12),
                         version = ?13, body = ?14, sealed = ?15, key_version = ?17
                     WHERE org_id = ?1 AND partition = ?2 AND id = ?3 AND version = ?16",
                )
                .db()?
                .execute(params![
                    row.org,
                    row.partition,
                    row.id,
                    row.kind,
                    row.customer_id,
                    row.parent_id,
                    row.state,
                    row.media_type,
                    row.detail_type,
                    row.created,
                    row.last_updated,
                    row.touched,
                    row.version,
                    row.body,
                    row.sealed,
                    expected,
                    row.key_version,
                ])
                .db()?;
            if updated == 0 {
                let current: Option<i64> = tx
                    .prepare_cached("SELECT version FROM objects WHERE org_id = ?1 AND partition = ?2 AND id = ?3")
                    .db()?
                    .query_row(params![row.org, row.partition, row.id], |r| r.get(0))
                    .optional()
                    .db()?;
                return Err(match current {
                    Some(current) => StoreError::VersionConflict { current },
                    None => StoreError::NotFound,
                });
            }
            replace_tokens(tx, row, tokens)?;
        }
    }
    if let Some(rowid) = parent_rowid {
        tx.prepare_cached("UPDATE objects SET touched = max(touched, ?1) WHERE rowid = ?2")
            .db()?
            .execute(params![row.last_updated, rowid])
            .db()?;
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct WriteMode {
    expected_version: Option<i64>,
    parent_check: Option<ParentCheck>,
    customer_check: Option<ObjectId>,
    dictionary_version: Option<u64>,
}

impl WriteMode {
    fn of(write: &ObjectWrite) -> Self {
        Self {
            expected_version: write.expected_version,
            parent_check: write.parent_check,
            customer_check: write.customer_check,
            dictionary_version: write.dictionary_version,
        }
    }
}

/// Applies the parent rules; returns the rowid of a parent request whose `touched` the write
/// must refresh.
fn check_parent(
    tx: &Transaction<'_>,
    row: &ObjectRow,
    check: &ParentCheck,
) -> Result<Option<i64>, StoreError> {
    let parent = tx
        .prepare_cached("SELECT rowid, kind, state, touched FROM objects WHERE org_id = ?1 AND partition = ?2 AND id = ?3")
        .db()?
        .query_row(params![row.org, row.partition, blob(check.id.0)], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?))
        })
        .optional()
        .db()?;
    let Some((rowid, kind, state, touched)) = parent else {
        return Err(StoreError::ParentNotFound);
    };
    let is_request = kind == Kind::Request.as_str();
    if !is_request {
        return if check.must_be_request {
            Err(StoreError::ParentNotFound)
        } else {
            Ok(None)
        };
    }
    if state != State::Active.as_str() || touched < ms(&check.active_since) {
        return Err(StoreError::ParentClosed);
    }
    Ok(Some(rowid))
}

/// Makes the object's token set equal to `tokens`, touching only the rows that change.
fn replace_tokens(
    tx: &Transaction<'_>,
    row: &ObjectRow,
    tokens: &[[u8; 16]],
) -> Result<(), StoreError> {
    let wanted: BTreeSet<[u8; 16]> = tokens.iter().copied().collect();
    let mut existing = BTreeSet::new();
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT token FROM tokens WHERE org_id = ?1 AND partition = ?2 AND object_id = ?3",
            )
            .db()?;
        let mut rows = stmt.query(params![row.org, row.partition, row.id]).db()?;
        while let Some(r) = rows.next().db()? {
            let token: [u8; 16] = r
                .get_ref(0)
                .db()?
                .as_blob()
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| corrupt("token"))?;
            existing.insert(token);
        }
    }
    let mut delete = tx
        .prepare_cached("DELETE FROM tokens WHERE org_id = ?1 AND partition = ?2 AND token = ?3 AND object_id = ?4")
        .db()?;
    for token in existing.difference(&wanted) {
        delete
            .execute(params![row.org, row.partition, token, row.id])
            .db()?;
    }
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO tokens (org_id, partition, token, object_id) VALUES (?1, ?2, ?3, ?4)",
        )
        .db()?;
    for token in wanted.difference(&existing) {
        insert
            .execute(params![row.org, row.partition, token, row.id])
            .db()?;
    }
    Ok(())
}

/// A read transaction over cached `BEGIN`/`COMMIT` statements (rusqlite's `Transaction`
/// parses them on every call), ended on drop so that no connection goes back to the pool
/// holding a snapshot.
struct ReadTransaction<'c>(&'c Connection);

impl<'c> ReadTransaction<'c> {
    fn begin(conn: &'c Connection) -> Result<Self, StoreError> {
        if !conn.is_autocommit() {
            // Left open by a failed COMMIT on an earlier use of this pooled connection.
            conn.prepare_cached("ROLLBACK").db()?.execute([]).db()?;
        }
        conn.prepare_cached("BEGIN").db()?.execute([]).db()?;
        Ok(Self(conn))
    }
}

impl std::ops::Deref for ReadTransaction<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.0
    }
}

impl Drop for ReadTransaction<'_> {
    fn drop(&mut self) {
        if !self.0.is_autocommit() {
            if let Err(e) = self
                .0
                .prepare_cached("COMMIT")
                .and_then(|mut s| s.execute([]))
            {
                tracing::warn!(error = %e, "ending a SQLite read transaction failed");
            }
        }
    }
}

/// Runs a page query and, only when the page does not tell it, the count query, in one read
/// transaction so that both see the same snapshot.
fn page<T>(
    conn: &Connection,
    filter: &Filter,
    columns: &str,
    after: Option<PagePosition>,
    limit: usize,
    map: impl Fn(&Row<'_>) -> Result<(T, PagePosition), StoreError>,
) -> Result<(Vec<T>, u64, Option<PagePosition>), StoreError> {
    let tx = ReadTransaction::begin(conn)?;
    let statement = filter.page(columns, after, limit.saturating_add(1));
    let mut items = Vec::with_capacity(limit.min(256) + 1);
    {
        let mut stmt = tx.prepare_cached(&statement.sql).db()?;
        let mut rows = stmt.query(params_from_iter(statement.params.iter())).db()?;
        while let Some(r) = rows.next().db()? {
            items.push(map(r)?);
        }
    }
    let more = items.len() > limit;
    items.truncate(limit);
    let total = if after.is_none() && !more {
        items.len() as u64
    } else {
        let count = filter.count();
        let n: i64 = tx
            .prepare_cached(&count.sql)
            .db()?
            .query_row(params_from_iter(count.params.iter()), |r| r.get(0))
            .db()?;
        u64::try_from(n).map_err(|_| corrupt("count"))?
    };
    let next = if more {
        items.last().map(|(_, p)| *p)
    } else {
        None
    };
    drop(tx);
    Ok((items.into_iter().map(|(t, _)| t).collect(), total, next))
}

fn token_blobs(tokens: &[Token]) -> Vec<[u8; 16]> {
    tokens.iter().map(|t| t.0).collect()
}

fn api_key_from_row(r: &Row<'_>) -> Result<ApiKeyRecord, StoreError> {
    let hash = r
        .get_ref(5)
        .db()?
        .as_blob()
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok());
    Ok(ApiKeyRecord {
        id: uuid_col(r.get_ref(0).db()?, "id")?,
        scope: Scope {
            org: OrgId(uuid_col(r.get_ref(1).db()?, "org_id")?),
            partition: parse_col::<Partition>(r.get_ref(2).db()?, "partition")?,
        },
        name: text_col(r.get_ref(3).db()?, "name")?.to_owned(),
        role: parse_col(r.get_ref(4).db()?, "role")?,
        secret_hash: hash.ok_or_else(|| corrupt("secret_hash"))?,
        created: time_col(r.get_ref(6).db()?, "created")?,
        expires_at: opt_time_col(r.get_ref(7).db()?, "expires_at")?,
        revoked_at: opt_time_col(r.get_ref(8).db()?, "revoked_at")?,
    })
}

/// Reads the definitions of one dictionary table, sorted by id.
fn definitions<T: DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    org: [u8; 16],
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).db()?;
    let mut rows = stmt.query([org]).db()?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().db()? {
        out.push(from_json(text_col(r.get_ref(0).db()?, "definition")?)?);
    }
    Ok(out)
}

/// Inserts (`create`) or replaces a dictionary entry.
/// Refuses a dictionary change if any object of the org carries one of `unused` (the writer
/// thread serializes this with object writes), then bumps the org's dictionary version.
fn dictionary_change(
    tx: &Transaction<'_>,
    org: [u8; 16],
    unused: &[[u8; 16]],
) -> Result<(), StoreError> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM tokens
             WHERE org_id = ?1 AND partition IN ('lab', 'production') AND token = ?2)",
        )
        .db()?;
    for token in unused {
        if stmt
            .query_row(params![org, token], |r| r.get::<_, bool>(0))
            .db()?
        {
            return Err(StoreError::InUse);
        }
    }
    tx.prepare_cached(
        "INSERT INTO dictionary_versions (org_id, version) VALUES (?1, 1)
         ON CONFLICT (org_id) DO UPDATE SET version = version + 1",
    )
    .db()?
    .execute(params![org])
    .db()?;
    Ok(())
}

/// The org's dictionary version (0 before any change).
fn dictionary_version(c: &Connection, org: [u8; 16]) -> Result<u64, StoreError> {
    let v: Option<i64> = c
        .prepare_cached("SELECT version FROM dictionary_versions WHERE org_id = ?1")
        .db()?
        .query_row(params![org], |r| r.get(0))
        .optional()
        .db()?;
    Ok(v.unwrap_or(0).max(0) as u64)
}

fn put_definition(
    tx: &Transaction<'_>,
    table: Table,
    org: [u8; 16],
    id: &str,
    definition: &str,
    create: bool,
) -> Result<(), StoreError> {
    let (insert, update) = match table {
        Table::Fields => (
            "INSERT INTO fields (org_id, id, definition) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            "UPDATE fields SET definition = ?3 WHERE org_id = ?1 AND id = ?2",
        ),
        Table::FieldSets => (
            "INSERT INTO fieldsets (org_id, id, definition) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            "UPDATE fieldsets SET definition = ?3 WHERE org_id = ?1 AND id = ?2",
        ),
    };
    let changed = tx
        .prepare_cached(if create { insert } else { update })
        .db()?
        .execute(params![org, id, definition])
        .db()?;
    match (changed, create) {
        (0, true) => Err(StoreError::AlreadyExists),
        (0, false) => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

#[derive(Clone, Copy)]
enum Table {
    Fields,
    FieldSets,
}

fn delete_definition(
    tx: &Transaction<'_>,
    table: Table,
    org: [u8; 16],
    id: &str,
) -> Result<(), StoreError> {
    let sql = match table {
        Table::Fields => "DELETE FROM fields WHERE org_id = ?1 AND id = ?2",
        Table::FieldSets => "DELETE FROM fieldsets WHERE org_id = ?1 AND id = ?2",
    };
    match tx
        .prepare_cached(sql)
        .db()?
        .execute(params![org, id])
        .db()?
    {
        0 => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        SqliteStore::backend(self)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await?;
        self.audit.ping().await
    }

    async fn create_org(&self, org: &OrgRecord) -> Result<(), StoreError> {
        let (id, name, created) = (blob(org.id.0), org.name.clone(), ms(&org.created));
        self.db
            .write(move |tx| {
                let n = tx
                    .prepare_cached("INSERT INTO orgs (id, name, created) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING")
                    .db()?
                    .execute(params![id, name, created])
                    .db()?;
                if n == 0 {
                    Err(StoreError::AlreadyExists)
                } else {
                    Ok(())
                }
            })
            .await
    }

    async fn org_by_name(&self, name: &str) -> Result<Option<OrgRecord>, StoreError> {
        let name = name.to_owned();
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached("SELECT id, name, created FROM orgs WHERE name = ?1")
                    .db()?;
                let mut rows = stmt.query([&name]).db()?;
                let Some(r) = rows.next().db()? else {
                    return Ok(None);
                };
                Ok(Some(OrgRecord {
                    id: OrgId(uuid_col(r.get_ref(0).db()?, "id")?),
                    name: text_col(r.get_ref(1).db()?, "name")?.to_owned(),
                    created: time_col(r.get_ref(2).db()?, "created")?,
                }))
            })
            .await
    }

    async fn count_orgs(&self) -> Result<u64, StoreError> {
        self.db
            .read(|c| {
                let n: i64 = c
                    .prepare_cached("SELECT count(*) FROM orgs")
                    .db()?
                    .query_row([], |r| r.get(0))
                    .db()?;
                u64::try_from(n).map_err(|_| corrupt("count"))
            })
            .await
    }

    async fn orgs(&self) -> Result<Vec<OrgRecord>, StoreError> {
        self.db
            .read(|c| {
                let mut stmt = c
                    .prepare_cached("SELECT id, name, created FROM orgs ORDER BY name")
                    .db()?;
                let mut rows = stmt.query([]).db()?;
                let mut out = Vec::new();
                while let Some(r) = rows.next().db()? {
                    out.push(OrgRecord {
                        id: OrgId(uuid_col(r.get_ref(0).db()?, "id")?),
                        name: text_col(r.get_ref(1).db()?, "name")?.to_owned(),
                        created: time_col(r.get_ref(2).db()?, "created")?,
                    });
                }
                Ok(out)
            })
            .await
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let key = key.clone();
        self.db
            .write(move |tx| {
                let n = tx
                    .prepare_cached(
                        "INSERT INTO api_keys (id, org_id, partition, name, role, secret_hash, created, expires_at,
                             revoked_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
                    )
                    .db()?
                    .execute(params![
                        blob(key.id),
                        blob(key.scope.org.0),
                        key.scope.partition.as_str(),
                        key.name,
                        key.role.as_str(),
                        key.secret_hash,
                        ms(&key.created),
                        key.expires_at.as_ref().map(ms),
                        key.revoked_at.as_ref().map(ms),
                    ])
                    .db()?;
                if n == 0 {
                    Err(StoreError::AlreadyExists)
                } else {
                    Ok(())
                }
            })
            .await
    }

    async fn api_key(&self, id: Uuid) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.db
            .point_read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT id, org_id, partition, name, role, secret_hash, created, expires_at, revoked_at
                         FROM api_keys WHERE id = ?1",
                    )
                    .db()?;
                let mut rows = stmt.query([blob(id)]).db()?;
                rows.next().db()?.map(api_key_from_row).transpose()
            })
            .await
    }

    async fn fields(&self, org: OrgId) -> Result<Vec<Field>, StoreError> {
        self.db
            .read(move |c| {
                definitions(
                    c,
                    "SELECT definition FROM fields WHERE org_id = ?1 ORDER BY id",
                    blob(org.0),
                )
            })
            .await
    }

    async fn dictionary_version(&self, org: OrgId) -> Result<u64, StoreError> {
        self.db
            .point_read(move |c| dictionary_version(c, blob(org.0)))
            .await
    }

    async fn put_field(
        &self,
        org: OrgId,
        field: &Field,
        create: bool,
        unused: &[Token],
    ) -> Result<(), StoreError> {
        let (id, definition, unused) = (field.id.clone(), to_json(field)?, token_blobs(unused));
        self.db
            .write(move |tx| {
                dictionary_change(tx, blob(org.0), &unused)?;
                put_definition(tx, Table::Fields, blob(org.0), &id, &definition, create)
            })
            .await
    }

    async fn delete_field(&self, org: OrgId, id: &str, unused: &[Token]) -> Result<(), StoreError> {
        let (id, unused) = (id.to_owned(), token_blobs(unused));
        self.db
            .write(move |tx| {
                dictionary_change(tx, blob(org.0), &unused)?;
                delete_definition(tx, Table::Fields, blob(org.0), &id)
            })
            .await
    }

    async fn fieldsets(&self, org: OrgId) -> Result<Vec<FieldSet>, StoreError> {
        self.db
            .read(move |c| {
                definitions(
                    c,
                    "SELECT definition FROM fieldsets WHERE org_id = ?1 ORDER BY id",
                    blob(org.0),
                )
            })
            .await
    }

    async fn put_fieldset(
        &self,
        org: OrgId,
        set: &FieldSet,
        create: bool,
        unused: &[Token],
    ) -> Result<(), StoreError> {
        let (id, definition, unused) = (set.id.clone(), to_json(set)?, token_blobs(unused));
        self.db
            .write(move |tx| {
                dictionary_change(tx, blob(org.0), &unused)?;
                put_definition(tx, Table::FieldSets, blob(org.0), &id, &definition, create)
            })
            .await
    }

    async fn delete_fieldset(
        &self,
        org: OrgId,
        id: &str,
        unused: &[Token],
    ) -> Result<(), StoreError> {
        let (id, unused) = (id.to_owned(), token_blobs(unused));
        self.db
            .write(move |tx| {
                dictionary_change(tx, blob(org.0), &unused)?;
                delete_definition(tx, Table::FieldSets, blob(org.0), &id)
            })
            .await
    }

    async fn any_token_in_use(&self, org: OrgId, tokens: &[Token]) -> Result<bool, StoreError> {
        if tokens.is_empty() {
            return Ok(false);
        }
        let tokens = token_blobs(tokens);
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM tokens
                         WHERE org_id = ?1 AND partition IN ('lab', 'production') AND token = ?2)",
                    )
                    .db()?;
                for token in &tokens {
                    if stmt
                        .query_row(params![blob(org.0), token], |r| r.get::<_, bool>(0))
                        .db()?
                    {
                        return Ok(true);
                    }
                }
                Ok(false)
            })
            .await
    }

    async fn write_object(&self, write: &ObjectWrite) -> Result<(), StoreError> {
        let row = ObjectRow::new(&write.object)?;
        let tokens = token_blobs(&write.tokens);
        let mode = WriteMode::of(write);
        self.db
            .write(move |tx| write_object(tx, &row, &tokens, mode))
            .await
    }

    async fn write_objects(&self, writes: &[ObjectWrite]) -> Result<(), StoreError> {
        let rows = writes
            .iter()
            .map(|w| {
                Ok((
                    ObjectRow::new(&w.object)?,
                    token_blobs(&w.tokens),
                    WriteMode::of(w),
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.db
            .write(move |tx| {
                for (row, tokens, mode) in &rows {
                    write_object(tx, row, tokens, *mode)?;
                }
                Ok(())
            })
            .await
    }

    async fn object(&self, scope: Scope, id: ObjectId) -> Result<Option<StoredObject>, StoreError> {
        self.db
            .point_read(move |c| {
                let mut stmt = c
                    .prepare_cached(&format!(
                        "SELECT {OBJECT_COLUMNS} FROM objects o WHERE o.org_id = ?1 AND o.partition = ?2 AND o.id = ?3"
                    ))
                    .db()?;
                let mut rows = stmt.query(params![blob(scope.org.0), scope.partition.as_str(), blob(id.0)]).db()?;
                rows.next().db()?.map(|r| object_from_row(scope, r)).transpose()
            })
            .await
    }

    async fn delete_object(&self, scope: Scope, id: ObjectId) -> Result<(), StoreError> {
        let (org, partition, id) = (blob(scope.org.0), scope.partition.as_str(), blob(id.0));
        self.db
            .write(move |tx| {
                let n = tx
                    .prepare_cached(
                        "DELETE FROM objects WHERE org_id = ?1 AND partition = ?2 AND id = ?3",
                    )
                    .db()?
                    .execute(params![org, partition, id])
                    .db()?;
                if n == 0 {
                    return Err(StoreError::NotFound);
                }
                tx.prepare_cached(
                    "DELETE FROM tokens WHERE org_id = ?1 AND partition = ?2 AND object_id = ?3",
                )
                .db()?
                .execute(params![org, partition, id])
                .db()?;
                Ok(())
            })
            .await
    }

    async fn search(&self, scope: Scope, plan: &SearchPlan) -> Result<ObjectPage, StoreError> {
        let Some(filter) = Filter::search(scope, plan)? else {
            return Ok(ObjectPage::default());
        };
        let (after, limit) = (plan.after, plan.limit);
        let (items, total, next) = self
            .db
            .read(move |c| {
                page(c, &filter, OBJECT_COLUMNS, after, limit, |r| {
                    let o = object_from_row(scope, r)?;
                    let position = PagePosition {
                        time: o.last_updated,
                        id: o.id,
                    };
                    Ok((o, position))
                })
            })
            .await?;
        Ok(ObjectPage { items, total, next })
    }

    async fn search_ids(&self, scope: Scope, plan: &SearchPlan) -> Result<IdPage, StoreError> {
        let Some(filter) = Filter::search(scope, plan)? else {
            return Ok(IdPage::default());
        };
        let (after, limit) = (plan.after, plan.limit);
        let (ids, total, next) = self
            .db
            .read(move |c| {
                page(c, &filter, "o.id, o.last_updated", after, limit, |r| {
                    let id = ObjectId(uuid_col(r.get_ref(0).db()?, "id")?);
                    Ok((
                        id,
                        PagePosition {
                            time: time_col(r.get_ref(1).db()?, "last_updated")?,
                            id,
                        },
                    ))
                })
            })
            .await?;
        Ok(IdPage { ids, total, next })
    }

    async fn timeline(
        &self,
        scope: Scope,
        query: &TimelineQuery,
    ) -> Result<ObjectPage, StoreError> {
        let filter = Filter::timeline(scope, query);
        let (after, limit) = (query.after, query.limit);
        let (items, total, next) = self
            .db
            .read(move |c| {
                page(c, &filter, OBJECT_COLUMNS, after, limit, |r| {
                    let o = object_from_row(scope, r)?;
                    let position = PagePosition {
                        time: o.created,
                        id: o.id,
                    };
                    Ok((o, position))
                })
            })
            .await?;
        Ok(ObjectPage { items, total, next })
    }

    async fn close_stale_requests(
        &self,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let (cutoff, now) = (ms(&cutoff), ms(&now));
        self.db
            .write(move |tx| {
                // The literals match the partial index `objects_active_requests`.
                let n = tx
                    .prepare_cached(
                        "UPDATE objects SET state = 'closed', version = version + 1, last_updated = ?2
                         WHERE kind = 'request' AND state = 'active' AND touched < ?1",
                    )
                    .db()?
                    .execute(params![cutoff, now])
                    .db()?;
                Ok(n as u64)
            })
            .await
    }

    async fn flush(&self, scope: Scope, kind: Kind) -> Result<u64, StoreError> {
        let (org, partition, kind) = (blob(scope.org.0), scope.partition.as_str(), kind.as_str());
        self.db
            .write(move |tx| {
                tx.prepare_cached(
                    "DELETE FROM tokens WHERE org_id = ?1 AND partition = ?2 AND object_id IN
                         (SELECT id FROM objects WHERE org_id = ?1 AND partition = ?2 AND kind = ?3)",
                )
                .db()?
                .execute(params![org, partition, kind])
                .db()?;
                let n = tx
                    .prepare_cached("DELETE FROM objects WHERE org_id = ?1 AND partition = ?2 AND kind = ?3")
                    .db()?
                    .execute(params![org, partition, kind])
                    .db()?;
                Ok(n as u64)
            })
            .await
    }

    async fn put_flush_job(&self, job: &FlushJob) -> Result<(), StoreError> {
        let job = job.clone();
        let flushed = i64::try_from(job.flushed)
            .map_err(|_| StoreError::Backend("flushed count out of range".into()))?;
        self.db
            .write(move |tx| {
                tx.prepare_cached(
                    "INSERT INTO flush_jobs (org_id, partition, id, kind, completed, flushed, message, created)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (org_id, partition, id) DO UPDATE SET kind = excluded.kind,
                         completed = excluded.completed, flushed = excluded.flushed, message = excluded.message,
                         created = excluded.created",
                )
                .db()?
                .execute(params![
                    blob(job.scope.org.0),
                    job.scope.partition.as_str(),
                    blob(job.id),
                    job.kind.as_str(),
                    job.completed,
                    flushed,
                    job.message,
                    ms(&job.created),
                ])
                .db()?;
                Ok(())
            })
            .await
    }

    async fn flush_job(&self, scope: Scope, id: Uuid) -> Result<Option<FlushJob>, StoreError> {
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT kind, completed, flushed, message, created FROM flush_jobs
                         WHERE org_id = ?1 AND partition = ?2 AND id = ?3",
                    )
                    .db()?;
                let mut rows = stmt
                    .query(params![
                        blob(scope.org.0),
                        scope.partition.as_str(),
                        blob(id)
                    ])
                    .db()?;
                let Some(r) = rows.next().db()? else {
                    return Ok(None);
                };
                Ok(Some(FlushJob {
                    id,
                    scope,
                    kind: parse_col(r.get_ref(0).db()?, "kind")?,
                    completed: int_col(r.get_ref(1).db()?, "completed")? != 0,
                    flushed: u64::try_from(int_col(r.get_ref(2).db()?, "flushed")?)
                        .map_err(|_| corrupt("flushed"))?,
                    message: text_col(r.get_ref(3).db()?, "message")?.to_owned(),
                    created: time_col(r.get_ref(4).db()?, "created")?,
                }))
            })
            .await
    }

    async fn api_keys(&self, scope: Scope) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT id, org_id, partition, name, role, secret_hash, created, expires_at, revoked_at
                         FROM api_keys WHERE org_id = ?1 AND partition = ?2 ORDER BY id",
                    )
                    .db()?;
                let mut rows = stmt.query(params![blob(scope.org.0), scope.partition.as_str()]).db()?;
                let mut out = Vec::new();
                while let Some(r) = rows.next().db()? {
                    out.push(api_key_from_row(r)?);
                }
                Ok(out)
            })
            .await
    }

    async fn revoke_api_key(
        &self,
        scope: Scope,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.db
            .write(move |tx| access::revoke(tx, "api_keys", scope, id, at))
            .await
    }

    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let user = user.clone();
        self.db
            .write(move |tx| access::insert_user(tx, &user))
            .await
    }

    async fn user_by_name(
        &self,
        scope: Scope,
        name: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        let name = name.to_owned();
        self.db
            .read(move |c| access::user_by_name(c, scope, &name))
            .await
    }

    async fn user(&self, id: Uuid) -> Result<Option<UserRecord>, StoreError> {
        self.db.point_read(move |c| access::user(c, id)).await
    }

    async fn users(&self, scope: Scope) -> Result<Vec<UserRecord>, StoreError> {
        self.db.read(move |c| access::users(c, scope)).await
    }

    async fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        let session = session.clone();
        self.db
            .write(move |tx| access::insert_session(tx, &session))
            .await
    }

    async fn session(&self, secret_hash: [u8; 32]) -> Result<Option<SessionRecord>, StoreError> {
        self.db
            .point_read(move |c| access::session(c, secret_hash))
            .await
    }

    async fn revoke_session(
        &self,
        secret_hash: [u8; 32],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.db
            .write(move |tx| access::revoke_session(tx, secret_hash, at))
            .await
    }

    async fn update_user(
        &self,
        scope: Scope,
        id: Uuid,
        change: &UserChange,
    ) -> Result<UserRecord, StoreError> {
        let change = change.clone();
        self.db
            .write(move |tx| access::update_user(tx, scope, id, &change))
            .await
    }

    async fn delete_user(&self, scope: Scope, id: Uuid) -> Result<(), StoreError> {
        self.db
            .write(move |tx| access::delete_user(tx, scope, id))
            .await
    }

    async fn revoke_user_sessions(
        &self,
        scope: Scope,
        user_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.db
            .write(move |tx| access::revoke_user_sessions(tx, scope, user_id, at))
            .await
    }

    async fn insert_grant(&self, grant: &GrantRecord) -> Result<(), StoreError> {
        let grant = grant.clone();
        self.db
            .write(move |tx| access::insert_grant(tx, &grant))
            .await
    }

    async fn has_active_grant(
        &self,
        scope: Scope,
        principal: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.db
            .point_read(move |c| access::has_active_grant(c, scope, principal, now))
            .await
    }

    async fn revoke_grant(
        &self,
        scope: Scope,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.db
            .write(move |tx| access::revoke(tx, "grants", scope, id, at))
            .await
    }

    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        let entries = entries.to_vec();
        self.audit
            .write(move |tx| access::append_audit(tx, &entries))
            .await
    }

    async fn audit(&self, scope: Scope, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let query = query.clone();
        self.audit
            .read(move |c| access::audit(c, scope, &query))
            .await
    }

    async fn erase_customer(
        &self,
        scope: Scope,
        customer: ObjectId,
    ) -> Result<Erasure, StoreError> {
        self.db
            .write(move |tx| access::erase_customer(tx, scope, customer))
            .await
    }

    async fn complete_erasure(&self, scope: Scope, customer: ObjectId) -> Result<(), StoreError> {
        self.db
            .write(move |tx| access::complete_erasure(tx, scope, customer))
            .await
    }

    async fn pending_erasures(&self, limit: usize) -> Result<Vec<(Scope, ObjectId)>, StoreError> {
        self.db
            .read(move |c| access::pending_erasures(c, limit))
            .await
    }

    async fn objects_to_reseal(
        &self,
        scope: Scope,
        below: u32,
        limit: usize,
    ) -> Result<Vec<StoredObject>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(&format!(
                        "SELECT {OBJECT_COLUMNS} FROM objects o
                         WHERE o.org_id = ?1 AND o.partition = ?2 AND o.key_version > 0 AND o.key_version < ?3
                         LIMIT ?4"
                    ))
                    .db()?;
                let mut rows = stmt
                    .query(params![blob(scope.org.0), scope.partition.as_str(), below, limit])
                    .db()?;
                let mut out = Vec::new();
                while let Some(r) = rows.next().db()? {
                    out.push(object_from_row(scope, r)?);
                }
                Ok(out)
            })
            .await
    }

    async fn count_objects_to_reseal(&self, scope: Scope, below: u32) -> Result<u64, StoreError> {
        self.db
            .read(move |c| {
                let n: i64 = c
                    .prepare_cached(
                        "SELECT count(*) FROM objects
                         WHERE org_id = ?1 AND partition = ?2 AND key_version > 0 AND key_version < ?3",
                    )
                    .db()?
                    .query_row(params![blob(scope.org.0), scope.partition.as_str(), below], |r| r.get(0))
                    .db()?;
                Ok(n.max(0) as u64)
            })
            .await
    }

    async fn reseal_object(
        &self,
        scope: Scope,
        id: ObjectId,
        expected_version: i64,
        sealed: &BTreeMap<String, Vec<u8>>,
        key_version: u32,
    ) -> Result<(), StoreError> {
        let sealed = encode_sealed(sealed);
        self.db
            .write(move |tx| {
                let n = tx
                    .prepare_cached(
                        "UPDATE objects SET sealed = ?5, key_version = ?6
                         WHERE org_id = ?1 AND partition = ?2 AND id = ?3 AND version = ?4",
                    )
                    .db()?
                    .execute(params![
                        blob(scope.org.0),
                        scope.partition.as_str(),
                        blob(id.0),
                        expected_version,
                        sealed,
                        key_version
                    ])
                    .db()?;
                if n == 0 {
                    return Err(StoreError::VersionConflict { current: -1 });
                }
                Ok(())
            })
            .await
    }
}
