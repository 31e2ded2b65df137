//! Review caches: bounded, with a TTL chosen per answer, and coalesced misses.
//!
//! Both stages cache the same way. Positive and negative answers live for different
//! times (a valid token for minutes, a rejected one for seconds), so a moka `Expiry`
//! picks the TTL from the cached value. Misses go through `try_get_with`, which runs
//! one review per key no matter how many requests are waiting on it, and never caches
//! an error — so an apiserver outage is not remembered after it ends.
//!
//! With `--stale-if-error`, every *positive* answer is also kept in a second cache for
//! its TTL plus the stale window. When a review fails, a stale allow found there is
//! reused (and reported as such); a negative answer removes it, so a revoked grant is
//! never revived. Negatives are never extended, errors never cached.
//!
//! Keys are 32-byte digests: an HMAC of the token (a raw token is never a key), or a
//! SHA-256 of the user and attributes. Fixed-size keys keep memory per entry flat.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use moka::{future::Cache, Expiry};
use ring::{digest, hmac, rand::SystemRandom};

/// A cache key: HMAC-SHA256 or SHA-256 output.
pub type Key = [u8; 32];

/// A cached answer, positive (authenticated, allowed) or negative.
pub trait Verdict: Clone + Send + Sync + 'static {
    fn is_positive(&self) -> bool;
}

/// A bounded cache of review answers with separate positive and negative TTLs.
pub struct Verdicts<V> {
    inner: Cache<Key, V>,
    stale: Option<Cache<Key, V>>,
}

/// How an answer was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// From the cache, or from a review another request was already waiting on.
    Cached,
    /// From a review this call ran.
    Reviewed,
    /// The review failed; a positive answer younger than TTL + stale window was reused.
    Stale,
}

struct TtlByVerdict {
    positive: Duration,
    negative: Duration,
}

impl<V: Verdict> Expiry<Key, V> for TtlByVerdict {
    fn expire_after_create(
        &self,
        _key: &Key,
        value: &V,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(if value.is_positive() {
            self.positive
        } else {
            self.negative
        })
    }
}

impl<V: Verdict> Verdicts<V> {
    /// A cache of at most `capacity` entries.
    pub fn new(capacity: u64, positive: Duration, negative: Duration) -> Self {
        let inner = Cache::builder()
            .max_capacity(capacity)
            .expire_after(TtlByVerdict { positive, negative })
            .build();
        Self { inner, stale: None }
    }

    /// Keeps positive answers for `window` past their TTL, for use when reviews fail.
    pub fn with_stale_window(
        mut self,
        capacity: u64,
        positive: Duration,
        window: Duration,
    ) -> Self {
        if !window.is_zero() {
            self.stale = Some(
                Cache::builder()
                    .max_capacity(capacity)
                    .time_to_live(positive.saturating_add(window))
                    .build(),
            );
        }
        self
    }

    /// The cached answer for `key`, or the result of `review`, run once for all
    /// concurrent callers. Errors are returned to every waiter and not cached — unless
    /// a stale positive answer may stand in (see `with_stale_window`).
    pub async fn get_or_review<E, F>(&self, key: Key, review: F) -> Result<(V, Served), Arc<E>>
    where
        F: Future<Output = Result<V, E>>,
        E: Send + Sync + 'static,
    {
        let ran = AtomicBool::new(false);
        let answer = self
            .inner
            .try_get_with(key, async {
                ran.store(true, Ordering::Relaxed);
                review.await
            })
            .await;
        let ran = ran.load(Ordering::Relaxed);
        match (answer, &self.stale) {
            (Ok(value), Some(stale)) if ran => {
                if value.is_positive() {
                    stale.insert(key, value.clone()).await;
                } else {
                    stale.invalidate(&key).await;
                }
                Ok((value, Served::Reviewed))
            }
            (Ok(value), _) => Ok((
                value,
                if ran {
                    Served::Reviewed
                } else {
                    Served::Cached
                },
            )),
            (Err(error), Some(stale)) => match stale.get(&key).await {
                Some(value) => Ok((value, Served::Stale)),
                None => Err(error),
            },
            (Err(error), None) => Err(error),
        }
    }

    /// Entries currently held (approximate, as moka counts lazily).
    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }
}

/// Turns bearer tokens into cache keys without keeping them: HMAC-SHA256 under a key
/// drawn at startup, so keys mean nothing outside this process.
pub struct TokenHasher {
    key: hmac::Key,
}

impl TokenHasher {
    /// A hasher with a fresh random key.
    pub fn random() -> Result<Self, ring::error::Unspecified> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())?;
        Ok(Self { key })
    }

    /// The cache key for a token.
    pub fn key(&self, token: &[u8]) -> Key {
        to_key(hmac::sign(&self.key, token).as_ref())
    }
}

/// A SHA-256 over length-prefixed fields, so ("ab","c") and ("a","bc") differ.
pub fn digest_fields<'a>(fields: impl IntoIterator<Item = &'a [u8]>) -> Key {
    let mut context = digest::Context::new(&digest::SHA256);
    for field in fields {
        context.update(&(field.len() as u64).to_le_bytes());
        context.update(field);
    }
    to_key(context.finish().as_ref())
}

fn to_key(bytes: &[u8]) -> Key {
    let mut key = [0u8; 32];
    key.copy_from_slice(&bytes[..32]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Clone, Debug, PartialEq)]
    struct Answer(bool);
    impl Verdict for Answer {
        fn is_positive(&self) -> bool {
            self.0
        }
    }

    #[test]
    fn token_keys_are_keyed_and_stable() {
        let hasher = TokenHasher::random().unwrap();
        assert_eq!(hasher.key(b"token"), hasher.key(b"token"));
        assert_ne!(hasher.key(b"token"), hasher.key(b"token2"));
        let other = TokenHasher::random().unwrap();
        assert_ne!(hasher.key(b"token"), other.key(b"token"), "per-process key");
        let plain = digest::digest(&digest::SHA256, b"token");
        assert_ne!(hasher.key(b"token").as_slice(), plain.as_ref());
    }

    #[test]
    fn field_digests_are_unambiguous() {
        let a = digest_fields([b"ab".as_slice(), b"c"]);
        let b = digest_fields([b"a".as_slice(), b"bc"]);
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn ttl_follows_the_verdict() {
        let cache = Verdicts::new(10, Duration::from_secs(60), Duration::from_millis(50));
        let calls = AtomicUsize::new(0);
        let review = |answer: bool| {
            let calls = &calls;
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(Answer(answer))
            }
        };
        cache.get_or_review([1; 32], review(true)).await.unwrap();
        cache.get_or_review([2; 32], review(false)).await.unwrap();
        let (_, served) = cache.get_or_review([1; 32], review(true)).await.unwrap();
        assert_eq!(served, Served::Cached);
        tokio::time::sleep(Duration::from_millis(120)).await;
        cache.get_or_review([1; 32], review(true)).await.unwrap();
        cache.get_or_review([2; 32], review(false)).await.unwrap();
        // The negative entry expired and was reviewed again; the positive one did not.
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn errors_are_not_cached_and_misses_coalesce() {
        let cache = Verdicts::<Answer>::new(10, Duration::from_secs(60), Duration::from_secs(60));
        let failed = cache
            .get_or_review([3; 32], async { Err::<Answer, _>("down") })
            .await;
        assert!(failed.is_err());

        let calls = Arc::new(AtomicUsize::new(0));
        let waiters = (0..50).map(|_| {
            let calls = Arc::clone(&calls);
            cache.get_or_review([3; 32], async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, ()>(Answer(true))
            })
        });
        for answer in futures_util::future::join_all(waiters).await {
            assert_eq!(answer.unwrap().0, Answer(true));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn stale_allows_stand_in_for_errors_but_denies_and_unknowns_never_do() {
        let ttl = Duration::from_millis(50);
        let cache = Verdicts::<Answer>::new(10, ttl, ttl).with_stale_window(
            10,
            ttl,
            Duration::from_secs(60),
        );
        let ok = |a: bool| async move { Ok::<_, &str>(Answer(a)) };
        let down = || async { Err::<Answer, _>("down") };

        cache.get_or_review([1; 32], ok(true)).await.unwrap();
        tokio::time::sleep(ttl * 2).await;
        let (answer, served) = cache.get_or_review([1; 32], down()).await.unwrap();
        assert_eq!((answer, served), (Answer(true), Served::Stale));

        // A later deny removes the stale allow: a revoked grant is never revived.
        tokio::time::sleep(ttl * 2).await;
        cache.get_or_review([1; 32], ok(false)).await.unwrap();
        tokio::time::sleep(ttl * 2).await;
        assert!(cache.get_or_review([1; 32], down()).await.is_err());

        // Never-seen keys and denies are not extended.
        assert!(cache.get_or_review([2; 32], down()).await.is_err());
        cache.get_or_review([3; 32], ok(false)).await.unwrap();
        tokio::time::sleep(ttl * 2).await;
        assert!(cache.get_or_review([3; 32], down()).await.is_err());
    }
}
