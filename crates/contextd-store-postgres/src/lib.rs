//! PostgreSQL backend of contextd: [`PgStore`] implements the core's `Store` traits (the data, in
//! schema `contextd`) and [`PgKeyStore`] its `KeyStore` (wrapped keys, in schema
//! `contextd_keys` or a database of their own, so that a dump of the data alone decrypts
//! nothing). Several contextd instances may share one database: migrations take a table lock,
//! and every write is one short transaction on a pooled connection, acknowledged only once
//! committed, whose WAL flush PostgreSQL shares with the writers committing beside it.
//!
//! This crate must never see plaintext PII or ENCRYPTED values — it stores the sealed bytes and
//! blind-index tokens the core hands it — and it holds SQL for PostgreSQL only; business rules
//! live in `contextd-core`.

mod access;
mod audit;
mod connectors;
mod credentials;
mod db;
mod dictionary;
mod events;
mod jobs;
mod keys;
mod known_months;
mod objects;
mod outbox;
mod retention;
mod rows;
mod search;
mod settings;
mod store;
mod tls;
mod webhooks;

pub use keys::{PgKeyStore, KEYS_SCHEMA};
pub use store::{PgStore, DATA_SCHEMA};
