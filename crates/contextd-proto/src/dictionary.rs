//! The dictionary on the wire: fields, field sets, their enumerations, and the canonical
//! form of locale tags (which both `translations` keys and locale values are read in).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The type of a field's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// UTF-8 text.
    String,
    /// 32-bit signed integer.
    Integer,
    /// 64-bit signed integer.
    Long,
    /// IEEE double.
    Double,
    /// true/false.
    Boolean,
    /// RFC 3339 timestamp.
    Date,
}

/// How a field's values are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Classification {
    /// Stored in the clear.
    Unencrypted,
    /// Stored as AES-256-GCM ciphertext.
    Encrypted,
    /// Personal data: encrypted under the customer's own key, withheld from partners.
    Pii,
}

impl Classification {
    /// Whether values of this class are sealed at rest.
    pub fn is_sealed(self) -> bool {
        !matches!(self, Classification::Unencrypted)
    }
}

/// One allowed value of an enumerated string field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnumValue {
    /// The value.
    pub value: String,
    /// Inactive values are kept for old data but refused in new writes.
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

/// A dictionary field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Field {
    /// `[A-Za-z][A-Za-z0-9_.]{0,99}`.
    pub id: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Value type.
    pub data_type: DataType,
    /// Storage class.
    pub classification: Classification,
    /// Whether objects can be searched by this field.
    #[serde(default)]
    pub searchable: bool,
    /// Maximum length in characters (strings only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// Allowed values (strings only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enum_values: Option<Vec<EnumValue>>,
    /// Locale → display label. Keys may be sent as `en-US` or `en_US` (any case); they are
    /// kept in the form [`canonical_locale`] gives (`en_US`).
    #[serde(default, deserialize_with = "locale_keys")]
    pub translations: BTreeMap<String, String>,
    /// Built-in fields are read-only.
    #[serde(default)]
    pub base: bool,
    /// When it was created or last changed (set by the server; none for built-in fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<DateTime<Utc>>,
}

impl Field {
    /// A custom field with nothing but its id, type and class: not searchable, no limits,
    /// no translations.
    pub fn new(id: impl Into<String>, data_type: DataType, classification: Classification) -> Self {
        Self {
            id: id.into(),
            description: String::new(),
            data_type,
            classification,
            searchable: false,
            max_length: None,
            enum_values: None,
            translations: BTreeMap::new(),
            base: false,
            last_updated: None,
        }
    }
}

/// A named group of fields that objects declare in `fieldsets`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldSet {
    /// `[A-Za-z][A-Za-z0-9_.]{0,99}`.
    pub id: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Field ids.
    pub fields: Vec<String>,
    /// Fields kept for old data but refused in new writes.
    #[serde(default)]
    pub inactive_fields: Vec<String>,
    /// Built-in sets are read-only.
    #[serde(default)]
    pub base: bool,
    /// When it was created or last changed (set by the server; none for built-in sets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<DateTime<Utc>>,
}

/// Longest locale tag accepted.
const MAX_LOCALE_CHARS: usize = 64;

/// A BCP 47 locale tag in its canonical form, or `None` if the text isn't one: subtags may be
/// separated by `-` or `_` and written in any case; the result joins them with `_` and cases
/// them as RFC 5646 recommends (language lower, script title, region upper): `en-us` →
/// `en_US`, `zh-hant-tw` → `zh_Hant_TW`.
pub fn canonical_locale(tag: &str) -> Option<String> {
    if tag.is_empty() || tag.len() > MAX_LOCALE_CHARS {
        return None;
    }
    let mut out = String::with_capacity(tag.len());
    let mut private = false;
    for (i, sub) in tag.split(['-', '_']).enumerate() {
        if sub.is_empty() || sub.len() > 8 || !sub.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let lower = sub.to_ascii_lowercase();
        let cased = if i == 0 {
            if !(2..=3).contains(&sub.len()) || !sub.bytes().all(|b| b.is_ascii_alphabetic()) {
                return None;
            }
            lower
        } else if private {
            lower
        } else if sub.len() == 1 {
            // A singleton (`u`, `x`) starts extensions, which are written in lower case.
            private = true;
            lower
        } else if sub.len() == 2 && sub.bytes().all(|b| b.is_ascii_alphabetic()) {
            sub.to_ascii_uppercase()
        } else if sub.len() == 4 && sub.bytes().all(|b| b.is_ascii_alphabetic()) {
            let mut t = lower;
            t[..1].make_ascii_uppercase();
            t
        } else {
            lower
        };
        if i > 0 {
            out.push('_');
        }
        out.push_str(&cased);
    }
    Some(out)
}

/// Reads `translations`, putting each key that is a locale in its canonical form. Two
/// spellings of one locale (`en-US` and `en_US`) are both kept as sent, for
/// the core's field validation to refuse; what the store hands back is never refused here.
fn locale_keys<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Entries;
    impl<'de> serde::de::Visitor<'de> for Entries {
        type Value = Vec<(String, String)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of locale → label")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut entries = Vec::new();
            while let Some(entry) = map.next_entry::<String, String>()? {
                entries.push(entry);
            }
            Ok(entries)
        }
    }
    let entries = deserializer.deserialize_map(Entries)?;
    let mut by_locale: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (key, label) in entries {
        let locale = canonical_locale(&key).unwrap_or_else(|| key.clone());
        by_locale.entry(locale).or_default().push((key, label));
    }
    let mut out = BTreeMap::new();
    for (locale, spellings) in by_locale {
        if spellings.iter().all(|(k, _)| *k == spellings[0].0) {
            // One spelling (a key repeated in JSON: the last wins, as for any object).
            out.extend(
                spellings
                    .into_iter()
                    .last()
                    .map(|(_, label)| (locale, label)),
            );
        } else {
            out.extend(spellings);
        }
    }
    Ok(out)
}
