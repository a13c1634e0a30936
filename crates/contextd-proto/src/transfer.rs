//! The file of `contextd export` and `contextd import`: JSON Lines, one record a line, each
//! with a `type`. First an `export` header, then the dictionary (`field`, `fieldset`), then
//! the objects (`customer`, `request`, `activity`, `detail`) in the native wire shape, ids
//! and history included, in that order so that every link points to a line above.
//!
//! Import also takes a JSON array of objects in the original product's wire shape
//! (`dataElements`, `customerRefUrl`, …; see [`crate::compat`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::compat::{CompatInput, CompatType};
use crate::dictionary::{Field, FieldSet};
use crate::object::ObjectInput;
use crate::Kind;

/// The version of the file format this build writes and reads.
pub const FORMAT: u32 = 1;

/// The first line of an export.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportHeader {
    /// [`FORMAT`].
    pub format: u32,
    /// The organization's id.
    pub org_id: String,
    /// `lab` or `production`.
    pub partition: String,
    /// When the export started.
    pub exported_at: DateTime<Utc>,
    /// What it holds: `dictionary`, `customers`, `requests`, `activities`, `details`.
    pub kinds: Vec<String>,
}

/// One line of an export file.
#[derive(Clone, Debug)]
pub enum Record {
    /// The header.
    Header(ExportHeader),
    /// A field of the dictionary.
    Field(Box<Field>),
    /// A field set.
    FieldSet(FieldSet),
    /// An object of a kind, as read (its id, times, version and contributors kept).
    Object(Kind, Box<ObjectInput>),
}

/// The `type` of a header line.
const HEADER: &str = "export";
/// The `type` of a field line.
const FIELD: &str = "field";
/// The `type` of a field set line.
const FIELDSET: &str = "fieldset";

impl Record {
    /// Reads one line.
    pub fn parse(line: &str) -> Result<Self, String> {
        let mut value: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let Some(map) = value.as_object_mut() else {
            return Err("a line is a JSON object".into());
        };
        let ty = match map.get("type") {
            Some(Value::String(t)) => t.clone(),
            _ => return Err("a line needs a \"type\"".into()),
        };
        if matches!(ty.as_str(), HEADER | FIELD | FIELDSET) {
            map.remove("type");
        }
        let bad = |e: serde_json::Error| format!("a {ty} line: {e}");
        Ok(match ty.as_str() {
            HEADER => Record::Header(serde_json::from_value(value).map_err(bad)?),
            FIELD => Record::Field(Box::new(serde_json::from_value(value).map_err(bad)?)),
            FIELDSET => Record::FieldSet(serde_json::from_value(value).map_err(bad)?),
            other => match other.parse::<Kind>() {
                Ok(kind) => Record::Object(kind, serde_json::from_value(value).map_err(bad)?),
                Err(_) => return Err(format!("unknown type \"{other}\"")),
            },
        })
    }

    /// The line of a header (without its newline).
    pub fn header_line(header: &ExportHeader) -> Result<String, serde_json::Error> {
        tagged(HEADER, header)
    }

    /// The line of a field.
    pub fn field_line(field: &Field) -> Result<String, serde_json::Error> {
        tagged(FIELD, field)
    }

    /// The line of a field set.
    pub fn fieldset_line(set: &FieldSet) -> Result<String, serde_json::Error> {
        tagged(FIELDSET, set)
    }
}

/// `value` serialized with `"type": ty` first.
fn tagged<T: Serialize>(ty: &str, value: &T) -> Result<String, serde_json::Error> {
    let mut map = serde_json::Map::new();
    map.insert("type".into(), Value::from(ty));
    if let Value::Object(fields) = serde_json::to_value(value)? {
        map.extend(fields);
    }
    serde_json::to_string(&map)
}

/// An object of the original wire shape, for an import: its kind and the native input, with
/// its `id`, `created` and `lastUpdated` (RFC 3339 or milliseconds since the epoch) kept.
pub fn compat_object(value: Value) -> Result<(Kind, ObjectInput), String> {
    let ty = match value.get("type").and_then(Value::as_str) {
        Some(t) => compat_type(t)?,
        None => return Err("an object needs its \"type\"".into()),
    };
    let id = value.get("id").cloned();
    let created = value.get("created").map(compat_time).transpose()?;
    let input: CompatInput = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let last_updated = input
        .last_updated()
        .map_err(|e| format!("{}: {}", e.field, e.message))?;
    let mut native = input.into_native(ty).map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    native.id = id;
    native.created = created.flatten().map(rfc3339);
    native.last_updated = last_updated.map(rfc3339);
    Ok((ty.native_kind(), native))
}

/// The type of an original object: its path type, or a detail's `comment`/`feedback`.
fn compat_type(t: &str) -> Result<CompatType, String> {
    let t = t.trim().to_ascii_lowercase();
    let t = t.strip_prefix("detail.").unwrap_or(&t);
    match t {
        "comment" | "feedback" => Ok(CompatType::Detail),
        other => other.parse::<CompatType>().map_err(|e| e.0),
    }
}

/// A time as the original wrote it: RFC 3339, or milliseconds since the epoch.
fn compat_time(v: &Value) -> Result<Option<DateTime<Utc>>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => DateTime::parse_from_rfc3339(s.trim())
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| format!("'{s}' is not an RFC 3339 time")),
        Value::Number(n) => n
            .as_i64()
            .and_then(DateTime::from_timestamp_millis)
            .map(Some)
            .ok_or_else(|| format!("{n} is not a time in milliseconds")),
        _ => Err("a time is a string or a number".into()),
    }
}

fn rfc3339(t: DateTime<Utc>) -> Value {
    Value::from(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_carry_their_type_and_read_back() {
        let header = ExportHeader {
            format: FORMAT,
            org_id: "o".into(),
            partition: "lab".into(),
            exported_at: DateTime::from_timestamp_millis(0).unwrap_or_default(),
            kinds: vec!["customers".into()],
        };
        let line = Record::header_line(&header).unwrap();
        assert!(line.contains(r#""type":"export""#), "{line}");
        assert!(matches!(Record::parse(&line), Ok(Record::Header(h)) if h == header));
        let object = json!({"type": "activity", "id": "x", "mediaType": "voice", "version": 3});
        match Record::parse(&object.to_string()) {
            Ok(Record::Object(Kind::Activity, input)) => {
                assert_eq!(input.version, Some(3));
                assert_eq!(input.kind.as_deref(), Some("activity"));
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            "[]",
            r#"{"id": 1}"#,
            r#"{"type": "thing"}"#,
            "{",
            r#"{"type":"activity","extra":1}"#,
        ] {
            assert!(Record::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_original_object_keeps_its_id_and_times() {
        let (kind, input) = compat_object(json!({
            "type": "pod", "id": "11111111-1111-1111-1111-111111111111",
            "customerRefUrl": "https://context.example.com/context/v1/customer/22222222-2222-2222-2222-222222222222",
            "mediaType": "chat", "fieldsets": ["cisco.base.pod"],
            "dataElements": [{"Context_Notes": "hello", "type": "string"}],
            "created": 1_546_300_800_000_i64, "lastUpdated": "2019-01-02T00:00:00Z",
            "refUrl": "/context/v1/pod/11111111-1111-1111-1111-111111111111"
        }))
        .unwrap();
        assert_eq!(kind, Kind::Activity);
        assert_eq!(
            input.id,
            Some(json!("11111111-1111-1111-1111-111111111111"))
        );
        assert_eq!(
            input.customer_id.as_deref(),
            Some("22222222-2222-2222-2222-222222222222")
        );
        assert_eq!(input.created, Some(json!("2019-01-01T00:00:00.000Z")));
        assert_eq!(input.last_updated, Some(json!("2019-01-02T00:00:00.000Z")));
        assert_eq!(input.data.get("Context_Notes"), Some(&json!("hello")));
        let (kind, input) = compat_object(json!({"type": "comment", "parentId": "p"})).unwrap();
        assert_eq!(
            (kind, input.detail_type.as_deref()),
            (Kind::Detail, Some("comment"))
        );
        assert!(compat_object(json!({"id": "x"})).is_err());
        assert!(compat_object(json!({"type": "pod", "created": "soon"})).is_err());
    }
}
