use std::{
    convert::Infallible,
    future::Future,
    net::IpAddr,
    pin::Pin,
    sync::atomic::{AtomicUsize, Ordering},
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body_util::Full;

use super::*;

/// An apiserver behind a kube `Client`: counts the reviews it receives and answers
/// each, after `delay`, that the token is not valid.
#[derive(Clone)]
struct Reviews {
    received: Arc<AtomicUsize>,
    delay: Duration,
}

type Answer = Pin<Box<dyn Future<Output = Result<http::Response<Full<Bytes>>, Infallible>> + Send>>;

impl tower_service::Service<http::Request<kube::client::Body>> for Reviews {
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<kube::client::Body>) -> Answer {
        self.received.fetch_add(1, Ordering::SeqCst);
        let delay = self.delay;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            let body = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview",
                    "spec":{},"status":{"authenticated":false,"error":"invalid bearer token"}}"#;
            Ok(http::Response::builder()
                .status(201)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(body.as_bytes())))
                .unwrap())
        })
    }
}

const QPS: f64 = 5.0;
const BURST: u32 = 10;

fn apiserver(delay: Duration, max_per_peer: usize) -> (Arc<Apiserver>, Arc<AtomicUsize>) {
    let received = Arc::new(AtomicUsize::new(0));
    let reviews = Reviews {
        received: Arc::clone(&received),
        delay,
    };
    let settings = ApiserverSettings {
        kubeconfig: None,
        fallback: Fallback::Standalone,
        rate_limit: RateLimit::TokenBucket {
            qps: QPS,
            burst: BURST,
        },
        timeout: Duration::from_secs(5),
        max_inflight: 64,
        max_per_peer,
    };
    let client = Client::new(reviews, "default");
    let apiserver = Apiserver::new(client, &settings, Arc::new(Metrics::new()));
    (Arc::new(apiserver), received)
}

fn peer(last: u8) -> Requester {
    Requester::Peer(IpAddr::from([10, 0, 0, last]))
}

/// The security review's measurement, in the small: 64 clients that give up after
/// 100 ms, each sending junk tokens for 8 s. The reviews they abandoned were never
/// sent and left nothing owing: right after the flood a new review goes at once.
#[tokio::test(start_paused = true)]
async fn a_flood_of_abandoned_reviews_leaves_no_debt() {
    let (apiserver, received) = apiserver(Duration::ZERO, usize::MAX);
    let flood_ends = Instant::now() + Duration::from_secs(8);
    let clients: Vec<_> = (0..64u8)
        .map(|i| {
            let apiserver = Arc::clone(&apiserver);
            tokio::spawn(async move {
                let junk = TokenReview::default();
                while Instant::now() < flood_ends {
                    let review = apiserver.token_review(&junk, peer(i));
                    let _ = tokio::time::timeout(Duration::from_millis(100), review).await;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let sent = received.load(Ordering::SeqCst) as f64;
    assert!(
        sent <= f64::from(BURST) + 8.0 * QPS + 1.0,
        "the apiserver saw no more than the rate: {sent}"
    );
    let start = Instant::now();
    let answer = apiserver
        .token_review(&TokenReview::default(), peer(200))
        .await;
    assert!(answer.is_ok(), "{answer:?}");
    let waited = start.elapsed();
    assert!(
        waited <= Duration::from_secs_f64(1.0 / QPS),
        "a new review right after the flood waited {waited:?}"
    );
    assert!(apiserver.is_reachable(), "limiting is not an outage");
    let text = apiserver.metrics.encode(0, 0);
    assert!(
        text.contains("scrape_guard_reviews_limited_total{review=\"tokenreview\",reason=\"rate\"}"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_at_its_cap_is_refused_at_once_and_others_are_not() {
    let (apiserver, received) = apiserver(Duration::from_secs(1), 2);
    let review = || TokenReview::default();
    let in_flight: Vec<_> = (0..2)
        .map(|_| {
            let apiserver = Arc::clone(&apiserver);
            tokio::spawn(async move { apiserver.token_review(&review(), peer(1)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(received.load(Ordering::SeqCst), 2);

    let start = Instant::now();
    let over = apiserver.token_review(&review(), peer(1)).await;
    assert!(
        matches!(over, Err(ReviewError::Limited(Limit::Peer))),
        "{over:?}"
    );
    assert!(
        !over.unwrap_err().apiserver_failed(),
        "no stale allow for it"
    );
    assert_eq!(start.elapsed(), Duration::ZERO, "refused at once");
    assert_eq!(
        received.load(Ordering::SeqCst),
        2,
        "the apiserver never saw it"
    );

    let other = apiserver.token_review(&review(), peer(2)).await;
    assert!(other.is_ok(), "another address is not held up: {other:?}");
    let process = apiserver.token_review(&review(), Requester::Process).await;
    assert!(process.is_ok(), "{process:?}");
    for review in in_flight {
        assert!(review.await.unwrap().is_ok());
    }
    let again = apiserver.token_review(&review(), peer(1)).await;
    assert!(
        again.is_ok(),
        "finished reviews free their places: {again:?}"
    );

    assert!(apiserver.is_reachable(), "limiting is not an outage");
    let text = apiserver.metrics.encode(0, 0);
    assert!(
        text.contains(
            "scrape_guard_reviews_limited_total{review=\"tokenreview\",reason=\"peer\"} 1"
        ),
        "{text}"
    );
    assert!(
        !text.contains("scrape_guard_review_errors_total{"),
        "a review not sent is no review error:\n{text}"
    );
}

#[test]
fn backoff_grows_with_jitter() {
    for attempt in 0..4 {
        let base = BACKOFF.as_secs_f64() * f64::from(1u32 << attempt);
        for _ in 0..20 {
            let wait = backoff(attempt).as_secs_f64();
            assert!(wait >= base * 0.5 && wait < base * 1.5, "{attempt}: {wait}");
        }
    }
}
