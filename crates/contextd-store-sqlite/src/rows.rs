//! Conversions between `StoredObject` and `objects` rows.

use std::collections::BTreeMap;

use contextd_core::ids::{ObjectId, Scope};
use contextd_core::object::Contributor;
use contextd_core::store::{decode_sealed, encode_sealed, StoreError, StoredObject};
use rusqlite::Row;
use serde::{Deserialize, Serialize};

use crate::db::{
    corrupt, int_col, ms, opt_text_col, opt_uuid_col, parse_col, time_col, uuid_col, DbResultExt,
};

/// The columns [`object_from_row`] reads, in order, for a table aliased `o`.
pub(crate) const OBJECT_COLUMNS: &str =
    "o.id, o.kind, o.customer_id, o.parent_id, o.state, o.media_type, \
     o.detail_type, o.created, o.last_updated, o.touched, o.version, o.body, o.sealed, o.key_version";

#[derive(Serialize)]
struct BodyRef<'a> {
    fieldsets: &'a [String],
    clear: &'a BTreeMap<String, serde_json::Value>,
    tags: &'a [String],
    contributors: &'a [Contributor],
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    fieldsets: Vec<String>,
    #[serde(default)]
    clear: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    contributors: Vec<Contributor>,
}

/// An object flattened into the values bound to an `objects` row; built on the caller's
/// thread so that the writer thread only binds and steps.
pub(crate) struct ObjectRow {
    pub org: [u8; 16],
    pub partition: &'static str,
    pub id: [u8; 16],
    pub kind: &'static str,
    pub customer_id: Option<[u8; 16]>,
    pub parent_id: Option<[u8; 16]>,
    pub state: &'static str,
    pub media_type: Option<&'static str>,
    pub detail_type: Option<&'static str>,
    pub created: i64,
    pub last_updated: i64,
    pub touched: i64,
    pub version: i64,
    pub body: String,
    pub sealed: Vec<u8>,
    pub key_version: i64,
}

impl ObjectRow {
    /// Flattens an object.
    pub(crate) fn new(o: &StoredObject) -> Result<Self, StoreError> {
        let body = serde_json::to_string(&BodyRef {
            fieldsets: &o.fieldsets,
            clear: &o.clear,
            tags: &o.tags,
            contributors: &o.contributors,
        })
        .map_err(|e| StoreError::Backend(format!("cannot encode object body: {e}")))?;
        Ok(Self {
            org: o.scope.org.0.into_bytes(),
            partition: o.scope.partition.as_str(),
            id: o.id.0.into_bytes(),
            kind: o.kind.as_str(),
            customer_id: o.customer_id.map(|c| c.0.into_bytes()),
            parent_id: o.parent_id.map(|p| p.0.into_bytes()),
            state: o.state.as_str(),
            media_type: o.media_type.map(|m| m.as_str()),
            detail_type: o.detail_type.map(|d| d.as_str()),
            created: ms(&o.created),
            last_updated: ms(&o.last_updated),
            touched: ms(&o.touched),
            version: o.version,
            body,
            sealed: encode_sealed(&o.sealed),
            key_version: i64::from(o.key_version),
        })
    }
}

/// Reads a row selected with [`OBJECT_COLUMNS`].
pub(crate) fn object_from_row(scope: Scope, row: &Row<'_>) -> Result<StoredObject, StoreError> {
    let body: Body = serde_json::from_slice(
        row.get_ref(11)
            .db()?
            .as_bytes()
            .map_err(|_| corrupt("body"))?,
    )
    .map_err(|_| corrupt("body"))?;
    let sealed = decode_sealed(
        row.get_ref(12)
            .db()?
            .as_blob()
            .map_err(|_| corrupt("sealed"))?,
    )?;
    Ok(StoredObject {
        id: ObjectId(uuid_col(row.get_ref(0).db()?, "id")?),
        scope,
        kind: parse_col(row.get_ref(1).db()?, "kind")?,
        customer_id: opt_uuid_col(row.get_ref(2).db()?, "customer_id")?.map(ObjectId),
        parent_id: opt_uuid_col(row.get_ref(3).db()?, "parent_id")?.map(ObjectId),
        state: parse_col(row.get_ref(4).db()?, "state")?,
        media_type: opt_text_col(row.get_ref(5).db()?, "media_type")?
            .map(|s| s.parse().map_err(|_| corrupt("media_type")))
            .transpose()?,
        detail_type: opt_text_col(row.get_ref(6).db()?, "detail_type")?
            .map(|s| s.parse().map_err(|_| corrupt("detail_type")))
            .transpose()?,
        fieldsets: body.fieldsets,
        clear: body.clear,
        sealed,
        tags: body.tags,
        contributors: body.contributors,
        created: time_col(row.get_ref(7).db()?, "created")?,
        last_updated: time_col(row.get_ref(8).db()?, "last_updated")?,
        touched: time_col(row.get_ref(9).db()?, "touched")?,
        version: int_col(row.get_ref(10).db()?, "version")?,
        key_version: u32::try_from(int_col(row.get_ref(13).db()?, "key_version")?)
            .map_err(|_| corrupt("key_version"))?,
    })
}
