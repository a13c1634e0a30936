//! [`ConnectorStore`] for [`SqliteStore`]: connectors, their credentials, and the tokens
//! issued to them (rows of `api_keys` with a `connector_id`).
//!
//! Every write that changes more than one row runs as one job of the writer thread, which
//! wraps it in a savepoint: a job that fails part-way leaves nothing behind, and no other
//! write runs between its check and its changes.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextd_core::ids::{OrgId, Scope};
use contextd_core::store::{
    ApiKeyRecord, ConnectorCredential, ConnectorRecord, ConnectorStore, StoreError,
};
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, Row, Transaction};
use uuid::Uuid;

use crate::credentials::insert_api_key;
use crate::db::{
    ms, opt_text_col, opt_time_col, parse_col, text_col, time_col, uuid_col, DbResultExt,
};
use crate::store::{blob, SqliteStore};

/// A 32-byte hash column.
fn hash(v: ValueRef<'_>, what: &str) -> Result<[u8; 32], StoreError> {
    v.as_blob()
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| StoreError::corrupt(what))
}

/// A nullable 32-byte hash column.
fn opt_hash(v: ValueRef<'_>, what: &str) -> Result<Option<[u8; 32]>, StoreError> {
    match v {
        ValueRef::Null => Ok(None),
        v => hash(v, what).map(Some),
    }
}

/// A connector from the nine columns `org_id, id, name, app_type, version, created,
/// last_seen, rotated, revoked_at` starting at column `i`.
fn connector_from_row(r: &Row<'_>, i: usize) -> Result<ConnectorRecord, StoreError> {
    let col = |n: usize| r.get_ref(i + n).db();
    Ok(ConnectorRecord {
        org: OrgId(uuid_col(col(0)?, "org_id")?),
        id: uuid_col(col(1)?, "id")?,
        name: text_col(col(2)?, "name")?.to_owned(),
        app_type: parse_col(col(3)?, "app_type")?,
        version: opt_text_col(col(4)?, "version")?.map(str::to_owned),
        created: time_col(col(5)?, "created")?,
        last_seen: opt_time_col(col(6)?, "last_seen")?,
        rotated: opt_time_col(col(7)?, "rotated")?,
        revoked_at: opt_time_col(col(8)?, "revoked_at")?,
    })
}

/// A credential from the seven columns `client_id, org_id, partition, connector_id,
/// secret_hash, previous_hash, previous_until`.
fn credential_from_row(r: &Row<'_>) -> Result<ConnectorCredential, StoreError> {
    Ok(ConnectorCredential {
        client_id: uuid_col(r.get_ref(0).db()?, "client_id")?,
        scope: Scope {
            org: OrgId(uuid_col(r.get_ref(1).db()?, "org_id")?),
            partition: parse_col(r.get_ref(2).db()?, "partition")?,
        },
        connector: uuid_col(r.get_ref(3).db()?, "connector_id")?,
        secret_hash: hash(r.get_ref(4).db()?, "secret_hash")?,
        previous_hash: opt_hash(r.get_ref(5).db()?, "previous_hash")?,
        previous_until: opt_time_col(r.get_ref(6).db()?, "previous_until")?,
    })
}

/// `Ok` if a statement changed a row, else `err`.
fn changed(n: usize, err: StoreError) -> Result<(), StoreError> {
    if n == 0 {
        Err(err)
    } else {
        Ok(())
    }
}

fn insert(
    tx: &Transaction<'_>,
    c: &ConnectorRecord,
    credentials: &[ConnectorCredential],
) -> Result<(), StoreError> {
    let n = tx
        .prepare_cached(
            "INSERT INTO connectors (org_id, id, name, app_type, version, created, last_seen, rotated,
                 revoked_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
        )
        .db()?
        .execute(params![
            blob(c.org.0),
            blob(c.id),
            c.name,
            c.app_type.as_str(),
            c.version,
            ms(&c.created),
            c.last_seen.as_ref().map(ms),
            c.rotated.as_ref().map(ms),
            c.revoked_at.as_ref().map(ms),
        ])
        .db()?;
    changed(n, StoreError::AlreadyExists)?;
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO connector_credentials (client_id, org_id, partition, connector_id, secret_hash,
                 previous_hash, previous_until)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
        )
        .db()?;
    for k in credentials {
        let n = stmt
            .execute(params![
                blob(k.client_id),
                blob(k.scope.org.0),
                k.scope.partition.as_str(),
                blob(k.connector),
                k.secret_hash,
                k.previous_hash,
                k.previous_until.as_ref().map(ms),
            ])
            .db()?;
        changed(n, StoreError::AlreadyExists)?;
    }
    Ok(())
}

/// Sets the connector's rotation time, then moves each credential's current hash to its
/// previous one. `NotFound` if the connector is missing or revoked, or a client id is not one
/// of its credentials (the writer's savepoint then undoes what was done).
fn rotate(
    tx: &Transaction<'_>,
    org: OrgId,
    id: Uuid,
    new_hashes: &[(Uuid, [u8; 32])],
    at: DateTime<Utc>,
    grace_until: DateTime<Utc>,
) -> Result<(), StoreError> {
    let n = tx
        .prepare_cached(
            "UPDATE connectors SET rotated = ?3
             WHERE org_id = ?1 AND id = ?2 AND revoked_at IS NULL",
        )
        .db()?
        .execute(params![blob(org.0), blob(id), ms(&at)])
        .db()?;
    changed(n, StoreError::NotFound)?;
    let mut stmt = tx
        .prepare_cached(
            "UPDATE connector_credentials
             SET previous_hash = secret_hash, previous_until = ?4, secret_hash = ?5
             WHERE client_id = ?3 AND org_id = ?1 AND connector_id = ?2",
        )
        .db()?;
    for (client_id, new_hash) in new_hashes {
        let n = stmt
            .execute(params![
                blob(org.0),
                blob(id),
                blob(*client_id),
                ms(&grace_until),
                new_hash,
            ])
            .db()?;
        changed(n, StoreError::NotFound)?;
    }
    Ok(())
}

/// Revokes the connector and every unrevoked token issued to it.
fn revoke(tx: &Transaction<'_>, org: OrgId, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError> {
    let n = tx
        .prepare_cached(
            "UPDATE connectors SET revoked_at = ?3
             WHERE org_id = ?1 AND id = ?2 AND revoked_at IS NULL",
        )
        .db()?
        .execute(params![blob(org.0), blob(id), ms(&at)])
        .db()?;
    changed(n, StoreError::NotFound)?;
    tx.prepare_cached(
        "UPDATE api_keys SET revoked_at = ?3
         WHERE connector_id = ?2 AND org_id = ?1 AND revoked_at IS NULL",
    )
    .db()?
    .execute(params![blob(org.0), blob(id), ms(&at)])
    .db()?;
    Ok(())
}

/// Marks the connector seen — which only an unrevoked connector of the token's org may be —
/// then stores the token, linked to it. The writer thread runs no other write in between, so
/// a revocation either precedes this (`NotFound`, nothing written) or follows it and revokes
/// the token too.
fn issue(
    tx: &Transaction<'_>,
    token: &ApiKeyRecord,
    connector: Uuid,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let n = tx
        .prepare_cached(
            "UPDATE connectors SET last_seen = ?3
             WHERE org_id = ?1 AND id = ?2 AND revoked_at IS NULL",
        )
        .db()?
        .execute(params![blob(token.scope.org.0), blob(connector), ms(&at)])
        .db()?;
    changed(n, StoreError::NotFound)?;
    insert_api_key(
        tx,
        &ApiKeyRecord {
            connector: Some(connector),
            ..token.clone()
        },
    )
}

fn credentials_of(
    c: &Connection,
    org: OrgId,
    id: Uuid,
) -> Result<Vec<ConnectorCredential>, StoreError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT client_id, org_id, partition, connector_id, secret_hash, previous_hash, previous_until
             FROM connector_credentials WHERE org_id = ?1 AND connector_id = ?2 ORDER BY client_id",
        )
        .db()?;
    let mut rows = stmt.query(params![blob(org.0), blob(id)]).db()?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().db()? {
        out.push(credential_from_row(r)?);
    }
    Ok(out)
}

fn credential_with_connector(
    c: &Connection,
    client_id: Uuid,
) -> Result<Option<(ConnectorCredential, ConnectorRecord)>, StoreError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT k.client_id, k.org_id, k.partition, k.connector_id, k.secret_hash, k.previous_hash,
                 k.previous_until,
                 c.org_id, c.id, c.name, c.app_type, c.version, c.created, c.last_seen, c.rotated,
                 c.revoked_at
             FROM connector_credentials k
             JOIN connectors c ON c.org_id = k.org_id AND c.id = k.connector_id
             WHERE k.client_id = ?1",
        )
        .db()?;
    let mut rows = stmt.query([blob(client_id)]).db()?;
    let Some(r) = rows.next().db()? else {
        return Ok(None);
    };
    Ok(Some((credential_from_row(r)?, connector_from_row(r, 7)?)))
}

#[async_trait]
impl ConnectorStore for SqliteStore {
    async fn insert_connector(
        &self,
        connector: &ConnectorRecord,
        credentials: &[ConnectorCredential],
    ) -> Result<(), StoreError> {
        let (connector, credentials) = (connector.clone(), credentials.to_vec());
        self.db
            .write(move |tx| insert(tx, &connector, &credentials))
            .await
    }

    async fn connectors(&self, org: OrgId) -> Result<Vec<ConnectorRecord>, StoreError> {
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT org_id, id, name, app_type, version, created, last_seen, rotated, revoked_at
                         FROM connectors WHERE org_id = ?1 ORDER BY id",
                    )
                    .db()?;
                let mut rows = stmt.query([blob(org.0)]).db()?;
                let mut out = Vec::new();
                while let Some(r) = rows.next().db()? {
                    out.push(connector_from_row(r, 0)?);
                }
                Ok(out)
            })
            .await
    }

    async fn connector(&self, org: OrgId, id: Uuid) -> Result<Option<ConnectorRecord>, StoreError> {
        self.db
            .point_read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT org_id, id, name, app_type, version, created, last_seen, rotated, revoked_at
                         FROM connectors WHERE org_id = ?1 AND id = ?2",
                    )
                    .db()?;
                let mut rows = stmt.query([blob(org.0), blob(id)]).db()?;
                rows.next().db()?.map(|r| connector_from_row(r, 0)).transpose()
            })
            .await
    }

    async fn connector_credentials(
        &self,
        org: OrgId,
        id: Uuid,
    ) -> Result<Vec<ConnectorCredential>, StoreError> {
        self.db
            .point_read(move |c| credentials_of(c, org, id))
            .await
    }

    async fn credential(
        &self,
        client_id: Uuid,
    ) -> Result<Option<(ConnectorCredential, ConnectorRecord)>, StoreError> {
        self.db
            .point_read(move |c| credential_with_connector(c, client_id))
            .await
    }

    async fn rotate_connector(
        &self,
        org: OrgId,
        id: Uuid,
        new_hashes: &[(Uuid, [u8; 32])],
        at: DateTime<Utc>,
        grace_until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let new_hashes = new_hashes.to_vec();
        self.db
            .write(move |tx| rotate(tx, org, id, &new_hashes, at, grace_until))
            .await
    }

    async fn revoke_connector(
        &self,
        org: OrgId,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.db.write(move |tx| revoke(tx, org, id, at)).await
    }

    async fn issue_connector_token(
        &self,
        token: &ApiKeyRecord,
        connector: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let token = token.clone();
        self.db
            .write(move |tx| issue(tx, &token, connector, at))
            .await
    }

    async fn prune_connector_tokens(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let before = ms(&before);
        self.db
            .write(move |tx| {
                let n = tx
                    .prepare_cached(
                        "DELETE FROM api_keys WHERE connector_id IS NOT NULL AND expires_at < ?1",
                    )
                    .db()?
                    .execute(params![before])
                    .db()?;
                Ok(n as u64)
            })
            .await
    }
}
