//! Refresh-ahead: renewing an answer in use before it expires.
//!
//! A positive answer read past half its TTL comes back as `Served::Ageing`, and the
//! caller (which holds what the review needs: the token, or the user and attributes)
//! may claim its renewal and run it in the background while the answer keeps serving.
//! So an identity in use never expires into a miss that queues behind other clients'
//! reviews. A renewal is listed among the reviews under way like a miss's: one per
//! key, and a miss after expiry waits for it. Its answer replaces the entry, a
//! negative one too (a revoked token or grant is dropped early, not late); an error
//! leaves the entry to expire as it would have. At most `MAX_RENEWALS` are under way
//! per cache; past that an ageing entry is used until a later read renews it or it
//! expires. The cost: up to one more review per identity in use per TTL.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use tokio::sync::watch;

use super::{lock, Key, Pending, PendingEntry, ReviewFailure, Sender, Verdict, Verdicts};

/// Renewals under way at once, per cache.
const MAX_RENEWALS: usize = 64;

/// The right to renew one entry ahead of its expiry: its place among the reviews under
/// way (one per key), and among the renewals under way (`MAX_RENEWALS`).
pub(crate) struct Renewal<V, E> {
    key: Key,
    sender: Sender<V, E>,
    pending: Pending<V, E>,
    renewing: Arc<AtomicUsize>,
}

impl<V, E> Drop for Renewal<V, E> {
    fn drop(&mut self) {
        self.renewing.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<V: Verdict, E: ReviewFailure + Send + Sync + 'static> Verdicts<V, E> {
    /// The right to renew `key`'s answer now (after `Served::Ageing`), unless a review
    /// for it is under way or `MAX_RENEWALS` are.
    pub(crate) fn claim_renewal(&self, key: Key) -> Option<Renewal<V, E>> {
        let mut reviews = lock(&self.reviews);
        if reviews
            .get(&key)
            .is_some_and(|pending| pending.has_changed().is_ok())
        {
            return None;
        }
        if self.renewing.fetch_add(1, Ordering::Relaxed) >= MAX_RENEWALS {
            self.renewing.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let (sender, pending) = watch::channel(None);
        reviews.insert(key, pending.clone());
        Some(Renewal {
            key,
            sender,
            pending,
            renewing: Arc::clone(&self.renewing),
        })
    }

    /// Runs a claimed renewal: its answer replaces the entry (and reaches any miss that
    /// waited for it); an error leaves the entry as it was.
    pub(crate) async fn renew<F>(&self, renewal: Renewal<V, E>, review: F)
    where
        F: Future<Output = Result<V, E>>,
    {
        let _entry = PendingEntry {
            reviews: &self.reviews,
            key: renewal.key,
            pending: renewal.pending.clone(),
        };
        let answer = review.await.map_err(Arc::new);
        if let Ok(value) = &answer {
            self.remember(renewal.key, value);
        }
        renewal.sender.send_replace(Some(answer));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{
        tests::{settings, Answer},
        Served,
    };
    use super::*;

    /// The cache reads the real clock: long enough against a noisy machine's pauses.
    const TTL: Duration = Duration::from_secs(1);
    const PAST_HALF: Duration = Duration::from_millis(550);

    fn cache() -> Verdicts<Answer, &'static str> {
        Verdicts::new(settings(10, TTL, TTL, Duration::ZERO))
    }

    async fn read(cache: &Verdicts<Answer, &'static str>) -> (Answer, Served) {
        let miss = async { Err::<Answer, _>("a miss was not expected") };
        cache.get_or_review([1; 32], miss).await.unwrap()
    }

    #[tokio::test]
    async fn an_allow_past_half_its_ttl_is_renewed_once_and_stays_fresh() {
        let cache = cache();
        let ok = |a: bool| async move { Ok::<_, &str>(Answer(a)) };
        cache.get_or_review([1; 32], ok(true)).await.unwrap();
        assert_eq!(read(&cache).await.1, Served::Cached);
        tokio::time::sleep(PAST_HALF).await;
        assert_eq!(read(&cache).await, (Answer(true), Served::Ageing));

        let renewal = cache.claim_renewal([1; 32]).expect("the first claim");
        assert!(
            cache.claim_renewal([1; 32]).is_none(),
            "one renewal per key"
        );
        cache.renew(renewal, ok(true)).await;
        assert_eq!(read(&cache).await.1, Served::Cached, "fresh again");
        tokio::time::sleep(Duration::from_millis(750)).await;
        assert_eq!(
            read(&cache).await,
            (Answer(true), Served::Ageing),
            "past the first TTL, still served: the renewal's"
        );
        assert_eq!(cache.renewing.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_renewal_that_says_no_ends_the_allow_and_an_error_changes_nothing() {
        let cache = cache();
        cache
            .get_or_review([1; 32], async { Ok::<_, &str>(Answer(true)) })
            .await
            .unwrap();
        tokio::time::sleep(PAST_HALF).await;
        let renewal = cache.claim_renewal([1; 32]).unwrap();
        cache.renew(renewal, async { Err("down") }).await;
        assert_eq!(read(&cache).await, (Answer(true), Served::Ageing));
        let renewal = cache.claim_renewal([1; 32]).expect("claimable again");
        cache.renew(renewal, async { Ok(Answer(false)) }).await;
        assert_eq!(
            read(&cache).await,
            (Answer(false), Served::Cached),
            "revoked"
        );
    }

    #[test]
    fn renewals_under_way_are_capped() {
        let cache = cache();
        let claims: Vec<_> = (0..=MAX_RENEWALS)
            .filter_map(|i| cache.claim_renewal([i as u8; 32]))
            .collect();
        assert_eq!(claims.len(), MAX_RENEWALS);
        drop(claims);
        assert!(
            cache.claim_renewal([0; 32]).is_some(),
            "a dropped claim frees its place"
        );
    }
}
