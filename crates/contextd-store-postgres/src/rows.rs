//! Conversions between `StoredObject` and `objects` rows.

use contextd_core::ids::{ObjectId, Scope};
use contextd_core::store::{encode_sealed, RawObject, StoreError, StoredObject};
use serde_json::value::RawValue;
use tokio_postgres::types::Json;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::{col, ms, opt_parse_col, parse_col, Failure, Param};

/// The columns [`object_from_row`] reads, in order, for a table aliased `o`.
pub(crate) const OBJECT_COLUMNS: &str =
    "o.id, o.kind, o.customer_id, o.parent_id, o.state, o.media_type, \
     o.detail_type, o.created, o.last_updated, o.touched, o.version, o.body, o.sealed, o.key_version";

/// How many columns [`OBJECT_COLUMNS`] names.
pub(crate) const OBJECT_COLUMN_COUNT: usize = 14;

/// An object flattened into the values bound to an `objects` row, in column order:
/// `$1` org … `$15` sealed, `$16` key_version.
pub(crate) struct ObjectRow {
    pub org: Uuid,
    pub partition: &'static str,
    pub id: Uuid,
    pub params: Vec<Param>,
    pub last_updated: chrono::DateTime<chrono::Utc>,
}

impl ObjectRow {
    /// Flattens an object.
    pub(crate) fn new(o: &StoredObject) -> Result<Self, StoreError> {
        // Serialized here, once: the driver would otherwise serialize on every retry.
        let body = o.body_value()?;
        let (org, partition, id) = (o.scope.org.0, o.scope.partition.as_str(), o.id.0);
        let params: Vec<Param> = vec![
            Box::new(org),
            Box::new(partition),
            Box::new(id),
            Box::new(o.kind.as_str()),
            Box::new(o.customer_id.map(|c| c.0)),
            Box::new(o.parent_id.map(|p| p.0)),
            Box::new(o.state.as_str()),
            Box::new(o.media_type.map(|m| m.as_str())),
            Box::new(o.detail_type.map(|d| d.as_str())),
            Box::new(ms(&o.created)),
            Box::new(ms(&o.last_updated)),
            Box::new(ms(&o.touched)),
            Box::new(o.version),
            Box::new(Json(body)),
            Box::new(encode_sealed(&o.sealed)),
            Box::new(i64::from(o.key_version)),
        ];
        Ok(Self {
            org,
            partition,
            id,
            params,
            last_updated: ms(&o.last_updated),
        })
    }
}

/// Reads a row whose first columns are [`OBJECT_COLUMNS`]. A body that does not parse is
/// a corrupt column, like any other.
pub(crate) fn object_from_row(scope: Scope, row: &Row) -> Result<StoredObject, Failure> {
    Ok(raw_object_from_row(row)?.into_object(scope)?)
}

/// Reads a row selected with [`OBJECT_COLUMNS`], its body and sealed values as stored.
pub(crate) fn raw_object_from_row(row: &Row) -> Result<RawObject, Failure> {
    let Json(body): Json<Box<RawValue>> = col(row, 11, "body")?;
    Ok(RawObject {
        id: ObjectId(col(row, 0, "id")?),
        kind: parse_col(row, 1, "kind")?,
        customer_id: col::<Option<Uuid>>(row, 2, "customer_id")?.map(ObjectId),
        parent_id: col::<Option<Uuid>>(row, 3, "parent_id")?.map(ObjectId),
        state: parse_col(row, 4, "state")?,
        media_type: opt_parse_col(row, 5, "media_type")?,
        detail_type: opt_parse_col(row, 6, "detail_type")?,
        created: col(row, 7, "created")?,
        last_updated: col(row, 8, "last_updated")?,
        touched: col(row, 9, "touched")?,
        version: col(row, 10, "version")?,
        body: Box::<str>::from(body).into_string(),
        sealed: col(row, 12, "sealed")?,
        key_version: u32::try_from(col::<i64>(row, 13, "key_version")?)
            .map_err(|_| StoreError::corrupt("key_version"))?,
    })
}
