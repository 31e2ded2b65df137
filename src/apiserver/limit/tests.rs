use super::*;

const QPS: f64 = 5.0;
const BURST: u32 = 10;
const BUDGET: Duration = Duration::from_secs(5);

fn budget() -> Instant {
    Instant::now() + BUDGET
}

#[tokio::test(start_paused = true)]
async fn token_bucket_allows_a_burst_then_paces() {
    let bucket = TokenBucket::new(QPS, BURST);
    let start = Instant::now();
    for _ in 0..10 {
        bucket.acquire(budget()).await.unwrap();
    }
    assert_eq!(start.elapsed(), Duration::ZERO, "the burst is free");
    for _ in 0..5 {
        bucket.acquire(budget()).await.unwrap();
    }
    let paced = start.elapsed().as_secs_f64();
    assert!(
        (paced - 1.0).abs() < 0.01,
        "5 more at 5 qps take 1s, took {paced}"
    );
}

/// The security review's case: many impatient clients, each giving up on its
/// review after 100 ms, for 8 s. Afterwards the bucket owes nobody anything.
#[tokio::test(start_paused = true)]
async fn a_flood_of_abandoned_waits_leaves_no_debt() {
    let bucket = std::sync::Arc::new(TokenBucket::new(QPS, BURST));
    let flood_ends = Instant::now() + Duration::from_secs(8);
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let bucket = std::sync::Arc::clone(&bucket);
            tokio::spawn(async move {
                let mut spent = 0u32;
                while Instant::now() < flood_ends {
                    let patience = Duration::from_millis(100);
                    if let Ok(Ok(())) =
                        tokio::time::timeout(patience, bucket.acquire(budget())).await
                    {
                        spent += 1;
                    }
                    // A refused client comes back after a short while, as a real one would.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                spent
            })
        })
        .collect();
    let mut spent = 0;
    for client in clients {
        spent += client.await.unwrap();
    }
    assert!(
        f64::from(spent) <= f64::from(BURST) + 8.0 * QPS + 1.0,
        "never more than the rate allows: {spent}"
    );
    let start = Instant::now();
    bucket.acquire(budget()).await.unwrap();
    let waited = start.elapsed();
    assert!(
        waited <= Duration::from_secs_f64(1.0 / QPS),
        "a fresh caller right after the flood waited {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_gives_its_token_back() {
    let bucket = TokenBucket::new(1.0, 1);
    bucket.acquire(budget()).await.unwrap();
    // Next token due in 1 s; this caller goes away after half of that.
    let gave_up = tokio::time::timeout(Duration::from_millis(500), bucket.acquire(budget()));
    assert!(gave_up.await.is_err());
    let start = Instant::now();
    bucket.acquire(budget()).await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(500),
        "the next caller gets the abandoned token when it falls due, not one later"
    );
}

#[tokio::test(start_paused = true)]
async fn a_wait_longer_than_the_budget_is_refused_without_charging() {
    let bucket = TokenBucket::new(1.0, 1);
    bucket.acquire(budget()).await.unwrap();
    let start = Instant::now();
    for _ in 0..100 {
        let short = Instant::now() + Duration::from_millis(500);
        assert_eq!(bucket.acquire(short).await, Err(Limit::Rate));
    }
    assert_eq!(start.elapsed(), Duration::ZERO, "refused at once");
    bucket.acquire(budget()).await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(1),
        "the refusals took nothing: the next token is the one after the burst"
    );
}

#[tokio::test(start_paused = true)]
async fn a_wait_that_fits_the_budget_exactly_is_taken() {
    let bucket = TokenBucket::new(2.0, 1);
    bucket.acquire(budget()).await.unwrap();
    let start = Instant::now();
    bucket
        .acquire(Instant::now() + Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(500));
}

#[test]
fn each_address_has_its_own_share() {
    let limit = PeerLimit::new(2);
    let a = Requester::Peer("10.0.0.1".parse().unwrap());
    let b = Requester::Peer("10.0.0.2".parse().unwrap());
    let first = limit.admit(a).unwrap();
    let second = limit.admit(a).unwrap();
    assert!(limit.admit(a).is_none(), "over the cap");
    let mapped = Requester::Peer("::ffff:10.0.0.1".parse().unwrap());
    assert!(limit.admit(mapped).is_none(), "the same client over IPv6");
    let six = |s: &str| Requester::Peer(s.parse().unwrap());
    let v6 = [
        limit.admit(six("2001:db8::1")),
        limit.admit(six("2001:db8::2")),
    ];
    assert!(
        limit.admit(six("2001:db8::99")).is_none(),
        "one /64 is one client"
    );
    let other = limit.admit(b).expect("another address is not held up");
    let process: Vec<_> = (0..10).map(|_| limit.admit(Requester::Process)).collect();
    assert!(
        process.iter().all(Option::is_some),
        "the process is not capped"
    );
    drop(first);
    let again = limit.admit(a).expect("a finished review frees its place");
    drop((second, again, other, v6));
    assert_eq!(limit.tracked(), 0, "idle addresses are forgotten");
}

#[tokio::test(start_paused = true)]
async fn limiting_is_logged_when_it_starts_then_summarised() {
    let log = LimitLog::default();
    assert_eq!(log.record(), Some(0), "the first one is logged");
    for _ in 0..99 {
        assert_eq!(log.record(), None);
    }
    tokio::time::sleep(LOG_EVERY).await;
    assert_eq!(
        log.record(),
        Some(99),
        "then a line with what was not logged"
    );
}
