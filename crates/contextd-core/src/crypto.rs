//! Envelope encryption and blind indexes.
//!
//! Key hierarchy: the operator's key-encryption key ([`MasterKey`]) wraps each org-partition's
//! data keys (versioned, for rotation) and its blind-index key; a partition data key wraps each
//! customer's own data key. ENCRYPTED and PII values of a customer and of every object linked
//! to it are sealed under that customer key, so destroying it shreds them; values of objects
//! with no customer are sealed under the partition data key. Wrapped keys live in the
//! [`KeyStore`], apart from the data. Unwrapped keys are cached in memory and zeroized on drop.

use std::sync::Arc;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::CoreError;
use crate::ids::{ObjectId, Scope};
use crate::store::{KeyStore, StoreError, Token, WrappedKey};

const NONCE_LEN: usize = 12;

/// 256 bits of key material, zeroized on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct KeyBytes([u8; 32]);

impl KeyBytes {
    /// Fresh random key material from the OS.
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Self(k)
    }

    fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    fn cipher(&self) -> Aes256Gcm {
        // A 32-byte slice is always a valid AES-256 key.
        Aes256Gcm::new((&self.0).into())
    }
}

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The operator's key-encryption key (KEK).
#[derive(Clone, Debug)]
pub struct MasterKey(KeyBytes);

impl MasterKey {
    /// A new random master key.
    pub fn generate() -> Self {
        Self(KeyBytes::generate())
    }

    /// Parses 32 bytes given as 64 hex digits or as base64 (standard or URL-safe).
    pub fn parse(text: &str) -> Result<Self, CoreError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .ok()
        } else {
            STANDARD
                .decode(text)
                .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
                .ok()
        };
        bytes
            .map(Zeroizing::new)
            .as_deref()
            .and_then(|b| KeyBytes::from_slice(b))
            .map(Self)
            .ok_or_else(|| {
                CoreError::Keys(
                    "the master key must be 32 bytes, as 64 hex digits or base64".into(),
                )
            })
    }

    /// The key as base64, for writing the key file once.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0 .0)
    }
}

fn seal_raw(key: &KeyBytes, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let mut out = nonce.to_vec();
    // AES-GCM encryption fails only for inputs over 64 GiB; objects are capped at 256 KB.
    if let Ok(ct) = key.cipher().encrypt(
        Nonce::from_slice(&nonce),
        Payload {
            msg: plaintext,
            aad,
        },
    ) {
        out.extend_from_slice(&ct);
    }
    out
}

/// Opens what [`seal_raw`] sealed. The plaintext is wiped when dropped: it is often a key.
fn open_raw(key: &KeyBytes, sealed: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_LEN + 16 {
        return None;
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    key.cipher()
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .ok()
        .map(Zeroizing::new)
}

fn wrap_aad(purpose: &str, scope: Scope, version: u32, customer: Option<ObjectId>) -> Vec<u8> {
    let mut aad = format!("contextd-key/{purpose}/").into_bytes();
    aad.extend_from_slice(scope.org.0.as_bytes());
    aad.extend_from_slice(scope.partition.as_str().as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    if let Some(c) = customer {
        aad.extend_from_slice(c.0.as_bytes());
    }
    aad
}

/// Which key sealed a value: the first byte of every sealed value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRef {
    /// A partition data key of this version.
    Partition(u32),
    /// The customer's own key.
    Customer,
}

/// An org-partition's unwrapped keys.
struct PartitionKeys {
    data: Vec<(u32, KeyBytes)>,
    index: KeyBytes,
    /// Which KEK wraps these keys: [`OPERATOR_KEK`] or [`ORG_KEK`].
    kek_kind: u32,
}

/// `WrappedKey::wrapped_by` of partition keys wrapped by the operator's master key.
pub const OPERATOR_KEK: u32 = 0;
/// `WrappedKey::wrapped_by` of partition keys wrapped by the organization's own KEK.
pub const ORG_KEK: u32 = 1;

impl PartitionKeys {
    fn current(&self) -> Option<&(u32, KeyBytes)> {
        self.data.iter().max_by_key(|(v, _)| *v)
    }

    fn version(&self, v: u32) -> Option<&KeyBytes> {
        self.data.iter().find(|(ver, _)| *ver == v).map(|(_, k)| k)
    }
}

/// The keys an object's values are sealed under: its customer's key if it has a customer,
/// otherwise the partition's current data key. Cheap to clone.
#[derive(Clone)]
pub struct ObjectKeys {
    scope: Scope,
    partition: Arc<PartitionKeys>,
    customer: Option<Arc<KeyBytes>>,
}

impl ObjectKeys {
    fn aad(&self, object: ObjectId, field: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(48 + field.len());
        aad.extend_from_slice(self.scope.org.0.as_bytes());
        aad.extend_from_slice(self.scope.partition.as_str().as_bytes());
        aad.extend_from_slice(object.0.as_bytes());
        aad.extend_from_slice(field.as_bytes());
        aad
    }

    /// Seals one field value of one object: `[key ref][nonce][ciphertext+tag]`, with AAD
    /// binding org, partition, object id and field id.
    pub fn seal(
        &self,
        object: ObjectId,
        field: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CoreError> {
        let aad = self.aad(object, field);
        let (header, key): (Vec<u8>, &KeyBytes) = match &self.customer {
            Some(k) => (vec![0xC0], k),
            None => {
                let (v, k) = self
                    .partition
                    .current()
                    .ok_or_else(|| CoreError::Keys("no data key".into()))?;
                let mut h = vec![0xD0];
                h.extend_from_slice(&v.to_be_bytes());
                (h, k)
            }
        };
        let mut out = header;
        out.extend(seal_raw(key, plaintext, &aad));
        Ok(out)
    }

    /// Opens what [`ObjectKeys::seal`] wrote for this object and field.
    pub fn open(&self, object: ObjectId, field: &str, sealed: &[u8]) -> Result<Vec<u8>, CoreError> {
        let aad = self.aad(object, field);
        let bad = || CoreError::Keys(format!("a value of object {object} cannot be decrypted"));
        let (key, body) = match sealed.first() {
            Some(0xC0) => (self.customer.as_deref().ok_or_else(bad)?, &sealed[1..]),
            Some(0xD0) if sealed.len() > 5 => {
                let v = u32::from_be_bytes([sealed[1], sealed[2], sealed[3], sealed[4]]);
                (self.partition.version(v).ok_or_else(bad)?, &sealed[5..])
            }
            _ => return Err(bad()),
        };
        // A field value, not a key: handed over to the caller rather than wiped.
        open_raw(key, body, &aad)
            .map(|mut plain| std::mem::take(&mut *plain))
            .ok_or_else(bad)
    }

    /// The data-key version values are sealed under, when it is the partition's key (objects
    /// without a customer); `None` for customer keys.
    pub fn partition_version(&self) -> Option<u32> {
        match self.customer {
            Some(_) => None,
            None => self.partition.current().map(|(v, _)| *v),
        }
    }

    /// Which key a sealed value names.
    pub fn key_ref(sealed: &[u8]) -> Option<KeyRef> {
        match sealed.first() {
            Some(0xC0) => Some(KeyRef::Customer),
            Some(0xD0) if sealed.len() > 5 => Some(KeyRef::Partition(u32::from_be_bytes([
                sealed[1], sealed[2], sealed[3], sealed[4],
            ]))),
            _ => None,
        }
    }
}

/// Computes blind-index tokens under one partition's index key.
#[derive(Clone)]
pub struct Indexer(Arc<PartitionKeys>);

impl Indexer {
    fn token(&self, domain: u8, name: &str, value: Option<&str>) -> Token {
        // HMAC accepts keys of any length.
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.0.index.0) else {
            return Token([0; 16]);
        };
        mac.update(&[domain]);
        mac.update(name.as_bytes());
        if let Some(v) = value {
            mac.update(&[0]);
            mac.update(v.as_bytes());
        }
        let full = mac.finalize().into_bytes();
        let mut t = [0u8; 16];
        t.copy_from_slice(&full[..16]);
        Token(t)
    }

    /// The token of a field holding a (normalized) value.
    pub fn value(&self, field: &str, normalized: &str) -> Token {
        self.token(b'v', field, Some(normalized))
    }

    /// The token every object holding a value for `field` carries.
    pub fn present(&self, field: &str) -> Token {
        self.token(b'p', field, None)
    }

    /// The token of an object declaring a field set.
    pub fn fieldset(&self, name: &str) -> Token {
        self.token(b's', name, None)
    }

    /// The token of a tag (normalized).
    pub fn tag(&self, normalized: &str) -> Token {
        self.token(b't', "", Some(normalized))
    }

    /// The token of a contributor id.
    pub fn contributor(&self, id: &str) -> Token {
        self.token(b'c', "", Some(id))
    }
}

fn keys_err(e: StoreError) -> CoreError {
    CoreError::Keys(e.to_string())
}

/// The error of a partition the key store holds no keys for. Keys are created only with their
/// organization, so this means the key store is not the one the data belongs with.
fn missing_keys(scope: Scope) -> CoreError {
    CoreError::Keys(format!(
        "the key store has no keys for organization {} (partition {}): wrong --data-dir, or a \
         key store of another deployment?",
        scope.org, scope.partition
    ))
}

/// How often a key operation rereads the partition after another process changed its keys.
const KEY_RETRIES: usize = 8;

/// What [`Keyring::check_partition`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionCheck {
    /// The keys open with the configured key-encryption keys.
    Opens,
    /// The key store holds no keys for the partition.
    Missing,
    /// The keys are wrapped by the organization's own KEK, which is not loaded.
    OrgKekNotLoaded,
    /// The keys do not open with the KEK that should wrap them: the operator's master key, or
    /// (`org_kek`) the organization's own, loaded one.
    WrongKek {
        /// The organization's own KEK was tried.
        org_kek: bool,
    },
}

/// Unwraps and caches keys. Partition keys are created only with their organization
/// ([`Keyring::create_partition_keys`]); a partition without keys is an error, never a
/// reason to make new ones. Key operations on one partition (creation, rotation, adopting an
/// org's own KEK) run one at a time in this process, and the key store refuses an operation
/// that raced one of another process, which is then retried on the keys as they now are.
pub struct Keyring {
    kek: MasterKey,
    org_keks: std::collections::HashMap<crate::ids::OrgId, MasterKey>,
    store: Arc<dyn KeyStore>,
    partitions: quick_cache::sync::Cache<Scope, Arc<PartitionKeys>>,
    customers: quick_cache::sync::Cache<(Scope, ObjectId), Arc<KeyBytes>>,
    locks: std::sync::Mutex<std::collections::HashMap<Scope, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring")
    }
}

impl Keyring {
    /// A keyring over a key store; `cached_customers` bounds the customer-key cache.
    pub fn new(kek: MasterKey, store: Arc<dyn KeyStore>, cached_customers: usize) -> Self {
        Self {
            kek,
            org_keks: std::collections::HashMap::new(),
            store,
            partitions: quick_cache::sync::Cache::new(1024),
            customers: quick_cache::sync::Cache::new(cached_customers.max(16)),
            locks: std::sync::Mutex::default(),
        }
    }

    /// Loads organizations' own key-encryption keys (bring your own key).
    pub fn with_org_keks(
        mut self,
        keks: impl IntoIterator<Item = (crate::ids::OrgId, MasterKey)>,
    ) -> Self {
        self.org_keks.extend(keks);
        self
    }

    /// The key store, for status checks.
    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.store
    }

    fn kek_for(&self, scope: Scope, kind: u32) -> Result<&KeyBytes, CoreError> {
        match kind {
            OPERATOR_KEK => Ok(&self.kek.0),
            ORG_KEK => self.org_keks.get(&scope.org).map(|k| &k.0).ok_or_else(|| {
                CoreError::Keys(format!(
                    "organization {} uses its own key-encryption key, which is not loaded",
                    scope.org
                ))
            }),
            other => Err(CoreError::Keys(format!(
                "unknown key-encryption key kind {other}"
            ))),
        }
    }

    /// Waits for this process's turn at a key operation on `scope`.
    async fn lock(&self, scope: Scope) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(scope).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Forgets cached partition keys so that the next use reloads them (after a rotation made
    /// by another process).
    pub fn refresh(&self) {
        self.partitions.clear();
    }

    /// The current data-key version of a partition.
    pub async fn current_version(&self, scope: Scope) -> Result<u32, CoreError> {
        let p = self.partition(scope).await?;
        p.current()
            .map(|(v, _)| *v)
            .ok_or_else(|| CoreError::Keys("no data key".into()))
    }

    /// Adds a new data-key version, wrapped like the partition's other keys; new writes use it
    /// from now on. Returns the version.
    pub async fn rotate(&self, scope: Scope) -> Result<u32, CoreError> {
        let _turn = self.lock(scope).await;
        for _ in 0..KEY_RETRIES {
            let (p, _) = self.load(scope).await?;
            let next = p.current().map_or(1, |(v, _)| v + 1);
            let kek = self.kek_for(scope, p.kek_kind)?;
            let wrapped = WrappedKey {
                version: next,
                wrapped_by: p.kek_kind,
                bytes: seal_raw(
                    kek,
                    &KeyBytes::generate().0,
                    &wrap_aad("data", scope, next, None),
                ),
            };
            let result = self.store.insert_data_key(scope, &wrapped).await;
            self.partitions.remove(&scope);
            match result {
                Ok(()) => return Ok(next),
                // Another process rotated, or re-wrapped the partition under another KEK,
                // since the keys were read: read them again.
                Err(StoreError::AlreadyExists | StoreError::KeysChanged) => {}
                Err(e) => return Err(keys_err(e)),
            }
        }
        Err(CoreError::Contended(
            "the partition's keys keep changing under another process; retry".into(),
        ))
    }

    /// Re-wraps every partition key of an org under the org's own KEK (bring your own key):
    /// afterwards the operator's master key alone no longer opens that org's data.
    pub async fn adopt_org_kek(
        &self,
        org: crate::ids::OrgId,
        org_kek: &MasterKey,
    ) -> Result<(), CoreError> {
        for partition in crate::ids::Partition::ALL {
            let scope = Scope { org, partition };
            let _turn = self.lock(scope).await;
            self.adopt_partition_kek(scope, org_kek).await?;
        }
        Ok(())
    }

    async fn adopt_partition_kek(
        &self,
        scope: Scope,
        org_kek: &MasterKey,
    ) -> Result<(), CoreError> {
        for _ in 0..KEY_RETRIES {
            let (p, stored) = self.load(scope).await?;
            let index = WrappedKey {
                version: 1,
                wrapped_by: ORG_KEK,
                bytes: seal_raw(&org_kek.0, &p.index.0, &wrap_aad("index", scope, 1, None)),
            };
            let data: Vec<WrappedKey> = p
                .data
                .iter()
                .map(|(v, k)| WrappedKey {
                    version: *v,
                    wrapped_by: ORG_KEK,
                    bytes: seal_raw(&org_kek.0, &k.0, &wrap_aad("data", scope, *v, None)),
                })
                .collect();
            let result = self
                .store
                .replace_partition_keys(scope, &stored, &data, &index)
                .await;
            self.partitions.remove(&scope);
            match result {
                Ok(()) => return Ok(()),
                // A rotation added a version since the keys were read: re-wrap it too.
                Err(StoreError::KeysChanged) => {}
                Err(e) => return Err(keys_err(e)),
            }
        }
        Err(CoreError::Contended(
            "the partition's keys keep changing under another process; retry".into(),
        ))
    }

    /// Re-wraps up to `limit` customer keys still wrapped by an older data-key version;
    /// returns how many were done.
    pub async fn rewrap_customer_keys(
        &self,
        scope: Scope,
        limit: usize,
    ) -> Result<usize, CoreError> {
        let p = self.partition(scope).await?;
        let Some((current, ckey)) = p.current() else {
            return Ok(0);
        };
        let old = self
            .store
            .customer_keys_wrapped_before(scope, *current, limit)
            .await
            .map_err(keys_err)?;
        let n = old.len();
        for (customer, wrapped) in old {
            let pkey = p.version(wrapped.wrapped_by).ok_or_else(|| {
                CoreError::Keys("customer key wrapped by an unknown data key version".into())
            })?;
            let key = open_raw(
                pkey,
                &wrapped.bytes,
                &wrap_aad("customer", scope, wrapped.wrapped_by, Some(customer)),
            )
            .ok_or_else(|| {
                CoreError::Keys(format!("cannot unwrap the key of customer {customer}"))
            })?;
            let rewrapped = WrappedKey {
                version: 0,
                wrapped_by: *current,
                bytes: seal_raw(
                    ckey,
                    &key,
                    &wrap_aad("customer", scope, *current, Some(customer)),
                ),
            };
            match self
                .store
                .replace_customer_key(scope, customer, &rewrapped)
                .await
            {
                Ok(()) | Err(StoreError::NotFound) => {}
                Err(e) => return Err(keys_err(e)),
            }
        }
        Ok(n)
    }

    /// A partition's keys, from the cache or the key store; missing keys are an error.
    async fn partition(&self, scope: Scope) -> Result<Arc<PartitionKeys>, CoreError> {
        if let Some(k) = self.partitions.get(&scope) {
            return Ok(k);
        }
        Ok(self.load(scope).await?.0)
    }

    /// Reads and unwraps a partition's keys from the key store (past the cache, which it
    /// refills); returns them with the data keys as stored.
    async fn load(&self, scope: Scope) -> Result<(Arc<PartitionKeys>, Vec<WrappedKey>), CoreError> {
        let (index, data) = self.read_wrapped(scope).await?;
        let Some(index) = index.filter(|_| !data.is_empty()) else {
            return Err(missing_keys(scope));
        };
        let keys = Arc::new(self.unwrap_partition(scope, &index, &data)?);
        self.partitions.insert(scope, keys.clone());
        Ok((keys, data))
    }

    async fn read_wrapped(
        &self,
        scope: Scope,
    ) -> Result<(Option<WrappedKey>, Vec<WrappedKey>), CoreError> {
        let index = self.store.index_key(scope).await.map_err(keys_err)?;
        let data = self.store.data_keys(scope).await.map_err(keys_err)?;
        Ok((index, data))
    }

    fn unwrap_partition(
        &self,
        scope: Scope,
        index: &WrappedKey,
        data: &[WrappedKey],
    ) -> Result<PartitionKeys, CoreError> {
        let unwrap = |purpose: &str, w: &WrappedKey| {
            let kek = self.kek_for(scope, w.wrapped_by)?;
            open_raw(kek, &w.bytes, &wrap_aad(purpose, scope, w.version, None))
                .and_then(|b| KeyBytes::from_slice(&b))
                .ok_or_else(|| {
                    CoreError::Keys(format!(
                        "cannot unwrap the {purpose} key of {}/{}: wrong key-encryption key?",
                        scope.org, scope.partition
                    ))
                })
        };
        Ok(PartitionKeys {
            index: unwrap("index", index)?,
            data: data
                .iter()
                .map(|w| Ok((w.version, unwrap("data", w)?)))
                .collect::<Result<_, CoreError>>()?,
            kek_kind: index.wrapped_by,
        })
    }

    /// Creates a partition's blind-index key and first data key, wrapped by the operator's
    /// master key. Only a new organization gets keys this way; every other use of a
    /// partition without keys fails.
    pub async fn create_partition_keys(&self, scope: Scope) -> Result<(), CoreError> {
        let _turn = self.lock(scope).await;
        let wrap = |purpose: &str| WrappedKey {
            version: 1,
            wrapped_by: OPERATOR_KEK,
            bytes: seal_raw(
                &self.kek.0,
                &KeyBytes::generate().0,
                &wrap_aad(purpose, scope, 1, None),
            ),
        };
        // The index key first: its row is the partition's lock in the key store.
        for result in [
            self.store.insert_index_key(scope, &wrap("index")).await,
            self.store.insert_data_key(scope, &wrap("data")).await,
        ] {
            match result {
                Ok(()) => {}
                Err(StoreError::AlreadyExists | StoreError::KeysChanged) => {
                    return Err(CoreError::Keys(format!(
                        "the key store already holds keys for organization {} (partition {})",
                        scope.org, scope.partition
                    )))
                }
                Err(e) => return Err(keys_err(e)),
            }
        }
        self.load(scope).await.map(|_| ())
    }

    /// Whether a partition's keys open with the configured key-encryption keys (the start-up
    /// check); reads the key store, not the cache.
    pub async fn check_partition(&self, scope: Scope) -> Result<PartitionCheck, CoreError> {
        let (index, data) = self.read_wrapped(scope).await?;
        let Some(index) = index.filter(|_| !data.is_empty()) else {
            return Ok(PartitionCheck::Missing);
        };
        let org_kek = std::iter::once(&index)
            .chain(&data)
            .any(|k| k.wrapped_by == ORG_KEK);
        if org_kek && !self.org_keks.contains_key(&scope.org) {
            return Ok(PartitionCheck::OrgKekNotLoaded);
        }
        Ok(match self.unwrap_partition(scope, &index, &data) {
            Ok(_) => PartitionCheck::Opens,
            Err(_) => PartitionCheck::WrongKek { org_kek },
        })
    }

    /// The blind indexer of a partition.
    pub async fn indexer(&self, scope: Scope) -> Result<Indexer, CoreError> {
        Ok(Indexer(self.partition(scope).await?))
    }

    /// Creates a new customer's own key, wrapped by the partition's current data key.
    pub async fn create_customer_key(
        &self,
        scope: Scope,
        customer: ObjectId,
    ) -> Result<ObjectKeys, CoreError> {
        let partition = self.partition(scope).await?;
        let (version, pkey) = partition
            .current()
            .ok_or_else(|| CoreError::Keys("no data key".into()))?;
        let key = KeyBytes::generate();
        let wrapped = WrappedKey {
            version: 0,
            wrapped_by: *version,
            bytes: seal_raw(
                pkey,
                &key.0,
                &wrap_aad("customer", scope, *version, Some(customer)),
            ),
        };
        self.store
            .insert_customer_key(scope, customer, &wrapped)
            .await
            .map_err(keys_err)?;
        let key = Arc::new(key);
        self.customers.insert((scope, customer), key.clone());
        Ok(ObjectKeys {
            scope,
            partition,
            customer: Some(key),
        })
    }

    /// The keys of several new customers, stored in one key-store transaction. A customer
    /// that has a key already (a retried import) keeps it.
    pub async fn create_customer_keys(
        &self,
        scope: Scope,
        customers: &[ObjectId],
    ) -> Result<Vec<ObjectKeys>, CoreError> {
        let partition = self.partition(scope).await?;
        let (version, pkey) = partition
            .current()
            .ok_or_else(|| CoreError::Keys("no data key".into()))?;
        let fresh: Vec<KeyBytes> = customers.iter().map(|_| KeyBytes::generate()).collect();
        let wrapped: Vec<(ObjectId, WrappedKey)> = customers
            .iter()
            .zip(&fresh)
            .map(|(c, key)| {
                let bytes = seal_raw(
                    pkey,
                    &key.0,
                    &wrap_aad("customer", scope, *version, Some(*c)),
                );
                let wrapped = WrappedKey {
                    version: 0,
                    wrapped_by: *version,
                    bytes,
                };
                (*c, wrapped)
            })
            .collect();
        let stored = self
            .store
            .insert_customer_keys(scope, &wrapped)
            .await
            .map_err(keys_err)?;
        let mut out = Vec::with_capacity(customers.len());
        for ((customer, key), new) in customers.iter().zip(fresh).zip(stored) {
            let key = if new {
                let key = Arc::new(key);
                self.customers.insert((scope, *customer), key.clone());
                key
            } else {
                self.customer_key(scope, *customer, &partition).await?
            };
            out.push(ObjectKeys {
                scope,
                partition: partition.clone(),
                customer: Some(key),
            });
        }
        Ok(out)
    }

    /// The keys for an object owned by `customer` (or by nobody).
    pub async fn object_keys(
        &self,
        scope: Scope,
        customer: Option<ObjectId>,
    ) -> Result<ObjectKeys, CoreError> {
        let partition = self.partition(scope).await?;
        let customer = match customer {
            None => None,
            Some(c) => Some(self.customer_key(scope, c, &partition).await?),
        };
        Ok(ObjectKeys {
            scope,
            partition,
            customer,
        })
    }

    async fn customer_key(
        &self,
        scope: Scope,
        customer: ObjectId,
        partition: &PartitionKeys,
    ) -> Result<Arc<KeyBytes>, CoreError> {
        if let Some(k) = self.customers.get(&(scope, customer)) {
            return Ok(k);
        }
        let wrapped = self
            .store
            .customer_key(scope, customer)
            .await
            .map_err(keys_err)?
            .ok_or_else(|| {
                CoreError::Keys(format!(
                    "the key of customer {customer} does not exist (erased?)"
                ))
            })?;
        let pkey = partition.version(wrapped.wrapped_by).ok_or_else(|| {
            CoreError::Keys("customer key wrapped by an unknown data key version".into())
        })?;
        let key = open_raw(
            pkey,
            &wrapped.bytes,
            &wrap_aad("customer", scope, wrapped.wrapped_by, Some(customer)),
        )
        .and_then(|b| KeyBytes::from_slice(&b))
        .ok_or_else(|| CoreError::Keys(format!("cannot unwrap the key of customer {customer}")))?;
        let key = Arc::new(key);
        self.customers.insert((scope, customer), key.clone());
        Ok(key)
    }

    /// Destroys a customer's key: everything sealed under it becomes unreadable.
    pub async fn destroy_customer_key(
        &self,
        scope: Scope,
        customer: ObjectId,
    ) -> Result<(), CoreError> {
        self.customers.remove(&(scope, customer));
        match self.store.delete_customer_key(scope, customer).await {
            Ok(()) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(keys_err(e)),
        }
    }
}

/// Normalizes a value for matching: trimmed and case-folded text; digits only for phone
/// fields; `_` for `-` in the locale field (`it-IT` = `it_IT`); one canonical text per number
/// ([`number_text`]); `true`/`false`.
pub fn normalize(field: &str, value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => {
            if is_phone_field(field) {
                Some(s.chars().filter(char::is_ascii_digit).collect())
            } else if is_locale_field(field) {
                Some(s.trim().to_lowercase().replace('-', "_"))
            } else {
                Some(s.trim().to_lowercase())
            }
        }
        serde_json::Value::Number(n) => Some(number_text(n)),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whether matching on a field compares digits only (`+1 (555) 010-0001` = `15550100001`).
pub fn is_phone_field(field: &str) -> bool {
    field.to_ascii_lowercase().contains("phone")
}

/// Whether a field holds a locale, matched with `-` and `_` equal (`it-IT` = `it_IT`).
pub fn is_locale_field(field: &str) -> bool {
    field == crate::dictionary::LOCALE_FIELD
}

/// The one text a number is indexed under, whichever way it was written: an integral value
/// (`2`, `2.0`, `2e0`, `-0.0`) as its integer digits (`2`, `0`) when it fits an i64, any
/// other value as the shortest decimal that reads back as the same double (`2.5`, `1e300`).
pub fn number_text(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < crate::dictionary::I64_BOUND => {
            (f as i64).to_string()
        }
        _ => n.to_string(),
    }
}

/// Texts under which a `double` value was indexed before numbers had one canonical text
/// (their JSON spelling): an integral double sent as `2.0` was indexed as `2.0`, `-0.0` as
/// `-0.0`. Search looks for these too, so nothing stored earlier becomes unfindable.
pub fn legacy_double_texts(n: &serde_json::Number) -> Vec<String> {
    let Some(f) = n.as_f64() else {
        return Vec::new();
    };
    let mut texts = Vec::new();
    if f == 0.0 {
        texts.extend(["0.0".to_owned(), "-0.0".to_owned()]);
    } else if f.fract() == 0.0 && f.abs() < crate::dictionary::I64_BOUND {
        // serde_json writes a double as the shortest round-trip text: "2.0" for 2.
        texts.extend(serde_json::Number::from_f64(f).map(|n| n.to_string()));
    }
    let canonical = number_text(n);
    texts.retain(|t| *t != canonical);
    texts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{OrgId, Partition};

    fn keys() -> (PartitionKeys, Scope) {
        let scope = Scope {
            org: OrgId::new(),
            partition: Partition::Lab,
        };
        (
            PartitionKeys {
                data: vec![(1, KeyBytes::generate())],
                index: KeyBytes::generate(),
                kek_kind: OPERATOR_KEK,
            },
            scope,
        )
    }

    #[test]
    fn sealed_values_are_bound_to_object_and_field() {
        let (p, scope) = keys();
        let k = ObjectKeys {
            scope,
            partition: Arc::new(p),
            customer: Some(Arc::new(KeyBytes::generate())),
        };
        let id = ObjectId::new();
        let sealed = k.seal(id, "Context_ZIP", b"\"94105\"").unwrap_or_default();
        assert!(!sealed.windows(5).any(|w| w == b"94105"));
        assert_eq!(
            k.open(id, "Context_ZIP", &sealed).ok(),
            Some(b"\"94105\"".to_vec())
        );
        assert!(k.open(id, "Context_City", &sealed).is_err());
        assert!(k.open(ObjectId::new(), "Context_ZIP", &sealed).is_err());
        assert_eq!(ObjectKeys::key_ref(&sealed), Some(KeyRef::Customer));
    }

    #[test]
    fn partition_keyed_values_name_their_version() {
        let (p, scope) = keys();
        let k = ObjectKeys {
            scope,
            partition: Arc::new(p),
            customer: None,
        };
        let id = ObjectId::new();
        let sealed = k.seal(id, "f", b"x").unwrap_or_default();
        assert_eq!(ObjectKeys::key_ref(&sealed), Some(KeyRef::Partition(1)));
        assert_eq!(k.open(id, "f", &sealed).ok(), Some(b"x".to_vec()));
    }

    #[test]
    fn blind_index_normalization() {
        let (p, _) = keys();
        let ix = Indexer(Arc::new(p));
        let a = normalize(
            "Context_Mobile_Phone",
            &serde_json::json!("+1 (555) 010-0001"),
        );
        let b = normalize("Context_Mobile_Phone", &serde_json::json!("15550100001"));
        assert_eq!(a, b);
        assert_eq!(
            normalize("Context_City", &serde_json::json!("  Paris ")),
            Some("paris".into())
        );
        assert_eq!(ix.value("f", "a"), ix.value("f", "a"));
        assert_ne!(ix.value("f", "a"), ix.value("g", "a"));
        assert_ne!(ix.value("f", "a"), ix.present("f"));
    }

    #[test]
    fn master_key_parsing() {
        assert!(MasterKey::parse(&"ab".repeat(32)).is_ok());
        let k = MasterKey::generate();
        assert!(MasterKey::parse(&k.to_base64()).is_ok());
        assert!(MasterKey::parse("short").is_err());
        assert_eq!(format!("{k:?}"), "MasterKey([redacted])");
    }
}
