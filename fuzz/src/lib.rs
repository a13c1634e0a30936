//! What the fuzz targets share: the base dictionary and a blind indexer over an in-memory
//! key store (the targets are pure: no files, no network).

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use contextd_core::crypto::{Indexer, Keyring, MasterKey};
use contextd_core::dictionary::Dictionary;
use contextd_core::ids::{OrgId, Partition, Scope};
use contextd_core::memory_keys::MemoryKeyStore;
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
        let keyring = Keyring::new(MasterKey::generate(), Arc::new(MemoryKeyStore::default()), 16);
        let scope = Scope {
            org: OrgId::new(),
            partition: Partition::Lab,
        };
        block_on(keyring.create_partition_keys(scope)).expect("partition keys in memory");
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
