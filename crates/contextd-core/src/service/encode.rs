//! A timeline page written from its stored rows straight into the response's JSON.
//!
//! The body's fragments (field sets, clear values, tags, contributors) are copied as stored,
//! not decoded into values and encoded again, and each sealed value is decrypted into its
//! place, under the rules of [`Context::reveal_as`]. On SQLite the bytes are those
//! `serde_json` writes for the [`TimelinePage`] of [`Context::timeline`] (a test holds the two
//! together); PostgreSQL's `jsonb` prints the copied fragments its own way (spacing, number
//! forms): the same JSON values.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::reveal::sealed_fields;
use super::*;
use crate::store::sealed_values;

/// A stored body document's parts, borrowed from its text. A member that is there must be a
/// list (not `null`): a body this path cannot vouch for goes the decoded way, which calls it
/// corrupt.
#[derive(Deserialize)]
struct BodyParts<'a> {
    #[serde(borrow, default, deserialize_with = "list")]
    fieldsets: Option<&'a RawValue>,
    #[serde(borrow, default)]
    clear: BTreeMap<&'a str, &'a RawValue>,
    #[serde(borrow, default, deserialize_with = "list")]
    tags: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "list")]
    contributors: Option<&'a RawValue>,
}

/// A member that is a JSON array, borrowed.
fn list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    let raw = <&'de RawValue>::deserialize(d)?;
    if raw.get().starts_with('[') {
        Ok(Some(raw))
    } else {
        Err(serde::de::Error::custom("not a list"))
    }
}

/// [`ContextObject`] as `serde_json` writes it, from borrowed parts: the same members in the
/// same order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ObjectJson<'a> {
    id: ObjectId,
    #[serde(rename = "type")]
    kind: Kind,
    customer_id: Option<ObjectId>,
    parent_id: Option<ObjectId>,
    state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    media_type: Option<MediaType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail_type: Option<DetailType>,
    fieldsets: List<'a>,
    data: BTreeMap<&'a str, Cow<'a, RawValue>>,
    tags: List<'a>,
    contributors: List<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    withheld: Vec<&'a str>,
    #[serde(serialize_with = "contextd_proto::time::rfc3339_ms::serialize")]
    created: DateTime<Utc>,
    #[serde(serialize_with = "contextd_proto::time::rfc3339_ms::serialize")]
    last_updated: DateTime<Utc>,
    version: i64,
}

/// A list as the body holds it, or an empty one where the body has none.
struct List<'a>(Option<&'a RawValue>);

impl Serialize for List<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(raw) => raw.serialize(s),
            None => s.collect_seq(std::iter::empty::<()>()),
        }
    }
}

/// The keys of the last customer whose objects were opened: a timeline is one customer's.
type KeysOf = Option<(Option<ObjectId>, ObjectKeys)>;

impl Context {
    /// Writes a timeline page as the JSON of its [`TimelinePage`], each object revealed for
    /// `actor` as [`Self::reveal_as`] would, noting in `revealed` what it shows.
    pub(super) async fn encode_page(
        &self,
        actor: &Principal,
        page: ObjectPage<RawObject>,
        revealed: &mut Revealed,
    ) -> Result<Vec<u8>, CoreError> {
        let dict = self.dictionary(actor.scope.org).await?;
        let size: usize = page
            .items
            .iter()
            .map(|o| o.body.len() + 2 * o.sealed.len() + 320)
            .sum();
        let mut out = Vec::with_capacity(size + 96);
        out.extend_from_slice(b"{\"items\":[");
        let mut keys: KeysOf = None;
        for (i, o) in page.items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            self.encode_object(actor, o, &dict, &mut keys, revealed, &mut out)
                .await?;
        }
        out.extend_from_slice(b"],\"total\":");
        out.extend_from_slice(page.total.to_string().as_bytes());
        out.extend_from_slice(b",\"nextCursor\":");
        let cursor = page.next.as_ref().map(search::encode_cursor);
        serde_json::to_writer(&mut out, &cursor).map_err(encode_error)?;
        out.push(b'}');
        Ok(out)
    }

    /// Writes one object; a body this path cannot vouch for (a member name with escapes or a
    /// list member that is not a list, neither of which contextd writes) goes the decoded way.
    async fn encode_object(
        &self,
        actor: &Principal,
        o: &RawObject,
        dict: &Dictionary,
        keys: &mut KeysOf,
        revealed: &mut Revealed,
        out: &mut Vec<u8>,
    ) -> Result<(), CoreError> {
        let Ok(body) = serde_json::from_str::<BodyParts<'_>>(&o.body) else {
            let object = o.clone().into_object(actor.scope)?;
            let shown = self.reveal_as(actor, object, dict, revealed).await?;
            return serde_json::to_writer(out, &shown).map_err(encode_error);
        };
        let sealed = sealed_values(&o.sealed).collect::<Result<Vec<_>, _>>()?;
        let shown = sealed_fields(
            dict,
            body.clear.keys().copied(),
            sealed.iter().map(|(name, _)| *name),
        );
        let mut data: BTreeMap<&str, Cow<'_, RawValue>> = body
            .clear
            .iter()
            .map(|(k, v)| (*k, Cow::Borrowed(*v)))
            .collect();
        let withheld = if actor.sees_sealed() {
            if !sealed.is_empty() {
                let keys = self.keys_of(actor.scope, o.customer_id, keys).await?;
                for (name, bytes) in &sealed {
                    data.insert(name, Cow::Owned(open_value(keys, o.id, name, bytes)?));
                }
            }
            revealed.add(
                o.kind,
                o.id,
                o.customer_id,
                shown.iter().map(|s| s.to_string()),
            );
            Vec::new()
        } else {
            for name in &shown {
                data.insert(name, Cow::Borrowed(RawValue::NULL));
            }
            shown
        };
        let json = ObjectJson {
            id: o.id,
            kind: o.kind,
            customer_id: o.customer_id,
            parent_id: o.parent_id,
            state: self.state_as_read(o.kind, o.state, o.touched),
            media_type: o.media_type,
            detail_type: o.detail_type,
            fieldsets: List(body.fieldsets),
            data,
            tags: List(body.tags),
            contributors: List(body.contributors),
            withheld,
            created: o.created,
            last_updated: o.last_updated,
            version: o.version,
        };
        serde_json::to_writer(out, &json).map_err(encode_error)
    }

    /// The keys of the sealed values of `customer`'s objects, reusing the last customer's.
    async fn keys_of<'k>(
        &self,
        scope: Scope,
        customer: Option<ObjectId>,
        keys: &'k mut KeysOf,
    ) -> Result<&'k ObjectKeys, CoreError> {
        if let Some((held, _)) = keys {
            if *held != customer {
                *keys = None;
            }
        }
        if keys.is_none() {
            *keys = Some((customer, self.keys.object_keys(scope, customer).await?));
        }
        keys.as_ref()
            .map(|(_, k)| k)
            .ok_or_else(|| CoreError::Keys("no keys for a sealed value".into()))
    }
}

/// Decrypts one sealed value into the JSON text it was sealed from.
fn open_value(
    keys: &ObjectKeys,
    id: ObjectId,
    name: &str,
    sealed: &[u8],
) -> Result<Box<RawValue>, CoreError> {
    let plain = keys.open(id, name, sealed)?;
    String::from_utf8(plain)
        .ok()
        .and_then(|text| RawValue::from_string(text).ok())
        .ok_or_else(|| CoreError::Keys(format!("a value of object {id} is corrupt")))
}

fn encode_error(e: serde_json::Error) -> CoreError {
    CoreError::Store(StoreError::Backend(format!(
        "cannot encode a response: {e}"
    )))
}
