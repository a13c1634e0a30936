//! Key management over the in-memory key store: partitions get keys only when created, and
//! key operations of two processes that race are retried on the keys as they now are.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use contextd_core::crypto::{Keyring, MasterKey, PartitionCheck, OPERATOR_KEK, ORG_KEK};
use contextd_core::ids::{ObjectId, OrgId, Partition, Scope};
use contextd_core::memory_keys::MemoryKeyStore;
use contextd_core::store::{KeyStore, StoreError, WrappedKey};
use contextd_core::CoreError;

use crate::support::block_on;

fn scopes(org: OrgId) -> [Scope; 2] {
    Partition::ALL.map(|partition| Scope { org, partition })
}

/// An org whose keys exist in `store`, wrapped by `master`.
fn org_with_keys(store: &Arc<MemoryKeyStore>, master: &MasterKey) -> OrgId {
    let org = OrgId::new();
    let keyring = Keyring::new(master.clone(), store.clone(), 16);
    for scope in scopes(org) {
        block_on(keyring.create_partition_keys(scope)).expect("create partition keys");
    }
    org
}

#[test]
fn a_partition_without_keys_is_an_error_and_gets_no_keys() {
    let store = Arc::new(MemoryKeyStore::default());
    let keyring = Keyring::new(MasterKey::generate(), store.clone(), 16);
    let scope = scopes(OrgId::new())[0];
    let expect_missing = |result: Result<(), CoreError>, what: &str| match result {
        Err(CoreError::Keys(msg)) => assert!(
            msg.contains(&scope.org.to_string())
                && msg.contains("lab")
                && msg.contains("wrong --data-dir"),
            "{what}: the error names the org, the partition and the likely cause: {msg}"
        ),
        other => panic!("{what}: expected a key error, got {other:?}"),
    };
    expect_missing(block_on(keyring.indexer(scope)).map(|_| ()), "indexer");
    expect_missing(
        block_on(keyring.object_keys(scope, None)).map(|_| ()),
        "object keys",
    );
    expect_missing(
        block_on(keyring.create_customer_key(scope, ObjectId::new())).map(|_| ()),
        "a new customer key",
    );
    expect_missing(block_on(keyring.rotate(scope)).map(|_| ()), "rotate");
    expect_missing(
        block_on(keyring.current_version(scope)).map(|_| ()),
        "current version",
    );
    assert_eq!(
        block_on(store.scopes()).expect("scopes"),
        vec![],
        "no key was created"
    );
    assert_eq!(
        block_on(keyring.check_partition(scope)).expect("check"),
        PartitionCheck::Missing
    );
}

#[test]
fn the_partition_check_tells_each_kind_of_key_failure_apart() {
    let store = Arc::new(MemoryKeyStore::default());
    let master = MasterKey::generate();
    let org = org_with_keys(&store, &master);
    let lab = scopes(org)[0];
    let check = |keyring: &Keyring| block_on(keyring.check_partition(lab)).expect("check");
    let with = |kek: &MasterKey, org_kek: Option<&MasterKey>| {
        Keyring::new(kek.clone(), store.clone(), 16)
            .with_org_keks(org_kek.map(|k| (org, k.clone())))
    };
    assert_eq!(check(&with(&master, None)), PartitionCheck::Opens);
    assert_eq!(
        check(&with(&MasterKey::generate(), None)),
        PartitionCheck::WrongKek { org_kek: false }
    );
    let org_kek = MasterKey::generate();
    block_on(with(&master, None).adopt_org_kek(org, &org_kek)).expect("adopt");
    assert_eq!(check(&with(&master, None)), PartitionCheck::OrgKekNotLoaded);
    assert_eq!(
        check(&with(&master, Some(&MasterKey::generate()))),
        PartitionCheck::WrongKek { org_kek: true }
    );
    assert_eq!(check(&with(&master, Some(&org_kek))), PartitionCheck::Opens);
}

/// What the other process does, once, just before this process's key write reaches the store.
enum Interference {
    /// Rotates the scope and seals a value under the new version.
    Rotate(Keyring, Scope),
    /// Adopts an org's own KEK.
    Adopt(Keyring, OrgId, MasterKey),
}

/// The in-memory key store, shared with another process's keyring that changes the keys
/// between this process's read and its write.
struct Racing {
    inner: Arc<MemoryKeyStore>,
    interference: Interference,
    fired: AtomicBool,
    /// What `Rotate` sealed: object id, sealed bytes.
    sealed: Mutex<Option<(ObjectId, Vec<u8>)>>,
}

impl Racing {
    async fn interfere(&self) {
        if self.fired.swap(true, Ordering::SeqCst) {
            return;
        }
        match &self.interference {
            Interference::Rotate(other, scope) => {
                assert_eq!(other.rotate(*scope).await.expect("racing rotation"), 2);
                let keys = other.object_keys(*scope, None).await.expect("keys");
                let id = ObjectId::new();
                let sealed = keys.seal(id, "f", b"sealed under v2").expect("seal");
                *self.sealed.lock().expect("lock") = Some((id, sealed));
            }
            Interference::Adopt(other, org, kek) => {
                other
                    .adopt_org_kek(*org, kek)
                    .await
                    .expect("racing adoption");
            }
        }
    }
}

#[async_trait]
impl KeyStore for Racing {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn data_keys(&self, scope: Scope) -> Result<Vec<WrappedKey>, StoreError> {
        self.inner.data_keys(scope).await
    }
    async fn insert_data_key(&self, scope: Scope, key: &WrappedKey) -> Result<(), StoreError> {
        if matches!(self.interference, Interference::Adopt(..)) {
            self.interfere().await;
        }
        self.inner.insert_data_key(scope, key).await
    }
    async fn index_key(&self, scope: Scope) -> Result<Option<WrappedKey>, StoreError> {
        self.inner.index_key(scope).await
    }
    async fn insert_index_key(&self, scope: Scope, key: &WrappedKey) -> Result<(), StoreError> {
        self.inner.insert_index_key(scope, key).await
    }
    async fn customer_key(
        &self,
        scope: Scope,
        customer: ObjectId,
    ) -> Result<Option<WrappedKey>, StoreError> {
        self.inner.customer_key(scope, customer).await
    }
    async fn insert_customer_key(
        &self,
        scope: Scope,
        customer: ObjectId,
        key: &WrappedKey,
    ) -> Result<(), StoreError> {
        self.inner.insert_customer_key(scope, customer, key).await
    }
    async fn delete_customer_key(
        &self,
        scope: Scope,
        customer: ObjectId,
    ) -> Result<(), StoreError> {
        self.inner.delete_customer_key(scope, customer).await
    }
    async fn customer_keys_wrapped_before(
        &self,
        scope: Scope,
        version: u32,
        limit: usize,
    ) -> Result<Vec<(ObjectId, WrappedKey)>, StoreError> {
        self.inner
            .customer_keys_wrapped_before(scope, version, limit)
            .await
    }
    async fn count_customer_keys_wrapped_before(
        &self,
        scope: Scope,
        version: u32,
    ) -> Result<u64, StoreError> {
        self.inner
            .count_customer_keys_wrapped_before(scope, version)
            .await
    }
    async fn replace_customer_key(
        &self,
        scope: Scope,
        customer: ObjectId,
        key: &WrappedKey,
    ) -> Result<(), StoreError> {
        self.inner.replace_customer_key(scope, customer, key).await
    }
    async fn replace_partition_keys(
        &self,
        scope: Scope,
        expected: &[WrappedKey],
        data: &[WrappedKey],
        index: &WrappedKey,
    ) -> Result<(), StoreError> {
        if matches!(&self.interference, Interference::Rotate(_, s) if *s == scope) {
            self.interfere().await;
        }
        self.inner
            .replace_partition_keys(scope, expected, data, index)
            .await
    }
    async fn scopes(&self) -> Result<Vec<Scope>, StoreError> {
        self.inner.scopes().await
    }
}

#[test]
fn an_adoption_racing_a_rotation_of_another_process_keeps_the_new_version() {
    let inner = Arc::new(MemoryKeyStore::default());
    let master = MasterKey::generate();
    let org = org_with_keys(&inner, &master);
    let lab = scopes(org)[0];
    // A server rotates the lab partition between the CLI's read and its re-wrap.
    let racing = Arc::new(Racing {
        inner: inner.clone(),
        interference: Interference::Rotate(Keyring::new(master.clone(), inner.clone(), 16), lab),
        fired: AtomicBool::new(false),
        sealed: Mutex::new(None),
    });
    let org_kek = MasterKey::generate();
    let cli = Keyring::new(master.clone(), racing.clone(), 16);
    block_on(cli.adopt_org_kek(org, &org_kek)).expect("adoption retried on the new keys");

    let stored = block_on(inner.data_keys(lab)).expect("data keys");
    assert_eq!(
        stored
            .iter()
            .map(|k| (k.version, k.wrapped_by))
            .collect::<Vec<_>>(),
        vec![(1, ORG_KEK), (2, ORG_KEK)],
        "the version added meanwhile is kept, and re-wrapped under the org's key"
    );
    let (id, sealed) = racing
        .sealed
        .lock()
        .expect("lock")
        .clone()
        .expect("the rotation ran");
    let reader = Keyring::new(master, inner, 16).with_org_keks([(org, org_kek)]);
    let keys = block_on(reader.object_keys(lab, None)).expect("keys");
    assert_eq!(
        keys.open(id, "f", &sealed)
            .expect("a value sealed under v2 opens"),
        b"sealed under v2"
    );
}

#[test]
fn a_rotation_racing_an_adoption_of_another_process_wraps_the_new_version_under_the_org_kek() {
    let inner = Arc::new(MemoryKeyStore::default());
    let master = MasterKey::generate();
    let org = org_with_keys(&inner, &master);
    let lab = scopes(org)[0];
    let org_kek = MasterKey::generate();
    // The CLI adopts the org's own key between the server's read and its insert.
    let racing = Arc::new(Racing {
        inner: inner.clone(),
        interference: Interference::Adopt(
            Keyring::new(master.clone(), inner.clone(), 16),
            org,
            org_kek.clone(),
        ),
        fired: AtomicBool::new(false),
        sealed: Mutex::new(None),
    });
    let server = Keyring::new(master.clone(), racing, 16).with_org_keks([(org, org_kek.clone())]);
    assert_eq!(
        block_on(server.rotate(lab)).expect("rotation retried on the new keys"),
        2
    );
    let stored = block_on(inner.data_keys(lab)).expect("data keys");
    assert_eq!(
        stored
            .iter()
            .map(|k| (k.version, k.wrapped_by))
            .collect::<Vec<_>>(),
        vec![(1, ORG_KEK), (2, ORG_KEK)],
        "the new version is wrapped by the org's key, not the operator's"
    );
    assert!(stored.iter().all(|k| k.wrapped_by != OPERATOR_KEK));
    let master_only = Keyring::new(master, inner, 16);
    assert_eq!(
        block_on(master_only.check_partition(lab)).expect("check"),
        PartitionCheck::OrgKekNotLoaded,
        "the operator's key alone opens no version"
    );
}
