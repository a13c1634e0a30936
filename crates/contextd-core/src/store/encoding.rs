//! How an object lies in an `objects` row, for every backend: typed columns for what a store
//! indexes, one JSON document (the body) for the rest of its clear state, and one binary
//! column for its sealed values.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{StoreError, StoredObject};
use crate::ids::{ObjectId, Scope};
use crate::object::{Contributor, DetailType, Kind, MediaType, State};

/// The body document of an object (`body` column): its field sets, clear values, tags and
/// contributors. A member missing from a stored body reads as empty.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ObjectBody {
    /// Field set names.
    #[serde(default)]
    pub fieldsets: Vec<String>,
    /// Values of UNENCRYPTED fields.
    #[serde(default)]
    pub clear: BTreeMap<String, serde_json::Value>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Contributors.
    #[serde(default)]
    pub contributors: Vec<Contributor>,
}

/// [`ObjectBody`] borrowed from the object it is written from.
#[derive(Serialize)]
struct BodyRef<'a> {
    fieldsets: &'a [String],
    clear: &'a BTreeMap<String, serde_json::Value>,
    tags: &'a [String],
    contributors: &'a [Contributor],
}

impl StoredObject {
    fn body_ref(&self) -> BodyRef<'_> {
        BodyRef {
            fieldsets: &self.fieldsets,
            clear: &self.clear,
            tags: &self.tags,
            contributors: &self.contributors,
        }
    }

    /// The body document as JSON text.
    pub fn body_json(&self) -> Result<String, StoreError> {
        serde_json::to_string(&self.body_ref()).map_err(body_error)
    }

    /// The body document as a JSON value, for a driver that binds one.
    pub fn body_value(&self) -> Result<serde_json::Value, StoreError> {
        serde_json::to_value(self.body_ref()).map_err(body_error)
    }
}

fn body_error(e: serde_json::Error) -> StoreError {
    StoreError::Backend(format!("cannot encode object body: {e}"))
}

impl ObjectBody {
    /// Reads a body document; one that does not parse is a corrupt column.
    pub fn from_json(json: &[u8]) -> Result<Self, StoreError> {
        serde_json::from_slice(json).map_err(|_| StoreError::corrupt("body"))
    }
}

/// Encodes sealed values for storage in one binary column:
/// repeated `[u16 BE name length][name][u32 BE value length][value]`.
pub fn encode_sealed(sealed: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(sealed.iter().map(|(k, v)| 6 + k.len() + v.len()).sum());
    for (name, value) in sealed {
        // Field ids are at most 100 bytes and objects at most 256 KB, so the casts cannot truncate.
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
    out
}

/// Decodes what [`encode_sealed`] wrote; a corrupt column is a backend error, never a panic.
pub fn decode_sealed(bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
    sealed_values(bytes)
        .map(|v| v.map(|(name, value)| (name.to_owned(), value.to_vec())))
        .collect()
}

/// The (field id, sealed bytes) pairs of what [`encode_sealed`] wrote, borrowed, in field id
/// order; a corrupt column yields one error and ends.
pub fn sealed_values(mut bytes: &[u8]) -> impl Iterator<Item = Result<(&str, &[u8]), StoreError>> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], StoreError> {
        if bytes.len() < n {
            return Err(StoreError::corrupt("sealed"));
        }
        let (head, tail) = bytes.split_at(n);
        *bytes = tail;
        Ok(head)
    }
    fn next<'a>(bytes: &mut &'a [u8]) -> Result<(&'a str, &'a [u8]), StoreError> {
        let len = take(bytes, 2)?;
        let name_len = u16::from_be_bytes([len[0], len[1]]) as usize;
        let name = std::str::from_utf8(take(bytes, name_len)?)
            .map_err(|_| StoreError::corrupt("sealed"))?;
        let len = take(bytes, 4)?;
        let value_len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        Ok((name, take(bytes, value_len)?))
    }
    std::iter::from_fn(move || {
        if bytes.is_empty() {
            return None;
        }
        let item = next(&mut bytes);
        if item.is_err() {
            bytes = &[];
        }
        Some(item)
    })
}

/// An `objects` row as stored, its body and sealed values still encoded: what a timeline
/// reads, so that the core can write it into a response without decoding the body into values
/// and encoding them again.
#[derive(Clone, Debug)]
pub struct RawObject {
    /// Object id.
    pub id: ObjectId,
    /// Kind.
    pub kind: Kind,
    /// Owning customer.
    pub customer_id: Option<ObjectId>,
    /// Parent request or activity.
    pub parent_id: Option<ObjectId>,
    /// State as written.
    pub state: State,
    /// Channel of an activity.
    pub media_type: Option<MediaType>,
    /// Kind of a detail.
    pub detail_type: Option<DetailType>,
    /// Created.
    pub created: DateTime<Utc>,
    /// Last write to the object itself.
    pub last_updated: DateTime<Utc>,
    /// Last write to the object or to a child.
    pub touched: DateTime<Utc>,
    /// Write counter.
    pub version: i64,
    /// The partition data-key version of its sealed values (see [`StoredObject::key_version`]).
    pub key_version: u32,
    /// The body document ([`ObjectBody`]) as stored: JSON text, checked by whoever parses it.
    pub body: String,
    /// The sealed values as [`encode_sealed`] wrote them.
    pub sealed: Vec<u8>,
}

impl RawObject {
    /// Decodes the object of `scope`; a corrupt column is a backend error.
    pub fn into_object(self, scope: Scope) -> Result<StoredObject, StoreError> {
        let body = ObjectBody::from_json(self.body.as_bytes())?;
        Ok(StoredObject {
            id: self.id,
            scope,
            kind: self.kind,
            customer_id: self.customer_id,
            parent_id: self.parent_id,
            state: self.state,
            media_type: self.media_type,
            detail_type: self.detail_type,
            fieldsets: body.fieldsets,
            clear: body.clear,
            sealed: decode_sealed(&self.sealed)?,
            tags: body.tags,
            contributors: body.contributors,
            created: self.created,
            last_updated: self.last_updated,
            touched: self.touched,
            version: self.version,
            key_version: self.key_version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{OrgId, Partition};
    use crate::object::ContributorType;
    use crate::time::from_millis;

    #[test]
    fn sealed_encoding_round_trips_and_rejects_garbage() {
        let m = BTreeMap::from([
            ("a".to_owned(), vec![1, 2, 3]),
            ("Context_ZIP".to_owned(), vec![]),
        ]);
        assert_eq!(decode_sealed(&encode_sealed(&m)).ok(), Some(m));
        assert!(decode_sealed(&[0, 5, b'a']).is_err());
    }

    fn object() -> StoredObject {
        let t = from_millis(1_700_000_000_000);
        StoredObject {
            id: ObjectId::new(),
            scope: Scope {
                org: OrgId::new(),
                partition: Partition::Lab,
            },
            kind: Kind::Activity,
            customer_id: Some(ObjectId::new()),
            parent_id: None,
            state: State::Active,
            media_type: Some(MediaType::Chat),
            detail_type: None,
            fieldsets: vec!["cisco.base.ccc.pod".into()],
            clear: BTreeMap::from([("Context_Notes".into(), serde_json::json!("hi"))]),
            sealed: BTreeMap::from([("Context_ZIP".into(), vec![9, 9])]),
            tags: vec!["vip".into()],
            contributors: vec![Contributor {
                id: "agent-1".into(),
                kind: ContributorType::User,
            }],
            created: t,
            last_updated: t,
            touched: t,
            version: 3,
            key_version: 2,
        }
    }

    fn raw(o: &StoredObject, body: &str) -> RawObject {
        RawObject {
            id: o.id,
            kind: o.kind,
            customer_id: o.customer_id,
            parent_id: o.parent_id,
            state: o.state,
            media_type: o.media_type,
            detail_type: o.detail_type,
            created: o.created,
            last_updated: o.last_updated,
            touched: o.touched,
            version: o.version,
            key_version: o.key_version,
            body: body.to_owned(),
            sealed: encode_sealed(&o.sealed),
        }
    }

    #[test]
    fn an_object_round_trips_through_its_row() {
        let o = object();
        let text = o.body_json().expect("encode");
        let value = o.body_value().expect("encode");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).ok(),
            Some(value)
        );
        let back = raw(&o, &text).into_object(o.scope).ok();
        assert_eq!(back, Some(o));
    }

    #[test]
    fn a_body_reads_missing_members_as_empty_and_garbage_as_corrupt() {
        assert_eq!(
            ObjectBody::from_json(b"{}").ok(),
            Some(ObjectBody::default())
        );
        assert!(matches!(
            ObjectBody::from_json(b"not json"),
            Err(StoreError::Backend(m)) if m == "corrupt body column"
        ));
        let o = object();
        assert!(
            raw(&o, "not json").into_object(o.scope).is_err(),
            "a body that is not JSON"
        );
        let mut r = raw(&o, "{}");
        r.sealed = vec![0, 5, b'a'];
        assert!(r.into_object(o.scope).is_err(), "a corrupt sealed column");
    }
}
