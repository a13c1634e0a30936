//! Identifiers and scopes, validated once at the boundary and trusted inside.

use serde::{Deserialize, Serialize};

pub use contextd_proto::ids::{ObjectId, OrgId, ParseError, Partition};

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
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if is_valid_dictionary_id(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError(format!(
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

pub(crate) use contextd_proto::truncate;

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
