//! Identifiers on the wire, and the error of parsing any wire value from text.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::truncate;

/// A value sent as text was not one of the accepted ones; the message says what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

/// An organization (tenant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrgId(pub Uuid);

impl OrgId {
    /// A new, random organization id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for OrgId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The id of a context object: a UUIDv7 assigned by the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ObjectId(pub Uuid);

impl ObjectId {
    /// A new time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Parses a client-supplied id; anything but a hyphenated or simple UUID is refused.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        Uuid::try_parse(s.trim())
            .map(Self)
            .map_err(|_| ParseError(format!("'{}' is not a valid id", truncate(s, 64))))
    }
}

impl Default for ObjectId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for ObjectId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// One of an organization's two isolated data partitions.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Partition {
    /// Test data; deletes and flushes allowed.
    Lab,
    /// Live data; deletes refused (data retention) except the privacy erase.
    Production,
}

impl Partition {
    /// Both partitions, lab first.
    pub const ALL: [Partition; 2] = [Partition::Lab, Partition::Production];

    /// The lowercase name used on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Partition::Lab => "lab",
            Partition::Production => "production",
        }
    }
}

impl FromStr for Partition {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lab" => Ok(Partition::Lab),
            "production" => Ok(Partition::Production),
            _ => Err(ParseError(format!(
                "unknown partition '{}'",
                truncate(s, 32)
            ))),
        }
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
