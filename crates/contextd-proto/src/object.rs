//! Context objects on the wire: customers, requests, activities and details, their
//! enumerations, and the bodies and answers of the object endpoints.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ids::{ObjectId, ParseError};
use crate::truncate;

/// The four kinds of context object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A person; PII lives here.
    Customer,
    /// A case grouping activities.
    Request,
    /// One interaction (a "POD" in the original product).
    Activity,
    /// A comment or feedback attached to a request or activity.
    Detail,
}

impl Kind {
    /// All kinds.
    pub const ALL: [Kind; 4] = [Kind::Customer, Kind::Request, Kind::Activity, Kind::Detail];

    /// The `type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Customer => "customer",
            Kind::Request => "request",
            Kind::Activity => "activity",
            Kind::Detail => "detail",
        }
    }

    /// The plural used in native API paths (`/v1/customers`).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Customer => "customers",
            Kind::Request => "requests",
            Kind::Activity => "activities",
            Kind::Detail => "details",
        }
    }

    /// Parses a path segment: the plural, or the singular, or the `pod` alias.
    pub fn from_path(segment: &str) -> Option<Kind> {
        match segment {
            "customers" | "customer" => Some(Kind::Customer),
            "requests" | "request" => Some(Kind::Request),
            "activities" | "activity" | "pods" | "pod" => Some(Kind::Activity),
            "details" | "detail" => Some(Kind::Detail),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "customer" => Ok(Kind::Customer),
            "request" => Ok(Kind::Request),
            "activity" | "pod" => Ok(Kind::Activity),
            "detail" => Ok(Kind::Detail),
            _ => Err(ParseError(format!("unknown type '{}'", truncate(s, 32)))),
        }
    }
}

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire text.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(ParseError(format!(
                        concat!("'{}' is not a valid ", stringify!($name), "; expected one of: {}"),
                        truncate(s, 32),
                        [$($text),+].join(", ")
                    ))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use wire_enum;

wire_enum!(
    /// The channel of an activity.
    MediaType {
        /// A phone call.
        Voice = "voice",
        /// A web or app chat.
        Chat = "chat",
        /// An email.
        Email = "email",
        /// A text message.
        Sms = "sms",
        /// A social-media interaction.
        Social = "social",
        /// A video call.
        Video = "video",
        /// A web visit.
        Web = "web",
        /// A mobile-app interaction.
        Mobile = "mobile",
        /// A device or backend event (IoT).
        Event = "event",
    }
);

wire_enum!(
    /// The kind of a detail.
    DetailType {
        /// A note or comment.
        Comment = "comment",
        /// Customer feedback (a rating).
        Feedback = "feedback",
    }
);

wire_enum!(
    /// Whether an object is open.
    State {
        /// Open.
        Active = "active",
        /// Closed; a closed request refuses updates and new children.
        Closed = "closed",
    }
);

wire_enum!(
    /// Who a contributor is.
    ContributorType {
        /// A person (agent, administrator).
        User = "user",
        /// A system (IVR, bot, connector, API key).
        Machine = "machine",
    }
);

/// An actor that wrote to an object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Contributor {
    /// The principal's id.
    pub id: String,
    /// Person or system.
    #[serde(rename = "type")]
    pub kind: ContributorType,
}

/// A context object as clients see it, with its values in the clear.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContextObject {
    /// Server-assigned UUIDv7.
    #[schema(value_type = String, format = Uuid)]
    pub id: ObjectId,
    /// The object's kind.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// The customer this object belongs to.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub customer_id: Option<ObjectId>,
    /// The request (for an activity) or request/activity (for a detail) it hangs under.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub parent_id: Option<ObjectId>,
    /// `active` or `closed`.
    pub state: State,
    /// The channel, for activities.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    /// `comment` or `feedback`, for details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail_type: Option<DetailType>,
    /// The field sets whose fields `data` may use.
    pub fieldsets: Vec<String>,
    /// Field id → typed value.
    #[schema(value_type = Object)]
    pub data: BTreeMap<String, serde_json::Value>,
    /// Free tags.
    pub tags: Vec<String>,
    /// Everyone who wrote to the object, in order of first write.
    pub contributors: Vec<Contributor>,
    /// Fields whose values were withheld from this caller (partner without a grant).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withheld: Vec<String>,
    /// Creation time.
    #[serde(with = "crate::time::rfc3339_ms")]
    pub created: DateTime<Utc>,
    /// Last write.
    #[serde(with = "crate::time::rfc3339_ms")]
    pub last_updated: DateTime<Utc>,
    /// +1 per write; the concurrency token of `PUT`.
    pub version: i64,
}

/// The body of a create (`POST`) or replace (`PUT`).
///
/// Read-only properties (`id`, `created`, `lastUpdated`, `contributors`, `withheld`) are
/// accepted so that a client can send back the object it read; they are ignored.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectInput {
    /// Must match the path's kind if given.
    #[serde(rename = "type")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Owning customer (required for requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub customer_id: Option<String>,
    /// Parent request (activities) or request/activity (details, required).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub parent_id: Option<String>,
    /// `active` (default) or `closed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Required for activities.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Required for details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail_type: Option<String>,
    /// Field sets `data` draws from.
    #[serde(default)]
    pub fieldsets: Vec<String>,
    /// Field id → value.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: BTreeMap<String, serde_json::Value>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Required on `PUT` unless `If-Match` is sent: the version read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Ignored (read-only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub id: Option<serde_json::Value>,
    /// Ignored (read-only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub created: Option<serde_json::Value>,
    /// Ignored (read-only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub last_updated: Option<serde_json::Value>,
    /// Ignored (read-only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub contributors: Option<serde_json::Value>,
    /// Ignored (read-only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub withheld: Option<serde_json::Value>,
}

/// A JSON merge patch (RFC 7396) of an object: `data` keys merge (null removes), the other
/// members replace. Allowed members: `data`, `tags`, `state`, `parentId`, `customerId`,
/// `fieldsets`, and `version` (a concurrency check like `If-Match`).
pub type ObjectPatch = serde_json::Map<String, serde_json::Value>;

/// How search keys combine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Match {
    /// Every key must match.
    #[default]
    All,
    /// Any key may match.
    Any,
}

/// The body of `POST /v1/{kind}/batch`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BatchRequest {
    /// Up to 1,000 objects of the path's kind, each as a create takes it.
    #[serde(deserialize_with = "at_most_a_batch")]
    pub items: Vec<ObjectInput>,
    /// Keep each item's `id` (required), `created`, `lastUpdated`, `version` and
    /// `contributors`; allow children of closed requests; answer `exists` for an id already
    /// held. Admins only: this is how `contextd import` restores an export.
    #[serde(default)]
    pub import: bool,
}

/// The most objects one batch holds.
pub const MAX_BATCH: usize = 1_000;

/// Reads a batch's items, refusing the one after [`MAX_BATCH`] as it comes: a body of many
/// small items never grows past that many in memory.
fn at_most_a_batch<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ObjectInput>, D::Error> {
    struct Items;
    impl<'de> serde::de::Visitor<'de> for Items {
        type Value = Vec<ObjectInput>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "an array of at most {MAX_BATCH} objects")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_BATCH));
            while let Some(item) = seq.next_element()? {
                if items.len() == MAX_BATCH {
                    return Err(serde::de::Error::custom(format!(
                        "at most {MAX_BATCH} objects in one batch"
                    )));
                }
                items.push(item);
            }
            Ok(items)
        }
    }
    d.deserialize_seq(Items)
}

/// What became of one item of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BatchStatus {
    /// Written.
    Created,
    /// An import whose id is held already, by an object of the same kind: left as it is.
    Exists,
    /// Refused (see `problem`); nothing of it was written.
    Failed,
}

/// The result of one item, in the order of the request.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemResult {
    /// What became of it.
    pub status: BatchStatus,
    /// Its id (not on `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub id: Option<ObjectId>,
    /// Its version as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Its last update as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<DateTime<Utc>>,
    /// Why it failed, as the problem a single create would have answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<crate::error::Problem>,
}

/// The answer to `POST /v1/{kind}/batch`: one result per item, and the counts.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchResult {
    /// One per item, in order.
    pub items: Vec<BatchItemResult>,
    /// Items written.
    pub created: usize,
    /// Imports found held already.
    pub existing: usize,
    /// Items refused.
    pub failed: usize,
}

/// The body of `POST /v1/{kind}/search`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SearchRequest {
    /// `all` (default) or `any`.
    #[serde(rename = "match", default)]
    pub match_mode: Match,
    /// Field id or special key (`id`, `customerId`, `parentId`, `tags`, `state`, `mediaType`,
    /// `contributor`) → values (OR-ed); a single value may be given without the array.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub terms: BTreeMap<String, serde_json::Value>,
    /// Created at or after (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_from: Option<String>,
    /// Created at or before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_to: Option<String>,
    /// Last updated at or after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_from: Option<String>,
    /// Last updated at or before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_to: Option<String>,
    /// Fields the object must not hold a value for.
    #[serde(default)]
    pub not_exists: Vec<String>,
    /// Page size: at most 200 (100,000 with `summary`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Cursor from a previous page's `nextCursor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Return ids only.
    #[serde(default)]
    pub summary: bool,
}

/// A page of search results.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchResult {
    /// Whole objects (omitted when `summary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<ContextObject>>,
    /// Ids (only when `summary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub ids: Option<Vec<ObjectId>>,
    /// All matches.
    pub total: u64,
    /// Cursor of the next page, if any.
    pub next_cursor: Option<String>,
}

/// A page of a customer's journey.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimelinePage {
    /// Requests, activities and details, newest first.
    pub items: Vec<ContextObject>,
    /// All entries.
    pub total: u64,
    /// Cursor of the next page.
    pub next_cursor: Option<String>,
}

/// Status of a lab flush.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlushStatus {
    /// Job id.
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// Kind flushed.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// Finished?
    pub completed: bool,
    /// Objects deleted.
    pub flushed: u64,
    /// Status text.
    pub message: String,
}

/// Query parameters of `GET /v1/customers/{id}/timeline`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimelineParams {
    /// Only activities of this channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Page size (1–200, default 50).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// From a previous page's `nextCursor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}
