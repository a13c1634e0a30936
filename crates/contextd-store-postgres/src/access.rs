//! Users, sessions, partner grants and customer erasure: the SQL behind the store methods of
//! people and credentials (docs/security.md), called from the trait impls in `credentials.rs`
//! and `objects.rs`. The audit log's SQL is in `audit.rs`.

use chrono::{DateTime, Utc};
use contextd_core::ids::{ObjectId, OrgId, Scope};
use contextd_core::store::{
    check_last_admin, ApiKeyRecord, Erasure, GrantRecord, SessionRecord, StoreError, UserChange,
    UserRecord,
};
use deadpool_postgres::Transaction;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::credentials::{api_key_from_row, API_KEY_COLUMNS};
use crate::db::{col, corrupt, count, execute_cached, ms, parse_col, Failure};
use crate::events::{insert_events, ChangeRow};
use crate::store::PgStore;

/// `Ok` if a statement changed a row, else `err`.
fn changed(n: u64, err: StoreError) -> Result<(), StoreError> {
    if n == 0 {
        Err(err)
    } else {
        Ok(())
    }
}

fn hash_col(r: &Row, i: usize, what: &str) -> Result<[u8; 32], Failure> {
    col::<&[u8]>(r, i, what)?
        .try_into()
        .map_err(|_| corrupt(what))
}

fn scope_cols(r: &Row, org: usize) -> Result<Scope, Failure> {
    Ok(Scope {
        org: OrgId(col(r, org, "org_id")?),
        partition: parse_col(r, org + 1, "partition")?,
    })
}

// Deletes a customer and every object linked to it with their tokens, recording one
// `object.erased` event per object: `$4`…`$7` are the events' change columns.
const ERASE: &str = concat!(
    "WITH erased AS (
         DELETE FROM objects o
         WHERE o.org_id = $1 AND o.partition = $2 AND (o.id = $3 OR o.customer_id = $3)
         RETURNING o.id, o.kind, o.customer_id, o.parent_id, o.media_type, o.state, o.last_updated
     ), tokens_erased AS (
         DELETE FROM tokens t USING erased e
         WHERE t.org_id = $1 AND t.partition = $2 AND t.object_id = e.id
     ), event AS (
         ",
    insert_events!(),
    "SELECT $1, $2, $4, e.id, e.kind, e.customer_id, e.parent_id, e.media_type, e.state,
             e.last_updated, $5, $6, $7
         FROM erased e
     )
     SELECT count(*) FROM erased"
);

const USER_COLUMNS: &str = "id, org_id, partition, name, role, password_hash, created, disabled";

fn user_from_row(r: &Row) -> Result<UserRecord, Failure> {
    Ok(UserRecord {
        id: col(r, 0, "id")?,
        scope: scope_cols(r, 1)?,
        name: col(r, 3, "name")?,
        role: parse_col(r, 4, "role")?,
        password_hash: col(r, 5, "password_hash")?,
        created: col(r, 6, "created")?,
        disabled: col(r, 7, "disabled")?,
    })
}

fn session_from_row(r: &Row) -> Result<SessionRecord, Failure> {
    Ok(SessionRecord {
        secret_hash: hash_col(r, 0, "secret_hash")?,
        user_id: col(r, 1, "user_id")?,
        scope: scope_cols(r, 2)?,
        role: parse_col(r, 4, "role")?,
        csrf_hash: hash_col(r, 5, "csrf_hash")?,
        created: col(r, 6, "created")?,
        expires_at: col(r, 7, "expires_at")?,
        revoked_at: col(r, 8, "revoked_at")?,
    })
}

/// Locks the scope's enabled admins (in id order, so concurrent changes queue rather than
/// deadlock), then the user, and returns the user and the other enabled admins' count. Two
/// admins disabling each other at once: the second sees the first's change after its wait.
async fn lock_user(
    tx: &Transaction<'_>,
    scope: Scope,
    id: Uuid,
) -> Result<(UserRecord, u64), Failure> {
    let admins = tx
        .prepare_cached(
            "SELECT id FROM users WHERE org_id = $1 AND partition = $2 AND role = 'admin'
                 AND NOT disabled ORDER BY id FOR UPDATE",
        )
        .await?;
    let admins = tx
        .query(&admins, &[&scope.org.0, &scope.partition.as_str()])
        .await?;
    let user = tx
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE org_id = $1 AND partition = $2 AND id = $3
             FOR UPDATE"
        ))
        .await?;
    let Some(user) = tx
        .query_opt(&user, &[&scope.org.0, &scope.partition.as_str(), &id])
        .await?
    else {
        return Err(StoreError::NotFound.into());
    };
    let others = admins
        .iter()
        .filter(|r| r.try_get::<_, Uuid>(0).is_ok_and(|a| a != id))
        .count();
    Ok((user_from_row(&user)?, others as u64))
}

async fn end_user_sessions(
    tx: &impl deadpool_postgres::GenericClient,
    scope: Scope,
    user_id: Uuid,
    at: DateTime<Utc>,
) -> Result<u64, Failure> {
    let stmt = tx
        .prepare_cached(
            "UPDATE sessions SET revoked_at = $4
             WHERE user_id = $1 AND org_id = $2 AND partition = $3 AND revoked_at IS NULL",
        )
        .await?;
    Ok(tx
        .execute(
            &stmt,
            &[&user_id, &scope.org.0, &scope.partition.as_str(), &ms(&at)],
        )
        .await?)
}

impl PgStore {
    pub(crate) async fn list_api_keys(
        &self,
        scope: Scope,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "SELECT {API_KEY_COLUMNS} FROM api_keys
                     WHERE org_id = $1 AND partition = $2 AND connector_id IS NULL ORDER BY id"
                ),
                &[&scope.org.0, &scope.partition.as_str()],
            )
            .await?;
        Ok(rows
            .iter()
            .map(api_key_from_row)
            .collect::<Result<_, Failure>>()?)
    }

    /// Revokes a row of `api_keys` or `grants` (the only two callers) not yet revoked.
    pub(crate) async fn revoke(
        &self,
        sql: &'static str,
        scope: Scope,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let n = self
            .execute(
                sql,
                &[&scope.org.0, &scope.partition.as_str(), &id, &ms(&at)],
            )
            .await?;
        changed(n, StoreError::NotFound)
    }

    pub(crate) async fn add_user(&self, u: &UserRecord) -> Result<(), StoreError> {
        let n = self
            .execute(
                "INSERT INTO users (id, org_id, partition, name, role, password_hash, created, disabled)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                &[
                    &u.id,
                    &u.scope.org.0,
                    &u.scope.partition.as_str(),
                    &u.name,
                    &u.role.as_str(),
                    &u.password_hash,
                    &ms(&u.created),
                    &u.disabled,
                ],
            )
            .await?;
        changed(n, StoreError::AlreadyExists)
    }

    pub(crate) async fn find_user_by_name(
        &self,
        scope: Scope,
        name: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        let row = self
            .query_opt(
                &format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE org_id = $1 AND partition = $2 AND name = $3"
                ),
                &[&scope.org.0, &scope.partition.as_str(), &name],
            )
            .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    pub(crate) async fn find_user(&self, id: Uuid) -> Result<Option<UserRecord>, StoreError> {
        let row = self
            .query_opt(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"),
                &[&id],
            )
            .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    pub(crate) async fn list_users(&self, scope: Scope) -> Result<Vec<UserRecord>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE org_id = $1 AND partition = $2 ORDER BY name"
                ),
                &[&scope.org.0, &scope.partition.as_str()],
            )
            .await?;
        Ok(rows
            .iter()
            .map(user_from_row)
            .collect::<Result<_, Failure>>()?)
    }

    pub(crate) async fn add_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        let n = self
            .execute(
                "INSERT INTO sessions (secret_hash, user_id, org_id, partition, role, csrf_hash, created,
                     expires_at, revoked_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
                &[
                    &&s.secret_hash[..],
                    &s.user_id,
                    &s.scope.org.0,
                    &s.scope.partition.as_str(),
                    &s.role.as_str(),
                    &&s.csrf_hash[..],
                    &ms(&s.created),
                    &ms(&s.expires_at),
                    &s.revoked_at.as_ref().map(ms),
                ],
            )
            .await?;
        changed(n, StoreError::AlreadyExists)
    }

    pub(crate) async fn find_session(
        &self,
        hash: [u8; 32],
    ) -> Result<Option<SessionRecord>, StoreError> {
        let row = self
            .query_opt(
                "SELECT secret_hash, user_id, org_id, partition, role, csrf_hash, created, expires_at,
                     revoked_at
                 FROM sessions WHERE secret_hash = $1",
                &[&&hash[..]],
            )
            .await?;
        Ok(row.as_ref().map(session_from_row).transpose()?)
    }

    pub(crate) async fn end_session(
        &self,
        hash: [u8; 32],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let n = self
            .execute(
                "UPDATE sessions SET revoked_at = $2 WHERE secret_hash = $1 AND revoked_at IS NULL",
                &[&&hash[..], &ms(&at)],
            )
            .await?;
        changed(n, StoreError::NotFound)
    }

    pub(crate) async fn change_user(
        &self,
        scope: Scope,
        id: Uuid,
        change: &UserChange,
    ) -> Result<UserRecord, StoreError> {
        self.db
            .retry(|| async {
                let mut client = self.db.client().await?;
                let tx = client.transaction().await?;
                let (old, others) = lock_user(&tx, scope, id).await?;
                let new = change.apply(&old);
                check_last_admin(&old, Some(&new), || Ok(others))?;
                let stmt = tx
                    .prepare_cached(
                        "UPDATE users SET role = $2, password_hash = $3, disabled = $4 WHERE id = $1",
                    )
                    .await?;
                tx.execute(
                    &stmt,
                    &[&id, &new.role.as_str(), &new.password_hash, &new.disabled],
                )
                .await?;
                if let Some(at) = change.end_sessions_at {
                    end_user_sessions(&tx, scope, id, at).await?;
                }
                tx.commit().await?;
                Ok(new)
            })
            .await
    }

    pub(crate) async fn remove_user(&self, scope: Scope, id: Uuid) -> Result<(), StoreError> {
        self.db
            .retry(|| async {
                let mut client = self.db.client().await?;
                let tx = client.transaction().await?;
                let (old, others) = lock_user(&tx, scope, id).await?;
                check_last_admin(&old, None, || Ok(others))?;
                let sessions = tx
                    .prepare_cached(
                        "DELETE FROM sessions WHERE user_id = $1 AND org_id = $2 AND partition = $3",
                    )
                    .await?;
                tx.execute(&sessions, &[&id, &scope.org.0, &scope.partition.as_str()])
                    .await?;
                let user = tx.prepare_cached("DELETE FROM users WHERE id = $1").await?;
                tx.execute(&user, &[&id]).await?;
                tx.commit().await?;
                Ok(())
            })
            .await
    }

    pub(crate) async fn end_all_sessions(
        &self,
        scope: Scope,
        user_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let client = self.db.client().await?;
        Ok(end_user_sessions(&client, scope, user_id, at).await?)
    }

    pub(crate) async fn add_grant(&self, g: &GrantRecord) -> Result<(), StoreError> {
        let n = self
            .execute(
                "INSERT INTO grants (id, org_id, partition, principal, granted_by, created, expires_at,
                     revoked_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                &[
                    &g.id,
                    &g.scope.org.0,
                    &g.scope.partition.as_str(),
                    &g.principal,
                    &g.granted_by,
                    &ms(&g.created),
                    &ms(&g.expires_at),
                    &g.revoked_at.as_ref().map(ms),
                ],
            )
            .await?;
        changed(n, StoreError::AlreadyExists)
    }

    pub(crate) async fn active_grant(
        &self,
        scope: Scope,
        principal: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let row = self
            .query_opt(
                "SELECT EXISTS (SELECT 1 FROM grants WHERE org_id = $1 AND partition = $2 AND principal = $3
                     AND revoked_at IS NULL AND expires_at > $4)",
                &[&scope.org.0, &scope.partition.as_str(), &principal, &ms(&now)],
            )
            .await?;
        match row {
            Some(r) => Ok(col(&r, 0, "exists")?),
            None => Ok(false),
        }
    }

    /// One statement: the customer must exist (as a customer) for anything to be deleted.
    /// One attempt at an erase, in one transaction: the customer row is locked first, so
    /// writes linking to it (which lock it KEY SHARE) finish before and are deleted too, or
    /// start after and find no customer.
    /// Records one `object.erased` event (`change`) per object deleted.
    pub(crate) async fn erase(
        &self,
        scope: Scope,
        customer: ObjectId,
        change: &ChangeRow,
    ) -> Result<Erasure, Failure> {
        let (org, partition, id) = (scope.org.0, scope.partition.as_str(), customer.0);
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let recorded = tx
            .query_opt(
                "SELECT objects, completed FROM erasures
                 WHERE org_id = $1 AND partition = $2 AND customer_id = $3",
                &[&org, &partition, &id],
            )
            .await?;
        if let Some(r) = recorded {
            return Ok(Erasure {
                objects: count(col(&r, 0, "objects")?)?,
                completed: col(&r, 1, "completed")?,
            });
        }
        let locked = tx
            .query_opt(
                "SELECT id FROM objects
                 WHERE org_id = $1 AND partition = $2 AND id = $3 AND kind = 'customer' FOR UPDATE",
                &[&org, &partition, &id],
            )
            .await?;
        if locked.is_none() {
            return Err(StoreError::NotFound.into());
        }
        let [event_type, contributor_id, contributor_type, time] = change.params();
        let r = tx
            .query_one(
                ERASE,
                &[
                    &org,
                    &partition,
                    &id,
                    event_type,
                    contributor_id,
                    contributor_type,
                    time,
                ],
            )
            .await?;
        let n: i64 = col(&r, 0, "count")?;
        execute_cached(
            &tx,
            "INSERT INTO erasures (org_id, partition, customer_id, erased_at, objects)
             VALUES ($1, $2, $3, now(), $4)",
            &[&org, &partition, &id, &n],
        )
        .await?;
        tx.commit().await?;
        Ok(Erasure {
            objects: count(n)?,
            completed: false,
        })
    }
}
