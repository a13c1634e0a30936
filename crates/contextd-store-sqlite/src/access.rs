//! Users, sessions, partner grants and customer erasure: the SQL behind the store methods of
//! people and credentials (docs/security.md), called from the trait impls in `credentials.rs`
//! and `objects.rs`. The audit log's SQL is in `audit.rs`.

use chrono::{DateTime, Utc};
use contextd_core::ids::{ObjectId, OrgId, Partition, Scope};
use contextd_core::store::{
    check_last_admin, Erasure, GrantRecord, SessionRecord, StoreError, UserChange, UserRecord,
};
use contextd_core::time::now_ms;
use rusqlite::OptionalExtension;
use rusqlite::{params, Connection, Row, Transaction};
use uuid::Uuid;

use crate::db::{int_col, ms, opt_time_col, parse_col, text_col, time_col, uuid_col, DbResultExt};

fn hash_col(r: &Row<'_>, i: usize, what: &str) -> Result<[u8; 32], StoreError> {
    r.get_ref(i)
        .db()?
        .as_blob()
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| StoreError::corrupt(what))
}

fn scope_cols(r: &Row<'_>, org: usize) -> Result<Scope, StoreError> {
    Ok(Scope {
        org: OrgId(uuid_col(r.get_ref(org).db()?, "org_id")?),
        partition: parse_col::<Partition>(r.get_ref(org + 1).db()?, "partition")?,
    })
}

const USER_COLUMNS: &str = "id, org_id, partition, name, role, password_hash, created, disabled";

fn user_from_row(r: &Row<'_>) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        id: uuid_col(r.get_ref(0).db()?, "id")?,
        scope: scope_cols(r, 1)?,
        name: text_col(r.get_ref(3).db()?, "name")?.to_owned(),
        role: parse_col(r.get_ref(4).db()?, "role")?,
        password_hash: text_col(r.get_ref(5).db()?, "password_hash")?.to_owned(),
        created: time_col(r.get_ref(6).db()?, "created")?,
        disabled: int_col(r.get_ref(7).db()?, "disabled")? != 0,
    })
}

pub(crate) fn insert_user(tx: &Transaction<'_>, u: &UserRecord) -> Result<(), StoreError> {
    let n = tx
        .prepare_cached(
            "INSERT INTO users (id, org_id, partition, name, role, password_hash, created, disabled)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
        )
        .db()?
        .execute(params![
            u.id.as_bytes(),
            u.scope.org.0.as_bytes(),
            u.scope.partition.as_str(),
            u.name,
            u.role.as_str(),
            u.password_hash,
            ms(&u.created),
            u.disabled,
        ])
        .db()?;
    if n == 0 {
        Err(StoreError::AlreadyExists)
    } else {
        Ok(())
    }
}

pub(crate) fn user_by_name(
    c: &Connection,
    scope: Scope,
    name: &str,
) -> Result<Option<UserRecord>, StoreError> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE org_id = ?1 AND partition = ?2 AND name = ?3"
        ))
        .db()?;
    let mut rows = stmt
        .query(params![
            scope.org.0.as_bytes(),
            scope.partition.as_str(),
            name
        ])
        .db()?;
    rows.next().db()?.map(user_from_row).transpose()
}

pub(crate) fn user(c: &Connection, id: Uuid) -> Result<Option<UserRecord>, StoreError> {
    let mut stmt = c
        .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))
        .db()?;
    let mut rows = stmt.query([id.as_bytes()]).db()?;
    rows.next().db()?.map(user_from_row).transpose()
}

pub(crate) fn users(c: &Connection, scope: Scope) -> Result<Vec<UserRecord>, StoreError> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE org_id = ?1 AND partition = ?2 ORDER BY name"
        ))
        .db()?;
    let mut rows = stmt
        .query(params![scope.org.0.as_bytes(), scope.partition.as_str()])
        .db()?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().db()? {
        out.push(user_from_row(r)?);
    }
    Ok(out)
}

pub(crate) fn insert_session(tx: &Transaction<'_>, s: &SessionRecord) -> Result<(), StoreError> {
    let n = tx
        .prepare_cached(
            "INSERT INTO sessions (secret_hash, user_id, org_id, partition, role, csrf_hash, created, expires_at, revoked_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
        )
        .db()?
        .execute(params![
            s.secret_hash,
            s.user_id.as_bytes(),
            s.scope.org.0.as_bytes(),
            s.scope.partition.as_str(),
            s.role.as_str(),
            s.csrf_hash,
            ms(&s.created),
            ms(&s.expires_at),
            s.revoked_at.as_ref().map(ms),
        ])
        .db()?;
    if n == 0 {
        Err(StoreError::AlreadyExists)
    } else {
        Ok(())
    }
}

pub(crate) fn session(c: &Connection, hash: [u8; 32]) -> Result<Option<SessionRecord>, StoreError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT secret_hash, user_id, org_id, partition, role, csrf_hash, created, expires_at, revoked_at
             FROM sessions WHERE secret_hash = ?1",
        )
        .db()?;
    let mut rows = stmt.query([hash]).db()?;
    let Some(r) = rows.next().db()? else {
        return Ok(None);
    };
    Ok(Some(SessionRecord {
        secret_hash: hash_col(r, 0, "secret_hash")?,
        user_id: uuid_col(r.get_ref(1).db()?, "user_id")?,
        scope: scope_cols(r, 2)?,
        role: parse_col(r.get_ref(4).db()?, "role")?,
        csrf_hash: hash_col(r, 5, "csrf_hash")?,
        created: time_col(r.get_ref(6).db()?, "created")?,
        expires_at: time_col(r.get_ref(7).db()?, "expires_at")?,
        revoked_at: opt_time_col(r.get_ref(8).db()?, "revoked_at")?,
    }))
}

pub(crate) fn revoke_session(
    tx: &Transaction<'_>,
    hash: [u8; 32],
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let n = tx
        .prepare_cached(
            "UPDATE sessions SET revoked_at = ?2 WHERE secret_hash = ?1 AND revoked_at IS NULL",
        )
        .db()?
        .execute(params![hash, ms(&at)])
        .db()?;
    if n == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

fn scoped_user(
    tx: &Transaction<'_>,
    scope: Scope,
    id: Uuid,
) -> Result<Option<UserRecord>, StoreError> {
    let mut stmt = tx
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE org_id = ?1 AND partition = ?2 AND id = ?3"
        ))
        .db()?;
    let mut rows = stmt
        .query(params![
            scope.org.0.as_bytes(),
            scope.partition.as_str(),
            id.as_bytes()
        ])
        .db()?;
    rows.next().db()?.map(user_from_row).transpose()
}

/// How many enabled admins `user`'s scope has besides `user`, for [`check_last_admin`]. The
/// writer thread runs one write at a time, so the count can't change underneath.
fn other_admins(tx: &Transaction<'_>, user: &UserRecord) -> Result<u64, StoreError> {
    let others: i64 = tx
        .prepare_cached(
            "SELECT count(*) FROM users WHERE org_id = ?1 AND partition = ?2 AND role = 'admin'
                 AND disabled = 0 AND id <> ?3",
        )
        .db()?
        .query_row(
            params![
                user.scope.org.0.as_bytes(),
                user.scope.partition.as_str(),
                user.id.as_bytes()
            ],
            |r| r.get(0),
        )
        .db()?;
    u64::try_from(others).map_err(|_| StoreError::corrupt("count"))
}

pub(crate) fn update_user(
    tx: &Transaction<'_>,
    scope: Scope,
    id: Uuid,
    change: &UserChange,
) -> Result<UserRecord, StoreError> {
    let old = scoped_user(tx, scope, id)?.ok_or(StoreError::NotFound)?;
    let new = change.apply(&old);
    check_last_admin(&old, Some(&new), || other_admins(tx, &old))?;
    tx.prepare_cached(
        "UPDATE users SET role = ?2, password_hash = ?3, disabled = ?4 WHERE id = ?1",
    )
    .db()?
    .execute(params![
        id.as_bytes(),
        new.role.as_str(),
        new.password_hash,
        new.disabled
    ])
    .db()?;
    if let Some(at) = change.end_sessions_at {
        revoke_user_sessions(tx, scope, id, at)?;
    }
    Ok(new)
}

pub(crate) fn delete_user(tx: &Transaction<'_>, scope: Scope, id: Uuid) -> Result<(), StoreError> {
    let old = scoped_user(tx, scope, id)?.ok_or(StoreError::NotFound)?;
    check_last_admin(&old, None, || other_admins(tx, &old))?;
    let (org, partition) = (scope.org.0.as_bytes(), scope.partition.as_str());
    tx.prepare_cached("DELETE FROM sessions WHERE user_id = ?1 AND org_id = ?2 AND partition = ?3")
        .db()?
        .execute(params![id.as_bytes(), org, partition])
        .db()?;
    tx.prepare_cached("DELETE FROM users WHERE id = ?1")
        .db()?
        .execute(params![id.as_bytes()])
        .db()?;
    Ok(())
}

pub(crate) fn revoke_user_sessions(
    tx: &Transaction<'_>,
    scope: Scope,
    user_id: Uuid,
    at: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let n = tx
        .prepare_cached(
            "UPDATE sessions SET revoked_at = ?4
             WHERE user_id = ?1 AND org_id = ?2 AND partition = ?3 AND revoked_at IS NULL",
        )
        .db()?
        .execute(params![
            user_id.as_bytes(),
            scope.org.0.as_bytes(),
            scope.partition.as_str(),
            ms(&at)
        ])
        .db()?;
    Ok(n as u64)
}

pub(crate) fn insert_grant(tx: &Transaction<'_>, g: &GrantRecord) -> Result<(), StoreError> {
    let n = tx
        .prepare_cached(
            "INSERT INTO grants (id, org_id, partition, principal, granted_by, created, expires_at, revoked_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
        )
        .db()?
        .execute(params![
            g.id.as_bytes(),
            g.scope.org.0.as_bytes(),
            g.scope.partition.as_str(),
            g.principal.as_bytes(),
            g.granted_by.as_bytes(),
            ms(&g.created),
            ms(&g.expires_at),
            g.revoked_at.as_ref().map(ms),
        ])
        .db()?;
    if n == 0 {
        Err(StoreError::AlreadyExists)
    } else {
        Ok(())
    }
}

pub(crate) fn has_active_grant(
    c: &Connection,
    scope: Scope,
    principal: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM grants WHERE org_id = ?1 AND partition = ?2 AND principal = ?3
                 AND revoked_at IS NULL AND expires_at > ?4)",
        )
        .db()?;
    let found: i64 = stmt
        .query_row(
            params![
                scope.org.0.as_bytes(),
                scope.partition.as_str(),
                principal.as_bytes(),
                ms(&now)
            ],
            |r| r.get(0),
        )
        .db()?;
    Ok(found != 0)
}

pub(crate) fn revoke(
    tx: &Transaction<'_>,
    table: &str,
    scope: Scope,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let sql = format!(
        "UPDATE {table} SET revoked_at = ?4 WHERE org_id = ?1 AND partition = ?2 AND id = ?3 AND revoked_at IS NULL"
    );
    let n = tx
        .prepare_cached(&sql)
        .db()?
        .execute(params![
            scope.org.0.as_bytes(),
            scope.partition.as_str(),
            id.as_bytes(),
            ms(&at)
        ])
        .db()?;
    if n == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

pub(crate) fn erase_customer(
    tx: &Transaction<'_>,
    scope: Scope,
    customer: ObjectId,
) -> Result<Erasure, StoreError> {
    let (org, partition, id) = (
        scope.org.0.as_bytes().to_vec(),
        scope.partition.as_str(),
        customer.0.as_bytes().to_vec(),
    );
    let recorded = tx
        .prepare_cached(
            "SELECT objects, completed FROM erasures WHERE org_id = ?1 AND partition = ?2 AND customer_id = ?3",
        )
        .db()?
        .query_row(params![org, partition, id], |r| {
            Ok(Erasure {
                objects: r.get::<_, i64>(0)?.max(0) as u64,
                completed: r.get(1)?,
            })
        })
        .optional()
        .db()?;
    if let Some(erasure) = recorded {
        return Ok(erasure);
    }
    let exists: i64 = tx
        .prepare_cached(
            "SELECT count(*) FROM objects WHERE org_id = ?1 AND partition = ?2 AND id = ?3 AND kind = 'customer'",
        )
        .db()?
        .query_row(params![org, partition, id], |r| r.get(0))
        .db()?;
    if exists == 0 {
        return Err(StoreError::NotFound);
    }
    tx.prepare_cached(
        "DELETE FROM tokens WHERE org_id = ?1 AND partition = ?2 AND object_id IN
             (SELECT id FROM objects WHERE org_id = ?1 AND partition = ?2 AND (journey = ?3 OR id = ?3))",
    )
    .db()?
    .execute(params![org, partition, id])
    .db()?;
    let n = tx
        .prepare_cached("DELETE FROM objects WHERE org_id = ?1 AND partition = ?2 AND (journey = ?3 OR id = ?3)")
        .db()?
        .execute(params![org, partition, id])
        .db()?;
    tx.prepare_cached(
        "INSERT INTO erasures (org_id, partition, customer_id, erased_at, objects) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .db()?
    .execute(params![org, partition, id, ms(&now_ms()), n as i64])
    .db()?;
    Ok(Erasure {
        objects: n as u64,
        completed: false,
    })
}

pub(crate) fn complete_erasure(
    tx: &Transaction<'_>,
    scope: Scope,
    customer: ObjectId,
) -> Result<(), StoreError> {
    let n = tx
        .prepare_cached(
            "UPDATE erasures SET completed = 1 WHERE org_id = ?1 AND partition = ?2 AND customer_id = ?3",
        )
        .db()?
        .execute(params![
            scope.org.0.as_bytes().to_vec(),
            scope.partition.as_str(),
            customer.0.as_bytes().to_vec()
        ])
        .db()?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub(crate) fn pending_erasures(
    c: &Connection,
    limit: usize,
) -> Result<Vec<(Scope, ObjectId)>, StoreError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT org_id, partition, customer_id FROM erasures WHERE completed = 0
             ORDER BY erased_at LIMIT ?1",
        )
        .db()?;
    let mut rows = stmt
        .query(params![i64::try_from(limit).unwrap_or(i64::MAX)])
        .db()?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().db()? {
        let scope = Scope {
            org: OrgId(uuid_col(r.get_ref(0).db()?, "erasure")?),
            partition: parse_col(r.get_ref(1).db()?, "erasure")?,
        };
        out.push((scope, ObjectId(uuid_col(r.get_ref(2).db()?, "erasure")?)));
    }
    Ok(out)
}
