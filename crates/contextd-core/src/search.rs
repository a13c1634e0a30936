//! Search requests: parsing the wire body, planning it into normalized blind-index terms,
//! and opaque cursors.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};

use crate::crypto::{legacy_double_texts, normalize, Indexer};
use crate::dictionary::{check_value, Dictionary};
use crate::error::{CoreError, FieldError};
use crate::ids::{truncate, ObjectId};
use crate::object::{Kind, MediaType, State};
use crate::store::{Condition, PagePosition, SearchPlan};

pub use contextd_proto::object::{Match, SearchRequest};

/// Largest page of whole objects.
pub const MAX_LIMIT: usize = 200;
/// Default page of whole objects.
pub const DEFAULT_LIMIT: usize = 50;
/// Largest page of ids (`summary: true`).
pub const MAX_SUMMARY: usize = 100_000;
/// Most keys in one search.
pub const MAX_TERMS: usize = 32;
/// Most values under one key.
pub const MAX_VALUES: usize = 256;
/// Longest value, in characters.
pub const MAX_VALUE_CHARS: usize = 1024;

/// Encodes a page position as an opaque cursor.
pub fn encode_cursor(p: &PagePosition) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "1:{}:{}",
        p.time.timestamp_millis(),
        p.id.0.simple()
    ))
}

/// Decodes a cursor, refusing anything this server did not issue.
pub fn decode_cursor(cursor: &str) -> Result<PagePosition, CoreError> {
    let bad = || CoreError::field("cursor", "invalid cursor");
    let raw = URL_SAFE_NO_PAD.decode(cursor.trim()).map_err(|_| bad())?;
    let text = std::str::from_utf8(&raw).map_err(|_| bad())?;
    let mut parts = text.split(':');
    let (Some("1"), Some(ms), Some(id), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let ms: i64 = ms.parse().map_err(|_| bad())?;
    let time = DateTime::<Utc>::from_timestamp_millis(ms).ok_or_else(bad)?;
    let id = uuid::Uuid::try_parse(id).map_err(|_| bad())?;
    Ok(PagePosition {
        time,
        id: ObjectId(id),
    })
}

fn parse_time(
    field: &str,
    value: &Option<String>,
    errors: &mut Vec<FieldError>,
) -> Option<DateTime<Utc>> {
    let v = value.as_deref()?;
    match DateTime::parse_from_rfc3339(v.trim()) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => {
            errors.push(FieldError::new(field, "expected an RFC 3339 date-time"));
            None
        }
    }
}

/// Configurable bounds of one search (defaults: [`MAX_TERMS`], [`MAX_VALUES`], [`MAX_VALUE_CHARS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchLimits {
    /// Most keys in one search.
    pub max_terms: usize,
    /// Most values under one key.
    pub max_values: usize,
    /// Longest value, in characters.
    pub max_value_chars: usize,
}

impl Default for SearchLimits {
    fn default() -> Self {
        Self {
            max_terms: MAX_TERMS,
            max_values: MAX_VALUES,
            max_value_chars: MAX_VALUE_CHARS,
        }
    }
}

fn values(
    key: &str,
    raw: &serde_json::Value,
    errors: &mut Vec<FieldError>,
    limits: &SearchLimits,
) -> Vec<serde_json::Value> {
    let (max_values, max_value_chars) = (limits.max_values, limits.max_value_chars);
    let list = match raw {
        serde_json::Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    let field = format!("terms.{}", truncate(key, 100));
    if list.is_empty() {
        errors.push(FieldError::new(field, "give at least one value"));
        return Vec::new();
    }
    if list.len() > max_values {
        errors.push(FieldError::new(
            field,
            format!("at most {max_values} values per key"),
        ));
        return Vec::new();
    }
    let mut out = Vec::with_capacity(list.len());
    for v in list {
        match &v {
            serde_json::Value::String(s) if s.chars().count() > max_value_chars => {
                errors.push(FieldError::new(
                    field.clone(),
                    format!("values are at most {max_value_chars} characters"),
                ));
            }
            serde_json::Value::String(_)
            | serde_json::Value::Number(_)
            | serde_json::Value::Bool(_) => out.push(v),
            _ => errors.push(FieldError::new(
                field.clone(),
                "values must be strings, numbers or booleans",
            )),
        }
    }
    out
}

fn as_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.trim().to_owned(),
        other => other.to_string(),
    }
}

/// What a caller may search by (partners without a grant can't use sealed fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealedAccess {
    /// ENCRYPTED and PII fields may be searched.
    Allowed,
    /// They may not.
    Withheld,
}

/// Plans a search: validates every key and value and turns them into conditions.
pub fn plan(
    kind: Kind,
    request: &SearchRequest,
    dictionary: &Dictionary,
    indexer: &Indexer,
    access: SealedAccess,
    active_since: DateTime<Utc>,
) -> Result<SearchPlan, CoreError> {
    plan_with_limits(
        kind,
        request,
        dictionary,
        indexer,
        access,
        active_since,
        &SearchLimits::default(),
    )
}

/// [`plan`] under configured limits.
pub fn plan_with_limits(
    kind: Kind,
    request: &SearchRequest,
    dictionary: &Dictionary,
    indexer: &Indexer,
    access: SealedAccess,
    active_since: DateTime<Utc>,
    limits: &SearchLimits,
) -> Result<SearchPlan, CoreError> {
    let mut errors = Vec::new();
    if request.terms.len() > limits.max_terms {
        errors.push(FieldError::new(
            "terms",
            format!("at most {} keys", limits.max_terms),
        ));
    }
    let planner = Planner {
        dictionary,
        indexer,
        access,
        active_since,
    };
    let conditions = request
        .terms
        .iter()
        .filter_map(|(key, raw)| {
            let vals = values(key, raw, &mut errors, limits);
            planner.condition(key, &vals, &mut errors)
        })
        .collect();
    let mut not_exists = Vec::new();
    for f in &request.not_exists {
        match dictionary.field(f) {
            Some(_) => not_exists.push(indexer.present(f)),
            None => errors.push(FieldError::new(
                "notExists",
                format!("unknown field '{}'", truncate(f, 100)),
            )),
        }
    }
    let created_from = parse_time("createdFrom", &request.created_from, &mut errors);
    let created_to = parse_time("createdTo", &request.created_to, &mut errors);
    let updated_from = parse_time("updatedFrom", &request.updated_from, &mut errors);
    let updated_to = parse_time("updatedTo", &request.updated_to, &mut errors);
    let (limit, after) = page_bounds(request, &mut errors);
    if !errors.is_empty() {
        return Err(CoreError::Validation(errors));
    }
    Ok(SearchPlan {
        kind,
        match_all: request.match_mode == Match::All,
        conditions,
        created_from,
        created_to,
        updated_from,
        updated_to,
        not_exists,
        limit,
        after,
    })
}

/// What planning a search needs besides the request.
struct Planner<'a> {
    dictionary: &'a Dictionary,
    indexer: &'a Indexer,
    access: SealedAccess,
    active_since: DateTime<Utc>,
}

impl Planner<'_> {
    /// The condition of one search key and its values (OR-ed); `None` when the key is refused.
    fn condition(
        &self,
        key: &str,
        vals: &[serde_json::Value],
        errors: &mut Vec<FieldError>,
    ) -> Option<Condition> {
        let field_name = format!("terms.{}", truncate(key, 100));
        let indexer = self.indexer;
        Some(match key {
            "id" => Condition::Ids(parse_each(vals, &field_name, errors, ids)),
            "customerId" => Condition::CustomerIds(parse_each(vals, &field_name, errors, ids)),
            "parentId" => Condition::ParentIds(parse_each(vals, &field_name, errors, ids)),
            "tags" => Condition::Tokens(
                vals.iter()
                    .map(|v| indexer.tag(&as_text(v).to_lowercase()))
                    .collect(),
            ),
            "contributor" => Condition::Tokens(
                vals.iter()
                    .map(|v| indexer.contributor(&as_text(v)))
                    .collect(),
            ),
            "state" => Condition::States {
                active_since: self.active_since,
                states: parse_each(vals, &field_name, errors, lowercase::<State>),
            },
            "mediaType" => Condition::MediaTypes(parse_each(
                vals,
                &field_name,
                errors,
                lowercase::<MediaType>,
            )),
            field_id => return self.field_condition(field_id, field_name, vals, errors),
        })
    }

    /// The condition on a dictionary field: blind-index tokens of each value, typed as the
    /// field is.
    fn field_condition(
        &self,
        field_id: &str,
        field_name: String,
        vals: &[serde_json::Value],
        errors: &mut Vec<FieldError>,
    ) -> Option<Condition> {
        let refusal = match self.dictionary.field(field_id) {
            None => Err("unknown field or search key"),
            Some(f) if !f.searchable => Err("field is not searchable"),
            Some(f) if f.classification.is_sealed() && self.access == SealedAccess::Withheld => {
                Err("field is withheld from this credential")
            }
            Some(f) => Ok(f),
        };
        let field = match refusal {
            Ok(f) => f,
            Err(why) => {
                errors.push(FieldError::new(field_name, why));
                return None;
            }
        };
        let mut tokens = Vec::with_capacity(vals.len());
        for v in vals {
            // Query values arrive as text; coerce them to the field's type first.
            let typed = coerce(field.data_type, v);
            let Ok(value) = check_value(&relaxed(field), &typed) else {
                errors.push(FieldError::new(
                    field_name.clone(),
                    "value does not fit the field's type",
                ));
                continue;
            };
            tokens.extend(
                match_texts(field.data_type, field_id, &value)
                    .iter()
                    .map(|n| self.indexer.value(field_id, n)),
            );
        }
        Some(Condition::Tokens(tokens))
    }
}

/// An object id from a search value.
fn ids(text: &str) -> Result<ObjectId, String> {
    ObjectId::parse(text).map_err(|_| "values must be object ids".to_owned())
}

/// A wire enum from a search value, in any case.
fn lowercase<T: std::str::FromStr<Err: std::fmt::Display>>(text: &str) -> Result<T, String> {
    text.to_lowercase().parse::<T>().map_err(|e| e.to_string())
}

/// Each value parsed by `parse`; a value that doesn't parse is an error of `field_name`.
fn parse_each<T>(
    vals: &[serde_json::Value],
    field_name: &str,
    errors: &mut Vec<FieldError>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Vec<T> {
    vals.iter()
        .filter_map(|v| match parse(&as_text(v)) {
            Ok(t) => Some(t),
            Err(e) => {
                errors.push(FieldError::new(field_name, e));
                None
            }
        })
        .collect()
}

/// The page size (bounded by `summary`) and the position a cursor resumes after.
fn page_bounds(
    request: &SearchRequest,
    errors: &mut Vec<FieldError>,
) -> (usize, Option<PagePosition>) {
    let (max, default) = if request.summary {
        (MAX_SUMMARY, MAX_SUMMARY)
    } else {
        (MAX_LIMIT, DEFAULT_LIMIT)
    };
    let limit = request.limit.unwrap_or(default);
    if limit == 0 || limit > max {
        errors.push(FieldError::new(
            "limit",
            format!("must be between 1 and {max}"),
        ));
    }
    let after = match request.cursor.as_deref() {
        Some(c) => match decode_cursor(c) {
            Ok(p) => Some(p),
            Err(_) => {
                errors.push(FieldError::new("cursor", "invalid cursor"));
                None
            }
        },
        None => None,
    };
    (limit, after)
}

use crate::dictionary::{DataType, Field};

/// The same field without length and enum limits: a search value need not be a valid
/// value to be looked for, only of the right type.
fn relaxed(field: &Field) -> Field {
    Field {
        max_length: None,
        enum_values: None,
        ..field.clone()
    }
}

/// The normalized texts a checked search value matches: its canonical text, and for a
/// `double` also the texts values were indexed under before numbers had one.
fn match_texts(data_type: DataType, field_id: &str, value: &serde_json::Value) -> Vec<String> {
    let mut texts: Vec<String> = normalize(field_id, value).into_iter().collect();
    if let (DataType::Double, serde_json::Value::Number(n)) = (data_type, value) {
        texts.extend(legacy_double_texts(n));
    }
    texts
}

fn coerce(data_type: DataType, v: &serde_json::Value) -> serde_json::Value {
    let serde_json::Value::String(s) = v else {
        return v.clone();
    };
    let s = s.trim();
    match data_type {
        // `2.0` and `2e0` are the integer 2; check_value refuses what is not an integer.
        DataType::Integer | DataType::Long => match s.parse::<i64>() {
            Ok(n) => serde_json::Value::from(n),
            Err(_) => s
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(serde_json::Value::Number)
                .unwrap_or_else(|| v.clone()),
        },
        DataType::Double => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(serde_json::Value::Number)
            .unwrap_or_else(|| v.clone()),
        DataType::Boolean => match s.to_ascii_lowercase().as_str() {
            "true" => serde_json::Value::Bool(true),
            "false" => serde_json::Value::Bool(false),
            _ => v.clone(),
        },
        DataType::String | DataType::Date => v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        let p = PagePosition {
            time: crate::time::from_millis(1_700_000_000_123),
            id: ObjectId::new(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&p)).ok(), Some(p));
        for bad in [
            "",
            "!!!",
            "MTpub3RhbnVtYmVyOng",
            &URL_SAFE_NO_PAD.encode("2:1:abc"),
        ] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
