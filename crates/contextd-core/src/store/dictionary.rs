//! The organization's dictionary as stored: [`DictionaryStore`].

use async_trait::async_trait;

use super::{StoreError, Token};
use crate::dictionary::{Field, FieldSet};
use crate::ids::OrgId;

/// Custom fields and field sets, per org and shared by both partitions. Every change bumps
/// the org's dictionary version in its own transaction; a change given `unused` tokens is
/// refused with `InUse` if any object of the org carries one of them when it commits (checked
/// so that no concurrent object write slips in between).
#[async_trait]
pub trait DictionaryStore: Send + Sync + 'static {
    /// The org's dictionary version (0 before any change). Read it before the definitions.
    async fn dictionary_version(&self, org: OrgId) -> Result<u64, StoreError>;
    /// Custom fields of the org.
    async fn fields(&self, org: OrgId) -> Result<Vec<Field>, StoreError>;
    /// Inserts (`create = true`, `AlreadyExists` if present) or replaces (`NotFound` if absent) a field.
    async fn put_field(
        &self,
        org: OrgId,
        field: &Field,
        create: bool,
        unused: &[Token],
    ) -> Result<(), StoreError>;
    /// Deletes a field; `NotFound` if absent.
    async fn delete_field(&self, org: OrgId, id: &str, unused: &[Token]) -> Result<(), StoreError>;
    /// Custom field sets of the org.
    async fn fieldsets(&self, org: OrgId) -> Result<Vec<FieldSet>, StoreError>;
    /// Inserts or replaces a field set, as `put_field`.
    async fn put_fieldset(
        &self,
        org: OrgId,
        set: &FieldSet,
        create: bool,
        unused: &[Token],
    ) -> Result<(), StoreError>;
    /// Deletes a field set; `NotFound` if absent.
    async fn delete_fieldset(
        &self,
        org: OrgId,
        id: &str,
        unused: &[Token],
    ) -> Result<(), StoreError>;
    /// Whether any object of the org (either partition) carries any of these tokens.
    async fn any_token_in_use(&self, org: OrgId, tokens: &[Token]) -> Result<bool, StoreError>;
}
