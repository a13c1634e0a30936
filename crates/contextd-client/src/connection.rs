//! Reading a connectionData string (README, "Rust SDK") and turning one of its credential sets into a
//! bearer token; what a client connects with (a base URL and a credential) and the token cache of
//! an exchanged credential.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use contextd_proto::connection::{ConnectionData, Credentials, MAX_CONNECTION_DATA_BYTES};
use reqwest::header::HeaderValue;

use crate::error::{Error, Result};
use crate::settings::Settings;

/// A token is renewed this long before it expires, so that no call carries a dying one.
pub(crate) const TOKEN_RENEW_BEFORE: Duration = Duration::from_secs(60);
/// A cached token is still sent while at least this much of its life is left, when its renewal
/// failed (the token endpoint unreachable, or the secret rotated away meanwhile).
pub(crate) const TOKEN_LAST_USE: Duration = Duration::from_secs(5);
/// After a failed renewal, the next one is tried no sooner than this while the cached token
/// can still be used: a burst of calls costs the token endpoint one request, not one each.
pub(crate) const RENEW_RETRY_AFTER: Duration = Duration::from_secs(5);

/// What a client connects with: the service's base URL and how calls authenticate. A client
/// holds one at a time; a new connectionData replaces it as a whole (calls in flight keep the
/// one they started with).
pub(crate) struct Connection {
    /// The service's base URL, without a trailing `/`.
    pub(crate) base_url: String,
    /// How calls authenticate.
    pub(crate) credential: Credential,
    /// The connectionData it was made from, trimmed (compared by `follow`, never shown).
    #[cfg_attr(not(feature = "registration"), allow(dead_code))]
    pub(crate) data: Option<String>,
}

/// How calls authenticate.
pub(crate) enum Credential {
    /// No `Authorization` header (ping, health).
    None,
    /// A bearer token given by the caller (an API key).
    Bearer(HeaderValue),
    /// A connector credential, exchanged at `POST /v1/token` for short-lived tokens.
    Exchange(TokenSource),
}

impl Connection {
    /// The connection a connectionData describes: its `serviceUrl`, and its `credentialsLabMode`
    /// when `settings` say lab mode, else its `credentials`.
    pub(crate) fn from_connection_data(data: &str, settings: &Settings) -> Result<Connection> {
        let data = data.trim();
        let decoded = decode_connection_data(data)?;
        let credentials = if settings.lab_mode() {
            &decoded.credentials_lab_mode
        } else {
            &decoded.credentials
        };
        let basic = basic_from(credentials)?;
        let base_url = crate::settings::check_base_url(&decoded.service_url)
            .map_err(|e| Error::InvalidConnectionData(format!("serviceUrl: {e}")))?;
        Ok(Connection {
            base_url,
            credential: Credential::Exchange(TokenSource::new(basic)),
            data: Some(data.to_owned()),
        })
    }

    /// Whether calls carry a credential at all.
    pub(crate) fn authenticates(&self) -> bool {
        !matches!(self.credential, Credential::None)
    }
}

/// A connector credential and the token last issued for it.
pub(crate) struct TokenSource {
    /// `Authorization: Basic` of the client id and secret (RFC 6749 §2.3.1).
    pub(crate) basic: HeaderValue,
    /// The current token, read without waiting.
    current: Mutex<Option<Token>>,
    /// Held while a token is fetched: one exchange at a time per credential.
    pub(crate) renewing: tokio::sync::Mutex<()>,
}

/// A token issued for a connector credential.
#[derive(Clone)]
pub(crate) struct Token {
    /// `Bearer …`, marked sensitive.
    pub(crate) value: HeaderValue,
    /// When it expires (by the local clock, from `expires_in`).
    pub(crate) expires: Instant,
    /// When its renewal last failed, if it did.
    pub(crate) renewal_failed: Option<Instant>,
}

impl Token {
    /// Whether it is good for a call without renewal: more than [`TOKEN_RENEW_BEFORE`] left.
    pub(crate) fn fresh(&self, now: Instant) -> bool {
        now + TOKEN_RENEW_BEFORE < self.expires
    }

    /// Whether it may still be sent when its renewal can't be had: more than
    /// [`TOKEN_LAST_USE`] left.
    pub(crate) fn usable(&self, now: Instant) -> bool {
        now + TOKEN_LAST_USE < self.expires
    }

    /// Whether a renewal may be tried now: none failed within [`RENEW_RETRY_AFTER`].
    pub(crate) fn may_renew(&self, now: Instant) -> bool {
        self.renewal_failed
            .is_none_or(|failed| now >= failed + RENEW_RETRY_AFTER)
    }
}

impl TokenSource {
    pub(crate) fn new(basic: HeaderValue) -> Self {
        Self {
            basic,
            current: Mutex::new(None),
            renewing: tokio::sync::Mutex::new(()),
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Token>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current token, if any.
    pub(crate) fn current(&self) -> Option<Token> {
        self.slot().clone()
    }

    /// Keeps a token issued now for `lifetime`.
    pub(crate) fn store(&self, value: HeaderValue, lifetime: Duration) {
        *self.slot() = Some(Token {
            value,
            expires: Instant::now() + lifetime,
            renewal_failed: None,
        });
    }

    /// Notes that renewing the current token failed just now.
    pub(crate) fn renewal_failed(&self) {
        if let Some(token) = self.slot().as_mut() {
            token.renewal_failed = Some(Instant::now());
        }
    }

    /// Drops the current token if it is `refused` (a token fetched meanwhile by another call
    /// is kept).
    pub(crate) fn forget(&self, refused: &HeaderValue) {
        let mut slot = self.slot();
        if slot.as_ref().is_some_and(|t| t.value == *refused) {
            *slot = None;
        }
    }

    /// Sets the current token (tests).
    #[cfg(test)]
    pub(crate) fn set(&self, token: Option<Token>) {
        *self.slot() = token;
    }
}

/// Decodes a connectionData string: the standard base64 of the JSON
/// [`ConnectionData`], at most 4096 bytes. Whitespace around it (a trailing newline) is
/// ignored. The error never quotes a secret.
///
/// ```
/// use contextd_client::decode_connection_data;
///
/// let err = decode_connection_data("not base64!").unwrap_err();
/// assert_eq!(err.kind(), "invalidConnectionData");
/// ```
pub fn decode_connection_data(data: &str) -> Result<ConnectionData> {
    let data = data.trim();
    if data.is_empty() {
        return Err(Error::InvalidConnectionData("it is empty".into()));
    }
    if data.len() > MAX_CONNECTION_DATA_BYTES {
        return Err(Error::InvalidConnectionData(format!(
            "it is {} bytes long; at most {MAX_CONNECTION_DATA_BYTES} are allowed",
            data.len()
        )));
    }
    let json = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| Error::InvalidConnectionData(format!("it is not standard base64 ({e})")))?;
    let decoded: ConnectionData = serde_json::from_slice(&json).map_err(|e| {
        Error::InvalidConnectionData(format!(
            "it does not hold the expected JSON object (serviceUrl, orgId, credentials, credentialsLabMode): {e}"
        ))
    })?;
    for (name, creds) in [
        ("credentials", &decoded.credentials),
        ("credentialsLabMode", &decoded.credentials_lab_mode),
    ] {
        if creds.client_id.trim().is_empty() || creds.client_secret.trim().is_empty() {
            return Err(Error::InvalidConnectionData(format!(
                "{name} has an empty clientId or clientSecret"
            )));
        }
    }
    Ok(decoded)
}

/// The `Authorization: Basic` header of a credential set, as the token endpoint takes it
/// (RFC 6749 §2.3.1: the id and secret form-urlencoded, joined by `:`, base64).
pub(crate) fn basic_from(credentials: &Credentials) -> Result<reqwest::header::HeaderValue> {
    let (id, secret) = (
        credentials.client_id.trim(),
        credentials.client_secret.trim(),
    );
    if id.is_empty() || secret.is_empty() {
        return Err(Error::InvalidConnectionData(
            "the clientId or clientSecret is empty".into(),
        ));
    }
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(id), encode(secret));
    let mut value = reqwest::header::HeaderValue::from_str(&format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    ))
    .map_err(|_| Error::InvalidConnectionData("the credential can't be sent in a header".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use contextd_proto::OrgId;

    fn sample() -> ConnectionData {
        ConnectionData {
            service_url: "https://context.example.com".into(),
            org_id: OrgId::new(),
            credentials: Credentials {
                client_id: "prod-id".into(),
                client_secret: "prod-secret".into(),
            },
            credentials_lab_mode: Credentials {
                client_id: "lab-id".into(),
                client_secret: "lab-secret".into(),
            },
        }
    }

    fn encode(json: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(json)
    }

    #[test]
    fn decodes_a_valid_string() {
        let data = sample();
        let text = encode(&serde_json::to_vec(&data).unwrap());
        assert_eq!(decode_connection_data(&text).unwrap(), data);
        assert_eq!(decode_connection_data(&format!("{text}\n")).unwrap(), data);
        let basic = |c: &Credentials| basic_from(c).unwrap().to_str().unwrap().to_owned();
        assert_eq!(
            basic(&data.credentials),
            format!("Basic {}", encode(b"prod-id:prod-secret"))
        );
        assert_eq!(
            basic(&data.credentials_lab_mode),
            format!("Basic {}", encode(b"lab-id:lab-secret"))
        );
    }

    #[test]
    fn refuses_what_is_not_base64() {
        let e = decode_connection_data("this is *not* base64").unwrap_err();
        assert!(
            matches!(e, Error::InvalidConnectionData(ref m) if m.contains("base64")),
            "{e}"
        );
        let e = decode_connection_data("   ").unwrap_err();
        assert_eq!(e.kind(), "invalidConnectionData");
    }

    #[test]
    fn refuses_more_than_4096_bytes() {
        let e = decode_connection_data(&"A".repeat(4100)).unwrap_err();
        assert!(
            matches!(e, Error::InvalidConnectionData(ref m) if m.contains("4096")),
            "{e}"
        );
    }

    #[test]
    fn refuses_missing_fields_without_quoting_secrets() {
        let text = encode(
            br#"{"serviceUrl":"https://x","orgId":"0190b5a6-0000-7000-8000-000000000000","credentials":{"clientId":"a","clientSecret":"top-secret"}}"#,
        );
        let e = decode_connection_data(&text).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("credentialsLabMode"), "{msg}");
        assert!(!msg.contains("top-secret"), "{msg}");

        let mut data = sample();
        data.credentials_lab_mode.client_secret = String::new();
        let text = encode(&serde_json::to_vec(&data).unwrap());
        let e = decode_connection_data(&text).unwrap_err();
        assert!(e.to_string().contains("credentialsLabMode"), "{e}");

        let e = decode_connection_data(&encode(b"[1,2,3]")).unwrap_err();
        assert_eq!(e.kind(), "invalidConnectionData");
    }
}
