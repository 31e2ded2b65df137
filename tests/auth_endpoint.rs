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
