//! Every error leaves the server as RFC 9457 problem JSON, mapped here in one table.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use contextd_core::store::StoreError;
use contextd_core::{CoreError, FieldError};
use serde::Serialize;
use utoipa::ToSchema;

/// The problem document (RFC 9457).
#[derive(Debug, Serialize, ToSchema)]
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
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// An error on its way to becoming a problem response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    errors: Vec<FieldError>,
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status, a stable code and a detail.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// 400.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    /// 404 for an unknown route.
    pub fn no_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "no such resource")
    }

    /// 405.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "this method is not allowed on this resource",
        )
    }

    /// The response status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        use StatusCode as S;
        let (status, code) = match &e {
            CoreError::BadRequest(_) => (S::BAD_REQUEST, "bad-request"),
            CoreError::Validation(_) => (S::BAD_REQUEST, "validation"),
            CoreError::Unauthorized(_) => (S::UNAUTHORIZED, "unauthorized"),
            CoreError::Forbidden(_) => (S::FORBIDDEN, "forbidden"),
            CoreError::NotFound(_) => (S::NOT_FOUND, "not-found"),
            CoreError::Conflict(_) | CoreError::VersionConflict { .. } => (S::CONFLICT, "conflict"),
            CoreError::TooLarge(_) => (S::PAYLOAD_TOO_LARGE, "too-large"),
            CoreError::Keys(_) => (S::INTERNAL_SERVER_ERROR, "keys"),
            CoreError::AuditUnavailable(_) => (S::SERVICE_UNAVAILABLE, "audit-unavailable"),
            CoreError::Store(StoreError::NotFound) => (S::NOT_FOUND, "not-found"),
            CoreError::Store(StoreError::VersionConflict { .. } | StoreError::AlreadyExists) => {
                (S::CONFLICT, "conflict")
            }
            CoreError::Store(
                StoreError::ParentClosed | StoreError::LastAdmin | StoreError::KeysChanged,
            ) => (S::CONFLICT, "conflict"),
            CoreError::Store(StoreError::ParentNotFound | StoreError::CustomerNotFound) => {
                (S::BAD_REQUEST, "validation")
            }
            CoreError::Store(StoreError::InUse | StoreError::DictionaryChanged) => {
                (S::CONFLICT, "conflict")
            }
            CoreError::Store(StoreError::Backend(_)) => (S::SERVICE_UNAVAILABLE, "storage"),
        };
        match e {
            CoreError::Validation(errors) => Self {
                status,
                code,
                detail: "the request has invalid fields".into(),
                errors,
                retry_after: None,
            },
            CoreError::Keys(msg) => {
                tracing::error!(error = %msg, "key failure");
                Self::new(status, code, "encryption keys are unavailable")
            }
            CoreError::AuditUnavailable(msg) => {
                tracing::error!(error = %msg, "audit log unavailable");
                Self::new(
                    status,
                    code,
                    "the audit log is unavailable, so the request was refused; retry later",
                )
            }
            CoreError::Store(StoreError::Backend(msg)) => {
                tracing::error!(error = %msg, "storage failure");
                Self::new(status, code, "the storage backend failed; retry later")
            }
            other => Self::new(status, code, other.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "too-large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
            _ => "malformed-json",
        };
        let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
            StatusCode::BAD_REQUEST
        } else {
            status
        };
        Self::new(status, code, r.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        let status = r.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too-large"
        } else {
            "bad-request"
        };
        Self::new(status, code, r.body_text())
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
        let detail = match self.retry_after {
            Some(secs) if self.detail.is_empty() => format!("too many requests; retry in {secs} s"),
            _ => self.detail,
        };
        let problem = Problem {
            kind: format!("urn:contextd:problem:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail,
            errors: self.errors,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
        }
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was not read: the connection can't carry another request.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<crate::limits::TooMany> for ApiError {
    fn from(t: crate::limits::TooMany) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "rate-limited",
            detail: String::new(),
            errors: Vec::new(),
            retry_after: Some(t.seconds()),
        }
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;
