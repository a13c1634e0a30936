//! Route paths of the native API, named once for the server's router and every client.
//!
//! Templates use axum's `{name}` placeholders; the functions fill them for a client.

use crate::ids::ObjectId;
use crate::object::Kind;

/// Liveness without authentication.
pub const PING: &str = "/v1/ping";
/// Liveness probe for orchestrators.
pub const HEALTHZ: &str = "/healthz";
/// Serviceability status.
pub const STATUS: &str = "/v1/status";
/// The OpenAPI document.
pub const OPENAPI: &str = "/v1/openapi.json";
/// Create an object of a kind (`{kind}`: `customers`, `requests`, `activities`, `details`).
pub const OBJECTS: &str = "/v1/{kind}";
/// One object.
pub const OBJECT: &str = "/v1/{kind}/{id}";
/// Search objects of a kind.
pub const SEARCH: &str = "/v1/{kind}/search";
/// Create many objects of a kind at once (and imports).
pub const BATCH: &str = "/v1/{kind}/batch";
/// Flush every object of a kind (lab).
pub const FLUSH: &str = "/v1/{kind}/flush";
/// Status of a flush.
pub const FLUSH_STATUS: &str = "/v1/flush/{id}";
/// A customer's journey.
pub const TIMELINE: &str = "/v1/customers/{id}/timeline";
/// Right to be forgotten.
pub const ERASE: &str = "/v1/customers/{id}/erase";
/// Everything held about a customer.
pub const EXPORT: &str = "/v1/customers/{id}/export";
/// Dictionary fields.
pub const FIELDS: &str = "/v1/fields";
/// One field.
pub const FIELD: &str = "/v1/fields/{id}";
/// Dictionary field sets.
pub const FIELDSETS: &str = "/v1/fieldsets";
/// One field set.
pub const FIELDSET: &str = "/v1/fieldsets/{id}";
/// Users of a partition.
pub const USERS: &str = "/v1/users";
/// One user.
pub const USER: &str = "/v1/users/{id}";
/// Every session of one user.
pub const USER_SESSIONS: &str = "/v1/users/{id}/sessions";
/// Sign in.
pub const SESSIONS: &str = "/v1/sessions";
/// The caller's session or credential.
pub const SESSION_CURRENT: &str = "/v1/sessions/current";
/// API keys.
pub const KEYS: &str = "/v1/keys";
/// One API key.
pub const KEY: &str = "/v1/keys/{id}";
/// Partner grants.
pub const GRANTS: &str = "/v1/grants";
/// One partner grant.
pub const GRANT: &str = "/v1/grants/{id}";
/// The audit log.
pub const AUDIT: &str = "/v1/audit";
/// Add a data-key version.
pub const ROTATE: &str = "/v1/encryption/rotate";
/// Connectors (components).
pub const CONNECTORS: &str = "/v1/connectors";
/// One connector (`DELETE`: revoke).
pub const CONNECTOR: &str = "/v1/connectors/{id}";
/// Rotate a connector's secrets.
pub const CONNECTOR_ROTATE: &str = "/v1/connectors/{id}/rotate";
/// The OAuth 2.0 token endpoint (client-credentials grant).
pub const TOKEN: &str = "/v1/token";
/// Webhooks of a partition.
pub const WEBHOOKS: &str = "/v1/webhooks";
/// One webhook.
pub const WEBHOOK: &str = "/v1/webhooks/{id}";
/// A webhook's delivery attempts.
pub const WEBHOOK_DELIVERIES: &str = "/v1/webhooks/{id}/deliveries";
/// Send the event of one delivery attempt again.
pub const WEBHOOK_REDELIVER: &str = "/v1/webhooks/{id}/deliveries/{deliveryId}/redeliver";
/// The Server-Sent Events stream of the caller's org and partition.
pub const EVENTS: &str = "/v1/events";
/// The organization's settings of the agent desktop's embedding (allowed host origins).
pub const SETTINGS_EMBEDDING: &str = "/v1/settings/embedding";
/// The organization's retention rules (how long closed requests, activities and details are kept).
pub const RETENTION: &str = "/v1/retention";
/// Live per-operation statistics of this server instance.
pub const STATS: &str = "/v1/stats";

/// Every path above: the server's OpenAPI document lists exactly these (a test checks it).
pub const ALL: &[&str] = &[
    PING,
    HEALTHZ,
    STATUS,
    OPENAPI,
    OBJECTS,
    OBJECT,
    SEARCH,
    BATCH,
    FLUSH,
    FLUSH_STATUS,
    TIMELINE,
    ERASE,
    EXPORT,
    FIELDS,
    FIELD,
    FIELDSETS,
    FIELDSET,
    USERS,
    USER,
    USER_SESSIONS,
    SESSIONS,
    SESSION_CURRENT,
    KEYS,
    KEY,
    GRANTS,
    GRANT,
    AUDIT,
    ROTATE,
    CONNECTORS,
    CONNECTOR,
    CONNECTOR_ROTATE,
    TOKEN,
    WEBHOOKS,
    WEBHOOK,
    WEBHOOK_DELIVERIES,
    WEBHOOK_REDELIVER,
    EVENTS,
    SETTINGS_EMBEDDING,
    RETENTION,
    STATS,
];

/// `template` with `{name}` replaced by `value`.
pub fn fill(template: &str, name: &str, value: &str) -> String {
    template.replace(&format!("{{{name}}}"), value)
}

/// `/v1/{kind}` for a kind.
pub fn objects(kind: Kind) -> String {
    fill(OBJECTS, "kind", kind.plural())
}

/// `/v1/webhooks/{id}/deliveries/{deliveryId}/redeliver` for one attempt.
pub fn webhook_redeliver(id: impl std::fmt::Display, delivery: u64) -> String {
    fill(
        &with_id(WEBHOOK_REDELIVER, id),
        "deliveryId",
        &delivery.to_string(),
    )
}

/// `/v1/{kind}/{id}` for one object.
pub fn object(kind: Kind, id: ObjectId) -> String {
    fill(&fill(OBJECT, "kind", kind.plural()), "id", &id.to_string())
}

/// `/v1/{kind}/search` for a kind.
pub fn search(kind: Kind) -> String {
    fill(SEARCH, "kind", kind.plural())
}

/// `/v1/{kind}/batch` for a kind.
pub fn batch(kind: Kind) -> String {
    fill(BATCH, "kind", kind.plural())
}

/// `/v1/{kind}/flush` for a kind.
pub fn flush(kind: Kind) -> String {
    fill(FLUSH, "kind", kind.plural())
}

/// A template with its one `{id}` filled.
pub fn with_id(template: &str, id: impl std::fmt::Display) -> String {
    fill(template, "id", &id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill() {
        let id = ObjectId::new();
        assert_eq!(object(Kind::Activity, id), format!("/v1/activities/{id}"));
        assert_eq!(search(Kind::Customer), "/v1/customers/search");
        assert_eq!(
            with_id(TIMELINE, id),
            format!("/v1/customers/{id}/timeline")
        );
    }
}
