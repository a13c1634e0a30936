//! Connectors: [`ConnectorStore`], the components that reach contextd with a connectionData,
//! and their credentials.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{ApiKeyRecord, StoreError};
use crate::ids::{OrgId, Scope};
use contextd_proto::connectors::AppType;

/// A connector of an organization.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectorRecord {
    /// Connector id.
    pub id: Uuid,
    /// Its organization.
    pub org: OrgId,
    /// Display name.
    pub name: String,
    /// Kind of component.
    pub app_type: AppType,
    /// The component's version, as it last said.
    pub version: Option<String>,
    /// Created.
    pub created: DateTime<Utc>,
    /// Last token exchange.
    pub last_seen: Option<DateTime<Utc>>,
    /// Last rotation of its secrets.
    pub rotated: Option<DateTime<Utc>>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// One credential of a connector: a client id and secret bound to one partition.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectorCredential {
    /// The client id (public).
    pub client_id: Uuid,
    /// The connector it belongs to.
    pub connector: Uuid,
    /// The org and partition its tokens reach.
    pub scope: Scope,
    /// SHA-256 of the current secret.
    pub secret_hash: [u8; 32],
    /// SHA-256 of the secret before the last rotation, while its grace lasts.
    pub previous_hash: Option<[u8; 32]>,
    /// Until when the previous secret works.
    pub previous_until: Option<DateTime<Utc>>,
}

impl ConnectorCredential {
    /// Whether `secret` opens this credential at `now`: the current secret, or the previous
    /// one within its grace.
    pub fn accepts(&self, secret: &str, now: DateTime<Utc>) -> bool {
        if crate::auth::secret_matches(secret, &self.secret_hash) {
            return true;
        }
        match (self.previous_hash, self.previous_until) {
            (Some(previous), Some(until)) => {
                now < until && crate::auth::secret_matches(secret, &previous)
            }
            _ => false,
        }
    }
}

/// The connectors of each organization and their credentials.
#[async_trait]
pub trait ConnectorStore: Send + Sync + 'static {
    /// Inserts a connector with its credentials (one per partition), in one transaction.
    async fn insert_connector(
        &self,
        connector: &ConnectorRecord,
        credentials: &[ConnectorCredential],
    ) -> Result<(), StoreError>;

    /// The org's connectors, oldest first.
    async fn connectors(&self, org: OrgId) -> Result<Vec<ConnectorRecord>, StoreError>;

    /// One connector of the org.
    async fn connector(&self, org: OrgId, id: Uuid) -> Result<Option<ConnectorRecord>, StoreError>;

    /// The credentials of one connector.
    async fn connector_credentials(
        &self,
        org: OrgId,
        id: Uuid,
    ) -> Result<Vec<ConnectorCredential>, StoreError>;

    /// A credential by its client id, with its connector (any org: the token endpoint knows
    /// no org before it reads this).
    async fn credential(
        &self,
        client_id: Uuid,
    ) -> Result<Option<(ConnectorCredential, ConnectorRecord)>, StoreError>;

    /// Replaces the secrets of a connector that is not revoked: each credential's current
    /// hash becomes its previous one, valid until `grace_until`. `NotFound` if the connector is
    /// missing or revoked.
    async fn rotate_connector(
        &self,
        org: OrgId,
        id: Uuid,
        new_hashes: &[(Uuid, [u8; 32])],
        at: DateTime<Utc>,
        grace_until: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Revokes a connector and, in the same transaction, every token issued to it.
    /// `NotFound` if it is missing or already revoked.
    async fn revoke_connector(
        &self,
        org: OrgId,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Records a token exchange: the token (an API key linked to the connector) and the
    /// connector's last-seen time, in one transaction. `NotFound` if the connector was revoked
    /// meanwhile (nothing is written).
    async fn issue_connector_token(
        &self,
        token: &ApiKeyRecord,
        connector: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Deletes the tokens issued to connectors that expired before `before`; returns how many.
    async fn prune_connector_tokens(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}
