//! Driver errors as store errors.

use contextd_core::store::StoreError;

/// Maps driver errors into [`StoreError::Backend`].
pub(crate) trait DbResultExt<T> {
    /// Converts the error.
    fn db(self) -> Result<T, StoreError>;
}

impl<T> DbResultExt<T> for Result<T, rusqlite::Error> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Backend(format!("sqlite: {e}")))
    }
}
