//! Request → review attributes, and header hygiene, on arbitrary input.
//!
//! Input layout: byte 0 picks the method, the path policy and the identity-header
//! settings; the rest is split on `\n`: the first line is the request target (bytes,
//! parsed as an `http::Uri` the way hyper would), every other line is a header
//! `name: value` (lines that are not a valid header are skipped).
//!
//! Properties:
//! - an accepted path is exactly `uri.path()`, starts with `/`, has no `.`/`..`
//!   segment, no backslash and no percent-encoded dot, slash, backslash or NUL;
//! - the path policy and the review attributes never panic, and the attributes
//!   carry the accepted path byte for byte;
//! - `BearerToken::from_headers` never panics and its `Debug` never shows the token;
//! - after `clean_request_headers` no credential, hop-by-hop header, header named in
//!   `Connection`, or client-supplied identity header is left.

#![no_main]

use std::sync::OnceLock;

use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Uri};
use libfuzzer_sys::fuzz_target;
use scrape_guard::{
    clean_request_headers, forwardable_path, Attributes, BearerToken, IdentityHeaders, PathPolicy,
};

fn policies() -> &'static [PathPolicy] {
    static POLICIES: OnceLock<Vec<PathPolicy>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        vec![
            PathPolicy::default(),
            PathPolicy::new(&s(&["/metrics", "/metrics/*", "/api/*/metrics"]), &[]).unwrap(),
            PathPolicy::new(&[], &s(&["/healthz", "/static/*", "/[a-c]?/*"])).unwrap(),
            PathPolicy::new(&s(&["/*", "/*/*"]), &[]).unwrap(),
        ]
    })
}

const METHODS: [Method; 8] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::OPTIONS,
    Method::CONNECT,
];

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn check_path(selector: u8, target: &[u8]) {
    let Ok(uri) = Uri::try_from(target) else {
        return;
    };
    let Ok(path) = forwardable_path(&uri) else {
        return;
    };
    assert_eq!(path, uri.path());
    assert!(path.starts_with('/'), "{path:?}");
    assert!(
        !path.split('/').any(|s| s == "." || s == ".."),
        "dot segment accepted: {path:?}"
    );
    assert!(!path.contains('\\'), "backslash accepted: {path:?}");
    let lower = path.to_ascii_lowercase();
    for encoded in ["%2e", "%2f", "%5c", "%00"] {
        assert!(!lower.contains(encoded), "{encoded} accepted: {path:?}");
    }
    let policies = policies();
    let _ = policies[selector as usize % policies.len()].route(path);
    let method = &METHODS[(selector >> 2) as usize % METHODS.len()];
    let attributes = Attributes::new(method, path);
    assert_eq!(&*attributes.path, path);
    assert!(attributes.resource.is_none());
    let _ = attributes.action();
}

fn check_headers(selector: u8, lines: &[&[u8]]) {
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.trim_ascii();
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        else {
            continue;
        };
        headers.append(name, value);
    }

    // Parsing the credential never panics, and never shows it.
    if let Ok(token) = BearerToken::from_headers(&headers) {
        let shown = format!("{token:?}");
        let value = headers[header::AUTHORIZATION].to_str().unwrap();
        let raw = value.trim().split_once(' ').map(|(_, t)| t.trim()).unwrap_or("");
        assert!(!raw.is_empty());
        assert!(
            !shown.contains(raw) || "BearerToken(<redacted, bytes>)".contains(raw) || raw.bytes().all(|b| b.is_ascii_digit()),
            "Debug shows the token: {shown}"
        );
    }

    let (user, groups) = match selector >> 5 {
        0..=3 => ("x-remote-user", "x-remote-groups"),
        4 | 5 => ("x-forwarded-user", "x-forwarded-groups"),
        _ => ("x-user", "x-groups"),
    };
    let identity = IdentityHeaders {
        enabled: selector & 0x10 != 0,
        user: HeaderName::from_static(user),
        groups: HeaderName::from_static(groups),
        separator: "|".into(),
    };
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    clean_request_headers(&mut headers, &identity);
    for name in HOP_BY_HOP.iter().copied().chain(["authorization", user, groups]) {
        assert!(!headers.contains_key(name), "{name} left: {headers:?}");
    }
    for name in &named {
        assert!(!headers.contains_key(name), "{name} (named in Connection) left");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let lines: Vec<&[u8]> = rest.split(|&b| b == b'\n').collect();
    check_path(selector, lines[0]);
    check_headers(selector, &lines[1..]);
});
