//! API keys and sign-in sessions kept in memory between requests, for stores with a feed of
//! credential changes ([`CredentialStore::credential_changes`]).
//!
//! Every entry carries the stamp it was read under: the feed's epoch and this instance's
//! own change counter, both taken *before* the read. An entry answers only while the feed is
//! live and neither has moved since, so any change committed anywhere (even during the read
//! that filled the entry) empties the cache as a whole. Changes are rare (an admin revokes a
//! key, disables a user, a user signs out); reads are every request.
//!
//! What is cached is the stored record, not a verdict: the secret, expiry and revocation
//! are checked against it on every request as before. Partners are never cached (their
//! grants expire on their own), and nothing is cached while the feed is down.
//!
//! [`CredentialStore::credential_changes`]: crate::store::CredentialStore::credential_changes

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use quick_cache::sync::Cache;
use tokio::sync::watch;
use uuid::Uuid;

use crate::auth::Role;
use crate::store::{ApiKeyRecord, CredentialEpoch, SessionRecord};

/// Most API keys, and most sessions, kept.
const ENTRIES: usize = 10_000;
/// How long a change waits for its own notification to come back through the feed, so that
/// the other instances (notified in the same pass) have most likely heard it too.
const ECHO_WAIT: Duration = Duration::from_secs(1);

/// When an entry was read: the feed's epoch and the local change count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    feed: u64,
    local: u64,
}

/// The cache; inert (every lookup a miss, nothing kept) without a feed.
pub(crate) struct CredentialCache {
    feed: Option<watch::Receiver<CredentialEpoch>>,
    local: AtomicU64,
    keys: Cache<Uuid, (Stamp, ApiKeyRecord)>,
    sessions: Cache<[u8; 32], (Stamp, SessionRecord, Role)>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl CredentialCache {
    /// A cache following `feed`; `None` keeps nothing.
    pub(crate) fn new(feed: Option<watch::Receiver<CredentialEpoch>>) -> Self {
        Self {
            feed,
            local: AtomicU64::new(0),
            keys: Cache::new(ENTRIES),
            sessions: Cache::new(ENTRIES),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The stamp a read made now would carry; `None` when nothing may be cached.
    pub(crate) fn stamp(&self) -> Option<Stamp> {
        let feed = self.feed.as_ref()?.borrow();
        feed.live.then(|| Stamp {
            feed: feed.epoch,
            local: self.local.load(Ordering::Acquire),
        })
    }

    /// The API key `id`, if it was read under the current stamp.
    pub(crate) fn key(&self, id: Uuid) -> Option<ApiKeyRecord> {
        let now = self.stamp()?;
        let hit = self.keys.get(&id).filter(|(at, _)| *at == now);
        self.count(hit.is_some());
        hit.map(|(_, k)| k)
    }

    /// Keeps an API key read under `at`, unless it is a partner's.
    pub(crate) fn keep_key(&self, at: Option<Stamp>, key: &ApiKeyRecord) {
        if let Some(at) = at.filter(|_| key.role != Role::Partner) {
            self.keys.insert(key.id, (at, key.clone()));
        }
    }

    /// The session of `secret_hash` and its user's role, if read under the current stamp.
    pub(crate) fn session(&self, secret_hash: &[u8; 32]) -> Option<(SessionRecord, Role)> {
        let now = self.stamp()?;
        let hit = self.sessions.get(secret_hash).filter(|(at, ..)| *at == now);
        self.count(hit.is_some());
        hit.map(|(_, s, role)| (s, role))
    }

    /// Keeps a session and its user's role read under `at`, unless the role is partner.
    pub(crate) fn keep_session(&self, at: Option<Stamp>, session: &SessionRecord, role: Role) {
        if let Some(at) = at.filter(|_| role != Role::Partner) {
            self.sessions
                .insert(session.secret_hash, (at, session.clone(), role));
        }
    }

    /// Forgets everything after a credential change made through this instance, and, when the
    /// change committed (`committed`), waits (at most [`ECHO_WAIT`]) for the feed to bring the
    /// change's own notification back: then the other instances have most likely heard it
    /// too before the caller is answered. `before` is [`CredentialCache::stamp`] taken before
    /// the change.
    pub(crate) async fn changed(&self, before: Option<Stamp>, committed: bool) {
        self.local.fetch_add(1, Ordering::AcqRel);
        let (Some(feed), Some(before), true) = (&self.feed, before, committed) else {
            return;
        };
        let mut feed = feed.clone();
        let echoed = feed.wait_for(|e| e.epoch != before.feed || !e.live);
        if tokio::time::timeout(ECHO_WAIT, echoed).await.is_err() {
            tracing::warn!("a credential change was not echoed by the database in time");
        }
    }

    /// Lookups answered from memory, and lookups that had to read (while a feed exists).
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    fn count(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{OrgId, Partition, Scope};

    fn key(role: Role) -> ApiKeyRecord {
        ApiKeyRecord {
            id: Uuid::new_v4(),
            scope: Scope {
                org: OrgId::new(),
                partition: Partition::Lab,
            },
            name: "k".into(),
            role,
            secret_hash: [7; 32],
            created: crate::time::from_millis(0),
            expires_at: None,
            revoked_at: None,
            connector: None,
        }
    }

    #[tokio::test]
    async fn entries_answer_only_under_the_stamp_they_were_read_under() {
        let (tx, rx) = watch::channel(CredentialEpoch::default());
        let cache = CredentialCache::new(Some(rx));
        let agent = key(Role::Agent);

        // Not live: nothing kept, nothing answered.
        cache.keep_key(cache.stamp(), &agent);
        assert_eq!(cache.key(agent.id), None);

        tx.send_replace(CredentialEpoch {
            epoch: 1,
            live: true,
        });
        let read_at = cache.stamp();
        cache.keep_key(read_at, &agent);
        assert_eq!(cache.key(agent.id), Some(agent.clone()));

        // A change elsewhere (the feed moves) empties it, also for entries read before.
        tx.send_replace(CredentialEpoch {
            epoch: 2,
            live: true,
        });
        assert_eq!(cache.key(agent.id), None);
        cache.keep_key(read_at, &agent);
        assert_eq!(cache.key(agent.id), None, "read before the change: stale");

        // A change here empties it without waiting for the feed.
        cache.keep_key(cache.stamp(), &agent);
        assert!(cache.key(agent.id).is_some());
        cache.changed(None, false).await;
        assert_eq!(cache.key(agent.id), None);

        // The feed going down stops answers at once.
        cache.keep_key(cache.stamp(), &agent);
        tx.send_modify(|e| e.live = false);
        assert_eq!(cache.key(agent.id), None);

        // Partners are never kept.
        tx.send_replace(CredentialEpoch {
            epoch: 3,
            live: true,
        });
        let partner = key(Role::Partner);
        cache.keep_key(cache.stamp(), &partner);
        assert_eq!(cache.key(partner.id), None);
        assert!(cache.counts().0 >= 2, "hits are counted");
    }

    #[tokio::test]
    async fn a_committed_change_waits_for_its_echo_and_no_longer() {
        let (tx, rx) = watch::channel(CredentialEpoch {
            epoch: 5,
            live: true,
        });
        let cache = CredentialCache::new(Some(rx));
        let before = cache.stamp();
        let echo = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            tx.send_replace(CredentialEpoch {
                epoch: 6,
                live: true,
            });
            tx
        });
        let started = std::time::Instant::now();
        cache.changed(before, true).await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(40),
            "waited for the echo: {waited:?}"
        );
        assert!(waited < ECHO_WAIT, "and no longer: {waited:?}");
        drop(echo.await);
    }

    #[test]
    fn without_a_feed_nothing_is_kept() {
        let cache = CredentialCache::new(None);
        let agent = key(Role::Agent);
        cache.keep_key(cache.stamp(), &agent);
        assert_eq!(cache.key(agent.id), None);
        assert_eq!(cache.counts(), (0, 0), "no feed: not even misses count");
    }
}
