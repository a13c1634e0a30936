//! Every error leaves the server as RFC 9457 problem JSON, mapped here in one table.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use contextd_core::store::StoreError;
use contextd_core::{CoreError, FieldError};
pub use contextd_proto::error::{ErrorCode, Problem, PROBLEM_CONTENT_TYPE};

/// An error on its way to becoming a problem response.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    detail: String,
    errors: Vec<FieldError>,
    current_version: Option<i64>,
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error of a code with a detail.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            errors: Vec::new(),
            current_version: None,
            retry_after: None,
        }
    }

    /// 400.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, detail)
    }

    /// 404 for an unknown route.
    pub fn no_route() -> Self {
        Self::new(ErrorCode::NotFound, "no such resource")
    }

    /// 405.
    pub fn method_not_allowed() -> Self {
        Self::new(
            ErrorCode::MethodNotAllowed,
            "this method is not allowed on this resource",
        )
    }

    /// The response status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The error code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The problem body this error is answered with.
    pub fn problem(&self) -> Problem {
        let detail = match self.retry_after {
            Some(secs) if self.detail.is_empty() => format!("too many requests; retry in {secs} s"),
            _ => self.detail.clone(),
        };
        Problem {
            errors: self.errors.clone(),
            current_version: self.current_version,
            ..Problem::new(self.code, detail)
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        let code = e.code();
        match e {
            CoreError::Validation(errors) => Self {
                errors,
                ..Self::new(code, "the request has invalid fields")
            },
            CoreError::VersionConflict { current }
            | CoreError::Store(StoreError::VersionConflict { current }) => Self {
                current_version: Some(current),
                ..Self::new(
                    code,
                    format!("version conflict: the stored version is {current}"),
                )
            },
            CoreError::Keys(msg) => {
                tracing::error!(error = %msg, "key failure");
                Self::new(code, "encryption keys are unavailable")
            }
            CoreError::AuditUnavailable(msg) => {
                tracing::error!(error = %msg, "audit log unavailable");
                Self::new(
                    code,
                    "the audit log is unavailable, so the request was refused; retry later",
                )
            }
            CoreError::Store(StoreError::Backend(msg)) => {
                tracing::error!(error = %msg, "storage failure");
                Self::new(code, "the storage backend failed; retry later")
            }
            other => Self::new(code, other.to_string()),
        }
    }
}

impl From<contextd_proto::ParseError> for ApiError {
    fn from(e: contextd_proto::ParseError) -> Self {
        Self::bad_request(e.0)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let code = match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
            _ => ErrorCode::MalformedJson,
        };
        Self::new(code, r.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        let code = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorCode::TooLarge
        } else {
            ErrorCode::BadRequest
        };
        Self::new(code, r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let problem = self.problem();
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        // For the request metrics: an error's kind is its code (`telemetry.rs`).
        response.extensions_mut().insert(self.code);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was not read: the connection can't carry another request.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<crate::limits::TooMany> for ApiError {
    fn from(t: crate::limits::TooMany) -> Self {
        Self {
            retry_after: Some(t.seconds()),
            ..Self::new(ErrorCode::RateLimited, "")
        }
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;
