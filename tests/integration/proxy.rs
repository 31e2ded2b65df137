//! scrape-guard over real TLS sockets, against a fake apiserver that speaks the real
//! JSON and an echo exporter. Each test starts its own servers on 127.0.0.1:0.

use scrape_guard_testkit as support;

use std::time::Duration;

use bytes::Bytes;
use support::{
    client, eventually, get, send, Echo, FakeApiserver, FakeUser, Mode, Pki, Proxy, World,
    METRICS_PAGE,
};

const SA: &str = support::SCRAPER;

/// A proxy in front of an echo exporter, with token "good" (allowed to get /metrics)
/// and token "unbound" (a valid user with no binding).
async fn world(extra: &[&str]) -> World {
    let world = World::start("good", extra).await;
    world
}

#[tokio::test]
async fn no_token_is_401_with_a_status_body_and_a_bearer_challenge() {
    let w = world(&[]).await;
    let reply = get(&client(&w.pki, false), &w.proxy.url("/metrics"), None, &[]).await;
    assert_eq!(reply.status, 401);
    assert!(reply.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let status = reply.json();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Unauthorized");
    assert_eq!(status["code"], 401);
    assert_eq!(w.api.token_reviews(), 0, "nothing to review");
    assert!(w.echo.seen().is_empty(), "nothing forwarded");
}

#[tokio::test]
async fn bad_token_is_401_and_negative_cached() {
    let w = world(&[]).await;
    let c = client(&w.pki, false);
    for _ in 0..5 {
        let reply = get(&c, &w.proxy.url("/metrics"), Some("garbage"), &[]).await;
        assert_eq!(reply.status, 401);
        assert_eq!(reply.json()["reason"], "Unauthorized");
    }
    assert_eq!(w.api.token_reviews(), 1, "five tries, one TokenReview");
    assert_eq!(w.api.sars(), 0);
    assert!(w.echo.seen().is_empty());
}

#[tokio::test]
async fn malformed_credentials_are_401_without_a_review() {
    let w = world(&[]).await;
    let c = client(&w.pki, false);
    for value in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "Token good"] {
        let reply = get(
            &c,
            &w.proxy.url("/metrics"),
            None,
            &[("authorization", value)],
        )
        .await;
        assert_eq!(reply.status, 401, "{value}");
    }
    assert_eq!(w.api.token_reviews(), 0);
    assert!(w.echo.seen().is_empty());
}

#[tokio::test]
async fn unbound_user_gets_the_apiservers_403_body() {
    let w = world(&[]).await;
    let reply = get(
        &client(&w.pki, false),
        &w.proxy.url("/metrics"),
        Some("unbound"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(
        reply.text(),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\
         \"message\":\"forbidden: User \\\"system:serviceaccount:default:stranger\\\" cannot get \
         path \\\"/metrics\\\"\",\"reason\":\"Forbidden\",\"details\":{},\"code\":403}\n"
    );
    assert!(w.echo.seen().is_empty());
}

#[tokio::test]
async fn denies_are_cached_too() {
    let w = world(&[]).await;
    let c = client(&w.pki, false);
    for _ in 0..3 {
        let reply = get(&c, &w.proxy.url("/metrics"), Some("unbound"), &[]).await;
        assert_eq!(reply.status, 403);
    }
    assert_eq!((w.api.token_reviews(), w.api.sars()), (1, 1));
}

#[tokio::test]
async fn allowed_scrape_gets_the_exporters_bytes_and_no_token_upstream() {
    let w = world(&[]).await;
    let c = client(&w.pki, false);
    let reply = get(
        &c,
        &w.proxy.url("/metrics?name[]=up"),
        Some("good"),
        &[("x-forwarded-for", "203.0.113.9")],
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), METRICS_PAGE);
    assert_eq!(reply.headers["content-type"], "text/plain; version=0.0.4");

    let seen = w.echo.seen();
    assert_eq!(seen.len(), 1);
    let upstream = &seen[0];
    assert_eq!(upstream.uri, "/metrics?name[]=up", "same path and query");
    assert!(
        !upstream.headers.contains_key("authorization"),
        "token leaked upstream"
    );
    assert_eq!(
        upstream.headers["x-forwarded-for"],
        "203.0.113.9, 127.0.0.1"
    );
    assert_eq!(upstream.headers["x-forwarded-proto"], "https");
    assert!(
        !upstream.headers.contains_key("x-remote-user"),
        "identity headers are opt-in"
    );

    // The review asked about exactly this path (no query), as the apiserver would.
    let sar = w.api.last_sar_spec();
    assert_eq!(sar["user"], SA);
    assert_eq!(sar["uid"], format!("uid-{SA}"));
    assert_eq!(sar["groups"][0], "system:authenticated");
    assert_eq!(sar["nonResourceAttributes"]["path"], "/metrics");
    assert_eq!(sar["nonResourceAttributes"]["verb"], "get");

    // Cached: a second scrape reviews nothing.
    let reply = get(&c, &w.proxy.url("/metrics"), Some("good"), &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!((w.api.token_reviews(), w.api.sars()), (1, 1));
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_exporter() {
    let w = world(&[]).await;
    let spoof = [
        ("x-remote-user", "system:admin"),
        ("x-remote-groups", "system:masters"),
    ];
    let reply = get(
        &client(&w.pki, false),
        &w.proxy.url("/metrics"),
        Some("good"),
        &spoof,
    )
    .await;
    assert_eq!(reply.status, 200);
    let headers = &w.echo.seen()[0].headers;
    assert!(!headers.contains_key("x-remote-user"));
    assert!(!headers.contains_key("x-remote-groups"));
}

#[tokio::test]
async fn identity_headers_carry_the_reviewed_user_when_enabled() {
    let w = world(&[
        "--auth-header-fields-enabled",
        "--auth-header-groups-field-separator=,",
    ])
    .await;
    let spoof = [
        ("x-remote-user", "system:admin"),
        ("x-remote-groups", "system:masters"),
    ];
    let reply = get(
        &client(&w.pki, false),
        &w.proxy.url("/metrics"),
        Some("good"),
        &spoof,
    )
    .await;
    assert_eq!(reply.status, 200);
    let headers = &w.echo.seen()[0].headers;
    assert_eq!(headers.get_all("x-remote-user").iter().count(), 1);
    assert_eq!(headers["x-remote-user"], SA);
    assert_eq!(headers["x-remote-groups"], "system:authenticated");
}

#[tokio::test]
async fn concurrent_first_scrapes_cause_one_review_each() {
    let w = world(&[]).await;
    w.api.set_delay(Duration::from_millis(200));
    let c = client(&w.pki, false);
    let url = w.proxy.url("/metrics");
    let scrapes = (0..100).map(|_| get(&c, &url, Some("good"), &[]));
    for reply in futures_util::future::join_all(scrapes).await {
        assert_eq!(reply.status, 200);
    }
    assert_eq!(w.api.token_reviews(), 1, "TokenReviews");
    assert_eq!(w.api.sars(), 1, "SubjectAccessReviews");
    assert_eq!(w.echo.seen().len(), 100);
}

#[tokio::test]
async fn apiserver_errors_fail_closed_with_503_and_are_not_cached() {
    let w = world(&[]).await;
    let c = client(&w.pki, false);
    w.api.set_mode(Mode::Fail);
    let reply = get(&c, &w.proxy.url("/metrics"), Some("good"), &[]).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["reason"], "ServiceUnavailable");
    assert!(
        w.echo.seen().is_empty(),
        "nothing forwarded while the apiserver fails"
    );

    // The error was not cached: once the apiserver recovers, so does the scrape.
    w.api.set_mode(Mode::Normal);
    let reply = get(&c, &w.proxy.url("/metrics"), Some("good"), &[]).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn authorization_errors_fail_closed_too() {
    let w = world(&[]).await;
    let c = client(&w.pki, false);
    // Authenticate while healthy, then break the apiserver before the SAR for a new path.
    w.api.allow(SA, "get", "/other");
    assert_eq!(
        get(&c, &w.proxy.url("/metrics"), Some("good"), &[])
            .await
            .status,
        200
    );
    w.api.set_mode(Mode::Fail);
    let reply = get(&c, &w.proxy.url("/other"), Some("good"), &[]).await;
    assert_eq!(reply.status, 503);
    assert_eq!(
        w.echo.seen().len(),
        1,
        "only the first scrape was forwarded"
    );
}

#[tokio::test]
async fn a_stalled_apiserver_is_503_after_the_timeout() {
    let w = world(&["--apiserver-timeout=300ms"]).await;
    w.api.set_mode(Mode::Stall);
    let reply = get(
        &client(&w.pki, false),
        &w.proxy.url("/metrics"),
        Some("good"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 503);
    assert!(w.echo.seen().is_empty());
}

#[tokio::test]
async fn a_vanished_apiserver_is_503_and_nothing_is_forwarded() {
    let w = world(&["--apiserver-timeout=2s"]).await;
    w.api.kill();
    let reply = get(
        &client(&w.pki, false),
        &w.proxy.url("/metrics"),
        Some("good"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 503);
    assert!(w.echo.seen().is_empty());
}

#[tokio::test]
async fn exporter_down_is_502_and_too_slow_is_504() {
    let w = world(&["--upstream-timeout=300ms"]).await;
    w.api.allow(SA, "get", "/slow");
    let c = client(&w.pki, false);
    let reply = get(&c, &w.proxy.url("/slow?ms=2000"), Some("good"), &[]).await;
    assert_eq!(reply.status, 504);

    w.echo.stop();
    // Give the aborted accept loop a moment to close its socket.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let reply = get(&c, &w.proxy.url("/metrics"), Some("good"), &[]).await;
    assert_eq!(reply.status, 502);
}

#[tokio::test]
async fn exporter_refusing_connections_is_502() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token("good", SA);
    api.allow(SA, "get", "/metrics");
    // A port that was free a moment ago and has nothing listening now.
    let port = support::free_port();
    let proxy = Proxy::start(&pki, &api, &format!("http://127.0.0.1:{port}/"), &[]).await;
    let reply = get(
        &client(&pki, false),
        &proxy.url("/metrics"),
        Some("good"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 502);
}

#[tokio::test]
async fn allow_paths_answer_404_before_authentication() {
    let w = world(&["--allow-paths=/metrics,/federate"]).await;
    let c = client(&w.pki, false);
    let reply = get(&c, &w.proxy.url("/debug/pprof"), Some("good"), &[]).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.text(), "404 page not found\n");
    assert_eq!(
        w.api.token_reviews(),
        0,
        "no review for a path we never serve"
    );
    let reply = get(&c, &w.proxy.url("/metrics"), Some("good"), &[]).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn ignore_paths_are_forwarded_without_authentication() {
    let w = world(&["--ignore-paths=/healthz,/static/*"]).await;
    let c = client(&w.pki, false);
    let reply = get(
        &c,
        &w.proxy.url("/healthz"),
        None,
        &[("authorization", "Bearer x")],
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(w.api.token_reviews(), 0);
    assert!(
        !w.echo.seen()[0].headers.contains_key("authorization"),
        "even unauthenticated paths never get the credential"
    );
    let reply = get(&c, &w.proxy.url("/metrics"), None, &[]).await;
    assert_eq!(reply.status, 401, "everything else is still guarded");
}

#[tokio::test]
async fn ambiguous_paths_are_refused_and_not_forwarded() {
    let w = world(&[]).await;
    let c = client(&w.pki, false);
    for path in [
        "/metrics/../admin",
        "/metrics/%2e%2e/admin",
        "/metrics%2fadmin",
    ] {
        let reply = get(&c, &w.proxy.url(path), Some("good"), &[]).await;
        assert_eq!(reply.status, 400, "{path}");
    }
    assert_eq!(w.api.token_reviews(), 0);
    assert!(w.echo.seen().is_empty());
}

#[tokio::test]
async fn methods_map_to_verbs_in_the_review() {
    let w = world(&[]).await;
    w.api.allow(SA, "create", "/echo");
    let c = client(&w.pki, false);
    let reply = send(
        &c,
        "POST",
        &w.proxy.url("/echo"),
        Some("good"),
        &[],
        Bytes::from("ping"),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "ping", "request body streamed through");
    assert_eq!(
        w.api.last_sar_spec()["nonResourceAttributes"]["verb"],
        "create"
    );
    let reply = send(
        &c,
        "DELETE",
        &w.proxy.url("/echo"),
        Some("good"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(reply.status, 403);
    assert_eq!(
        w.api.last_sar_spec()["nonResourceAttributes"]["verb"],
        "delete"
    );
}

#[tokio::test]
async fn http2_scrapes_work() {
    let w = world(&[]).await;
    let reply = get(
        &client(&w.pki, true),
        &w.proxy.url("/metrics"),
        Some("good"),
        &[],
    )
    .await;
    assert_eq!(reply.version, http::Version::HTTP_2);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), METRICS_PAGE);
    let seen = &w.echo.seen()[0];
    assert!(
        seen.headers.contains_key("host"),
        "HTTP/1 upstream gets a Host"
    );
    assert!(!seen.headers.contains_key("authorization"));
}

#[tokio::test]
async fn http2_disable_serves_http1_only() {
    let w = world(&["--http2-disable"]).await;
    let reply = get(
        &client(&w.pki, false),
        &w.proxy.url("/metrics"),
        Some("good"),
        &[],
    )
    .await;
    assert_eq!(reply.version, http::Version::HTTP_11);
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn large_responses_stream_through_intact() {
    let w = world(&[]).await;
    w.api.allow(SA, "get", "/big");
    let size = 50 * 1024 * 1024;
    let reply = get(
        &client(&w.pki, false),
        &w.proxy.url(&format!("/big?bytes={size}")),
        Some("good"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), size);
    assert!(reply.body.iter().all(|&b| b == b'x'));
}

#[tokio::test]
async fn content_encoding_is_passed_through_untouched() {
    let w = world(&[]).await;
    w.api.allow(SA, "get", "/gzip");
    let reply = get(
        &client(&w.pki, false),
        &w.proxy.url("/gzip"),
        Some("good"),
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-encoding"], "gzip");
    assert_eq!(&reply.body[..], b"\x1f\x8b\x08\x00fake-gzip-bytes");
    assert_eq!(w.echo.seen()[0].headers["accept-encoding"], "gzip");
}

#[tokio::test]
async fn token_audiences_are_sent_and_enforced() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    let user = |audiences: &[&str]| FakeUser {
        name: SA.into(),
        uid: "u".into(),
        groups: vec![],
        audiences: audiences.iter().map(|a| a.to_string()).collect(),
    };
    api.add_user("for-us", user(&["scrape-guard"]));
    api.add_user(
        "for-the-apiserver",
        user(&["https://kubernetes.default.svc"]),
    );
    api.allow(SA, "get", "/metrics");
    let echo = Echo::start().await;
    let proxy = Proxy::start(
        &pki,
        &api,
        &echo.url(),
        &["--auth-token-audiences=scrape-guard"],
    )
    .await;
    let c = client(&pki, false);
    let reply = get(&c, &proxy.url("/metrics"), Some("for-us"), &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(api.last_token_review_spec()["audiences"][0], "scrape-guard");
    let reply = get(&c, &proxy.url("/metrics"), Some("for-the-apiserver"), &[]).await;
    assert_eq!(reply.status, 401);
}

#[tokio::test]
async fn graceful_shutdown_finishes_the_request_in_flight() {
    let w = world(&["--shutdown-grace=5s"]).await;
    w.api.allow(SA, "get", "/slow");
    let c = client(&w.pki, false);
    let url = w.proxy.url("/slow?ms=700");
    let in_flight = tokio::spawn(async move { get(&c, &url, Some("good"), &[]).await });
    // Wait until the exporter has the request, then ask the proxy to stop.
    eventually(Duration::from_secs(10), || async {
        if w.echo.seen().is_empty() {
            Err("request never reached the exporter")
        } else {
            Ok(())
        }
    })
    .await;
    let addr = w.proxy.addr;
    w.proxy.shutdown().await;
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200, "the in-flight scrape completed");
    assert_eq!(reply.text(), METRICS_PAGE);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn probes_report_health_and_apiserver_readiness() {
    let w = world(&["--proxy-endpoints-port=0"]).await;
    assert!(
        w.proxy.admin_addr.is_none(),
        "0 turns the probe listener off"
    );

    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    let echo = Echo::start().await;
    // Pick a free port for the probe listener.
    let port = support::free_port();
    let _proxy = Proxy::start(
        &pki,
        &api,
        &echo.url(),
        &[&format!("--proxy-endpoints-port={port}")],
    )
    .await;
    let c = client(&pki, false);
    let base = format!("https://localhost:{port}");
    assert_eq!(
        get(&c, &format!("{base}/healthz"), None, &[]).await.status,
        200
    );
    let ready = get(&c, &format!("{base}/readyz"), None, &[]).await;
    assert_eq!(ready.status, 200, "{}", ready.text());

    api.kill();
    let ready = eventually(Duration::from_secs(20), || async {
        let ready = get(&c, &format!("{base}/readyz"), None, &[]).await;
        if ready.status == 503 {
            Ok(ready)
        } else {
            Err("readyz never failed")
        }
    })
    .await;
    assert!(ready.text().contains("[-]apiserver"), "{}", ready.text());
    assert_eq!(
        get(&c, &format!("{base}/healthz"), None, &[]).await.status,
        200
    );
    assert!(echo.seen().is_empty(), "probes never reach the exporter");
}
