//! The auth endpoint (`--auth-endpoint-address`): the same decisions as the proxy for
//! a request a fronting proxy describes, answered instead of forwarded.

use scrape_guard_testkit as support;

use support::{get, World, SCRAPER};

const TOKEN: &str = "scraper-token";

/// A GET to the auth endpoint describing `method` and `uri` nginx-style.
async fn ask(w: &World, token: Option<&str>, headers: &[(&str, &str)]) -> support::Reply {
    let addr = w.proxy.auth_endpoint_addr.expect("auth endpoint");
    let url = format!("https://localhost:{}/auth", addr.port());
    get(&support::client(&w.pki, false), &url, token, headers).await
}

fn nginx(uri: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-original-method", "GET".into()),
        ("x-original-uri", uri.into()),
    ]
}

async fn ask_nginx(w: &World, token: Option<&str>, uri: &str) -> support::Reply {
    let headers = nginx(uri);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    ask(w, token, &headers).await
}

#[tokio::test]
async fn answers_like_the_proxy_and_forwards_nothing() {
    let w = World::start(TOKEN, &["--auth-endpoint-address=127.0.0.1:0"]).await;

    let allowed = ask_nginx(&w, Some(TOKEN), "/metrics").await;
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.headers["x-remote-user"], SCRAPER);
    let denied = ask_nginx(&w, Some("unbound"), "/metrics").await;
    assert_eq!(denied.status, 403);
    assert_eq!(
        denied.json()["message"],
        "forbidden: User \"system:serviceaccount:default:stranger\" cannot get path \"/metrics\""
    );
    let anonymous = ask_nginx(&w, None, "/metrics").await;
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.headers.contains_key("www-authenticate"));
    // What the proxy refuses, the endpoint refuses: the authorized path is the served one.
    assert_eq!(
        ask_nginx(&w, Some(TOKEN), "/metrics/../secret")
            .await
            .status,
        400
    );
    // No description, no decision: never the auth request's own path.
    assert_eq!(ask(&w, Some(TOKEN), &[]).await.status, 400);
    assert!(w.echo.seen().is_empty(), "the endpoint forwards nothing");
    assert_eq!(
        w.last_sar_path(),
        "/metrics",
        "the described path is reviewed"
    );
}

#[tokio::test]
async fn the_style_decides_which_headers_are_read() {
    let w = World::start(
        TOKEN,
        &[
            "--auth-endpoint-address=127.0.0.1:0",
            "--auth-endpoint-style=traefik",
        ],
    )
    .await;
    // A client's own X-Original-URI means nothing to a Traefik-style endpoint.
    assert_eq!(ask_nginx(&w, Some(TOKEN), "/metrics").await.status, 400);
    let reply = ask(
        &w,
        Some(TOKEN),
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/metrics"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn an_apiserver_outage_is_never_a_2xx() {
    let w = World::start(TOKEN, &["--auth-endpoint-address=127.0.0.1:0"]).await;
    w.api.kill();
    assert_eq!(ask_nginx(&w, Some(TOKEN), "/metrics").await.status, 503);
}

/// `ask_nginx` with more headers (a forwarded-for, say).
async fn ask_nginx_with(
    w: &World,
    token: Option<&str>,
    uri: &str,
    extra: &[(&str, &str)],
) -> support::Reply {
    let headers = nginx(uri);
    let mut headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    headers.extend_from_slice(extra);
    ask(w, token, &headers).await
}

#[tokio::test]
async fn an_original_uri_is_reviewed_whole_or_refused() {
    let w = World::start(TOKEN, &["--auth-endpoint-address=127.0.0.1:0"]).await;
    // nginx passes `$request_uri` on raw; `http::Uri` would drop a fragment and review
    // what is left. Each of these is a 400, never a decision about another path.
    for target in [
        "/metrics#/../../admin/x",
        "/metrics#",
        "#/metrics",
        "?/metrics",
        "metrics",
        "*",
        "http://evil/metrics",
        "/metrics%23/../admin",
        "/metrics%3F/x",
        "/metrics%3f",
        "/metrics\\..\\admin",
        "/metrics/..;/admin",
        "/metrics/%2e%2e/admin",
        "/met rics",
        "/met\trics",
        "/metrics<x>",
    ] {
        let reply = ask_nginx(&w, Some(TOKEN), target).await;
        assert_eq!(reply.status, 400, "{target:?}: {}", reply.text());
    }
    assert_eq!(w.api.sars(), 0, "nothing above was reviewed");
    // What is not refused is reviewed as the upstream will see it: the path, whole.
    let reply = ask_nginx(&w, Some(TOKEN), "/metrics?x=1#").await;
    assert_eq!(reply.status, 400, "a fragment after a query too");
    assert_eq!(ask_nginx(&w, Some(TOKEN), "/metrics?x=1").await.status, 200);
    assert_eq!(w.last_sar_path(), "/metrics");
    for (target, reviewed) in [("/metrics;x", "/metrics;x"), ("//metrics", "//metrics")] {
        let reply = ask_nginx(&w, Some(TOKEN), target).await;
        assert_eq!(reply.status, 403, "{target}: {}", reply.text());
        assert_eq!(w.last_sar_path(), reviewed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_are_capped_per_client_of_the_fronting_proxy_not_per_proxy() {
    let w = World::start(
        TOKEN,
        &[
            "--auth-endpoint-address=127.0.0.1:0",
            "--max-reviews-per-peer=1",
        ],
    )
    .await;
    // Every review takes 2 s (within --apiserver-timeout): one client's junk token
    // holds its one place meanwhile.
    w.api.set_delay(std::time::Duration::from_secs(2));
    let w = std::sync::Arc::new(w);
    let busy = {
        let w = std::sync::Arc::clone(&w);
        tokio::spawn(async move {
            let xff = [("x-forwarded-for", "10.0.0.1")];
            ask_nginx_with(&w, Some("junk-1"), "/metrics", &xff).await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // The same client again (also when it puts an address of its choosing first): 503
    // with Retry-After, the proxy's own answer to a review it will not send.
    for xff in ["10.0.0.1", "192.0.2.9, 10.0.0.1"] {
        let reply =
            ask_nginx_with(&w, Some("junk-2"), "/metrics", &[("x-forwarded-for", xff)]).await;
        assert_eq!(reply.status, 503, "{xff}: {}", reply.text());
        assert_eq!(reply.headers["retry-after"], "1");
    }
    // Another client behind the same fronting proxy is not held back by it.
    let xff = [("x-forwarded-for", "10.0.0.2")];
    let reply = ask_nginx_with(&w, Some(TOKEN), "/metrics", &xff).await;
    assert_eq!(reply.status, 200, "another client: {}", reply.text());
    assert_eq!(busy.await.unwrap().status, 401, "the junk token");
}
