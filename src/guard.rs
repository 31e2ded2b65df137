//! The spine of the proxy: path policy → authenticate → authorize → forward.
//!
//! `admit` (path policy → authenticate → authorize) and then `forward` read top to
//! bottom like the diagram in ARCHITECTURE.md, one line per stage; `pipeline` is the two.
//! The auth endpoint calls `admit` alone.
//! Each stage returns `ProxyError` on failure; `handle` turns that into the response
//! (via `ProxyError::into_response`, the only mapping) and logs it. Nothing reaches
//! `forward` that did not pass every stage before it, and the path the authorizer sees
//! is the very string the upstream receives — or, for a route of `upstreams:`, that
//! string with the route's pattern stripped (`routes.rs`), computed from it once.
//! What `admit` learns on the way (who, what decided) is kept in a `Trail` for the
//! access and audit logs (`guard/audit.rs`).

mod audit;
mod budget;

use std::{net::SocketAddr, sync::Arc, time::Instant};

use http::{header, uri::PathAndQuery, HeaderValue, Method, Request, Response, Uri};
use hyper::body::Incoming;

use self::audit::Arrived;
pub(crate) use self::audit::Trail;
use crate::{
    apiserver::Requester,
    audit::Audit,
    authn::Authenticator,
    authz::Authorizer,
    body::ProxyBody,
    error::ProxyError,
    identity::User,
    logging::{cut, UNAUTHENTICATED},
    metrics::Metrics,
    paths::{PathPolicy, Route},
    routes::{Routed, Routes, Selected},
    server::{Handler, Peer},
    upstream::{Deadline, Upstream},
};

pub(crate) use self::budget::Budget;

/// Everything a request passes through, in order.
pub(crate) struct Guard {
    pub paths: PathPolicy,
    pub authn: Authenticator,
    /// Which upstream, and whose authorization: the routes of `upstreams:`, or the one
    /// `--upstream` for every path.
    pub routes: Routes<Target>,
    pub metrics: Arc<Metrics>,
    /// `--access-log`: one line per request.
    pub access_log: bool,
    /// `--audit-log-profile`: one event per guarded request.
    pub audit: Audit,
}

/// What a route has of its own: its authorization and its upstream.
pub(crate) struct Target {
    pub authz: Authorizer,
    pub upstream: Upstream,
}

/// What `admit` decided.
pub(crate) enum Admitted<'r, 'p> {
    /// `--livez-path`: answered here, nobody asked.
    Livez,
    /// To be forwarded on this route, as this user (`None`: an `--ignore-paths` path).
    Route {
        routed: Routed<'r, 'p, Target>,
        user: Option<Arc<User>>,
    },
}

impl Admitted<'_, '_> {
    /// Who was admitted, if anyone was asked.
    pub(crate) fn user(self) -> Option<Arc<User>> {
        match self {
            Admitted::Livez => None,
            Admitted::Route { user, .. } => user,
        }
    }
}

impl Handler for Guard {
    /// Serves one request: the proxied response, or the error's response.
    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: Arc<Peer>,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        // Cheap clones (shared bytes) kept only to describe the request in the log.
        let (method, uri) = (request.method().clone(), request.uri().clone());
        let arrived = Arrived::new(&self.audit, &request, &method, &uri);
        let mut trail = Trail::default();
        let waiting = GoneAway {
            started,
            uri: &uri,
            answered: false,
        };
        let response = match self.pipeline(request, &peer, &mut trail).await {
            Ok(response) => response,
            Err(error) => {
                log_failure(&error, &method, &uri, peer.addr);
                error.into_response()
            }
        };
        waiting.answered();
        let elapsed = started.elapsed();
        self.metrics
            .request(response.status().as_u16(), elapsed.as_secs_f64());
        self.record_audit(&arrived, &trail, &response, &peer, elapsed);
        if self.access_log {
            log_access(
                &method,
                &uri,
                &response,
                trail.user.as_deref(),
                peer.addr,
                elapsed,
            );
        }
        response
    }
}

impl Guard {
    async fn pipeline(
        &self,
        request: Request<Incoming>,
        peer: &Peer,
        trail: &mut Trail,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let budget = Budget::of(request.headers());
        let (parts, body) = request.into_parts();
        let admitted = self.admit(&parts, peer, trail, &budget).await?;
        let Admitted::Route { routed, user } = admitted else {
            return Ok(livez());
        };
        // Made from the authorized path before the request is let go of.
        let target = routed
            .target
            .upstream
            .target_path(routed.tail(), parts.uri.query())?;
        let upstream = &routed.target.upstream;
        let deadline = budget.exporter(upstream.timeout());
        let request = Request::from_parts(parts, body);
        self.forward(upstream, request, target, user.as_deref(), peer, deadline)
            .await
            .map_err(|error| budget.explain(error, upstream.timeout()))
    }

    /// Route → path policy → authenticate → authorize: may this request reach an
    /// upstream, which one, and as whom (`None` for an `--ignore-paths` path, which
    /// nobody is asked about). The proxy forwards what is admitted; the auth endpoint
    /// only answers. Authentication and authorization run within their share of
    /// `budget` (`guard/budget.rs`).
    pub(crate) async fn admit<'r, 'p>(
        &'r self,
        parts: &'p http::request::Parts,
        peer: &Peer,
        trail: &mut Trail,
        budget: &Budget,
    ) -> Result<Admitted<'r, 'p>, ProxyError> {
        forwardable_method(&parts.method)?;
        let path = forwardable_path(&parts.uri)?;
        let routed = match self.routes.select(path, parts.uri.query())? {
            Selected::Livez => return Ok(Admitted::Livez),
            Selected::Route(routed) => routed,
        };
        let authz = &routed.target.authz;
        if self.paths.route(routed.path())? == Route::Ignore {
            return Ok(Admitted::Route { routed, user: None });
        }
        trail.guarded = true;
        let reviews = async {
            // Who first: what an unauthenticated caller asks (rewrite values and all) is
            // not worth the memory to build, and kube-rbac-proxy answers 401 before it, too.
            let user = self.authenticate(&parts.headers, peer).await?;
            trail.user = Some(Arc::clone(&user));
            peer.authenticated();
            let plan = authz.plan(parts, routed.path())?;
            trail.observe(self, &plan);
            // Reviews are capped per client address (`--max-reviews-per-peer`).
            let requester = Requester::Peer(peer.addr.ip());
            authz
                .authorize_plan(&user, &plan, requester, &mut trail.decided)
                .await?;
            Ok(user)
        };
        let timeout = routed.target.upstream.timeout();
        let user = Some(budget.reviews(timeout, reviews).await?);
        Ok(Admitted::Route { routed, user })
    }

    /// The authorizer the probe port's `/metrics` is checked with: that of the route
    /// `/metrics` would take, else the longest pattern's.
    pub(crate) fn metrics_authorizer(&self) -> &Authorizer {
        match self.routes.select("/metrics", None) {
            Ok(Selected::Route(routed)) => &routed.target.authz,
            _ => &self.routes.any().authz,
        }
    }

    /// A verified client certificate first, then the bearer token (kube-rbac-proxy's order).
    async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        peer: &Peer,
    ) -> Result<Arc<User>, ProxyError> {
        let requester = Requester::Peer(peer.addr.ip());
        self.authn
            .authenticate_caller(headers, &peer.certificate, requester)
            .await
    }

    async fn forward(
        &self,
        upstream: &Upstream,
        mut request: Request<Incoming>,
        target: PathAndQuery,
        user: Option<&User>,
        peer: &Peer,
        deadline: Deadline,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        // Honoured or not, a front proxy's headers are not the upstream's to read.
        self.authn.strip_front_proxy_headers(request.headers_mut());
        let started = Instant::now();
        let response = upstream
            .forward(request, target, user, peer.addr, &peer.upstreams, deadline)
            .await;
        self.metrics.upstream(started.elapsed().as_secs_f64());
        response
    }
}

/// Notes a scraper that went away before its answer: hyper drops the request's future
/// then (the connection closed, or an HTTP/2 stream was reset), which is what a
/// scraper's own timeout looks like from here. One line, at debug: it is the scraper's
/// decision, not our failure (kube-rbac-proxy logs "context canceled" at error).
struct GoneAway<'a> {
    started: Instant,
    uri: &'a Uri,
    answered: bool,
}

impl GoneAway<'_> {
    fn answered(mut self) {
        self.answered = true;
    }
}

impl Drop for GoneAway<'_> {
    fn drop(&mut self) {
        if !self.answered {
            tracing::debug!(
                path = %cut(self.uri.path()),
                waited_ms = self.started.elapsed().as_millis(),
                "the client went away before its answer"
            );
        }
    }
}

/// `--livez-path`'s answer: Go's `w.Write([]byte("OK"))`.
fn livez() -> Response<ProxyBody> {
    let mut response = Response::new(crate::body::full("OK"));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// `--access-log`. Bytes are the response's Content-Length when the upstream sent one
/// (a streamed body's size is not known when the line is written). Fields are cut.
fn log_access(
    method: &Method,
    uri: &Uri,
    response: &Response<ProxyBody>,
    user: Option<&User>,
    peer: SocketAddr,
    elapsed: std::time::Duration,
) {
    // Refused before anyone was authenticated: the same budget as the error's own line.
    let refused = user.is_none() && response.status().as_u16() >= 400;
    if refused && !UNAUTHENTICATED.allow("access log lines of refused requests") {
        return;
    }
    let bytes = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    tracing::info!(
        target: "access",
        method = %cut(method.as_str()),
        path = %cut(uri.path()),
        status = response.status().as_u16(),
        user = %cut(user.map_or("-", |u| u.name.as_str())),
        bytes,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        %peer,
        "request"
    );
}

/// Methods the proxy can authorize as the exporter will see them. CONNECT is refused:
/// the upstream client would turn it into `CONNECT <exporter authority>`, a target
/// nobody reviewed. Methods are case-sensitive (RFC 9110), so `gEt` is not GET; rather
/// than let a `get` grant cover a spelling the exporter may treat differently, methods
/// with lower-case letters are refused.
pub(crate) fn forwardable_method(method: &Method) -> Result<(), ProxyError> {
    if *method == Method::CONNECT {
        return Err(ProxyError::BadRequest("CONNECT is not proxied"));
    }
    if method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(ProxyError::BadRequest(
            "HTTP methods are case-sensitive: use upper case",
        ));
    }
    Ok(())
}

/// The request path, refused with 400 when authorizing it literally could differ from
/// what the upstream serves: no origin-form path (CONNECT's authority-form, `*`), dot
/// segments (also `..;x`, which servlet containers read as `..`), or percent-encoded
/// dots, slashes and backslashes that an upstream might decode into one. Everything
/// else is authorized and forwarded byte for byte.
pub fn forwardable_path(uri: &Uri) -> Result<&str, ProxyError> {
    let path = uri.path();
    if !path.starts_with('/') {
        return Err(ProxyError::BadRequest("request target must be a path"));
    }
    // A servlet container drops `;parameters` from a segment before resolving dots.
    let dot_segment = |segment: &str| matches!(segment.split(';').next(), Some("." | ".."));
    if path.split('/').any(dot_segment) {
        return Err(ProxyError::BadRequest("dot segments in the path"));
    }
    let lower = path.to_ascii_lowercase();
    if ["%2e", "%2f", "%5c", "%00"]
        .iter()
        .any(|e| lower.contains(e))
        || path.contains('\\')
    {
        return Err(ProxyError::BadRequest(
            "encoded dot, slash or backslash in the path",
        ));
    }
    Ok(path)
}

/// One line per failed request. What an unauthenticated client can cause (everything
/// but a 403 and the upstream's failures) goes through the process's log budget; every
/// field a client chose is cut (`logging::cut`).
pub(crate) fn log_failure(error: &ProxyError, method: &Method, uri: &Uri, peer: SocketAddr) {
    let status = error.status().as_u16();
    let path = cut(uri.path());
    let method = cut(method.as_str());
    let budgeted = |what| UNAUTHENTICATED.allow(what);
    match error {
        ProxyError::Forbidden {
            user,
            action,
            reason,
        } => {
            let (user, action, reason) = (cut(user), cut(action), cut(reason));
            tracing::info!(status, %peer, %user, %action, %path, %reason, "denied")
        }
        ProxyError::Unauthenticated(reason) if budgeted("401s") => {
            tracing::info!(status, %peer, %method, %path, reason = %cut(reason), "unauthenticated")
        }
        ProxyError::NotFound | ProxyError::BadRequest(_) if budgeted("refused requests") => {
            tracing::info!(status, %peer, %method, %path, %error, "refused")
        }
        // The one line saying where a request's time went.
        ProxyError::UpstreamTimeout(spent) | ProxyError::ReviewsTimedOut(spent) => {
            let blame = match error {
                ProxyError::UpstreamTimeout(_) => "exporter slow",
                _ => spent.reviews_blame(),
            };
            tracing::warn!(
                status,
                %peer,
                %method,
                %path,
                budget_ms = spent.budget.as_millis(),
                reviews_ms = spent.reviews.as_millis(),
                queued_ms = spent.queued.as_millis(),
                exporter_ms = spent.exporter.as_millis(),
                "out of time: {blame}"
            )
        }
        ProxyError::UpstreamUnavailable(_) => {
            tracing::warn!(status, %peer, %method, %path, error = %cut(&error.to_string()), "failed")
        }
        ProxyError::ApiserverUnavailable(_) | ProxyError::Internal(_)
            if budgeted("failed reviews") =>
        {
            tracing::warn!(status, %peer, %method, %path, error = %cut(&error.to_string()), "failed")
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn paths_that_could_mean_something_else_upstream_are_refused() {
        for ok in [
            "/metrics",
            "/metrics?x=1",
            "//metrics",
            "/metrics/",
            "/a.b/c..d/.e",
            "/%41",
            "/metrics;jsessionid=1",
            "/a/...;/b",
        ] {
            let uri: Uri = ok.parse().unwrap();
            assert_eq!(forwardable_path(&uri).unwrap(), uri.path(), "{ok}");
        }
        for bad in [
            "/metrics/../secret",
            "/./metrics",
            "/metrics/..",
            "/metrics/%2e%2e/secret",
            "/metrics%2Fsecret",
            "/metrics%5csecret",
            "/metrics/..;/debug",
            "/metrics/.;x/y",
            "/metrics/..;jsessionid=1",
            "*",
            "example.com:443",
        ] {
            let uri: Uri = bad.parse().unwrap();
            assert!(
                matches!(forwardable_path(&uri), Err(ProxyError::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn connect_and_lower_case_methods_are_refused() {
        for ok in ["GET", "HEAD", "POST", "PROPFIND", "M-SEARCH"] {
            assert!(
                forwardable_method(&Method::from_bytes(ok.as_bytes()).unwrap()).is_ok(),
                "{ok}"
            );
        }
        for bad in ["CONNECT", "get", "gEt", "Get", "propfind"] {
            assert!(
                matches!(
                    forwardable_method(&Method::from_bytes(bad.as_bytes()).unwrap()),
                    Err(ProxyError::BadRequest(_))
                ),
                "{bad}"
            );
        }
    }

    proptest! {
        #[test]
        fn an_accepted_path_is_exactly_the_uri_path(path in "/[a-zA-Z0-9./%_-]{0,40}") {
            if let Ok(uri) = path.parse::<Uri>() {
                if let Ok(accepted) = forwardable_path(&uri) {
                    prop_assert_eq!(accepted, uri.path());
                    prop_assert!(!accepted.split('/').any(|s| s == ".."));
                }
            }
        }
    }
}
