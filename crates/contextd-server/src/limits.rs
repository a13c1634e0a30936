//! Abuse limits: per-credential rate limiting, sign-in throttling and the bound on concurrent
//! password checks, header size and JSON depth.

use std::num::NonZeroU32;
use std::time::Duration;

use contextd_core::Partition;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, SemaphorePermit};
use uuid::Uuid;

use crate::ServerConfig;

/// The limiters of one server.
pub struct Limits {
    per_credential: Option<DefaultKeyedRateLimiter<Uuid>>,
    /// Keyed by a SHA-256 of the account: 32 bytes a key, whatever name a client sends.
    sign_in: Option<DefaultKeyedRateLimiter<[u8; 32]>>,
    /// Permits for password checks (Argon2id, ~19 MiB and tens of ms each).
    password_checks: Semaphore,
    /// Largest total size of request headers, bytes.
    pub header_bytes: usize,
    /// Deepest JSON nesting accepted.
    pub json_depth: usize,
    /// Largest body of a batch (`POST /v1/{kind}/batch`), bytes.
    pub batch_body_bytes: usize,
    /// Permits for batches, taken before a batch's body is read: memory stays bounded by
    /// [`BATCHES_AT_ONCE`] × `batch_body_bytes` however many clients send batches.
    batches: Semaphore,
}

/// Batches handled at once; more wait for a permit before their bodies are read.
pub const BATCHES_AT_ONCE: usize = 4;

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("password_checks", &self.password_checks.available_permits())
            .field("header_bytes", &self.header_bytes)
            .field("json_depth", &self.json_depth)
            .finish()
    }
}

/// A refusal by a rate limiter: how long to wait.
pub struct TooMany(Duration);

impl TooMany {
    /// Whole seconds to wait, at least 1 (the `Retry-After` value).
    pub fn seconds(&self) -> u64 {
        (self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0)).max(1)
    }
}

impl Limits {
    /// Limiters from the server settings (a rate of 0 turns that limiter off).
    pub fn new(config: &ServerConfig) -> Self {
        let per_credential = NonZeroU32::new(config.rate_limit_per_second).map(|rate| {
            let burst = NonZeroU32::new(config.rate_limit_burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        let sign_in = NonZeroU32::new(config.sign_in_per_minute)
            .map(|rate| RateLimiter::keyed(Quota::per_minute(rate)));
        Self {
            per_credential,
            sign_in,
            password_checks: Semaphore::new(config.sign_in_concurrency.max(1)),
            header_bytes: config.header_limit,
            json_depth: config.json_depth_limit,
            batch_body_bytes: config.batch_body_limit,
            batches: Semaphore::new(BATCHES_AT_ONCE),
        }
    }

    /// A permit to read and run one batch (waits for one to be free).
    pub async fn batch(&self) -> Option<SemaphorePermit<'_>> {
        self.batches.acquire().await.ok()
    }

    fn check<K: Clone + std::hash::Hash + Eq>(
        limiter: &Option<DefaultKeyedRateLimiter<K>>,
        key: &K,
    ) -> Result<(), TooMany> {
        match limiter {
            Some(l) => l.check_key(key).map_err(|not_until| {
                TooMany(not_until.wait_time_from(DefaultClock::default().now()))
            }),
            None => Ok(()),
        }
    }

    /// Counts one request of a credential.
    pub fn credential(&self, id: Uuid) -> Result<(), TooMany> {
        Self::check(&self.per_credential, &id)
    }

    /// Counts one sign-in attempt for an account (the name case-insensitively).
    pub fn sign_in(&self, org: &str, partition: Partition, name: &str) -> Result<(), TooMany> {
        let mut account = Sha256::new();
        // NUL separates the parts: it can't occur in a name that signs in.
        for part in [org, partition.as_str(), &name.to_lowercase()] {
            account.update(part.as_bytes());
            account.update([0]);
        }
        Self::check(&self.sign_in, &account.finalize().into())
    }

    /// A permit to run one password check, waiting at most [`PASSWORD_CHECK_WAIT`] for one to
    /// be free; else a refusal (429) rather than a queue that grows with the attackers.
    pub async fn password_check(&self) -> Result<SemaphorePermit<'_>, TooMany> {
        match tokio::time::timeout(PASSWORD_CHECK_WAIT, self.password_checks.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(TooMany(Duration::from_secs(1))),
        }
    }

    /// Forgets keys whose limit is back at full capacity (they act as if never seen), so the
    /// limiters' memory follows recent traffic rather than everything ever sent.
    pub fn prune(&self) {
        if let Some(l) = &self.per_credential {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.sign_in {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// Accounts the sign-in limiter currently tracks.
    pub fn sign_in_keys(&self) -> usize {
        self.sign_in.as_ref().map_or(0, |l| l.len())
    }
}

/// Longest a sign-in waits for a free password check before it is refused with 429.
pub const PASSWORD_CHECK_WAIT: Duration = Duration::from_secs(1);

/// How often [`Limits::prune`] runs: the sign-in quota is per minute, so a key idle this long
/// is back at full capacity.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Nesting depth of a JSON text (brackets outside strings); stops counting past `max`.
pub fn json_depth_exceeds(bytes: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use contextd_core::Partition;

    use super::Limits;
    use crate::ServerConfig;

    #[test]
    fn sign_in_keys_are_hashed_case_insensitive_and_pruned() {
        // 60,000 a minute: a key is back at full capacity 1 ms after its attempt.
        let limits = Limits::new(&ServerConfig {
            sign_in_per_minute: 60_000,
            ..ServerConfig::default()
        });
        let long = "x".repeat(10_000);
        for i in 0..1_000 {
            assert!(limits
                .sign_in("default", Partition::Lab, &format!("{long}{i}"))
                .is_ok());
        }
        assert_eq!(limits.sign_in_keys(), 1_000);
        std::thread::sleep(std::time::Duration::from_millis(20));
        limits.prune();
        assert_eq!(limits.sign_in_keys(), 0, "idle keys are forgotten");

        let strict = Limits::new(&ServerConfig {
            sign_in_per_minute: 1,
            ..ServerConfig::default()
        });
        assert!(strict.sign_in("acme", Partition::Lab, "Ada").is_ok());
        assert!(strict.sign_in("acme", Partition::Lab, "ADA").is_err());
        assert!(strict.sign_in("acme", Partition::Production, "ada").is_ok());
        assert!(strict.sign_in("acme2", Partition::Lab, "ada").is_ok());
        strict.prune();
        assert_eq!(strict.sign_in_keys(), 3, "throttled keys are kept");
    }

    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert!(!super::json_depth_exceeds(
            br#"{"a": [1, {"b": "[[[[[["}]}"#,
            3
        ));
        assert!(super::json_depth_exceeds(br#"[[[[1]]]]"#, 3));
        assert!(!super::json_depth_exceeds(br#"{"a": "\"[[[["}"#, 1));
    }
}
