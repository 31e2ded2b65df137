//! `/healthz` and `/readyz` on `--proxy-endpoints-port`.
//!
//! Separate from the proxied port so probes never go through authentication and never
//! reach the exporter. `/healthz` says only that the process serves requests;
//! `/readyz` says whether it could do its job right now: a certificate is loaded and the
//! apiserver answered the last review or probe. A proxy that cannot reach the
//! apiserver can only answer 503, so it should be taken out of rotation.

use std::{net::SocketAddr, sync::Arc};

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::{apiserver::Apiserver, body::ProxyBody, server::Handler, tls::ServingCert};

/// The probe endpoints.
pub struct Admin {
    pub cert: Arc<ServingCert>,
    /// `None` in standalone mode, where there is no apiserver to be ready for.
    pub apiserver: Option<Arc<Apiserver>>,
}

impl Admin {
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
                let mut checks = vec![("certificate", self.cert.is_loaded())];
                if let Some(apiserver) = &self.apiserver {
                    checks.push(("apiserver", apiserver.is_reachable()));
                }
                let mut body = String::new();
                for &(name, ok) in &checks {
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
        _peer: SocketAddr,
    ) -> Response<ProxyBody> {
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
