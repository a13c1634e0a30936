//! The wire of the Cisco Context Service REST compatibility API (DESIGN.md §4): the shapes
//! that integrations written against the original product send and read under `/context/v1`
//! and `/dictionary`, and pure conversions between them and the native shapes.
//!
//! Nothing here does I/O or applies business rules: the server's compatibility module maps
//! these shapes to the core's ordinary operations, which validate them as they validate
//! native requests.
//!
//! - Objects: [`CompatType`] (the path segment), [`CompatObject`] (what `GET` answers),
//!   [`CompatInput`] (a `POST`/`PUT` body, read leniently), `dataElements` through
//!   [`data_from_elements`] / [`elements_from_data`], references through [`id_from_ref`].
//! - Search: [`query`] (`q`, `startIndex`, `maxEntries`, `sortedBy`, `sortOrder`).
//! - Dictionary: [`dictionary`] (fields and field sets with the console's extra keys).
//! - Errors: [`CompatError`] and [`error_type`]; headers: [`LABMODE_HEADER`],
//!   [`TRACKING_HEADER`], [`LAST_UPDATED_HEADER`].

pub mod dictionary;
pub mod query;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::dictionary::DataType;
use crate::error::{ErrorCode, FieldError, Problem};
use crate::ids::{ObjectId, ParseError, Partition};
use crate::object::{ContextObject, Contributor, DetailType, Kind, MediaType, ObjectInput, State};
use crate::truncate;

pub use dictionary::{
    CompatField, CompatFieldInput, CompatFieldSet, CompatFieldSetInput, DictEntity, InUse,
    InUseStatus,
};
pub use query::{
    parse_q, IdFilter, Query, RawSearchParams, SearchParams, SortBy, SortOrder, Term, Terms,
};

/// The prefix of every object path.
pub const BASE: &str = "/context/v1";
/// Liveness without authentication.
pub const PING: &str = "/context/v1/ping";
/// Create (`POST`) or search (`GET ?q=`) objects of a type.
pub const OBJECTS: &str = "/context/v1/{type}";
/// One object (`GET`, `PUT`, `DELETE`).
pub const OBJECT: &str = "/context/v1/{type}/{id}";

/// `true` selects the lab partition, `false` production; absent means the credential's own.
pub const LABMODE_HEADER: &str = "cisco-context-labmode";
/// The tracking id on every response: the client's `TrackingID` echoed, else a new one.
pub const TRACKING_HEADER: &str = "trackingid";
/// The `lastUpdated` of a created or updated object, as a response header.
pub const LAST_UPDATED_HEADER: &str = "last-updated";
/// Longest client tracking id echoed; a longer or odd one is replaced by a new one.
pub const MAX_TRACKING_ID_CHARS: usize = 128;

/// The built-in field set that makes an activity a work item.
pub const WORKITEM_FIELDSET: &str = "cisco.base.workitem";
/// The built-in field set that makes a detail sent without a type a `feedback`.
pub const RATING_FIELDSET: &str = "cisco.base.rating";

/// An object type as the original API names it in paths and in `type`.
///
/// `pod` is another name of `activity`; `workitem` is an activity that declares the field
/// set [`WORKITEM_FIELDSET`] (a kind of its own for the original API, an activity for the
/// native one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CompatType {
    /// A person.
    Customer,
    /// A case.
    Request,
    /// One interaction.
    Activity,
    /// One interaction (the original product's name).
    Pod,
    /// A work item: an activity with the `cisco.base.workitem` field set.
    Workitem,
    /// A comment or feedback.
    Detail,
}

impl CompatType {
    /// Every type, in path order.
    pub const ALL: [CompatType; 6] = [
        CompatType::Customer,
        CompatType::Request,
        CompatType::Activity,
        CompatType::Pod,
        CompatType::Workitem,
        CompatType::Detail,
    ];

    /// The path segment and `type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            CompatType::Customer => "customer",
            CompatType::Request => "request",
            CompatType::Activity => "activity",
            CompatType::Pod => "pod",
            CompatType::Workitem => "workitem",
            CompatType::Detail => "detail",
        }
    }

    /// The native kind objects of this type are stored as.
    pub fn native_kind(self) -> Kind {
        match self {
            CompatType::Customer => Kind::Customer,
            CompatType::Request => Kind::Request,
            CompatType::Activity | CompatType::Pod | CompatType::Workitem => Kind::Activity,
            CompatType::Detail => Kind::Detail,
        }
    }

    /// The type of a native object as this API sees it: an activity with
    /// [`WORKITEM_FIELDSET`] is a `workitem`, another one an `activity`.
    pub fn of_object(kind: Kind, fieldsets: &[String]) -> CompatType {
        match kind {
            Kind::Customer => CompatType::Customer,
            Kind::Request => CompatType::Request,
            Kind::Activity if fieldsets.iter().any(|f| f == WORKITEM_FIELDSET) => {
                CompatType::Workitem
            }
            Kind::Activity => CompatType::Activity,
            Kind::Detail => CompatType::Detail,
        }
    }

    /// Whether a native object is of this type: `activity` and `pod` take activities that
    /// are not work items, `workitem` only work items.
    pub fn matches(self, kind: Kind, fieldsets: &[String]) -> bool {
        let of = CompatType::of_object(kind, fieldsets);
        of == self || (of == CompatType::Activity && self == CompatType::Pod)
    }

    /// Whether two types name the same objects (`pod` and `activity` do).
    pub fn same_as(self, other: CompatType) -> bool {
        let norm = |t| match t {
            CompatType::Pod => CompatType::Activity,
            t => t,
        };
        norm(self) == norm(other)
    }
}

impl fmt::Display for CompatType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CompatType {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CompatType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                ParseError(format!(
                    "unknown type '{}'; expected one of: customer, request, activity, pod, \
                     workitem, detail",
                    truncate(s, 32)
                ))
            })
    }
}

/// `/context/v1/{type}/{id}`: the `refUrl` of an object.
pub fn ref_url(ty: CompatType, id: impl fmt::Display) -> String {
    format!("{BASE}/{}/{id}", ty.as_str())
}

/// The id a reference names: a plain id, a relative path (`/context/v1/customer/<id>`) or an
/// absolute URL on any host (`https://x.example/context/v1/request/<id>?a=b`). The result is
/// the last path segment, without query or fragment; `None` when there is none. The id is
/// not checked here (the core refuses one that isn't a UUID, naming the field).
pub fn id_from_ref(reference: &str) -> Option<&str> {
    let r = reference.trim();
    let r = r.split(['?', '#']).next().unwrap_or_default();
    let path = match r.find("://") {
        // An absolute URL: the path starts after the authority; a bare host names nothing.
        Some(i) => {
            let rest = &r[i + 3..];
            &rest[rest.find('/')?..]
        }
        None => r,
    };
    let last = path.trim_end_matches('/').rsplit('/').next()?.trim();
    (!last.is_empty()).then_some(last)
}

/// Reads the [`LABMODE_HEADER`]: `true` → lab, `false` → production (any case), absent →
/// `None` (the credential's own partition). The server refuses with 403 a partition that is
/// not the credential's.
pub fn parse_labmode(value: Option<&str>) -> Result<Option<Partition>, ParseError> {
    let Some(v) = value else { return Ok(None) };
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(Some(Partition::Lab)),
        "false" => Ok(Some(Partition::Production)),
        _ => Err(ParseError(format!(
            "{LABMODE_HEADER} must be 'true' or 'false', not '{}'",
            truncate(v, 32)
        ))),
    }
}

/// Whether a client's tracking id may be echoed as is: 1 to [`MAX_TRACKING_ID_CHARS`]
/// visible ASCII characters (no spaces or controls).
pub fn echoable_tracking_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_TRACKING_ID_CHARS && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The `type` a `dataElements` item gives for values of a data type.
pub fn data_type_name(data_type: DataType) -> &'static str {
    match data_type {
        DataType::String => "string",
        DataType::Integer => "integer",
        DataType::Long => "long",
        DataType::Double => "double",
        DataType::Boolean => "boolean",
        DataType::Date => "date",
    }
}

/// The key of a `dataElements` item that is not a field.
const ELEMENT_TYPE_KEY: &str = "type";

/// Reads `dataElements` (`[{"Context_First_Name": "John", "type": "string"}, …]`) into the
/// native `data` map. Each item must be an object holding exactly one field key and,
/// optionally, `"type"` (which is informative: the dictionary decides the type). Errors name
/// the item (`dataElements[2]`): an item that is not an object, one with no field or with
/// several, and a field given in two items.
pub fn data_from_elements(elements: &[Value]) -> Result<BTreeMap<String, Value>, Vec<FieldError>> {
    let mut data = BTreeMap::new();
    let mut errors = Vec::new();
    for (i, element) in elements.iter().enumerate() {
        let at = format!("dataElements[{i}]");
        let Value::Object(item) = element else {
            errors.push(FieldError::new(
                at,
                "expected an object holding one field, like {\"Context_First_Name\": \"John\"}",
            ));
            continue;
        };
        let mut fields = item.iter().filter(|(k, _)| *k != ELEMENT_TYPE_KEY);
        match (fields.next(), fields.next()) {
            (None, _) => errors.push(FieldError::new(at, "holds no field")),
            (Some(_), Some(_)) => errors.push(FieldError::new(
                at,
                "holds several fields; give each field in an item of its own",
            )),
            (Some((field, value)), None) => {
                if data.insert(field.clone(), value.clone()).is_some() {
                    errors.push(FieldError::new(
                        at,
                        format!("field '{}' is given twice", truncate(field, 100)),
                    ));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(data)
    } else {
        Err(errors)
    }
}

/// Writes the native `data` map as `dataElements`, one item per field in field order, with
/// `"type"` when `types` knows the field's type (see [`data_type_name`]).
pub fn elements_from_data(
    data: &BTreeMap<String, Value>,
    types: impl Fn(&str) -> Option<&'static str>,
) -> Vec<Value> {
    data.iter()
        .map(|(field, value)| {
            let mut item = serde_json::Map::new();
            item.insert(field.clone(), value.clone());
            if let Some(t) = types(field) {
                item.insert(ELEMENT_TYPE_KEY.to_owned(), Value::from(t));
            }
            Value::Object(item)
        })
        .collect()
}

/// A value as sent through this API, converted to the JSON type the native API stores for
/// `data_type` when it converts cleanly: text `"5"` for an integer field becomes `5`,
/// `"true"` for a boolean `true`, a number or boolean for a string field its text. Anything
/// else is returned unchanged, for the core's validation to refuse with a per-field error.
pub fn coerce_value(data_type: DataType, value: Value) -> Value {
    let number = |s: &str| {
        s.parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
    };
    match (data_type, &value) {
        (DataType::String, Value::Number(n)) => Value::String(n.to_string()),
        (DataType::String, Value::Bool(b)) => Value::String(b.to_string()),
        (DataType::Integer | DataType::Long, Value::String(s)) => {
            let s = s.trim();
            match s.parse::<i64>() {
                Ok(n) => Value::from(n),
                Err(_) => number(s).unwrap_or(value),
            }
        }
        (DataType::Double, Value::String(s)) => number(s.trim()).unwrap_or(value),
        (DataType::Boolean, Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => value,
        },
        _ => value,
    }
}

/// An object as `GET /context/v1/{type}/{id}` (and search, and create) answers it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompatObject {
    /// Server-assigned UUIDv7.
    #[schema(value_type = String, format = Uuid)]
    pub id: ObjectId,
    /// The type the client named (its path's).
    #[serde(rename = "type")]
    pub kind: CompatType,
    /// `/context/v1/{type}/{id}`.
    pub ref_url: String,
    /// `/context/v1/customer/{customerId}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_ref_url: Option<String>,
    /// `/context/v1/{request|activity}/{parentId}`, when the parent's type is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_ref_url: Option<String>,
    /// The customer this object belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub customer_id: Option<ObjectId>,
    /// The request or activity it hangs under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub parent_id: Option<ObjectId>,
    /// `active` or `closed`.
    pub state: State,
    /// The channel, for activities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    /// The field sets `dataElements` draws from.
    pub fieldsets: Vec<String>,
    /// One item per field: `{"<field>": value, "type": "<data type>"}`.
    #[schema(value_type = Vec<Object>)]
    pub data_elements: Vec<Value>,
    /// Free tags.
    pub tags: Vec<String>,
    /// Everyone who wrote to the object, in order of first write.
    pub contributors: Vec<Contributor>,
    /// Creation time.
    #[serde(with = "crate::time::rfc3339_ms")]
    pub created: DateTime<Utc>,
    /// Last write; send it back in a `PUT` as the concurrency token.
    #[serde(with = "crate::time::rfc3339_ms")]
    pub last_updated: DateTime<Utc>,
}

impl CompatObject {
    /// The compatibility view of a native object read through the path type `ty` (which
    /// `type` and `refUrl` echo). `parent` is the type of the parent object when known; for an
    /// activity it defaults to `request`, for a detail `parentRefUrl` is left out without it.
    /// `types` gives a field's data type for the `dataElements` items.
    pub fn from_native(
        object: &ContextObject,
        ty: CompatType,
        parent: Option<CompatType>,
        types: impl Fn(&str) -> Option<&'static str>,
    ) -> Self {
        let parent = parent.or(match object.kind {
            Kind::Activity => Some(CompatType::Request),
            _ => None,
        });
        Self {
            id: object.id,
            kind: ty,
            ref_url: ref_url(ty, object.id),
            customer_ref_url: object.customer_id.map(|c| ref_url(CompatType::Customer, c)),
            parent_ref_url: object.parent_id.zip(parent).map(|(p, t)| ref_url(t, p)),
            customer_id: object.customer_id,
            parent_id: object.parent_id,
            state: object.state,
            media_type: object.media_type,
            fieldsets: object.fieldsets.clone(),
            data_elements: elements_from_data(&object.data, types),
            tags: object.tags.clone(),
            contributors: object.contributors.clone(),
            created: object.created,
            last_updated: object.last_updated,
        }
    }
}

/// The body of `POST /context/v1/{type}` and `PUT /context/v1/{type}/{id}`, read leniently so
/// that a client may send back the whole object a `GET` returned plus keys its library adds:
/// every member is optional, and unknown or read-only top-level keys (`id`, `refUrl`,
/// `created`, `contributors`, `trackingId`, …) are ignored. Unknown fields inside
/// `dataElements` are not: the core refuses them (400).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompatInput {
    /// Must name the path's kind if given; for a detail also `comment`, `feedback`,
    /// `detail.comment` or `detail.feedback`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Owning customer, as an id or a reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// Owning customer, as a reference (relative or absolute, any host) or an id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_ref_url: Option<String>,
    /// Parent request or activity, as an id or a reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Parent request or activity, as a reference (relative or absolute, any host) or an id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_ref_url: Option<String>,
    /// `active` or `closed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The channel, for activities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// `comment` or `feedback`, for details; see [`CompatInput::into_native`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail_type: Option<String>,
    /// Field sets `dataElements` draws from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fieldsets: Option<Vec<String>>,
    /// One item per field, see [`data_from_elements`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub data_elements: Option<Vec<Value>>,
    /// Tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// On `PUT`: the `lastUpdated` read (RFC 3339, or milliseconds since the epoch), the
    /// concurrency token; a stale one is a 409. Ignored on `POST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub last_updated: Option<Value>,
}

impl CompatInput {
    /// The concurrency token `lastUpdated`, if sent: an RFC 3339 time or a number of
    /// milliseconds since the epoch; `null` is the same as absent.
    pub fn last_updated(&self) -> Result<Option<DateTime<Utc>>, FieldError> {
        let bad = || {
            FieldError::new(
                "lastUpdated",
                "expected the lastUpdated read, as an RFC 3339 time",
            )
        };
        match &self.last_updated {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => DateTime::parse_from_rfc3339(s.trim())
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(|_| bad()),
            Some(Value::Number(n)) => n
                .as_i64()
                .and_then(DateTime::from_timestamp_millis)
                .map(Some)
                .ok_or_else(bad),
            Some(_) => Err(bad()),
        }
    }

    /// The native body for objects of the path type `ty` (without `version`: the server
    /// checks [`CompatInput::last_updated`] against the stored object and supplies it).
    ///
    /// - `customerRefUrl`/`parentRefUrl` and `customerId`/`parentId` may each be an id or a
    ///   reference ([`id_from_ref`]); both may be given if they name the same id.
    /// - `dataElements` become `data` ([`data_from_elements`]).
    /// - A `workitem` declares [`WORKITEM_FIELDSET`] even if the body forgot it.
    /// - A detail's `detailType` is the body's `detailType`, else the subtype its `type`
    ///   names (`detail.feedback`), else `feedback` if it declares [`RATING_FIELDSET`], else
    ///   `comment`.
    ///
    /// Errors name the body's members; values the core checks (states, media types, ids,
    /// fields) are passed on unchecked.
    pub fn into_native(self, ty: CompatType) -> Result<ObjectInput, Vec<FieldError>> {
        let mut errors = Vec::new();
        let kind = ty.native_kind();
        let mut named_detail = None;
        if let Some(t) = self
            .kind
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            match body_type(t) {
                Some((k, detail)) if k == kind => named_detail = detail,
                Some(_) => errors.push(FieldError::new(
                    "type",
                    format!(
                        "'{}' does not match the path's type '{ty}'",
                        truncate(t, 32)
                    ),
                )),
                None => errors.push(FieldError::new(
                    "type",
                    format!("unknown type '{}'", truncate(t, 32)),
                )),
            }
        }
        let customer_id = link(
            "customerId",
            self.customer_id.as_deref(),
            "customerRefUrl",
            self.customer_ref_url.as_deref(),
            &mut errors,
        );
        let parent_id = link(
            "parentId",
            self.parent_id.as_deref(),
            "parentRefUrl",
            self.parent_ref_url.as_deref(),
            &mut errors,
        );
        let data = match data_from_elements(self.data_elements.as_deref().unwrap_or_default()) {
            Ok(data) => data,
            Err(e) => {
                errors.extend(e);
                BTreeMap::new()
            }
        };
        let mut fieldsets = self.fieldsets.unwrap_or_default();
        if ty == CompatType::Workitem && !fieldsets.iter().any(|f| f == WORKITEM_FIELDSET) {
            fieldsets.push(WORKITEM_FIELDSET.to_owned());
        }
        let detail_type = if kind == Kind::Detail {
            let given = self
                .detail_type
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty());
            match given {
                Some(t) => match t.to_ascii_lowercase().parse::<DetailType>() {
                    Ok(d) => Some(d),
                    Err(e) => {
                        errors.push(FieldError::new("detailType", e.0));
                        None
                    }
                },
                None => Some(named_detail.unwrap_or(
                    if fieldsets.iter().any(|f| f == RATING_FIELDSET) {
                        DetailType::Feedback
                    } else {
                        DetailType::Comment
                    },
                )),
            }
        } else {
            None
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ObjectInput {
            kind: Some(kind.as_str().to_owned()),
            customer_id,
            parent_id,
            state: self.state,
            media_type: self.media_type,
            detail_type: detail_type.map(|d| d.as_str().to_owned()),
            fieldsets,
            data,
            tags: self.tags.unwrap_or_default(),
            ..ObjectInput::default()
        })
    }
}

/// The native kind (and detail subtype) a body's `type` names.
fn body_type(t: &str) -> Option<(Kind, Option<DetailType>)> {
    let t = t.to_ascii_lowercase();
    let sub = t.strip_prefix("detail.").unwrap_or(&t);
    if let Ok(d) = sub.parse::<DetailType>() {
        return Some((Kind::Detail, Some(d)));
    }
    t.parse::<CompatType>()
        .ok()
        .map(|c| (c.native_kind(), None))
}

/// One link given as an id and/or a reference: the id they name.
fn link(
    id_key: &str,
    id: Option<&str>,
    ref_key: &str,
    reference: Option<&str>,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let by_id = id.and_then(id_from_ref);
    let by_ref = reference.and_then(id_from_ref);
    match (by_id, by_ref) {
        (Some(a), Some(b)) if !a.eq_ignore_ascii_case(b) => {
            errors.push(FieldError::new(
                ref_key,
                format!(
                    "names '{}' but {id_key} is '{}'",
                    truncate(b, 64),
                    truncate(a, 64)
                ),
            ));
            None
        }
        (a, b) => a.or(b).map(str::to_owned),
    }
}

/// An error in the original style: `{"errorType", "errorMessage", "errorData"}`, answered
/// with the status of the native [`ErrorCode`] it stands for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompatError {
    /// The kind of error, see [`error_type`].
    pub error_type: String,
    /// What went wrong this time.
    pub error_message: String,
    /// Details: `{"code": "<native code>", "errors": [{field, message}]?, "currentVersion"?}`.
    #[schema(value_type = Option<Object>)]
    pub error_data: Option<Value>,
}

impl CompatError {
    /// An error of `code` with this message and no data.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error_type: error_type(code).to_owned(),
            error_message: message.into(),
            error_data: None,
        }
    }

    /// The original-style form of a native problem document: its `detail` becomes
    /// `errorMessage`; its code, per-field errors and current version go in `errorData`.
    /// A problem that names no known code is an `internalError`.
    pub fn from_problem(problem: &Problem) -> Self {
        let code = problem.code().unwrap_or(ErrorCode::Internal);
        let mut data = serde_json::Map::new();
        data.insert("code".to_owned(), Value::from(code.code()));
        if !problem.errors.is_empty() {
            data.insert(
                "errors".to_owned(),
                serde_json::to_value(&problem.errors).unwrap_or_default(),
            );
        }
        if let Some(v) = problem.current_version {
            data.insert("currentVersion".to_owned(), Value::from(v));
        }
        Self {
            error_type: error_type(code).to_owned(),
            error_message: problem.detail.clone(),
            error_data: Some(Value::Object(data)),
        }
    }
}

/// The original-style `errorType` of a native error code:
///
/// | `errorType` | codes (status) |
/// |---|---|
/// | `badRequest` | bad-request, malformed-json (400) |
/// | `invalidInput` | validation (400) |
/// | `notAuthorized` | unauthorized (401) |
/// | `forbidden` | forbidden (403) |
/// | `notFound` | not-found (404) |
/// | `methodNotAllowed` | method-not-allowed (405) |
/// | `requestTimeout` | request-timeout (408) |
/// | `conflict` | conflict, version-conflict, parent-closed, closed, contended, last-admin (409) |
/// | `alreadyExists` | already-exists (409) |
/// | `inUse` | in-use (409) |
/// | `tooLarge` | too-large, headers-too-large (413, 431) |
/// | `unsupportedMediaType` | unsupported-media-type (415) |
/// | `tooManyRequests` | rate-limited (429) |
/// | `internalError` | internal, keys (500) |
/// | `serviceUnavailable` | audit-unavailable, storage (503) |
///
/// The precise native code travels in `errorData.code` ([`CompatError::from_problem`]).
pub fn error_type(code: ErrorCode) -> &'static str {
    use ErrorCode as C;
    match code {
        C::BadRequest | C::MalformedJson => "badRequest",
        C::Validation => "invalidInput",
        C::Unauthorized => "notAuthorized",
        C::Forbidden => "forbidden",
        C::NotFound => "notFound",
        C::MethodNotAllowed => "methodNotAllowed",
        C::RequestTimeout => "requestTimeout",
        C::Conflict
        | C::VersionConflict
        | C::ParentClosed
        | C::Closed
        | C::Contended
        | C::LastAdmin => "conflict",
        C::AlreadyExists => "alreadyExists",
        C::InUse => "inUse",
        C::TooLarge | C::HeadersTooLarge => "tooLarge",
        C::UnsupportedMediaType => "unsupportedMediaType",
        C::RateLimited => "tooManyRequests",
        C::Internal | C::Keys => "internalError",
        C::AuditUnavailable | C::Storage => "serviceUnavailable",
    }
}

/// `GET /context/v1/ping` answer (no token needed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CompatPing {
    /// Always `pong`.
    pub message: String,
}

impl CompatPing {
    /// `{"message": "pong"}`.
    pub fn pong() -> Self {
        Self {
            message: "pong".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id() -> ObjectId {
        ObjectId::parse("0191d2a0-0000-7000-8000-000000000001").unwrap()
    }

    #[test]
    fn types_parse_from_path_segments_and_map_to_native_kinds() {
        for t in CompatType::ALL {
            assert_eq!(t.as_str().parse::<CompatType>(), Ok(t));
            assert_eq!(t.to_string(), t.as_str());
            assert_eq!(serde_json::to_value(t).unwrap(), Value::from(t.as_str()));
        }
        assert_eq!(CompatType::Pod.native_kind(), Kind::Activity);
        assert_eq!(CompatType::Activity.native_kind(), Kind::Activity);
        assert_eq!(CompatType::Workitem.native_kind(), Kind::Activity);
        assert_eq!(CompatType::Detail.native_kind(), Kind::Detail);
        assert_eq!(CompatType::Customer.native_kind(), Kind::Customer);
        assert_eq!(CompatType::Request.native_kind(), Kind::Request);
        let e = "pods".parse::<CompatType>().unwrap_err();
        assert!(e.0.contains("unknown type 'pods'") && e.0.contains("workitem"));
        assert!("Customer".parse::<CompatType>().is_err());
    }

    #[test]
    fn workitems_are_activities_with_their_field_set() {
        let wi = vec![WORKITEM_FIELDSET.to_owned()];
        let pod = vec!["cisco.base.pod".to_owned()];
        assert_eq!(
            CompatType::of_object(Kind::Activity, &wi),
            CompatType::Workitem
        );
        assert_eq!(
            CompatType::of_object(Kind::Activity, &pod),
            CompatType::Activity
        );
        assert!(CompatType::Workitem.matches(Kind::Activity, &wi));
        assert!(!CompatType::Workitem.matches(Kind::Activity, &pod));
        assert!(CompatType::Pod.matches(Kind::Activity, &pod));
        assert!(CompatType::Activity.matches(Kind::Activity, &pod));
        assert!(!CompatType::Pod.matches(Kind::Activity, &wi));
        assert!(!CompatType::Request.matches(Kind::Activity, &pod));
        assert!(CompatType::Detail.matches(Kind::Detail, &[]));
        assert!(CompatType::Pod.same_as(CompatType::Activity));
        assert!(!CompatType::Pod.same_as(CompatType::Workitem));
    }

    #[test]
    fn ref_urls_are_paths() {
        assert_eq!(
            ref_url(CompatType::Pod, id()),
            "/context/v1/pod/0191d2a0-0000-7000-8000-000000000001"
        );
    }

    #[test]
    fn references_are_read_relative_absolute_on_any_host_or_plain() {
        let i = "0191d2a0-0000-7000-8000-000000000001";
        assert_eq!(id_from_ref(i), Some(i));
        assert_eq!(id_from_ref(&format!(" {i} ")), Some(i));
        assert_eq!(id_from_ref(&format!("/context/v1/customer/{i}")), Some(i));
        assert_eq!(id_from_ref(&format!("context/v1/customer/{i}/")), Some(i));
        assert_eq!(
            id_from_ref(&format!("https://x.example/context/v1/request/{i}?a=b")),
            Some(i)
        );
        assert_eq!(
            id_from_ref(&format!(
                "https://context-service.rciad.ciscoccservice.com:443/context/v1/pod/{i}#frag"
            )),
            Some(i)
        );
        assert_eq!(
            id_from_ref(&format!("http://localhost:8080/context/v1/customer/{i}")),
            Some(i)
        );
        assert_eq!(id_from_ref(""), None);
        assert_eq!(id_from_ref("   "), None);
        assert_eq!(id_from_ref("/"), None);
        assert_eq!(id_from_ref("https://x.example"), None);
        assert_eq!(id_from_ref("https://x.example/"), None);
        assert_eq!(id_from_ref("?a=b"), None);
    }

    #[test]
    fn labmode_selects_a_partition_and_absent_means_the_credentials() {
        assert_eq!(parse_labmode(None), Ok(None));
        assert_eq!(parse_labmode(Some("true")), Ok(Some(Partition::Lab)));
        assert_eq!(parse_labmode(Some(" TRUE ")), Ok(Some(Partition::Lab)));
        assert_eq!(
            parse_labmode(Some("false")),
            Ok(Some(Partition::Production))
        );
        let e = parse_labmode(Some("yes")).unwrap_err();
        assert!(e.0.contains("cisco-context-labmode"), "{e}");
        assert_eq!(LABMODE_HEADER, "cisco-context-labmode");
        assert_eq!(TRACKING_HEADER, "trackingid");
    }

    #[test]
    fn tracking_ids_are_echoed_only_when_tame() {
        assert!(echoable_tracking_id("CCS_1234-abcd"));
        assert!(!echoable_tracking_id(""));
        assert!(!echoable_tracking_id("a b"));
        assert!(!echoable_tracking_id("a\r\nb"));
        assert!(!echoable_tracking_id("é"));
        assert!(!echoable_tracking_id(
            &"x".repeat(MAX_TRACKING_ID_CHARS + 1)
        ));
        assert!(echoable_tracking_id(&"x".repeat(MAX_TRACKING_ID_CHARS)));
    }

    #[test]
    fn data_elements_with_and_without_type_become_data() {
        let elements = vec![
            json!({"Context_First_Name": "John", "type": "string"}),
            json!({"Context_Last_Name": "Doe"}),
            json!({"type": "integer", "cccRatingPoints": 5}),
        ];
        let data = data_from_elements(&elements).unwrap();
        assert_eq!(
            data,
            BTreeMap::from([
                ("Context_First_Name".to_owned(), json!("John")),
                ("Context_Last_Name".to_owned(), json!("Doe")),
                ("cccRatingPoints".to_owned(), json!(5)),
            ])
        );
        assert_eq!(data_from_elements(&[]).unwrap(), BTreeMap::new());
    }

    #[test]
    fn bad_data_elements_are_named_by_position() {
        let elements = vec![
            json!({"Context_First_Name": "John"}),
            json!("Context_Last_Name=Doe"),
            json!({"type": "string"}),
            json!({"a": 1, "b": 2, "type": "string"}),
            json!({"Context_First_Name": "Jack"}),
            json!({}),
        ];
        let errors = data_from_elements(&elements).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "dataElements[1]",
                "dataElements[2]",
                "dataElements[3]",
                "dataElements[4]",
                "dataElements[5]"
            ]
        );
        assert!(errors[0].message.contains("expected an object"));
        assert!(errors[1].message.contains("no field"));
        assert!(errors[2].message.contains("several fields"));
        assert!(errors[3]
            .message
            .contains("'Context_First_Name' is given twice"));
    }

    #[test]
    fn data_becomes_elements_with_type_when_known() {
        let data = BTreeMap::from([
            ("Context_First_Name".to_owned(), json!("John")),
            ("Mystery".to_owned(), json!(1)),
        ]);
        let elements = elements_from_data(&data, |f| {
            (f == "Context_First_Name").then_some(data_type_name(DataType::String))
        });
        assert_eq!(
            elements,
            vec![
                json!({"Context_First_Name": "John", "type": "string"}),
                json!({"Mystery": 1}),
            ]
        );
        // And back.
        assert_eq!(data_from_elements(&elements).unwrap(), data);
    }

    #[test]
    fn values_are_coerced_to_the_field_type_when_clean() {
        assert_eq!(coerce_value(DataType::Integer, json!("5")), json!(5));
        assert_eq!(coerce_value(DataType::Long, json!(" 12 ")), json!(12));
        assert_eq!(coerce_value(DataType::Integer, json!("2.0")), json!(2.0));
        assert_eq!(coerce_value(DataType::Double, json!("2.5")), json!(2.5));
        assert_eq!(coerce_value(DataType::Boolean, json!("TRUE")), json!(true));
        assert_eq!(
            coerce_value(DataType::Boolean, json!("false")),
            json!(false)
        );
        assert_eq!(coerce_value(DataType::String, json!(42)), json!("42"));
        assert_eq!(coerce_value(DataType::String, json!(true)), json!("true"));
        // Left for the core to refuse.
        assert_eq!(
            coerce_value(DataType::Integer, json!("five")),
            json!("five")
        );
        assert_eq!(coerce_value(DataType::Boolean, json!("yes")), json!("yes"));
        assert_eq!(coerce_value(DataType::String, json!([1])), json!([1]));
        assert_eq!(
            coerce_value(DataType::Date, json!("2026-01-01T00:00:00Z")),
            json!("2026-01-01T00:00:00Z")
        );
    }

    fn native(kind: Kind) -> ContextObject {
        let t = DateTime::parse_from_rfc3339("2026-11-21T08:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        ContextObject {
            id: id(),
            kind,
            customer_id: Some(ObjectId::parse("0191d2a0-0000-7000-8000-00000000000c").unwrap()),
            parent_id: Some(ObjectId::parse("0191d2a0-0000-7000-8000-00000000000f").unwrap()),
            state: State::Active,
            media_type: Some(MediaType::Chat),
            detail_type: None,
            fieldsets: vec!["cisco.base.pod".to_owned()],
            data: BTreeMap::from([("Context_Notes".to_owned(), json!("Bike makes a noise"))]),
            tags: vec!["moto".to_owned()],
            contributors: vec![Contributor {
                id: "agent-1".to_owned(),
                kind: crate::object::ContributorType::User,
            }],
            withheld: vec![],
            created: t,
            last_updated: t,
            version: 3,
        }
    }

    #[test]
    fn an_object_on_the_wire_has_every_section_4_member() {
        let o = CompatObject::from_native(&native(Kind::Activity), CompatType::Pod, None, |_| {
            Some("string")
        });
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(
            v,
            json!({
                "id": "0191d2a0-0000-7000-8000-000000000001",
                "type": "pod",
                "refUrl": "/context/v1/pod/0191d2a0-0000-7000-8000-000000000001",
                "customerRefUrl": "/context/v1/customer/0191d2a0-0000-7000-8000-00000000000c",
                "parentRefUrl": "/context/v1/request/0191d2a0-0000-7000-8000-00000000000f",
                "customerId": "0191d2a0-0000-7000-8000-00000000000c",
                "parentId": "0191d2a0-0000-7000-8000-00000000000f",
                "state": "active",
                "mediaType": "chat",
                "fieldsets": ["cisco.base.pod"],
                "dataElements": [{"Context_Notes": "Bike makes a noise", "type": "string"}],
                "tags": ["moto"],
                "contributors": [{"id": "agent-1", "type": "user"}],
                "created": "2026-11-21T08:00:00.123Z",
                "lastUpdated": "2026-11-21T08:00:00.123Z",
            })
        );
        let back: CompatObject = serde_json::from_value(v).unwrap();
        assert_eq!(back, o);
    }

    #[test]
    fn absent_optionals_are_left_out() {
        let mut c = native(Kind::Customer);
        c.customer_id = None;
        c.parent_id = None;
        c.media_type = None;
        let v = serde_json::to_value(CompatObject::from_native(
            &c,
            CompatType::Customer,
            None,
            |_| None,
        ))
        .unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        for absent in [
            "customerRefUrl",
            "parentRefUrl",
            "customerId",
            "parentId",
            "mediaType",
            "detailType",
            "version",
            "data",
            "withheld",
        ] {
            assert!(!keys.iter().any(|k| k == absent), "{absent} in {keys:?}");
        }
        assert_eq!(
            v["dataElements"],
            json!([{"Context_Notes": "Bike makes a noise"}])
        );
    }

    #[test]
    fn a_details_parent_ref_needs_the_parent_type() {
        let d = native(Kind::Detail);
        let unknown = CompatObject::from_native(&d, CompatType::Detail, None, |_| None);
        assert_eq!(unknown.parent_ref_url, None);
        assert!(unknown.parent_id.is_some());
        let known =
            CompatObject::from_native(&d, CompatType::Detail, Some(CompatType::Pod), |_| None);
        assert_eq!(
            known.parent_ref_url.as_deref(),
            Some("/context/v1/pod/0191d2a0-0000-7000-8000-00000000000f")
        );
    }

    #[test]
    fn a_get_body_sent_back_with_client_keys_is_read_and_its_read_only_keys_ignored() {
        let got = serde_json::to_value(CompatObject::from_native(
            &native(Kind::Activity),
            CompatType::Pod,
            None,
            |_| Some("string"),
        ))
        .unwrap();
        let mut body = got.as_object().unwrap().clone();
        body.insert("trackingId".to_owned(), json!("CCS_42"));
        body.insert("someFutureKey".to_owned(), json!({"x": [1, 2]}));
        let input: CompatInput = serde_json::from_value(Value::Object(body)).unwrap();
        assert_eq!(
            input.last_updated().unwrap(),
            Some(native(Kind::Activity).last_updated)
        );
        let n = input.into_native(CompatType::Pod).unwrap();
        assert_eq!(n.kind.as_deref(), Some("activity"));
        assert_eq!(
            n.customer_id.as_deref(),
            Some("0191d2a0-0000-7000-8000-00000000000c")
        );
        assert_eq!(
            n.parent_id.as_deref(),
            Some("0191d2a0-0000-7000-8000-00000000000f")
        );
        assert_eq!(n.state.as_deref(), Some("active"));
        assert_eq!(n.media_type.as_deref(), Some("chat"));
        assert_eq!(n.detail_type, None);
        assert_eq!(n.fieldsets, ["cisco.base.pod"]);
        assert_eq!(n.data, native(Kind::Activity).data);
        assert_eq!(n.tags, ["moto"]);
        assert_eq!(n.version, None);
        assert!(n.id.is_none() && n.created.is_none() && n.contributors.is_none());
        assert!(n.last_updated.is_none());
    }

    #[test]
    fn links_are_read_from_ids_or_references_of_any_form() {
        let c = "0191d2a0-0000-7000-8000-00000000000c";
        let p = "0191d2a0-0000-7000-8000-00000000000f";
        let input: CompatInput = serde_json::from_value(json!({
            "customerRefUrl": format!("https://old.example.com/context/v1/customer/{c}"),
            "parentRefUrl": format!("/context/v1/request/{p}"),
            "mediaType": "voice",
        }))
        .unwrap();
        let n = input.into_native(CompatType::Activity).unwrap();
        assert_eq!(n.customer_id.as_deref(), Some(c));
        assert_eq!(n.parent_id.as_deref(), Some(p));

        let input: CompatInput =
            serde_json::from_value(json!({"customerId": c, "parentId": p})).unwrap();
        let n = input.into_native(CompatType::Request).unwrap();
        assert_eq!(
            (n.customer_id.as_deref(), n.parent_id.as_deref()),
            (Some(c), Some(p))
        );

        // An empty reference is no reference.
        let input: CompatInput = serde_json::from_value(json!({"customerRefUrl": ""})).unwrap();
        assert_eq!(
            input.into_native(CompatType::Request).unwrap().customer_id,
            None
        );

        // Two different customers named.
        let input: CompatInput = serde_json::from_value(json!({
            "customerId": c,
            "customerRefUrl": format!("/context/v1/customer/{p}"),
        }))
        .unwrap();
        let e = input.into_native(CompatType::Request).unwrap_err();
        assert_eq!(e[0].field, "customerRefUrl");
        assert!(e[0].message.contains(p) && e[0].message.contains(c));
    }

    #[test]
    fn the_body_type_must_match_the_path() {
        let body = |t: &str| serde_json::from_value::<CompatInput>(json!({"type": t})).unwrap();
        assert!(body("pod").into_native(CompatType::Activity).is_ok());
        assert!(body("activity").into_native(CompatType::Pod).is_ok());
        assert!(body("customer").into_native(CompatType::Customer).is_ok());
        let e = body("request")
            .into_native(CompatType::Customer)
            .unwrap_err();
        assert_eq!(e[0].field, "type");
        assert!(e[0]
            .message
            .contains("does not match the path's type 'customer'"));
        let e = body("thing").into_native(CompatType::Customer).unwrap_err();
        assert!(e[0].message.contains("unknown type 'thing'"));
        assert!(body("").into_native(CompatType::Customer).is_ok());
    }

    #[test]
    fn a_detail_without_a_type_is_a_comment_unless_it_is_a_rating() {
        let detail = |v: Value| {
            serde_json::from_value::<CompatInput>(v)
                .unwrap()
                .into_native(CompatType::Detail)
                .unwrap()
                .detail_type
        };
        assert_eq!(detail(json!({})).as_deref(), Some("comment"));
        assert_eq!(
            detail(json!({"type": "detail", "fieldsets": ["cisco.base.comment"]})).as_deref(),
            Some("comment")
        );
        assert_eq!(
            detail(json!({"fieldsets": ["cisco.base.rating"]})).as_deref(),
            Some("feedback")
        );
        assert_eq!(
            detail(json!({"type": "detail.feedback"})).as_deref(),
            Some("feedback")
        );
        assert_eq!(
            detail(json!({"type": "comment"})).as_deref(),
            Some("comment")
        );
        assert_eq!(
            detail(json!({"detailType": "Feedback", "fieldsets": []})).as_deref(),
            Some("feedback")
        );
        let e = serde_json::from_value::<CompatInput>(json!({"detailType": "praise"}))
            .unwrap()
            .into_native(CompatType::Detail)
            .unwrap_err();
        assert_eq!(e[0].field, "detailType");
        // Not a detail: no detail type.
        assert_eq!(
            serde_json::from_value::<CompatInput>(json!({"detailType": "comment"}))
                .unwrap()
                .into_native(CompatType::Customer)
                .unwrap()
                .detail_type,
            None
        );
        // A detail subtype is not a request.
        assert!(
            serde_json::from_value::<CompatInput>(json!({"type": "feedback"}))
                .unwrap()
                .into_native(CompatType::Request)
                .is_err()
        );
    }

    #[test]
    fn a_workitem_declares_its_field_set() {
        let input: CompatInput = serde_json::from_value(json!({
            "dataElements": [{"Context_Title": "Call back", "type": "string"}],
        }))
        .unwrap();
        let n = input.clone().into_native(CompatType::Workitem).unwrap();
        assert_eq!(n.kind.as_deref(), Some("activity"));
        assert_eq!(n.fieldsets, [WORKITEM_FIELDSET]);
        let mut twice = input;
        twice.fieldsets = Some(vec![WORKITEM_FIELDSET.to_owned()]);
        assert_eq!(
            twice.into_native(CompatType::Workitem).unwrap().fieldsets,
            [WORKITEM_FIELDSET]
        );
    }

    #[test]
    fn bad_elements_and_bad_links_are_all_reported() {
        let input: CompatInput = serde_json::from_value(json!({
            "type": "request",
            "dataElements": [{"a": 1, "b": 2}, 7],
        }))
        .unwrap();
        let e = input.into_native(CompatType::Customer).unwrap_err();
        let fields: Vec<_> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["type", "dataElements[0]", "dataElements[1]"]);
    }

    #[test]
    fn nulls_and_absent_members_are_the_same() {
        let input: CompatInput = serde_json::from_value(json!({
            "customerId": null, "fieldsets": null, "dataElements": null, "tags": null,
            "lastUpdated": null, "state": null,
        }))
        .unwrap();
        assert_eq!(input, CompatInput::default());
        assert_eq!(input.last_updated(), Ok(None));
        let n = input.into_native(CompatType::Customer).unwrap();
        assert!(n.fieldsets.is_empty() && n.data.is_empty() && n.tags.is_empty());
    }

    #[test]
    fn the_concurrency_token_is_a_time_or_epoch_milliseconds() {
        let lu = |v: Value| {
            CompatInput {
                last_updated: Some(v),
                ..CompatInput::default()
            }
            .last_updated()
        };
        let t = DateTime::parse_from_rfc3339("2026-11-21T08:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(lu(json!("2026-11-21T08:00:00.123Z")), Ok(Some(t)));
        assert_eq!(lu(json!("2026-11-21T09:00:00.123+01:00")), Ok(Some(t)));
        assert_eq!(lu(json!(t.timestamp_millis())), Ok(Some(t)));
        for bad in [json!("yesterday"), json!(true), json!([]), json!(1.5)] {
            assert_eq!(lu(bad).unwrap_err().field, "lastUpdated");
        }
    }

    #[test]
    fn error_types_cover_every_code_in_camel_case() {
        for code in ErrorCode::ALL {
            let t = error_type(*code);
            assert!(t.chars().next().unwrap().is_ascii_lowercase(), "{t}");
            assert!(t.chars().all(|c| c.is_ascii_alphabetic()), "{t}");
        }
        assert_eq!(error_type(ErrorCode::NotFound), "notFound");
        assert_eq!(error_type(ErrorCode::Validation), "invalidInput");
        assert_eq!(error_type(ErrorCode::Unauthorized), "notAuthorized");
        assert_eq!(error_type(ErrorCode::Forbidden), "forbidden");
        assert_eq!(error_type(ErrorCode::VersionConflict), "conflict");
        assert_eq!(error_type(ErrorCode::TooLarge), "tooLarge");
        assert_eq!(error_type(ErrorCode::Storage), "serviceUnavailable");
    }

    #[test]
    fn errors_have_the_original_shape() {
        let e = CompatError::new(ErrorCode::NotFound, "no such customer");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"errorType": "notFound", "errorMessage": "no such customer", "errorData": null})
        );
        let mut p = Problem::new(ErrorCode::Validation, "2 invalid fields");
        p.errors = vec![FieldError::new("data.Nope", "unknown field")];
        let e = CompatError::from_problem(&p);
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({
                "errorType": "invalidInput",
                "errorMessage": "2 invalid fields",
                "errorData": {"code": "validation", "errors": [{"field": "data.Nope", "message": "unknown field"}]},
            })
        );
        let mut p = Problem::new(ErrorCode::VersionConflict, "stale");
        p.current_version = Some(4);
        assert_eq!(
            CompatError::from_problem(&p).error_data,
            Some(json!({"code": "version-conflict", "currentVersion": 4}))
        );
        let mut p = Problem::new(ErrorCode::NotFound, "x");
        p.kind = "about:blank".to_owned();
        assert_eq!(CompatError::from_problem(&p).error_type, "internalError");
    }

    #[test]
    fn ping_answers_pong() {
        assert_eq!(
            serde_json::to_value(CompatPing::pong()).unwrap(),
            json!({"message": "pong"})
        );
    }
}
