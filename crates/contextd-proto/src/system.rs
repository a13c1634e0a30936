//! Serviceability on the wire: liveness, status of the service and its dependencies, and
//! the encryption state of a partition.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::Partition;

/// `GET /v1/ping` answer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Ping {
    /// Always `ok`.
    pub status: String,
}

/// One dependency's health.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    /// `storage`, `keyStore`, or `nats` (when events are published to NATS JetStream).
    pub name: String,
    /// Backend (`sqlite`, `postgres`; `jetstream` for `nats`).
    pub backend: String,
    /// Answered the check?
    pub reachable: bool,
    /// Round trip of the check, milliseconds.
    pub latency_ms: f64,
}

/// `GET /v1/status` answer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// `ok`, `degraded` or `down`.
    pub status: String,
    /// Server version.
    pub version: String,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// The caller's partition.
    #[schema(value_type = String)]
    pub partition: Partition,
    /// Dependencies.
    pub dependencies: Vec<Dependency>,
    /// Data-key version and re-encryption progress of the caller's partition.
    #[serde(default)]
    pub encryption: Option<EncryptionStatus>,
    /// The organization's connectors by state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectors: Option<crate::connectors::ConnectorCounts>,
}

/// Encryption state of a partition, shown in `/v1/status`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionStatus {
    /// Current data-key version (new writes use it).
    pub data_key_version: u32,
    /// Customer keys still wrapped by an older version.
    pub pending_customer_keys: u64,
    /// Objects still sealed under an older version.
    pub pending_objects: u64,
    /// `idle`, `reencrypting`, or `failing` (the keys don't open here, or the last
    /// re-encryption run failed in this partition: see `error`).
    pub state: String,
    /// Why the partition is `failing`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/stats` answer: this instance's per-operation statistics since the last periodic
/// summary (the same figures the statistics log line prints).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LiveStats {
    /// Seconds since the server started.
    pub uptime_seconds: u64,
    /// Operation (`activity.create`) → `{count, errors, minMs, meanMs, maxMs, p99Ms}`.
    #[schema(value_type = Object)]
    pub operations: serde_json::Value,
}

/// `GET/PUT /v1/settings/embedding`: the host agent desktops allowed to frame `/desktop`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmbeddingSettings {
    /// Origins (`https://desk.example.com`, `http://127.0.0.1:9000`): scheme, host and
    /// optional port, no path. At most [`MAX_EMBED_ORIGINS`].
    pub allowed_origins: Vec<String>,
}

/// The most origins an organization may allow to frame the desktop.
pub const MAX_EMBED_ORIGINS: usize = 20;
