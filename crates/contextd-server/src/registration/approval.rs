//! The approval token an approval form carries: `base64url(issued-at ms) "." base64url(tag)`,
//! the tag an HMAC-SHA-256 over (issued-at, user, flow, callbackUrl, appType or clientId)
//! keyed by the session's secret. Only the session that was shown the page can present it,
//! only for what the page showed, and only until it expires.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use super::flow::Flow;

type HmacSha256 = Hmac<Sha256>;

/// How far in the future an issue time may lie (clocks of several instances differ a little).
const CLOCK_SKEW_MS: i64 = 60_000;

/// The tag over one approval. NUL separates the parts: none of them can contain it.
fn mac(session_secret: &str, user: Uuid, flow: &Flow, issued_ms: i64) -> HmacSha256 {
    // HMAC takes keys of any length: `new_from_slice` can't fail.
    let mut mac = HmacSha256::new_from_slice(session_secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(b"contextd registration approval v1\0");
    mac.update(&issued_ms.to_be_bytes());
    mac.update(user.as_bytes());
    mac.update(flow.kind().as_str().as_bytes());
    for (name, value) in flow.params() {
        mac.update(b"\0");
        mac.update(name.as_bytes());
        mac.update(b"=");
        mac.update(value.as_bytes());
    }
    mac
}

/// A token approving `flow` for the session `session_secret` of `user`, issued at `now_ms`.
pub fn issue(session_secret: &str, user: Uuid, flow: &Flow, now_ms: i64) -> String {
    let tag = mac(session_secret, user, flow, now_ms)
        .finalize()
        .into_bytes();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(now_ms.to_be_bytes()),
        URL_SAFE_NO_PAD.encode(tag)
    )
}

/// Whether `token` approves `flow` for this session and user and is younger than `ttl`. The
/// tag is compared in constant time.
pub fn verify(
    token: &str,
    session_secret: &str,
    user: Uuid,
    flow: &Flow,
    now_ms: i64,
    ttl: Duration,
) -> bool {
    let Some((issued, tag)) = token.split_once('.') else {
        return false;
    };
    let issued: Option<[u8; 8]> = URL_SAFE_NO_PAD
        .decode(issued)
        .ok()
        .and_then(|b| b.try_into().ok());
    let (Some(issued), Ok(tag)) = (issued, URL_SAFE_NO_PAD.decode(tag)) else {
        return false;
    };
    let issued_ms = i64::from_be_bytes(issued);
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let age = now_ms.saturating_sub(issued_ms);
    let fresh = age <= ttl_ms && age >= -CLOCK_SKEW_MS;
    let genuine = mac(session_secret, user, flow, issued_ms)
        .verify_slice(&tag)
        .is_ok();
    genuine && fresh
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::flow::{Kind, Params};

    fn flow(query: &str) -> Flow {
        let kind = if query.contains("clientId") {
            Kind::Deregister
        } else {
            Kind::Register
        };
        Flow::parse(kind, &Params::parse(query.as_bytes())).unwrap_or_else(|e| panic!("{e:?}"))
    }

    const TTL: Duration = Duration::from_secs(600);

    #[test]
    fn a_token_approves_only_its_session_user_flow_and_time() {
        let user = Uuid::now_v7();
        let f = flow("callbackUrl=https%3A%2F%2Fc.example%2Fcb&appType=voice");
        let token = issue("secret-a", user, &f, 1_000_000);
        assert!(verify(&token, "secret-a", user, &f, 1_000_000, TTL));
        assert!(verify(&token, "secret-a", user, &f, 1_600_000, TTL));
        assert!(
            !verify(&token, "secret-a", user, &f, 1_600_001, TTL),
            "expired"
        );
        assert!(
            !verify(&token, "secret-b", user, &f, 1_000_000, TTL),
            "other session"
        );
        assert!(!verify(
            &token,
            "secret-a",
            Uuid::now_v7(),
            &f,
            1_000_000,
            TTL
        ));
        let other = flow("callbackUrl=https%3A%2F%2Fevil.example%2Fcb&appType=voice");
        assert!(!verify(&token, "secret-a", user, &other, 1_000_000, TTL));
        let chat = flow("callbackUrl=https%3A%2F%2Fc.example%2Fcb&appType=chat");
        assert!(!verify(&token, "secret-a", user, &chat, 1_000_000, TTL));
        assert!(
            !verify(&token, "secret-a", user, &f, 1_000_000 - 60_001, TTL),
            "future"
        );
    }

    #[test]
    fn a_register_token_is_no_deregister_token_and_garbage_is_refused() {
        let user = Uuid::now_v7();
        let reg = flow("callbackUrl=https%3A%2F%2Fc.example%2F&appType=custom");
        let id = Uuid::now_v7();
        let dereg = flow(&format!(
            "callbackUrl=https%3A%2F%2Fc.example%2F&clientId={id}"
        ));
        let token = issue("s", user, &reg, 5);
        assert!(!verify(&token, "s", user, &dereg, 5, TTL));
        for bad in ["", ".", "abc", "AAAAAAAAAAA.", "x.y.z", &token[1..]] {
            assert!(!verify(bad, "s", user, &reg, 5, TTL), "{bad}");
        }
        // The issue time can't be moved: it is under the tag.
        let (_, tag) = token.split_once('.').unwrap_or_default();
        let moved = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(6_i64.to_be_bytes()));
        assert!(!verify(&moved, "s", user, &reg, 6, TTL));
    }
}
