//! [`CredentialStore`] for [`PgStore`]: orgs and API keys here (the tokens of connectors too,
//! which `connectors.rs` issues), users, sessions and grants in `access.rs`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextd_core::ids::{OrgId, Scope};
use contextd_core::store::{
    ApiKeyRecord, CredentialEpoch, CredentialStore, GrantRecord, OrgRecord, SessionRecord,
    StoreError, UserChange, UserRecord,
};
use deadpool_postgres::GenericClient;
use tokio::sync::watch;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::{col, count, ms, parse_col, Failure};
use crate::store::PgStore;

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
        connector: col(r, 9, "connector_id")?,
    })
}

/// The columns [`api_key_from_row`] reads, in its order.
pub(crate) const API_KEY_COLUMNS: &str =
    "id, org_id, partition, name, role, secret_hash, created, expires_at, revoked_at, connector_id";

/// Inserts an API key (a connector's token too) on `client`, a connection or a transaction;
/// `AlreadyExists` if its id is taken.
pub(crate) async fn insert_api_key(
    client: &impl GenericClient,
    key: &ApiKeyRecord,
) -> Result<(), Failure> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO api_keys (id, org_id, partition, name, role, secret_hash, created, expires_at,
                 revoked_at, connector_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
        )
        .await?;
    let n = client
        .execute(
            &stmt,
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
                &key.connector,
            ],
        )
        .await?;
    if n == 0 {
        Err(StoreError::AlreadyExists.into())
    } else {
        Ok(())
    }
}

#[async_trait]
impl CredentialStore for PgStore {
    fn credential_changes(&self) -> Option<watch::Receiver<CredentialEpoch>> {
        Some(self.outbox.credential_changes())
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
        let client = self.db.client().await?;
        Ok(insert_api_key(&client, key).await?)
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
}
