//! Connectors on the wire: the components (IVR, agent desktop, chat and email servers, custom
//! apps) that reach contextd with a connectionData, and the OAuth 2.0 token endpoint they
//! exchange its credentials at.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// What kind of component a connector is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AppType {
    /// An IVR or voice gateway.
    Voice,
    /// An agent desktop.
    Desktop,
    /// A chat server.
    Chat,
    /// An email server.
    Email,
    /// Anything else.
    Custom,
}

impl AppType {
    /// Every app type.
    pub const ALL: [AppType; 5] = [
        AppType::Voice,
        AppType::Desktop,
        AppType::Chat,
        AppType::Email,
        AppType::Custom,
    ];

    /// The wire text.
    pub fn as_str(self) -> &'static str {
        match self {
            AppType::Voice => "voice",
            AppType::Desktop => "desktop",
            AppType::Chat => "chat",
            AppType::Email => "email",
            AppType::Custom => "custom",
        }
    }
}

impl std::str::FromStr for AppType {
    type Err = crate::ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AppType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                crate::ParseError(format!(
                    "'{}' is not an app type; expected one of: voice, desktop, chat, email, custom",
                    crate::truncate(s, 32)
                ))
            })
    }
}

/// Whether a connector can connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConnectorState {
    /// Its credentials work and it was seen recently.
    Registered,
    /// Its credentials work but it has not fetched a token for longer than the stale period.
    Stale,
    /// Revoked: its credentials and tokens no longer work.
    Revoked,
}

/// How many of an organization's connectors are in each state (in `/v1/status`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConnectorCounts {
    /// Registered and seen recently.
    pub registered: u64,
    /// Not seen for the stale period.
    pub stale: u64,
    /// Revoked.
    pub revoked: u64,
}

/// `POST /v1/connectors` body.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewConnector {
    /// Display name (1–100 characters).
    pub name: String,
    /// Kind of component.
    pub app_type: AppType,
    /// The component's version, if it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A connector as admins see it (never its secrets).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorView {
    /// Connector id.
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Kind of component.
    pub app_type: AppType,
    /// The component's version, as it last said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Registered, stale or revoked.
    pub state: ConnectorState,
    /// Created.
    #[serde(with = "crate::time::rfc3339_ms")]
    pub created: DateTime<Utc>,
    /// When it last exchanged its credentials for a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<DateTime<Utc>>,
    /// When its secrets were last rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated: Option<DateTime<Utc>>,
    /// Until when the secrets before the last rotation still work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_until: Option<DateTime<Utc>>,
    /// The client ids of its production and lab credentials.
    #[schema(value_type = Vec<String>)]
    pub client_ids: Vec<Uuid>,
}

/// The answer to creating or rotating a connector: the connectionData is shown this once.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorCreated {
    /// The connector.
    pub connector: ConnectorView,
    /// Base64 of the connectionData JSON (at most 4 KB).
    pub connection_data: String,
}

/// `POST /v1/connectors/{id}/rotate` body.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateConnector {
    /// How long the old secrets keep working, seconds (default 3600, at most 604800).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_seconds: Option<u64>,
}

/// `POST /v1/token` success (RFC 6749 §5.1).
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// The bearer token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Lifetime, seconds.
    pub expires_in: u64,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// `POST /v1/token` refusal (RFC 6749 §5.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenError {
    /// `invalid_request`, `invalid_client`, `unsupported_grant_type`, …
    pub error: String,
    /// What went wrong, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// `POST /v1/token` form body (`application/x-www-form-urlencoded`, RFC 6749 §4.4.2); the
/// client may authenticate with these fields or with HTTP Basic instead.
#[derive(Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct TokenRequest {
    /// Must be `client_credentials`.
    pub grant_type: String,
    /// The credential's client id (unless sent with HTTP Basic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Its secret (unless sent with HTTP Basic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Ignored: a token's scope is its credential's org and partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("grant_type", &self.grant_type)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}
