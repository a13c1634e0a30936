//! [`AuditStore`] for [`SqliteStore`]: the audit log, in a file of its own (SQL in
//! `access.rs`).

use async_trait::async_trait;
use contextd_core::ids::Scope;
use contextd_core::store::{AuditEntry, AuditQuery, AuditStore, StoreError};

use crate::access;
use crate::store::SqliteStore;

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        let entries = entries.to_vec();
        self.audit
            .write(move |tx| access::append_audit(tx, &entries))
            .await
    }

    async fn audit(&self, scope: Scope, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let query = query.clone();
        self.audit
            .read(move |c| access::audit(c, scope, &query))
            .await
    }
}
