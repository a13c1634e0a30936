//! Events on the wire: what changed, as the Server-Sent Events stream (`GET /v1/events`), the
//! webhooks and the NATS JetStream stream deliver it, and the webhook administration types.
//!
//! An event names the object and its links, never a field value: it may go to partners, to
//! other systems and into logs.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::object::{wire_enum, Contributor, Kind, MediaType, State};
use crate::{truncate, ObjectId, ParseError};

wire_enum!(
    /// What happened to the object.
    EventType {
        /// A new object.
        Created = "object.created",
        /// An object's values, tags or state changed (other than closing).
        Updated = "object.updated",
        /// An object moved to another customer or parent.
        Moved = "object.moved",
        /// A request was closed, by a client or by the auto-close sweep.
        Closed = "object.closed",
        /// An object was deleted (lab), alone or by a flush of its kind.
        Deleted = "object.deleted",
        /// An object was removed by the privacy erase of its customer.
        Erased = "object.erased",
    }
);

/// One change to a context object, as every channel delivers it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Increases with every event of the organization and partition; the position to resume
    /// after (`Last-Event-ID`).
    pub id: u64,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The object.
    #[schema(value_type = String, format = Uuid)]
    pub object_id: ObjectId,
    /// Its kind.
    pub object_type: Kind,
    /// Its customer.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub customer_id: Option<ObjectId>,
    /// Its parent.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub parent_id: Option<ObjectId>,
    /// Its channel (activities).
    pub media_type: Option<MediaType>,
    /// Its state after the change.
    pub state: State,
    /// Its `lastUpdated` after the change.
    pub last_updated: DateTime<Utc>,
    /// Who made the change.
    pub contributor: Contributor,
    /// When the change was recorded.
    pub time: DateTime<Utc>,
    /// The user name an activity is addressed to: the name in its first `agent:<name>` tag
    /// (the agent desktop pops such activities for that agent); set on the events of writes,
    /// not of deletes. Never PII of a customer.
    #[serde(default)]
    pub addressed_to: Option<String>,
}

/// The tag prefix that addresses an activity to an agent: `agent:<user name>`.
pub const ADDRESSED_TAG: &str = "agent:";

/// The agent an activity with these tags is addressed to: the name in its first
/// `agent:<name>` tag, if any.
pub fn addressed_to<'a>(tags: impl IntoIterator<Item = &'a String>) -> Option<&'a str> {
    tags.into_iter()
        .find_map(|t| t.strip_prefix(ADDRESSED_TAG))
        .map(str::trim)
        .filter(|name| !name.is_empty())
}

/// Which events a subscriber wants; empty lists and absent values match everything.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventFilter {
    /// Only events of these types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<EventType>,
    /// Only events of this customer's objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub customer_id: Option<ObjectId>,
    /// Only changes made by this contributor (its id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contributor: Option<String>,
    /// Only events of activities of this channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    /// Only events of activities addressed to this user name (tag `agent:<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addressed_to: Option<String>,
}

impl EventFilter {
    /// Whether `event` passes the filter.
    pub fn matches(&self, event: &Event) -> bool {
        (self.types.is_empty() || self.types.contains(&event.event_type))
            && self
                .customer_id
                .is_none_or(|c| event.customer_id == Some(c))
            && self
                .contributor
                .as_deref()
                .is_none_or(|c| event.contributor.id == c)
            && self.media_type.is_none_or(|m| event.media_type == Some(m))
            && self
                .addressed_to
                .as_deref()
                .is_none_or(|a| event.addressed_to.as_deref() == Some(a))
    }

    /// Parses a comma-separated list of event types (`object.created,object.moved`).
    pub fn parse_types(list: &str) -> Result<Vec<EventType>, ParseError> {
        list.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(EventType::from_str)
            .collect()
    }
}

/// The query of `GET /v1/events`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events of this customer's objects.
    pub customer_id: Option<String>,
    /// Only changes made by this contributor id.
    pub contributor: Option<String>,
    /// Only activities of this channel.
    pub media_type: Option<String>,
    /// Comma-separated event types (`object.created,object.moved`).
    pub types: Option<String>,
    /// Only activities addressed to this user name (tag `agent:<name>`).
    pub addressed_to: Option<String>,
    /// Resume after this event id (as the `Last-Event-ID` header, which wins if both are set).
    pub last_event_id: Option<String>,
}

/// An event id as a client sends it back (`Last-Event-ID`): a decimal number.
pub fn parse_event_id(s: &str) -> Result<u64, ParseError> {
    s.trim().parse().map_err(|_| {
        ParseError(format!(
            "'{}' is not an event id (a decimal number from an earlier event)",
            truncate(s, 32)
        ))
    })
}

/// The SSE event name of the first frame of every stream: its `id:` is the position the
/// stream starts after (the resume id, or the newest event when it connected), so that a
/// client that reconnects before any event arrived resumes from there and misses nothing.
/// Its data is a [`ResumeHint`] with reason `open`.
pub const OPEN_EVENT: &str = "open";

/// The SSE event name of the control message that ends a stream whose client fell behind:
/// its data is a [`ResumeHint`]; reconnect with `Last-Event-ID` to continue.
pub const RESUME_EVENT: &str = "resume";

/// Why a stream ended early and where to pick it up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResumeHint {
    /// What happened (`slow consumer`).
    pub reason: String,
    /// The last event delivered on this stream: send it as `Last-Event-ID`.
    pub last_event_id: u64,
}

/// `POST /v1/webhooks`: a receiver of events. (`Debug` hides the secret.)
#[derive(Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookInput {
    /// Where to deliver: an absolute `http` or `https` URL.
    pub url: String,
    /// Only these event types (empty: all).
    #[serde(default)]
    pub types: Vec<EventType>,
    /// Only events passing this filter (its `types` are merged with `types`).
    #[serde(default)]
    pub filter: EventFilter,
    /// The signing secret, `whsec_` + base64 of 24 to 64 bytes (Standard Webhooks); one is
    /// generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// A name for people.
    #[serde(default)]
    pub description: String,
}

/// A webhook as listed (never with its secret).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// Its id.
    pub id: Uuid,
    /// Where it delivers.
    pub url: String,
    /// Its filter, `types` included.
    pub filter: EventFilter,
    /// A name for people.
    pub description: String,
    /// Registered at.
    pub created: DateTime<Utc>,
    /// The last event delivered or dead-lettered (0: none yet).
    pub delivered_through: u64,
    /// Events dead-lettered so far (kept as long as events are).
    pub dead_letters: u64,
}

/// `POST /v1/webhooks` answer: the webhook and, once, its secret. (`Debug` hides the secret.)
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookCreated {
    /// The webhook.
    #[serde(flatten)]
    pub webhook: Webhook,
    /// The signing secret: shown once, keep it with the receiver.
    pub secret: String,
}

wire_enum!(
    /// How one delivery attempt ended.
    DeliveryOutcome {
        /// The receiver answered 2xx.
        Delivered = "delivered",
        /// The attempt failed; it will be retried.
        Failed = "failed",
        /// The attempt failed and the retry time is spent: the event is dead-lettered.
        Dead = "dead",
    }
);

/// One delivery attempt of one event to one webhook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The attempt's id.
    pub id: u64,
    /// The event.
    pub event_id: u64,
    /// Its type.
    pub event_type: EventType,
    /// 1 for the first attempt of an event, +1 per retry (a redelivery starts again at 1).
    pub attempt: u32,
    /// How it ended.
    pub outcome: DeliveryOutcome,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// When the attempt was made.
    pub at: DateTime<Utc>,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
}

/// `GET /v1/webhooks/{id}/deliveries`: newest first.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryList {
    /// The attempts.
    pub items: Vec<Delivery>,
}

/// The query of `GET /v1/webhooks/{id}/deliveries`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// Only attempts with this outcome (`dead` lists the dead letters).
    pub outcome: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.id, self.event_type, self.object_type, self.object_id
        )
    }
}

impl fmt::Debug for WebhookInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookInput")
            .field("url", &self.url)
            .field("types", &self.types)
            .field("filter", &self.filter)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("description", &self.description)
            .finish()
    }
}

impl fmt::Debug for WebhookCreated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookCreated")
            .field("webhook", &self.webhook)
            .field("secret", &"[redacted]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_webhook_secret() {
        let input = WebhookInput {
            secret: Some("whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0".into()),
            ..WebhookInput::default()
        };
        assert!(!format!("{input:?}").contains("whsec_"));
    }
}
