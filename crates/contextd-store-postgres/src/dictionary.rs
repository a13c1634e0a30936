//! [`DictionaryStore`] for [`PgStore`]: field and field-set definitions (JSON) and the org's
//! dictionary version.

use async_trait::async_trait;
use contextd_core::dictionary::{Field, FieldSet};
use contextd_core::ids::OrgId;
use contextd_core::store::{DictionaryStore, StoreError, Token};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::Row;

use crate::db::{col, count, execute_cached, Failure};
use crate::store::{token_bytes, PgStore};

fn to_json<T: Serialize>(value: &T) -> Result<Json<serde_json::Value>, StoreError> {
    serde_json::to_value(value)
        .map(Json)
        .map_err(|e| StoreError::Backend(format!("cannot encode definition: {e}")))
}

fn definition<T: DeserializeOwned>(row: &Row) -> Result<T, Failure> {
    let Json(value): Json<T> = col(row, 0, "definition")?;
    Ok(value)
}

/// Dictionary tables: their statements differ only by name.
#[derive(Clone, Copy)]
enum Table {
    Fields,
    FieldSets,
}

impl Table {
    fn list(self) -> &'static str {
        match self {
            Table::Fields => "SELECT definition FROM fields WHERE org_id = $1 ORDER BY id",
            Table::FieldSets => "SELECT definition FROM fieldsets WHERE org_id = $1 ORDER BY id",
        }
    }

    fn insert(self) -> &'static str {
        match self {
            Table::Fields => {
                "INSERT INTO fields (org_id, id, definition) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
            }
            Table::FieldSets => {
                "INSERT INTO fieldsets (org_id, id, definition) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
            }
        }
    }

    fn update(self) -> &'static str {
        match self {
            Table::Fields => "UPDATE fields SET definition = $3 WHERE org_id = $1 AND id = $2",
            Table::FieldSets => {
                "UPDATE fieldsets SET definition = $3 WHERE org_id = $1 AND id = $2"
            }
        }
    }

    fn delete(self) -> &'static str {
        match self {
            Table::Fields => "DELETE FROM fields WHERE org_id = $1 AND id = $2",
            Table::FieldSets => "DELETE FROM fieldsets WHERE org_id = $1 AND id = $2",
        }
    }
}

impl PgStore {
    async fn definitions<T: DeserializeOwned>(
        &self,
        table: Table,
        org: OrgId,
    ) -> Result<Vec<T>, StoreError> {
        let rows = self.query(table.list(), &[&org.0]).await?;
        Ok(rows
            .iter()
            .map(definition)
            .collect::<Result<Vec<T>, Failure>>()?)
    }

    /// Runs one dictionary change (`sql` with `params`, which must change a row, else
    /// `missing`) in a transaction that bumps the org's dictionary version. With `unused`
    /// tokens it first holds `objects` in SHARE mode — waiting for object writes in flight and
    /// holding back new ones — and refuses with `InUse` if any object carries one of them.
    async fn change_dictionary(
        &self,
        org: OrgId,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        missing: fn() -> StoreError,
        unused: &[Token],
    ) -> Result<(), Failure> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        if !unused.is_empty() {
            tx.batch_execute("LOCK TABLE objects IN SHARE MODE").await?;
            let r = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM tokens
                     WHERE org_id = $1 AND partition IN ('lab', 'production') AND token = ANY ($2))",
                    &[&org.0, &token_bytes(unused)],
                )
                .await?;
            if r.try_get::<_, bool>(0)? {
                return Err(StoreError::InUse.into());
            }
        }
        let stmt = tx.prepare_cached(sql).await?;
        if tx.execute(&stmt, params).await? == 0 {
            return Err(missing().into());
        }
        execute_cached(
            &tx,
            "INSERT INTO dictionary_versions (org_id, version) VALUES ($1, 1)
             ON CONFLICT (org_id) DO UPDATE SET version = dictionary_versions.version + 1",
            &[&org.0],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn put_definition(
        &self,
        table: Table,
        org: OrgId,
        id: &str,
        definition: Json<serde_json::Value>,
        create: bool,
        unused: &[Token],
    ) -> Result<(), StoreError> {
        let (sql, missing): (_, fn() -> StoreError) = if create {
            (table.insert(), || StoreError::AlreadyExists)
        } else {
            (table.update(), || StoreError::NotFound)
        };
        let params: [&(dyn ToSql + Sync); 3] = [&org.0, &id, &definition];
        self.db
            .retry(|| self.change_dictionary(org, sql, &params, missing, unused))
            .await
    }

    async fn delete_definition(
        &self,
        table: Table,
        org: OrgId,
        id: &str,
        unused: &[Token],
    ) -> Result<(), StoreError> {
        let params: [&(dyn ToSql + Sync); 2] = [&org.0, &id];
        self.db
            .retry(|| {
                self.change_dictionary(
                    org,
                    table.delete(),
                    &params,
                    || StoreError::NotFound,
                    unused,
                )
            })
            .await
    }
}

#[async_trait]
impl DictionaryStore for PgStore {
    async fn dictionary_version(&self, org: OrgId) -> Result<u64, StoreError> {
        let row = self
            .query_opt(
                "SELECT version FROM dictionary_versions WHERE org_id = $1",
                &[&org.0],
            )
            .await?;
        match row {
            Some(r) => Ok(count(col(&r, 0, "version")?)?),
            None => Ok(0),
        }
    }

    async fn fields(&self, org: OrgId) -> Result<Vec<Field>, StoreError> {
        self.definitions(Table::Fields, org).await
    }

    async fn put_field(
        &self,
        org: OrgId,
        field: &Field,
        create: bool,
        unused: &[Token],
    ) -> Result<(), StoreError> {
        self.put_definition(
            Table::Fields,
            org,
            &field.id,
            to_json(field)?,
            create,
            unused,
        )
        .await
    }

    async fn delete_field(&self, org: OrgId, id: &str, unused: &[Token]) -> Result<(), StoreError> {
        self.delete_definition(Table::Fields, org, id, unused).await
    }

    async fn fieldsets(&self, org: OrgId) -> Result<Vec<FieldSet>, StoreError> {
        self.definitions(Table::FieldSets, org).await
    }

    async fn put_fieldset(
        &self,
        org: OrgId,
        set: &FieldSet,
        create: bool,
        unused: &[Token],
    ) -> Result<(), StoreError> {
        self.put_definition(
            Table::FieldSets,
            org,
            &set.id,
            to_json(set)?,
            create,
            unused,
        )
        .await
    }

    async fn delete_fieldset(
        &self,
        org: OrgId,
        id: &str,
        unused: &[Token],
    ) -> Result<(), StoreError> {
        self.delete_definition(Table::FieldSets, org, id, unused)
            .await
    }

    async fn any_token_in_use(&self, org: OrgId, tokens: &[Token]) -> Result<bool, StoreError> {
        if tokens.is_empty() {
            return Ok(false);
        }
        let rows = self
            .query(
                "SELECT EXISTS (SELECT 1 FROM tokens
                 WHERE org_id = $1 AND partition IN ('lab', 'production') AND token = ANY ($2))",
                &[&org.0, &token_bytes(tokens)],
            )
            .await?;
        match rows.first() {
            Some(r) => Ok(col(r, 0, "exists")?),
            None => Ok(false),
        }
    }
}
