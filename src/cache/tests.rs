use super::*;
use std::sync::atomic::Ordering;

pub(super) fn settings(
    capacity: u64,
    positive: Duration,
    negative: Duration,
    stale: Duration,
) -> CacheSettings {
    CacheSettings {
        capacity,
        positive,
        negative,
        stale,
    }
}
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Answer(pub(super) bool);
impl Verdict for Answer {
    fn is_positive(&self) -> bool {
        self.0
    }
}

/// The tests' failures are the apiserver's, except `NotSent`.
impl ReviewFailure for () {
    fn apiserver_failed(&self) -> bool {
        true
    }
}

impl ReviewFailure for &str {
    fn apiserver_failed(&self) -> bool {
        *self != NOT_SENT
    }
}

const NOT_SENT: &str = "not sent";

#[tokio::test]
async fn ttl_follows_the_verdict() {
    let cache = Verdicts::<Answer, ()>::new(settings(
        10,
        Duration::from_secs(60),
        Duration::from_millis(50),
        Duration::ZERO,
    ));
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
    let cache = Verdicts::<Answer, &str>::new(settings(
        10,
        Duration::from_secs(60),
        Duration::from_secs(60),
        Duration::ZERO,
    ));
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
            Ok::<_, &str>(Answer(true))
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
    let cache = Verdicts::<Answer, &str>::new(settings(10, ttl, ttl, Duration::from_secs(60)));
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

/// A review the proxy never sent (the rate limit, a client's cap) says nothing
/// about the apiserver: no stale allow stands in for it.
#[tokio::test]
async fn a_review_not_sent_never_revives_a_stale_allow() {
    let ttl = Duration::from_millis(50);
    let cache = Verdicts::<Answer, &str>::new(settings(10, ttl, ttl, Duration::from_secs(60)));
    cache
        .get_or_review([1; 32], async { Ok::<_, &str>(Answer(true)) })
        .await
        .unwrap();
    tokio::time::sleep(ttl * 2).await;
    let refused = cache
        .get_or_review([1; 32], async { Err::<Answer, _>(NOT_SENT) })
        .await;
    assert_eq!(refused.map(|(a, _)| a).map_err(|e| *e), Err(NOT_SENT));
    let (answer, served) = cache
        .get_or_review([1; 32], async { Err::<Answer, _>("down") })
        .await
        .unwrap();
    assert_eq!(
        (answer, served),
        (Answer(true), Served::Stale),
        "an outage still may"
    );
}

#[tokio::test]
async fn errors_reach_every_waiter_once() {
    let cache = Verdicts::<Answer, &str>::new(settings(
        10,
        Duration::from_secs(60),
        Duration::from_secs(60),
        Duration::ZERO,
    ));
    let calls = Arc::new(AtomicUsize::new(0));
    let waiters = (0..20).map(|_| {
        let calls = Arc::clone(&calls);
        cache.get_or_review([4; 32], async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Err::<Answer, _>("down")
        })
    });
    for answer in futures_util::future::join_all(waiters).await {
        assert_eq!(*answer.unwrap_err(), "down");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one review, shared failure"
    );
    assert_eq!(cache.entry_count(), 0, "errors are not stored");
}

#[tokio::test]
async fn a_waiter_takes_over_when_the_reviewer_goes_away() {
    let cache = Arc::new(Verdicts::<Answer, &str>::new(settings(
        10,
        Duration::from_secs(60),
        Duration::from_secs(60),
        Duration::ZERO,
    )));
    let reviewer = {
        let cache = Arc::clone(&cache);
        tokio::spawn(async move {
            cache
                .get_or_review([5; 32], async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(Answer(false))
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let waiter = {
        let cache = Arc::clone(&cache);
        tokio::spawn(async move {
            cache
                .get_or_review([5; 32], async { Ok(Answer(true)) })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    reviewer.abort();
    let (answer, served) = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiter is not stranded")
        .unwrap()
        .unwrap();
    assert_eq!((answer, served), (Answer(true), Served::Reviewed));
}

#[tokio::test]
async fn capacity_bounds_the_entries() {
    let cache = Verdicts::<Answer, ()>::new(settings(
        100,
        Duration::from_secs(60),
        Duration::ZERO,
        Duration::ZERO,
    ));
    for i in 0..1000u32 {
        let mut key = [0; 32];
        key[..4].copy_from_slice(&i.to_le_bytes());
        cache
            .get_or_review(key, async { Ok(Answer(true)) })
            .await
            .unwrap();
    }
    assert!(cache.entry_count() <= 100, "{}", cache.entry_count());
    // Zero TTL: negatives are not stored at all.
    cache
        .get_or_review([9; 32], async { Ok(Answer(false)) })
        .await
        .unwrap();
    let (_, served) = cache
        .get_or_review([9; 32], async { Ok(Answer(false)) })
        .await
        .unwrap();
    assert_eq!(served, Served::Reviewed);
}
