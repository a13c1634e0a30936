//! The crate's one integration-test binary: the shared conformance suite against fresh SQLite
//! files, then what is particular to SQLite (files, migrations, reopening).

mod audit;
mod conformance;
mod files;

use contextd_store_sqlite::{SqliteKeyStore, SqliteStore};
use tempfile::TempDir;

/// A data store and a key store in a fresh temporary directory, laid out as the server does.
pub struct TestDb {
    pub dir: TempDir,
    pub store: SqliteStore,
    pub keys: SqliteKeyStore,
}

impl TestDb {
    pub fn fresh() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("contextd.db")).expect("open data store");
        let keys = SqliteKeyStore::open(&dir.path().join("keys.db")).expect("open key store");
        Self { dir, store, keys }
    }
}
