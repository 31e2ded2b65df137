//! Hostile headers: request smuggling (conflicting or malformed framing, a request
//! inside a body, HTTP/2 framing meant to desync an HTTP/1.1 exporter), Authorization
//! abuse, and hop-by-hop, spoofed identity and credential headers that must never reach
//! the exporter. Checked on the exporter's record (`Echo::seen`) and the fake
//! apiserver's review counters, over raw TLS sockets (`support::http1`,
//! `support::http2`) so no client library cleans a request up first.

use scrape_guard_testkit as support;

use std::time::Duration;

use support::{
    http1::{get_request, h1},
    http2::{frame, DATA, END_STREAM, H2},
    World,
};

const SA: &str = support::SCRAPER;
/// Distinctive, so a response body that echoes it is easy to spot.
const TOKEN: &str = "tok-5ecret-9f3a1c";

/// `TOKEN` authenticates as `SA`, which may `get /metrics` (tests allow more paths).
async fn world(extra: &[&str]) -> World {
    let world = World::start(TOKEN, extra).await;
    world
}

// ---------------------------------------------------------------------------------
// Request smuggling
// ---------------------------------------------------------------------------------

/// The inner request every smuggling attempt tries to sneak to the exporter.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

fn assert_nothing_smuggled(w: &World, label: &str) {
    let forwarded = w.forwarded_paths();
    assert!(
        forwarded.iter().all(|p| p == "/metrics" || p == "/echo"),
        "{label}: the exporter received {forwarded:?}"
    );
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_not_smuggled() {
    let w = world(&[]).await;
    w.api.allow(SA, "get", "/echo");
    let head =
        format!("GET /echo HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n");
    // CL.TE and TE.CL, in both header orders.
    let cases = [
        format!(
            "{head}Content-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}",
            5 + SMUGGLED.len()
        ),
        format!(
            "{head}Transfer-Encoding: chunked\r\nContent-Length: {}\r\n\r\n0\r\n\r\n{SMUGGLED}",
            5 + SMUGGLED.len()
        ),
        format!(
            "{head}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n",
            SMUGGLED.len()
        ),
        // A bare LF ends a header line for hyper: the framing is then chunked, consistently.
        format!("{head}X-A: 1\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
    ];
    for (i, request) in cases.iter().enumerate() {
        let exchange = h1(&w, request.as_bytes(), 2).await;
        let statuses = exchange.statuses();
        // Either refused, or one request whose body was the chunked framing.
        assert!(
            statuses == [400] || statuses.first() == Some(&200),
            "case {i}: {statuses:?}"
        );
        assert!(
            statuses.len() <= 1 || statuses[1] == 401,
            "case {i}: {statuses:?}"
        );
        assert_nothing_smuggled(&w, &format!("CL+TE case {i}"));
    }
    w.healthy_scrape().await;
    assert_nothing_smuggled(&w, "after");
}

#[tokio::test]
async fn ambiguous_framing_is_refused() {
    let w = world(&[]).await;
    w.api.allow(SA, "get", "/echo");
    let head =
        format!("GET /echo HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n");
    let body = format!("0\r\n\r\n{SMUGGLED}");
    for (label, headers) in [
        (
            "duplicate differing Content-Length",
            "Content-Length: 5\r\nContent-Length: 40\r\n".to_owned(),
        ),
        (
            "comma-joined Content-Length",
            "Content-Length: 5, 40\r\n".to_owned(),
        ),
        (
            "negative Content-Length",
            "Content-Length: -5\r\n".to_owned(),
        ),
        (
            "plus-signed Content-Length",
            "Content-Length: +5\r\n".to_owned(),
        ),
        (
            "chunked, identity",
            "Transfer-Encoding: chunked, identity\r\n".to_owned(),
        ),
        (
            "identity alone",
            "Transfer-Encoding: identity\r\n".to_owned(),
        ),
        ("xchunked", "Transfer-Encoding: xchunked\r\n".to_owned()),
        (
            "TE split over two headers",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n".to_owned(),
        ),
        (
            "space before colon",
            "Transfer-Encoding : chunked\r\n".to_owned(),
        ),
        ("obs-fold", "Transfer-Encoding:\r\n chunked\r\n".to_owned()),
    ] {
        let request = format!("{head}{headers}\r\n{body}");
        let exchange = h1(&w, request.as_bytes(), 2).await;
        let statuses = exchange.statuses();
        assert!(
            statuses.is_empty() && exchange.closed || statuses.first() == Some(&400),
            "{label}: {statuses:?}\n{}",
            exchange.text()
        );
        assert!(
            statuses.len() <= 1,
            "{label}: a second response {statuses:?}"
        );
    }
    assert!(
        w.echo.seen().is_empty(),
        "nothing forwarded: {:?}",
        w.forwarded_paths()
    );
    w.healthy_scrape().await;
}

#[tokio::test]
async fn a_request_inside_a_body_stays_a_body() {
    let w = world(&[]).await;
    w.api.allow(SA, "get", "/echo");
    // Authorized request whose body *is* an unauthenticated request: the exporter gets
    // it as the body of /echo, never as a request of its own.
    let request = format!(
        "GET /echo HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: {}\r\n\r\n{SMUGGLED}",
        SMUGGLED.len()
    );
    let exchange = h1(&w, request.as_bytes(), 2).await;
    assert_eq!(exchange.statuses(), [200], "{}", exchange.text());
    assert_eq!(
        exchange.responses[0].body,
        SMUGGLED.as_bytes(),
        "echoed as a body"
    );
    assert_eq!(w.forwarded_paths(), ["/echo"]);

    // Unauthenticated request with a body that is an *authenticated* request: the 401
    // must not leave the body to be parsed as the next request on the connection.
    let inner =
        format!("GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    for method in ["GET", "POST"] {
        let request = format!(
            "{method} /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{inner}",
            inner.len()
        );
        let exchange = h1(&w, request.as_bytes(), 2).await;
        assert_eq!(exchange.statuses(), [401], "{method}: {}", exchange.text());
        // Same with chunked framing.
        let request = format!(
            "{method} /metrics HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
             {:x}\r\n{inner}\r\n0\r\n\r\n",
            inner.len()
        );
        let exchange = h1(&w, request.as_bytes(), 2).await;
        assert_eq!(
            exchange.statuses(),
            [401],
            "{method} chunked: {}",
            exchange.text()
        );
    }
    assert_eq!(
        w.forwarded_paths(),
        ["/echo"],
        "nothing else reached the exporter"
    );

    // Plain pipelining: the second, unauthenticated request gets its own 401.
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\r\n\
         GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    let exchange = h1(&w, request.as_bytes(), 2).await;
    assert_eq!(exchange.statuses(), [200, 401]);
    assert_eq!(w.forwarded_paths(), ["/echo", "/metrics"]);
}

#[tokio::test]
async fn h2_body_framing_cannot_smuggle_to_an_http1_exporter() {
    let w = world(&[]).await;
    w.api.allow(SA, "get", "/echo");
    w.api.allow(SA, "create", "/echo");
    let auth = format!("Bearer {TOKEN}");
    // H2.CL: content-length 0 but a DATA frame holding a request; H2.TE: a
    // transfer-encoding header (connection-specific, malformed in h2); a CRLF inside a
    // header value; duplicate differing content-length.
    type Headers = Vec<(&'static [u8], &'static [u8])>;
    let attempts: Vec<(&str, Headers)> = vec![
        ("H2.CL", vec![(b"content-length", b"0")]),
        ("H2.TE", vec![(b"transfer-encoding", b"chunked")]),
        (
            "CRLF in value",
            vec![(b"x-a", b"1\r\ntransfer-encoding: chunked")],
        ),
        ("connection header", vec![(b"connection", b"keep-alive")]),
        (
            "two content-lengths",
            vec![(b"content-length", b"1"), (b"content-length", b"70")],
        ),
        (
            "content-length too large",
            vec![(b"content-length", b"1000")],
        ),
    ];
    for (label, extra) in attempts {
        for method in [&b"GET"[..], b"POST"] {
            let mut h2 = H2::connect(&w).await;
            let mut fields: Vec<(&[u8], &[u8])> = vec![
                (b":method", method),
                (b":scheme", b"https"),
                (b":authority", b"localhost"),
                (b":path", b"/echo"),
                (b"authorization", auth.as_bytes()),
            ];
            fields.extend(extra.iter().copied());
            let (id, mut bytes) = h2.request(&fields, false);
            bytes.extend(frame(DATA, END_STREAM, id, SMUGGLED.as_bytes()));
            h2.send(&bytes).await;
            let stream = h2.wait_for(id, Duration::from_secs(10)).await;
            if stream.status == Some(200) {
                assert!(
                    stream.body.is_empty() || stream.body == SMUGGLED.as_bytes(),
                    "{label}: {stream:?}"
                );
            }
            // The exporter connection the proxy used must still be in sync: a normal
            // request right after must come back as itself.
            let id = h2.get(b"GET", b"/metrics", &[]).await;
            let after = h2.wait_for(id, Duration::from_secs(10)).await;
            if !h2.closed && h2.goaway.is_none() {
                assert_eq!(after.status, Some(200), "{label}: follow-up {after:?}");
            }
            assert_nothing_smuggled(&w, label);
        }
    }
    w.healthy_scrape().await;
    assert_nothing_smuggled(&w, "after");
}

// ---------------------------------------------------------------------------------
// Authorization header abuse
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_authorization_is_401_without_a_review_and_never_echoed() {
    let w = world(&[]).await;
    let many = format!("Authorization: Bearer {TOKEN}\r\n").repeat(200);
    let cases: Vec<(&str, String, &[u16])> = vec![
        ("Basic", format!("Authorization: Basic {TOKEN}\r\n"), &[401]),
        (
            "Digest",
            format!("Authorization: Digest username=\"{TOKEN}\", response=\"x\"\r\n"),
            &[401],
        ),
        (
            "Negotiate",
            format!("Authorization: Negotiate {TOKEN}\r\n"),
            &[401],
        ),
        ("NTLM", format!("Authorization: NTLM {TOKEN}\r\n"), &[401]),
        ("Token", format!("Authorization: Token {TOKEN}\r\n"), &[401]),
        ("no scheme", format!("Authorization: {TOKEN}\r\n"), &[401]),
        ("empty value", "Authorization: \r\n".to_owned(), &[401]),
        (
            "Bearer alone",
            "Authorization: Bearer\r\n".to_owned(),
            &[401],
        ),
        (
            "Bearer space",
            "Authorization: Bearer \r\n".to_owned(),
            &[401],
        ),
        (
            "Bearer tab",
            format!("Authorization: Bearer\t{TOKEN}\r\n"),
            &[401],
        ),
        (
            "two tokens",
            format!("Authorization: Bearer {TOKEN} {TOKEN}\r\n"),
            &[401],
        ),
        (
            "token, comma",
            format!("Authorization: Bearer {TOKEN}, Basic eA==\r\n"),
            &[401],
        ),
        (
            "non-ASCII token",
            format!("Authorization: Bearer {TOKEN}\u{e9}\r\n"),
            &[401],
        ),
        (
            "obs-fold",
            format!("Authorization: Bearer\r\n {TOKEN}\r\n"),
            &[400, 401],
        ),
        (
            "CR in value",
            format!("Authorization: Bearer {TOKEN}\rX: y\r\n"),
            &[400],
        ),
        (
            "NUL in value",
            format!("Authorization: Bearer {TOKEN}\0\r\n"),
            &[400],
        ),
        (
            "two headers",
            format!("Authorization: Bearer {TOKEN}\r\nAuthorization: Bearer x\r\n"),
            &[401],
        ),
        ("200 headers", many, &[401, 431]),
        (
            "Proxy-Authorization only",
            format!("Proxy-Authorization: Bearer {TOKEN}\r\n"),
            &[401],
        ),
        (
            "header name with space",
            format!("Authorization : Bearer {TOKEN}\r\n"),
            &[400],
        ),
    ];
    let mut failures = Vec::new();
    for (label, header, want) in &cases {
        let request = format!(
            "GET /metrics HTTP/1.1\r\nHost: localhost\r\n{header}Connection: close\r\n\r\n"
        );
        let exchange = h1(&w, request.as_bytes(), 1).await;
        let status = exchange.responses.first().map(|r| r.status);
        if !(status.is_some_and(|s| want.contains(&s)) || status.is_none() && exchange.closed) {
            failures.push(format!("{label}: status {status:?}, want one of {want:?}"));
        }
        if let Some(r) = exchange.responses.first() {
            if r.status == 401
                && !r
                    .header("www-authenticate")
                    .is_some_and(|v| v.starts_with("Bearer"))
            {
                failures.push(format!("{label}: 401 without a Bearer challenge"));
            }
        }
        if exchange.text().contains(TOKEN) {
            failures.push(format!("{label}: the token is echoed in the response"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        w.api.token_reviews(),
        0,
        "malformed credentials are never reviewed"
    );
    assert!(w.echo.seen().is_empty(), "{:?}", w.forwarded_paths());
    w.healthy_scrape().await;
}

#[tokio::test]
async fn huge_authorization_headers_are_refused_and_the_proxy_carries_on() {
    let w = world(&[]).await;
    for size in [70 * 1024, 1024 * 1024] {
        let token = "a".repeat(size);
        let request = format!(
            "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        );
        let exchange = h1(&w, request.as_bytes(), 1).await;
        let status = exchange.responses.first().map(|r| r.status);
        assert!(
            matches!(status, Some(400 | 431)) || status.is_none() && exchange.closed,
            "{size} bytes over HTTP/1.1: {status:?}"
        );
        assert!(!exchange.text().contains(&token[..64]), "token echoed");

        // And over HTTP/2 (HEADERS + CONTINUATION frames).
        let mut h2 = H2::connect(&w).await;
        let auth = format!("Bearer {token}");
        let (id, bytes) = h2.request(
            &[
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", b"localhost"),
                (b":path", b"/metrics"),
                (b"authorization", auth.as_bytes()),
            ],
            true,
        );
        h2.send(&bytes).await;
        let stream = h2.wait_for(id, Duration::from_secs(10)).await;
        assert!(
            matches!(stream.status, Some(400 | 431))
                || stream.reset.is_some()
                || h2.closed
                || h2.goaway.is_some(),
            "{size} bytes over HTTP/2: {stream:?}"
        );
        assert!(!String::from_utf8_lossy(&stream.body).contains(&token[..64]));
    }
    assert_eq!(w.api.token_reviews(), 0);
    assert!(w.echo.seen().is_empty());
    w.healthy_scrape().await;
}

#[tokio::test]
async fn a_large_but_acceptable_garbage_token_costs_one_review() {
    let w = world(&[]).await;
    let token = "g".repeat(32 * 1024);
    for _ in 0..5 {
        let request = format!(
            "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        );
        let exchange = h1(&w, request.as_bytes(), 1).await;
        assert_eq!(exchange.statuses(), [401]);
        assert!(!exchange.text().contains(&token[..64]));
    }
    assert_eq!(w.api.token_reviews(), 1, "negative-cached");
    assert!(w.echo.seen().is_empty());
}

// ---------------------------------------------------------------------------------
// Header hygiene, end to end
// ---------------------------------------------------------------------------------

const HOSTILE_HEADERS: &str = "X-Remote-User: system:admin\r\n\
    X-REMOTE-GROUPS: system:masters\r\n\
    x-remote-user: system:kube-controller-manager\r\n\
    Connection: keep-alive, X-Remote-User, X-Custom-Hop, X-Forwarded-Proto\r\n\
    X-Custom-Hop: hop\r\n\
    Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
    Proxy-Connection: keep-alive\r\n\
    Keep-Alive: timeout=5\r\n\
    TE: trailers\r\n\
    Trailer: X-Trailer\r\n\
    Upgrade: websocket\r\n\
    X-Forwarded-User: system:admin\r\n\
    Accept: text/plain\r\n";

fn assert_clean(headers: &http::HeaderMap, label: &str) {
    for name in [
        "authorization",
        "proxy-authorization",
        "x-custom-hop",
        "proxy-connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "connection",
        "transfer-encoding",
    ] {
        assert!(
            !headers.contains_key(name),
            "{label}: {name} reached the exporter: {headers:?}"
        );
    }
    for value in headers.values() {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(
            !value.contains(TOKEN),
            "{label}: token in a header: {headers:?}"
        );
        assert!(
            !value.contains("system:masters"),
            "{label}: spoofed group: {headers:?}"
        );
    }
    assert_eq!(
        headers["accept"], "text/plain",
        "{label}: ordinary headers pass"
    );
}

#[tokio::test]
async fn hostile_headers_never_reach_the_exporter() {
    let w = world(&[]).await;
    let request = get_request("GET", b"/metrics", TOKEN, HOSTILE_HEADERS);
    let exchange = h1(&w, &request, 1).await;
    assert_eq!(exchange.statuses(), [200], "{}", exchange.text());
    let seen = w.echo.seen();
    assert_eq!(seen.len(), 1);
    let headers = &seen[0].headers;
    assert_clean(headers, "identity headers off");
    assert!(!headers.contains_key("x-remote-user"), "{headers:?}");
    assert!(!headers.contains_key("x-remote-groups"), "{headers:?}");
}

#[tokio::test]
async fn identity_headers_are_the_reviewed_ones_despite_connection_tricks() {
    let w = world(&["--auth-header-fields-enabled"]).await;
    let exchange = h1(
        &w,
        &get_request("GET", b"/metrics", TOKEN, HOSTILE_HEADERS),
        1,
    )
    .await;
    assert_eq!(exchange.statuses(), [200], "{}", exchange.text());
    let seen = w.echo.seen();
    let headers = &seen[0].headers;
    assert_clean(headers, "identity headers on");
    // `Connection: X-Remote-User` must not remove the header the proxy sets itself.
    let users: Vec<_> = headers.get_all("x-remote-user").iter().collect();
    assert_eq!(users, [SA], "{headers:?}");
    let groups: Vec<_> = headers.get_all("x-remote-groups").iter().collect();
    assert_eq!(groups, ["system:authenticated"], "{headers:?}");
    assert_eq!(headers["x-forwarded-proto"], "https");

    // Over HTTP/2, with upper-case names (malformed in h2) and plain spoofing.
    let mut h2 = H2::connect(&w).await;
    let id = h2
        .get(b"GET", b"/metrics", &[(b"X-Remote-User", b"system:admin")])
        .await;
    let stream = h2.wait_for(id, Duration::from_secs(10)).await;
    assert_ne!(
        stream.status,
        Some(200),
        "upper-case h2 header names are malformed: {stream:?}"
    );
    let mut h2 = H2::connect(&w).await;
    let id = h2
        .get(
            b"GET",
            b"/metrics",
            &[
                (b"x-remote-user", b"system:admin"),
                (b"x-remote-groups", b"system:masters"),
                (b"proxy-authorization", b"Basic eA=="),
                (b"te", b"trailers"),
                (b"accept", b"text/plain"),
            ],
        )
        .await;
    let stream = h2.wait_for(id, Duration::from_secs(10)).await;
    assert_eq!(stream.status, Some(200), "{stream:?}");
    let seen = w.echo.seen();
    assert_eq!(seen.len(), 2, "{:?}", w.forwarded_paths());
    let headers = &seen[1].headers;
    assert_clean(headers, "h2");
    let users: Vec<_> = headers.get_all("x-remote-user").iter().collect();
    assert_eq!(users, [SA], "{headers:?}");
}

#[tokio::test]
async fn ignored_paths_are_cleaned_too() {
    let w = world(&["--ignore-paths=/healthz", "--auth-header-fields-enabled"]).await;
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\n{HOSTILE_HEADERS}\
         Authorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    let exchange = h1(&w, request.as_bytes(), 1).await;
    assert_eq!(exchange.statuses(), [200], "{}", exchange.text());
    let headers = &w.echo.seen()[0].headers;
    assert_clean(headers, "ignored path");
    assert!(
        !headers.contains_key("x-remote-user"),
        "no reviewed user, no identity: {headers:?}"
    );
    assert!(!headers.contains_key("x-remote-groups"), "{headers:?}");
    assert_eq!(w.api.token_reviews(), 0);
}
