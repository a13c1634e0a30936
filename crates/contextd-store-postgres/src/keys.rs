//! [`PgKeyStore`]: wrapped keys, in a schema (or a database) apart from the data.

use async_trait::async_trait;
use contextd_core::ids::{ObjectId, OrgId, Scope};
use contextd_core::store::{
    data_key_insert_conflict, same_key_set, KeyStore, Migration, StoreError, WrappedKey,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::db::{col, count, execute_cached, parse_col, Db, Failure, Profile};

/// The schema of the key store, unless told otherwise.
pub const KEYS_SCHEMA: &str = "contextd_keys";

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sql: include_str!("../migrations/keys/0001_init.sql"),
}];

/// Key reads are cached by the core and key writes are rare: a few connections suffice.
const PROFILE: Profile = Profile {
    name: "keys",
    connections: 4,
    migrations: MIGRATIONS,
};

/// The key store in its own schema: wrapped data, index and customer keys.
///
/// PostgreSQL does not overwrite a deleted row in place: a shredded customer key's bytes
/// stay in the table's pages until VACUUM reuses them, and in WAL archives and backups of
/// the key store for as long as those are kept.
pub struct PgKeyStore {
    db: Db,
}

impl PgKeyStore {
    /// Connects and applies pending migrations, in the `contextd_keys` schema.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_schema(url, KEYS_SCHEMA).await
    }

    /// As [`PgKeyStore::connect`], in `schema` (lowercase letters, digits, `_`) of the
    /// database `url` names — which may be another database than the data's.
    pub async fn connect_with_schema(url: &str, schema: &str) -> Result<Self, StoreError> {
        Ok(Self {
            db: Db::connect(url, schema, &PROFILE).await?,
        })
    }

    async fn read(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<WrappedKey>, StoreError> {
        let client = self.db.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(Failure::from)?;
        let rows = client.query(&stmt, params).await.map_err(Failure::from)?;
        Ok(rows
            .iter()
            .map(key_from_row)
            .collect::<Result<Vec<_>, Failure>>()?)
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let client = self.db.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(Failure::from)?;
        Ok(client.execute(&stmt, params).await.map_err(Failure::from)?)
    }

    /// Runs an insert that ends in `ON CONFLICT DO NOTHING`: no row inserted means the key
    /// exists, and the first writer wins.
    async fn insert_once(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(), StoreError> {
        match self.execute(sql, params).await? {
            0 => Err(StoreError::AlreadyExists),
            _ => Ok(()),
        }
    }
}

/// Locks the partition's index-key row (its key operations' lock: a partition has one from the
/// moment it has keys, as the index key is created first) and returns it, with the data keys
/// read after the lock was taken.
async fn lock_partition(
    tx: &deadpool_postgres::Transaction<'_>,
    org: &uuid::Uuid,
    partition: &str,
) -> Result<(Option<WrappedKey>, Vec<WrappedKey>), Failure> {
    let index = tx
        .query_opt(
            "SELECT version, wrapped_by, bytes FROM index_keys
             WHERE org_id = $1 AND partition = $2 FOR UPDATE",
            &[org, &partition],
        )
        .await?
        .as_ref()
        .map(key_from_row)
        .transpose()?;
    let data = tx
        .query(
            "SELECT version, wrapped_by, bytes FROM data_keys WHERE org_id = $1 AND partition = $2
             ORDER BY version",
            &[org, &partition],
        )
        .await?
        .iter()
        .map(key_from_row)
        .collect::<Result<Vec<_>, Failure>>()?;
    Ok((index, data))
}

fn key_from_row(r: &Row) -> Result<WrappedKey, Failure> {
    Ok(WrappedKey::from_columns(
        col(r, 0, "version")?,
        col(r, 1, "wrapped_by")?,
        col(r, 2, "bytes")?,
    )?)
}

#[async_trait]
impl KeyStore for PgKeyStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await
    }

    async fn data_keys(&self, scope: Scope) -> Result<Vec<WrappedKey>, StoreError> {
        self.read(
            "SELECT version, wrapped_by, bytes FROM data_keys WHERE org_id = $1 AND partition = $2
             ORDER BY version",
            &[&scope.org.0, &scope.partition.as_str()],
        )
        .await
    }

    async fn insert_data_key(&self, scope: Scope, key: &WrappedKey) -> Result<(), StoreError> {
        let (org, partition) = (scope.org.0, scope.partition.as_str());
        self.db
            .retry(|| async {
                let mut client = self.db.client().await?;
                let tx = client.transaction().await?;
                let (index, stored) = lock_partition(&tx, &org, partition).await?;
                if let Some(e) = data_key_insert_conflict(&stored, index.as_ref(), key) {
                    return Err(e.into());
                }
                let n = tx
                    .execute(
                        "INSERT INTO data_keys (org_id, partition, version, wrapped_by, bytes)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                        &[
                            &org,
                            &partition,
                            &i64::from(key.version),
                            &i64::from(key.wrapped_by),
                            &key.bytes,
                        ],
                    )
                    .await?;
                if n == 0 {
                    return Err(StoreError::AlreadyExists.into());
                }
                tx.commit().await?;
                Ok(())
            })
            .await
    }

    async fn index_key(&self, scope: Scope) -> Result<Option<WrappedKey>, StoreError> {
        let keys = self
            .read(
                "SELECT version, wrapped_by, bytes FROM index_keys WHERE org_id = $1 AND partition = $2",
                &[&scope.org.0, &scope.partition.as_str()],
            )
            .await?;
        Ok(keys.into_iter().next())
    }

    async fn insert_index_key(&self, scope: Scope, key: &WrappedKey) -> Result<(), StoreError> {
        self.insert_once(
            "INSERT INTO index_keys (org_id, partition, version, wrapped_by, bytes) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING",
            &[
                &scope.org.0,
                &scope.partition.as_str(),
                &i64::from(key.version),
                &i64::from(key.wrapped_by),
                &key.bytes,
            ],
        )
        .await
    }

    async fn customer_key(
        &self,
        scope: Scope,
        customer: ObjectId,
    ) -> Result<Option<WrappedKey>, StoreError> {
        let keys = self
            .read(
                "SELECT version, wrapped_by, bytes FROM customer_keys
                 WHERE org_id = $1 AND partition = $2 AND customer_id = $3",
                &[&scope.org.0, &scope.partition.as_str(), &customer.0],
            )
            .await?;
        Ok(keys.into_iter().next())
    }

    async fn insert_customer_key(
        &self,
        scope: Scope,
        customer: ObjectId,
        key: &WrappedKey,
    ) -> Result<(), StoreError> {
        self.insert_once(
            "INSERT INTO customer_keys (org_id, partition, customer_id, version, wrapped_by, bytes)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            &[
                &scope.org.0,
                &scope.partition.as_str(),
                &customer.0,
                &i64::from(key.version),
                &i64::from(key.wrapped_by),
                &key.bytes,
            ],
        )
        .await
    }

    async fn insert_customer_keys(
        &self,
        scope: Scope,
        keys: &[(ObjectId, WrappedKey)],
    ) -> Result<Vec<bool>, StoreError> {
        let customers: Vec<uuid::Uuid> = keys.iter().map(|(c, _)| c.0).collect();
        let versions: Vec<i64> = keys.iter().map(|(_, k)| i64::from(k.version)).collect();
        let wrapped_by: Vec<i64> = keys.iter().map(|(_, k)| i64::from(k.wrapped_by)).collect();
        let bytes: Vec<&[u8]> = keys.iter().map(|(_, k)| k.bytes.as_slice()).collect();
        let client = self.db.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO customer_keys (org_id, partition, customer_id, version, wrapped_by, bytes)
                 SELECT $1, $2, k.customer_id, k.version, k.wrapped_by, k.bytes
                 FROM unnest($3::uuid[], $4::bigint[], $5::bigint[], $6::bytea[])
                     AS k (customer_id, version, wrapped_by, bytes)
                 ON CONFLICT DO NOTHING
                 RETURNING customer_id",
            )
            .await
            .map_err(Failure::from)?;
        let rows = client
            .query(
                &stmt,
                &[
                    &scope.org.0,
                    &scope.partition.as_str(),
                    &customers,
                    &versions,
                    &wrapped_by,
                    &bytes,
                ],
            )
            .await
            .map_err(Failure::from)?;
        let inserted = rows
            .iter()
            .map(|r| r.try_get::<_, uuid::Uuid>(0))
            .collect::<Result<std::collections::HashSet<_>, _>>()
            .map_err(Failure::from)?;
        Ok(customers.iter().map(|c| inserted.contains(c)).collect())
    }

    async fn delete_customer_key(
        &self,
        scope: Scope,
        customer: ObjectId,
    ) -> Result<(), StoreError> {
        let n = self
            .execute(
                "DELETE FROM customer_keys WHERE org_id = $1 AND partition = $2 AND customer_id = $3",
                &[&scope.org.0, &scope.partition.as_str(), &customer.0],
            )
            .await?;
        if n == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }

    async fn customer_keys_wrapped_before(
        &self,
        scope: Scope,
        version: u32,
        limit: usize,
    ) -> Result<Vec<(ObjectId, WrappedKey)>, StoreError> {
        let client = self.db.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT version, wrapped_by, bytes, customer_id FROM customer_keys
                 WHERE org_id = $1 AND partition = $2 AND wrapped_by < $3 LIMIT $4",
            )
            .await
            .map_err(Failure::from)?;
        let rows = client
            .query(
                &stmt,
                &[
                    &scope.org.0,
                    &scope.partition.as_str(),
                    &i64::from(version),
                    &i64::try_from(limit).unwrap_or(i64::MAX),
                ],
            )
            .await
            .map_err(Failure::from)?;
        Ok(rows
            .iter()
            .map(|r| Ok((ObjectId(col(r, 3, "customer_id")?), key_from_row(r)?)))
            .collect::<Result<_, Failure>>()?)
    }

    async fn count_customer_keys_wrapped_before(
        &self,
        scope: Scope,
        version: u32,
    ) -> Result<u64, StoreError> {
        let client = self.db.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT count(*) FROM customer_keys WHERE org_id = $1 AND partition = $2 AND wrapped_by < $3",
            )
            .await
            .map_err(Failure::from)?;
        let row = client
            .query_one(
                &stmt,
                &[&scope.org.0, &scope.partition.as_str(), &i64::from(version)],
            )
            .await
            .map_err(Failure::from)?;
        Ok(count(col(&row, 0, "count")?)?)
    }

    async fn replace_customer_key(
        &self,
        scope: Scope,
        customer: ObjectId,
        key: &WrappedKey,
    ) -> Result<(), StoreError> {
        let n = self
            .execute(
                "UPDATE customer_keys SET version = $4, wrapped_by = $5, bytes = $6
                 WHERE org_id = $1 AND partition = $2 AND customer_id = $3",
                &[
                    &scope.org.0,
                    &scope.partition.as_str(),
                    &customer.0,
                    &i64::from(key.version),
                    &i64::from(key.wrapped_by),
                    &key.bytes,
                ],
            )
            .await?;
        if n == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }

    async fn replace_partition_keys(
        &self,
        scope: Scope,
        expected: &[WrappedKey],
        data: &[WrappedKey],
        index: &WrappedKey,
    ) -> Result<(), StoreError> {
        let (org, partition) = (scope.org.0, scope.partition.as_str());
        let versions: Vec<i64> = data.iter().map(|k| i64::from(k.version)).collect();
        let wrapped_by: Vec<i64> = data.iter().map(|k| i64::from(k.wrapped_by)).collect();
        let bytes: Vec<&[u8]> = data.iter().map(|k| k.bytes.as_slice()).collect();
        self.db
            .retry(|| async {
                let mut client = self.db.client().await?;
                let tx = client.transaction().await?;
                let (_, stored) = lock_partition(&tx, &org, partition).await?;
                if !same_key_set(&stored, expected) {
                    return Err(StoreError::KeysChanged.into());
                }
                execute_cached(&tx,
                    "DELETE FROM data_keys WHERE org_id = $1 AND partition = $2",
                    &[&org, &partition],
                )
                .await?;
                execute_cached(&tx,
                    "INSERT INTO data_keys (org_id, partition, version, wrapped_by, bytes)
                     SELECT $1, $2, k.version, k.wrapped_by, k.bytes
                     FROM unnest($3::bigint[], $4::bigint[], $5::bytea[]) AS k (version, wrapped_by, bytes)",
                    &[&org, &partition, &versions, &wrapped_by, &bytes],
                )
                .await?;
                execute_cached(&tx,
                    "INSERT INTO index_keys (org_id, partition, version, wrapped_by, bytes)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (org_id, partition) DO UPDATE SET version = excluded.version,
                         wrapped_by = excluded.wrapped_by, bytes = excluded.bytes",
                    &[
                        &org,
                        &partition,
                        &i64::from(index.version),
                        &i64::from(index.wrapped_by),
                        &index.bytes,
                    ],
                )
                .await?;
                tx.commit().await?;
                Ok(())
            })
            .await
    }

    async fn scopes(&self) -> Result<Vec<Scope>, StoreError> {
        let client = self.db.client().await?;
        let stmt = client
            .prepare_cached("SELECT org_id, partition FROM index_keys ORDER BY org_id, partition")
            .await
            .map_err(Failure::from)?;
        let rows = client.query(&stmt, &[]).await.map_err(Failure::from)?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok(Scope {
                    org: OrgId(col(r, 0, "org_id")?),
                    partition: parse_col(r, 1, "partition")?,
                })
            })
            .collect::<Result<_, Failure>>()?)
    }
}
