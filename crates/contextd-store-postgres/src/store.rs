//! [`PgStore`]: the data schema.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextd_core::dictionary::{Field, FieldSet};
use contextd_core::ids::{ObjectId, OrgId, Scope};
use contextd_core::object::{Kind, State};
use contextd_core::store::{
    encode_sealed, ApiKeyRecord, AuditEntry, AuditQuery, Erasure, FlushJob, GrantRecord, IdPage,
    ObjectPage, ObjectWrite, OrgRecord, PagePosition, ParentCheck, SearchPlan, SessionRecord,
    Store, StoreError, StoredObject, TimelineQuery, Token, UserChange, UserRecord,
};
use deadpool_postgres::GenericClient;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::{
    col, count, ms, parse_col, prepare_dynamic, refs, Db, Failure, Migration, Profile,
};
use crate::rows::{object_from_row, ObjectRow, OBJECT_COLUMNS, OBJECT_COLUMN_COUNT};
use crate::search::{Filter, Statement};

/// The schema of the data, unless told otherwise.
pub const DATA_SCHEMA: &str = "contextd";

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
        sql: include_str!("../migrations/data/0004_erasures.sql"),
    },
    Migration {
        version: 5,
        sql: include_str!("../migrations/data/0005_sessions_by_user.sql"),
    },
];

/// Concurrent writers each hold a connection for one short transaction; PostgreSQL flushes
/// the WAL of concurrent commits together, so they share fsyncs (group commit) instead of
/// queuing behind one another's.
const PROFILE: Profile = Profile {
    name: "data",
    connections: 16,
    migrations: MIGRATIONS,
};

/// The data in one schema of a PostgreSQL database: objects, tokens, dictionary, orgs,
/// credentials, people, grants, the audit log and flush jobs. Several contextd instances may
/// share it.
pub struct PgStore {
    pub(crate) db: Db,
}

impl PgStore {
    /// Connects (`postgres://…`, libpq's `sslmode` honoured), creates the `contextd` schema
    /// if missing and applies pending migrations; safe when several instances start at once.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_schema(url, DATA_SCHEMA).await
    }

    /// As [`PgStore::connect`], with the data in `schema` (lowercase letters, digits, `_`).
    pub async fn connect_with_schema(url: &str, schema: &str) -> Result<Self, StoreError> {
        Ok(Self {
            db: Db::connect(url, schema, &PROFILE).await?,
        })
    }

    /// The backend's name: `postgres`.
    pub fn backend(&self) -> &'static str {
        "postgres"
    }

    /// Gathers planner statistics of the tables that changed much since they were last
    /// gathered; returns their names. A background task of the store does this every 10 s.
    pub async fn refresh_statistics(&self) -> Result<Vec<String>, StoreError> {
        self.db.refresh_statistics().await
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Json<serde_json::Value>, StoreError> {
    serde_json::to_value(value)
        .map(Json)
        .map_err(|e| StoreError::Backend(format!("cannot encode definition: {e}")))
}

fn definition<T: DeserializeOwned>(row: &Row) -> Result<T, Failure> {
    let Json(value): Json<T> = col(row, 0, "definition")?;
    Ok(value)
}

fn token_bytes(tokens: &[Token]) -> Vec<Vec<u8>> {
    tokens.iter().map(|t| t.0.to_vec()).collect()
}

// `$18` is the dictionary version the write was validated against (NULL: unchecked). The
// statement takes its lock on `objects` before its snapshot, so a dictionary change holding
// `objects` in SHARE mode (see `PgStore::change_dictionary`) either waits for it or is seen by it.
const INSERT_OBJECT: &str = "WITH dict AS (
         SELECT coalesce((SELECT version FROM dictionary_versions WHERE org_id = $1), 0) AS v
     ), inserted AS (
         INSERT INTO objects (org_id, partition, id, kind, customer_id, parent_id, state, media_type,
             detail_type, created, last_updated, touched, version, body, sealed, key_version)
         SELECT $1::uuid, $2::text, $3::uuid, $4::text, $5::uuid, $6::uuid, $7::text, $8::text,
             $9::text, $10::timestamptz, $11::timestamptz, $12::timestamptz, $13::bigint, $14::jsonb,
             $15::bytea, $16::bigint
         FROM dict WHERE $18::bigint IS NULL OR dict.v = $18
         ON CONFLICT DO NOTHING
         RETURNING id
     ), tokens_added AS (
         INSERT INTO tokens (org_id, partition, token, object_id)
         SELECT DISTINCT $1::uuid, $2::text, n.token, i.id FROM inserted i, unnest($17::bytea[]) AS n (token)
         ON CONFLICT DO NOTHING
     )
     SELECT (SELECT count(*) FROM inserted), (SELECT v FROM dict)";

// An insert linked to a customer: the customer row is locked (KEY SHARE) by the same statement,
// so an erase, which locks it FOR UPDATE first, either waits for this insert and then deletes
// it too, or runs first and leaves this insert nothing to link to. `$18` is the customer.
const INSERT_LINKED_OBJECT: &str = "WITH customer AS (
         SELECT id FROM objects
         WHERE org_id = $1 AND partition = $2 AND id = $18 AND kind = 'customer'
         FOR KEY SHARE
     ), dict AS (
         SELECT coalesce((SELECT version FROM dictionary_versions WHERE org_id = $1), 0) AS v
     ), inserted AS (
         INSERT INTO objects (org_id, partition, id, kind, customer_id, parent_id, state, media_type,
             detail_type, created, last_updated, touched, version, body, sealed, key_version)
         SELECT $1::uuid, $2::text, $3::uuid, $4::text, $5::uuid, $6::uuid, $7::text, $8::text,
             $9::text, $10::timestamptz, $11::timestamptz, $12::timestamptz, $13::bigint, $14::jsonb,
             $15::bytea, $16::bigint
         FROM customer, dict WHERE $19::bigint IS NULL OR dict.v = $19
         ON CONFLICT DO NOTHING
         RETURNING id
     ), tokens_added AS (
         INSERT INTO tokens (org_id, partition, token, object_id)
         SELECT DISTINCT $1::uuid, $2::text, n.token, i.id FROM inserted i, unnest($17::bytea[]) AS n (token)
         ON CONFLICT DO NOTHING
     )
     SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM customer), (SELECT v FROM dict)";

// `touched` never moves back: a child written meanwhile may have advanced it. Tokens are
// replaced by difference, so unchanged ones are not rewritten.
const UPDATE_OBJECT: &str = "WITH dict AS (
         SELECT coalesce((SELECT version FROM dictionary_versions WHERE org_id = $1), 0) AS v
     ), updated AS (
         UPDATE objects SET kind = $4, customer_id = $5, parent_id = $6, state = $7, media_type = $8,
             detail_type = $9, created = $10, last_updated = $11, touched = greatest(touched, $12),
             version = $13, body = $14, sealed = $15, key_version = $16
         FROM dict
         WHERE org_id = $1 AND partition = $2 AND id = $3 AND version = $18
             AND ($19::bigint IS NULL OR dict.v = $19)
         RETURNING id
     ), tokens_dropped AS (
         DELETE FROM tokens t USING updated u
         WHERE t.org_id = $1 AND t.partition = $2 AND t.object_id = u.id AND t.token <> ALL ($17::bytea[])
     ), tokens_added AS (
         INSERT INTO tokens (org_id, partition, token, object_id)
         SELECT DISTINCT $1::uuid, $2::text, n.token, u.id FROM updated u, unnest($17::bytea[]) AS n (token)
         ON CONFLICT DO NOTHING
     )
     SELECT (SELECT count(*) FROM updated), (SELECT v FROM dict)";

impl PgStore {
    /// One attempt at a write. Without a parent to check it is a single statement; with one,
    /// a transaction that locks the parent row first, so that the check, the write and the
    /// parent's `touched` refresh are one atomic step that the auto-close sweep and other
    /// children wait for.
    async fn write_once(
        &self,
        row: &ObjectRow,
        tokens: &Vec<Vec<u8>>,
        write: &ObjectWrite,
    ) -> Result<(), Failure> {
        let mut client = self.db.client().await?;
        let Some(check) = &write.parent_check else {
            if write.expected_version.is_none() || write.customer_check.is_none() {
                return write_row(&client, row, tokens, write).await;
            }
            let tx = client.transaction().await?;
            write_row(&tx, row, tokens, write).await?;
            tx.commit().await?;
            return Ok(());
        };
        let tx = client.transaction().await?;
        write_checked(&tx, row, tokens, write, check).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Several writes in one transaction.
    async fn write_all(
        &self,
        rows: &[(ObjectRow, Vec<Vec<u8>>)],
        writes: &[ObjectWrite],
    ) -> Result<(), Failure> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        for ((row, tokens), write) in rows.iter().zip(writes) {
            match &write.parent_check {
                Some(check) => write_checked(&tx, row, tokens, write, check).await?,
                None => write_row(&tx, row, tokens, write).await?,
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Runs a page statement and splits its rows into items and the total.
    async fn page<T>(
        &self,
        statement: Statement,
        limit: usize,
        map: impl Fn(&Row) -> Result<(T, PagePosition), Failure>,
        total_column: usize,
    ) -> Result<(Vec<T>, u64, Option<PagePosition>), StoreError> {
        let client = self.db.client().await?;
        let stmt = prepare_dynamic(&client, &statement.sql).await?;
        let rows = client
            .query(&stmt, &refs(&statement.params))
            .await
            .map_err(Failure::from)?;
        let mut total = 0;
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            total = count(col(r, total_column, "total")?)?;
            if col::<Option<Uuid>>(r, 0, "id")?.is_some() {
                items.push(map(r)?);
            }
        }
        let more = items.len() > limit;
        items.truncate(limit);
        let next = if more {
            items.last().map(|(_, p)| *p)
        } else {
            None
        };
        Ok((items.into_iter().map(|(t, _)| t).collect(), total, next))
    }
}

/// Locks the parent, writes, and refreshes the parent's `touched`, inside `tx`.
async fn write_checked(
    tx: &deadpool_postgres::Transaction<'_>,
    row: &ObjectRow,
    tokens: &Vec<Vec<u8>>,
    write: &ObjectWrite,
    check: &ParentCheck,
) -> Result<(), Failure> {
    let refresh_parent = check_parent(tx, row, check).await?;
    write_row(tx, row, tokens, write).await?;
    if refresh_parent {
        let stmt = tx
            .prepare_cached(
                "UPDATE objects SET touched = greatest(touched, $4)
                 WHERE org_id = $1 AND partition = $2 AND id = $3",
            )
            .await?;
        tx.execute(
            &stmt,
            &[&row.org, &row.partition, &check.id.0, &row.last_updated],
        )
        .await?;
    }
    Ok(())
}

/// Locks the customer an update moves the object to (as [`INSERT_LINKED_OBJECT`] does).
async fn lock_customer(
    c: &impl GenericClient,
    row: &ObjectRow,
    customer: Uuid,
) -> Result<(), Failure> {
    let stmt = c
        .prepare_cached(
            "SELECT id FROM objects WHERE org_id = $1 AND partition = $2 AND id = $3 AND kind = 'customer'
             FOR KEY SHARE",
        )
        .await?;
    match c
        .query_opt(&stmt, &[&row.org, &row.partition, &customer])
        .await?
    {
        Some(_) => Ok(()),
        None => Err(StoreError::CustomerNotFound.into()),
    }
}

/// Inserts (`expected_version` `None`) or updates the object with its tokens, in one
/// statement (an update that moves the object to a customer locks that customer first).
async fn write_row(
    c: &impl GenericClient,
    row: &ObjectRow,
    tokens: &Vec<Vec<u8>>,
    write: &ObjectWrite,
) -> Result<(), Failure> {
    let mut params = refs(&row.params);
    params.push(tokens);
    let customer = write.customer_check.map(|c| c.0);
    let dictionary = write
        .dictionary_version
        .map(|v| i64::try_from(v).unwrap_or(i64::MAX));
    let stale = |seen: i64| dictionary.is_some_and(|v| v != seen);
    let Some(expected) = &write.expected_version else {
        if let Some(customer) = &customer {
            params.push(customer);
            params.push(&dictionary);
            let stmt = c.prepare_cached(INSERT_LINKED_OBJECT).await?;
            let r = c.query_one(&stmt, &params).await?;
            let (inserted, found, seen): (i64, i64, i64) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            return match (inserted, found) {
                (_, 0) => Err(StoreError::CustomerNotFound.into()),
                (0, _) if stale(seen) => Err(StoreError::DictionaryChanged.into()),
                (0, _) => Err(StoreError::AlreadyExists.into()),
                _ => Ok(()),
            };
        }
        params.push(&dictionary);
        let stmt = c.prepare_cached(INSERT_OBJECT).await?;
        let r = c.query_one(&stmt, &params).await?;
        let (inserted, seen): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
        return match inserted {
            0 if stale(seen) => Err(StoreError::DictionaryChanged.into()),
            0 => Err(StoreError::AlreadyExists.into()),
            _ => Ok(()),
        };
    };
    if let Some(customer) = customer {
        lock_customer(c, row, customer).await?;
    }
    params.push(expected);
    params.push(&dictionary);
    let stmt = c.prepare_cached(UPDATE_OBJECT).await?;
    let r = c.query_one(&stmt, &params).await?;
    let (updated, seen): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
    if updated > 0 {
        return Ok(());
    }
    if stale(seen) {
        return Err(StoreError::DictionaryChanged.into());
    }
    // A statement of its own: at READ COMMITTED it sees the version that made the update
    // miss, which the update's snapshot may predate.
    let stmt = c
        .prepare_cached(
            "SELECT version FROM objects WHERE org_id = $1 AND partition = $2 AND id = $3",
        )
        .await?;
    Err(match c
        .query_opt(&stmt, &[&row.org, &row.partition, &row.id])
        .await?
    {
        Some(r) => StoreError::VersionConflict {
            current: col(&r, 0, "version")?,
        },
        None => StoreError::NotFound,
    }
    .into())
}

/// Locks the parent row and applies the parent rules; returns whether it is a request
/// whose `touched` the write must refresh.
async fn check_parent(
    tx: &deadpool_postgres::Transaction<'_>,
    row: &ObjectRow,
    check: &ParentCheck,
) -> Result<bool, Failure> {
    let stmt = tx
        .prepare_cached(
            "SELECT kind, state, touched FROM objects
             WHERE org_id = $1 AND partition = $2 AND id = $3 FOR UPDATE",
        )
        .await?;
    let Some(parent) = tx
        .query_opt(&stmt, &[&row.org, &row.partition, &check.id.0])
        .await?
    else {
        return Err(StoreError::ParentNotFound.into());
    };
    let kind: Kind = parse_col(&parent, 0, "kind")?;
    if kind != Kind::Request {
        return if check.must_be_request {
            Err(StoreError::ParentNotFound.into())
        } else {
            Ok(false)
        };
    }
    let state: State = parse_col(&parent, 1, "state")?;
    let touched: DateTime<Utc> = col(&parent, 2, "touched")?;
    if state != State::Active || touched < ms(&check.active_since) {
        return Err(StoreError::ParentClosed.into());
    }
    Ok(true)
}

pub(crate) fn api_key_from_row(r: &Row) -> Result<ApiKeyRecord, Failure> {
    let hash: &[u8] = col(r, 5, "secret_hash")?;
    Ok(ApiKeyRecord {
        id: col(r, 0, "id")?,
        scope: Scope {
            org: OrgId(col(r, 1, "org_id")?),
            partition: parse_col(r, 2, "partition")?,
        },
        name: col(r, 3, "name")?,
        role: parse_col(r, 4, "role")?,
        secret_hash: hash
            .try_into()
            .map_err(|_| crate::db::corrupt("secret_hash"))?,
        created: col(r, 6, "created")?,
        expires_at: col(r, 7, "expires_at")?,
        revoked_at: col(r, 8, "revoked_at")?,
    })
}

pub(crate) const API_KEY_COLUMNS: &str =
    "id, org_id, partition, name, role, secret_hash, created, expires_at, revoked_at";

/// Dictionary tables: their statements differ only by name.
#[derive(Clone, Copy)]
enum Table {
    Fields,
    FieldSets,
}

impl Table {
    fn list(self) -> &'static str {
        match self {
            Table::Fields => "SELECT definition FROM fields WHERE org_id = $1 ORDER BY id",
            Table::FieldSets => "SELECT definition FROM fieldsets WHERE org_id = $1 ORDER BY id",
        }
    }

    fn insert(self) -> &'static str {
        match self {
            Table::Fields => {
                "INSERT INTO fields (org_id, id, definition) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
            }
            Table::FieldSets => {
                "INSERT INTO fieldsets (org_id, id, definition) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
            }
        }
    }

    fn update(self) -> &'static str {
        match self {
            Table::Fields => "UPDATE fields SET definition = $3 WHERE org_id = $1 AND id = $2",
            Table::FieldSets => {
                "UPDATE fieldsets SET definition = $3 WHERE org_id = $1 AND id = $2"
            }
        }
    }

    fn delete(self) -> &'static str {
        match self {
            Table::Fields => "DELETE FROM fields WHERE org_id = $1 AND id = $2",
            Table::FieldSets => "DELETE FROM fieldsets WHERE org_id = $1 AND id = $2",
        }
    }
}

impl PgStore {
    /// Runs one fixed statement outside any explicit transaction; returns the rows changed.
    pub(crate) async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let client = self.db.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(Failure::from)?;
        Ok(client.execute(&stmt, params).await.map_err(Failure::from)?)
    }

    /// Runs one fixed query; returns its rows.
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.db.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(Failure::from)?;
        Ok(client.query(&stmt, params).await.map_err(Failure::from)?)
    }

    /// Runs one fixed query expected to return one row at most.
    pub(crate) async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        let client = self.db.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(Failure::from)?;
        Ok(client
            .query_opt(&stmt, params)
            .await
            .map_err(Failure::from)?)
    }

    async fn definitions<T: DeserializeOwned>(
        &self,
        table: Table,
        org: OrgId,
    ) -> Result<Vec<T>, StoreError> {
        let rows = self.query(table.list(), &[&org.0]).await?;
        Ok(rows
            .iter()
            .map(definition)
            .collect::<Result<Vec<T>, Failure>>()?)
    }

    /// Runs one dictionary change (`sql` with `params`, which must change a row, else
    /// `missing`) in a transaction that bumps the org's dictionary version. With `unused`
    /// tokens it first holds `objects` in SHARE mode — waiting for object writes in flight and
    /// holding back new ones — and refuses with `InUse` if any object carries one of them.
    async fn change_dictionary(
        &self,
        org: OrgId,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        missing: fn() -> StoreError,
        unused: &[Token],
    ) -> Result<(), Failure> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        if !unused.is_empty() {
            tx.batch_execute("LOCK TABLE objects IN SHARE MODE").await?;
            let r = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM tokens
                     WHERE org_id = $1 AND partition IN ('lab', 'production') AND token = ANY ($2))",
                    &[&org.0, &token_bytes(unused)],
                )
                .await?;
            if r.try_get::<_, bool>(0)? {
                return Err(StoreError::InUse.into());
            }
        }
        let stmt = tx.prepare_cached(sql).await?;
        if tx.execute(&stmt, params).await? == 0 {
            return Err(missing().into());
        }
        tx.execute(
            "INSERT INTO dictionary_versions (org_id, version) VALUES ($1, 1)
             ON CONFLICT (org_id) DO UPDATE SET version = dictionary_versions.version + 1",
            &[&org.0],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn put_definition(
        &self,
        table: Table,
        org: OrgId,
        id: &str,
        definition: Json<serde_json::Value>,
        create: bool,
        unused: &[Token],
    ) -> Result<(), StoreError> {
        let (sql, missing): (_, fn() -> StoreError) = if create {
            (table.insert(), || StoreError::AlreadyExists)
        } else {
            (table.update(), || StoreError::NotFound)
        };
        let params: [&(dyn ToSql + Sync); 3] = [&org.0, &id, &definition];
        self.db
            .retry(|| self.change_dictionary(org, sql, &params, missing, unused))
            .await
    }

    async fn delete_definition(
        &self,
        table: Table,
        org: OrgId,
        id: &str,
        unused: &[Token],
    ) -> Result<(), StoreError> {
        let params: [&(dyn ToSql + Sync); 2] = [&org.0, &id];
        self.db
            .retry(|| {
                self.change_dictionary(
                    org,
                    table.delete(),
                    &params,
                    || StoreError::NotFound,
                    unused,
                )
            })
            .await
    }
}

/// Reads an (id, last_updated) row of `search_ids`.
fn id_position(r: &Row) -> Result<(ObjectId, PagePosition), Failure> {
    let id = ObjectId(col(r, 0, "id")?);
    Ok((
        id,
        PagePosition {
            time: col(r, 1, "last_updated")?,
            id,
        },
    ))
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        PgStore::backend(self)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await
    }

    async fn create_org(&self, org: &OrgRecord) -> Result<(), StoreError> {
        let n = self
            .execute(
                "INSERT INTO orgs (id, name, created) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&org.id.0, &org.name, &ms(&org.created)],
            )
            .await?;
        if n == 0 {
            Err(StoreError::AlreadyExists)
        } else {
            Ok(())
        }
    }

    async fn org_by_name(&self, name: &str) -> Result<Option<OrgRecord>, StoreError> {
        let row = self
            .query_opt(
                "SELECT id, name, created FROM orgs WHERE name = $1",
                &[&name],
            )
            .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(OrgRecord {
            id: OrgId(col(&r, 0, "id")?),
            name: col(&r, 1, "name")?,
            created: col(&r, 2, "created")?,
        }))
    }

    async fn count_orgs(&self) -> Result<u64, StoreError> {
        let rows = self.query("SELECT count(*) FROM orgs", &[]).await?;
        let n: i64 = match rows.first() {
            Some(r) => col(r, 0, "count")?,
            None => 0,
        };
        Ok(count(n)?)
    }

    async fn orgs(&self) -> Result<Vec<OrgRecord>, StoreError> {
        let rows = self
            .query(
                "SELECT id, name, created FROM orgs ORDER BY name COLLATE \"C\"",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok(OrgRecord {
                    id: OrgId(col(r, 0, "id")?),
                    name: col(r, 1, "name")?,
                    created: col(r, 2, "created")?,
                })
            })
            .collect::<Result<_, Failure>>()?)
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let n = self
            .execute(
                "INSERT INTO api_keys (id, org_id, partition, name, role, secret_hash, created, expires_at,
                     revoked_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
                &[
                    &key.id,
                    &key.scope.org.0,
                    &key.scope.partition.as_str(),
                    &key.name,
                    &key.role.as_str(),
                    &&key.secret_hash[..],
                    &ms(&key.created),
                    &key.expires_at.as_ref().map(ms),
                    &key.revoked_at.as_ref().map(ms),
                ],
            )
            .await?;
        if n == 0 {
            Err(StoreError::AlreadyExists)
        } else {
            Ok(())
        }
    }

    async fn api_key(&self, id: Uuid) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = self
            .query_opt(
                &format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1"),
                &[&id],
            )
            .await?;
        Ok(row.as_ref().map(api_key_from_row).transpose()?)
    }

    async fn fields(&self, org: OrgId) -> Result<Vec<Field>, StoreError> {
        self.definitions(Table::Fields, org).await
    }

    async fn dictionary_version(&self, org: OrgId) -> Result<u64, StoreError> {
        let row = self
            .query_opt(
                "SELECT version FROM dictionary_versions WHERE org_id = $1",
                &[&org.0],
            )
            .await?;
        match row {
            Some(r) => Ok(count(col(&r, 0, "version")?)?),
            None => Ok(0),
        }
    }

    async fn put_field(
        &self,
        org: OrgId,
        field: &Field,
        create: bool,
        unused: &[Token],
    ) -> Result<(), StoreError> {
        self.put_definition(
            Table::Fields,
            org,
            &field.id,
            to_json(field)?,
            create,
            unused,
        )
        .await
    }

    async fn delete_field(&self, org: OrgId, id: &str, unused: &[Token]) -> Result<(), StoreError> {
        self.delete_definition(Table::Fields, org, id, unused).await
    }

    async fn fieldsets(&self, org: OrgId) -> Result<Vec<FieldSet>, StoreError> {
        self.definitions(Table::FieldSets, org).await
    }

    async fn put_fieldset(
        &self,
        org: OrgId,
        set: &FieldSet,
        create: bool,
        unused: &[Token],
    ) -> Result<(), StoreError> {
        self.put_definition(
            Table::FieldSets,
            org,
            &set.id,
            to_json(set)?,
            create,
            unused,
        )
        .await
    }

    async fn delete_fieldset(
        &self,
        org: OrgId,
        id: &str,
        unused: &[Token],
    ) -> Result<(), StoreError> {
        self.delete_definition(Table::FieldSets, org, id, unused)
            .await
    }

    async fn any_token_in_use(&self, org: OrgId, tokens: &[Token]) -> Result<bool, StoreError> {
        if tokens.is_empty() {
            return Ok(false);
        }
        let rows = self
            .query(
                "SELECT EXISTS (SELECT 1 FROM tokens
                 WHERE org_id = $1 AND partition IN ('lab', 'production') AND token = ANY ($2))",
                &[&org.0, &token_bytes(tokens)],
            )
            .await?;
        match rows.first() {
            Some(r) => Ok(col(r, 0, "exists")?),
            None => Ok(false),
        }
    }

    async fn write_object(&self, write: &ObjectWrite) -> Result<(), StoreError> {
        let row = ObjectRow::new(&write.object)?;
        let tokens = token_bytes(&write.tokens);
        self.db
            .retry(|| self.write_once(&row, &tokens, write))
            .await
    }

    async fn write_objects(&self, writes: &[ObjectWrite]) -> Result<(), StoreError> {
        let rows = writes
            .iter()
            .map(|w| Ok((ObjectRow::new(&w.object)?, token_bytes(&w.tokens))))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.db.retry(|| self.write_all(&rows, writes)).await
    }

    async fn object(&self, scope: Scope, id: ObjectId) -> Result<Option<StoredObject>, StoreError> {
        let row = self
            .query_opt(
                &format!(
                    "SELECT {OBJECT_COLUMNS} FROM objects o
                     WHERE o.org_id = $1 AND o.partition = $2 AND o.id = $3"
                ),
                &[&scope.org.0, &scope.partition.as_str(), &id.0],
            )
            .await?;
        Ok(row.map(|r| object_from_row(scope, &r)).transpose()?)
    }

    async fn delete_object(&self, scope: Scope, id: ObjectId) -> Result<(), StoreError> {
        let rows = self
            .query(
                "WITH deleted AS (
                     DELETE FROM objects WHERE org_id = $1 AND partition = $2 AND id = $3 RETURNING id
                 ), tokens_deleted AS (
                     DELETE FROM tokens t USING deleted d
                     WHERE t.org_id = $1 AND t.partition = $2 AND t.object_id = d.id
                 )
                 SELECT count(*) FROM deleted",
                &[&scope.org.0, &scope.partition.as_str(), &id.0],
            )
            .await?;
        let n: i64 = match rows.first() {
            Some(r) => col(r, 0, "count")?,
            None => 0,
        };
        if n == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }

    async fn search(&self, scope: Scope, plan: &SearchPlan) -> Result<ObjectPage, StoreError> {
        let Some(filter) = Filter::search(scope, plan) else {
            return Ok(ObjectPage::default());
        };
        let statement = filter.page(OBJECT_COLUMNS, plan.after, plan.limit);
        let (items, total, next) = self
            .page(
                statement,
                plan.limit,
                |r| {
                    let o = object_from_row(scope, r)?;
                    let position = PagePosition {
                        time: o.last_updated,
                        id: o.id,
                    };
                    Ok((o, position))
                },
                OBJECT_COLUMN_COUNT,
            )
            .await?;
        Ok(ObjectPage { items, total, next })
    }

    async fn search_ids(&self, scope: Scope, plan: &SearchPlan) -> Result<IdPage, StoreError> {
        let Some(filter) = Filter::search(scope, plan) else {
            return Ok(IdPage::default());
        };
        let statement = filter.page("o.id, o.last_updated", plan.after, plan.limit);
        let (ids, total, next) = self.page(statement, plan.limit, id_position, 2).await?;
        Ok(IdPage { ids, total, next })
    }

    async fn timeline(
        &self,
        scope: Scope,
        query: &TimelineQuery,
    ) -> Result<ObjectPage, StoreError> {
        let statement =
            Filter::timeline(scope, query).page(OBJECT_COLUMNS, query.after, query.limit);
        let (items, total, next) = self
            .page(
                statement,
                query.limit,
                |r| {
                    let o = object_from_row(scope, r)?;
                    let position = PagePosition {
                        time: o.created,
                        id: o.id,
                    };
                    Ok((o, position))
                },
                OBJECT_COLUMN_COUNT,
            )
            .await?;
        Ok(ObjectPage { items, total, next })
    }

    async fn close_stale_requests(
        &self,
        cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        // The literals match the partial index `objects_active_requests`. Rows a child write
        // has locked are waited for and checked again, so a request refreshed meanwhile stays
        // open.
        self.execute(
            "UPDATE objects SET state = 'closed', version = version + 1, last_updated = $2
             WHERE kind = 'request' AND state = 'active' AND touched < $1",
            &[&ms(&cutoff), &ms(&now)],
        )
        .await
    }

    async fn flush(&self, scope: Scope, kind: Kind) -> Result<u64, StoreError> {
        let rows = self
            .query(
                "WITH deleted AS (
                     DELETE FROM objects WHERE org_id = $1 AND partition = $2 AND kind = $3 RETURNING id
                 ), tokens_deleted AS (
                     DELETE FROM tokens t USING deleted d
                     WHERE t.org_id = $1 AND t.partition = $2 AND t.object_id = d.id
                 )
                 SELECT count(*) FROM deleted",
                &[&scope.org.0, &scope.partition.as_str(), &kind.as_str()],
            )
            .await?;
        match rows.first() {
            Some(r) => Ok(count(col(r, 0, "count")?)?),
            None => Ok(0),
        }
    }

    async fn put_flush_job(&self, job: &FlushJob) -> Result<(), StoreError> {
        let flushed = i64::try_from(job.flushed)
            .map_err(|_| StoreError::Backend("flushed count out of range".into()))?;
        self.execute(
            "INSERT INTO flush_jobs (org_id, partition, id, kind, completed, flushed, message, created)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (org_id, partition, id) DO UPDATE SET kind = excluded.kind,
                 completed = excluded.completed, flushed = excluded.flushed, message = excluded.message,
                 created = excluded.created",
            &[
                &job.scope.org.0,
                &job.scope.partition.as_str(),
                &job.id,
                &job.kind.as_str(),
                &job.completed,
                &flushed,
                &job.message,
                &ms(&job.created),
            ],
        )
        .await?;
        Ok(())
    }

    async fn flush_job(&self, scope: Scope, id: Uuid) -> Result<Option<FlushJob>, StoreError> {
        let row = self
            .query_opt(
                "SELECT kind, completed, flushed, message, created FROM flush_jobs
                 WHERE org_id = $1 AND partition = $2 AND id = $3",
                &[&scope.org.0, &scope.partition.as_str(), &id],
            )
            .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(FlushJob {
            id,
            scope,
            kind: parse_col(&r, 0, "kind")?,
            completed: col(&r, 1, "completed")?,
            flushed: count(col(&r, 2, "flushed")?)?,
            message: col(&r, 3, "message")?,
            created: col(&r, 4, "created")?,
        }))
    }

    async fn api_keys(&self, scope: Scope) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.list_api_keys(scope).await
    }

    async fn revoke_api_key(
        &self,
        scope: Scope,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.revoke(
            "UPDATE api_keys SET revoked_at = $4
             WHERE org_id = $1 AND partition = $2 AND id = $3 AND revoked_at IS NULL",
            scope,
            id,
            at,
        )
        .await
    }

    async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.add_user(user).await
    }

    async fn user_by_name(
        &self,
        scope: Scope,
        name: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        self.find_user_by_name(scope, name).await
    }

    async fn user(&self, id: Uuid) -> Result<Option<UserRecord>, StoreError> {
        self.find_user(id).await
    }

    async fn users(&self, scope: Scope) -> Result<Vec<UserRecord>, StoreError> {
        self.list_users(scope).await
    }

    async fn insert_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        self.add_session(session).await
    }

    async fn session(&self, secret_hash: [u8; 32]) -> Result<Option<SessionRecord>, StoreError> {
        self.find_session(secret_hash).await
    }

    async fn revoke_session(
        &self,
        secret_hash: [u8; 32],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.end_session(secret_hash, at).await
    }

    async fn update_user(
        &self,
        scope: Scope,
        id: Uuid,
        change: &UserChange,
    ) -> Result<UserRecord, StoreError> {
        self.change_user(scope, id, change).await
    }

    async fn delete_user(&self, scope: Scope, id: Uuid) -> Result<(), StoreError> {
        self.remove_user(scope, id).await
    }

    async fn revoke_user_sessions(
        &self,
        scope: Scope,
        user_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.end_all_sessions(scope, user_id, at).await
    }

    async fn insert_grant(&self, grant: &GrantRecord) -> Result<(), StoreError> {
        self.add_grant(grant).await
    }

    async fn has_active_grant(
        &self,
        scope: Scope,
        principal: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.active_grant(scope, principal, now).await
    }

    async fn revoke_grant(
        &self,
        scope: Scope,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.revoke(
            "UPDATE grants SET revoked_at = $4
             WHERE org_id = $1 AND partition = $2 AND id = $3 AND revoked_at IS NULL",
            scope,
            id,
            at,
        )
        .await
    }

    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        self.add_audit(entries).await
    }

    async fn audit(&self, scope: Scope, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.read_audit(scope, query).await
    }

    async fn erase_customer(
        &self,
        scope: Scope,
        customer: ObjectId,
    ) -> Result<Erasure, StoreError> {
        self.db.retry(|| self.erase(scope, customer)).await
    }

    async fn complete_erasure(&self, scope: Scope, customer: ObjectId) -> Result<(), StoreError> {
        let n = self
            .execute(
                "UPDATE erasures SET completed = true
                 WHERE org_id = $1 AND partition = $2 AND customer_id = $3",
                &[&scope.org.0, &scope.partition.as_str(), &customer.0],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn pending_erasures(&self, limit: usize) -> Result<Vec<(Scope, ObjectId)>, StoreError> {
        let rows = self
            .query(
                "SELECT org_id, partition, customer_id FROM erasures WHERE NOT completed
                 ORDER BY erased_at LIMIT $1",
                &[&i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let partition: String = col(r, 1, "partition")?;
            let partition = partition
                .parse()
                .map_err(|_| StoreError::Backend("corrupt erasure row".into()))?;
            let scope = Scope {
                org: OrgId(col(r, 0, "org_id")?),
                partition,
            };
            out.push((scope, ObjectId(col(r, 2, "customer_id")?)));
        }
        Ok(out)
    }

    async fn objects_to_reseal(
        &self,
        scope: Scope,
        below: u32,
        limit: usize,
    ) -> Result<Vec<StoredObject>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "SELECT {OBJECT_COLUMNS} FROM objects o
                     WHERE o.org_id = $1 AND o.partition = $2 AND o.key_version > 0 AND o.key_version < $3
                     LIMIT $4"
                ),
                &[
                    &scope.org.0,
                    &scope.partition.as_str(),
                    &i64::from(below),
                    &i64::try_from(limit).unwrap_or(i64::MAX),
                ],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| object_from_row(scope, r))
            .collect::<Result<_, Failure>>()?)
    }

    async fn count_objects_to_reseal(&self, scope: Scope, below: u32) -> Result<u64, StoreError> {
        let row = self
            .query_opt(
                "SELECT count(*) FROM objects
                 WHERE org_id = $1 AND partition = $2 AND key_version > 0 AND key_version < $3",
                &[&scope.org.0, &scope.partition.as_str(), &i64::from(below)],
            )
            .await?;
        match row {
            Some(r) => Ok(count(col(&r, 0, "count")?)?),
            None => Ok(0),
        }
    }

    async fn reseal_object(
        &self,
        scope: Scope,
        id: ObjectId,
        expected_version: i64,
        sealed: &BTreeMap<String, Vec<u8>>,
        key_version: u32,
    ) -> Result<(), StoreError> {
        let n = self
            .execute(
                "UPDATE objects SET sealed = $5, key_version = $6
                 WHERE org_id = $1 AND partition = $2 AND id = $3 AND version = $4",
                &[
                    &scope.org.0,
                    &scope.partition.as_str(),
                    &id.0,
                    &expected_version,
                    &encode_sealed(sealed),
                    &i64::from(key_version),
                ],
            )
            .await?;
        if n == 0 {
            // As the SQLite store: the object changed or went; the caller reads it again.
            return Err(StoreError::VersionConflict { current: -1 });
        }
        Ok(())
    }
}
