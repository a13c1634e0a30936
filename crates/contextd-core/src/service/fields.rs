//! The dictionary service: fields and field sets, the in-use rules, and the rule that a lab
//! admin can't change what production data uses.

use super::*;

impl Context {
    /// The org's dictionary (cached).
    pub async fn dictionary(&self, org: OrgId) -> Result<Arc<Dictionary>, CoreError> {
        if let Some(d) = self.dictionaries.get(org) {
            return Ok(d);
        }
        // The version first: definitions read after it are at least that new, so a write
        // naming it is refused if they changed since.
        let version = self.store.dictionary_version(org).await?;
        let d = Arc::new(
            Dictionary::new(
                self.store.fields(org).await?,
                self.store.fieldsets(org).await?,
            )
            .at_version(version),
        );
        self.dictionaries.insert(org, d.clone());
        Ok(d)
    }

    /// Every field, base and custom.
    pub async fn list_fields(&self, actor: &Principal) -> Result<Vec<Field>, CoreError> {
        Ok(self
            .dictionary(actor.scope.org)
            .await?
            .fields()
            .into_iter()
            .cloned()
            .collect())
    }

    /// One field.
    pub async fn get_field(&self, actor: &Principal, id: &str) -> Result<Field, CoreError> {
        self.dictionary(actor.scope.org)
            .await?
            .field(id)
            .cloned()
            .ok_or_else(|| CoreError::NotFound(format!("no field '{}'", truncate(id, 100))))
    }

    /// The token `token` makes in each partition of the org.
    pub(super) async fn in_both_partitions(
        &self,
        org: OrgId,
        token: impl Fn(&crate::crypto::Indexer) -> Token,
    ) -> Result<Vec<Token>, CoreError> {
        let mut tokens = Vec::new();
        for partition in Partition::ALL {
            tokens.push(token(&self.keys.indexer(Scope { org, partition }).await?));
        }
        Ok(tokens)
    }

    /// Refuses a lab admin's change to a dictionary entry that production data uses: the
    /// dictionary is the organization's, but a lab credential must not break production.
    pub(super) async fn guard_production(
        &self,
        actor: &Principal,
        what: &str,
        token: impl Fn(&crate::crypto::Indexer) -> Token,
    ) -> Result<(), CoreError> {
        if actor.scope.partition == Partition::Production {
            return Ok(());
        }
        let production = Scope {
            org: actor.scope.org,
            partition: Partition::Production,
        };
        let token = token(&self.keys.indexer(production).await?);
        if self
            .store
            .any_token_in_use(actor.scope.org, &[token])
            .await?
        {
            return Err(CoreError::Forbidden(format!(
                "production data uses {what}: only an admin of the production partition may change \
                 or delete it (lab admins may add fields and field sets, and change those production \
                 doesn't use)"
            )));
        }
        Ok(())
    }

    /// Creates (`existing = false`) or replaces a custom field.
    pub async fn put_field(
        &self,
        actor: &Principal,
        mut field: Field,
        path_id: Option<&str>,
    ) -> Result<Field, CoreError> {
        actor.require(&[Role::Admin])?;
        let org = actor.scope.org;
        if let Some(id) = path_id {
            if field.id != id {
                return Err(CoreError::field("id", "must match the id in the path"));
            }
        }
        field.base = false;
        field.last_updated = Some(now_ms());
        dictionary::validate_field(&field)?;
        let dict = self.dictionary(org).await?;
        let current = dict.field(&field.id);
        if current.is_some_and(|f| f.base) {
            return Err(CoreError::Forbidden(format!(
                "'{}' is a built-in field and read-only",
                field.id
            )));
        }
        let mut unused = Vec::new();
        match (path_id, current) {
            (None, Some(_)) => {
                return Err(CoreError::AlreadyExists(format!(
                    "field '{}' exists",
                    field.id
                )))
            }
            (Some(_), None) => return Err(CoreError::NotFound(format!("no field '{}'", field.id))),
            (Some(_), Some(old)) => {
                let shape_changes = old.data_type != field.data_type
                    || old.classification != field.classification
                    || old.max_length != field.max_length
                    || old.enum_values != field.enum_values;
                if shape_changes {
                    let what = format!("field '{}'", field.id);
                    self.guard_production(actor, &what, |ix| ix.present(&field.id))
                        .await?;
                }
                if old.data_type != field.data_type || old.classification != field.classification {
                    // Checked here for a clear answer, and again as the change commits.
                    unused = self
                        .in_both_partitions(org, |ix| ix.present(&field.id))
                        .await?;
                    if self.store.any_token_in_use(org, &unused).await? {
                        return Err(type_locked(&field.id));
                    }
                }
            }
            (None, None) => {}
        }
        let result = self
            .store
            .put_field(org, &field, path_id.is_none(), &unused)
            .await;
        self.dictionaries.invalidate(org);
        result.map_err(|e| match e {
            StoreError::InUse => type_locked(&field.id),
            StoreError::AlreadyExists => {
                CoreError::AlreadyExists(format!("field '{}' exists", field.id))
            }
            StoreError::NotFound => CoreError::NotFound(format!("no field '{}'", field.id)),
            e => e.into(),
        })?;
        let action = if path_id.is_none() {
            "field.create"
        } else {
            "field.update"
        };
        self.audit_action(
            Some(actor),
            actor.scope,
            action,
            Some((None, field.id.clone())),
            vec![],
            String::new(),
        )
        .await?;
        Ok(field)
    }

    /// Deletes a custom field unused by data and by field sets.
    pub async fn delete_field(&self, actor: &Principal, id: &str) -> Result<(), CoreError> {
        actor.require(&[Role::Admin])?;
        let org = actor.scope.org;
        let dict = self.dictionary(org).await?;
        let field = dict
            .field(id)
            .ok_or_else(|| CoreError::NotFound(format!("no field '{}'", truncate(id, 100))))?;
        if field.base {
            return Err(CoreError::Forbidden(format!(
                "'{id}' is a built-in field and read-only"
            )));
        }
        if let Some(set) = dict
            .fieldsets()
            .into_iter()
            .find(|s| s.fields.iter().any(|f| f == id))
        {
            return Err(CoreError::InUse(format!(
                "field '{id}' belongs to field set '{}'",
                set.id
            )));
        }
        self.guard_production(actor, &format!("field '{id}'"), |ix| ix.present(id))
            .await?;
        let in_use = || CoreError::InUse(format!("field '{id}' is used by stored data"));
        let unused = self.in_both_partitions(org, |ix| ix.present(id)).await?;
        if self.store.any_token_in_use(org, &unused).await? {
            return Err(in_use());
        }
        let result = self.store.delete_field(org, id, &unused).await;
        self.dictionaries.invalidate(org);
        result.map_err(|e| match e {
            StoreError::InUse => in_use(),
            StoreError::NotFound => CoreError::NotFound(format!("no field '{id}'")),
            e => e.into(),
        })?;
        self.audit_action(
            Some(actor),
            actor.scope,
            "field.delete",
            Some((None, id.to_owned())),
            vec![],
            String::new(),
        )
        .await?;
        Ok(())
    }

    /// Whether a field is used: by a field set, or by data stored in either partition
    /// (admin). What the original dictionary's `status` answered.
    pub async fn field_in_use(&self, actor: &Principal, id: &str) -> Result<bool, CoreError> {
        actor.require(&[Role::Admin])?;
        let org = actor.scope.org;
        let dict = self.dictionary(org).await?;
        if dict.field(id).is_none() {
            return Err(CoreError::NotFound(format!(
                "no field '{}'",
                truncate(id, 100)
            )));
        }
        if dict
            .fieldsets()
            .iter()
            .any(|s| s.fields.iter().any(|f| f == id))
        {
            return Ok(true);
        }
        let tokens = self.in_both_partitions(org, |ix| ix.present(id)).await?;
        Ok(self.store.any_token_in_use(org, &tokens).await?)
    }

    /// Whether any object of either partition declares a field set (admin).
    pub async fn fieldset_in_use(&self, actor: &Principal, id: &str) -> Result<bool, CoreError> {
        actor.require(&[Role::Admin])?;
        let org = actor.scope.org;
        if self.dictionary(org).await?.fieldset(id).is_none() {
            return Err(CoreError::NotFound(format!(
                "no field set '{}'",
                truncate(id, 100)
            )));
        }
        let tokens = self.in_both_partitions(org, |ix| ix.fieldset(id)).await?;
        Ok(self.store.any_token_in_use(org, &tokens).await?)
    }

    /// Every field set, base and custom.
    pub async fn list_fieldsets(&self, actor: &Principal) -> Result<Vec<FieldSet>, CoreError> {
        Ok(self
            .dictionary(actor.scope.org)
            .await?
            .fieldsets()
            .into_iter()
            .cloned()
            .collect())
    }

    /// One field set.
    pub async fn get_fieldset(&self, actor: &Principal, id: &str) -> Result<FieldSet, CoreError> {
        self.dictionary(actor.scope.org)
            .await?
            .fieldset(id)
            .cloned()
            .ok_or_else(|| CoreError::NotFound(format!("no field set '{}'", truncate(id, 100))))
    }

    /// Creates or replaces a custom field set.
    pub async fn put_fieldset(
        &self,
        actor: &Principal,
        mut set: FieldSet,
        path_id: Option<&str>,
    ) -> Result<FieldSet, CoreError> {
        actor.require(&[Role::Admin])?;
        let org = actor.scope.org;
        if let Some(id) = path_id {
            if set.id != id {
                return Err(CoreError::field("id", "must match the id in the path"));
            }
        }
        set.base = false;
        set.last_updated = Some(now_ms());
        let dict = self.dictionary(org).await?;
        dictionary::validate_fieldset(&set, &dict)?;
        match (path_id, dict.fieldset(&set.id)) {
            (_, Some(s)) if s.base => {
                return Err(CoreError::Forbidden(format!(
                    "'{}' is a built-in field set and read-only",
                    set.id
                )))
            }
            (None, Some(_)) => {
                return Err(CoreError::AlreadyExists(format!(
                    "field set '{}' exists",
                    set.id
                )))
            }
            (Some(_), None) => {
                return Err(CoreError::NotFound(format!("no field set '{}'", set.id)))
            }
            (Some(_), Some(old))
                if old.fields != set.fields || old.inactive_fields != set.inactive_fields =>
            {
                let what = format!("field set '{}'", set.id);
                self.guard_production(actor, &what, |ix| ix.fieldset(&set.id))
                    .await?;
            }
            _ => {}
        }
        let result = self
            .store
            .put_fieldset(org, &set, path_id.is_none(), &[])
            .await;
        self.dictionaries.invalidate(org);
        result.map_err(|e| match e {
            StoreError::AlreadyExists => {
                CoreError::AlreadyExists(format!("field set '{}' exists", set.id))
            }
            StoreError::NotFound => CoreError::NotFound(format!("no field set '{}'", set.id)),
            e => e.into(),
        })?;
        let action = if path_id.is_none() {
            "fieldset.create"
        } else {
            "fieldset.update"
        };
        self.audit_action(
            Some(actor),
            actor.scope,
            action,
            Some((None, set.id.clone())),
            vec![],
            String::new(),
        )
        .await?;
        Ok(set)
    }

    /// Deletes a custom field set no object declares.
    pub async fn delete_fieldset(&self, actor: &Principal, id: &str) -> Result<(), CoreError> {
        actor.require(&[Role::Admin])?;
        let org = actor.scope.org;
        let dict = self.dictionary(org).await?;
        let set = dict
            .fieldset(id)
            .ok_or_else(|| CoreError::NotFound(format!("no field set '{}'", truncate(id, 100))))?;
        if set.base {
            return Err(CoreError::Forbidden(format!(
                "'{id}' is a built-in field set and read-only"
            )));
        }
        self.guard_production(actor, &format!("field set '{id}'"), |ix| ix.fieldset(id))
            .await?;
        let in_use = || CoreError::InUse(format!("field set '{id}' is used by stored objects"));
        let unused = self.in_both_partitions(org, |ix| ix.fieldset(id)).await?;
        if self.store.any_token_in_use(org, &unused).await? {
            return Err(in_use());
        }
        let result = self.store.delete_fieldset(org, id, &unused).await;
        self.dictionaries.invalidate(org);
        result.map_err(|e| match e {
            StoreError::InUse => in_use(),
            StoreError::NotFound => CoreError::NotFound(format!("no field set '{id}'")),
            e => e.into(),
        })?;
        self.audit_action(
            Some(actor),
            actor.scope,
            "fieldset.delete",
            Some((None, id.to_owned())),
            vec![],
            String::new(),
        )
        .await?;
        Ok(())
    }
}

/// The refusal of a type or classification change of a field that stored data uses.
pub(super) fn type_locked(id: &str) -> CoreError {
    CoreError::InUse(format!(
        "field '{id}' is used by stored data: its dataType and classification can't change"
    ))
}
