//! A builder of search requests (README, "API overview"): terms, time windows, absent fields, paging.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use contextd_proto::object::{Match, SearchRequest};

/// A search, built step by step; [`Search::build`] gives the wire body.
///
/// Values given for one key are OR-ed; keys are combined as [`Search::all`] or
/// [`Search::any`] says. Matching is exact after trimming and case folding; phone fields
/// match on digits only.
///
/// ```
/// use contextd_client::Search;
///
/// let request = Search::all()
///     .term("Context_Mobile_Phone", "+1 (555) 010-0001")
///     .term("state", "active")
///     .term("state", "closed")
///     .limit(20)
///     .build();
/// assert_eq!(request.terms["state"], serde_json::json!(["active", "closed"]));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Search {
    match_mode: Match,
    terms: BTreeMap<String, Vec<serde_json::Value>>,
    created_from: Option<DateTime<Utc>>,
    created_to: Option<DateTime<Utc>>,
    updated_from: Option<DateTime<Utc>>,
    updated_to: Option<DateTime<Utc>>,
    not_exists: Vec<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    summary: bool,
}

impl Search {
    /// A search whose keys must all match.
    pub fn all() -> Self {
        Self::default()
    }

    /// A search of which any key may match.
    pub fn any() -> Self {
        Self {
            match_mode: Match::Any,
            ..Self::default()
        }
    }

    /// Adds a value for a field id or special key (`id`, `customerId`, `parentId`, `tags`,
    /// `state`, `mediaType`, `contributor`). Call again with the same key to OR values.
    pub fn term(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.terms.entry(key.into()).or_default().push(value.into());
        self
    }

    /// Only objects created at or after `t`.
    pub fn created_from(mut self, t: DateTime<Utc>) -> Self {
        self.created_from = Some(t);
        self
    }

    /// Only objects created at or before `t`.
    pub fn created_to(mut self, t: DateTime<Utc>) -> Self {
        self.created_to = Some(t);
        self
    }

    /// Only objects last updated at or after `t`.
    pub fn updated_from(mut self, t: DateTime<Utc>) -> Self {
        self.updated_from = Some(t);
        self
    }

    /// Only objects last updated at or before `t`.
    pub fn updated_to(mut self, t: DateTime<Utc>) -> Self {
        self.updated_to = Some(t);
        self
    }

    /// Only objects holding no value for `field` (repeatable).
    pub fn not_exists(mut self, field: impl Into<String>) -> Self {
        self.not_exists.push(field.into());
        self
    }

    /// Page size: at most 200 (100,000 with [`summary`](Search::summary)).
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Continues after a previous page (its `nextCursor`).
    pub fn cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }

    /// Asks for ids only (`SearchResult::ids`) instead of whole objects.
    pub fn summary(mut self, summary: bool) -> Self {
        self.summary = summary;
        self
    }

    /// The body of `POST /v1/{kind}/search`.
    pub fn build(self) -> SearchRequest {
        let stamp = |t: Option<DateTime<Utc>>| t.as_ref().map(contextd_proto::time::format);
        SearchRequest {
            match_mode: self.match_mode,
            terms: self
                .terms
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::Array(v)))
                .collect(),
            created_from: stamp(self.created_from),
            created_to: stamp(self.created_to),
            updated_from: stamp(self.updated_from),
            updated_to: stamp(self.updated_to),
            not_exists: self.not_exists,
            limit: self.limit,
            cursor: self.cursor,
            summary: self.summary,
        }
    }
}

impl From<Search> for SearchRequest {
    fn from(search: Search) -> Self {
        search.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    #[test]
    fn builds_the_wire_body() {
        let from = Utc.with_ymd_and_hms(2026, 11, 21, 8, 0, 0).unwrap();
        let to = Utc.with_ymd_and_hms(2026, 11, 22, 8, 0, 0).unwrap();
        let request = Search::any()
            .term("Context_Mobile_Phone", "+1 (555) 010-0001")
            .term("Context_Mobile_Phone", "15550100002")
            .term("cccRatingPoints", 5)
            .term("Context_Visible", true)
            .created_from(from)
            .created_to(to)
            .updated_from(from)
            .updated_to(to)
            .not_exists("Context_Work_Email")
            .not_exists("Context_City")
            .limit(20)
            .cursor("abc")
            .summary(true)
            .build();
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({
                "match": "any",
                "terms": {
                    "Context_Mobile_Phone": ["+1 (555) 010-0001", "15550100002"],
                    "Context_Visible": [true],
                    "cccRatingPoints": [5],
                },
                "createdFrom": "2026-11-21T08:00:00.000Z",
                "createdTo": "2026-11-22T08:00:00.000Z",
                "updatedFrom": "2026-11-21T08:00:00.000Z",
                "updatedTo": "2026-11-22T08:00:00.000Z",
                "notExists": ["Context_Work_Email", "Context_City"],
                "limit": 20,
                "cursor": "abc",
                "summary": true,
            })
        );
    }

    #[test]
    fn an_empty_search_matches_all() {
        let request: SearchRequest = Search::all().into();
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"match": "all", "terms": {}, "notExists": [], "summary": false})
        );
    }
}
