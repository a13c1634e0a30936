//! What can go wrong, typed so that a caller decides by variant (and [`ErrorCode`]), never by
//! message text, and worded so that a person reading the message knows what to fix.

use std::time::Duration;

use contextd_proto::error::{ErrorCode, FieldError, Problem};

/// The result of every fallible SDK call.
pub type Result<T> = std::result::Result<T, Error>;

/// An error of the SDK: an answer of the server, or a failure to get one.
///
/// ```
/// use contextd_client::Error;
///
/// fn explain(e: &Error) -> String {
///     match e {
///         Error::Conflict { current_version: Some(v), .. } => format!("someone else wrote version {v}"),
///         Error::NotFound { .. } => "gone".to_owned(),
///         other => other.to_string(),
///     }
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No such object or resource in the caller's organization and partition (404).
    #[error("not found: {detail}; check the id, and that the credential belongs to the partition (lab or production) holding it")]
    NotFound {
        /// The server's explanation.
        detail: String,
    },

    /// The write conflicts with the stored state (409): a stale version, a duplicate, a
    /// closed parent, a dictionary entry in use, …; `code` says which.
    #[error("{}", conflict_message(*.code, .detail, *.current_version))]
    Conflict {
        /// Which conflict ([`ErrorCode::VersionConflict`], [`ErrorCode::AlreadyExists`], …).
        code: ErrorCode,
        /// The server's explanation.
        detail: String,
        /// For a version conflict: the version now stored.
        current_version: Option<i64>,
    },

    /// One or more input fields are invalid (400); `errors` lists each.
    #[error("{}", validation_message(.detail, .errors))]
    Validation {
        /// The server's summary.
        detail: String,
        /// What is wrong with each field.
        errors: Vec<FieldError>,
    },

    /// The request is malformed in a way not tied to one field (400, 405, 408, 415).
    #[error("bad request ({}): {detail}", .code.code())]
    BadRequest {
        /// Which problem ([`ErrorCode::BadRequest`], [`ErrorCode::MalformedJson`], …).
        code: ErrorCode,
        /// The server's explanation.
        detail: String,
    },

    /// No credential, or one that is unknown, expired or revoked (401).
    #[error("unauthorized: {detail}; check CONTEXTD_TOKEN (or the connectionData): the token must be valid, unexpired and not revoked")]
    Unauthorized {
        /// The server's explanation.
        detail: String,
    },

    /// The credential may not do this: its role, its partition, data retention in
    /// production, or a read-only entry (403).
    #[error("forbidden: {detail}; use a credential whose role and partition allow it (deletes and flushes are lab-only)")]
    Forbidden {
        /// The server's explanation.
        detail: String,
    },

    /// The body, the object or the request headers are larger than allowed (413, 431).
    #[error("too large: {detail}; an object may be at most 256 KB serialized")]
    TooLarge {
        /// The server's explanation.
        detail: String,
    },

    /// Too many requests from this credential (429), and no time was left to wait.
    #[error("{}", rate_limited_message(*.retry_after))]
    RateLimited {
        /// How long the server asked to wait, if it said.
        retry_after: Option<Duration>,
    },

    /// The server (or a proxy in front of it) failed, or answered a status the SDK has no
    /// better variant for.
    #[error("{}", server_message(*.status, *.code, .detail))]
    Server {
        /// The HTTP status.
        status: u16,
        /// contextd's code, when the answer was contextd's problem JSON.
        code: Option<ErrorCode>,
        /// The server's explanation, or the start of the answer's body.
        detail: String,
    },

    /// The operation did not finish within the client timeout (retries included).
    #[error("{operation} timed out after {} ms; the server may be overloaded or far away: check its status, or raise the timeout within the profile's range", .after.as_millis())]
    Timeout {
        /// The operation (`customer.get`).
        operation: String,
        /// The timeout that ran out.
        after: Duration,
    },

    /// No connection could be made to the service.
    #[error("cannot reach contextd at {url}: {reason}; check the service URL (CONTEXTD_URL or the connectionData), the network and the proxy setting")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// Why the connection failed.
        reason: String,
    },

    /// The answer was not understood (not the JSON expected): a different service, a proxy's
    /// page, or a server of an incompatible version.
    #[error("the answer was not understood: {0}; check that the URL points at a contextd server of a compatible version")]
    Protocol(String),

    /// The connectionData string could not be used.
    #[error(
        "invalid connectionData: {0}; register the component again to get a fresh connectionData"
    )]
    InvalidConnectionData(String),

    /// The base URL, the token or a setting can't be used.
    #[error("invalid client settings: {0}")]
    InvalidSettings(String),

    /// The client holds no connectionData: the component was deregistered
    /// ([`Client::set_connection_data`](crate::Client::set_connection_data) with `None`). The
    /// call failed at once, without a request.
    #[error("not registered: the client has no connectionData (the component was deregistered); register the component with contextd again")]
    NotRegistered,
}

impl Error {
    /// The camelCase name of the variant, used in statistics (`activity.search.error.notFound`).
    ///
    /// ```
    /// use contextd_client::Error;
    ///
    /// let e = Error::NotFound { detail: "no such customer".into() };
    /// assert_eq!(e.kind(), "notFound");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "notFound",
            Error::Conflict { .. } => "conflict",
            Error::Validation { .. } => "validation",
            Error::BadRequest { .. } => "badRequest",
            Error::Unauthorized { .. } => "unauthorized",
            Error::Forbidden { .. } => "forbidden",
            Error::TooLarge { .. } => "tooLarge",
            Error::RateLimited { .. } => "rateLimited",
            Error::Server { .. } => "server",
            Error::Timeout { .. } => "timeout",
            Error::Unreachable { .. } => "unreachable",
            Error::Protocol(_) => "protocol",
            Error::InvalidConnectionData(_) => "invalidConnectionData",
            Error::InvalidSettings(_) => "invalidSettings",
            Error::NotRegistered => "notRegistered",
        }
    }

    /// The per-field problems of a [`Error::Validation`] (empty for every other error).
    ///
    /// ```
    /// use contextd_client::proto::FieldError;
    /// use contextd_client::Error;
    /// let e = Error::Validation {
    ///     detail: "the request has invalid fields".into(),
    ///     errors: vec![FieldError::new("limit", "must be between 1 and 200")],
    /// };
    /// assert!(e.field_errors().iter().any(|f| f.field == "limit"));
    /// ```
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            Error::Validation { errors, .. } => errors,
            _ => &[],
        }
    }

    /// contextd's error code, when the error is an answer of the server that named one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::NotFound { .. } => Some(ErrorCode::NotFound),
            Error::Conflict { code, .. } | Error::BadRequest { code, .. } => Some(*code),
            Error::Validation { .. } => Some(ErrorCode::Validation),
            Error::Unauthorized { .. } => Some(ErrorCode::Unauthorized),
            Error::Forbidden { .. } => Some(ErrorCode::Forbidden),
            Error::RateLimited { .. } => Some(ErrorCode::RateLimited),
            Error::Server { code, .. } => *code,
            _ => None,
        }
    }

    /// The error of a non-success answer: its status, its problem document if it had one
    /// (else `body` text), and its `Retry-After`.
    pub(crate) fn from_answer(
        status: u16,
        problem: Option<Problem>,
        body: &str,
        retry_after: Option<Duration>,
    ) -> Error {
        match problem {
            Some(problem) => Self::from_problem(status, problem, retry_after),
            None => {
                // Not contextd's answer: say so, since its advice may not apply.
                let detail = if body.trim().is_empty() {
                    format!("HTTP {status}, not from contextd (a proxy, or another service?)")
                } else {
                    format!(
                        "HTTP {status}, not from contextd (a proxy, or another service?): {}",
                        excerpt(body.trim(), 200)
                    )
                };
                Self::from_status(status, None, detail, Vec::new(), None, retry_after)
            }
        }
    }

    /// The error a problem document describes: by its code when it names one of contextd's,
    /// else by the status.
    pub(crate) fn from_problem(
        status: u16,
        problem: Problem,
        retry_after: Option<Duration>,
    ) -> Error {
        let code = problem.code();
        Self::from_status(
            status,
            code,
            problem.detail,
            problem.errors,
            problem.current_version,
            retry_after,
        )
    }

    fn from_status(
        status: u16,
        code: Option<ErrorCode>,
        detail: String,
        errors: Vec<FieldError>,
        current_version: Option<i64>,
        retry_after: Option<Duration>,
    ) -> Error {
        use ErrorCode as C;
        match code {
            Some(C::NotFound) => Error::NotFound { detail },
            Some(C::Validation) => Error::Validation { detail, errors },
            Some(
                code @ (C::BadRequest
                | C::MalformedJson
                | C::MethodNotAllowed
                | C::RequestTimeout
                | C::UnsupportedMediaType),
            ) => Error::BadRequest { code, detail },
            Some(C::Unauthorized) => Error::Unauthorized { detail },
            Some(C::Forbidden) => Error::Forbidden { detail },
            Some(
                code @ (C::Conflict
                | C::VersionConflict
                | C::AlreadyExists
                | C::ParentClosed
                | C::Closed
                | C::InUse
                | C::LastAdmin
                | C::Contended),
            ) => Error::Conflict {
                code,
                detail,
                current_version,
            },
            Some(C::TooLarge | C::HeadersTooLarge) => Error::TooLarge { detail },
            Some(C::RateLimited) => Error::RateLimited { retry_after },
            Some(code @ (C::Internal | C::Keys | C::AuditUnavailable | C::Storage)) => {
                Error::Server {
                    status,
                    code: Some(code),
                    detail,
                }
            }
            // Not contextd's problem JSON (a proxy, an older server): go by the status.
            None => match status {
                400 if !errors.is_empty() => Error::Validation { detail, errors },
                400 => Error::BadRequest {
                    code: C::BadRequest,
                    detail,
                },
                401 => Error::Unauthorized { detail },
                403 => Error::Forbidden { detail },
                404 => Error::NotFound { detail },
                409 => Error::Conflict {
                    code: if current_version.is_some() {
                        C::VersionConflict
                    } else {
                        C::Conflict
                    },
                    detail,
                    current_version,
                },
                413 | 431 => Error::TooLarge { detail },
                429 => Error::RateLimited { retry_after },
                _ => Error::Server {
                    status,
                    code: None,
                    detail,
                },
            },
        }
    }
}

fn conflict_message(code: ErrorCode, detail: &str, current_version: Option<i64>) -> String {
    let advice = match (code, current_version) {
        (_, Some(v)) => format!("re-read the object and retry with version {v}"),
        (ErrorCode::VersionConflict, None) => {
            "re-read the object and retry with its current version".to_owned()
        }
        (ErrorCode::AlreadyExists, _) => "use another id, or update the existing one".to_owned(),
        (ErrorCode::ParentClosed, _) => {
            "the parent request is closed: open a new request, or reopen this one".to_owned()
        }
        (ErrorCode::Closed, _) => {
            "the object is closed or immutable: reopen it first (details never change)".to_owned()
        }
        (ErrorCode::InUse, _) => {
            "stored data (or a field set) uses it: leave it, or mark it inactive".to_owned()
        }
        (ErrorCode::LastAdmin, _) => "create or enable another admin user first".to_owned(),
        (ErrorCode::Contended, _) => "other writers were busy with it: retry".to_owned(),
        _ => "re-read the current state and retry".to_owned(),
    };
    format!("conflict ({}): {detail}; {advice}", code.code())
}

fn validation_message(detail: &str, errors: &[FieldError]) -> String {
    if errors.is_empty() {
        return format!("invalid input: {detail}");
    }
    let fields: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    format!("invalid input: {}", fields.join("; "))
}

fn rate_limited_message(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(
            "too many requests; retry in {} s, or spread the load over time",
            d.as_secs().max(1)
        ),
        None => "too many requests; slow down and retry later".to_owned(),
    }
}

fn server_message(status: u16, code: Option<ErrorCode>, detail: &str) -> String {
    let name = code.map(|c| format!(" ({})", c.code())).unwrap_or_default();
    if (500..600).contains(&status) {
        format!("the server failed{name}, HTTP {status}: {detail}; if it persists, check GET /v1/status and the server's log")
    } else {
        format!("unexpected answer{name}, HTTP {status}: {detail}")
    }
}

pub(crate) use contextd_proto::truncate as excerpt;

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(code: ErrorCode, detail: &str) -> Problem {
        Problem::new(code, detail)
    }

    #[test]
    fn version_conflict_carries_the_current_version_and_says_what_to_do() {
        let p = Problem {
            current_version: Some(7),
            ..problem(ErrorCode::VersionConflict, "the stored version is 7")
        };
        let e = Error::from_problem(409, p, None);
        match &e {
            Error::Conflict {
                code,
                current_version,
                ..
            } => {
                assert_eq!(*code, ErrorCode::VersionConflict);
                assert_eq!(*current_version, Some(7));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(e.kind(), "conflict");
        assert!(e.to_string().contains("retry with version 7"), "{e}");
    }

    #[test]
    fn every_conflict_code_is_a_conflict() {
        for code in ErrorCode::ALL.iter().filter(|c| c.status() == 409) {
            let e = Error::from_problem(409, problem(*code, "x"), None);
            assert!(
                matches!(&e, Error::Conflict { code: c, .. } if c == code),
                "{code:?} → {e:?}"
            );
            assert_eq!(e.code(), Some(*code));
        }
    }

    #[test]
    fn every_code_maps_to_a_variant_of_its_status() {
        for code in ErrorCode::ALL {
            let e = Error::from_problem(code.status(), problem(*code, "x"), None);
            let expected = match code.status() {
                400 if *code == ErrorCode::Validation => "validation",
                400 | 405 | 408 | 415 => "badRequest",
                401 => "unauthorized",
                403 => "forbidden",
                404 => "notFound",
                409 => "conflict",
                413 | 431 => "tooLarge",
                429 => "rateLimited",
                _ => "server",
            };
            assert_eq!(e.kind(), expected, "{code:?}");
        }
    }

    #[test]
    fn validation_lists_each_field() {
        let p = Problem {
            errors: vec![
                FieldError::new("data.Context_First_Name", "must be a string"),
                FieldError::new("parentId", "no such request"),
            ],
            ..problem(ErrorCode::Validation, "the request has invalid fields")
        };
        let e = Error::from_problem(400, p, None);
        let Error::Validation { errors, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(errors.len(), 2);
        let text = e.to_string();
        assert!(
            text.contains("data.Context_First_Name: must be a string"),
            "{text}"
        );
        assert!(text.contains("parentId: no such request"), "{text}");
    }

    #[test]
    fn unauthorized_names_the_token() {
        let e = Error::from_problem(401, problem(ErrorCode::Unauthorized, "revoked"), None);
        assert_eq!(e.kind(), "unauthorized");
        assert!(e.to_string().contains("CONTEXTD_TOKEN"), "{e}");
    }

    #[test]
    fn rate_limit_keeps_retry_after() {
        let e = Error::from_problem(
            429,
            problem(ErrorCode::RateLimited, ""),
            Some(Duration::from_secs(3)),
        );
        assert!(matches!(
            e,
            Error::RateLimited {
                retry_after: Some(d)
            } if d == Duration::from_secs(3)
        ));
        assert!(e.to_string().contains("retry in 3 s"), "{e}");
    }

    #[test]
    fn storage_failure_is_a_server_error_with_its_code() {
        let e = Error::from_problem(503, problem(ErrorCode::Storage, "retry later"), None);
        assert!(matches!(
            e,
            Error::Server {
                status: 503,
                code: Some(ErrorCode::Storage),
                ..
            }
        ));
    }

    #[test]
    fn foreign_answers_go_by_status() {
        let e = Error::from_answer(502, None, "<html>Bad Gateway</html>", None);
        assert!(
            matches!(&e, Error::Server { status: 502, code: None, detail } if detail.contains("Bad Gateway"))
        );
        let e = Error::from_answer(404, None, "", None);
        assert!(
            matches!(&e, Error::NotFound { detail } if detail.starts_with("HTTP 404, not from contextd"))
        );
        let e = Error::from_answer(401, None, "nope", None);
        assert_eq!(e.kind(), "unauthorized");
        let e = Error::from_answer(418, None, &"x".repeat(1000), None);
        let Error::Server { detail, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(detail.chars().count() < 300, "{detail}");
        // A problem document with a type that isn't contextd's.
        let p = Problem {
            kind: "about:blank".into(),
            ..problem(ErrorCode::Conflict, "busy")
        };
        let e = Error::from_problem(409, p, None);
        assert!(matches!(
            e,
            Error::Conflict {
                code: ErrorCode::Conflict,
                ..
            }
        ));
    }
}
