//! The dictionary through the compatibility API (`/dictionary/{field,fieldset}/v1`): fields
//! and field sets as the original product and its administration console send and read them.
//!
//! Bodies are read leniently: the console's extra keys (`classificationUI`, `dataTypeUI`,
//! `dataTypeValue`, `publiclyAccessible`, `publiclyAccessibleUI`) and read-only keys
//! (`refUrl`, `lastUpdated`, `base`) are accepted and ignored, `searchable` may be a boolean
//! or the text `"true"`/`"false"`, and `translations` keys may be `en_US` or `en-US`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::dictionary::{canonical_locale, Classification, DataType, EnumValue, Field, FieldSet};
use crate::error::FieldError;
use crate::ids::ParseError;
use crate::truncate;

/// Create a field or field set (`POST`).
pub const DICTIONARY: &str = "/dictionary/{entity}/v1";
/// One field or field set (`GET`, `PUT`, `DELETE`).
pub const DICTIONARY_ENTRY: &str = "/dictionary/{entity}/v1/id/{id}";
/// Search fields or field sets (`GET ?q=id:*`).
pub const DICTIONARY_SEARCH: &str = "/dictionary/{entity}/v1/search";
/// Whether a field or field set is used (`GET` → [`InUseStatus`]).
pub const DICTIONARY_STATUS: &str = "/dictionary/{entity}/v1/status/{id}";

/// What a dictionary path is about: its `{entity}` segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DictEntity {
    /// Fields.
    Field,
    /// Field sets.
    Fieldset,
}

impl DictEntity {
    /// The path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            DictEntity::Field => "field",
            DictEntity::Fieldset => "fieldset",
        }
    }
}

impl fmt::Display for DictEntity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DictEntity {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "field" => Ok(DictEntity::Field),
            "fieldset" => Ok(DictEntity::Fieldset),
            _ => Err(ParseError(format!(
                "unknown dictionary entity '{}'; expected field or fieldset",
                truncate(s, 32)
            ))),
        }
    }
}

/// `/dictionary/{entity}/v1/id/{id}`: the `refUrl` of a field or field set.
pub fn dictionary_ref_url(entity: DictEntity, id: &str) -> String {
    format!("/dictionary/{}/v1/id/{id}", entity.as_str())
}

/// A field as the compatibility API answers it: the native field plus `refUrl` and
/// `lastUpdated`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompatField {
    /// The field id.
    pub id: String,
    /// Free text.
    pub description: String,
    /// Value type.
    pub data_type: DataType,
    /// Storage class.
    pub classification: Classification,
    /// Whether objects can be searched by this field.
    pub searchable: bool,
    /// Maximum length in characters (strings only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// Allowed values (strings only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enum_values: Option<Vec<EnumValue>>,
    /// Locale (`en_US`) → display label.
    pub translations: BTreeMap<String, String>,
    /// Built-in fields are read-only.
    pub base: bool,
    /// `/dictionary/field/v1/id/{id}`.
    pub ref_url: String,
    /// Last change.
    #[serde(with = "crate::time::rfc3339_ms")]
    pub last_updated: DateTime<Utc>,
}

impl CompatField {
    /// The compatibility view of a native field; `built_in` is the `lastUpdated` of an entry
    /// that has no write time (the built-in ones).
    pub fn new(field: Field, built_in: DateTime<Utc>) -> Self {
        Self {
            ref_url: dictionary_ref_url(DictEntity::Field, &field.id),
            id: field.id,
            description: field.description,
            data_type: field.data_type,
            classification: field.classification,
            searchable: field.searchable,
            max_length: field.max_length,
            enum_values: field.enum_values,
            translations: field.translations,
            base: field.base,
            last_updated: field.last_updated.unwrap_or(built_in),
        }
    }
}

/// The body of a field `POST` or `PUT`, read leniently (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompatFieldInput {
    /// The field id (on `PUT`, the path's if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `string`, `integer`, `long`, `double`, `boolean` or `date`, in any case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_type: Option<String>,
    /// `UNENCRYPTED`, `ENCRYPTED` or `PII`, in any case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<String>,
    /// A boolean or `"true"`/`"false"`; absent means searchable, as in the original product.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<bool>)]
    pub searchable: Option<Value>,
    /// A number, or its text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u32>)]
    pub max_length: Option<Value>,
    /// Each `{value, active?}` or a bare text value (active).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub enum_values: Option<Vec<Value>>,
    /// Locale (`en_US` or `en-US`) → display label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translations: Option<BTreeMap<String, String>>,
}

impl CompatFieldInput {
    /// The native field. `path_id` is the id a `PUT` path names: the body may leave `id` out
    /// or repeat it, not name another. The result is never a base field; the core validates
    /// the id, the limits and the enumeration as for a native write.
    pub fn into_native(self, path_id: Option<&str>) -> Result<Field, Vec<FieldError>> {
        let mut errors = Vec::new();
        let id = entry_id(self.id.as_deref(), path_id, &mut errors);
        let data_type = match self.data_type.as_deref().map(str::trim) {
            None | Some("") => {
                errors.push(FieldError::new("dataType", "required"));
                None
            }
            Some(t) => match t.to_ascii_lowercase().as_str() {
                "string" => Some(DataType::String),
                "integer" => Some(DataType::Integer),
                "long" => Some(DataType::Long),
                "double" => Some(DataType::Double),
                "boolean" => Some(DataType::Boolean),
                "date" => Some(DataType::Date),
                _ => {
                    errors.push(FieldError::new(
                        "dataType",
                        format!(
                            "'{}' is not one of string, integer, long, double, boolean, date",
                            truncate(t, 32)
                        ),
                    ));
                    None
                }
            },
        };
        let classification = match self.classification.as_deref().map(str::trim) {
            None | Some("") => {
                errors.push(FieldError::new("classification", "required"));
                None
            }
            Some(c) => match c.to_ascii_uppercase().as_str() {
                "UNENCRYPTED" => Some(Classification::Unencrypted),
                "ENCRYPTED" => Some(Classification::Encrypted),
                "PII" => Some(Classification::Pii),
                _ => {
                    errors.push(FieldError::new(
                        "classification",
                        format!(
                            "'{}' is not one of UNENCRYPTED, ENCRYPTED, PII",
                            truncate(c, 32)
                        ),
                    ));
                    None
                }
            },
        };
        let searchable = match &self.searchable {
            None | Some(Value::Null) => Some(true),
            Some(v) => lenient_bool(v).or_else(|| {
                errors.push(FieldError::new("searchable", "expected true or false"));
                None
            }),
        };
        let max_length = match &self.max_length {
            None | Some(Value::Null) => None,
            Some(v) => {
                let n = match v {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.trim().parse::<u64>().ok(),
                    _ => None,
                };
                match n.and_then(|n| u32::try_from(n).ok()) {
                    Some(n) => Some(n),
                    None => {
                        errors.push(FieldError::new(
                            "maxLength",
                            "expected a whole number of characters",
                        ));
                        None
                    }
                }
            }
        };
        let enum_values = self.enum_values.map(|values| {
            values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    enum_value(v).or_else(|| {
                        errors.push(FieldError::new(
                            format!("enumValues[{i}]"),
                            "expected a text value or {\"value\": text, \"active\": true|false}",
                        ));
                        None
                    })
                })
                .collect()
        });
        let translations = locale_labels(self.translations.unwrap_or_default(), &mut errors);
        match (id, data_type, classification, searchable) {
            (Some(id), Some(data_type), Some(classification), Some(searchable))
                if errors.is_empty() =>
            {
                Ok(Field {
                    id,
                    description: self.description.unwrap_or_default(),
                    data_type,
                    classification,
                    searchable,
                    max_length,
                    enum_values,
                    translations,
                    base: false,
                    last_updated: None,
                })
            }
            _ => Err(errors),
        }
    }
}

/// A field set as the compatibility API answers it: the native field set plus `refUrl` and
/// `lastUpdated`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompatFieldSet {
    /// The field set id.
    pub id: String,
    /// Free text.
    pub description: String,
    /// Field ids.
    pub fields: Vec<String>,
    /// Fields kept for old data but refused in new writes.
    pub inactive_fields: Vec<String>,
    /// Built-in sets are read-only.
    pub base: bool,
    /// `/dictionary/fieldset/v1/id/{id}`.
    pub ref_url: String,
    /// Last change.
    #[serde(with = "crate::time::rfc3339_ms")]
    pub last_updated: DateTime<Utc>,
}

impl CompatFieldSet {
    /// The compatibility view of a native field set; `built_in` is the `lastUpdated` of an
    /// entry that has no write time (the built-in ones).
    pub fn new(set: FieldSet, built_in: DateTime<Utc>) -> Self {
        Self {
            ref_url: dictionary_ref_url(DictEntity::Fieldset, &set.id),
            id: set.id,
            description: set.description,
            fields: set.fields,
            inactive_fields: set.inactive_fields,
            base: set.base,
            last_updated: set.last_updated.unwrap_or(built_in),
        }
    }
}

/// The body of a field set `POST` or `PUT`, read leniently (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompatFieldSetInput {
    /// The field set id (on `PUT`, the path's if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Field ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
    /// Fields kept for old data but refused in new writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactive_fields: Option<Vec<String>>,
}

impl CompatFieldSetInput {
    /// The native field set; `path_id` as for [`CompatFieldInput::into_native`].
    pub fn into_native(self, path_id: Option<&str>) -> Result<FieldSet, Vec<FieldError>> {
        let mut errors = Vec::new();
        let id = entry_id(self.id.as_deref(), path_id, &mut errors);
        match id {
            Some(id) if errors.is_empty() => Ok(FieldSet {
                id,
                description: self.description.unwrap_or_default(),
                fields: self.fields.unwrap_or_default(),
                inactive_fields: self.inactive_fields.unwrap_or_default(),
                base: false,
                last_updated: None,
            }),
            _ => Err(errors),
        }
    }
}

/// `GET /dictionary/{entity}/v1/status/{id}` answer: `{"status": {"inUse": bool}}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InUseStatus {
    /// The entry's status.
    pub status: InUse,
}

impl InUseStatus {
    /// The status of an entry used (`true`) or not.
    pub fn new(in_use: bool) -> Self {
        Self {
            status: InUse { in_use },
        }
    }
}

/// Whether a field is used by stored data (or by a field set), or a field set by objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InUse {
    /// Used?
    pub in_use: bool,
}

/// The entry id from the body and/or the path.
fn entry_id(
    body: Option<&str>,
    path: Option<&str>,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let body = body.map(str::trim).filter(|s| !s.is_empty());
    match (body, path) {
        (Some(b), Some(p)) if b != p => {
            errors.push(FieldError::new(
                "id",
                format!(
                    "'{}' is not the id in the path ('{}')",
                    truncate(b, 100),
                    truncate(p, 100)
                ),
            ));
            None
        }
        (Some(id), _) | (None, Some(id)) => Some(id.to_owned()),
        (None, None) => {
            errors.push(FieldError::new("id", "required"));
            None
        }
    }
}

/// A boolean, or its text in any case.
fn lenient_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// One enumeration entry: a bare text (active) or `{value, active?}` (other keys ignored).
fn enum_value(v: &Value) -> Option<EnumValue> {
    match v {
        Value::String(s) => Some(EnumValue {
            value: s.clone(),
            active: true,
        }),
        Value::Object(o) => {
            let value = o.get("value")?.as_str()?.to_owned();
            let active = match o.get("active") {
                None | Some(Value::Null) => true,
                Some(a) => lenient_bool(a)?,
            };
            Some(EnumValue { value, active })
        }
        _ => None,
    }
}

/// Translations keyed by canonical locale (`en-US` → `en_US`); two spellings of one locale
/// with different labels are an error, with the same label one entry. A key that is not a
/// locale is kept as sent, for the core to refuse.
fn locale_labels(
    translations: BTreeMap<String, String>,
    errors: &mut Vec<FieldError>,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (key, label) in translations {
        let locale = canonical_locale(&key).unwrap_or_else(|| key.clone());
        match out.get(&locale) {
            Some(prev) if *prev != label => errors.push(FieldError::new(
                format!("translations.{}", truncate(&key, 64)),
                format!("a second, different label for the locale {locale}"),
            )),
            _ => {
                out.insert(locale, label);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-21T08:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn field(v: Value) -> Result<Field, Vec<FieldError>> {
        serde_json::from_value::<CompatFieldInput>(v)
            .unwrap()
            .into_native(None)
    }

    #[test]
    fn entities_and_paths() {
        assert_eq!("field".parse(), Ok(DictEntity::Field));
        assert_eq!("fieldset".parse(), Ok(DictEntity::Fieldset));
        assert!("fields"
            .parse::<DictEntity>()
            .unwrap_err()
            .0
            .contains("field or fieldset"));
        assert_eq!(
            dictionary_ref_url(DictEntity::Field, "Context_First_Name"),
            "/dictionary/field/v1/id/Context_First_Name"
        );
        assert_eq!(DictEntity::Fieldset.to_string(), "fieldset");
    }

    #[test]
    fn a_field_created_with_every_console_key_is_read_and_the_extras_ignored() {
        let f = field(json!({
            "id": "Moto_Plate",
            "description": "Licence plate",
            "dataType": "string",
            "dataTypeUI": "String",
            "dataTypeValue": {"label": "String", "value": "string"},
            "classification": "ENCRYPTED",
            "classificationUI": "Encrypted",
            "publiclyAccessible": false,
            "publiclyAccessibleUI": "No",
            "searchable": "true",
            "maxLength": "16",
            "translations": {"en-US": "Plate", "it_IT": "Targa"},
            "refUrl": "/dictionary/field/v1/id/Moto_Plate",
            "lastUpdated": "2026-11-21T08:00:00.123Z",
            "base": true,
        }))
        .unwrap();
        assert_eq!(
            f,
            Field {
                id: "Moto_Plate".into(),
                description: "Licence plate".into(),
                data_type: DataType::String,
                classification: Classification::Encrypted,
                searchable: true,
                max_length: Some(16),
                enum_values: None,
                translations: BTreeMap::from([
                    ("en_US".into(), "Plate".into()),
                    ("it_IT".into(), "Targa".into())
                ]),
                base: false,
                last_updated: None,
            }
        );
    }

    #[test]
    fn searchable_is_a_boolean_or_its_text_and_defaults_to_true() {
        let s = |v: Value| {
            field(
                json!({"id": "F", "dataType": "string", "classification": "PII", "searchable": v}),
            )
            .map(|f| f.searchable)
        };
        assert_eq!(s(json!(true)), Ok(true));
        assert_eq!(s(json!(false)), Ok(false));
        assert_eq!(s(json!("true")), Ok(true));
        assert_eq!(s(json!("False")), Ok(false));
        assert_eq!(s(Value::Null), Ok(true));
        assert!(
            field(json!({"id": "F", "dataType": "string", "classification": "PII"}))
                .unwrap()
                .searchable
        );
        assert_eq!(s(json!("yes")).unwrap_err()[0].field, "searchable");
        assert_eq!(s(json!(1)).unwrap_err()[0].field, "searchable");
    }

    #[test]
    fn translations_take_either_locale_spelling() {
        let tr = |v: Value| {
            field(
                json!({"id": "F", "dataType": "string", "classification": "PII", "translations": v}),
            )
        };
        assert_eq!(
            tr(json!({"en_US": "Name"})).unwrap().translations,
            BTreeMap::from([("en_US".into(), "Name".into())])
        );
        assert_eq!(
            tr(json!({"en-US": "Name"})).unwrap().translations,
            BTreeMap::from([("en_US".into(), "Name".into())])
        );
        assert_eq!(
            tr(json!({"en-US": "Name", "en_US": "Name"}))
                .unwrap()
                .translations
                .len(),
            1
        );
        let e = tr(json!({"en-US": "Name", "en_US": "Nom"})).unwrap_err();
        assert!(e[0].field.starts_with("translations."));
        assert!(e[0].message.contains("en_US"));
        // Not a locale: kept for the core to refuse.
        assert!(tr(json!({"??": "x"}))
            .unwrap()
            .translations
            .contains_key("??"));
    }

    #[test]
    fn types_and_classes_are_read_in_any_case_and_required() {
        let f = field(json!({"id": "F", "dataType": "Integer", "classification": "unencrypted"}))
            .unwrap();
        assert_eq!(
            (f.data_type, f.classification),
            (DataType::Integer, Classification::Unencrypted)
        );
        let e = field(json!({})).unwrap_err();
        let fields: Vec<_> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["id", "dataType", "classification"]);
        let e =
            field(json!({"id": "F", "dataType": "text", "classification": "SECRET"})).unwrap_err();
        assert!(e[0].message.contains("'text' is not one of"));
        assert!(e[1].message.contains("'SECRET' is not one of"));
    }

    #[test]
    fn limits_and_enumerations_are_read_leniently() {
        let f = field(json!({
            "id": "Lang", "dataType": "string", "classification": "UNENCRYPTED",
            "maxLength": 10,
            "enumValues": ["it_IT", {"value": "en_US", "active": "false", "label": "English"},
                           {"value": "fr_FR"}],
        }))
        .unwrap();
        assert_eq!(f.max_length, Some(10));
        assert_eq!(
            f.enum_values,
            Some(vec![
                EnumValue {
                    value: "it_IT".into(),
                    active: true
                },
                EnumValue {
                    value: "en_US".into(),
                    active: false
                },
                EnumValue {
                    value: "fr_FR".into(),
                    active: true
                },
            ])
        );
        let e = field(json!({
            "id": "Lang", "dataType": "string", "classification": "UNENCRYPTED",
            "maxLength": -1, "enumValues": [3, {"active": true}],
        }))
        .unwrap_err();
        let fields: Vec<_> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["maxLength", "enumValues[0]", "enumValues[1]"]);
    }

    #[test]
    fn the_id_comes_from_the_body_or_the_path() {
        let body = |v: Value| serde_json::from_value::<CompatFieldInput>(v).unwrap();
        let base = json!({"dataType": "string", "classification": "PII"});
        assert_eq!(body(base.clone()).into_native(Some("F")).unwrap().id, "F");
        let mut with_id = base.clone();
        with_id["id"] = json!("F");
        assert_eq!(
            body(with_id.clone()).into_native(Some("F")).unwrap().id,
            "F"
        );
        let e = body(with_id).into_native(Some("G")).unwrap_err();
        assert_eq!(e[0].field, "id");
        assert!(e[0].message.contains("not the id in the path"));
    }

    #[test]
    fn a_returned_field_carries_ref_url_and_last_updated_and_round_trips() {
        let mut native = Field::new("Moto_Plate", DataType::String, Classification::Encrypted);
        native.searchable = true;
        native.translations.insert("en_US".into(), "Plate".into());
        let c = CompatField::new(native.clone(), t());
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            json!({
                "id": "Moto_Plate",
                "description": "",
                "dataType": "string",
                "classification": "ENCRYPTED",
                "searchable": true,
                "translations": {"en_US": "Plate"},
                "base": false,
                "refUrl": "/dictionary/field/v1/id/Moto_Plate",
                "lastUpdated": "2026-11-21T08:00:00.123Z",
            })
        );
        assert_eq!(serde_json::from_value::<CompatField>(v.clone()).unwrap(), c);
        // What a GET returned, sent back, is the same field.
        let back = serde_json::from_value::<CompatFieldInput>(v)
            .unwrap()
            .into_native(Some("Moto_Plate"))
            .unwrap();
        assert_eq!(back, native);
    }

    #[test]
    fn field_sets_round_trip_and_ignore_extra_keys() {
        let set = FieldSet {
            id: "moto".into(),
            description: "Motorcycles".into(),
            fields: vec!["Moto_Plate".into()],
            inactive_fields: vec![],
            base: false,
            last_updated: None,
        };
        let c = CompatFieldSet::new(set.clone(), t());
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            json!({
                "id": "moto",
                "description": "Motorcycles",
                "fields": ["Moto_Plate"],
                "inactiveFields": [],
                "base": false,
                "refUrl": "/dictionary/fieldset/v1/id/moto",
                "lastUpdated": "2026-11-21T08:00:00.123Z",
            })
        );
        let mut body = v.clone();
        body["publiclyAccessible"] = json!(false);
        body["publiclyAccessibleUI"] = json!("No");
        let back = serde_json::from_value::<CompatFieldSetInput>(body)
            .unwrap()
            .into_native(None)
            .unwrap();
        assert_eq!(back, set);
        let e = CompatFieldSetInput::default()
            .into_native(None)
            .unwrap_err();
        assert_eq!(e[0].field, "id");
        let minimal = serde_json::from_value::<CompatFieldSetInput>(json!({"fields": ["A"]}))
            .unwrap()
            .into_native(Some("s"))
            .unwrap();
        assert_eq!((minimal.id.as_str(), minimal.fields.len()), ("s", 1));
    }

    #[test]
    fn in_use_status_shape() {
        assert_eq!(
            serde_json::to_value(InUseStatus::new(true)).unwrap(),
            json!({"status": {"inUse": true}})
        );
    }
}
