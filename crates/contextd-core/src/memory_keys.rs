//! A volatile, in-memory [`KeyStore`] for tests, benchmarks and fuzz targets.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::ids::{ObjectId, Scope};
use crate::store::{data_key_insert_conflict, same_key_set, KeyStore, StoreError, WrappedKey};

/// Wrapped keys in memory: a volatile [`KeyStore`] for tests, benchmarks and fuzzing. Keys
/// vanish with the process, so never use it to hold real data.
#[derive(Default)]
pub struct MemoryKeyStore {
    data: Mutex<HashMap<Scope, Vec<WrappedKey>>>,
    index: Mutex<HashMap<Scope, WrappedKey>>,
    customers: Mutex<HashMap<(Scope, ObjectId), WrappedKey>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait]
impl KeyStore for MemoryKeyStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn data_keys(&self, scope: Scope) -> Result<Vec<WrappedKey>, StoreError> {
        Ok(lock(&self.data).get(&scope).cloned().unwrap_or_default())
    }

    async fn insert_data_key(&self, scope: Scope, key: &WrappedKey) -> Result<(), StoreError> {
        // Locks in the order `data`, then `index`, as `replace_partition_keys` does.
        let mut data = lock(&self.data);
        let index = lock(&self.index);
        let keys = data.entry(scope).or_default();
        if let Some(e) = data_key_insert_conflict(keys, index.get(&scope), key) {
            return Err(e);
        }
        keys.push(key.clone());
        keys.sort_by_key(|k| k.version);
        Ok(())
    }

    async fn index_key(&self, scope: Scope) -> Result<Option<WrappedKey>, StoreError> {
        Ok(lock(&self.index).get(&scope).cloned())
    }

    async fn insert_index_key(&self, scope: Scope, key: &WrappedKey) -> Result<(), StoreError> {
        let mut index = lock(&self.index);
        if index.contains_key(&scope) {
            return Err(StoreError::AlreadyExists);
        }
        index.insert(scope, key.clone());
        Ok(())
    }

    async fn customer_key(
        &self,
        scope: Scope,
        customer: ObjectId,
    ) -> Result<Option<WrappedKey>, StoreError> {
        Ok(lock(&self.customers).get(&(scope, customer)).cloned())
    }

    async fn insert_customer_key(
        &self,
        scope: Scope,
        customer: ObjectId,
        key: &WrappedKey,
    ) -> Result<(), StoreError> {
        let mut customers = lock(&self.customers);
        if customers.contains_key(&(scope, customer)) {
            return Err(StoreError::AlreadyExists);
        }
        customers.insert((scope, customer), key.clone());
        Ok(())
    }

    async fn delete_customer_key(
        &self,
        scope: Scope,
        customer: ObjectId,
    ) -> Result<(), StoreError> {
        lock(&self.customers)
            .remove(&(scope, customer))
            .map(|_| ())
            .ok_or(StoreError::NotFound)
    }

    async fn customer_keys_wrapped_before(
        &self,
        scope: Scope,
        version: u32,
        limit: usize,
    ) -> Result<Vec<(ObjectId, WrappedKey)>, StoreError> {
        Ok(lock(&self.customers)
            .iter()
            .filter(|((s, _), k)| *s == scope && k.wrapped_by < version)
            .take(limit)
            .map(|((_, c), k)| (*c, k.clone()))
            .collect())
    }

    async fn count_customer_keys_wrapped_before(
        &self,
        scope: Scope,
        version: u32,
    ) -> Result<u64, StoreError> {
        let n = lock(&self.customers)
            .iter()
            .filter(|((s, _), k)| *s == scope && k.wrapped_by < version)
            .count();
        Ok(n as u64)
    }

    async fn replace_customer_key(
        &self,
        scope: Scope,
        customer: ObjectId,
        key: &WrappedKey,
    ) -> Result<(), StoreError> {
        match lock(&self.customers).get_mut(&(scope, customer)) {
            Some(k) => {
                *k = key.clone();
                Ok(())
            }
            None => Err(StoreError::NotFound),
        }
    }

    async fn replace_partition_keys(
        &self,
        scope: Scope,
        expected: &[WrappedKey],
        data: &[WrappedKey],
        index: &WrappedKey,
    ) -> Result<(), StoreError> {
        let mut stored = lock(&self.data);
        let mut indexes = lock(&self.index);
        if !same_key_set(stored.get(&scope).map_or(&[], Vec::as_slice), expected) {
            return Err(StoreError::KeysChanged);
        }
        let mut data = data.to_vec();
        data.sort_by_key(|k| k.version);
        stored.insert(scope, data);
        indexes.insert(scope, index.clone());
        Ok(())
    }

    async fn scopes(&self) -> Result<Vec<Scope>, StoreError> {
        let mut scopes: Vec<Scope> = lock(&self.data).keys().copied().collect();
        for s in lock(&self.index).keys() {
            if !scopes.contains(s) {
                scopes.push(*s);
            }
        }
        Ok(scopes)
    }
}
