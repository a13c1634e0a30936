//! Reading a connectionData string (README, "Rust SDK") and turning one of its credential sets into a
//! bearer token.

use base64::Engine as _;
use contextd_proto::connection::{ConnectionData, Credentials, MAX_CONNECTION_DATA_BYTES};

use crate::error::{Error, Result};

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
