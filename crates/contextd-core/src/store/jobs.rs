//! Background work on stored objects: [`JobStore`] holds lab flush jobs and finds and
//! rewrites the objects a data-key rotation left to re-encrypt.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{StoreError, StoredObject};
use crate::ids::{ObjectId, Scope};
use crate::object::Kind;

/// A lab flush job.
#[derive(Clone, Debug, PartialEq)]
pub struct FlushJob {
    /// Job id.
    pub id: Uuid,
    /// Scope flushed.
    pub scope: Scope,
    /// Kind flushed.
    pub kind: Kind,
    /// Finished?
    pub completed: bool,
    /// Objects deleted.
    pub flushed: u64,
    /// Human-readable status.
    pub message: String,
    /// Started.
    pub created: DateTime<Utc>,
}

/// Background jobs over objects: the status of lab flushes, and re-encryption (re-sealing)
/// of objects after a data-key rotation.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Inserts or replaces a flush job's status.
    async fn put_flush_job(&self, job: &FlushJob) -> Result<(), StoreError>;
    /// Reads a flush job in scope.
    async fn flush_job(&self, scope: Scope, id: Uuid) -> Result<Option<FlushJob>, StoreError>;
    /// Up to `limit` objects whose `key_version` is between 1 and `below - 1` (sealed under an
    /// older partition data key), any order.
    async fn objects_to_reseal(
        &self,
        scope: Scope,
        below: u32,
        limit: usize,
    ) -> Result<Vec<StoredObject>, StoreError>;
    /// How many objects [`JobStore::objects_to_reseal`] would return without a limit.
    async fn count_objects_to_reseal(&self, scope: Scope, below: u32) -> Result<u64, StoreError>;
    /// Replaces an object's sealed values and `key_version` without changing its version or
    /// times (re-encryption is not a client write); [`StoreError::version_changed`] if the
    /// object changed or went.
    async fn reseal_object(
        &self,
        scope: Scope,
        id: ObjectId,
        expected_version: i64,
        sealed: &BTreeMap<String, Vec<u8>>,
        key_version: u32,
    ) -> Result<(), StoreError>;
}
