//! Retention rules (`GET/PUT /v1/retention`): how long an organization keeps its closed
//! requests, activities and details before a background job deletes them, in both
//! partitions.
//!
//! Values arrive as text and are checked by the server, so that each wrong one is reported
//! by its place (`rules[2].afterDays`) rather than as a malformed body.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The most rules an organization may have.
pub const MAX_RETENTION_RULES: usize = 100;
/// The longest period a rule may keep objects for, in days (about a hundred years).
pub const MAX_RETENTION_DAYS: i64 = 36_500;

/// `GET/PUT /v1/retention`: an organization's retention rules. A `PUT` replaces the whole list
/// (an empty list deletes nothing) and answers the rules as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionRules {
    /// The rules, at most [`MAX_RETENTION_RULES`]. An object any `never` rule selects is
    /// kept; otherwise the shortest `afterDays` among the rules that select it applies.
    pub rules: Vec<RetentionRule>,
}

/// One rule: what it selects (`kind`, `mediaType`, `fieldset`; at least a kind or a field
/// set) and how long what it selects is kept (`afterDays`, or `never: true`). Age is counted
/// from an object's `lastUpdated`; a request still `active` is never deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetentionRule {
    /// `request`, `activity` (or `pod`) or `detail`; omitted: every kind but customers
    /// (customers leave only through `POST /v1/customers/{id}/erase`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Only activities of this channel (`voice`, `chat`, `email`, `sms`, `social`, `video`,
    /// `web`, `mobile`, `event`); implies `kind: activity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Only objects carrying this field set (which must be in the dictionary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fieldset: Option<String>,
    /// Delete what the rule selects this many days (1 to [`MAX_RETENTION_DAYS`]) after its
    /// last update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_days: Option<i64>,
    /// Never delete what the rule selects, whatever other rules say.
    #[serde(default, skip_serializing_if = "is_false")]
    pub never: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_and_write_the_documented_shape() {
        let text = r#"{"rules": [
            {"kind": "activity", "mediaType": "web", "afterDays": 90},
            {"fieldset": "cisco.base.comment", "afterDays": 730},
            {"kind": "detail", "never": true}
        ]}"#;
        let rules: RetentionRules = serde_json::from_str(text).expect("the documented shape");
        assert_eq!(rules.rules.len(), 3);
        assert_eq!(rules.rules[0].media_type.as_deref(), Some("web"));
        assert_eq!(rules.rules[1].after_days, Some(730));
        assert!(rules.rules[2].never);
        let back = serde_json::to_value(&rules).expect("serializes");
        assert_eq!(
            back["rules"][2],
            serde_json::json!({"kind": "detail", "never": true})
        );
        assert_eq!(
            back["rules"][0],
            serde_json::json!({"kind": "activity", "mediaType": "web", "afterDays": 90})
        );
        assert!(
            serde_json::from_str::<RetentionRules>(r#"{"rules": [{"after": "90d"}]}"#).is_err(),
            "unknown members are refused"
        );
    }
}
