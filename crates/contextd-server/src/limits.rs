//! Abuse limits: per-credential rate limiting, sign-in throttling, header size and JSON depth.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use crate::ServerConfig;

/// The limiters of one server.
pub struct Limits {
    per_credential: Option<DefaultKeyedRateLimiter<Uuid>>,
    sign_in: Option<DefaultKeyedRateLimiter<String>>,
    /// Largest total size of request headers, bytes.
    pub header_bytes: usize,
    /// Deepest JSON nesting accepted.
    pub json_depth: usize,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
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
            header_bytes: config.header_limit,
            json_depth: config.json_depth_limit,
        }
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

    /// Counts one sign-in attempt for an account.
    pub fn sign_in(&self, account: &str) -> Result<(), TooMany> {
        Self::check(&self.sign_in, &account.to_owned())
    }
}

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
