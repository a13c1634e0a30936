//! The SDK's view of the service for its periodic status line: when an operation last
//! succeeded, and the last failure.

use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

/// What the client's operations last came to.
#[derive(Default)]
pub(crate) struct Outcomes {
    last: Mutex<Last>,
}

#[derive(Default)]
struct Last {
    success: Option<DateTime<Utc>>,
    failure: Option<Failure>,
}

struct Failure {
    at: DateTime<Utc>,
    operation: String,
    kind: &'static str,
}

impl Outcomes {
    fn lock(&self) -> MutexGuard<'_, Last> {
        // Times and a kind stay meaningful whatever a panicking holder left.
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes how an operation ended: `None` for a success, else the error's kind.
    pub(crate) fn record(&self, operation: &str, error_kind: Option<&'static str>) {
        let at = Utc::now();
        let mut last = self.lock();
        match error_kind {
            None => last.success = Some(at),
            Some(kind) => {
                last.failure = Some(Failure {
                    at,
                    operation: operation.to_owned(),
                    kind,
                })
            }
        }
    }

    /// The overall status and its details, for the status line: `unknown` before any
    /// operation; `down` when the latest operation got no answer (`unreachable`, `timeout`);
    /// `degraded` when it was refused for the service's sake (`server`, `rateLimited`);
    /// else `ok` (a `notFound` or a `validation` is an answer about the request, not the
    /// service).
    pub(crate) fn status(&self, base_url: &str) -> (&'static str, Value) {
        let last = self.lock();
        let failed_last = last
            .failure
            .as_ref()
            .filter(|f| last.success.is_none_or(|s| f.at >= s));
        let overall = match (last.success, failed_last) {
            (None, None) => "unknown",
            (_, Some(f)) if matches!(f.kind, "unreachable" | "timeout") => "down",
            (_, Some(f)) if matches!(f.kind, "server" | "rateLimited") => "degraded",
            _ => "ok",
        };
        let failure = last
            .failure
            .as_ref()
            .map(|f| json!({"at": rfc3339(f.at), "operation": f.operation, "kind": f.kind}));
        let detail = json!({
            "baseUrl": base_url,
            "lastSuccess": last.success.map(rfc3339),
            "lastFailure": failure,
        });
        (overall, detail)
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_follows_the_latest_outcome() {
        let outcomes = Outcomes::default();
        let url = "http://127.0.0.1:8080";
        let (overall, detail) = outcomes.status(url);
        assert_eq!(overall, "unknown");
        assert_eq!(detail["baseUrl"], url);
        assert!(detail["lastSuccess"].is_null() && detail["lastFailure"].is_null());

        outcomes.record("customer.get", None);
        assert_eq!(outcomes.status(url).0, "ok");
        outcomes.record("customer.get", Some("notFound"));
        assert_eq!(outcomes.status(url).0, "ok");
        outcomes.record("customer.create", Some("unreachable"));
        let (overall, detail) = outcomes.status(url);
        assert_eq!(overall, "down");
        assert_eq!(detail["lastFailure"]["operation"], "customer.create");
        assert_eq!(detail["lastFailure"]["kind"], "unreachable");
        assert!(detail["lastSuccess"].is_string());
        outcomes.record("customer.search", Some("server"));
        assert_eq!(outcomes.status(url).0, "degraded");
        outcomes.record("customer.search", None);
        let (overall, detail) = outcomes.status(url);
        assert_eq!(overall, "ok");
        assert_eq!(
            detail["lastFailure"]["kind"], "server",
            "the last failure stays on record"
        );
    }
}
