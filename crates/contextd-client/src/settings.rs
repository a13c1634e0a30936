//! Client settings (README, "Rust SDK"): a profile with its timeout range, the timeout, a proxy, lab
//! mode, the number of attempts an idempotent operation gets and a CA file to trust.

use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Attempts an idempotent operation gets by default (the first try included).
const DEFAULT_ATTEMPTS: u32 = 3;

/// A set of timeout rules: how long a caller can afford to wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Agent desktops, back-office systems, scripts: timeout 200–15000 ms, default 1200 ms
    /// (the original service's default).
    #[default]
    Standard,
    /// IVR and voice applications, where the caller is on the line: timeout 1200–5000 ms,
    /// default 2400 ms.
    Voice,
}

impl Profile {
    /// The timeout used when none is set.
    ///
    /// ```
    /// use std::time::Duration;
    /// use contextd_client::Profile;
    ///
    /// assert_eq!(Profile::Voice.default_timeout(), Duration::from_millis(2400));
    /// ```
    pub fn default_timeout(self) -> Duration {
        match self {
            Profile::Standard => Duration::from_millis(1200),
            Profile::Voice => Duration::from_millis(2400),
        }
    }

    /// The timeouts this profile accepts; others are clamped into it.
    pub fn timeout_range(self) -> RangeInclusive<Duration> {
        match self {
            Profile::Standard => Duration::from_millis(200)..=Duration::from_millis(15_000),
            Profile::Voice => Duration::from_millis(1200)..=Duration::from_millis(5000),
        }
    }

    /// The lowercase name (`standard`, `voice`).
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Standard => "standard",
            Profile::Voice => "voice",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a [`Client`](crate::Client) behaves: timeout, proxy, partition, retries, the
/// certificates it trusts.
///
/// The timeout is the budget of a whole operation, retries and backoff included. A timeout
/// outside the profile's range is clamped into it, with a warning in the log.
///
/// ```
/// use std::time::Duration;
/// use contextd_client::Settings;
///
/// let settings = Settings::voice()
///     .with_timeout(Duration::from_secs(30)) // clamped to 5 s, and logged
///     .with_lab_mode(true)
///     .with_retries(2);
/// assert_eq!(settings.timeout(), Duration::from_millis(5000));
/// assert!(settings.lab_mode());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    profile: Profile,
    timeout: Duration,
    proxy: Option<String>,
    lab_mode: bool,
    retries: u32,
    ca_file: Option<PathBuf>,
}

impl Settings {
    /// The standard profile: timeout 1200 ms (range 200–15000 ms), no proxy, production
    /// partition, 3 attempts.
    pub fn standard() -> Self {
        Self::for_profile(Profile::Standard)
    }

    /// The voice/IVR profile: timeout 2400 ms (range 1200–5000 ms), no proxy, production
    /// partition, 3 attempts.
    pub fn voice() -> Self {
        Self::for_profile(Profile::Voice)
    }

    /// The defaults of a profile.
    pub fn for_profile(profile: Profile) -> Self {
        Self {
            profile,
            timeout: profile.default_timeout(),
            proxy: None,
            lab_mode: false,
            retries: DEFAULT_ATTEMPTS,
            ca_file: None,
        }
    }

    /// Sets the timeout of one operation, retries included. A value outside the profile's
    /// range is clamped to the nearest bound and a warning names the value and the range.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = clamp_timeout(self.profile, timeout);
        self
    }

    /// Sends every request through this proxy (`http://proxy.example.com:3128`; credentials
    /// may be given in the URL and are never logged). Checked when the client is built.
    pub fn with_proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = Some(url.into());
        self
    }

    /// Selects the lab partition's credentials of a connectionData (see
    /// [`Client::from_connection_data`](crate::Client::from_connection_data)). A client
    /// built from a token works in the token's own partition whatever this says.
    pub fn with_lab_mode(mut self, lab: bool) -> Self {
        self.lab_mode = lab;
        self
    }

    /// Sets the most attempts an idempotent operation gets, the first try included (`1`
    /// turns retries off; `0` is read as `1`). Other operations are tried once.
    pub fn with_retries(mut self, attempts: u32) -> Self {
        self.retries = attempts.max(1);
        self
    }

    /// Also trusts the certificates of this PEM file (`-----BEGIN CERTIFICATE-----` blocks):
    /// the CA of a server whose certificate no public CA signed (a company CA, a self-signed
    /// test certificate). The public CAs stay trusted, and certificates are always verified:
    /// there is no setting that turns verification off. Read when the client is built; a
    /// file that can't be read or holds no certificate is [`Error::InvalidSettings`](crate::Error::InvalidSettings).
    ///
    /// ```no_run
    /// use contextd_client::{Client, Settings};
    ///
    /// let settings = Settings::standard().with_ca_file("/etc/contextd/ca.pem");
    /// let client = Client::new("https://contextd.internal:8443", "ctx_…", settings)?;
    /// # Ok::<(), contextd_client::Error>(())
    /// ```
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// The profile.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The timeout of one operation, retries and backoff included.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The proxy URL, if any.
    pub fn proxy(&self) -> Option<&str> {
        self.proxy.as_deref()
    }

    /// Whether a connectionData's lab credentials are used.
    pub fn lab_mode(&self) -> bool {
        self.lab_mode
    }

    /// The most attempts an idempotent operation gets (at least 1).
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The PEM file of extra trusted certificates, if any.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }
}

impl Default for Settings {
    /// [`Settings::standard`].
    fn default() -> Self {
        Self::standard()
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("profile", &self.profile)
            .field("timeout", &self.timeout)
            .field("proxy", &self.proxy.as_deref().map(redact_userinfo))
            .field("lab_mode", &self.lab_mode)
            .field("retries", &self.retries)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// `timeout` clamped into the profile's range, with a warning when it had to be.
fn clamp_timeout(profile: Profile, timeout: Duration) -> Duration {
    let range = profile.timeout_range();
    let clamped = timeout.clamp(*range.start(), *range.end());
    if clamped != timeout {
        tracing::warn!(
            requested_ms = timeout.as_millis() as u64,
            used_ms = clamped.as_millis() as u64,
            "client timeout {} ms is outside the {} profile's range {}–{} ms; using {} ms",
            timeout.as_millis(),
            profile,
            range.start().as_millis(),
            range.end().as_millis(),
            clamped.as_millis(),
        );
    }
    clamped
}

/// `base_url` checked (`http` or `https`, a host) and without its trailing `/`.
pub(crate) fn check_base_url(base_url: &str) -> std::result::Result<String, String> {
    let trimmed = base_url.trim().trim_end_matches('/');
    let url = url::Url::parse(trimmed).map_err(|e| {
        format!(
            "'{}' is not a URL ({e}); expected e.g. http://127.0.0.1:8080",
            crate::error::excerpt(&redact_userinfo(trimmed), 100)
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "'{}' is not an http:// or https:// URL with a host",
            crate::error::excerpt(&redact_userinfo(trimmed), 100)
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the base URL can't have a query or a fragment".into());
    }
    Ok(trimmed.to_owned())
}

/// A URL with any `user:password@` part replaced, for logs and `Debug`.
pub(crate) fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://[redacted]@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn defaults_follow_the_profile() {
        assert_eq!(Settings::default(), Settings::standard());
        assert_eq!(Settings::standard().timeout(), ms(1200));
        assert_eq!(Settings::voice().timeout(), ms(2400));
        assert_eq!(Settings::voice().profile(), Profile::Voice);
        let s = Settings::standard();
        assert_eq!(s.retries(), 3);
        assert!(!s.lab_mode());
        assert_eq!(s.proxy(), None);
        assert_eq!(s.ca_file(), None);
        let with_ca = Settings::standard().with_ca_file("/etc/ca.pem");
        assert_eq!(with_ca.ca_file(), Some(Path::new("/etc/ca.pem")));
    }

    #[test]
    fn standard_timeout_is_clamped_to_200_15000_ms() {
        let s = Settings::standard();
        assert_eq!(s.clone().with_timeout(ms(50)).timeout(), ms(200));
        assert_eq!(s.clone().with_timeout(ms(200)).timeout(), ms(200));
        assert_eq!(s.clone().with_timeout(ms(3000)).timeout(), ms(3000));
        assert_eq!(s.clone().with_timeout(ms(15_000)).timeout(), ms(15_000));
        assert_eq!(s.with_timeout(ms(60_000)).timeout(), ms(15_000));
    }

    #[test]
    fn voice_timeout_is_clamped_to_1200_5000_ms() {
        let s = Settings::voice();
        assert_eq!(s.clone().with_timeout(ms(200)).timeout(), ms(1200));
        assert_eq!(s.clone().with_timeout(ms(1199)).timeout(), ms(1200));
        assert_eq!(s.clone().with_timeout(ms(4000)).timeout(), ms(4000));
        assert_eq!(s.with_timeout(ms(5001)).timeout(), ms(5000));
    }

    #[test]
    fn zero_attempts_means_one() {
        assert_eq!(Settings::standard().with_retries(0).retries(), 1);
        assert_eq!(Settings::standard().with_retries(5).retries(), 5);
    }

    #[test]
    fn proxy_credentials_never_reach_debug() {
        let s = Settings::standard().with_proxy("http://alice:s3cret@proxy.example.com:3128/");
        assert_eq!(
            s.proxy(),
            Some("http://alice:s3cret@proxy.example.com:3128/")
        );
        let debug = format!("{s:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("proxy.example.com:3128"), "{debug}");
        assert_eq!(
            redact_userinfo("http://proxy:8080"),
            "http://proxy:8080".to_owned()
        );
    }
}
