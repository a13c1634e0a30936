//! Domain core of contextd: context objects, the dictionary and validation, search planning,
//! encryption (envelope keys, sealed values, blind indexes), and the [`store::Store`] and
//! [`store::KeyStore`] traits the storage backends implement.
//!
//! This crate knows nothing of HTTP or SQL. Everything a handler does is one call on
//! [`service::Context`]; every rule (links, states, versions, classification) lives here so
//! that all backends and all APIs share it. Plaintext of ENCRYPTED and PII values never
//! leaves this crate towards a store.

pub mod audit;
pub mod audit_admin;
pub mod auth;
pub mod crypto;
pub mod dictionary;
pub mod error;
pub mod ids;
pub mod memory_keys;
pub mod object;
pub mod search;
pub mod service;
pub mod store;
pub mod time;

pub use service::access;

pub use error::{CoreError, FieldError};
pub use ids::{ObjectId, OrgId, Partition, Scope};
pub use object::{ContextObject, Kind};
