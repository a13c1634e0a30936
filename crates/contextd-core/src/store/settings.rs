//! [`SettingsStore`]: an organization's settings, as named JSON values (the origins allowed
//! to frame the agent desktop, `embedding`). The core parses and validates them; the store
//! keeps text.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::ids::OrgId;

/// Named settings of each organization.
#[async_trait]
pub trait SettingsStore: Send + Sync + 'static {
    /// An organization's value of a setting (JSON text), if it was ever set.
    async fn org_setting(&self, org: OrgId, name: &str) -> Result<Option<String>, StoreError>;
    /// Sets or replaces an organization's value of a setting.
    async fn put_org_setting(
        &self,
        org: OrgId,
        name: &str,
        value: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Every organization's value of one setting, by organization id.
    async fn org_settings_named(&self, name: &str) -> Result<Vec<(OrgId, String)>, StoreError>;
}
