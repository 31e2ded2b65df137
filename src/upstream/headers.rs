//! Header hygiene, the security-relevant part of forwarding: the client's
//! `Authorization` (a token must never reach the exporter), hop-by-hop headers
//! (including any named in `Connection`, which is how a client could otherwise smuggle
//! one past us) and any client-supplied identity headers are removed from every request,
//! whether or not `--auth-header-fields-enabled` is on.

use std::net::SocketAddr;

use http::{
    header::{self, HeaderName},
    HeaderMap, HeaderValue,
};

/// Headers that carry the caller's identity upstream. The names are always stripped
/// from client requests; `enabled` decides whether we set them.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub enabled: bool,
    pub user: http::HeaderName,
    pub groups: http::HeaderName,
    pub separator: String,
}

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1, plus the
/// non-standard ones Go's reverse proxy also drops).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Strips what must never reach the upstream from a client request.
///
/// That includes every header with an underscore in its name: WSGI, CGI and PHP
/// upstreams read `X_Remote_User` as `X-Remote-User` (both become `HTTP_X_REMOTE_USER`),
/// so an underscore spelling would slip a spoofed identity, or a rewrite value nobody
/// reviewed, past the hyphenated names we strip and review. nginx drops them by default
/// for the same reason.
pub fn clean_request_headers(headers: &mut HeaderMap, identity: &IdentityHeaders) {
    remove_hop_by_hop(headers);
    headers.remove(header::UPGRADE);
    headers.remove(header::AUTHORIZATION);
    headers.remove(&identity.user);
    headers.remove(&identity.groups);
    if headers.keys().any(|name| name.as_str().contains('_')) {
        let underscored: Vec<HeaderName> = headers
            .keys()
            .filter(|name| name.as_str().contains('_'))
            .cloned()
            .collect();
        for name in underscored {
            headers.remove(name);
        }
    }
}

/// Removes hop-by-hop headers, including every header `Connection` names.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Appends the peer to `X-Forwarded-For` (as Go's reverse proxy does) and records
/// that the client spoke TLS.
pub fn add_forwarding_headers(headers: &mut HeaderMap, peer: SocketAddr) {
    const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
    let ip = peer.ip().to_canonical().to_string();
    let prior: Vec<&str> = headers
        .get_all(&XFF)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let value = if prior.is_empty() {
        ip
    } else {
        format!("{}, {ip}", prior.join(", "))
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(XFF, value);
    }
    headers.insert(XFP, HeaderValue::from_static("https"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> IdentityHeaders {
        IdentityHeaders {
            enabled: true,
            user: HeaderName::from_static("x-remote-user"),
            groups: HeaderName::from_static("x-remote-groups"),
            separator: "|".into(),
        }
    }

    #[test]
    fn hygiene_removes_credentials_hop_by_hop_and_spoofed_identity() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer secret"),
            ("connection", "keep-alive, x-smuggled"),
            ("x-smuggled", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic x"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("x-remote-user", "system:admin"),
            ("x-remote-groups", "system:masters"),
            ("accept-encoding", "gzip"),
            ("accept", "text/plain"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        clean_request_headers(&mut headers, &identity());
        let mut left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "accept-encoding"]);
    }

    #[test]
    fn underscore_spellings_of_any_header_are_removed() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x_remote_user", "system:admin"),
            ("x_remote_groups", "system:masters"),
            ("x_namespace", "kube-system"),
            ("x-namespace", "monitoring"),
            ("accept", "text/plain"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        clean_request_headers(&mut headers, &identity());
        let mut left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "x-namespace"]);
    }

    #[test]
    fn forwarding_headers_append() {
        let mut headers = HeaderMap::new();
        let peer: SocketAddr = "[::ffff:10.0.0.7]:5555".parse().unwrap();
        add_forwarding_headers(&mut headers, peer);
        assert_eq!(headers["x-forwarded-for"], "10.0.0.7");
        assert_eq!(headers["x-forwarded-proto"], "https");
        add_forwarding_headers(&mut headers, "127.0.0.1:1".parse().unwrap());
        assert_eq!(headers["x-forwarded-for"], "10.0.0.7, 127.0.0.1");
    }
}
