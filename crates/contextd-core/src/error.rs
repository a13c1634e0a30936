//! The core's error type; the server maps each variant to one HTTP status in one place.

use crate::store::StoreError;

pub use contextd_proto::error::{ErrorCode, FieldError};

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
    /// A state conflict no more precise variant names.
    #[error("{0}")]
    Conflict(String),
    /// Something of that name or id exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The parent request is closed: it takes no new or moved children.
    #[error("the parent request is closed")]
    ParentClosed,
    /// The object is closed or immutable.
    #[error("{0}")]
    Closed(String),
    /// A dictionary entry is used by stored data (or a field set) and can't change so.
    #[error("{0}")]
    InUse(String),
    /// The partition's last enabled admin user can't be disabled, demoted or deleted.
    #[error("{0}")]
    LastAdmin(String),
    /// Other writers kept changing what the operation depends on; retrying is safe.
    #[error("{0}")]
    Contended(String),
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

impl CoreError {
    /// The wire error code of this error (and so its HTTP status).
    pub fn code(&self) -> ErrorCode {
        match self {
            CoreError::BadRequest(_) => ErrorCode::BadRequest,
            CoreError::Validation(_) => ErrorCode::Validation,
            CoreError::Unauthorized(_) => ErrorCode::Unauthorized,
            CoreError::Forbidden(_) => ErrorCode::Forbidden,
            CoreError::NotFound(_) => ErrorCode::NotFound,
            CoreError::Conflict(_) => ErrorCode::Conflict,
            CoreError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            CoreError::ParentClosed => ErrorCode::ParentClosed,
            CoreError::Closed(_) => ErrorCode::Closed,
            CoreError::InUse(_) => ErrorCode::InUse,
            CoreError::LastAdmin(_) => ErrorCode::LastAdmin,
            CoreError::Contended(_) => ErrorCode::Contended,
            CoreError::VersionConflict { .. } => ErrorCode::VersionConflict,
            CoreError::TooLarge(_) => ErrorCode::TooLarge,
            CoreError::Keys(_) => ErrorCode::Keys,
            CoreError::AuditUnavailable(_) => ErrorCode::AuditUnavailable,
            CoreError::Store(e) => match e {
                StoreError::NotFound => ErrorCode::NotFound,
                StoreError::VersionConflict { .. } => ErrorCode::VersionConflict,
                StoreError::AlreadyExists => ErrorCode::AlreadyExists,
                StoreError::ParentClosed => ErrorCode::ParentClosed,
                StoreError::LastAdmin => ErrorCode::LastAdmin,
                StoreError::KeysChanged | StoreError::DictionaryChanged => ErrorCode::Contended,
                StoreError::ParentNotFound | StoreError::CustomerNotFound => ErrorCode::Validation,
                StoreError::InUse => ErrorCode::InUse,
                StoreError::Backend(_) => ErrorCode::Storage,
            },
        }
    }
}

impl From<contextd_proto::ParseError> for CoreError {
    fn from(e: contextd_proto::ParseError) -> Self {
        CoreError::BadRequest(e.0)
    }
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        CoreError::Store(e)
    }
}
