//! An organization's settings: the origins of the host agent desktops allowed to frame the
//! agent desktop (`/desktop?embed=1`). Admins of either partition read and change them (the
//! desktop serves both); every change is audited. The server puts the origins of every
//! organization into the desktop's `frame-ancestors` policy, since the page is served before
//! anyone signs in.

use contextd_proto::system::{EmbeddingSettings, MAX_EMBED_ORIGINS};
use url::Url;

use super::*;

/// The setting's name in the store.
const EMBEDDING: &str = "embedding";
/// Longest origin accepted, in characters.
const MAX_ORIGIN_CHARS: usize = 300;

impl Context {
    /// The origins allowed to frame the desktop (admin).
    pub async fn embedding(&self, actor: &Principal) -> Result<EmbeddingSettings, CoreError> {
        actor.require(&[Role::Admin])?;
        self.embedding_of(actor.scope.org).await
    }

    /// Replaces the origins allowed to frame the desktop (admin; audited). Each is normalized
    /// to `scheme://host[:port]`; duplicates are dropped.
    pub async fn set_embedding(
        &self,
        actor: &Principal,
        settings: EmbeddingSettings,
    ) -> Result<EmbeddingSettings, CoreError> {
        actor.require(&[Role::Admin])?;
        let settings = EmbeddingSettings {
            allowed_origins: normalize_origins(&settings.allowed_origins)?,
        };
        let value = serde_json::to_string(&settings)
            .map_err(|_| CoreError::Store(StoreError::corrupt("embedding setting")))?;
        self.store
            .put_org_setting(actor.scope.org, EMBEDDING, &value, now_ms())
            .await?;
        self.audit_action(
            Some(actor),
            actor.scope,
            "settings.embedding",
            None,
            vec![],
            format!("allowedOrigins={}", settings.allowed_origins.join(" ")),
        )
        .await?;
        Ok(settings)
    }

    /// Every organization's allowed origins, sorted, without duplicates: what the desktop's
    /// `frame-ancestors` lists.
    pub async fn all_embed_origins(&self) -> Result<Vec<String>, CoreError> {
        let mut all = BTreeSet::new();
        for (org, value) in self.store.org_settings_named(EMBEDDING).await? {
            match serde_json::from_str::<EmbeddingSettings>(&value) {
                // Checked again: the list goes into a header every organization's page gets.
                Ok(s) => all.extend(
                    s.allowed_origins
                        .iter()
                        .filter_map(|o| normalize_origin(o).ok()),
                ),
                Err(e) => tracing::warn!(%org, error = %e, "unreadable embedding setting ignored"),
            }
        }
        Ok(all.into_iter().collect())
    }

    /// The caller's organization's allowed origins (any role): the only hosts whose
    /// `postMessage` the signed-in desktop obeys.
    pub async fn own_embed_origins(&self, actor: &Principal) -> Result<Vec<String>, CoreError> {
        Ok(self.embedding_of(actor.scope.org).await?.allowed_origins)
    }

    async fn embedding_of(&self, org: OrgId) -> Result<EmbeddingSettings, CoreError> {
        match self.store.org_setting(org, EMBEDDING).await? {
            Some(value) => serde_json::from_str(&value)
                .map_err(|_| CoreError::Store(StoreError::corrupt("embedding setting"))),
            None => Ok(EmbeddingSettings::default()),
        }
    }
}

/// Checks and normalizes a list of origins, or says which entry is wrong and why.
fn normalize_origins(origins: &[String]) -> Result<Vec<String>, CoreError> {
    if origins.len() > MAX_EMBED_ORIGINS {
        return Err(CoreError::field(
            "allowedOrigins",
            format!("at most {MAX_EMBED_ORIGINS} origins"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(origins.len());
    for (i, origin) in origins.iter().enumerate() {
        let normalized = normalize_origin(origin)
            .map_err(|why| CoreError::field(format!("allowedOrigins[{i}]"), why))?;
        if !out.contains(&normalized) {
            out.push(normalized);
        }
    }
    Ok(out)
}

/// `scheme://host[:port]` of an http or https origin with nothing after it.
fn normalize_origin(origin: &str) -> Result<String, String> {
    let origin = origin.trim();
    if origin.chars().count() > MAX_ORIGIN_CHARS {
        return Err(format!("longer than {MAX_ORIGIN_CHARS} characters"));
    }
    let quoted = truncate(origin, 60);
    let url = Url::parse(origin)
        .map_err(|_| format!("'{quoted}' is not an origin like https://desk.example.com"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("'{quoted}' is not an http or https origin"));
    }
    let bare = url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none()
        && !origin.trim_end_matches('/').ends_with('?');
    if !bare {
        return Err(format!("'{quoted}' has more than scheme, host and port"));
    }
    // URL hosts may hold `;`, `*`, `'` or `,`, which mean something in a policy header.
    let plain_host = match url.host() {
        Some(url::Host::Domain(d)) => d
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'),
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => true,
        None => false,
    };
    if !plain_host {
        return Err(format!(
            "'{quoted}' has a host name with characters no host name has"
        ));
    }
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalized_and_checked() {
        assert_eq!(
            normalize_origin(" HTTPS://Desk.Example.com:443/ ").as_deref(),
            Ok("https://desk.example.com")
        );
        assert_eq!(
            normalize_origin("http://127.0.0.1:9000").as_deref(),
            Ok("http://127.0.0.1:9000")
        );
        for bad in [
            "desk.example.com",
            "ftp://desk.example.com",
            "https://desk.example.com/path",
            "https://desk.example.com?q=1",
            "https://user@desk.example.com",
            "javascript:alert(1)",
            "https://a.example; script-src *",
            "https://a.example;sandbox",
            "https://a%3Bb.example",
            "https://*",
            "https://a.example,https://b.example",
            "https://'self'",
            "*",
        ] {
            assert!(normalize_origin(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn duplicates_are_dropped_and_the_count_is_bounded() {
        let two = vec![
            "https://a.example".to_owned(),
            "https://A.example/".to_owned(),
        ];
        assert_eq!(normalize_origins(&two).map(|v| v.len()).ok(), Some(1));
        let many = vec!["https://a.example".to_owned(); MAX_EMBED_ORIGINS + 1];
        assert!(normalize_origins(&many).is_err());
    }
}
