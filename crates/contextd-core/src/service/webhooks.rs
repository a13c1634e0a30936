//! Webhooks: the receivers a partition's admins register for its events. This room holds
//! their rules (the URL's shape, the signing secret, at most [`MAX_WEBHOOKS`] per partition),
//! seals each secret under the partition's data key, and serves the server's dispatcher what
//! it needs: the webhooks with their secrets opened, their leased cursors, the events after
//! them and the record of every attempt.
//!
//! No network I/O here: whether a URL's host may be reached is the caller's [`UrlPolicy`].

use std::future::Future;
use std::str::FromStr;

use contextd_proto::events::{
    DeliveriesQuery, Delivery, DeliveryList, DeliveryOutcome, Event, EventFilter, Webhook,
    WebhookCreated, WebhookInput,
};
use rand::RngCore;
use url::Url;
use zeroize::Zeroizing;

use super::*;
use crate::store::{webhook_cursor, WebhookRecord, WebhookState};

/// Most webhooks of one partition.
pub const MAX_WEBHOOKS: usize = 20;
/// Longest webhook URL, in characters.
pub const MAX_URL_CHARS: usize = 2048;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 200;
/// The prefix of a signing secret (Standard Webhooks).
pub const SECRET_PREFIX: &str = "whsec_";
/// Bytes of a generated secret.
const SECRET_BYTES: usize = 32;
/// The sealed secret's field name (bound into its AAD).
const SECRET_FIELD: &str = "webhook.secret";
/// Attempts listed when the query names no limit, and at most.
const DEFAULT_DELIVERIES: usize = 100;
const MAX_DELIVERIES: usize = 1000;

/// Decides whether a webhook URL's host may be reached (the server's address policy).
pub trait UrlPolicy: Send + Sync {
    /// `Err` with a message for the caller when `url` may not be used.
    fn check(&self, url: &Url) -> impl Future<Output = Result<(), String>> + Send;
}

/// A webhook's signing key: the bytes after `whsec_`, base64-decoded. Wiped on drop, never
/// shown by `Debug`.
pub struct WebhookSecret(Zeroizing<Vec<u8>>);

impl WebhookSecret {
    fn generate() -> Self {
        let mut key = Zeroizing::new(vec![0u8; SECRET_BYTES]);
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self(key)
    }

    /// Reads `whsec_` + base64 of 24 to 64 bytes (padding optional).
    pub fn parse(text: &str) -> Result<Self, String> {
        let wrong = || format!("{SECRET_PREFIX} followed by the base64 of 24 to 64 bytes");
        let encoded = text.strip_prefix(SECRET_PREFIX).ok_or_else(wrong)?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
            .map(Zeroizing::new)
            .map_err(|_| wrong())?;
        if !(24..=64).contains(&key.len()) {
            return Err(wrong());
        }
        Ok(Self(key))
    }

    /// The HMAC key.
    pub fn key(&self) -> &[u8] {
        &self.0
    }

    /// `whsec_` + base64: as the receiver keeps it.
    fn text(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(self.key()))
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

/// A webhook as the dispatcher delivers to it: the record and its opened secret.
#[derive(Debug)]
pub struct WebhookTarget {
    /// The webhook.
    pub webhook: WebhookRecord,
    /// Its signing key.
    pub secret: WebhookSecret,
}

/// What a redelivery sends: the webhook and the event of the attempt named.
#[derive(Debug)]
pub struct Redelivery {
    /// The webhook.
    pub target: WebhookTarget,
    /// The event to send again.
    pub event: Event,
}

/// A registration, checked: the URL, the merged filter and the secret.
struct Checked {
    url: Url,
    filter: EventFilter,
    secret: WebhookSecret,
}

impl Context {
    /// Registers a webhook of the actor's partition (admin); the answer carries its secret,
    /// shown this once. Deliveries start with the partition's next event.
    pub async fn create_webhook(
        &self,
        actor: &Principal,
        input: WebhookInput,
        policy: &impl UrlPolicy,
    ) -> Result<WebhookCreated, CoreError> {
        actor.require(&[Role::Admin])?;
        let checked = check_webhook(&input)?;
        policy
            .check(&checked.url)
            .await
            .map_err(|e| CoreError::field("url", e))?;
        let scope = actor.scope;
        if self.store.webhooks(Some(scope)).await?.len() >= MAX_WEBHOOKS {
            return Err(CoreError::Conflict(format!(
                "a partition has at most {MAX_WEBHOOKS} webhooks: delete one first"
            )));
        }
        let id = Uuid::now_v7();
        let keys = self.keys.object_keys(scope, None).await?;
        let record = WebhookRecord {
            id,
            scope,
            url: checked.url.to_string(),
            filter: checked.filter,
            description: input.description,
            secret: keys.seal(ObjectId(id), SECRET_FIELD, checked.secret.key())?,
            created: now_ms(),
        };
        let position = self.store.last_event_id(Some(scope)).await?;
        self.store.create_webhook(&record, position).await?;
        let host = checked.url.host_str().unwrap_or_default();
        self.audit_action(
            Some(actor),
            scope,
            "webhook.create",
            None,
            vec![],
            format!("webhook={id} host={host}"),
        )
        .await?;
        let state = WebhookState {
            webhook: record,
            position,
            dead_letters: 0,
        };
        Ok(WebhookCreated {
            webhook: view(&state),
            secret: checked.secret.text(),
        })
    }

    /// The partition's webhooks, oldest first (admin).
    pub async fn list_webhooks(&self, actor: &Principal) -> Result<Vec<Webhook>, CoreError> {
        actor.require(&[Role::Admin])?;
        let states = self.store.webhooks(Some(actor.scope)).await?;
        Ok(states.iter().map(view).collect())
    }

    /// Deletes a webhook with its attempts (admin); deliveries stop.
    pub async fn delete_webhook(&self, actor: &Principal, id: Uuid) -> Result<(), CoreError> {
        actor.require(&[Role::Admin])?;
        self.store
            .delete_webhook(actor.scope, id)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => no_webhook(id),
                e => e.into(),
            })?;
        self.audit_action(
            Some(actor),
            actor.scope,
            "webhook.delete",
            None,
            vec![],
            format!("webhook={id}"),
        )
        .await
    }

    /// A webhook's delivery attempts, newest first (admin).
    pub async fn webhook_deliveries(
        &self,
        actor: &Principal,
        id: Uuid,
        query: &DeliveriesQuery,
    ) -> Result<DeliveryList, CoreError> {
        actor.require(&[Role::Admin])?;
        let outcome = query
            .outcome
            .as_deref()
            .map(DeliveryOutcome::from_str)
            .transpose()?;
        let limit = query
            .limit
            .unwrap_or(DEFAULT_DELIVERIES)
            .clamp(1, MAX_DELIVERIES);
        self.webhook_state(actor.scope, id).await?;
        let items = self.store.deliveries(id, outcome, limit).await?;
        Ok(DeliveryList { items })
    }

    /// What a redelivery of attempt `delivery` of webhook `id` sends (admin); the caller
    /// makes the attempt and records it with [`Context::record_redelivery`].
    pub async fn redelivery(
        &self,
        actor: &Principal,
        id: Uuid,
        delivery: u64,
    ) -> Result<Redelivery, CoreError> {
        actor.require(&[Role::Admin])?;
        let state = self.webhook_state(actor.scope, id).await?;
        let attempt = self.find_delivery(id, delivery).await?.ok_or_else(|| {
            CoreError::NotFound(format!(
                "no attempt {delivery} among the latest {MAX_DELIVERIES} of webhook {id}"
            ))
        })?;
        let event = self
            .store
            .events_after(Some(actor.scope), attempt.event_id.saturating_sub(1), 1)
            .await?
            .into_iter()
            .map(|e| e.event)
            .find(|e| e.id == attempt.event_id)
            .ok_or_else(|| {
                CoreError::NotFound(format!(
                    "event {} is no longer kept (past the event retention)",
                    attempt.event_id
                ))
            })?;
        let target = self.webhook_target(state.webhook).await?;
        Ok(Redelivery { target, event })
    }

    /// Records the attempt a redelivery made (admin) and audits it; returns it with its id.
    pub async fn record_redelivery(
        &self,
        actor: &Principal,
        id: Uuid,
        mut delivery: Delivery,
    ) -> Result<Delivery, CoreError> {
        actor.require(&[Role::Admin])?;
        delivery.id = self.store.record_delivery(id, &delivery).await?;
        self.audit_action(
            Some(actor),
            actor.scope,
            "webhook.redeliver",
            None,
            vec![],
            format!(
                "webhook={id} event={} outcome={}",
                delivery.event_id, delivery.outcome
            ),
        )
        .await?;
        Ok(delivery)
    }

    async fn webhook_state(&self, scope: Scope, id: Uuid) -> Result<WebhookState, CoreError> {
        self.store
            .webhook(scope, id)
            .await?
            .ok_or_else(|| no_webhook(id))
    }

    /// Attempt `delivery` of webhook `id`: looked up among the dead letters, then among the
    /// latest attempts (the store lists attempts, it does not fetch one).
    async fn find_delivery(&self, id: Uuid, delivery: u64) -> Result<Option<Delivery>, CoreError> {
        for outcome in [Some(DeliveryOutcome::Dead), None] {
            let found = self
                .store
                .deliveries(id, outcome, MAX_DELIVERIES)
                .await?
                .into_iter()
                .find(|d| d.id == delivery);
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }
}

/// The dispatcher's side: no principal, every org and partition.
impl Context {
    /// Every webhook of every org and partition, oldest first.
    pub async fn all_webhooks(&self) -> Result<Vec<WebhookState>, CoreError> {
        Ok(self.store.webhooks(None).await?)
    }

    /// Whether webhook `id` of `scope` still exists (checked before each attempt, so that
    /// a deletion stops deliveries at once on every instance).
    pub async fn webhook_exists(&self, scope: Scope, id: Uuid) -> Result<bool, CoreError> {
        Ok(self.store.webhook(scope, id).await?.is_some())
    }

    /// A webhook with its secret opened.
    pub async fn webhook_target(&self, webhook: WebhookRecord) -> Result<WebhookTarget, CoreError> {
        let keys = self.keys.object_keys(webhook.scope, None).await?;
        let key = Zeroizing::new(keys.open(ObjectId(webhook.id), SECRET_FIELD, &webhook.secret)?);
        Ok(WebhookTarget {
            webhook,
            secret: WebhookSecret(key),
        })
    }

    /// Takes or renews the lease of webhook `id`'s cursor for `owner` for `lease`; its
    /// position, or `None` when another owner holds it (or the webhook is gone).
    pub async fn claim_webhook_cursor(
        &self,
        id: Uuid,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<Option<u64>, CoreError> {
        let now = now_ms();
        let lease =
            chrono::Duration::from_std(lease).unwrap_or_else(|_| chrono::Duration::seconds(30));
        let until = now.checked_add_signed(lease).unwrap_or(now);
        Ok(self
            .store
            .claim_cursor(&webhook_cursor(id), owner, now, until)
            .await?)
    }

    /// Ends `owner`'s lease of webhook `id`'s cursor now, so another instance may take it.
    pub async fn release_webhook_cursor(&self, id: Uuid, owner: &str) -> Result<(), CoreError> {
        let now = now_ms();
        self.store
            .claim_cursor(&webhook_cursor(id), owner, now, now)
            .await?;
        Ok(())
    }

    /// Moves webhook `id`'s cursor to `position`; `false` when `owner` lost the lease.
    pub async fn advance_webhook_cursor(
        &self,
        id: Uuid,
        owner: &str,
        position: u64,
    ) -> Result<bool, CoreError> {
        Ok(self
            .store
            .advance_cursor(&webhook_cursor(id), owner, position)
            .await?)
    }

    /// Up to `limit` events of one org and partition after `after`, oldest first.
    pub async fn webhook_events(
        &self,
        scope: Scope,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, CoreError> {
        let page = self
            .store
            .events_after(Some(scope), after, limit.min(events::EVENT_PAGE))
            .await?;
        Ok(page.into_iter().map(|e| e.event).collect())
    }

    /// Records one delivery attempt; returns its id.
    pub async fn record_webhook_delivery(
        &self,
        id: Uuid,
        delivery: &Delivery,
    ) -> Result<u64, CoreError> {
        Ok(self.store.record_delivery(id, delivery).await?)
    }

    /// The failed attempts already made of `event` by webhook `id` (among its latest): how
    /// many, and when the first was; so a retry picks up where a restart left it.
    pub async fn failed_attempts(
        &self,
        id: Uuid,
        event: u64,
    ) -> Result<Option<(u32, DateTime<Utc>)>, CoreError> {
        let failed = self
            .store
            .deliveries(id, Some(DeliveryOutcome::Failed), DEFAULT_DELIVERIES)
            .await?;
        let of_event = failed.iter().filter(|d| d.event_id == event);
        let attempts = of_event.clone().map(|d| d.attempt).max();
        let first = of_event.map(|d| d.at).min();
        Ok(attempts.zip(first))
    }
}

/// Checks a registration: the URL's shape, the description, the secret (generated when
/// absent); merges `types` into the filter.
fn check_webhook(input: &WebhookInput) -> Result<Checked, CoreError> {
    let mut errors = Vec::new();
    let url = match check_url(&input.url) {
        Ok(url) => Some(url),
        Err(e) => {
            errors.push(FieldError::new("url", e));
            None
        }
    };
    let description = &input.description;
    if description.chars().count() > MAX_DESCRIPTION_CHARS
        || description.chars().any(char::is_control)
    {
        errors.push(FieldError::new(
            "description",
            format!("at most {MAX_DESCRIPTION_CHARS} printable characters"),
        ));
    }
    if input
        .filter
        .contributor
        .as_deref()
        .is_some_and(|c| c.is_empty() || c.chars().count() > 256)
    {
        errors.push(FieldError::new("filter.contributor", "1–256 characters"));
    }
    let secret = match input.secret.as_deref().map(WebhookSecret::parse) {
        None => Some(WebhookSecret::generate()),
        Some(Ok(secret)) => Some(secret),
        Some(Err(e)) => {
            errors.push(FieldError::new("secret", e));
            None
        }
    };
    let (Some(url), Some(secret), true) = (url, secret, errors.is_empty()) else {
        return Err(CoreError::Validation(errors));
    };
    let mut filter = input.filter.clone();
    for t in &input.types {
        if !filter.types.contains(t) {
            filter.types.push(*t);
        }
    }
    Ok(Checked {
        url,
        filter,
        secret,
    })
}

/// An absolute `http`/`https` URL of at most [`MAX_URL_CHARS`] characters, without userinfo.
fn check_url(text: &str) -> Result<Url, String> {
    if text.chars().count() > MAX_URL_CHARS {
        return Err(format!("at most {MAX_URL_CHARS} characters"));
    }
    let url =
        Url::parse(text.trim()).map_err(|e| format!("not an absolute http or https URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("the scheme must be http or https".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("user names and passwords in the URL are not accepted".into());
    }
    if url.host().is_none() {
        return Err("the URL names no host".into());
    }
    if url.as_str().chars().count() > MAX_URL_CHARS {
        return Err(format!("at most {MAX_URL_CHARS} characters"));
    }
    Ok(url)
}

fn no_webhook(id: Uuid) -> CoreError {
    CoreError::NotFound(format!("no webhook with id {id}"))
}

/// A webhook as admins see it.
fn view(state: &WebhookState) -> Webhook {
    let w = &state.webhook;
    Webhook {
        id: w.id,
        url: w.url.clone(),
        filter: w.filter.clone(),
        description: w.description.clone(),
        created: w.created,
        delivered_through: state.position,
        dead_letters: state.dead_letters,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_whsec_and_base64_of_24_to_64_bytes() {
        let generated = WebhookSecret::generate();
        let text = generated.text();
        assert!(text.starts_with(SECRET_PREFIX));
        assert_eq!(WebhookSecret::parse(&text).map(|s| s.key().len()), Ok(32));
        let of = |n: usize| format!("{SECRET_PREFIX}{}", STANDARD.encode(vec![7u8; n]));
        assert!(WebhookSecret::parse(&of(24)).is_ok());
        assert!(WebhookSecret::parse(&of(64)).is_ok());
        assert!(WebhookSecret::parse(&of(23)).is_err());
        assert!(WebhookSecret::parse(&of(65)).is_err());
        assert!(WebhookSecret::parse(&of(32)[SECRET_PREFIX.len()..]).is_err());
        assert!(WebhookSecret::parse("whsec_not base64!").is_err());
        assert_eq!(format!("{generated:?}"), "WebhookSecret([redacted])");
    }

    #[test]
    fn urls_are_absolute_http_without_userinfo() {
        assert!(check_url("https://example.com/hook?x=1").is_ok());
        assert!(check_url("http://10.0.0.1:8080/").is_ok());
        for bad in [
            "ftp://example.com/",
            "example.com/hook",
            "/hook",
            "https://user:pw@example.com/",
            "https://user@example.com/",
            "http://",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS));
        assert!(check_url(&long).is_err());
    }

    #[test]
    fn types_are_merged_into_the_filter() {
        use contextd_proto::events::EventType;
        let input = WebhookInput {
            url: "https://example.com/".into(),
            types: vec![EventType::Created, EventType::Moved],
            filter: EventFilter {
                types: vec![EventType::Moved, EventType::Closed],
                ..EventFilter::default()
            },
            ..WebhookInput::default()
        };
        let checked = check_webhook(&input).map_err(|e| e.to_string());
        let types = checked.map(|c| c.filter.types);
        assert_eq!(
            types,
            Ok(vec![
                EventType::Moved,
                EventType::Closed,
                EventType::Created
            ])
        );
    }
}
