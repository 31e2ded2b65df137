//! The auth endpoint: Kubernetes RBAC decisions for a proxy already in front of a
//! service (nginx `auth_request`, Traefik `forwardAuth`, Envoy `ext_authz` over HTTP),
//! on `--auth-endpoint-address`. Nothing is forwarded from here.
//!
//! The fronting proxy sends a request that describes the original one; which headers
//! describe it is fixed by `--auth-endpoint-style`, never guessed, so a client cannot
//! pick the convention (and with it the path that is reviewed) by sending another
//! proxy's headers. The original request then goes through the guard's own admission —
//! the same path checks, path policy, caches and authorization chain as a proxied
//! request — and the answer is 200 with the identity in response headers the fronting
//! proxy can pass on, or the proxy's own 400/401/403/404/503 with the same bodies. An
//! error reaching the apiserver is never a 2xx.
//!
//! A client certificate on this listener belongs to the fronting proxy, not to the
//! user, so it never authenticates anyone here: only the forwarded bearer token does.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Instant,
};

use http::{header, request::Parts, HeaderMap, HeaderValue, Method, Request, Response, Uri};
use hyper::body::Incoming;

use crate::{
    body::{self, ProxyBody},
    error::ProxyError,
    guard::{log_failure, Budget, Guard, Trail},
    server::{Handler, Peer},
    upstream::IdentityHeaders,
};

/// Which fronting proxy's conventions describe the original request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Style {
    /// nginx `auth_request`: `X-Original-Method` and `X-Original-URI`, which the
    /// location doing the subrequest must set (`proxy_set_header`).
    Nginx,
    /// Traefik `forwardAuth`: `X-Forwarded-Method` and `X-Forwarded-Uri`.
    Traefik,
    /// Envoy `ext_authz` (HTTP service): the original method and path, with this
    /// `path_prefix` in front.
    Envoy { prefix: String },
}

/// The auth endpoint's settings.
#[derive(Debug, Clone)]
pub struct AuthEndpointSettings {
    /// `--auth-endpoint-style` (and `--auth-endpoint-path-prefix` for Envoy).
    pub style: Style,
    /// The names the identity is answered in (`--auth-header-user-field-name`, …).
    pub identity: IdentityHeaders,
}

/// Answers whether a described request may pass.
pub(crate) struct AuthEndpoint {
    pub(crate) guard: Arc<Guard>,
    pub(crate) settings: AuthEndpointSettings,
}

impl Handler for AuthEndpoint {
    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: Arc<Peer>,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        let (method, uri) = (request.method().clone(), request.uri().clone());
        let (parts, _body) = request.into_parts();
        // The fronting proxy's certificate is not the user's, and its address is every
        // user's: reviews are capped per client it serves, not per fronting proxy.
        let peer = Peer {
            addr: client_address(&parts.headers, peer.addr),
            certificate: Default::default(),
            upstreams: peer.upstreams.clone(),
            connection: Arc::clone(&peer.connection),
        };
        let mut trail = Trail::default();
        let decision = match original(&parts, &self.settings.style) {
            Ok(original) => self
                .guard
                .admit(&original, &peer, &mut trail, &Budget::none())
                .await
                .map(|admitted| admitted.user()),
            Err(error) => Err(error),
        };
        let response = match decision {
            Ok(user) => allowed(user.as_deref(), &self.settings.identity),
            Err(error) => {
                log_failure(&error, &method, &uri, peer.addr);
                error.into_response()
            }
        };
        self.guard
            .metrics
            .request(response.status().as_u16(), started.elapsed().as_secs_f64());
        response
    }
}

/// The request the fronting proxy describes: its method and target from the style's
/// headers (all of them required), and the headers it was sent with.
fn original(parts: &Parts, style: &Style) -> Result<Parts, ProxyError> {
    let header = |name: &'static str| -> Result<&str, ProxyError> {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .ok_or(ProxyError::BadRequest(
                "the auth request does not describe the original request (see --auth-endpoint-style)",
            ))
    };
    let (method, target) = match style {
        Style::Nginx => (
            header("x-original-method")?.to_owned(),
            header("x-original-uri")?.to_owned(),
        ),
        Style::Traefik => (
            header("x-forwarded-method")?.to_owned(),
            header("x-forwarded-uri")?.to_owned(),
        ),
        Style::Envoy { prefix } => {
            let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let target = path_and_query
                .strip_prefix(prefix.as_str())
                .filter(|rest| rest.starts_with('/'))
                .ok_or(ProxyError::BadRequest(
                    "the auth request's path does not start with --auth-endpoint-path-prefix",
                ))?;
            (parts.method.as_str().to_owned(), target.to_owned())
        }
    };
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| ProxyError::BadRequest("the original method is not a method"))?;
    let uri = original_uri(&target)?;
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = without_descriptions(&parts.headers);
    Ok(request.into_parts().0)
}

/// The original request target, reviewed as the whole string the upstream will see
/// (nginx forwards `$request_uri` raw), or refused: origin form only, and nothing
/// `http::Uri` would drop or the fronting proxy could read differently. A `#` is the
/// case in point: `Uri` drops it and what follows, so `/public/x#/../../admin/x` would
/// be reviewed as `/public/x` while nginx passes all of it on. Spaces, control
/// characters, `<`, `>`, and non-ASCII bytes do not parse (400); backslashes, dot
/// segments and encoded dots and slashes are the guard's own 400s. Encoded `#` and
/// `?` are refused too: a fronting proxy that decodes the path before passing it on
/// (nginx with a URI in `proxy_pass`) would cut the path there.
fn original_uri(target: &str) -> Result<Uri, ProxyError> {
    if !target.starts_with('/') {
        return Err(ProxyError::BadRequest(
            "the original URI is not a path (origin form)",
        ));
    }
    let uri: Uri = target
        .parse()
        .map_err(|_| ProxyError::BadRequest("the original URI is not a path"))?;
    let whole = uri.authority().is_none()
        && uri
            .path_and_query()
            .is_some_and(|parsed| parsed.as_str() == target);
    if !whole {
        return Err(ProxyError::BadRequest(
            "the original URI has a fragment (#): it would be reviewed without it",
        ));
    }
    let lower = target.to_ascii_lowercase();
    if lower.contains("%23") || lower.contains("%3f") {
        return Err(ProxyError::BadRequest(
            "percent-encoded # or ? in the original URI",
        ));
    }
    Ok(uri)
}

/// The client the fronting proxy serves: the last address in `X-Forwarded-For` (the
/// one the fronting proxy set or appended itself; those before it are the client's
/// word), else the fronting proxy's own address. Trusted for the same reason as the
/// style's other headers: only the fronting proxy reaches this endpoint. It keys the
/// per-client review cap and names the client in the log; it authorizes nothing.
fn client_address(headers: &HeaderMap, proxy: SocketAddr) -> SocketAddr {
    let last = headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .map(str::trim);
    let parsed = last.and_then(|hop| {
        hop.parse::<IpAddr>()
            .ok()
            .or_else(|| hop.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
    });
    parsed.map_or(proxy, |ip| SocketAddr::new(ip, 0))
}

/// The auth request's headers minus the ones that describe the original request: a
/// rewrite by header must not read the description as if it were the request.
fn without_descriptions(headers: &HeaderMap) -> HeaderMap {
    let mut headers = headers.clone();
    for name in [
        "x-original-method",
        "x-original-uri",
        "x-forwarded-method",
        "x-forwarded-uri",
    ] {
        headers.remove(name);
    }
    headers
}

/// 200, with who it is (nobody for an `--ignore-paths` path).
fn allowed(
    user: Option<&crate::identity::User>,
    identity: &IdentityHeaders,
) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(""));
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(user) = user {
        if let Ok(name) = HeaderValue::from_str(&user.name) {
            headers.insert(identity.user.clone(), name);
        }
        if let Ok(groups) = HeaderValue::from_str(&user.groups.join(&identity.separator)) {
            headers.insert(identity.groups.clone(), groups);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str, headers: &[(&'static str, &str)]) -> Parts {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn each_style_reads_its_own_headers_only() {
        let nginx = parts(
            "GET",
            "/auth",
            &[
                ("x-original-method", "GET"),
                ("x-original-uri", "/metrics?x=1"),
                ("x-forwarded-uri", "/other"),
                ("authorization", "Bearer t"),
            ],
        );
        let described = original(&nginx, &Style::Nginx).unwrap();
        assert_eq!(described.uri, "/metrics?x=1");
        assert_eq!(described.method, Method::GET);
        assert!(described.headers.contains_key("authorization"));
        assert!(!described.headers.contains_key("x-original-uri"));

        let traefik = original(&nginx, &Style::Traefik).unwrap_err();
        assert!(
            matches!(traefik, ProxyError::BadRequest(_)),
            "Traefik's headers are missing: {traefik}"
        );

        let envoy = parts("POST", "/ext-authz/api/v1/query?q=up", &[]);
        let style = Style::Envoy {
            prefix: "/ext-authz".into(),
        };
        let described = original(&envoy, &style).unwrap();
        assert_eq!(described.uri, "/api/v1/query?q=up");
        assert_eq!(described.method, Method::POST);
        assert!(matches!(
            original(&parts("GET", "/metrics", &[]), &style),
            Err(ProxyError::BadRequest(_))
        ));
    }

    #[test]
    fn the_original_uri_must_be_a_path() {
        for target in ["http://evil/metrics", "//evil/x", "*", ""] {
            let request = parts(
                "GET",
                "/auth",
                &[("x-original-method", "GET"), ("x-original-uri", target)],
            );
            let result = original(&request, &Style::Nginx);
            let refused = match &result {
                Err(ProxyError::BadRequest(_)) => true,
                // `//evil/x` is a path to `http::Uri`; the guard's own path checks see it.
                Ok(parts) => parts.uri.authority().is_none(),
                Err(_) => false,
            };
            assert!(refused, "{target:?}: {:?}", result.map(|p| p.uri));
        }
    }

    #[test]
    fn the_client_is_the_last_forwarded_for_hop_else_the_fronting_proxy() {
        let proxy: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let table: [(&[&str], &str); 8] = [
            (&[], "127.0.0.1:40000"),
            (&["10.0.0.7"], "10.0.0.7:0"),
            (&["192.0.2.1, 10.0.0.7"], "10.0.0.7:0"),
            (&["192.0.2.1", "10.0.0.8"], "10.0.0.8:0"),
            (&["10.0.0.7:5555"], "10.0.0.7:0"),
            (&["fd00::1"], "[fd00::1]:0"),
            (&["[fd00::1]:5555"], "[fd00::1]:0"),
            (&["unknown"], "127.0.0.1:40000"),
        ];
        for (values, want) in table {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
            }
            let got = client_address(&headers, proxy);
            assert_eq!(got, want.parse::<SocketAddr>().unwrap(), "{values:?}");
        }
    }
}
