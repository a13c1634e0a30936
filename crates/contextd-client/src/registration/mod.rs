//! The component-side registration resource (feature `registration`, on by default): the
//! `…/contextservice` resource that a component (IVR, agent desktop, chat or email server,
//! custom app) exposes so that an administrator can register it with contextd, as the original
//! Context Service Registration API did.
//!
//! A component mounts [`Registration::router`] at its refURL, by default
//! `/unifiedconfig/config/contextservice`. The resource answers:
//!
//! - `GET ?callbackUrl=…` — `<contextServiceRegistration>` with
//!   - `state`: `notRegistered` (no connectionData stored), `registered` (one is stored and
//!     authenticates, or can't be checked right now: see [`ServiceValidator`]), or `invalid`
//!     (one is stored but no longer authenticates: revoked, rotated past its grace period, or
//!     malformed);
//!   - `managementUrl` when registered: `{serviceUrl of the connectionData}/admin`;
//!   - `registrationUrl` when notRegistered or invalid **and** a callbackUrl was given:
//!     `{service URL}/register?callbackUrl=…&appType=…` (see [`Registration::service_url`]);
//!   - `deregistrationUrl` when registered **and** a callbackUrl was given:
//!     `{serviceUrl of the connectionData}/deregister?callbackUrl=…&clientId=…` (the production
//!     credential's clientId);
//!   - `refURL`: where the resource is mounted.
//!
//!   callbackUrl is optional (an empty one counts as absent); when given it must be an
//!   absolute `http` or `https` URL, else the answer is 400.
//! - `PUT` with `connectionData` (required, at most 4096 bytes, whitespace around it
//!   ignored): stores it and answers 200 with no body. `""` clears it (deregistration).
//!   While a connectionData is stored only `""` or the identical value is accepted; another is
//!   a 409 saying to deregister first. A new value is accepted even if it does not
//!   authenticate: the next `GET` then says `invalid`.
//!
//! Both ways the resource speaks XML (as the original did) and JSON:
//!
//! | | XML | JSON |
//! | --- | --- | --- |
//! | `GET` answer | `<contextServiceRegistration><state>registered</state><managementUrl>…</managementUrl><refURL>…</refURL></contextServiceRegistration>` (elements without a value are left out) | `{"state": "registered", "managementUrl": "…", "refURL": "…"}` |
//! | `PUT` body | `<contextServiceRegistration><connectionData>…</connectionData></contextServiceRegistration>` (other elements ignored) | `{"connectionData": "…"}` (other members ignored) |
//! | error | `<apiErrors><apiError><errorType>…</errorType><errorMessage>…</errorMessage></apiError></apiErrors>` | `{"errorType": "…", "errorMessage": "…"}` |
//!
//! The answer is JSON when `Accept` prefers `application/json`, XML when it prefers
//! `application/xml` or `text/xml`; without a preference (no `Accept`, `*/*`) a `GET` answers
//! XML and a `PUT` answers in the format of its body. A `PUT` body is read by its
//! `Content-Type` (`application/json`, `application/xml`, `text/xml`, `…+json`, `…+xml`;
//! without one, a body starting with `{` is JSON, else XML); another type is a 415.
//!
//! | error | status | `errorType` |
//! | --- | --- | --- |
//! | callbackUrl not an absolute http(s) URL | 400 | `invalidCallbackUrl` |
//! | no connectionData in the body | 400 | `missingConnectionData` |
//! | connectionData over 4096 bytes | 400 | `connectionDataTooLong` |
//! | body not well-formed | 400 | `malformedBody` |
//! | another connectionData while one is stored | 409 | `alreadyRegistered` |
//! | body over 64 KiB | 413 | `bodyTooLarge` |
//! | unsupported `Content-Type` | 415 | `unsupportedMediaType` |
//! | another method | 405 | `methodNotAllowed` |
//! | the store failed | 500 | `storeFailed` |
//!
//! Whether a stored connectionData still authenticates is a [`Validator`]'s call
//! ([`ServiceValidator`] asks the service); its verdict is remembered for
//! [`Registration::verdict_ttl`] (30 s by default) so that a burst of `GET`s costs the service
//! one request, and forgotten on every `PUT`. The connectionData is kept by a
//! [`RegistrationStore`] ([`FileStore`], [`MemoryStore`]). [`Registration::subscribe`] tells the
//! component's own SDK client when the connectionData changes, so it can switch without a
//! restart.
//!
//! # Example: a component mounts the resource
//!
//! ```no_run
//! use axum::Router;
//! use contextd_client::registration::{FileStore, Registration, ServiceValidator, DEFAULT_REF_URL};
//! use contextd_client::proto::connectors::AppType;
//! use contextd_client::Settings;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registration = Registration::new(
//!     FileStore::new("/var/lib/my-ivr/contextservice.connectiondata"),
//!     ServiceValidator::new(Settings::voice()),
//! )
//! .service_url("https://context.example.com")?
//! .app_type(AppType::Voice);
//!
//! // Follow (re)registrations without a restart.
//! let mut changes = registration.subscribe().await?;
//! tokio::spawn(async move {
//!     while changes.changed().await.is_ok() {
//!         let registered = changes.borrow_and_update().is_some();
//!         println!("connectionData changed; registered: {registered}");
//!     }
//! });
//!
//! let app = Router::new().nest(DEFAULT_REF_URL, registration.router());
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```
//!
//! A component whose router has its own state mounts it with
//! [`Router::nest_service`] instead of [`Router::nest`].

mod store;
mod validator;
mod wire;

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::header::{ACCEPT, ALLOW, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use contextd_proto::connection::MAX_CONNECTION_DATA_BYTES;
use contextd_proto::connectors::AppType;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use url::Url;

use crate::connection::decode_connection_data;
use crate::error::{Error, Result};

pub use store::{FileStore, MemoryStore, RegistrationStore};
pub use validator::{ServiceValidator, Validator, Verdict};

use wire::{BodyError, Format};

/// Where a component mounts the resource unless told otherwise (the original's refURL).
pub const DEFAULT_REF_URL: &str = "/unifiedconfig/config/contextservice";

/// How long a verdict on the stored connectionData is remembered by default.
pub const DEFAULT_VERDICT_TTL: Duration = Duration::from_secs(30);

/// The largest `PUT` body read, bytes (a 4096-byte connectionData in XML or JSON fits easily).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The registration state of a component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RegistrationState {
    /// A connectionData is stored and authenticates (or can't be checked right now).
    Registered,
    /// No connectionData is stored.
    NotRegistered,
    /// A connectionData is stored but no longer authenticates: revoked, rotated past its grace
    /// period, or malformed.
    Invalid,
}

impl RegistrationState {
    /// The wire text: `registered`, `notRegistered`, `invalid`.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationState::Registered => "registered",
            RegistrationState::NotRegistered => "notRegistered",
            RegistrationState::Invalid => "invalid",
        }
    }
}

impl fmt::Display for RegistrationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `GET` answers: the original `<contextServiceRegistration>`. Its JSON form is this
/// struct's serde form (`{"state", "managementUrl"?, "registrationUrl"?, "deregistrationUrl"?,
/// "refURL"}`); [`to_xml`](RegistrationStatus::to_xml) gives the XML.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationStatus {
    /// The state.
    pub state: RegistrationState,
    /// Where to manage the service; when registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_url: Option<String>,
    /// Where to begin a registration; when notRegistered or invalid and a callbackUrl was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_url: Option<String>,
    /// Where to begin a deregistration; when registered and a callbackUrl was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregistration_url: Option<String>,
    /// Where the resource is mounted.
    #[serde(rename = "refURL")]
    pub ref_url: String,
}

impl RegistrationStatus {
    /// The XML form, exactly as the original resource wrote it (no XML declaration; elements
    /// without a value left out; text escaped).
    ///
    /// ```
    /// use contextd_client::registration::{RegistrationState, RegistrationStatus};
    ///
    /// let status = RegistrationStatus {
    ///     state: RegistrationState::NotRegistered,
    ///     management_url: None,
    ///     registration_url: None,
    ///     deregistration_url: None,
    ///     ref_url: "/unifiedconfig/config/contextservice".into(),
    /// };
    /// assert_eq!(
    ///     status.to_xml(),
    ///     "<contextServiceRegistration><state>notRegistered</state>\
    ///      <refURL>/unifiedconfig/config/contextservice</refURL></contextServiceRegistration>"
    /// );
    /// ```
    pub fn to_xml(&self) -> String {
        wire::registration_xml(
            self.state.as_str(),
            self.management_url.as_deref(),
            self.registration_url.as_deref(),
            self.deregistration_url.as_deref(),
            &self.ref_url,
        )
    }
}

/// Why the resource refused a request; [`status`](RegistrationError::status) and
/// [`error_type`](RegistrationError::error_type) are what it answers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    /// The callbackUrl is not an absolute `http` or `https` URL.
    #[error("callbackUrl must be an absolute http or https URL, such as https://component.example.com/registered; '{0}' is not")]
    InvalidCallbackUrl(String),
    /// The `PUT` body has no connectionData.
    #[error("connectionData is required: send {{\"connectionData\": \"…\"}} or <contextServiceRegistration><connectionData>…</connectionData></contextServiceRegistration>; an empty string deregisters")]
    MissingConnectionData,
    /// The connectionData is longer than 4096 bytes.
    #[error("connectionData is {0} bytes long; at most 4096 bytes are allowed")]
    ConnectionDataTooLong(usize),
    /// Another connectionData is stored.
    #[error("the component is already registered with another connectionData; deregister before registering again: PUT an empty connectionData (\"\"), then PUT the new one")]
    AlreadyRegistered,
    /// The `PUT` body can't be read; the text says why.
    #[error("{0}")]
    MalformedBody(String),
    /// The `PUT` body is larger than [`MAX_BODY_BYTES`] (or could not be read).
    #[error("the body is larger than 65536 bytes, or could not be read")]
    BodyTooLarge,
    /// The `PUT` body's `Content-Type` is neither JSON nor XML.
    #[error("Content-Type '{0}' is not supported; send application/json or application/xml")]
    UnsupportedMediaType(String),
    /// The [`RegistrationStore`] failed.
    #[error("the registration store failed: {0}")]
    Store(#[source] io::Error),
}

impl RegistrationError {
    /// The HTTP status the resource answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            RegistrationError::InvalidCallbackUrl(_)
            | RegistrationError::MissingConnectionData
            | RegistrationError::ConnectionDataTooLong(_)
            | RegistrationError::MalformedBody(_) => StatusCode::BAD_REQUEST,
            RegistrationError::AlreadyRegistered => StatusCode::CONFLICT,
            RegistrationError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RegistrationError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RegistrationError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `errorType` of the answer (`alreadyRegistered`, …).
    pub fn error_type(&self) -> &'static str {
        match self {
            RegistrationError::InvalidCallbackUrl(_) => "invalidCallbackUrl",
            RegistrationError::MissingConnectionData => "missingConnectionData",
            RegistrationError::ConnectionDataTooLong(_) => "connectionDataTooLong",
            RegistrationError::AlreadyRegistered => "alreadyRegistered",
            RegistrationError::MalformedBody(_) => "malformedBody",
            RegistrationError::BodyTooLarge => "bodyTooLarge",
            RegistrationError::UnsupportedMediaType(_) => "unsupportedMediaType",
            RegistrationError::Store(_) => "storeFailed",
        }
    }
}

/// A verdict, and on what and when it was reached.
struct Cached {
    connection_data: String,
    verdict: Verdict,
    at: Instant,
}

/// The remembered verdict; `generation` counts `PUT`s so that a check that started before one
/// does not store its stale verdict after it.
#[derive(Default)]
struct Cache {
    entry: Option<Cached>,
    generation: u64,
}

/// What clones of one [`Registration`] share.
struct Shared {
    store: Arc<dyn RegistrationStore>,
    validator: Arc<dyn Validator>,
    /// One `PUT` (read, compare, save) at a time.
    writing: tokio::sync::Mutex<()>,
    /// One validation at a time: a burst of `GET`s waits for the first one's verdict.
    validating: tokio::sync::Mutex<()>,
    cache: Mutex<Cache>,
    changes: watch::Sender<Option<String>>,
}

/// The component-side registration resource (see the [module](self) documentation): its
/// configuration, its store and validator, and the [`router`](Registration::router) serving it.
///
/// Cheap to clone; clones share the store, the verdict cache and the change notifications.
/// Configure it (the builder methods) before calling [`router`](Registration::router).
#[derive(Clone)]
pub struct Registration {
    shared: Arc<Shared>,
    service_url: Option<Url>,
    app_type: AppType,
    ref_url: String,
    verdict_ttl: Duration,
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("service_url", &self.service_url.as_ref().map(Url::as_str))
            .field("app_type", &self.app_type)
            .field("ref_url", &self.ref_url)
            .field("verdict_ttl", &self.verdict_ttl)
            .finish_non_exhaustive()
    }
}

impl Registration {
    /// A registration resource keeping the connectionData in `store` and judging it with
    /// `validator`. Defaults: no service URL (set one with
    /// [`service_url`](Registration::service_url)), app type `custom`, refURL
    /// [`DEFAULT_REF_URL`], verdicts remembered for [`DEFAULT_VERDICT_TTL`].
    pub fn new(store: impl RegistrationStore, validator: impl Validator) -> Self {
        Self {
            shared: Arc::new(Shared {
                store: Arc::new(store),
                validator: Arc::new(validator),
                writing: tokio::sync::Mutex::new(()),
                validating: tokio::sync::Mutex::new(()),
                cache: Mutex::new(Cache::default()),
                changes: watch::channel(None).0,
            }),
            service_url: None,
            app_type: AppType::Custom,
            ref_url: DEFAULT_REF_URL.to_owned(),
            verdict_ttl: DEFAULT_VERDICT_TTL,
        }
    }

    /// The contextd service a component that is not registered registers with
    /// (`https://context.example.com`; a path prefix is kept): the registrationUrl is
    /// `{service}/register?callbackUrl=…&appType=…`. Without it no registrationUrl is given.
    ///
    /// Fails with [`Error::InvalidSettings`] unless `url` is an absolute `http(s)` URL.
    ///
    /// ```
    /// use contextd_client::registration::{MemoryStore, Registration, ServiceValidator};
    ///
    /// let ok = Registration::new(MemoryStore::new(), ServiceValidator::default())
    ///     .service_url("https://context.example.com");
    /// assert!(ok.is_ok());
    /// let bad = Registration::new(MemoryStore::new(), ServiceValidator::default())
    ///     .service_url("context.example.com");
    /// assert_eq!(bad.unwrap_err().kind(), "invalidSettings");
    /// ```
    pub fn service_url(mut self, url: &str) -> Result<Self> {
        let parsed = absolute_http_url(url.trim()).ok_or_else(|| {
            Error::InvalidSettings(format!(
                "the registration service URL must be an absolute http or https URL such as https://context.example.com; '{}' is not",
                contextd_proto::truncate(url, 100)
            ))
        })?;
        self.service_url = Some(parsed);
        Ok(self)
    }

    /// The kind of component, sent as `appType` in the registrationUrl (default `custom`).
    pub fn app_type(mut self, app_type: AppType) -> Self {
        self.app_type = app_type;
        self
    }

    /// The path where the component mounts the resource, answered as `refURL` (default
    /// [`DEFAULT_REF_URL`]). It does not mount anything: nest [`router`](Registration::router)
    /// at the same path.
    pub fn ref_url(mut self, ref_url: impl Into<String>) -> Self {
        self.ref_url = ref_url.into();
        self
    }

    /// How long a [`Validator`]'s verdict on the stored connectionData is remembered (default
    /// [`DEFAULT_VERDICT_TTL`]; zero asks on every `GET`). Every `PUT` forgets it.
    pub fn verdict_ttl(mut self, ttl: Duration) -> Self {
        self.verdict_ttl = ttl;
        self
    }

    /// The resource as an axum [`Router`] serving `GET` (and `HEAD`) and `PUT` at its root `/`:
    /// nest it at the refURL (`Router::new().nest(DEFAULT_REF_URL, registration.router())`).
    /// Other methods get a 405.
    pub fn router(&self) -> Router {
        if self.service_url.is_none() {
            tracing::warn!(
                "the registration resource has no service URL: it can't offer a registrationUrl"
            );
        }
        Router::new()
            .route(
                "/",
                get(get_registration)
                    .put(put_registration)
                    .fallback(method_not_allowed),
            )
            .with_state(self.clone())
    }

    /// The stored connectionData, if any.
    pub async fn connection_data(&self) -> io::Result<Option<String>> {
        Ok(self
            .shared
            .store
            .load()
            .await?
            .filter(|data| !data.is_empty()))
    }

    /// A receiver of the stored connectionData: its value is the connectionData stored now
    /// (`None` when not registered), and it is marked changed whenever a `PUT` changes it
    /// (not on a `PUT` of the same value). The component's own SDK client uses it to pick up a
    /// new connectionData without a restart. Changes made to the store behind the resource's
    /// back are seen at the next `subscribe`, not before.
    pub async fn subscribe(&self) -> io::Result<watch::Receiver<Option<String>>> {
        let _writing = self.shared.writing.lock().await;
        let current = self.connection_data().await?;
        self.shared.changes.send_if_modified(|value| {
            let modified = *value != current;
            *value = current;
            modified
        });
        Ok(self.shared.changes.subscribe())
    }

    /// What `GET ?callbackUrl=` answers. `callback_url` `None` or empty: no callbackUrl.
    pub async fn status(
        &self,
        callback_url: Option<&str>,
    ) -> std::result::Result<RegistrationStatus, RegistrationError> {
        let callback = match callback_url.map(str::trim).filter(|c| !c.is_empty()) {
            None => None,
            Some(raw) => Some(absolute_http_url(raw).ok_or_else(|| {
                RegistrationError::InvalidCallbackUrl(contextd_proto::truncate(raw, 100))
            })?),
        };
        let stored = self
            .connection_data()
            .await
            .map_err(RegistrationError::Store)?;
        let mut status = RegistrationStatus {
            state: RegistrationState::NotRegistered,
            management_url: None,
            registration_url: None,
            deregistration_url: None,
            ref_url: self.ref_url.clone(),
        };
        // The service and credential of a connectionData that counts as registered. A verdict
        // of registered is reached only on data that decodes with a usable serviceUrl (see
        // `judge`), so the decoding below does not fail then.
        let registered = match stored {
            None => None,
            Some(data) => {
                let verdict = self.verdict(&data).await;
                let usable = verdict
                    .is_registered()
                    .then(|| decode_connection_data(&data).ok())
                    .flatten()
                    .and_then(|d| absolute_http_url(&d.service_url).map(|u| (u, d)));
                if usable.is_none() {
                    status.state = RegistrationState::Invalid;
                }
                usable
            }
        };
        match registered {
            Some((service, decoded)) => {
                status.state = RegistrationState::Registered;
                status.management_url = Some(join(&service, "admin").into());
                if let Some(callback) = &callback {
                    let mut url = join(&service, "deregister");
                    url.query_pairs_mut()
                        .append_pair("callbackUrl", callback.as_str())
                        .append_pair("clientId", &decoded.credentials.client_id);
                    status.deregistration_url = Some(url.into());
                }
            }
            None => {
                if let (Some(callback), Some(service)) = (&callback, &self.service_url) {
                    let mut url = join(service, "register");
                    url.query_pairs_mut()
                        .append_pair("callbackUrl", callback.as_str())
                        .append_pair("appType", self.app_type.as_str());
                    status.registration_url = Some(url.into());
                }
            }
        }
        Ok(status)
    }

    /// What `PUT` does with `connection_data` (whitespace around it ignored): stores it, or
    /// clears the registration when it is empty. Answers whether the stored value changed.
    /// While a connectionData is stored, only `""` or the identical value is accepted
    /// ([`RegistrationError::AlreadyRegistered`] otherwise). The value is not checked against
    /// the service: one that does not authenticate is stored, and `GET` then says `invalid`.
    pub async fn set_connection_data(
        &self,
        connection_data: &str,
    ) -> std::result::Result<bool, RegistrationError> {
        let value = connection_data.trim();
        if value.len() > MAX_CONNECTION_DATA_BYTES {
            return Err(RegistrationError::ConnectionDataTooLong(value.len()));
        }
        let _writing = self.shared.writing.lock().await;
        let stored = self
            .connection_data()
            .await
            .map_err(RegistrationError::Store)?;
        let changed = match (&stored, value.is_empty()) {
            (Some(current), false) if current != value => {
                return Err(RegistrationError::AlreadyRegistered)
            }
            (Some(_), false) | (None, true) => false,
            (Some(_), true) | (None, false) => true,
        };
        if changed {
            let new = (!value.is_empty()).then_some(value);
            self.shared
                .store
                .save(new)
                .await
                .map_err(RegistrationError::Store)?;
            tracing::info!(
                registered = new.is_some(),
                "the component's connectionData was {}",
                if new.is_some() { "stored" } else { "cleared" }
            );
        }
        {
            let mut cache = self.shared.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.entry = None;
            cache.generation += 1;
        }
        if changed {
            self.shared
                .changes
                .send_replace((!value.is_empty()).then(|| value.to_owned()));
        }
        Ok(changed)
    }

    /// The verdict on `data`: remembered, else reached (one check at a time) and remembered.
    async fn verdict(&self, data: &str) -> Verdict {
        if let Some(verdict) = self.cached(data) {
            return verdict;
        }
        let _validating = self.shared.validating.lock().await;
        if let Some(verdict) = self.cached(data) {
            return verdict;
        }
        let generation = self.cache().generation;
        let verdict = self.judge(data).await;
        match &verdict {
            Verdict::Valid => tracing::debug!("the stored connectionData authenticates"),
            Verdict::Unverified(reason) => tracing::warn!(
                "the stored connectionData could not be checked, so it counts as registered: {reason}"
            ),
            Verdict::Invalid(reason) => {
                tracing::warn!("the stored connectionData is invalid: {reason}")
            }
        }
        let mut cache = self.cache();
        if cache.generation == generation && !self.verdict_ttl.is_zero() {
            cache.entry = Some(Cached {
                connection_data: data.to_owned(),
                verdict: verdict.clone(),
                at: Instant::now(),
            });
        }
        verdict
    }

    /// Malformed data is invalid without asking; the validator judges the rest.
    async fn judge(&self, data: &str) -> Verdict {
        let decoded = match decode_connection_data(data) {
            Ok(decoded) => decoded,
            Err(e) => return Verdict::Invalid(e.to_string()),
        };
        if absolute_http_url(&decoded.service_url).is_none() {
            return Verdict::Invalid(
                "invalid connectionData: its serviceUrl is not an absolute http or https URL"
                    .into(),
            );
        }
        self.shared.validator.validate(data).await
    }

    fn cached(&self, data: &str) -> Option<Verdict> {
        let cache = self.cache();
        cache
            .entry
            .as_ref()
            .filter(|c| c.connection_data == data && c.at.elapsed() < self.verdict_ttl)
            .map(|c| c.verdict.clone())
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.shared
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `raw` parsed, if it is an absolute `http`/`https` URL with a host.
fn absolute_http_url(raw: &str) -> Option<Url> {
    let url = Url::parse(raw).ok()?;
    (matches!(url.scheme(), "http" | "https") && url.host().is_some()).then_some(url)
}

/// `base` with `segment` appended to its path, without its query and fragment.
fn join(base: &Url, segment: &str) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().push(segment);
    }
    url
}

fn header(headers: &HeaderMap, name: axum::http::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn respond(format: Format, status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        )],
        body,
    )
        .into_response()
}

fn error_response(format: Format, error: &RegistrationError) -> Response {
    if let RegistrationError::Store(e) = error {
        tracing::error!("the registration store failed: {e}");
    }
    respond(
        format,
        error.status(),
        wire::error_body(format, error.error_type(), &error.to_string()),
    )
}

async fn get_registration(
    State(registration): State<Registration>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let format = wire::negotiate(header(&headers, ACCEPT)).unwrap_or(Format::Xml);
    let callback = query.as_deref().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(name, _)| name == "callbackUrl")
            .map(|(_, value)| value.into_owned())
    });
    match registration.status(callback.as_deref()).await {
        Ok(status) => {
            let body = match format {
                Format::Xml => status.to_xml(),
                Format::Json => serde_json::to_string(&status).unwrap_or_default(),
            };
            respond(format, StatusCode::OK, body)
        }
        Err(e) => error_response(format, &e),
    }
}

async fn put_registration(
    State(registration): State<Registration>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let preferred = wire::negotiate(header(&headers, ACCEPT));
    // Until the body is read, errors are in the preferred format, else the declared one.
    let declared = preferred
        .or_else(|| wire::body_format(header(&headers, CONTENT_TYPE), "").ok())
        .unwrap_or(Format::Xml);
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return error_response(declared, &RegistrationError::BodyTooLarge);
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return error_response(
            declared,
            &RegistrationError::MalformedBody("the body is not UTF-8 text".into()),
        );
    };
    let body_format = match wire::body_format(header(&headers, CONTENT_TYPE), text) {
        Ok(format) => format,
        Err(content_type) => {
            return error_response(
                declared,
                &RegistrationError::UnsupportedMediaType(content_type),
            )
        }
    };
    let format = preferred.unwrap_or(body_format);
    let value = match body_format {
        Format::Json => wire::connection_data_from_json(text),
        Format::Xml => wire::connection_data_from_xml(text),
    };
    let value = match value {
        Ok(value) => value,
        Err(BodyError::Missing) => {
            return error_response(format, &RegistrationError::MissingConnectionData)
        }
        Err(BodyError::Malformed(why)) => {
            return error_response(format, &RegistrationError::MalformedBody(why))
        }
    };
    match registration.set_connection_data(&value).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => error_response(format, &e),
    }
}

async fn method_not_allowed(headers: HeaderMap) -> Response {
    let format = wire::negotiate(header(&headers, ACCEPT)).unwrap_or(Format::Xml);
    let mut response = respond(
        format,
        StatusCode::METHOD_NOT_ALLOWED,
        wire::error_body(
            format,
            "methodNotAllowed",
            "the registration resource answers GET and PUT only",
        ),
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET, HEAD, PUT"));
    response
}
