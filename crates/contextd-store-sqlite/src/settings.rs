//! [`SettingsStore`] for [`SqliteStore`]: rows of `org_settings`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextd_core::ids::OrgId;
use contextd_core::store::{SettingsStore, StoreError};
use rusqlite::{params, OptionalExtension};

use crate::db::{ms, text_col, uuid_col, DbResultExt};
use crate::store::{blob, SqliteStore};

#[async_trait]
impl SettingsStore for SqliteStore {
    async fn org_setting(&self, org: OrgId, name: &str) -> Result<Option<String>, StoreError> {
        let name = name.to_owned();
        self.db
            .read(move |c| {
                c.prepare_cached("SELECT value FROM org_settings WHERE org_id = ?1 AND name = ?2")
                    .db()?
                    .query_row(params![blob(org.0), name], |r| r.get::<_, String>(0))
                    .optional()
                    .db()
            })
            .await
    }

    async fn put_org_setting(
        &self,
        org: OrgId,
        name: &str,
        value: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (name, value, at) = (name.to_owned(), value.to_owned(), ms(&at));
        self.db
            .write(move |tx| {
                tx.prepare_cached(
                    "INSERT INTO org_settings (org_id, name, value, updated) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (org_id, name) DO UPDATE SET value = ?3, updated = ?4",
                )
                .db()?
                .execute(params![blob(org.0), name, value, at])
                .db()?;
                Ok(())
            })
            .await
    }

    async fn org_settings_named(&self, name: &str) -> Result<Vec<(OrgId, String)>, StoreError> {
        let name = name.to_owned();
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT org_id, value FROM org_settings WHERE name = ?1 ORDER BY org_id",
                    )
                    .db()?;
                let mut rows = stmt.query([name]).db()?;
                let mut out = Vec::new();
                while let Some(r) = rows.next().db()? {
                    let org = OrgId(uuid_col(r.get_ref(0).db()?, "org_id")?);
                    out.push((org, text_col(r.get_ref(1).db()?, "value")?.to_owned()));
                }
                Ok(out)
            })
            .await
    }
}
