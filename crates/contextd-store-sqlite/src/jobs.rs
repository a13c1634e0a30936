//! [`JobStore`] for [`SqliteStore`]: flush-job status and re-encryption of objects.

use std::collections::BTreeMap;

use async_trait::async_trait;
use contextd_core::ids::{ObjectId, Scope};
use contextd_core::store::{encode_sealed, FlushJob, JobStore, StoreError, StoredObject};
use rusqlite::params;
use uuid::Uuid;

use crate::db::{int_col, ms, parse_col, text_col, time_col, DbResultExt};
use crate::rows::{object_from_row, OBJECT_COLUMNS};
use crate::store::{blob, SqliteStore};

#[async_trait]
impl JobStore for SqliteStore {
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
                        .map_err(|_| StoreError::corrupt("flushed"))?,
                    message: text_col(r.get_ref(3).db()?, "message")?.to_owned(),
                    created: time_col(r.get_ref(4).db()?, "created")?,
                }))
            })
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
                    return Err(StoreError::version_changed());
                }
                Ok(())
            })
            .await
    }
}
