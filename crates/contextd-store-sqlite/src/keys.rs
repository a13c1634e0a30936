//! [`SqliteKeyStore`]: wrapped keys, in a file apart from the data.

use std::path::Path;

use async_trait::async_trait;
use contextd_core::ids::{ObjectId, OrgId, Partition, Scope};
use contextd_core::store::{
    data_key_insert_conflict, same_key_set, KeyStore, Migration, StoreError, WrappedKey,
};
use rusqlite::{params, Connection, Row};

use crate::db::{int_col, parse_col, uuid_col, Db, DbResultExt, Profile};

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sql: include_str!("../migrations/keys/0001_init.sql"),
}];

/// The key store keeps a rollback journal rather than a WAL, with `secure_delete`: a
/// shredded customer key is overwritten in the database file at commit, and the journal that
/// held its old page is deleted with the transaction, instead of lingering in a WAL until
/// the next checkpoint. Key writes are rare, so the journal mode costs nothing that matters.
const PROFILE: Profile = Profile {
    name: "keys",
    journal_mode: "DELETE",
    secure_delete: true,
    migrations: MIGRATIONS,
};

/// The key store in its own SQLite file: wrapped data, index and customer keys.
pub struct SqliteKeyStore {
    db: Db,
}

impl SqliteKeyStore {
    /// Opens the file (creating it and its parent directories if missing) and applies
    /// pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            db: Db::open(path, &PROFILE)?,
        })
    }
}

fn key_from_row(r: &Row<'_>) -> Result<WrappedKey, StoreError> {
    let bytes = r.get_ref(2).db()?.as_blob();
    WrappedKey::from_columns(
        int_col(r.get_ref(0).db()?, "version")?,
        int_col(r.get_ref(1).db()?, "wrapped_by")?,
        bytes.map_err(|_| StoreError::corrupt("bytes"))?.to_vec(),
    )
}

fn scope_params(scope: Scope) -> ([u8; 16], &'static str) {
    (scope.org.0.into_bytes(), scope.partition.as_str())
}

/// Runs an insert that ends in `ON CONFLICT DO NOTHING`: no row inserted means the key exists.
fn insert_once(
    tx: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<(), StoreError> {
    match tx.prepare_cached(sql).db()?.execute(params).db()? {
        0 => Err(StoreError::AlreadyExists),
        _ => Ok(()),
    }
}

fn read_keys(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<WrappedKey>, StoreError> {
    let mut stmt = c.prepare_cached(sql).db()?;
    let mut rows = stmt.query(params).db()?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().db()? {
        out.push(key_from_row(r)?);
    }
    Ok(out)
}

const DATA_KEYS_SQL: &str =
    "SELECT version, wrapped_by, bytes FROM data_keys WHERE org_id = ?1 AND partition = ?2 ORDER BY version";
const INDEX_KEY_SQL: &str =
    "SELECT version, wrapped_by, bytes FROM index_keys WHERE org_id = ?1 AND partition = ?2";

#[async_trait]
impl KeyStore for SqliteKeyStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await
    }

    async fn data_keys(&self, scope: Scope) -> Result<Vec<WrappedKey>, StoreError> {
        let (org, partition) = scope_params(scope);
        self.db
            .read(move |c| read_keys(c, DATA_KEYS_SQL, params![org, partition]))
            .await
    }

    async fn insert_data_key(&self, scope: Scope, key: &WrappedKey) -> Result<(), StoreError> {
        let (org, partition) = scope_params(scope);
        let key = key.clone();
        // The write transaction is `BEGIN IMMEDIATE`: the check and the insert see no other
        // writer in between, whichever process it is.
        self.db
            .write(move |tx| {
                let stored = read_keys(tx, DATA_KEYS_SQL, params![org, partition])?;
                let index = read_keys(tx, INDEX_KEY_SQL, params![org, partition])?;
                if let Some(e) = data_key_insert_conflict(&stored, index.first(), &key) {
                    return Err(e);
                }
                insert_once(
                    tx,
                    "INSERT INTO data_keys (org_id, partition, version, wrapped_by, bytes) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT DO NOTHING",
                    params![org, partition, key.version, key.wrapped_by, key.bytes],
                )
            })
            .await
    }

    async fn index_key(&self, scope: Scope) -> Result<Option<WrappedKey>, StoreError> {
        let (org, partition) = scope_params(scope);
        self.db
            .read(move |c| {
                read_keys(c, INDEX_KEY_SQL, params![org, partition])
                    .map(|keys| keys.into_iter().next())
            })
            .await
    }

    async fn insert_index_key(&self, scope: Scope, key: &WrappedKey) -> Result<(), StoreError> {
        let (org, partition) = scope_params(scope);
        let key = key.clone();
        self.db
            .write(move |tx| {
                insert_once(
                    tx,
                    "INSERT INTO index_keys (org_id, partition, version, wrapped_by, bytes) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT DO NOTHING",
                    params![org, partition, key.version, key.wrapped_by, key.bytes],
                )
            })
            .await
    }

    async fn customer_key(
        &self,
        scope: Scope,
        customer: ObjectId,
    ) -> Result<Option<WrappedKey>, StoreError> {
        let (org, partition) = scope_params(scope);
        let customer = customer.0.into_bytes();
        self.db
            .read(move |c| {
                read_keys(
                    c,
                    "SELECT version, wrapped_by, bytes FROM customer_keys
                     WHERE org_id = ?1 AND partition = ?2 AND customer_id = ?3",
                    params![org, partition, customer],
                )
                .map(|keys| keys.into_iter().next())
            })
            .await
    }

    async fn insert_customer_key(
        &self,
        scope: Scope,
        customer: ObjectId,
        key: &WrappedKey,
    ) -> Result<(), StoreError> {
        let (org, partition) = scope_params(scope);
        let customer = customer.0.into_bytes();
        let key = key.clone();
        self.db
            .write(move |tx| {
                insert_once(
                    tx,
                    "INSERT INTO customer_keys (org_id, partition, customer_id, version, wrapped_by, bytes)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                    params![org, partition, customer, key.version, key.wrapped_by, key.bytes],
                )
            })
            .await
    }

    async fn insert_customer_keys(
        &self,
        scope: Scope,
        keys: &[(ObjectId, WrappedKey)],
    ) -> Result<Vec<bool>, StoreError> {
        let (org, partition) = scope_params(scope);
        let keys = keys.to_vec();
        self.db
            .write(move |tx| {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO customer_keys (org_id, partition, customer_id, version, wrapped_by, bytes)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                    )
                    .db()?;
                let mut stored = Vec::with_capacity(keys.len());
                for (customer, key) in &keys {
                    let n = insert
                        .execute(params![
                            org,
                            partition,
                            customer.0.into_bytes(),
                            key.version,
                            key.wrapped_by,
                            key.bytes
                        ])
                        .db()?;
                    stored.push(n == 1);
                }
                Ok(stored)
            })
            .await
    }

    async fn delete_customer_key(
        &self,
        scope: Scope,
        customer: ObjectId,
    ) -> Result<(), StoreError> {
        let (org, partition) = scope_params(scope);
        let customer = customer.0.into_bytes();
        self.db
            .write(move |tx| {
                let n = tx
                    .prepare_cached(
                        "DELETE FROM customer_keys WHERE org_id = ?1 AND partition = ?2 AND customer_id = ?3",
                    )
                    .db()?
                    .execute(params![org, partition, customer])
                    .db()?;
                if n == 0 {
                    Err(StoreError::NotFound)
                } else {
                    Ok(())
                }
            })
            .await
    }

    async fn customer_keys_wrapped_before(
        &self,
        scope: Scope,
        version: u32,
        limit: usize,
    ) -> Result<Vec<(ObjectId, WrappedKey)>, StoreError> {
        let (org, partition) = scope_params(scope);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT version, wrapped_by, bytes, customer_id FROM customer_keys
                         WHERE org_id = ?1 AND partition = ?2 AND wrapped_by < ?3 LIMIT ?4",
                    )
                    .db()?;
                let mut rows = stmt.query(params![org, partition, version, limit]).db()?;
                let mut out = Vec::new();
                while let Some(r) = rows.next().db()? {
                    let id = uuid_col(r.get_ref(3).db()?, "customer_id")?;
                    out.push((ObjectId(id), key_from_row(r)?));
                }
                Ok(out)
            })
            .await
    }

    async fn count_customer_keys_wrapped_before(
        &self,
        scope: Scope,
        version: u32,
    ) -> Result<u64, StoreError> {
        let (org, partition) = scope_params(scope);
        self.db
            .read(move |c| {
                let n: i64 = c
                    .prepare_cached(
                        "SELECT count(*) FROM customer_keys WHERE org_id = ?1 AND partition = ?2 AND wrapped_by < ?3",
                    )
                    .db()?
                    .query_row(params![org, partition, version], |r| r.get(0))
                    .db()?;
                Ok(n.max(0) as u64)
            })
            .await
    }

    async fn replace_customer_key(
        &self,
        scope: Scope,
        customer: ObjectId,
        key: &WrappedKey,
    ) -> Result<(), StoreError> {
        let (org, partition) = scope_params(scope);
        let (customer, key) = (customer.0.into_bytes(), key.clone());
        self.db
            .write(move |tx| {
                let n = tx
                    .prepare_cached(
                        "UPDATE customer_keys SET version = ?4, wrapped_by = ?5, bytes = ?6
                         WHERE org_id = ?1 AND partition = ?2 AND customer_id = ?3",
                    )
                    .db()?
                    .execute(params![
                        org,
                        partition,
                        customer,
                        key.version,
                        key.wrapped_by,
                        key.bytes
                    ])
                    .db()?;
                if n == 0 {
                    Err(StoreError::NotFound)
                } else {
                    Ok(())
                }
            })
            .await
    }

    async fn replace_partition_keys(
        &self,
        scope: Scope,
        expected: &[WrappedKey],
        data: &[WrappedKey],
        index: &WrappedKey,
    ) -> Result<(), StoreError> {
        let (org, partition) = scope_params(scope);
        let (expected, data, index) = (expected.to_vec(), data.to_vec(), index.clone());
        self.db
            .write(move |tx| {
                let stored = read_keys(tx, DATA_KEYS_SQL, params![org, partition])?;
                if !same_key_set(&stored, &expected) {
                    return Err(StoreError::KeysChanged);
                }
                tx.prepare_cached("DELETE FROM data_keys WHERE org_id = ?1 AND partition = ?2")
                    .db()?
                    .execute(params![org, partition])
                    .db()?;
                for k in &data {
                    tx.prepare_cached(
                        "INSERT INTO data_keys (org_id, partition, version, wrapped_by, bytes) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .db()?
                    .execute(params![org, partition, k.version, k.wrapped_by, k.bytes])
                    .db()?;
                }
                tx.prepare_cached(
                    "INSERT INTO index_keys (org_id, partition, version, wrapped_by, bytes) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (org_id, partition) DO UPDATE SET version = excluded.version,
                         wrapped_by = excluded.wrapped_by, bytes = excluded.bytes",
                )
                .db()?
                .execute(params![org, partition, index.version, index.wrapped_by, index.bytes])
                .db()?;
                Ok(())
            })
            .await
    }

    async fn scopes(&self) -> Result<Vec<Scope>, StoreError> {
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT org_id, partition FROM index_keys ORDER BY org_id, partition",
                    )
                    .db()?;
                let mut rows = stmt.query([]).db()?;
                let mut out = Vec::new();
                while let Some(r) = rows.next().db()? {
                    out.push(Scope {
                        org: OrgId(uuid_col(r.get_ref(0).db()?, "org_id")?),
                        partition: parse_col::<Partition>(r.get_ref(1).db()?, "partition")?,
                    });
                }
                Ok(out)
            })
            .await
    }
}
