//! Errors on the wire: the problem document (RFC 9457) and the one table of error codes.
//!
//! Every error the server answers names one [`ErrorCode`]: its HTTP status, its stable
//! string (the problem `type` is `urn:contextd:problem:<code>`) and its documentation anchor
//! in `docs/errors.md`. Clients decide by the code, never by the `detail` text.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The prefix of every problem `type`.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:contextd:problem:";

/// The media type of problem documents.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = ($status:literal, $code:literal, $title:literal);)+) => {
        /// Every error contextd answers, with its HTTP status and stable code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)+
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            /// The HTTP status answered with this code.
            pub fn status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status),+ }
            }

            /// The stable string (`version-conflict`), the last part of the problem `type`.
            pub fn code(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code),+ }
            }

            /// The problem `title`: a short summary of the code, the same every time.
            pub fn title(self) -> &'static str {
                match self { $(ErrorCode::$variant => $title),+ }
            }
        }
    };
}

error_codes! {
    /// Malformed input not tied to one field (a bad id, a bad query parameter).
    BadRequest = (400, "bad-request", "Bad request");
    /// One or more fields are invalid; `errors` lists them.
    Validation = (400, "validation", "Invalid fields");
    /// The body is not JSON, or not of the expected shape.
    MalformedJson = (400, "malformed-json", "Malformed JSON");
    /// No credential, or one that is unknown, expired or revoked.
    Unauthorized = (401, "unauthorized", "Unauthorized");
    /// The credential may not do this (role, partition, data retention, read-only entry).
    Forbidden = (403, "forbidden", "Forbidden");
    /// No such object or resource in the caller's organization and partition.
    NotFound = (404, "not-found", "Not found");
    /// The resource exists but not with this method.
    MethodNotAllowed = (405, "method-not-allowed", "Method not allowed");
    /// The client took too long to send its request.
    RequestTimeout = (408, "request-timeout", "Request timeout");
    /// A conflict with the stored state not covered by a more precise code.
    Conflict = (409, "conflict", "Conflict");
    /// The stored version is not the one the write was based on; `currentVersion` says which is.
    VersionConflict = (409, "version-conflict", "Version conflict");
    /// Something of that name or id exists already.
    AlreadyExists = (409, "already-exists", "Already exists");
    /// The parent request is closed: it takes no new or moved children.
    ParentClosed = (409, "parent-closed", "Parent request closed");
    /// The object is closed or immutable (a closed request, any detail).
    Closed = (409, "closed", "Closed");
    /// The dictionary entry is used by stored data (or by a field set) and can't change so.
    InUse = (409, "in-use", "In use");
    /// The partition's last enabled admin user can't be disabled, demoted or deleted.
    LastAdmin = (409, "last-admin", "Last admin");
    /// Other writers kept changing what this request depends on; retrying is safe.
    Contended = (409, "contended", "Contended");
    /// The body or the object is larger than allowed.
    TooLarge = (413, "too-large", "Payload too large");
    /// The body is not `application/json`.
    UnsupportedMediaType = (415, "unsupported-media-type", "Unsupported media type");
    /// Too many requests from this credential or for this account; see `Retry-After`.
    RateLimited = (429, "rate-limited", "Too many requests");
    /// The request headers are larger than allowed.
    HeadersTooLarge = (431, "headers-too-large", "Request headers too large");
    /// An unexpected server failure (a bug).
    Internal = (500, "internal", "Internal error");
    /// Encryption keys could not be read or unwrapped.
    Keys = (500, "keys", "Encryption keys unavailable");
    /// The audit log could not record the request, so it was refused; retry later.
    AuditUnavailable = (503, "audit-unavailable", "Audit log unavailable");
    /// The storage backend failed; retry later.
    Storage = (503, "storage", "Storage unavailable");
}

impl ErrorCode {
    /// The problem `type` URI: `urn:contextd:problem:<code>`.
    pub fn type_uri(self) -> String {
        format!("{PROBLEM_TYPE_PREFIX}{}", self.code())
    }

    /// Where this code is explained: an anchor in the repository's `docs/errors.md`.
    pub fn doc_anchor(self) -> String {
        format!("docs/errors.md#{}", self.code())
    }

    /// The code a problem `type` names, if it is one of contextd's.
    pub fn from_type_uri(uri: &str) -> Option<ErrorCode> {
        let code = uri.strip_prefix(PROBLEM_TYPE_PREFIX)?;
        Self::ALL.iter().copied().find(|c| c.code() == code)
    }
}

/// One problem with one input field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// The field (`data.Context_First_Name`, `parentId`, …).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// A new field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The problem document (RFC 9457) every error is answered with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// A URI naming the problem type (`urn:contextd:problem:<code>`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// Per-field validation errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// For `version-conflict`: the version now stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<i64>,
}

impl Problem {
    /// A problem of `code` with this detail.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            kind: code.type_uri(),
            title: code.title().to_owned(),
            status: code.status(),
            detail: detail.into(),
            errors: Vec::new(),
            current_version: None,
        }
    }

    /// The code this problem names, if it is one of contextd's.
    pub fn code(&self) -> Option<ErrorCode> {
        ErrorCode::from_type_uri(&self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip_through_their_type_uri() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.code()), "{} twice", code.code());
            assert_eq!(ErrorCode::from_type_uri(&code.type_uri()), Some(*code));
            assert!((400..600).contains(&code.status()));
        }
        assert_eq!(ErrorCode::from_type_uri("urn:contextd:problem:nope"), None);
    }
}

#[cfg(test)]
mod documentation {
    use super::ErrorCode;

    /// Every code's documentation anchor exists in `docs/errors.md`, with its status.
    #[test]
    fn every_code_is_documented_under_its_anchor() {
        let doc = include_str!("../../../docs/errors.md");
        for code in ErrorCode::ALL {
            let heading = format!("\n## {}\n\nStatus {}.", code.code(), code.status());
            assert!(doc.contains(&heading), "docs/errors.md lacks {heading:?}");
            assert!(code.doc_anchor().ends_with(&format!("#{}", code.code())));
        }
    }
}
