//! Revealing and withholding: decrypting stored objects for a caller (partners see sealed
//! values withheld), auditing what a response reveals, and keeping what a partner wasn't shown.

use super::*;

impl Context {
    /// Decrypts a page of objects (a search result, a timeline) for a caller, noting in
    /// `revealed` what it shows.
    pub(super) async fn reveal_page(
        &self,
        actor: &Principal,
        objects: Vec<StoredObject>,
        revealed: &mut Revealed,
    ) -> Result<Vec<ContextObject>, CoreError> {
        let dict = self.dictionary(actor.scope.org).await?;
        let mut items = Vec::with_capacity(objects.len());
        for o in objects {
            items.push(self.reveal_as(actor, o, &dict, revealed).await?);
        }
        Ok(items)
    }

    /// Audits what a response reveals: one `pii.read` entry per customer whose sealed values
    /// it carries (objects without a customer: one each), durable before the response leaves,
    /// so a page of 100 activities is one audit row, not 100.
    pub(crate) async fn audit_revealed(
        &self,
        actor: &Principal,
        revealed: Revealed,
        via: &str,
    ) -> Result<(), CoreError> {
        self.audit_revealed_with(actor, revealed, via, None).await
    }

    /// [`Self::audit_revealed`], with one more entry of the same request in the same append.
    pub(crate) async fn audit_revealed_with(
        &self,
        actor: &Principal,
        revealed: Revealed,
        via: &str,
        also: Option<crate::store::AuditEntry>,
    ) -> Result<(), CoreError> {
        let mut entries: Vec<_> = also.into_iter().collect();
        entries.extend(revealed.0.into_iter().map(|(owner, (kind, fields, n))| {
            crate::audit::audit_entry(
                Some(actor),
                actor.scope,
                "pii.read",
                Some((Some(kind), owner.to_string())),
                fields.into_iter().collect(),
                format!("{via}: {n} object{}", if n == 1 { "" } else { "s" }),
            )
        }));
        self.audit.record(entries).await
    }

    /// Decrypts for the caller (partners see sealed values withheld) and notes what it shows
    /// in `revealed`. A clear value of a field the dictionary now seals (written before a
    /// reclassification) is treated as sealed: withheld from partners, audited for others.
    pub(super) async fn reveal_as(
        &self,
        actor: &Principal,
        o: StoredObject,
        dict: &Dictionary,
        revealed: &mut Revealed,
    ) -> Result<ContextObject, CoreError> {
        let state = self.effective_state(&o);
        let mut data = o.clear;
        let mut withheld = Vec::new();
        let shown: Vec<String> = sealed_fields(
            dict,
            data.keys().map(String::as_str),
            o.sealed.keys().map(String::as_str),
        )
        .into_iter()
        .map(str::to_owned)
        .collect();
        if !actor.sees_sealed() {
            for name in shown {
                data.insert(name.clone(), serde_json::Value::Null);
                withheld.push(name);
            }
        } else {
            if !o.sealed.is_empty() {
                let keys = self.keys.object_keys(o.scope, o.customer_id).await?;
                for (name, sealed) in &o.sealed {
                    let plain = keys.open(o.id, name, sealed)?;
                    let value = serde_json::from_slice(&plain).map_err(|_| {
                        CoreError::Keys(format!("a value of object {} is corrupt", o.id))
                    })?;
                    data.insert(name.clone(), value);
                }
            }
            revealed.add(o.kind, o.id, o.customer_id, shown);
        }
        Ok(ContextObject {
            id: o.id,
            kind: o.kind,
            customer_id: o.customer_id,
            parent_id: o.parent_id,
            state,
            media_type: o.media_type,
            detail_type: o.detail_type,
            fieldsets: o.fieldsets,
            data,
            tags: o.tags,
            contributors: o.contributors,
            withheld,
            created: o.created,
            last_updated: o.last_updated,
            version: o.version,
        })
    }

    /// A partner's write keeps the sealed values it was not shown (and may set or remove clear
    /// ones like anyone). Returns the fields it put back.
    pub(super) async fn keep_withheld(
        &self,
        actor: &Principal,
        current: &ContextObject,
        data: &mut BTreeMap<String, serde_json::Value>,
    ) -> Result<BTreeSet<String>, CoreError> {
        let mut kept = BTreeSet::new();
        if actor.sees_sealed() {
            return Ok(kept);
        }
        let dict = self.dictionary(actor.scope.org).await?;
        for (k, v) in &current.data {
            let sealed = dict.field(k).is_some_and(|f| f.classification.is_sealed());
            if !sealed || v.is_null() {
                continue;
            }
            match data.get(k) {
                None | Some(serde_json::Value::Null) => {
                    data.insert(k.clone(), v.clone());
                    kept.insert(k.clone());
                }
                // A merge patch starts from the stored values: one it left alone is kept too.
                Some(x) if x == v => {
                    kept.insert(k.clone());
                }
                Some(_) => {}
            }
        }
        Ok(kept)
    }
}

/// The fields of an object that only callers who see sealed values are shown, in the order a
/// response lists them as withheld: clear values of fields the dictionary now seals (written
/// before a reclassification), then the sealed ones. One rule for every read path.
pub(super) fn sealed_fields<'a>(
    dict: &Dictionary,
    clear: impl Iterator<Item = &'a str>,
    sealed: impl Iterator<Item = &'a str>,
) -> Vec<&'a str> {
    clear
        .filter(|k| dict.field(k).is_some_and(|f| f.classification.is_sealed()))
        .chain(sealed)
        .collect()
}

/// Validation errors about values a partner was not shown say only that such a value is no
/// longer valid, never how (its length, its enumeration).
pub(super) fn hide_withheld(e: CoreError, kept: &BTreeSet<String>) -> CoreError {
    match e {
        CoreError::Validation(errors) if !kept.is_empty() => CoreError::Validation(
            errors
                .into_iter()
                .map(|mut fe| {
                    let withheld = fe
                        .field
                        .strip_prefix("data.")
                        .is_some_and(|f| kept.contains(f));
                    if withheld {
                        fe.message = "a withheld value of this field is no longer valid; \
                                      someone allowed to see it must correct it"
                            .into();
                    }
                    fe
                })
                .collect(),
        ),
        e => e,
    }
}
