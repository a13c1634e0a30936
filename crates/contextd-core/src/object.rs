//! Context objects: customers, requests, activities and details.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::CoreError;
use crate::ids::{truncate, ObjectId};

/// Largest serialized object accepted (§2).
pub const MAX_OBJECT_BYTES: usize = 256 * 1024;

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
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "customer" => Ok(Kind::Customer),
            "request" => Ok(Kind::Request),
            "activity" | "pod" => Ok(Kind::Activity),
            "detail" => Ok(Kind::Detail),
            _ => Err(CoreError::bad_request(format!(
                "unknown type '{}'",
                truncate(s, 32)
            ))),
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
            type Err = CoreError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(CoreError::bad_request(format!(
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
