//! The wire of contextd's native `/v1` API, shared by the server, the SDK
//! (`contextd-client`), the command-line client, the bench tool and the tests, so that they
//! cannot drift apart.
//!
//! Only types, constants and their serde/OpenAPI shape live here: no I/O, no HTTP client or
//! server, no business rules beyond what parsing a value needs. Stability: the JSON shapes
//! ([`object`], [`dictionary`], [`access`], [`system`]) and the stable error codes
//! ([`error::ErrorCode`]) are the public contract and only grow; the Rust types may gain
//! fields between minor releases.

#![deny(missing_docs)]

pub mod access;
pub mod compat;
pub mod connection;
pub mod connectors;
pub mod dictionary;
pub mod error;
pub mod events;
pub mod ids;
pub mod object;
pub mod paths;
pub mod retention;
pub mod system;
pub mod time;
pub mod transfer;

pub use error::{ErrorCode, FieldError, Problem};
pub use ids::{ObjectId, OrgId, ParseError, Partition};
pub use object::{ContextObject, Kind};

/// `s` cut to `max` characters, with an ellipsis when cut: how error messages quote input.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}
