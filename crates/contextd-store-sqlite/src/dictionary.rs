//! [`DictionaryStore`] for [`SqliteStore`]: field and field-set definitions (JSON) and the
//! org's dictionary version.

use async_trait::async_trait;
use contextd_core::dictionary::{Field, FieldSet};
use contextd_core::ids::OrgId;
use contextd_core::store::{DictionaryStore, StoreError, Token};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::db::{text_col, DbResultExt};
use crate::store::{blob, token_blobs, SqliteStore};

fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Backend(format!("cannot encode definition: {e}")))
}

fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|_| StoreError::corrupt("definition"))
}

/// Reads the definitions of one dictionary table, sorted by id.
fn definitions<T: DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    org: [u8; 16],
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).db()?;
    let mut rows = stmt.query([org]).db()?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().db()? {
        out.push(from_json(text_col(r.get_ref(0).db()?, "definition")?)?);
    }
    Ok(out)
}

/// Inserts (`create`) or replaces a dictionary entry.
/// Refuses a dictionary change if any object of the org carries one of `unused` (the writer
/// thread serializes this with object writes), then bumps the org's dictionary version.
fn dictionary_change(
    tx: &Transaction<'_>,
    org: [u8; 16],
    unused: &[[u8; 16]],
) -> Result<(), StoreError> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM tokens
             WHERE org_id = ?1 AND partition IN ('lab', 'production') AND token = ?2)",
        )
        .db()?;
    for token in unused {
        if stmt
            .query_row(params![org, token], |r| r.get::<_, bool>(0))
            .db()?
        {
            return Err(StoreError::InUse);
        }
    }
    tx.prepare_cached(
        "INSERT INTO dictionary_versions (org_id, version) VALUES (?1, 1)
         ON CONFLICT (org_id) DO UPDATE SET version = version + 1",
    )
    .db()?
    .execute(params![org])
    .db()?;
    Ok(())
}

/// The org's dictionary version (0 before any change).
pub(crate) fn dictionary_version(c: &Connection, org: [u8; 16]) -> Result<u64, StoreError> {
    let v: Option<i64> = c
        .prepare_cached("SELECT version FROM dictionary_versions WHERE org_id = ?1")
        .db()?
        .query_row(params![org], |r| r.get(0))
        .optional()
        .db()?;
    Ok(v.unwrap_or(0).max(0) as u64)
}

fn put_definition(
    tx: &Transaction<'_>,
    table: Table,
    org: [u8; 16],
    id: &str,
    definition: &str,
    create: bool,
) -> Result<(), StoreError> {
    let (insert, update) = match table {
        Table::Fields => (
            "INSERT INTO fields (org_id, id, definition) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            "UPDATE fields SET definition = ?3 WHERE org_id = ?1 AND id = ?2",
        ),
        Table::FieldSets => (
            "INSERT INTO fieldsets (org_id, id, definition) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            "UPDATE fieldsets SET definition = ?3 WHERE org_id = ?1 AND id = ?2",
        ),
    };
    let changed = tx
        .prepare_cached(if create { insert } else { update })
        .db()?
        .execute(params![org, id, definition])
        .db()?;
    match (changed, create) {
        (0, true) => Err(StoreError::AlreadyExists),
        (0, false) => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

#[derive(Clone, Copy)]
enum Table {
    Fields,
    FieldSets,
}

fn delete_definition(
    tx: &Transaction<'_>,
    table: Table,
    org: [u8; 16],
    id: &str,
) -> Result<(), StoreError> {
    let sql = match table {
        Table::Fields => "DELETE FROM fields WHERE org_id = ?1 AND id = ?2",
        Table::FieldSets => "DELETE FROM fieldsets WHERE org_id = ?1 AND id = ?2",
    };
    match tx
        .prepare_cached(sql)
        .db()?
        .execute(params![org, id])
        .db()?
    {
        0 => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

#[async_trait]
impl DictionaryStore for SqliteStore {
    async fn dictionary_version(&self, org: OrgId) -> Result<u64, StoreError> {
        self.db
            .point_read(move |c| dictionary_version(c, blob(org.0)))
            .await
    }

    async fn fields(&self, org: OrgId) -> Result<Vec<Field>, StoreError> {
        self.db
            .read(move |c| {
                definitions(
                    c,
                    "SELECT definition FROM fields WHERE org_id = ?1 ORDER BY id",
                    blob(org.0),
                )
            })
            .await
    }

    async fn put_field(
        &self,
        org: OrgId,
        field: &Field,
        create: bool,
        unused: &[Token],
    ) -> Result<(), StoreError> {
        let (id, definition, unused) = (field.id.clone(), to_json(field)?, token_blobs(unused));
        self.db
            .write(move |tx| {
                dictionary_change(tx, blob(org.0), &unused)?;
                put_definition(tx, Table::Fields, blob(org.0), &id, &definition, create)
            })
            .await
    }

    async fn delete_field(&self, org: OrgId, id: &str, unused: &[Token]) -> Result<(), StoreError> {
        let (id, unused) = (id.to_owned(), token_blobs(unused));
        self.db
            .write(move |tx| {
                dictionary_change(tx, blob(org.0), &unused)?;
                delete_definition(tx, Table::Fields, blob(org.0), &id)
            })
            .await
    }

    async fn fieldsets(&self, org: OrgId) -> Result<Vec<FieldSet>, StoreError> {
        self.db
            .read(move |c| {
                definitions(
                    c,
                    "SELECT definition FROM fieldsets WHERE org_id = ?1 ORDER BY id",
                    blob(org.0),
                )
            })
            .await
    }

    async fn put_fieldset(
        &self,
        org: OrgId,
        set: &FieldSet,
        create: bool,
        unused: &[Token],
    ) -> Result<(), StoreError> {
        let (id, definition, unused) = (set.id.clone(), to_json(set)?, token_blobs(unused));
        self.db
            .write(move |tx| {
                dictionary_change(tx, blob(org.0), &unused)?;
                put_definition(tx, Table::FieldSets, blob(org.0), &id, &definition, create)
            })
            .await
    }

    async fn delete_fieldset(
        &self,
        org: OrgId,
        id: &str,
        unused: &[Token],
    ) -> Result<(), StoreError> {
        let (id, unused) = (id.to_owned(), token_blobs(unused));
        self.db
            .write(move |tx| {
                dictionary_change(tx, blob(org.0), &unused)?;
                delete_definition(tx, Table::FieldSets, blob(org.0), &id)
            })
            .await
    }

    async fn any_token_in_use(&self, org: OrgId, tokens: &[Token]) -> Result<bool, StoreError> {
        if tokens.is_empty() {
            return Ok(false);
        }
        let tokens = token_blobs(tokens);
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM tokens
                         WHERE org_id = ?1 AND partition IN ('lab', 'production') AND token = ?2)",
                    )
                    .db()?;
                for token in &tokens {
                    if stmt
                        .query_row(params![blob(org.0), token], |r| r.get::<_, bool>(0))
                        .db()?
                    {
                        return Ok(true);
                    }
                }
                Ok(false)
            })
            .await
    }
}
