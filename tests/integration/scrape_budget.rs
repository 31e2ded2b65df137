//! The scrape's timeout as the request's budget (`X-Prometheus-Scrape-Timeout-Seconds`,
//! bounded by `--upstream-timeout`): a slow exporter is a 504 and slow reviews a 503,
//! both before the scraper gives up; without the header, or with one that cannot be
//! read, `--upstream-timeout` applies as before. The exporter is held (it answers only
//! when released), so no answer here can be the exporter's.

use std::{sync::Arc, time::Duration};

use scrape_guard_testkit::{
    client, get, install_crypto, Answer, FakeApiserver, Pki, Proxy, RawUpstream, Reply, SCRAPER,
};
use tokio::time::Instant;

const TOKEN: &str = "budget-token";

struct Budgeted {
    pki: Pki,
    api: Arc<FakeApiserver>,
    exporter: RawUpstream,
    proxy: Proxy,
}

/// An exporter that answers after `delay` (a minute: never, for these tests).
async fn budgeted(delay: Duration, extra: &[&str]) -> Budgeted {
    install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token(TOKEN, SCRAPER);
    api.allow(SCRAPER, "get", "/metrics");
    let exporter = RawUpstream::start(Answer {
        delay,
        head: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n".into(),
        body: b"up 1\n".to_vec(),
        ..Answer::default()
    })
    .await;
    let proxy = Proxy::start(&pki, &api, &exporter.url(), extra).await;
    Budgeted {
        pki,
        api,
        exporter,
        proxy,
    }
}

/// A scrape with the scraper's timeout header (if any), and how long it took.
async fn scrape(w: &Budgeted, h2: bool, timeout: Option<&str>) -> (Reply, Duration) {
    let headers: Vec<(&str, &str)> = timeout
        .map(|t| ("x-prometheus-scrape-timeout-seconds", t))
        .into_iter()
        .collect();
    let started = Instant::now();
    let reply = get(
        &client(&w.pki, h2),
        &w.proxy.url("/metrics"),
        Some(TOKEN),
        &headers,
    )
    .await;
    (reply, started.elapsed())
}

const NEVER: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_slow_exporter_is_a_504_before_the_scraper_gives_up() {
    let w = budgeted(NEVER, &[]).await;
    for h2 in [false, true] {
        let (reply, took) = scrape(&w, h2, Some("3")).await;
        assert_eq!(reply.status, 504, "h2={h2}: {}", reply.describe());
        assert!(reply.text().contains("exporter"), "{}", reply.describe());
        // Timers never fire early: the budget (3 s less 250 ms) was used, and the answer
        // came before the scraper's own 3 s.
        assert!(took >= Duration::from_millis(2750), "{took:?}");
        assert!(
            took < Duration::from_secs(3),
            "after the scraper gave up: {took:?}"
        );
    }
    assert!(!w.exporter.heads().is_empty(), "the exporter was asked");
}

#[tokio::test]
async fn slow_reviews_are_a_503_and_nothing_is_forwarded() {
    let w = budgeted(Duration::ZERO, &[]).await;
    w.api.set_delay(NEVER);
    for h2 in [false, true] {
        let (reply, took) = scrape(&w, h2, Some("2")).await;
        assert_eq!(reply.status, 503, "h2={h2}: {}", reply.describe());
        assert!(reply.is_status(503, None), "{}", reply.describe());
        // The reviews' share: half of 2 s less 200 ms.
        assert!(took >= Duration::from_millis(900), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
    assert!(
        w.exporter.heads().is_empty(),
        "fail closed: never forwarded"
    );
}

#[tokio::test]
async fn without_the_header_the_upstream_timeout_applies() {
    let w = budgeted(NEVER, &["--upstream-timeout=1s"]).await;
    let (reply, took) = scrape(&w, false, None).await;
    assert_eq!(reply.status, 504, "{}", reply.describe());
    assert!(took >= Duration::from_secs(1), "{took:?}");
    // A scraper's timeout longer than --upstream-timeout is bounded by it.
    let (reply, took) = scrape(&w, true, Some("120")).await;
    assert_eq!(reply.status, 504, "{}", reply.describe());
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
}

#[tokio::test]
async fn unreadable_headers_are_ignored_and_forwarded_as_they_came() {
    let w = budgeted(NEVER, &["--upstream-timeout=1s"]).await;
    for bad in ["0", "-1", "abc", "1e9", "NaN", "0.0", "999999999999"] {
        let (reply, took) = scrape(&w, false, Some(bad)).await;
        assert_eq!(reply.status, 504, "{bad}: {}", reply.describe());
        assert!(
            took >= Duration::from_secs(1),
            "{bad}: the default kept ({took:?})"
        );
        assert_eq!(
            w.exporter
                .last_header("x-prometheus-scrape-timeout-seconds"),
            [bad]
        );
    }
    // And a good exporter is unaffected by a bad header.
    w.exporter.set_answer(Answer {
        head: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n".into(),
        body: b"up 1\n".to_vec(),
        ..Answer::default()
    });
    let (reply, _) = scrape(&w, true, Some("abc")).await;
    assert_eq!(reply.status, 200, "{}", reply.describe());
}
