//! Embedded SQLite backend of contextd: [`SqliteStore`] implements the core's `Store` traits (the
//! data database, `contextd.db`) and [`SqliteKeyStore`] its `KeyStore` (wrapped keys,
//! `keys.db`, a separate file so that a copy of the data alone decrypts nothing).
//!
//! Writes go through one writer thread per file that group-commits concurrent callers: a
//! write is acknowledged only once its batch is durable (`synchronous=FULL`). Reads run on a
//! pool of query-only connections.
//!
//! This crate must never see plaintext PII or ENCRYPTED values — it stores the sealed bytes and
//! blind-index tokens the core hands it — and it holds SQL for SQLite only; business rules
//! live in `contextd-core`.

mod access;
mod audit;
pub mod backup;
mod connectors;
mod credentials;
mod db;
mod dictionary;
mod error;
mod events;
mod jobs;
mod keys;
mod objects;
mod retention;
mod rows;
mod search;
mod settings;
mod store;
mod webhooks;
mod writer;

pub use keys::SqliteKeyStore;
pub use store::SqliteStore;
