//! connectionData (README, "Rust SDK"): what a component is given to reach contextd. On the wire it is
//! the standard base64 of this JSON object, at most [`MAX_CONNECTION_DATA_BYTES`] long.

use serde::{Deserialize, Serialize};

use crate::ids::OrgId;

/// Longest connectionData string accepted, bytes.
pub const MAX_CONNECTION_DATA_BYTES: usize = 4096;

/// One credential set of a component.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// The credential's id.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .finish()
    }
}

/// The decoded connectionData.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionData {
    /// Base URL of the service (`https://context.example.com`).
    pub service_url: String,
    /// The organization.
    pub org_id: OrgId,
    /// Credentials of the production partition.
    pub credentials: Credentials,
    /// Credentials of the lab partition.
    pub credentials_lab_mode: Credentials,
}
