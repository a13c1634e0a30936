//! The key store: [`KeyStore`], its wrapped keys, and the checks of its writes.

use async_trait::async_trait;

use super::StoreError;
use crate::ids::{ObjectId, Scope};

/// Partition keys as stored in the key store: wrapped, never in the clear.
#[derive(Clone, Debug, PartialEq)]
pub struct WrappedKey {
    /// Version of the key (data keys rotate; index keys and customer keys do not).
    pub version: u32,
    /// Version of the wrapping key (the KEK for partition keys, the partition data key for
    /// customer keys).
    pub wrapped_by: u32,
    /// nonce ‖ ciphertext ‖ tag.
    pub bytes: Vec<u8>,
}

impl WrappedKey {
    /// A key from the columns of its row; versions out of range mean a corrupt row.
    pub fn from_columns(version: i64, wrapped_by: i64, bytes: Vec<u8>) -> Result<Self, StoreError> {
        let u32_col = |v: i64, what: &str| u32::try_from(v).map_err(|_| StoreError::corrupt(what));
        Ok(Self {
            version: u32_col(version, "version")?,
            wrapped_by: u32_col(wrapped_by, "wrapped_by")?,
            bytes,
        })
    }
}

/// The key store: wrapped keys, kept in a database apart from the data so that a copy of the
/// data alone decrypts nothing.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// A short name for logs and status (`sqlite`, `postgres`, `memory`).
    fn backend(&self) -> &'static str;
    /// Checks the key store answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// The partition's data keys, all versions, ascending.
    async fn data_keys(&self, scope: Scope) -> Result<Vec<WrappedKey>, StoreError>;
    /// Adds a data key version; `AlreadyExists` if that version exists, `KeysChanged` if the
    /// partition's data or index keys are wrapped by another kind of key-encryption key
    /// (`wrapped_by`) than this one (the partition was re-wrapped since the caller read it).
    /// Checked and written in one transaction, serialized with
    /// [`KeyStore::replace_partition_keys`] of the same partition.
    async fn insert_data_key(&self, scope: Scope, key: &WrappedKey) -> Result<(), StoreError>;
    /// The partition's blind-index key.
    async fn index_key(&self, scope: Scope) -> Result<Option<WrappedKey>, StoreError>;
    /// Sets the blind-index key; `AlreadyExists` if one is set (first writer wins).
    async fn insert_index_key(&self, scope: Scope, key: &WrappedKey) -> Result<(), StoreError>;
    /// A customer's own data key.
    async fn customer_key(
        &self,
        scope: Scope,
        customer: ObjectId,
    ) -> Result<Option<WrappedKey>, StoreError>;
    /// Stores a customer's key; `AlreadyExists` if one is set.
    async fn insert_customer_key(
        &self,
        scope: Scope,
        customer: ObjectId,
        key: &WrappedKey,
    ) -> Result<(), StoreError>;
    /// Stores several customers' keys; `true` where the key was stored, `false` where the
    /// customer had one already (which is kept). Backends do it in one transaction; this
    /// default stores them one by one.
    async fn insert_customer_keys(
        &self,
        scope: Scope,
        keys: &[(ObjectId, WrappedKey)],
    ) -> Result<Vec<bool>, StoreError> {
        let mut stored = Vec::with_capacity(keys.len());
        for (customer, key) in keys {
            stored.push(
                match self.insert_customer_key(scope, *customer, key).await {
                    Ok(()) => true,
                    Err(StoreError::AlreadyExists) => false,
                    Err(e) => return Err(e),
                },
            );
        }
        Ok(stored)
    }
    /// Destroys a customer's key (crypto-shredding); `NotFound` if absent.
    async fn delete_customer_key(&self, scope: Scope, customer: ObjectId)
        -> Result<(), StoreError>;
    /// Up to `limit` customer keys wrapped by a data-key version below `version`.
    async fn customer_keys_wrapped_before(
        &self,
        scope: Scope,
        version: u32,
        limit: usize,
    ) -> Result<Vec<(ObjectId, WrappedKey)>, StoreError>;
    /// How many customer keys are wrapped by a data-key version below `version`.
    async fn count_customer_keys_wrapped_before(
        &self,
        scope: Scope,
        version: u32,
    ) -> Result<u64, StoreError>;
    /// Replaces a customer's wrapped key (re-wrapping); `NotFound` if absent (erased meanwhile).
    async fn replace_customer_key(
        &self,
        scope: Scope,
        customer: ObjectId,
        key: &WrappedKey,
    ) -> Result<(), StoreError>;
    /// Replaces all of a partition's wrapped data keys and its index key in one transaction
    /// (re-wrapping under another key-encryption key), provided the stored data keys are
    /// exactly `expected` (as read by the caller, in any order); otherwise `KeysChanged` and
    /// nothing changes, so that a data-key version added meanwhile is never lost.
    async fn replace_partition_keys(
        &self,
        scope: Scope,
        expected: &[WrappedKey],
        data: &[WrappedKey],
        index: &WrappedKey,
    ) -> Result<(), StoreError>;
    /// Every scope that has keys.
    async fn scopes(&self) -> Result<Vec<Scope>, StoreError>;
}

/// Whether the data keys a key store holds are exactly those a caller read (any order): the
/// check of [`KeyStore::replace_partition_keys`], shared by the backends.
pub fn same_key_set(stored: &[WrappedKey], expected: &[WrappedKey]) -> bool {
    stored.len() == expected.len() && expected.iter().all(|e| stored.contains(e))
}

/// Why [`KeyStore::insert_data_key`] must refuse `key`, given the partition's stored data
/// keys and index key, if it must: the rule shared by the backends.
pub fn data_key_insert_conflict(
    stored: &[WrappedKey],
    index: Option<&WrappedKey>,
    key: &WrappedKey,
) -> Option<StoreError> {
    if stored.iter().any(|k| k.version == key.version) {
        Some(StoreError::AlreadyExists)
    } else if stored
        .iter()
        .chain(index)
        .any(|k| k.wrapped_by != key.wrapped_by)
    {
        Some(StoreError::KeysChanged)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_versions_out_of_range_are_corrupt_rows() {
        let k = WrappedKey::from_columns(2, 1, vec![7]).ok();
        assert_eq!(
            k,
            Some(WrappedKey {
                version: 2,
                wrapped_by: 1,
                bytes: vec![7]
            })
        );
        assert!(WrappedKey::from_columns(-1, 1, vec![]).is_err());
        assert!(WrappedKey::from_columns(1, i64::from(u32::MAX) + 1, vec![]).is_err());
    }
}
