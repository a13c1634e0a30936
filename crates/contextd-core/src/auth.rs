//! Principals, roles and API-key tokens.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::error::CoreError;
use crate::ids::Scope;
use crate::object::{Contributor, ContributorType};

pub use contextd_proto::access::Role;

/// How the principal authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A bearer API key.
    ApiKey,
    /// A signed-in person.
    User,
}

/// An authenticated caller, bound to one org and one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Key or user id.
    pub id: Uuid,
    /// Org and partition every operation is confined to.
    pub scope: Scope,
    /// Role.
    pub role: Role,
    /// Key or user.
    pub kind: PrincipalKind,
    /// A partner holding an unexpired, unrevoked grant (resolved at authentication).
    pub granted: bool,
}

impl Principal {
    /// The contributor entry this principal adds to objects it writes.
    pub fn contributor(&self) -> Contributor {
        let kind = match (self.kind, self.role) {
            (PrincipalKind::User, _) | (PrincipalKind::ApiKey, Role::Agent) => {
                ContributorType::User
            }
            _ => ContributorType::Machine,
        };
        Contributor {
            id: self.id.to_string(),
            kind,
        }
    }

    /// Whether ENCRYPTED and PII values are shown to (and searchable by) this principal.
    pub fn sees_sealed(&self) -> bool {
        self.role != Role::Partner || self.granted
    }

    /// Refuses unless the principal has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), CoreError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(CoreError::Forbidden(format!(
                "the {} role may not do this",
                self.role
            )))
        }
    }
}

const TOKEN_PREFIX: &str = "ctxd_";

/// A freshly minted API-key token (shown once) with what is stored of it.
pub struct NewToken {
    /// The whole bearer token.
    pub token: SecretString,
    /// The key id embedded in it.
    pub id: Uuid,
    /// SHA-256 of the secret part.
    pub secret_hash: [u8; 32],
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("id", &self.id)
            .field("token", &"[redacted]")
            .finish()
    }
}

/// Mints a token `ctxd_<key id>_<256-bit secret>`.
pub fn mint_token() -> NewToken {
    let id = Uuid::now_v7();
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let secret_text = URL_SAFE_NO_PAD.encode(secret);
    let secret_hash = hash_secret(&secret_text);
    NewToken {
        token: SecretString::from(format!("{TOKEN_PREFIX}{}_{secret_text}", id.simple())),
        id,
        secret_hash,
    }
}

/// 256 random bits, URL-safe base64 (session secrets, CSRF tokens).
pub fn random_secret() -> String {
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    URL_SAFE_NO_PAD.encode(secret)
}

/// Splits a presented token into its key id and secret part, or refuses it.
pub fn parse_token(token: &str) -> Result<(Uuid, &str), CoreError> {
    let bad = || CoreError::Unauthorized("malformed bearer token".into());
    let rest = token.strip_prefix(TOKEN_PREFIX).ok_or_else(bad)?;
    let (id, secret) = rest.split_once('_').ok_or_else(bad)?;
    let id = Uuid::try_parse(id).map_err(|_| bad())?;
    if secret.is_empty() || secret.len() > 128 {
        return Err(bad());
    }
    Ok((id, secret))
}

/// SHA-256 of a token's secret part (tokens carry 256 bits of entropy, so a fast hash suffices).
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The CSRF token of a web session: derived from the session's secret, so that a page reloaded
/// after sign-in can be given it again (`GET /v1/sessions/current` with the cookie) while a
/// site that can't read the HttpOnly cookie can't compute it.
pub fn csrf_token(session_secret: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"contextd session csrf v1\0");
    hash.update(session_secret.as_bytes());
    URL_SAFE_NO_PAD.encode(hash.finalize())
}

/// Compares a presented secret with a stored hash in constant time.
pub fn secret_matches(secret: &str, stored: &[u8; 32]) -> bool {
    hash_secret(secret).ct_eq(stored).into()
}

/// Exposes a token for printing once to its owner.
pub fn reveal(token: &SecretString) -> &str {
    token.expose_secret()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_verify() {
        let t = mint_token();
        let (id, secret) = parse_token(reveal(&t.token)).ok().unwrap_or_default();
        assert_eq!(id, t.id);
        assert!(secret_matches(secret, &t.secret_hash));
        assert!(!secret_matches("other", &t.secret_hash));
        assert!(parse_token("Bearer nonsense").is_err());
        assert!(parse_token("ctxd_zz_abc").is_err());
        assert!(!format!("{t:?}").contains(secret));
    }
}
