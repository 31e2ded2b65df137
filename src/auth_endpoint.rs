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

use std::{sync::Arc, time::Instant};

use http::{header, request::Parts, HeaderMap, HeaderValue, Method, Request, Response, Uri};
use hyper::body::Incoming;

use crate::{
    body::{self, ProxyBody},
    error::ProxyError,
    guard::{log_failure, Guard},
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
        // The fronting proxy's certificate is not the user's.
        let peer = Peer {
            addr: peer.addr,
            certificate_user: None,
            lane: peer.lane.clone(),
            connection: Arc::clone(&peer.connection),
        };
        let mut user = None;
        let decision = match original(&parts, &self.settings.style) {
            Ok(original) => self.guard.admit(&original, &peer, &mut user).await,
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
    // Origin form only: the path the fronting proxy will serve, as it will serve it.
    let uri: Uri = target
        .parse()
        .ok()
        .filter(|uri: &Uri| uri.scheme().is_none() && uri.authority().is_none())
        .ok_or(ProxyError::BadRequest("the original URI is not a path"))?;
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = without_descriptions(&parts.headers);
    Ok(request.into_parts().0)
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
}
