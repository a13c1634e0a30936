//! [`ConnectorStore`] for [`PgStore`]: connectors, their credentials, and the tokens issued to
//! them (rows of `api_keys` with a `connector_id`).
//!
//! Every write that changes more than one row is one transaction that first updates the
//! connector's row — which locks it — under the condition that it is not revoked. Token
//! issues and revocations of one connector thus queue on that lock, and a revocation reads
//! the tokens to revoke in a statement of its own, after the lock, so that it sees every
//! token committed before it (one statement would read them in its starting snapshot and miss
//! a token committed while it waited). A failed step drops the transaction: nothing is
//! written.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextd_core::ids::{OrgId, Scope};
use contextd_core::store::{
    ApiKeyRecord, ConnectorCredential, ConnectorRecord, ConnectorStore, StoreError,
};
use deadpool_postgres::Transaction;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::credentials::insert_api_key;
use crate::db::{col, corrupt, ms, parse_col, Failure};
use crate::store::PgStore;

const CONNECTOR_COLUMNS: &str =
    "org_id, id, name, app_type, version, created, last_seen, rotated, revoked_at";

const CREDENTIAL_COLUMNS: &str =
    "client_id, org_id, partition, connector_id, secret_hash, previous_hash, previous_until";

/// A connector from the columns of [`CONNECTOR_COLUMNS`], starting at column `i`.
fn connector_from_row(r: &Row, i: usize) -> Result<ConnectorRecord, Failure> {
    Ok(ConnectorRecord {
        org: OrgId(col(r, i, "org_id")?),
        id: col(r, i + 1, "id")?,
        name: col(r, i + 2, "name")?,
        app_type: parse_col(r, i + 3, "app_type")?,
        version: col(r, i + 4, "version")?,
        created: col(r, i + 5, "created")?,
        last_seen: col(r, i + 6, "last_seen")?,
        rotated: col(r, i + 7, "rotated")?,
        revoked_at: col(r, i + 8, "revoked_at")?,
    })
}

/// A credential from the columns of [`CREDENTIAL_COLUMNS`].
fn credential_from_row(r: &Row) -> Result<ConnectorCredential, Failure> {
    let hash = |b: &[u8], what: &str| <[u8; 32]>::try_from(b).map_err(|_| corrupt(what));
    let previous: Option<&[u8]> = col(r, 5, "previous_hash")?;
    Ok(ConnectorCredential {
        client_id: col(r, 0, "client_id")?,
        scope: Scope {
            org: OrgId(col(r, 1, "org_id")?),
            partition: parse_col(r, 2, "partition")?,
        },
        connector: col(r, 3, "connector_id")?,
        secret_hash: hash(col(r, 4, "secret_hash")?, "secret_hash")?,
        previous_hash: previous.map(|b| hash(b, "previous_hash")).transpose()?,
        previous_until: col(r, 6, "previous_until")?,
    })
}

/// `Ok` if a statement changed `wanted` rows, else `err`.
fn changed(n: u64, wanted: usize, err: StoreError) -> Result<(), Failure> {
    if n == wanted as u64 {
        Ok(())
    } else {
        Err(err.into())
    }
}

async fn insert(
    tx: &Transaction<'_>,
    c: &ConnectorRecord,
    credentials: &[ConnectorCredential],
) -> Result<(), Failure> {
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO connectors ({CONNECTOR_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING"
        ))
        .await?;
    let n = tx
        .execute(
            &stmt,
            &[
                &c.org.0,
                &c.id,
                &c.name,
                &c.app_type.as_str(),
                &c.version,
                &ms(&c.created),
                &c.last_seen.as_ref().map(ms),
                &c.rotated.as_ref().map(ms),
                &c.revoked_at.as_ref().map(ms),
            ],
        )
        .await?;
    changed(n, 1, StoreError::AlreadyExists)?;
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO connector_credentials ({CREDENTIAL_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"
        ))
        .await?;
    for k in credentials {
        let n = tx
            .execute(
                &stmt,
                &[
                    &k.client_id,
                    &k.scope.org.0,
                    &k.scope.partition.as_str(),
                    &k.connector,
                    &&k.secret_hash[..],
                    &k.previous_hash.as_ref().map(|h| &h[..]),
                    &k.previous_until.as_ref().map(ms),
                ],
            )
            .await?;
        changed(n, 1, StoreError::AlreadyExists)?;
    }
    Ok(())
}

/// Runs `sql`, an update of one time column (`$3`) of the org's (`$1`) connector (`$2`)
/// conditional on its not being revoked, which locks the row until the transaction ends;
/// `NotFound` if no such connector is live.
async fn touch_live(
    tx: &Transaction<'_>,
    sql: &str,
    org: OrgId,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<(), Failure> {
    let stmt = tx.prepare_cached(sql).await?;
    let n = tx.execute(&stmt, &[&org.0, &id, &ms(&at)]).await?;
    changed(n, 1, StoreError::NotFound)
}

async fn rotate(
    tx: &Transaction<'_>,
    org: OrgId,
    id: Uuid,
    new_hashes: &[(Uuid, [u8; 32])],
    at: DateTime<Utc>,
    grace_until: DateTime<Utc>,
) -> Result<(), Failure> {
    touch_live(
        tx,
        "UPDATE connectors SET rotated = $3 WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL",
        org,
        id,
        at,
    )
    .await?;
    let client_ids: Vec<Uuid> = new_hashes.iter().map(|(c, _)| *c).collect();
    let hashes: Vec<&[u8]> = new_hashes.iter().map(|(_, h)| &h[..]).collect();
    let stmt = tx
        .prepare_cached(
            "UPDATE connector_credentials k
             SET previous_hash = k.secret_hash, previous_until = $3, secret_hash = n.hash
             FROM unnest($4::uuid[], $5::bytea[]) AS n (client_id, hash)
             WHERE k.org_id = $1 AND k.connector_id = $2 AND k.client_id = n.client_id",
        )
        .await?;
    let n = tx
        .execute(
            &stmt,
            &[&org.0, &id, &ms(&grace_until), &client_ids, &hashes],
        )
        .await?;
    // Every client id must be one of the connector's: else nothing is written.
    changed(n, new_hashes.len(), StoreError::NotFound)
}

async fn revoke(
    tx: &Transaction<'_>,
    org: OrgId,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<(), Failure> {
    touch_live(
        tx,
        "UPDATE connectors SET revoked_at = $3 WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL",
        org,
        id,
        at,
    )
    .await?;
    let stmt = tx
        .prepare_cached(
            "UPDATE api_keys SET revoked_at = $3
             WHERE org_id = $1 AND connector_id = $2 AND revoked_at IS NULL",
        )
        .await?;
    tx.execute(&stmt, &[&org.0, &id, &ms(&at)]).await?;
    Ok(())
}

async fn issue(
    tx: &Transaction<'_>,
    token: &ApiKeyRecord,
    connector: Uuid,
    at: DateTime<Utc>,
) -> Result<(), Failure> {
    touch_live(
        tx,
        "UPDATE connectors SET last_seen = $3 WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL",
        token.scope.org,
        connector,
        at,
    )
    .await?;
    let token = ApiKeyRecord {
        connector: Some(connector),
        ..token.clone()
    };
    insert_api_key(tx, &token).await
}

#[async_trait]
impl ConnectorStore for PgStore {
    async fn insert_connector(
        &self,
        connector: &ConnectorRecord,
        credentials: &[ConnectorCredential],
    ) -> Result<(), StoreError> {
        self.db
            .retry(|| async {
                let mut client = self.db.client().await?;
                let tx = client.transaction().await?;
                insert(&tx, connector, credentials).await?;
                Ok(tx.commit().await?)
            })
            .await
    }

    async fn connectors(&self, org: OrgId) -> Result<Vec<ConnectorRecord>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE org_id = $1 ORDER BY id"
                ),
                &[&org.0],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| connector_from_row(r, 0))
            .collect::<Result<_, Failure>>()?)
    }

    async fn connector(&self, org: OrgId, id: Uuid) -> Result<Option<ConnectorRecord>, StoreError> {
        let row = self
            .query_opt(
                &format!(
                    "SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE org_id = $1 AND id = $2"
                ),
                &[&org.0, &id],
            )
            .await?;
        Ok(row.map(|r| connector_from_row(&r, 0)).transpose()?)
    }

    async fn connector_credentials(
        &self,
        org: OrgId,
        id: Uuid,
    ) -> Result<Vec<ConnectorCredential>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "SELECT {CREDENTIAL_COLUMNS} FROM connector_credentials
                     WHERE org_id = $1 AND connector_id = $2 ORDER BY client_id"
                ),
                &[&org.0, &id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(credential_from_row)
            .collect::<Result<_, Failure>>()?)
    }

    async fn credential(
        &self,
        client_id: Uuid,
    ) -> Result<Option<(ConnectorCredential, ConnectorRecord)>, StoreError> {
        let row = self
            .query_opt(
                "SELECT k.client_id, k.org_id, k.partition, k.connector_id, k.secret_hash,
                     k.previous_hash, k.previous_until,
                     c.org_id, c.id, c.name, c.app_type, c.version, c.created, c.last_seen,
                     c.rotated, c.revoked_at
                 FROM connector_credentials k
                 JOIN connectors c ON c.org_id = k.org_id AND c.id = k.connector_id
                 WHERE k.client_id = $1",
                &[&client_id],
            )
            .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some((credential_from_row(&r)?, connector_from_row(&r, 7)?)))
    }

    async fn rotate_connector(
        &self,
        org: OrgId,
        id: Uuid,
        new_hashes: &[(Uuid, [u8; 32])],
        at: DateTime<Utc>,
        grace_until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.db
            .retry(|| async {
                let mut client = self.db.client().await?;
                let tx = client.transaction().await?;
                rotate(&tx, org, id, new_hashes, at, grace_until).await?;
                Ok(tx.commit().await?)
            })
            .await
    }

    async fn revoke_connector(
        &self,
        org: OrgId,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.db
            .retry(|| async {
                let mut client = self.db.client().await?;
                let tx = client.transaction().await?;
                revoke(&tx, org, id, at).await?;
                Ok(tx.commit().await?)
            })
            .await
    }

    async fn issue_connector_token(
        &self,
        token: &ApiKeyRecord,
        connector: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.db
            .retry(|| async {
                let mut client = self.db.client().await?;
                let tx = client.transaction().await?;
                issue(&tx, token, connector, at).await?;
                Ok(tx.commit().await?)
            })
            .await
    }

    async fn prune_connector_tokens(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.db
            .retry(|| async {
                let client = self.db.client().await?;
                let stmt = client
                    .prepare_cached(
                        "DELETE FROM api_keys WHERE connector_id IS NOT NULL AND expires_at < $1",
                    )
                    .await?;
                Ok(client.execute(&stmt, &[&ms(&before)]).await?)
            })
            .await
    }
}
