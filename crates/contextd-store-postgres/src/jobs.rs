//! [`JobStore`] for [`PgStore`]: flush-job status and re-encryption of objects.

use std::collections::BTreeMap;

use async_trait::async_trait;
use contextd_core::ids::{ObjectId, Scope};
use contextd_core::store::{encode_sealed, FlushJob, JobStore, StoreError, StoredObject};
use uuid::Uuid;

use crate::db::{col, count, ms, parse_col, Failure};
use crate::rows::{object_from_row, OBJECT_COLUMNS};
use crate::store::PgStore;

#[async_trait]
impl JobStore for PgStore {
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
            return Err(StoreError::version_changed());
        }
        Ok(())
    }
}
