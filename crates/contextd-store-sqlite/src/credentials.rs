//! [`CredentialStore`] for [`SqliteStore`]: orgs and API keys here (the tokens of connectors
//! too, which `connectors.rs` issues), users, sessions and grants in `access.rs`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextd_core::ids::{OrgId, Partition, Scope};
use contextd_core::store::{
    ApiKeyRecord, CredentialStore, GrantRecord, OrgRecord, SessionRecord, StoreError, UserChange,
    UserRecord,
};
use rusqlite::{params, Row, Transaction};
use uuid::Uuid;

use crate::access;
use crate::db::{
    ms, opt_time_col, opt_uuid_col, parse_col, text_col, time_col, uuid_col, DbResultExt,
};
use crate::store::{blob, SqliteStore};

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
        secret_hash: hash.ok_or_else(|| StoreError::corrupt("secret_hash"))?,
        created: time_col(r.get_ref(6).db()?, "created")?,
        expires_at: opt_time_col(r.get_ref(7).db()?, "expires_at")?,
        revoked_at: opt_time_col(r.get_ref(8).db()?, "revoked_at")?,
        connector: opt_uuid_col(r.get_ref(9).db()?, "connector_id")?,
    })
}

/// Inserts an API key (a connector's token too); `AlreadyExists` if its id is taken.
pub(crate) fn insert_api_key(tx: &Transaction<'_>, key: &ApiKeyRecord) -> Result<(), StoreError> {
    let n = tx
        .prepare_cached(
            "INSERT INTO api_keys (id, org_id, partition, name, role, secret_hash, created, expires_at,
                 revoked_at, connector_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING",
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
            key.connector.map(blob),
        ])
        .db()?;
    if n == 0 {
        Err(StoreError::AlreadyExists)
    } else {
        Ok(())
    }
}

#[async_trait]
impl CredentialStore for SqliteStore {
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
                u64::try_from(n).map_err(|_| StoreError::corrupt("count"))
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
        self.db.write(move |tx| insert_api_key(tx, &key)).await
    }

    async fn api_key(&self, id: Uuid) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.db
            .point_read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT id, org_id, partition, name, role, secret_hash, created, expires_at, revoked_at,
                             connector_id
                         FROM api_keys WHERE id = ?1",
                    )
                    .db()?;
                let mut rows = stmt.query([blob(id)]).db()?;
                rows.next().db()?.map(api_key_from_row).transpose()
            })
            .await
    }

    async fn api_keys(&self, scope: Scope) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT id, org_id, partition, name, role, secret_hash, created, expires_at, revoked_at,
                             connector_id
                         FROM api_keys WHERE org_id = ?1 AND partition = ?2 AND connector_id IS NULL ORDER BY id",
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
}
