//! Identifiers and scopes, validated once at the boundary and trusted inside.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::CoreError;

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
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        Uuid::try_parse(s.trim())
            .map(Self)
            .map_err(|_| CoreError::bad_request(format!("'{}' is not a valid id", truncate(s, 64))))
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

/// One of an organization's two isolated data partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lab" => Ok(Partition::Lab),
            "production" => Ok(Partition::Production),
            _ => Err(CoreError::bad_request(format!(
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

/// The org and partition every request and every stored row is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    /// The tenant.
    pub org: OrgId,
    /// The partition inside it.
    pub partition: Partition,
}

/// A dictionary field id: `[A-Za-z][A-Za-z0-9_.]{0,99}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FieldId(String);

impl FieldId {
    /// Validates a field (or field set) id.
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        if is_valid_dictionary_id(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(CoreError::bad_request(format!(
                "'{}' is not a valid id: it must match [A-Za-z][A-Za-z0-9_.]{{0,99}}",
                truncate(s, 120)
            )))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `s` matches `[A-Za-z][A-Za-z0-9_.]{0,99}`.
pub fn is_valid_dictionary_id(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && s.len() <= 100
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Shortens client text quoted back in error messages.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_ids() {
        assert!(is_valid_dictionary_id("Context_First_Name"));
        assert!(is_valid_dictionary_id("a.b_c9"));
        assert!(!is_valid_dictionary_id("9abc"));
        assert!(!is_valid_dictionary_id(""));
        assert!(!is_valid_dictionary_id("a-b"));
        assert!(!is_valid_dictionary_id(&"a".repeat(101)));
        assert!(is_valid_dictionary_id(&"a".repeat(100)));
    }

    #[test]
    fn object_ids() {
        assert!(ObjectId::parse("not-a-uuid").is_err());
        let id = ObjectId::new();
        assert_eq!(ObjectId::parse(&id.to_string()).ok(), Some(id));
    }
}
