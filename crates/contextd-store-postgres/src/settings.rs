//! [`SettingsStore`] for [`PgStore`]: rows of `org_settings`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextd_core::ids::OrgId;
use contextd_core::store::{SettingsStore, StoreError};

use crate::db::{col, ms, Failure};
use crate::store::PgStore;

#[async_trait]
impl SettingsStore for PgStore {
    async fn org_setting(&self, org: OrgId, name: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .query_opt(
                "SELECT value FROM org_settings WHERE org_id = $1 AND name = $2",
                &[&org.0, &name],
            )
            .await?;
        Ok(row.map(|r| col(&r, 0, "value")).transpose()?)
    }

    async fn put_org_setting(
        &self,
        org: OrgId,
        name: &str,
        value: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO org_settings (org_id, name, value, updated) VALUES ($1, $2, $3, $4)
             ON CONFLICT (org_id, name) DO UPDATE SET value = $3, updated = $4",
            &[&org.0, &name, &value, &ms(&at)],
        )
        .await?;
        Ok(())
    }

    async fn org_settings_named(&self, name: &str) -> Result<Vec<(OrgId, String)>, StoreError> {
        let rows = self
            .query(
                "SELECT org_id, value FROM org_settings WHERE name = $1 ORDER BY org_id",
                &[&name],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((OrgId(col(r, 0, "org_id")?), col(r, 1, "value")?)))
            .collect::<Result<_, Failure>>()?)
    }
}
