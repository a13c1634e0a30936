//! Webhooks: the admin calls that register receivers of events and inspect their deliveries,
//! and [`verify_signature`], for receivers written in Rust.
//!
//! A delivery is a `POST` of a CloudEvents 1.0 JSON body signed as Standard Webhooks say:
//! `webhook-id` (`evt_<event id>`, the same on every retry: dedupe by it),
//! `webhook-timestamp` (Unix seconds) and `webhook-signature` (`v1,` + base64 of
//! HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}`, keyed by the secret's bytes).
//!
//! ```
//! use contextd_client::webhooks::{verify_signature, timestamp_is_recent};
//! # let (secret, id, timestamp, body, signature) = ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
//! #     "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", br#"{"test": 2432232314}"#.as_slice(),
//! #     "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
//! // The headers and the raw body, exactly as received:
//! assert!(verify_signature(secret, id, timestamp, body, signature));
//! // And refuse replays of old deliveries:
//! let fresh = timestamp_is_recent(timestamp, std::time::Duration::from_secs(300));
//! # assert!(!fresh);
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use contextd_proto::events::{
    DeliveriesQuery, Delivery, DeliveryList, Webhook, WebhookCreated, WebhookInput,
};
use contextd_proto::paths;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::client::{Call, Client};
use crate::error::Result;

impl Client {
    /// Registers a webhook of the partition (`webhook.create`; admin). The answer's `secret`
    /// is shown this once: keep it with the receiver to verify signatures.
    pub async fn create_webhook(&self, webhook: &WebhookInput) -> Result<WebhookCreated> {
        self.json(Call::post("webhook.create", paths::WEBHOOKS.to_owned()).json(webhook))
            .await
    }

    /// The partition's webhooks, without secrets (`webhook.list`; admin).
    pub async fn webhooks(&self) -> Result<Vec<Webhook>> {
        self.json(Ok(Call::get("webhook.list", paths::WEBHOOKS.to_owned())))
            .await
    }

    /// Deletes a webhook and its delivery attempts (`webhook.delete`; admin).
    pub async fn delete_webhook(&self, id: Uuid) -> Result<()> {
        let path = paths::with_id(paths::WEBHOOK, id);
        self.empty(Ok(Call::delete("webhook.delete", path))).await
    }

    /// A webhook's delivery attempts, newest first (`webhook.deliveries`; admin); with
    /// `outcome: Some("dead")`, its dead letters.
    pub async fn webhook_deliveries(
        &self,
        id: Uuid,
        query: &DeliveriesQuery,
    ) -> Result<DeliveryList> {
        let path = paths::with_id(paths::WEBHOOK_DELIVERIES, id);
        self.json(Call::get("webhook.deliveries", path).query(query))
            .await
    }

    /// Sends the event of attempt `delivery` again, now (`webhook.redeliver`; admin); the
    /// answer is the new attempt: `delivered`, or `dead` if it failed too. Not retried by the
    /// client (each call is an attempt).
    pub async fn redeliver(&self, id: Uuid, delivery: u64) -> Result<Delivery> {
        let path = paths::webhook_redeliver(id, delivery);
        self.json(Ok(Call::post("webhook.redeliver", path))).await
    }
}

/// Whether `signature` (the `webhook-signature` header: one or more space-separated
/// `v1,<base64>`) signs `id`, `timestamp` and `body` (the `webhook-id` and
/// `webhook-timestamp` headers and the raw body) with `secret` (`whsec_…`). Compared in
/// constant time.
pub fn verify_signature(
    secret: &str,
    id: &str,
    timestamp: &str,
    body: &[u8],
    signature: &str,
) -> bool {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let Ok(key) = STANDARD
        .decode(encoded)
        .or_else(|_| STANDARD_NO_PAD.decode(encoded))
    else {
        return false;
    };
    signature.split(' ').any(|candidate| {
        let Some(Ok(expected)) = candidate.strip_prefix("v1,").map(|s| STANDARD.decode(s)) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
            return false;
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    })
}

/// Whether `timestamp` (the `webhook-timestamp` header, Unix seconds) is within `tolerance`
/// of the local clock: refuse older deliveries as replays.
pub fn timestamp_is_recent(timestamp: &str, tolerance: Duration) -> bool {
    let (Ok(sent), Ok(now)) = (
        timestamp.trim().parse::<u64>(),
        SystemTime::now().duration_since(UNIX_EPOCH),
    ) else {
        return false;
    };
    now.as_secs().abs_diff(sent) <= tolerance.as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn the_standard_webhooks_example_verifies_and_tampering_does_not() {
        assert!(verify_signature(SECRET, ID, "1614265330", BODY, SIGNATURE));
        let several = format!("v1,bm90IGl0 {SIGNATURE}");
        assert!(verify_signature(SECRET, ID, "1614265330", BODY, &several));
        assert!(!verify_signature(SECRET, ID, "1614265331", BODY, SIGNATURE));
        assert!(!verify_signature(
            SECRET,
            "msg_other",
            "1614265330",
            BODY,
            SIGNATURE
        ));
        assert!(!verify_signature(
            SECRET,
            ID,
            "1614265330",
            b"{}",
            SIGNATURE
        ));
        assert!(!verify_signature(
            "whsec_AAAA",
            ID,
            "1614265330",
            BODY,
            SIGNATURE
        ));
        assert!(!verify_signature(SECRET, ID, "1614265330", BODY, "v2,abc"));
        assert!(!verify_signature(SECRET, ID, "1614265330", BODY, ""));
    }

    #[test]
    fn timestamps_are_recent_within_the_tolerance() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let minute = Duration::from_secs(60);
        assert!(timestamp_is_recent(&now.to_string(), minute));
        assert!(!timestamp_is_recent(&(now - 600).to_string(), minute));
        assert!(!timestamp_is_recent("soon", minute));
    }
}
