//! Connectors: the components that reach contextd with a connectionData. Admins create, list,
//! rotate and revoke them; a component exchanges one of its credentials for a short-lived
//! bearer token (OAuth 2.0 client-credentials grant), which is an API key linked to the
//! connector, so the request path authenticates it like any key and a revocation ends it.

use contextd_proto::connection::{ConnectionData, Credentials, MAX_CONNECTION_DATA_BYTES};
use contextd_proto::connectors::{
    AppType, ConnectorCounts, ConnectorCreated, ConnectorState, ConnectorView, NewConnector,
};

use super::*;
use crate::store::{ConnectorCredential, ConnectorRecord};

/// Lifetime of a token issued for a connector credential.
pub const CONNECTOR_TOKEN_SECONDS: u64 = 900;
/// Default grace of the secrets replaced by a rotation.
pub const DEFAULT_ROTATION_GRACE_SECONDS: u64 = 3600;
/// Longest grace a rotation may give the replaced secrets (a week).
pub const MAX_ROTATION_GRACE_SECONDS: u64 = 7 * 24 * 3600;

/// A token issued for a connector credential.
pub struct IssuedToken {
    /// The bearer token.
    pub token: String,
    /// Its lifetime, seconds.
    pub expires_in: u64,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Why a token exchange was refused (RFC 6749 §5.2 `invalid_client`): one answer for every
/// cause, so a caller can't probe which client ids exist.
#[derive(Debug)]
pub struct InvalidClient;

/// Fresh secrets for each partition: (client id, secret shown once, its hash).
fn new_secrets(client_ids: &[Uuid]) -> Vec<(Uuid, String, [u8; 32])> {
    client_ids
        .iter()
        .map(|id| {
            let secret = auth::random_secret();
            let hash = auth::hash_secret(&secret);
            (*id, secret, hash)
        })
        .collect()
}

impl Context {
    /// Creates a connector with a credential per partition; the connectionData carries its
    /// secrets and is shown this once (production admin: the credentials reach production).
    pub async fn create_connector(
        &self,
        actor: &Principal,
        new: NewConnector,
        service_url: &str,
    ) -> Result<ConnectorCreated, CoreError> {
        require_production_admin(actor)?;
        check_connector_fields(&new)?;
        let (record, data) = self
            .insert_connector(actor.scope.org, new, service_url)
            .await?;
        self.audit_action(
            Some(actor),
            actor.scope,
            "connector.create",
            None,
            vec![],
            format!(
                "connector={} appType={}",
                record.id,
                record.app_type.as_str()
            ),
        )
        .await?;
        let credentials = self
            .store
            .connector_credentials(record.org, record.id)
            .await?;
        Ok(ConnectorCreated {
            connector: self.connector_view(&record, &credentials),
            connection_data: data,
        })
    }

    /// Inserts a connector and its credentials; returns it with its connectionData.
    pub(crate) async fn insert_connector(
        &self,
        org: OrgId,
        new: NewConnector,
        service_url: &str,
    ) -> Result<(ConnectorRecord, String), CoreError> {
        let record = ConnectorRecord {
            id: Uuid::now_v7(),
            org,
            name: new.name,
            app_type: new.app_type,
            version: new.version,
            created: now_ms(),
            last_seen: None,
            rotated: None,
            revoked_at: None,
        };
        // Production first: connectionData's `credentials`, then `credentialsLabMode`.
        let ids = [Uuid::now_v7(), Uuid::now_v7()];
        let secrets = new_secrets(&ids);
        let data = connection_data(service_url, org, &secrets)?;
        let credentials: Vec<ConnectorCredential> = secrets
            .iter()
            .zip([Partition::Production, Partition::Lab])
            .map(|((client_id, _, hash), partition)| ConnectorCredential {
                client_id: *client_id,
                connector: record.id,
                scope: Scope { org, partition },
                secret_hash: *hash,
                previous_hash: None,
                previous_until: None,
            })
            .collect();
        self.store.insert_connector(&record, &credentials).await?;
        Ok((record, data))
    }

    /// The org's connectors (admin of either partition).
    pub async fn list_connectors(
        &self,
        actor: &Principal,
    ) -> Result<Vec<ConnectorView>, CoreError> {
        actor.require(&[Role::Admin])?;
        let mut out = Vec::new();
        for record in self.store.connectors(actor.scope.org).await? {
            let credentials = self
                .store
                .connector_credentials(record.org, record.id)
                .await?;
            out.push(self.connector_view(&record, &credentials));
        }
        Ok(out)
    }

    /// Gives a connector new secrets; the old ones keep working for `grace_seconds` (default
    /// an hour) so that running components can pick up the new connectionData.
    pub async fn rotate_connector(
        &self,
        actor: &Principal,
        id: Uuid,
        grace_seconds: Option<u64>,
        service_url: &str,
    ) -> Result<ConnectorCreated, CoreError> {
        require_production_admin(actor)?;
        let grace = grace_seconds.unwrap_or(DEFAULT_ROTATION_GRACE_SECONDS);
        if grace > MAX_ROTATION_GRACE_SECONDS {
            return Err(CoreError::field(
                "graceSeconds",
                format!("at most {MAX_ROTATION_GRACE_SECONDS} (a week)"),
            ));
        }
        let org = actor.scope.org;
        let missing = || CoreError::NotFound(format!("no connector with id {id}"));
        let mut credentials = self.store.connector_credentials(org, id).await?;
        credentials.sort_by_key(|c| c.scope.partition != Partition::Production);
        let ids: Vec<Uuid> = credentials.iter().map(|c| c.client_id).collect();
        if ids.len() != 2 {
            return Err(missing());
        }
        let secrets = new_secrets(&ids);
        let data = connection_data(service_url, org, &secrets)?;
        let hashes: Vec<(Uuid, [u8; 32])> = secrets.iter().map(|(id, _, h)| (*id, *h)).collect();
        let at = now_ms();
        let grace_until = at + chrono::Duration::seconds(i64::try_from(grace).unwrap_or(0));
        self.store
            .rotate_connector(org, id, &hashes, at, grace_until)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => missing(),
                e => e.into(),
            })?;
        self.audit_action(
            Some(actor),
            actor.scope,
            "connector.rotate",
            None,
            vec![],
            format!("connector={id} graceSeconds={grace}"),
        )
        .await?;
        let record = self.store.connector(org, id).await?.ok_or_else(missing)?;
        let credentials = self.store.connector_credentials(org, id).await?;
        Ok(ConnectorCreated {
            connector: self.connector_view(&record, &credentials),
            connection_data: data,
        })
    }

    /// Revokes a connector: its secrets and every token issued to it stop working at once.
    pub async fn revoke_connector(&self, actor: &Principal, id: Uuid) -> Result<(), CoreError> {
        require_production_admin(actor)?;
        self.changing_credentials(self.store.revoke_connector(actor.scope.org, id, now_ms()))
            .await
            .map_err(|e| match e {
                StoreError::NotFound => CoreError::NotFound(format!("no connector with id {id}")),
                e => e.into(),
            })?;
        self.audit_action(
            Some(actor),
            actor.scope,
            "connector.revoke",
            None,
            vec![],
            format!("connector={id}"),
        )
        .await
    }

    /// The client-credentials grant: a short-lived bearer token for a connector credential,
    /// scoped to the credential's org and partition.
    pub async fn exchange_client_credentials(
        &self,
        client_id: &str,
        client_secret: &str,
    ) -> Result<Result<IssuedToken, InvalidClient>, CoreError> {
        let Ok(client_id) = Uuid::try_parse(client_id.trim()) else {
            return Ok(Err(InvalidClient));
        };
        let Some((credential, connector)) = self.store.credential(client_id).await? else {
            return Ok(Err(InvalidClient));
        };
        let now = now_ms();
        if connector.revoked_at.is_some() || !credential.accepts(client_secret, now) {
            return Ok(Err(InvalidClient));
        }
        let minted = auth::mint_token();
        let expires_in = CONNECTOR_TOKEN_SECONDS;
        let token = ApiKeyRecord {
            id: minted.id,
            scope: credential.scope,
            name: format!("token of connector {}", connector.id),
            role: Role::Machine,
            secret_hash: minted.secret_hash,
            created: now,
            expires_at: Some(now + chrono::Duration::seconds(expires_in as i64)),
            revoked_at: None,
            connector: Some(connector.id),
        };
        match self
            .store
            .issue_connector_token(&token, connector.id, now)
            .await
        {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Ok(Err(InvalidClient)),
            Err(e) => return Err(e.into()),
        }
        Ok(Ok(IssuedToken {
            token: auth::reveal(&minted.token).to_owned(),
            expires_in,
        }))
    }

    /// Deletes the connector tokens that expired more than a day ago (kept that long so that
    /// an audit entry's actor can still be traced to its connector); returns how many.
    pub async fn prune_connector_tokens(&self) -> Result<u64, CoreError> {
        let before = now_ms() - chrono::Duration::days(1);
        Ok(self.store.prune_connector_tokens(before).await?)
    }

    /// How many of the org's connectors are in each state (for `/v1/status`).
    pub async fn connector_counts(&self, org: OrgId) -> Result<ConnectorCounts, CoreError> {
        let mut counts = ConnectorCounts::default();
        for record in self.store.connectors(org).await? {
            match self.connector_state(&record) {
                ConnectorState::Registered => counts.registered += 1,
                ConnectorState::Stale => counts.stale += 1,
                ConnectorState::Revoked => counts.revoked += 1,
            }
        }
        Ok(counts)
    }

    /// A connector's state, from its times.
    fn connector_state(&self, record: &ConnectorRecord) -> ConnectorState {
        let seen = record.last_seen.unwrap_or(record.created);
        if record.revoked_at.is_some() {
            ConnectorState::Revoked
        } else if seen < now_ms() - self.config.connector_stale_after {
            ConnectorState::Stale
        } else {
            ConnectorState::Registered
        }
    }

    /// A connector as admins see it, its state computed from its times.
    fn connector_view(
        &self,
        record: &ConnectorRecord,
        credentials: &[ConnectorCredential],
    ) -> ConnectorView {
        let state = self.connector_state(record);
        let mut credentials = credentials.to_vec();
        credentials.sort_by_key(|c| c.scope.partition != Partition::Production);
        ConnectorView {
            id: record.id,
            name: record.name.clone(),
            app_type: record.app_type,
            version: record.version.clone(),
            state,
            created: record.created,
            last_seen: record.last_seen,
            rotated: record.rotated,
            grace_until: credentials
                .iter()
                .filter_map(|c| c.previous_until)
                .filter(|until| *until > now_ms())
                .max(),
            client_ids: credentials.iter().map(|c| c.client_id).collect(),
        }
    }
}

/// Connectors carry production credentials: only a production admin may make or change them.
fn require_production_admin(actor: &Principal) -> Result<(), CoreError> {
    actor.require(&[Role::Admin])?;
    if actor.scope.partition != Partition::Production {
        return Err(CoreError::Forbidden(
            "connectors carry production credentials: use a production admin credential".into(),
        ));
    }
    Ok(())
}

fn check_connector_fields(new: &NewConnector) -> Result<(), CoreError> {
    let mut errors = Vec::new();
    let name_chars = new.name.chars().count();
    if name_chars == 0 || name_chars > 100 || new.name.chars().any(char::is_control) {
        errors.push(FieldError::new("name", "1–100 printable characters"));
    }
    if let Some(v) = &new.version {
        if v.chars().count() > 64 || v.chars().any(char::is_control) {
            errors.push(FieldError::new(
                "version",
                "at most 64 printable characters",
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CoreError::Validation(errors))
    }
}

/// The connectionData of an org's credentials: production first, then lab. At most 4 KB.
fn connection_data(
    service_url: &str,
    org: OrgId,
    secrets: &[(Uuid, String, [u8; 32])],
) -> Result<String, CoreError> {
    let credentials = |i: usize| Credentials {
        client_id: secrets[i].0.to_string(),
        client_secret: secrets[i].1.clone(),
    };
    let data = ConnectionData {
        service_url: service_url.to_owned(),
        org_id: org,
        credentials: credentials(0),
        credentials_lab_mode: credentials(1),
    };
    let json = serde_json::to_string(&data)
        .map_err(|e| CoreError::bad_request(format!("connectionData: {e}")))?;
    let encoded = STANDARD.encode(json);
    if encoded.len() > MAX_CONNECTION_DATA_BYTES {
        return Err(CoreError::bad_request(format!(
            "the service URL is too long: connectionData must fit in {MAX_CONNECTION_DATA_BYTES} bytes"
        )));
    }
    Ok(encoded)
}

/// The connector every organization is created with.
pub(crate) fn bootstrap_connector() -> NewConnector {
    NewConnector {
        name: "default".into(),
        app_type: AppType::Custom,
        version: None,
    }
}
