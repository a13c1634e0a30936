//! Conversions between `StoredObject` and `objects` rows.

use contextd_core::ids::{ObjectId, Scope};
use contextd_core::store::{encode_sealed, RawObject, StoreError, StoredObject};
use rusqlite::Row;

use crate::db::{
    int_col, ms, opt_parse_col, opt_uuid_col, parse_col, time_col, uuid_col, DbResultExt,
};

/// The columns [`object_from_row`] reads, in order, for a table aliased `o`.
pub(crate) const OBJECT_COLUMNS: &str =
    "o.id, o.kind, o.customer_id, o.parent_id, o.state, o.media_type, \
     o.detail_type, o.created, o.last_updated, o.touched, o.version, o.body, o.sealed, o.key_version";

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
    /// The values of the row's columns, in the order of the `objects` insert (`?1`–`?16`);
    /// the update binds the same and the expected version as `?17`.
    pub(crate) fn columns(&self) -> [&dyn rusqlite::ToSql; 16] {
        [
            &self.org,
            &self.partition,
            &self.id,
            &self.kind,
            &self.customer_id,
            &self.parent_id,
            &self.state,
            &self.media_type,
            &self.detail_type,
            &self.created,
            &self.last_updated,
            &self.touched,
            &self.version,
            &self.body,
            &self.sealed,
            &self.key_version,
        ]
    }

    /// Flattens an object.
    pub(crate) fn new(o: &StoredObject) -> Result<Self, StoreError> {
        let body = o.body_json()?;
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
    raw_object_from_row(row)?.into_object(scope)
}

/// Reads a row selected with [`OBJECT_COLUMNS`], its body and sealed values as stored.
pub(crate) fn raw_object_from_row(row: &Row<'_>) -> Result<RawObject, StoreError> {
    let col = |i: usize| row.get_ref(i).db();
    let body = std::str::from_utf8(
        col(11)?
            .as_bytes()
            .map_err(|_| StoreError::corrupt("body"))?,
    )
    .map_err(|_| StoreError::corrupt("body"))?;
    Ok(RawObject {
        id: ObjectId(uuid_col(col(0)?, "id")?),
        kind: parse_col(col(1)?, "kind")?,
        customer_id: opt_uuid_col(col(2)?, "customer_id")?.map(ObjectId),
        parent_id: opt_uuid_col(col(3)?, "parent_id")?.map(ObjectId),
        state: parse_col(col(4)?, "state")?,
        media_type: opt_parse_col(col(5)?, "media_type")?,
        detail_type: opt_parse_col(col(6)?, "detail_type")?,
        created: time_col(col(7)?, "created")?,
        last_updated: time_col(col(8)?, "last_updated")?,
        touched: time_col(col(9)?, "touched")?,
        version: int_col(col(10)?, "version")?,
        body: body.to_owned(),
        sealed: col(12)?
            .as_blob()
            .map_err(|_| StoreError::corrupt("sealed"))?
            .to_vec(),
        key_version: u32::try_from(int_col(col(13)?, "key_version")?)
            .map_err(|_| StoreError::corrupt("key_version"))?,
    })
}
