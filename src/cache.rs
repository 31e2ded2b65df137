//! Review caches: bounded, with a TTL chosen per answer, and coalesced misses.
//!
//! Both stages cache the same way. Positive and negative answers live for different
//! times (a valid token for minutes, a rejected one for seconds), so every entry carries
//! its own deadline, picked from the answer. Concurrent misses for one key share one
//! review: the first caller runs it, the others wait for its answer — including an
//! error, which is handed to every waiter and never stored, so an apiserver outage is
//! not remembered after it ends. If the caller running the review goes away (its client
//! disconnected), a waiter takes over.
//!
//! With `--stale-if-error`, a *positive* entry is kept for its TTL plus the stale
//! window. When a review fails, a stale allow found there is reused (and reported as
//! such); a negative answer overwrites it, so a revoked grant is never revived.
//! Negatives are never extended, errors never cached. Only the apiserver's own
//! failures let a stale allow stand in (`ReviewFailure`): a review the proxy refused
//! to send for lack of budget is no sign of an outage, and under a junk flood it would
//! keep a revoked token or grant alive for the whole stale window.
//!
//! Refresh-ahead (`renewal.rs`): a positive answer read past half its TTL is
//! `Served::Ageing`, and the caller may renew it in the background while it serves.
//!
//! Keys are 32-byte digests: an HMAC of the token (a raw token is never a key), or a
//! SHA-256 of the user and attributes. Fixed-size keys keep memory per entry flat.
//!
//! The store is `quick_cache` (S3-FIFO eviction, entries inline in sharded tables):
//! about 120 bytes per entry against moka's ~420, which is what lets 65,536 cached
//! identities — two entries each — fit the memory target (see `benches/RESULTS.md`).
//! Expired entries are not swept; they stay until overwritten or evicted, so memory is
//! bounded by the capacity, not by the TTL.

mod interner;
mod keys;
mod renewal;

use std::{
    collections::HashMap,
    future::Future,
    sync::{atomic::AtomicUsize, Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use tokio::sync::watch;

pub(crate) use self::{
    interner::Interner,
    keys::{digest_fields, Key, TokenHasher},
};

/// Whether a failed review may be answered from a stale allow.
pub(crate) trait ReviewFailure {
    /// True for the apiserver's own failures (errors, timeouts); false for a review
    /// that was never sent.
    fn apiserver_failed(&self) -> bool;
}

/// A cached answer, positive (authenticated, allowed) or negative.
pub(crate) trait Verdict: Clone + Send + Sync + 'static {
    fn is_positive(&self) -> bool;
}

/// How a review cache is bounded and how long its answers live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Entries at most (`--cache-max-entries`).
    pub capacity: u64,
    /// How long a positive answer (authenticated, allowed) is reused.
    pub positive: Duration,
    /// How long a negative answer (rejected, denied) is reused.
    pub negative: Duration,
    /// `--stale-if-error`: how long past its TTL a positive answer may stand in when
    /// the review fails. Zero: never.
    pub stale: Duration,
}

impl CacheSettings {
    /// For a process that asks one question and exits (`scrape-guard can-i`): nothing
    /// is worth keeping.
    pub fn one_shot() -> Self {
        Self {
            capacity: 16,
            positive: Duration::ZERO,
            negative: Duration::ZERO,
            stale: Duration::ZERO,
        }
    }
}

/// A bounded cache of review answers with separate positive and negative TTLs.
pub(crate) struct Verdicts<V, E> {
    store: quick_cache::sync::Cache<Key, Entry<V>>,
    /// Reviews under way, by key: a miss for one of these waits for its answer.
    reviews: Mutex<HashMap<Key, Pending<V, E>>>,
    positive: Duration,
    negative: Duration,
    stale: Duration,
    /// Renewals under way, at most `MAX_RENEWALS`.
    renewing: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct Entry<V> {
    value: V,
    fresh_until: Instant,
    /// Past `fresh_until` only for positive answers under `--stale-if-error`.
    usable_until: Instant,
}

/// A review under way: its answer, once there is one.
type Pending<V, E> = watch::Receiver<Option<Result<V, Arc<E>>>>;
/// Where a review's answer is sent.
type Sender<V, E> = watch::Sender<Option<Result<V, Arc<E>>>>;

/// How an answer was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Served {
    /// From the cache, or from a review another request was already waiting on.
    Cached,
    /// From the cache, a positive answer past half its TTL: worth renewing now.
    Ageing,
    /// From a review this call ran.
    Reviewed,
    /// The review failed; a positive answer younger than TTL + stale window was reused.
    Stale,
}

/// What a miss does: run the review (none is under way for the key), or wait for the
/// one that is.
enum OnMiss<V, E> {
    Review(Sender<V, E>, Pending<V, E>),
    Wait(Pending<V, E>),
}

/// A review's entry in `reviews`, removed when its reviewer finishes or is dropped
/// mid-review, so waiters either see the answer or, seeing the sender gone, take over.
struct PendingEntry<'a, V, E> {
    reviews: &'a Mutex<HashMap<Key, Pending<V, E>>>,
    key: Key,
    pending: Pending<V, E>,
}

impl<V, E> Drop for PendingEntry<'_, V, E> {
    fn drop(&mut self) {
        let mut reviews = lock(self.reviews);
        // Only our own: a successor may already have replaced it.
        if reviews
            .get(&self.key)
            .is_some_and(|pending| pending.same_channel(&self.pending))
        {
            reviews.remove(&self.key);
        }
    }
}

/// The map is only touched in short, non-panicking sections; a poisoned lock still
/// holds a consistent map.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<V: Verdict, E: ReviewFailure + Send + Sync + 'static> Verdicts<V, E> {
    /// A cache bounded and timed by `settings`.
    pub(crate) fn new(settings: CacheSettings) -> Self {
        let CacheSettings {
            capacity,
            positive,
            negative,
            stale,
        } = settings;
        // Start small and grow: an idle proxy should not pay for a full cache.
        let estimated = usize::try_from(capacity.min(1024)).unwrap_or(1024);
        let store = quick_cache::sync::Cache::with(
            estimated,
            capacity,
            Default::default(),
            Default::default(),
            Default::default(),
        );
        Self {
            store,
            reviews: Mutex::default(),
            positive,
            negative,
            stale,
            renewing: Arc::default(),
        }
    }

    /// The cached answer for `key`, or the result of `review`, run once for all
    /// concurrent callers. Errors are returned to every waiter and not cached — unless
    /// a stale positive answer may stand in (`CacheSettings::stale`).
    pub(crate) async fn get_or_review<F>(&self, key: Key, review: F) -> Result<(V, Served), Arc<E>>
    where
        F: Future<Output = Result<V, E>>,
    {
        if let Some(entry) = self.store.get(&key) {
            let now = Instant::now();
            if now < entry.fresh_until {
                let ageing =
                    entry.value.is_positive() && now + self.positive / 2 >= entry.fresh_until;
                let served = if ageing {
                    Served::Ageing
                } else {
                    Served::Cached
                };
                return Ok((entry.value, served));
            }
        }
        let mut review = std::pin::pin!(review);
        let (answer, served) = loop {
            match self.on_miss(key) {
                OnMiss::Wait(mut pending) => {
                    // `Err`: the reviewer was dropped without an answer; try again.
                    if let Ok(answer) = pending.wait_for(Option::is_some).await {
                        if let Some(answer) = answer.clone() {
                            break (answer, Served::Cached);
                        }
                    }
                }
                OnMiss::Review(sender, pending) => {
                    let _entry = PendingEntry {
                        reviews: &self.reviews,
                        key,
                        pending,
                    };
                    // Polled here only: a call reviews at most once, then returns.
                    let answer = review.as_mut().await.map_err(Arc::new);
                    if let Ok(value) = &answer {
                        self.remember(key, value);
                    }
                    sender.send_replace(Some(answer.clone()));
                    break (answer, Served::Reviewed);
                }
            }
        };
        match answer {
            Ok(value) => Ok((value, served)),
            Err(error) if !error.apiserver_failed() => Err(error),
            Err(error) => match self.store.get(&key) {
                Some(entry) if entry.value.is_positive() && Instant::now() < entry.usable_until => {
                    Ok((entry.value, Served::Stale))
                }
                _ => Err(error),
            },
        }
    }

    /// Joins the review under way for `key`, or starts one.
    fn on_miss(&self, key: Key) -> OnMiss<V, E> {
        let mut reviews = lock(&self.reviews);
        match reviews.get(&key) {
            Some(pending) if pending.has_changed().is_ok() => OnMiss::Wait(pending.clone()),
            _ => {
                let (sender, pending) = watch::channel(None);
                reviews.insert(key, pending.clone());
                OnMiss::Review(sender, pending)
            }
        }
    }

    /// Stores a fresh answer. A negative one replaces any stale allow for the key.
    fn remember(&self, key: Key, value: &V) {
        let now = Instant::now();
        let (ttl, keep) = if value.is_positive() {
            (self.positive, self.positive.saturating_add(self.stale))
        } else {
            (self.negative, self.negative)
        };
        if keep.is_zero() {
            self.store.remove(&key);
            return;
        }
        let entry = Entry {
            value: value.clone(),
            fresh_until: now + ttl,
            usable_until: now + keep,
        };
        self.store.insert(key, entry);
    }

    /// Entries currently held, expired ones included until they are evicted.
    pub(crate) fn entry_count(&self) -> u64 {
        self.store.len() as u64
    }
}

#[cfg(test)]
mod tests;
