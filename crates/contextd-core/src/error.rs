//! The core's error type; the server maps each variant to one HTTP status in one place.

use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// One problem with one input field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
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

/// Everything a core operation can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// Malformed input not tied to one field.
    #[error("{0}")]
    BadRequest(String),
    /// Per-field validation errors.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// No credential, or a bad one.
    #[error("{0}")]
    Unauthorized(String),
    /// The credential may not do this (role, partition, data retention, read-only base dictionary).
    #[error("{0}")]
    Forbidden(String),
    /// No such object in the caller's scope.
    #[error("{0}")]
    NotFound(String),
    /// A state conflict (closed request, data in use, …).
    #[error("{0}")]
    Conflict(String),
    /// The object's stored version is not the one the write was based on.
    #[error("version conflict: the stored version is {current}")]
    VersionConflict {
        /// The version now stored.
        current: i64,
    },
    /// The object is larger than the limit.
    #[error("{0}")]
    TooLarge(String),
    /// Encryption keys could not be read or unwrapped.
    #[error("key failure: {0}")]
    Keys(String),
    /// The audit log could not record what this request would reveal or change; the request
    /// is refused rather than answered unaudited.
    #[error("audit log unavailable: {0}")]
    AuditUnavailable(String),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl CoreError {
    /// A 400 with a message.
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::BadRequest(msg.into())
    }

    /// A 400 for one field.
    pub fn field(field: impl Into<String>, msg: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, msg)])
    }
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        CoreError::Store(e)
    }
}
