//! The bounded cache of verified tokens: a repeated bearer token costs no signature check.
//! Keyed by the token's SHA-256 (the token itself is never stored); entries expire at `exp`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use super::jwt::{unix_now, JwtError, KeySet, Verified, Verifier};

const CACHE_SHARDS: usize = 64;

type Entries = HashMap<[u8; 32], Arc<Verified>>;

/// One shard: readers load the map without a lock; a writer (a newly verified token, after a
/// signature check) publishes a changed copy (read-copy-update; a racing writer retries).
#[derive(Default)]
struct Shard {
    entries: ArcSwap<Entries>,
}

/// A bounded cache of verified tokens, keyed by the SHA-256 of the token (the token itself is
/// never stored), each entry expiring at the token's `exp`.
///
/// Sharded 64 ways by hash. A lookup (every authenticated request) takes no lock: it loads the
/// shard's current map from an `ArcSwap`. An insert (only after a signature check, which costs
/// far more) copies the shard's map (a few hundred entries), changes it and publishes it with a
/// compare-and-swap (read-copy-update: a writer that raced another retries on the newer map).
/// When a shard is full, an insert first drops its expired
/// entries, then an arbitrary entry if still full; expired entries are otherwise ignored by
/// lookups and dropped by the next insert into their shard.
///
/// Entries are only as valid as the [`Verifier`] that produced them: use one cache per verifier
/// (a config reload that changes issuers or audiences needs a fresh cache).
///
/// Key rotation: an entry remembers the [`KeySet::epoch`] it was verified under, and
/// [`Verifier::verify_cached`] verifies again any token from an older epoch, so a token signed by
/// a key the provider retired stops working at the refresh that drops the key.
pub struct TokenCache {
    shards: Vec<Shard>,
    per_shard: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("capacity", &self.capacity())
            .field("hits", &self.hits())
            .field("misses", &self.misses())
            .finish()
    }
}

impl TokenCache {
    /// A cache holding about `capacity` tokens (rounded up to a multiple of 64; 0 disables it).
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..CACHE_SHARDS).map(|_| Shard::default()).collect(),
            per_shard: capacity.div_ceil(CACHE_SHARDS),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    fn shard(&self, key: &[u8; 32]) -> Option<&Shard> {
        self.shards.get(usize::from(key[0]) % CACHE_SHARDS)
    }

    /// The cached verification of `token`, if present and not expired at `now`. Lock-free.
    pub fn get_at(&self, token: &str, now: u64) -> Option<Arc<Verified>> {
        if self.per_shard == 0 {
            return None;
        }
        let key = Self::key(token);
        let found = self.shard(&key).and_then(|shard| {
            shard
                .entries
                .load()
                .get(&key)
                .filter(|v| v.exp > now)
                .cloned()
        });
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The cached verification of `token`, if present and not expired.
    pub fn get(&self, token: &str) -> Option<Arc<Verified>> {
        self.get_at(token, unix_now())
    }

    /// Remembers a verified token until its `exp`.
    pub fn insert(&self, token: &str, verified: Arc<Verified>) {
        self.insert_at(token, verified, unix_now());
    }

    fn insert_at(&self, token: &str, verified: Arc<Verified>, now: u64) {
        if self.per_shard == 0 || verified.exp <= now {
            return;
        }
        let key = Self::key(token);
        let Some(shard) = self.shard(&key) else {
            return;
        };
        shard.entries.rcu(|current| {
            let mut next: Entries = Entries::clone(current);
            next.retain(|_, v| v.exp > now);
            if next.len() >= self.per_shard && !next.contains_key(&key) {
                if let Some(victim) = next.keys().next().copied() {
                    next.remove(&victim);
                }
            }
            next.insert(key, Arc::clone(&verified));
            next
        });
    }

    /// Drops every entry.
    pub fn clear(&self) {
        for shard in &self.shards {
            shard.entries.store(Arc::default());
        }
    }

    /// Entries currently held (including expired ones not yet dropped).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.entries.load().len()).sum()
    }

    /// How many entries it holds at most (the capacity asked for, rounded up per shard).
    pub fn capacity(&self) -> usize {
        self.per_shard * CACHE_SHARDS
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lookups answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups that found nothing (or an expired entry).
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

impl Verifier {
    /// [`Verifier::verify`] through `cache`: a token seen before (and not expired) is answered
    /// from the cache without a signature check; a newly verified token is cached.
    pub fn verify_cached(
        &self,
        token: &str,
        keys: &KeySet,
        cache: &TokenCache,
    ) -> Result<Arc<Verified>, JwtError> {
        let now = unix_now();
        // A token verified before a refresh retired a key is verified again: the key that
        // signed it may be the one retired.
        if let Some(hit) = cache
            .get_at(token, now)
            .filter(|hit| hit.epoch == keys.epoch())
        {
            return Ok(hit);
        }
        let verified = Arc::new(self.verify_at(token, keys, now)?);
        cache.insert_at(token, Arc::clone(&verified), now);
        Ok(verified)
    }
}
