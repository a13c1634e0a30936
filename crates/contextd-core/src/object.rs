//! Context objects: customers, requests, activities and details. The types are the wire's
//! ([`contextd_proto::object`]); the limits are the core's.

pub use contextd_proto::object::{
    ContextObject, Contributor, ContributorType, DetailType, Kind, MediaType, State,
};

/// Largest serialized object accepted (README, "API overview").
pub const MAX_OBJECT_BYTES: usize = 256 * 1024;
