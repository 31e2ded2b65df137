//! `/healthz`, `/readyz` and `/metrics` on `--proxy-endpoints-port`.
//!
//! Separate from the proxied port so probes never go through authentication and never
//! reach the exporter. `/healthz` says only that the process serves requests;
//! `/readyz` says whether it could do its job right now: every listener's certificate
//! is loaded and unexpired, and the apiserver answered the last review or probe (and,
//! with `--oidc-issuer`, the issuer's key set has loaded). A proxy that cannot
//! reach the apiserver can only answer 503, so it should be taken out of rotation.
//! `/metrics` (scrape-guard's own) is guarded like any scrape: authentication, then
//! authorization of `get` on `/metrics`; it answers OpenMetrics or the text format
//! 0.0.4 as the scraper's `Accept` asks (`metrics::Format`).

use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::{
    apiserver::{Apiserver, Requester},
    authn::Authenticator,
    authz::{Attributes, Authorizer},
    body::ProxyBody,
    metrics::{Format, Metrics},
    server::{Handler, Peer},
    tls::ServingCert,
};

/// The probe and metrics endpoints.
pub(crate) struct Admin {
    /// Every listener's serving certificate, with its name (`None` for the only
    /// listener): ready while all of them are valid, as a pod with one sidecar per
    /// listener is ready while every sidecar is.
    pub certs: Vec<(Option<String>, Arc<ServingCert>)>,
    /// `None` in standalone mode, where there is no apiserver to be ready for.
    pub apiserver: Option<Arc<Apiserver>>,
    /// `/metrics` is authenticated and authorized as the first listener's scrapes are
    /// (its policy; the caches every listener shares), its outcomes counted unlabelled.
    pub authn: Authenticator,
    pub authz: Authorizer,
    pub metrics: Arc<Metrics>,
}

impl Admin {
    async fn metrics(&self, request: &Request<Incoming>, peer: &Peer) -> Response<ProxyBody> {
        let attributes = [Attributes::new(request.method(), "/metrics")];
        let requester = Requester::Peer(peer.addr.ip());
        let user = match self
            .authn
            .authenticate_caller(request.headers(), &peer.certificate, requester)
            .await
        {
            Ok(user) => user,
            Err(error) => return error.into_response(),
        };
        peer.authenticated();
        if let Err(error) = self.authz.authorize(&user, &attributes, requester).await {
            return error.into_response();
        }
        let accept = request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok());
        let format = Format::negotiate(accept);
        let text = self
            .metrics
            .encode_as(format, self.authn.cached(), self.authz.cached());
        let mut response = Response::new(crate::body::full(text));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        );
        response
    }

    fn respond(&self, request: &Request<Incoming>) -> (StatusCode, String) {
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return (
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed\n".into(),
            );
        }
        match request.uri().path() {
            "/healthz" | "/livez" => (StatusCode::OK, "ok\n".into()),
            "/readyz" => {
                let mut checks: Vec<(String, bool)> = self
                    .certs
                    .iter()
                    .map(|(listener, cert)| {
                        let name = match listener {
                            Some(listener) => format!("certificate/{listener}"),
                            None => "certificate".to_owned(),
                        };
                        (name, cert.is_valid())
                    })
                    .collect();
                if let Some(apiserver) = &self.apiserver {
                    checks.push(("apiserver".to_owned(), apiserver.is_reachable()));
                }
                match self.authn.oidc_ready() {
                    Some(Err(why)) => checks.push((format!("oidc (no key set: {why})"), false)),
                    Some(Ok(())) => checks.push(("oidc".to_owned(), true)),
                    None => {}
                }
                let mut body = String::new();
                for (name, ok) in &checks {
                    let ok = *ok;
                    let mark = if ok { "+" } else { "-" };
                    let verdict = if ok { "ok" } else { "failed" };
                    body.push_str(&format!("[{mark}]{name} {verdict}\n"));
                }
                if checks.iter().all(|(_, ok)| *ok) {
                    body.push_str("readyz check passed\n");
                    (StatusCode::OK, body)
                } else {
                    body.push_str("readyz check failed\n");
                    (StatusCode::SERVICE_UNAVAILABLE, body)
                }
            }
            _ => (StatusCode::NOT_FOUND, "404 page not found\n".into()),
        }
    }
}

impl Handler for Admin {
    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: Arc<Peer>,
    ) -> Response<ProxyBody> {
        if request.uri().path() == "/metrics" {
            return self.metrics(&request, &peer).await;
        }
        let (status, body) = self.respond(&request);
        let mut response = Response::new(crate::body::full(body));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}
