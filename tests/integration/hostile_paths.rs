//! Hostile request targets: every path, method and rewrite trick is either refused or
//! authorized as exactly what the exporter then receives — checked on the exporter's
//! record (`Echo::seen`) and the fake apiserver's review counters, never only on the
//! status code. Targets go over raw TLS sockets (HTTP/1.1 written by hand, HTTP/2
//! framed by hand: `support::http1`, `support::http2`) so no client library normalises
//! them first.

use scrape_guard_testkit as support;

use std::time::Duration;

use support::{
    http1::{get_request, h1},
    http2::H2,
    Echo, FakeApiserver, Pki, Proxy, World,
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
// Paths
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Want {
    /// 400 (or 404/414/431, or the connection closed without a response); nothing
    /// forwarded, nothing reviewed.
    Refused,
    /// Authorized and forwarded with exactly this path.
    Forwarded(&'static str),
    /// Either refused, or forwarded with the authorized path byte for byte.
    Either,
}

/// Request targets that could mean something else to an upstream, over HTTP/1.1.
fn h1_path_cases() -> Vec<(&'static str, Vec<u8>, Want)> {
    let long = {
        let mut p = b"/metrics/".to_vec();
        p.resize(100 * 1024, b'a');
        p
    };
    vec![
        ("GET", b"/metrics/../secret".to_vec(), Want::Refused),
        ("GET", b"/metrics/..".to_vec(), Want::Refused),
        ("GET", b"/./metrics".to_vec(), Want::Refused),
        ("GET", b"/metrics/%2e%2e/secret".to_vec(), Want::Refused),
        ("GET", b"/metrics/%2E%2e/secret".to_vec(), Want::Refused),
        ("GET", b"/metrics/.%2e/secret".to_vec(), Want::Refused),
        ("GET", b"/metrics%2fsecret".to_vec(), Want::Refused),
        ("GET", b"/metrics%2F..%2Fsecret".to_vec(), Want::Refused),
        ("GET", b"/metrics%5csecret".to_vec(), Want::Refused),
        ("GET", b"/metrics\\..\\secret".to_vec(), Want::Refused),
        ("GET", b"/metrics%00.txt".to_vec(), Want::Refused),
        ("GET", b"/metrics;/../secret".to_vec(), Want::Refused),
        (
            "GET",
            b"https://evil.example/metrics/../secret".to_vec(),
            Want::Refused,
        ),
        ("OPTIONS", b"*".to_vec(), Want::Refused),
        ("CONNECT", b"evil.example:443".to_vec(), Want::Refused),
        ("GET", b"evil.example:443".to_vec(), Want::Refused),
        ("GET", b"/metrics\xff\xfe".to_vec(), Want::Refused),
        (
            "GET",
            b"/metrics/\xc0\xae\xc0\xae/secret".to_vec(),
            Want::Refused,
        ),
        ("GET", long, Want::Refused),
        (
            "GET",
            b"//double-slash".to_vec(),
            Want::Forwarded("//double-slash"),
        ),
        (
            "GET",
            b"https://evil.example/absolute-form".to_vec(),
            Want::Forwarded("/absolute-form"),
        ),
        (
            "GET",
            b"http://127.0.0.1:1/absolute-plain".to_vec(),
            Want::Forwarded("/absolute-plain"),
        ),
        ("GET", b"/fragment#/../secret".to_vec(), Want::Either),
        (
            "GET",
            b"/query?x=/../secret".to_vec(),
            Want::Forwarded("/query"),
        ),
        ("GET", b"/semi/..;/secret".to_vec(), Want::Either),
        ("GET", b"/double-%252e%252e/secret".to_vec(), Want::Either),
        (
            "GET",
            "/m\u{e9}trics-utf8".as_bytes().to_vec(),
            Want::Either,
        ),
        ("GET", b"/MeTrIcS".to_vec(), Want::Either),
        ("GET", b"?only-query".to_vec(), Want::Either),
    ]
}

/// The path part of a request target, as the fake apiserver would be asked for it if
/// it were authorized literally (absolute-form: after the authority).
fn literal_path(target: &[u8]) -> String {
    let text = String::from_utf8_lossy(target).into_owned();
    let text = match text.split_once("://") {
        Some((_, rest)) => rest
            .find('/')
            .map_or("/".to_owned(), |i| rest[i..].to_owned()),
        None => text,
    };
    text.split(['?', '#']).next().unwrap_or_default().to_owned()
}

/// Checks one case against the exporter's record and the apiserver's counters.
/// `before` = (forwarded, sars, token reviews) before the request.
fn check_case(
    w: &World,
    label: &str,
    want: Want,
    status: Option<u16>,
    before: (usize, usize, usize),
) -> Result<(), String> {
    let seen = w.forwarded_paths();
    let new: Vec<&String> = seen[before.0..].iter().collect();
    let (sars, reviews) = (w.api.sars(), w.api.token_reviews());
    match (want, new.as_slice()) {
        (Want::Refused, []) => {
            if !matches!(status, None | Some(400 | 404 | 414 | 431)) {
                return Err(format!(
                    "{label}: refused with unexpected status {status:?}"
                ));
            }
            if sars != before.1 {
                return Err(format!("{label}: refused but a SAR was sent"));
            }
            Ok(())
        }
        (Want::Refused, forwarded) => Err(format!(
            "{label}: should be refused, but the exporter got {forwarded:?} (status {status:?})"
        )),
        (Want::Forwarded(path), []) => Err(format!(
            "{label}: should be forwarded as {path:?}, got status {status:?}, nothing forwarded"
        )),
        (Want::Either, []) => {
            // Refused or denied: fine, as long as nothing went through.
            let _ = reviews;
            Ok(())
        }
        (_, [forwarded]) => {
            if status != Some(200) {
                return Err(format!("{label}: forwarded but answered {status:?}"));
            }
            if let Want::Forwarded(path) = want {
                if forwarded.as_str() != path {
                    return Err(format!(
                        "{label}: forwarded {forwarded:?}, wanted exactly {path:?}"
                    ));
                }
            }
            if sars != before.1 + 1 {
                return Err(format!(
                    "{label}: forwarded {forwarded:?} after {} SARs (want exactly 1)",
                    sars - before.1
                ));
            }
            let authorized = w.last_sar_path();
            if &authorized != *forwarded {
                return Err(format!(
                    "{label}: authorized {authorized:?} but forwarded {forwarded:?}"
                ));
            }
            Ok(())
        }
        (_, many) => Err(format!("{label}: one request, forwarded {many:?}")),
    }
}

#[tokio::test]
async fn h1_paths_are_refused_or_authorized_exactly_as_forwarded() {
    let w = world(&[]).await;
    let mut failures = Vec::new();
    for (method, target, want) in h1_path_cases() {
        // Allow the literal path, so a request is only ever denied because the proxy
        // asked about a *different* path than the one it received.
        w.api.allow(SA, "get", &literal_path(&target));
        w.api
            .allow(SA, &method.to_ascii_lowercase(), &literal_path(&target));
        let label = format!(
            "HTTP/1.1 {method} {}",
            String::from_utf8_lossy(&target[..target.len().min(60)])
        );
        let before = (w.echo.seen().len(), w.api.sars(), w.api.token_reviews());
        let exchange = h1(&w, &get_request(method, &target, TOKEN, ""), 1).await;
        let status = exchange.responses.first().map(|r| r.status);
        eprintln!(
            "{label}: status {status:?} closed {} forwarded {:?}",
            exchange.closed,
            &w.forwarded_paths()[before.0..]
        );
        if let Err(e) = check_case(&w, &label, want, status, before) {
            failures.push(e);
        }
        if let Some(r) = exchange.responses.first() {
            if String::from_utf8_lossy(&r.body).contains(TOKEN) {
                failures.push(format!("{label}: token echoed in the body"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    w.healthy_scrape().await;
}

#[tokio::test]
async fn h2_paths_are_refused_or_authorized_exactly_as_forwarded() {
    let w = world(&[]).await;
    let mut failures = Vec::new();
    let cases: Vec<(&str, Vec<u8>, Want)> = vec![
        ("GET", b"/metrics/../secret".to_vec(), Want::Refused),
        ("GET", b"/metrics/%2e%2e/secret".to_vec(), Want::Refused),
        ("GET", b"/metrics%2Fsecret".to_vec(), Want::Refused),
        ("GET", b"/metrics%5Csecret".to_vec(), Want::Refused),
        ("GET", b"/metrics\\..\\secret".to_vec(), Want::Refused),
        ("GET", b"/./metrics".to_vec(), Want::Refused),
        ("GET", b"/metrics\xff\xfe".to_vec(), Want::Refused),
        (
            "GET",
            b"https://evil.example/metrics".to_vec(),
            Want::Refused,
        ),
        ("GET", b"metrics".to_vec(), Want::Refused),
        ("GET", b"".to_vec(), Want::Refused),
        ("OPTIONS", b"*".to_vec(), Want::Refused),
        ("GET", b"/metrics\r\nx-injected: 1".to_vec(), Want::Refused),
        (
            "GET",
            b"//h2-double".to_vec(),
            Want::Forwarded("//h2-double"),
        ),
        (
            "GET",
            b"/h2-query?x=/../y".to_vec(),
            Want::Forwarded("/h2-query"),
        ),
        ("GET", b"/h2-semi/..;/x".to_vec(), Want::Either),
        ("GET", "/h2-\u{e9}".as_bytes().to_vec(), Want::Either),
    ];
    let mut h2 = H2::connect(&w).await;
    for (method, path, want) in cases {
        w.api.allow(SA, "get", &literal_path(&path));
        let label = format!("HTTP/2 {method} {:?}", String::from_utf8_lossy(&path));
        let before = (w.echo.seen().len(), w.api.sars(), w.api.token_reviews());
        if h2.closed || h2.goaway.is_some() {
            h2 = H2::connect(&w).await;
        }
        let id = h2.get(method.as_bytes(), &path, &[]).await;
        let stream = h2.wait_for(id, Duration::from_secs(10)).await;
        eprintln!(
            "{label}: {stream:?} goaway {:?} forwarded {:?}",
            h2.goaway,
            &w.forwarded_paths()[before.0..]
        );
        if !stream.done() && !h2.closed && h2.goaway.is_none() {
            failures.push(format!("{label}: no answer within 10 s: {stream:?}"));
        }
        if let Err(e) = check_case(&w, &label, want, stream.status, before) {
            failures.push(e);
        }
    }
    // CONNECT: authority-form, no :path.
    let before = (w.echo.seen().len(), w.api.sars(), w.api.token_reviews());
    let mut h2 = H2::connect(&w).await;
    let auth = format!("Bearer {TOKEN}");
    let (id, bytes) = h2.request(
        &[
            (b":method", b"CONNECT"),
            (b":authority", b"evil.example:443"),
            (b"authorization", auth.as_bytes()),
        ],
        false,
    );
    h2.send(&bytes).await;
    let stream = h2.wait_for(id, Duration::from_secs(10)).await;
    if let Err(e) = check_case(&w, "HTTP/2 CONNECT", Want::Refused, stream.status, before) {
        failures.push(e);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    w.healthy_scrape().await;
}

#[tokio::test]
async fn allow_paths_refuse_lookalikes_before_authentication() {
    let w = world(&["--allow-paths=/metrics"]).await;
    for target in [
        &b"//metrics"[..],
        b"/metrics/",
        b"/Metrics",
        b"/metrics/../metrics",
        b"/metrics%2f",
        b"/./metrics",
        b"/metrics/.",
        b"/%6detrics",
        b"https://evil.example//metrics",
    ] {
        let exchange = h1(&w, &get_request("GET", target, TOKEN, ""), 1).await;
        let status = exchange.responses.first().map(|r| r.status);
        assert!(
            matches!(status, Some(400 | 404)),
            "{}: {status:?}",
            String::from_utf8_lossy(target)
        );
    }
    assert_eq!(
        w.api.token_reviews(),
        0,
        "path policy runs before authentication"
    );
    assert!(w.echo.seen().is_empty(), "{:?}", w.forwarded_paths());
    // The one allowed path still works, also in absolute form.
    let exchange = h1(
        &w,
        &get_request("GET", b"https://evil.example/metrics", TOKEN, ""),
        1,
    )
    .await;
    assert_eq!(exchange.statuses(), [200]);
    assert_eq!(w.forwarded_paths(), ["/metrics"]);
}

#[tokio::test]
async fn connect_never_becomes_a_tunnel() {
    let w = world(&[]).await;
    // CONNECT, then (on the same connection, no token) a request that would be
    // forwarded if the connection had been upgraded to a raw tunnel to the exporter.
    let request = format!(
        "CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Authorization: Bearer {TOKEN}\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        port = w.echo.addr.port()
    );
    let exchange = h1(&w, request.as_bytes(), 2).await;
    let statuses = exchange.statuses();
    assert!(
        matches!(statuses.first(), None | Some(400)),
        "CONNECT: {statuses:?}\n{}",
        exchange.text()
    );
    assert!(
        statuses.get(1).is_none_or(|s| *s == 401),
        "the tunnelled request: {statuses:?}"
    );
    assert!(w.echo.seen().is_empty(), "{:?}", w.forwarded_paths());
    w.healthy_scrape().await;
}

/// What the exporter received, as "METHOD target".
fn forwarded_requests(w: &World) -> Vec<String> {
    w.echo
        .seen()
        .iter()
        .map(|s| format!("{} {}", s.method, s.uri))
        .collect()
}

/// CONNECT takes an authority-form target; with an origin-form path the proxy routes
/// and authorizes the path, then the HTTP client turns the request into
/// `CONNECT <exporter authority>`: the exporter gets a request target nobody reviewed.
#[tokio::test]
async fn connect_with_an_origin_form_path_is_refused() {
    let w = world(&["--ignore-paths=/healthz"]).await;
    // As granted by a wildcard-verb rule (cluster-admin's nonResourceURLs rule is one).
    w.api.allow(SA, "connect", "/metrics");
    for target in [&b"/healthz"[..], b"/metrics"] {
        let exchange = h1(&w, &get_request("CONNECT", target, TOKEN, ""), 1).await;
        let status = exchange.responses.first().map(|r| r.status);
        assert!(
            matches!(status, None | Some(400 | 405)),
            "CONNECT {}: {status:?}",
            String::from_utf8_lossy(target)
        );
    }
    assert!(
        w.echo.seen().is_empty(),
        "the exporter received {:?}",
        forwarded_requests(&w)
    );
}

/// Methods are case-sensitive (RFC 9110 §9.1): `gEt` is not GET. A `get` grant must not
/// authorize it (kube-rbac-proxy reviews unknown methods as verb "*" / "").
#[tokio::test]
async fn a_get_grant_does_not_cover_other_spellings_of_get() {
    let w = world(&[]).await;
    for method in ["gEt", "get", "Get"] {
        let exchange = h1(&w, &get_request(method, b"/metrics", TOKEN, ""), 1).await;
        let status = exchange.responses.first().map(|r| r.status);
        assert_ne!(status, Some(200), "{method:?}");
    }
    assert!(
        w.echo.seen().is_empty(),
        "the exporter received {:?}",
        forwarded_requests(&w)
    );
    // GET itself is `get` (HEAD too; this raw reader expects a body, so GET only here).
    for method in ["GET"] {
        let exchange = h1(&w, &get_request(method, b"/metrics", TOKEN, ""), 1).await;
        assert_eq!(
            exchange.responses.first().map(|r| r.status),
            Some(200),
            "{method}"
        );
    }
}

// ---------------------------------------------------------------------------------
// Property: what is accepted is exactly the URI's path, with no dot segments.
// ---------------------------------------------------------------------------------

mod properties {
    use http::{Method, Uri};
    use proptest::prelude::*;
    use scrape_guard::{forwardable_path, Attributes, PathPolicy, ProxyError, Route};

    /// Bytes that make paths interesting: separators, dots, escapes, a few letters,
    /// query and fragment marks, high bytes.
    fn pathish() -> impl Strategy<Value = Vec<u8>> {
        let atoms: Vec<&'static [u8]> = vec![
            b"/",
            b"/",
            b".",
            b"..",
            b"%",
            b"%2e",
            b"%2E",
            b"%2f",
            b"%2F",
            b"%5c",
            b"%5C",
            b"%00",
            b"%25",
            b"\\",
            b"m",
            b"metrics",
            b"a",
            b"?",
            b"#",
            b";",
            b"*",
            b"~",
            b":",
            b"@",
            b"\xc3\xa9",
            b"\xff",
            b"%c0%ae",
            b"//",
            b"/./",
            b"/../",
        ];
        let head = prop_oneof![
            Just(&b"/"[..]),
            Just(&b""[..]),
            Just(&b"*"[..]),
            Just(&b"http://h"[..])
        ];
        (
            head,
            prop::collection::vec(prop::sample::select(atoms), 0..24),
        )
            .prop_map(|(h, parts)| {
                let mut out = h.to_vec();
                for p in parts {
                    out.extend_from_slice(p);
                }
                out
            })
    }

    fn policies() -> Vec<PathPolicy> {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        vec![
            PathPolicy::default(),
            PathPolicy::new(&s(&["/metrics", "/metrics/*", "/m*"]), &[]).unwrap(),
            PathPolicy::new(&[], &s(&["/metrics", "/*", "/a/*"])).unwrap(),
        ]
    }

    fn has_dot_segment(path: &str) -> bool {
        path.split('/').any(|s| s == "." || s == "..")
    }

    fn has_encoded_separator(path: &str) -> bool {
        let lower = path.to_ascii_lowercase();
        ["%2e", "%2f", "%5c", "%00"]
            .iter()
            .any(|e| lower.contains(e))
            || path.contains('\\')
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

        #[test]
        fn accepted_paths_are_the_uri_path_without_dot_segments(bytes in pathish()) {
            let Ok(uri) = Uri::try_from(bytes.as_slice()) else { return Ok(()) };
            match forwardable_path(&uri) {
                Ok(path) => {
                    prop_assert_eq!(path, uri.path());
                    prop_assert!(path.starts_with('/'), "{:?}", path);
                    prop_assert!(!has_dot_segment(path), "{:?}", path);
                    prop_assert!(!has_encoded_separator(path), "{:?}", path);
                    for policy in policies() {
                        match policy.route(path) {
                            Ok(Route::Guard) | Ok(Route::Ignore) | Err(ProxyError::NotFound) => {}
                            Err(other) => prop_assert!(false, "route({:?}) = {:?}", path, other),
                        }
                    }
                    for method in [Method::GET, Method::HEAD, Method::POST, Method::OPTIONS] {
                        let attributes = Attributes::new(&method, path);
                        prop_assert_eq!(&*attributes.path, path);
                        prop_assert!(attributes.resource.is_none());
                    }
                }
                Err(error) => {
                    prop_assert!(matches!(error, ProxyError::BadRequest(_)), "{:?}", error);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// --config-file rewrites: every value forwarded is a value reviewed
// ---------------------------------------------------------------------------------

/// With `rewrites.byHttpHeader`, a request is reviewed once per header value and all
/// must be allowed. A value that is not visible ASCII (here UTF-8 `café`) is skipped
/// by the review but still forwarded, so an exporter reading the first value (Go's
/// `Header.Get`) acts on a namespace nobody reviewed.
#[tokio::test]
async fn rewrite_header_values_are_all_reviewed_or_refused() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token(TOKEN, SA);
    // The fake apiserver keys resource reviews as (user, "", ""): allow them all, and
    // count them.
    api.allow(SA, "", "");
    let echo = Echo::start().await;
    let config = pki.dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "authorization:\n  resourceAttributes: {namespace: \"{{ .Value }}\", apiGroup: \
         monitoring.coreos.com, apiVersion: v1, resource: prometheusrules}\n  rewrites:\n    \
         byHttpHeader: {name: x-namespace}\n",
    )
    .unwrap();
    let flag = format!("--config-file={}", config.display());
    let proxy = Proxy::start(&pki, &api, &echo.url(), &[&flag]).await;
    let w = World {
        pki,
        api,
        echo,
        proxy,
        token: TOKEN.to_owned(),
    };

    // Control: two ASCII values, two reviews.
    let exchange = h1(
        &w,
        &get_request(
            "GET",
            b"/metrics",
            TOKEN,
            "X-Namespace: team-a\r\nX-Namespace: team-b\r\n",
        ),
        1,
    )
    .await;
    assert_eq!(exchange.statuses(), [200]);
    assert_eq!(w.api.sars(), 2, "one review per value");

    let before = (w.echo.seen().len(), w.api.sars());
    let exchange = h1(
        &w,
        &get_request(
            "GET",
            b"/metrics",
            TOKEN,
            "X-Namespace: caf\u{e9}\r\nX-Namespace: team-c\r\n",
        ),
        1,
    )
    .await;
    let status = exchange.responses.first().map(|r| r.status);
    let forwarded = w.echo.seen().len() - before.0;
    let reviews = w.api.sars() - before.1;
    assert!(
        forwarded == 0 || reviews == 2,
        "forwarded (status {status:?}) with x-namespace {:?} after {reviews} review(s) of {}",
        w.echo
            .seen()
            .last()
            .unwrap()
            .headers
            .get_all("x-namespace")
            .iter()
            .collect::<Vec<_>>(),
        w.api.last_sar_spec()["resourceAttributes"]["namespace"]
    );
}
