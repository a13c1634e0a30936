//! One delivery attempt: the event as a CloudEvents 1.0 structured JSON body, signed as
//! Standard Webhooks say, POSTed with a time limit; the attempt as a [`Delivery`] record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use contextd_core::service::webhooks::WebhookTarget;
use contextd_core::Scope;
use contextd_proto::events::{Delivery, DeliveryOutcome, Event};
use hmac::{Hmac, Mac};
use reqwest::header::CONTENT_TYPE;
use serde_json::json;
use sha2::Sha256;
use url::Url;

use super::address::{check_literal, PublicResolver};
use crate::events::EventsConfig;

/// The content type of a structured CloudEvent in JSON.
pub const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";
/// Longest error text kept with an attempt.
const MAX_ERROR_CHARS: usize = 300;

/// The HTTP client of deliveries: no redirects, no proxies, the attempt's time limit and,
/// unless private addresses are allowed, a resolver that yields public addresses only.
pub fn client(config: &EventsConfig) -> reqwest::Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .timeout(config.webhook_timeout)
        .connect_timeout(config.webhook_timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("contextd-webhooks/", env!("CARGO_PKG_VERSION")));
    if config.allow_private_webhooks {
        builder.build()
    } else {
        builder.dns_resolver(Arc::new(PublicResolver)).build()
    }
}

/// The `webhook-id` of an event: the same on every attempt, so receivers can dedupe.
pub fn message_id(event: &Event) -> String {
    format!("evt_{}", event.id)
}

/// The CloudEvents 1.0 structured JSON body of an event.
pub fn body(scope: Scope, event: &Event) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&json!({
        "specversion": "1.0",
        "id": event.id.to_string(),
        "source": format!("/contextd/{}/{}", scope.org, scope.partition.as_str()),
        "type": format!("contextd.{}", event.event_type),
        "subject": event.object_id.to_string(),
        "time": contextd_core::time::format(&event.time),
        "datacontenttype": "application/json",
        "data": event,
    }))
}

/// `webhook-signature`: `v1,` + base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// What one attempt sends.
pub struct Attempt<'a> {
    /// The webhook.
    pub target: &'a WebhookTarget,
    /// The event.
    pub event: &'a Event,
    /// Its body ([`body`]).
    pub body: &'a [u8],
    /// 1 for the first attempt of the event.
    pub number: u32,
}

impl Attempt<'_> {
    /// Makes the attempt; its record (`id` 0: the store assigns it), `Delivered` on a 2xx
    /// answer, else `Failed`.
    pub async fn send(&self, client: &reqwest::Client, allow_private: bool) -> Delivery {
        let at = contextd_core::time::now_ms();
        let started = Instant::now();
        let (outcome, status, error) = match self.post(client, allow_private).await {
            Ok(status) if (200..300).contains(&status) => {
                (DeliveryOutcome::Delivered, Some(status), None)
            }
            Ok(status) => (
                DeliveryOutcome::Failed,
                Some(status),
                Some(format!("the receiver answered {status}")),
            ),
            Err(e) => (DeliveryOutcome::Failed, None, Some(e)),
        };
        Delivery {
            id: 0,
            event_id: self.event.id,
            event_type: self.event.event_type,
            attempt: self.number,
            outcome,
            status,
            error,
            at,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// POSTs the signed body; the answer's status, or why there is none.
    async fn post(&self, client: &reqwest::Client, allow_private: bool) -> Result<u16, String> {
        let url = Url::parse(&self.target.webhook.url).map_err(|e| format!("bad URL: {e}"))?;
        if !allow_private {
            check_literal(&url)?;
        }
        let id = message_id(self.event);
        let timestamp = chrono::Utc::now().timestamp();
        let signature = sign(self.target.secret.key(), &id, timestamp, self.body);
        let response = client
            .post(url)
            .header(CONTENT_TYPE, CLOUDEVENTS_JSON)
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(self.body.to_vec())
            .send()
            .await
            .map_err(describe)?;
        Ok(response.status().as_u16())
    }
}

/// Why a request got no answer, without its URL (which may carry a token).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    contextd_proto::truncate(&text, MAX_ERROR_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The example of the Standard Webhooks specification.
        let key = STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .expect("base64");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
