//! What the fuzz targets share: the base dictionary and a blind indexer over an in-memory
//! key store (the targets are pure: no files, no network).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use async_trait::async_trait;
use contextd_core::crypto::{Indexer, Keyring, MasterKey};
use contextd_core::dictionary::Dictionary;
use contextd_core::ids::{ObjectId, OrgId, Partition, Scope};
use contextd_core::store::{KeyStore, StoreError, WrappedKey};
use contextd_core::CoreError;

/// The base dictionary (built once).
pub fn dictionary() -> &'static Dictionary {
    static DICTIONARY: OnceLock<Dictionary> = OnceLock::new();
    DICTIONARY.get_or_init(|| Dictionary::new(vec![], vec![]))
}

/// The blind indexer of one lab partition (built once).
pub fn indexer() -> &'static Indexer {
    static INDEXER: OnceLock<Indexer> = OnceLock::new();
    INDEXER.get_or_init(|| {
        let keyring = Keyring::new(MasterKey::generate(), Arc::new(MemKeyStore::default()), 16);
        let scope = Scope {
            org: OrgId::new(),
            partition: Partition::Lab,
        };
        block_on(keyring.indexer(scope)).expect("an in-memory keyring yields an indexer")
    })
}

/// Whether an error is one a client input may cause (a 400), not a server failure.
pub fn is_client_error(e: &CoreError) -> bool {
    matches!(e, CoreError::Validation(v) if !v.is_empty()) || matches!(e, CoreError::BadRequest(_))
}

/// Runs a future that never waits (the in-memory key store answers at once).
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

#[derive(Default)]
struct MemKeyStore {
    data: Mutex<HashMap<Scope, Vec<WrappedKey>>>,
    index: Mutex<HashMap<Scope, WrappedKey>>,
    customers: Mutex<HashMap<(Scope, ObjectId), WrappedKey>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait]
impl KeyStore for MemKeyStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn data_keys(&self, scope: Scope) -> Result<Vec<WrappedKey>, StoreError> {
        Ok(lock(&self.data).get(&scope).cloned().unwrap_or_default())
    }

    async fn insert_data_key(&self, scope: Scope, key: &WrappedKey) -> Result<(), StoreError> {
        let mut data = lock(&self.data);
        let keys = data.entry(scope).or_default();
        if keys.iter().any(|k| k.version == key.version) {
            return Err(StoreError::AlreadyExists);
        }
        keys.push(key.clone());
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
        data: &[WrappedKey],
        index: &WrappedKey,
    ) -> Result<(), StoreError> {
        lock(&self.data).insert(scope, data.to_vec());
        lock(&self.index).insert(scope, index.clone());
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
