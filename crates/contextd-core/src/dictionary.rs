//! The dictionary: fields, field sets, the built-in base sets, and validation of `data`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::error::{CoreError, FieldError};
use crate::ids::{is_valid_dictionary_id, truncate};

pub use contextd_proto::dictionary::{
    canonical_locale, Classification, DataType, EnumValue, Field, FieldSet,
};

/// 2^63: integral numbers below it in magnitude are written as plain integers.
pub(crate) const I64_BOUND: f64 = 9_223_372_036_854_775_808.0;

/// The base field holding a customer's locale.
pub const LOCALE_FIELD: &str = "Context_Preferred_Language";

/// Locales accepted by `Context_Preferred_Language`.
pub const LOCALES: &[&str] = &[
    "ar_SA", "cs_CZ", "da_DK", "de_DE", "el_GR", "en_AU", "en_CA", "en_GB", "en_US", "es_ES",
    "es_MX", "fi_FI", "fr_CA", "fr_FR", "he_IL", "hi_IN", "hu_HU", "it_IT", "ja_JP", "ko_KR",
    "nb_NO", "nl_NL", "pl_PL", "pt_BR", "pt_PT", "ro_RO", "ru_RU", "sk_SK", "sv_SE", "th_TH",
    "tr_TR", "uk_UA", "vi_VN", "zh_CN", "zh_TW",
];

fn base_field(id: &str, data_type: DataType, classification: Classification, label: &str) -> Field {
    Field {
        id: id.to_owned(),
        description: label.to_owned(),
        data_type,
        classification,
        searchable: true,
        max_length: None,
        enum_values: None,
        translations: BTreeMap::from([("en_US".to_owned(), label.to_owned())]),
        base: true,
        last_updated: None,
    }
}

/// The built-in fields and field sets, named as in the original product.
pub fn base_dictionary() -> (Vec<Field>, Vec<FieldSet>) {
    use Classification::{Encrypted, Pii, Unencrypted};
    use DataType::{Boolean, Integer, String as Text};
    let sets: [(&str, &str, Vec<Field>); 5] = [
        (
            "cisco.base.customer",
            "Customer identity and contact data",
            vec![
                base_field("Context_First_Name", Text, Pii, "First name"),
                base_field("Context_Last_Name", Text, Pii, "Last name"),
                base_field("Context_Work_Email", Text, Pii, "Work email"),
                base_field("Context_Home_Email", Text, Pii, "Home email"),
                base_field("Context_Work_Phone", Text, Pii, "Work phone"),
                base_field("Context_Mobile_Phone", Text, Pii, "Mobile phone"),
                base_field("Context_Home_Phone", Text, Pii, "Home phone"),
                base_field("Context_Street_Address_1", Text, Pii, "Street address"),
                base_field("Context_City", Text, Pii, "City"),
                base_field("Context_State", Text, Pii, "State"),
                base_field("Context_Country", Text, Pii, "Country"),
                base_field("Context_ZIP", Text, Pii, "ZIP code"),
                base_field(
                    "Context_Customer_External_ID",
                    Text,
                    Encrypted,
                    "External customer id",
                ),
                Field {
                    enum_values: Some(
                        LOCALES
                            .iter()
                            .map(|l| EnumValue {
                                value: (*l).to_owned(),
                                active: true,
                            })
                            .collect(),
                    ),
                    ..base_field(LOCALE_FIELD, Text, Unencrypted, "Preferred language")
                },
            ],
        ),
        (
            "cisco.base.request",
            "Request (case) title and description",
            vec![
                base_field("Context_Title", Text, Encrypted, "Title"),
                base_field("Context_Description", Text, Encrypted, "Description"),
            ],
        ),
        (
            "cisco.base.pod",
            "Activity notes and source",
            vec![
                base_field("Context_Notes", Text, Encrypted, "Notes"),
                base_field(
                    "Context_POD_Activity_Link",
                    Text,
                    Unencrypted,
                    "Activity link",
                ),
                base_field(
                    "Context_POD_Source_Cust_Name",
                    Text,
                    Pii,
                    "Source customer name",
                ),
                base_field("Context_POD_Source_Email", Text, Pii, "Source email"),
                base_field("Context_POD_Source_Phone", Text, Pii, "Source phone"),
            ],
        ),
        (
            "cisco.base.comment",
            "Comment detail",
            vec![
                base_field("Context_Comment", Text, Encrypted, "Comment"),
                base_field("Context_Visible", Boolean, Unencrypted, "Visible"),
                base_field("Context_DisplayName", Text, Encrypted, "Display name"),
            ],
        ),
        (
            "cisco.base.rating",
            "Feedback detail",
            vec![
                base_field("cccRatingComments", Text, Encrypted, "Rating comments"),
                base_field("cccRatingPoints", Integer, Unencrypted, "Rating points"),
            ],
        ),
    ];
    let mut fields = Vec::new();
    let mut fieldsets = Vec::new();
    for (id, description, set_fields) in sets {
        fieldsets.push(FieldSet {
            id: id.to_owned(),
            description: description.to_owned(),
            fields: set_fields.iter().map(|f| f.id.clone()).collect(),
            inactive_fields: Vec::new(),
            base: true,
            last_updated: None,
        });
        fields.extend(set_fields);
    }
    // Work items (DESIGN §4) reuse fields of the sets above.
    fieldsets.push(FieldSet {
        id: "cisco.base.workitem".to_owned(),
        description: "Work item title, description and notes".to_owned(),
        fields: ["Context_Title", "Context_Description", "Context_Notes"]
            .map(str::to_owned)
            .to_vec(),
        inactive_fields: Vec::new(),
        base: true,
        last_updated: None,
    });
    (fields, fieldsets)
}

/// An org's whole dictionary: the base sets plus its own, resolved for validation.
#[derive(Clone, Debug, Default)]
pub struct Dictionary {
    fields: HashMap<String, Field>,
    fieldsets: HashMap<String, FieldSet>,
    version: u64,
}

impl Dictionary {
    /// The dictionary as of the org's dictionary version `version` (see
    /// `Store::dictionary_version`); a write validated against it names that version.
    pub fn at_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// The org's dictionary version this was read at.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Builds the dictionary from the org's custom fields and sets (base ones are added).
    pub fn new(custom_fields: Vec<Field>, custom_sets: Vec<FieldSet>) -> Self {
        let (base_fields, base_sets) = base_dictionary();
        let fields = base_fields
            .into_iter()
            .chain(custom_fields)
            .map(|f| (f.id.clone(), f))
            .collect();
        let fieldsets = base_sets
            .into_iter()
            .chain(custom_sets)
            .map(|s| (s.id.clone(), s))
            .collect();
        Self {
            fields,
            fieldsets,
            version: 0,
        }
    }

    /// A field by id.
    pub fn field(&self, id: &str) -> Option<&Field> {
        self.fields.get(id)
    }

    /// A field set by id.
    pub fn fieldset(&self, id: &str) -> Option<&FieldSet> {
        self.fieldsets.get(id)
    }

    /// All fields, sorted by id.
    pub fn fields(&self) -> Vec<&Field> {
        let mut v: Vec<_> = self.fields.values().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// All field sets, sorted by id.
    pub fn fieldsets(&self) -> Vec<&FieldSet> {
        let mut v: Vec<_> = self.fieldsets.values().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Validates an object's declared field sets and its `data`, normalizing values
    /// (dates to UTC milliseconds). Collects every problem into one 400.
    pub fn validate_data(
        &self,
        fieldsets: &[String],
        data: &BTreeMap<String, serde_json::Value>,
    ) -> Result<BTreeMap<String, serde_json::Value>, CoreError> {
        let mut errors = Vec::new();
        let mut sets = Vec::new();
        let mut seen = HashSet::new();
        for name in fieldsets {
            if !seen.insert(name.as_str()) {
                errors.push(FieldError::new(
                    "fieldsets",
                    format!("field set '{}' is listed twice", truncate(name, 100)),
                ));
                continue;
            }
            match self.fieldsets.get(name) {
                Some(set) => sets.push(set),
                None => errors.push(FieldError::new(
                    "fieldsets",
                    format!("unknown field set '{}'", truncate(name, 100)),
                )),
            }
        }
        let mut out = BTreeMap::new();
        for (key, value) in data {
            let field_name = format!("data.{}", truncate(key, 100));
            let active = sets
                .iter()
                .any(|s| s.fields.contains(key) && !s.inactive_fields.contains(key));
            if !active {
                let inactive = sets.iter().any(|s| s.inactive_fields.contains(key));
                let message = if inactive {
                    "field is inactive in the object's field sets".to_owned()
                } else {
                    "field does not belong to any of the object's field sets".to_owned()
                };
                errors.push(FieldError::new(field_name, message));
                continue;
            }
            let Some(field) = self.fields.get(key) else {
                errors.push(FieldError::new(
                    field_name,
                    "field set names a field that is not in the dictionary",
                ));
                continue;
            };
            if value.is_null() {
                // null removes a value; it is simply not stored.
                continue;
            }
            match check_value(field, value) {
                Ok(v) => {
                    out.insert(key.clone(), v);
                }
                Err(message) => errors.push(FieldError::new(field_name, message)),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(CoreError::Validation(errors))
        }
    }
}

/// Checks one value against its field; returns the normalized value or a message.
pub fn check_value(field: &Field, value: &serde_json::Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    match field.data_type {
        DataType::String => {
            let J::String(s) = value else {
                return Err("expected a string".into());
            };
            if s.contains('\0') {
                return Err("text may not contain NUL characters".into());
            }
            if let Some(max) = field.max_length {
                let n = s.chars().count();
                if n > max as usize {
                    return Err(format!(
                        "value is {n} characters long; the maximum is {max}"
                    ));
                }
            }
            if let Some(values) = &field.enum_values {
                match enum_entry(field, values, s) {
                    None => return Err("value is not one of the field's enumerated values".into()),
                    Some(e) if !e.active => return Err("enumerated value is inactive".into()),
                    // Stored as the enumeration lists it (`it-IT` → `it_IT`).
                    Some(e) => return Ok(J::String(e.value.clone())),
                }
            }
            Ok(value.clone())
        }
        DataType::Integer => match value.as_f64() {
            // However it is written, an integral number beyond 32 bits is out of range.
            Some(f)
                if f.fract() == 0.0
                    && !(f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&f) =>
            {
                Err("integer out of the 32-bit range".into())
            }
            _ => integer_of(value, "expected an integer").map(J::from),
        },
        DataType::Long => integer_of(value, "expected a 64-bit integer").map(J::from),
        DataType::Double => match value {
            J::Number(n) => n
                .as_f64()
                .and_then(canonical_double)
                .ok_or_else(|| "expected a number".to_owned()),
            _ => Err("expected a number".into()),
        },
        DataType::Boolean => match value {
            J::Bool(_) => Ok(value.clone()),
            _ => Err("expected true or false".into()),
        },
        DataType::Date => {
            let J::String(s) = value else {
                return Err("expected an RFC 3339 date-time string".into());
            };
            let t = chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|_| "expected an RFC 3339 date-time string".to_owned())?
                .with_timezone(&chrono::Utc);
            // In UTC the year must still be one RFC 3339 can write (0000–9999).
            if !(0..=9999).contains(&chrono::Datelike::year(&t)) {
                return Err("the date is outside the years 0000–9999 in UTC".into());
            }
            Ok(J::String(crate::time::format(&t)))
        }
    }
}

/// 2^53: up to it a double holds every integer exactly, so `2.0` or `2e3` stands for one.
const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0;

/// The integer a JSON number stands for: an integer literal, or a number written with a
/// fraction or an exponent (`2.0`, `2e0`) whose value is integral and within ±2^53 (beyond
/// it, such text may already have been rounded when it was read).
fn integer_of(value: &serde_json::Value, expected: &str) -> Result<i64, String> {
    let serde_json::Value::Number(n) = value else {
        return Err(expected.to_owned());
    };
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() <= EXACT_INTEGERS => Ok(f as i64),
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < I64_BOUND => Err(format!(
            "{expected}; beyond 2^53 write it without a fraction or exponent"
        )),
        _ => Err(expected.to_owned()),
    }
}

/// The canonical JSON form of a double (`None` if not finite): an integral value within the
/// i64 range as an integer (`2.0` → `2`, `-0.0` → `0`), any other as the double itself, so
/// one number is stored and indexed one way however it was written.
pub fn canonical_double(f: f64) -> Option<serde_json::Value> {
    if f.fract() == 0.0 && f.abs() < I64_BOUND {
        Some(serde_json::Value::from(f as i64))
    } else {
        serde_json::Number::from_f64(f).map(serde_json::Value::Number)
    }
}

/// The enumerated value a text names: the one equal to it, else, for the locale field, the one
/// that is the same locale in another spelling (`it-IT`, `IT_it` for `it_IT`).
fn enum_entry<'a>(field: &Field, values: &'a [EnumValue], text: &str) -> Option<&'a EnumValue> {
    if let Some(e) = values.iter().find(|e| e.value == text) {
        return Some(e);
    }
    if field.id != LOCALE_FIELD {
        return None;
    }
    let wanted = canonical_locale(text)?;
    values
        .iter()
        .find(|e| canonical_locale(&e.value).as_deref() == Some(wanted.as_str()))
}

/// Validates a field definition sent by an admin (not its in-use rules, which need the store).
pub fn validate_field(field: &Field) -> Result<(), CoreError> {
    let mut errors = Vec::new();
    if !is_valid_dictionary_id(&field.id) {
        errors.push(FieldError::new(
            "id",
            "must match [A-Za-z][A-Za-z0-9_.]{0,99}",
        ));
    }
    if field.data_type != DataType::String {
        if field.max_length.is_some() {
            errors.push(FieldError::new(
                "maxLength",
                "only string fields have a maximum length",
            ));
        }
        if field.enum_values.is_some() {
            errors.push(FieldError::new(
                "enumValues",
                "only string fields have enumerated values",
            ));
        }
    }
    if field.max_length == Some(0) {
        errors.push(FieldError::new("maxLength", "must be at least 1"));
    }
    if let Some(values) = &field.enum_values {
        let mut seen = HashSet::new();
        for v in values {
            if !seen.insert(v.value.as_str()) {
                errors.push(FieldError::new(
                    "enumValues",
                    format!("'{}' is listed twice", truncate(&v.value, 100)),
                ));
            }
            if let Some(max) = field.max_length {
                if v.value.chars().count() > max as usize {
                    errors.push(FieldError::new(
                        "enumValues",
                        "a value is longer than maxLength",
                    ));
                }
            }
        }
    }
    if field.description.chars().count() > 1024 {
        errors.push(FieldError::new("description", "at most 1024 characters"));
    }
    check_translation_keys(field, &mut errors);
    let texts = std::iter::once(&field.description)
        .chain(field.translations.keys())
        .chain(field.translations.values())
        .chain(field.enum_values.iter().flatten().map(|e| &e.value));
    if texts.into_iter().any(|t| t.contains('\0')) {
        errors.push(FieldError::new(
            "description",
            "text may not contain NUL characters",
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CoreError::Validation(errors))
    }
}

/// Each `translations` key must be a locale tag in its canonical form, and name a locale no
/// other key names.
fn check_translation_keys(field: &Field, errors: &mut Vec<FieldError>) {
    for key in field.translations.keys() {
        let message = match canonical_locale(key) {
            Some(c) if c == *key => continue,
            Some(c)
                if field
                    .translations
                    .keys()
                    .any(|k| k != key && canonical_locale(k).as_ref() == Some(&c)) =>
            {
                format!(
                    "'{}' names the locale {c} that another key names too",
                    truncate(key, 100)
                )
            }
            Some(c) => format!("'{}' must be written {c}", truncate(key, 100)),
            None => format!(
                "'{}' is not a locale tag (such as en_US or en-US)",
                truncate(key, 100)
            ),
        };
        errors.push(FieldError::new("translations", message));
    }
}

/// Validates a field set definition against the dictionary.
pub fn validate_fieldset(set: &FieldSet, dictionary: &Dictionary) -> Result<(), CoreError> {
    let mut errors = Vec::new();
    if !is_valid_dictionary_id(&set.id) {
        errors.push(FieldError::new(
            "id",
            "must match [A-Za-z][A-Za-z0-9_.]{0,99}",
        ));
    }
    for f in set.fields.iter().chain(&set.inactive_fields) {
        if dictionary.field(f).is_none() {
            errors.push(FieldError::new(
                "fields",
                format!("unknown field '{}'", truncate(f, 100)),
            ));
        }
    }
    for f in &set.inactive_fields {
        if !set.fields.contains(f) {
            errors.push(FieldError::new(
                "inactiveFields",
                format!("'{}' is not one of the set's fields", truncate(f, 100)),
            ));
        }
    }
    if set.description.contains('\0') {
        errors.push(FieldError::new(
            "description",
            "text may not contain NUL characters",
        ));
    }
    if set.description.chars().count() > 1024 {
        errors.push(FieldError::new("description", "at most 1024 characters"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CoreError::Validation(errors))
    }
}

/// How long a cached dictionary is trusted: changes made through another instance sharing
/// the database are seen within this time (changes made here invalidate at once).
pub const DICTIONARY_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// Per-org dictionaries, cached for [`DICTIONARY_TTL`]; invalidated when an admin changes the
/// dictionary through this instance.
pub struct DictionaryCache {
    cache: quick_cache::sync::Cache<crate::ids::OrgId, (std::time::Instant, Arc<Dictionary>)>,
}

impl DictionaryCache {
    /// A cache for up to `orgs` organizations.
    pub fn new(orgs: usize) -> Self {
        Self {
            cache: quick_cache::sync::Cache::new(orgs),
        }
    }

    /// The cached dictionary, if fresh.
    pub fn get(&self, org: crate::ids::OrgId) -> Option<Arc<Dictionary>> {
        self.cache
            .get(&org)
            .filter(|(at, _)| at.elapsed() < DICTIONARY_TTL)
            .map(|(_, d)| d)
    }

    /// Caches a dictionary.
    pub fn insert(&self, org: crate::ids::OrgId, dictionary: Arc<Dictionary>) {
        self.cache
            .insert(org, (std::time::Instant::now(), dictionary));
    }

    /// Drops an org's entry.
    pub fn invalidate(&self, org: crate::ids::OrgId) {
        self.cache.remove(&org);
    }
}

impl std::fmt::Debug for DictionaryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DictionaryCache")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(pairs: &[(&str, serde_json::Value)]) -> BTreeMap<String, serde_json::Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn base_sets_have_original_names() {
        let d = Dictionary::new(vec![], vec![]);
        let customer = d.fieldset("cisco.base.customer").map(|s| s.fields.len());
        assert_eq!(customer, Some(14));
        assert_eq!(
            d.field("Context_ZIP").map(|f| f.classification),
            Some(Classification::Pii)
        );
        assert_eq!(
            d.field("cccRatingPoints").map(|f| f.data_type),
            Some(DataType::Integer)
        );
        assert!(d.fields().iter().all(|f| f.searchable && f.base));
    }

    #[test]
    fn validation_reports_every_field() {
        let d = Dictionary::new(vec![], vec![]);
        let sets = vec!["cisco.base.customer".to_owned()];
        let err = d
            .validate_data(
                &sets,
                &data(&[
                    ("Context_First_Name", json!(5)),
                    ("Nope", json!("x")),
                    ("Context_Preferred_Language", json!("xx")),
                ]),
            )
            .err();
        match err {
            Some(CoreError::Validation(errors)) => assert_eq!(errors.len(), 3),
            other => panic!("expected validation error, got {other:?}"),
        }
        assert!(d
            .validate_data(&sets, &data(&[("Context_First_Name", json!("Ann"))]))
            .is_ok());
    }

    #[test]
    fn dates_are_normalized_and_lengths_enforced() {
        let mut f = base_field("x", DataType::Date, Classification::Unencrypted, "x");
        assert_eq!(
            check_value(&f, &json!("2026-01-01T01:00:00+01:00")),
            Ok(json!("2026-01-01T00:00:00.000Z"))
        );
        assert!(check_value(&f, &json!("yesterday")).is_err());
        f.data_type = DataType::String;
        f.max_length = Some(3);
        assert!(check_value(&f, &json!("abcd")).is_err());
        assert!(check_value(&f, &json!("abc")).is_ok());
        f.data_type = DataType::Integer;
        assert!(check_value(&f, &json!(1u64 << 40)).is_err());
    }
}
