//! Organizations and credentials: creating an org with its keys and admin tokens, API keys,
//! and resolving a bearer token to its principal.

use super::*;

impl Context {
    /// Creates an organization with admin keys for both partitions and a `default` connector,
    /// whose connectionData components can use at once.
    pub async fn create_org(
        &self,
        name: &str,
        service_url: &str,
    ) -> Result<OrgBootstrap, CoreError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(CoreError::field(
                "name",
                "1–64 characters of A–Z, a–z, 0–9, '-', '_', '.'",
            ));
        }
        let taken = || CoreError::AlreadyExists(format!("an organization named '{name}' exists"));
        if self.store.org_by_name(name).await?.is_some() {
            return Err(taken());
        }
        let org = OrgRecord {
            id: OrgId::new(),
            name: name.to_owned(),
            created: now_ms(),
        };
        // Keys first, so that no org ever exists without them (the start-up check refuses
        // such an org); a lost race for the name leaves only unused keys of an unused id.
        for partition in Partition::ALL {
            self.keys
                .create_partition_keys(Scope {
                    org: org.id,
                    partition,
                })
                .await?;
        }
        self.store.create_org(&org).await.map_err(|e| match e {
            StoreError::AlreadyExists => taken(),
            e => e.into(),
        })?;
        let mut admin = Vec::new();
        for partition in Partition::ALL {
            let scope = Scope {
                org: org.id,
                partition,
            };
            admin.push(
                self.create_api_key(scope, &format!("{partition} admin"), Role::Admin, None)
                    .await?,
            );
        }
        let (_, connection_data) = self
            .insert_connector(
                org.id,
                super::connectors::bootstrap_connector(),
                service_url,
            )
            .await?;
        Ok(OrgBootstrap {
            org_id: org.id,
            name: org.name,
            lab_admin_token: admin[0].1.clone(),
            production_admin_token: admin[1].1.clone(),
            connection_data,
        })
    }

    /// An organization's name (its id's text if it has none: the store has no lookup by id,
    /// and organizations are few).
    pub async fn org_name(&self, org: OrgId) -> Result<String, CoreError> {
        let orgs = self.store.orgs().await?;
        Ok(orgs
            .into_iter()
            .find(|o| o.id == org)
            .map_or_else(|| org.to_string(), |o| o.name))
    }

    /// Whether the database holds no organization yet.
    pub async fn is_empty(&self) -> Result<bool, CoreError> {
        Ok(self.store.count_orgs().await? == 0)
    }

    /// Creates an API key; returns its id and the token (shown once).
    pub async fn create_api_key(
        &self,
        scope: Scope,
        name: &str,
        role: Role,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(Uuid, String), CoreError> {
        let minted = auth::mint_token();
        let record = ApiKeyRecord {
            id: minted.id,
            scope,
            name: name.to_owned(),
            role,
            secret_hash: minted.secret_hash,
            created: now_ms(),
            expires_at,
            revoked_at: None,
            connector: None,
        };
        self.store.insert_api_key(&record).await?;
        Ok((minted.id, auth::reveal(&minted.token).to_owned()))
    }

    /// Resolves a bearer token to its principal, or refuses it.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, CoreError> {
        let (id, secret) = auth::parse_token(token)?;
        let denied = || CoreError::Unauthorized("unknown, revoked or expired credential".into());
        let key = match self.credentials.key(id) {
            Some(key) => key,
            None => {
                let at = self.credentials.stamp();
                let key = self.store.api_key(id).await?.ok_or_else(denied)?;
                self.credentials.keep_key(at, &key);
                key
            }
        };
        if !auth::secret_matches(secret, &key.secret_hash)
            || key.revoked_at.is_some()
            || key.expires_at.is_some_and(|t| t <= Utc::now())
        {
            return Err(denied());
        }
        self.with_grant(Principal {
            id: key.id,
            scope: key.scope,
            role: key.role,
            kind: PrincipalKind::ApiKey,
            granted: false,
        })
        .await
    }
}
