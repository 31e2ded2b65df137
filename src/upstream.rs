//! Forwarding: the last stage. Builds the upstream request, cleans its headers
//! (`headers`), streams both bodies and maps transport failures to 502/504.
//!
//! URL joining follows Go's `httputil.NewSingleHostReverseProxy`, so a kube-rbac-proxy
//! `--upstream` with a base path or query means what it meant there. Bodies stream both
//! ways; nothing is buffered whole, and `Content-Encoding` passes through untouched.
//! When `--auth-header-fields-enabled` is on, the identity headers are set from the
//! reviewed user.
//!
//! Transports: TCP (`http://`, `https://` with h2 by ALPN (`client_tls`), or h2c with
//! `--upstream-force-h2c`) and Unix sockets (`unix:///path.sock`, `unix`). Plain
//! HTTP/1.1 over TCP or a Unix socket goes on the client connection's own upstream
//! connections (`direct`, `crate::lane`); the rest, and requests beyond the
//! `MAX_PER_CLIENT` in flight on one client connection, go through the pooled client.

mod client_tls;
mod direct;
mod headers;
mod unix;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use http::{
    header,
    uri::{Authority, PathAndQuery, Scheme},
    HeaderMap, HeaderValue, Request, Response, Uri, Version,
};
use http_body::Body as _;
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioTimer},
};

pub(crate) use self::headers::remove_hop_by_hop;
pub use self::headers::{add_forwarding_headers, clean_request_headers, IdentityHeaders};
use self::{
    direct::{Dial, Direct},
    unix::UnixConnector,
};
use crate::{
    body::ProxyBody,
    error::{ProxyError, Spent},
    identity::User,
    lane::{Lent, OwnConnections, Pooled, MAX_SPARES},
    metrics::Metrics,
};

/// Upper bound on an upstream connection's HTTP/1.1 read buffer. hyper's default
/// (~400 KB) let 64 streamed 5 MB pages take the proxy to 70+ MiB; body chunks are
/// slices of this buffer and keep it alive while they wait for the client. Measured
/// with `benches/load.sh` (CASES=ab): 64 KiB → 32 KiB cut peak RSS by ~5 MiB (h1,
/// 64 connections) and ~9 MiB (h2) at no clear CPU cost; 16 KiB and 8 KiB cost
/// 15–50 % more CPU per scrape (more, smaller TLS records and writes).
const UPSTREAM_READ_BUFFER: usize = 32 * 1024;

/// A problem setting up the upstream client, naming the flag or file.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{flag} {message}")]
    File { flag: &'static str, message: String },
    #[error("upstream TLS: {0}")]
    Tls(rustls::Error),
    #[error(
        "an https:// --upstream without --upstream-ca-file is verified against the system's \
         CA bundle, and none could be loaded ({0}): give the upstream's CA with \
         --upstream-ca-file"
    )]
    SystemRoots(rustls::Error),
    #[error(transparent)]
    Fips(#[from] crate::tls::NotFips),
}

/// Everything the upstream stage is configured with.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// `--upstream` (for a Unix socket, `http://localhost/`).
    pub url: Uri,
    pub options: UpstreamOptions,
    /// `--upstream-timeout`: connect and response headers.
    pub timeout: Duration,
    pub identity: IdentityHeaders,
}

/// How to reach and talk to the upstream, beyond its URL.
#[derive(Debug, Clone, Default)]
pub struct UpstreamOptions {
    /// `--upstream-ca-file`: verify an https upstream against this bundle.
    pub ca_file: Option<PathBuf>,
    /// `--upstream-client-cert-file` and `--upstream-client-key-file`.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// `--upstream-force-h2c`: HTTP/2 with prior knowledge over plain TCP.
    pub force_h2c: bool,
    /// `unix:///path.sock`: connect to this socket instead of TCP.
    pub unix_socket: Option<PathBuf>,
}

/// What a request adds to the upstream's base path: the request path, or (a route of
/// `upstreams:`) what is left of it once the route's pattern is stripped
/// (`routes::Routed::tail`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tail<'a> {
    pub(crate) rest: &'a str,
    pub(crate) join: Join,
}

/// How a tail is joined, as Deckhouse's fork of kube-rbac-proxy does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Join {
    /// Go's `singleJoiningSlash(base, rest)`.
    Subtree,
    /// The same, then one trailing `/` dropped: an exact route's pattern was the
    /// whole path, so `http://exporter/metrics` with `path: /self/metrics` is
    /// `/metrics`, not `/metrics/`.
    Exact,
}

/// When the exporter must have sent its response headers (the wait for a connection
/// and the connect included), and how long that was from the request's start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    pub(crate) at: tokio::time::Instant,
    pub(crate) budget: Duration,
}

/// The pooled client, over TCP (with TLS for https) or a Unix socket.
enum Transport {
    Tcp(Client<HttpsConnector<HttpConnector>, Incoming>),
    Unix(Client<UnixConnector, Incoming>),
}

/// The exporter behind the proxy.
pub(crate) struct Upstream {
    transport: Transport,
    /// Plain HTTP/1.1 (TCP or Unix socket): on the client connection's own upstream
    /// connections.
    direct: Option<Direct>,
    scheme: Scheme,
    authority: Authority,
    base_path: String,
    base_query: Option<String>,
    timeout: Duration,
    identity: IdentityHeaders,
}

impl Upstream {
    /// A pooled client for `--upstream` (h1; h2 by ALPN for https://).
    pub(crate) fn new(
        settings: &UpstreamSettings,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, UpstreamError> {
        let UpstreamSettings {
            url,
            options,
            timeout,
            identity,
        } = settings;
        let timeout = *timeout;
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            // Idle pooled connections, like the direct ones' `Spares`, are few: what an HTTP/2
            // burst beyond `MAX_PER_CLIENT` streams opened is not all kept.
            .pool_max_idle_per_host(MAX_SPARES)
            // hyper grows each upstream connection's read buffer to ~400-600 KiB on large
            // pages; capped, 64 connections streaming 5 MB pages fit in ~30 MiB instead
            // of ~70 (benches/RESULTS.md), at some cost in bulk throughput.
            .http1_max_buf_size(UPSTREAM_READ_BUFFER)
            .http2_only(options.force_h2c);
        let (transport, dial) = match &options.unix_socket {
            Some(path) => {
                let unix = UnixConnector {
                    path: Arc::from(path.as_path()),
                };
                let dial = (!options.force_h2c).then(|| Dial::Unix(unix.clone()));
                (Transport::Unix(builder.build(unix)), dial)
            }
            None => {
                let https = url.scheme_str() == Some("https");
                let tls = client_tls::client_tls(options, https, metrics)?;
                let mut http = HttpConnector::new();
                http.enforce_http(false);
                http.set_nodelay(true);
                http.set_connect_timeout(Some(timeout));
                let dial = (!https && !options.force_h2c).then(|| Dial::Tcp(http.clone()));
                let connector = HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_or_http()
                    .enable_http1()
                    .enable_http2()
                    .wrap_connector(http);
                (Transport::Tcp(builder.build(connector)), dial)
            }
        };
        let direct = dial.map(|dial| Direct::new(dial, url.clone()));
        let base_path = url.path().to_owned();
        Ok(Self {
            transport,
            direct,
            scheme: url.scheme().cloned().unwrap_or(Scheme::HTTP),
            authority: url
                .authority()
                .cloned()
                .unwrap_or_else(|| Authority::from_static("127.0.0.1")),
            base_path,
            base_query: url.query().map(str::to_owned),
            timeout,
            identity: identity.clone(),
        })
    }

    /// Sends the request to `path_and_query` upstream (`target_path`, made from the
    /// path that was authorized) and returns its streamed response: on one of
    /// `upstreams`, the client connection's own upstream connections, when the transport
    /// allows and one is free; through the pool otherwise.
    pub(crate) async fn forward(
        &self,
        request: Request<Incoming>,
        path_and_query: PathAndQuery,
        user: Option<&User>,
        peer: SocketAddr,
        upstreams: &OwnConnections,
        deadline: Deadline,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let (mut parts, body) = request.into_parts();
        one_host(&parts)?;
        // The deadline covers the wait for a connection, the connect and the response
        // headers together.
        let (deadline, timed_out) = (
            deadline.at,
            || ProxyError::UpstreamTimeout(Spent::default()),
        );
        let loan = match &self.direct {
            Some(direct) => Some((
                direct,
                tokio::time::timeout_at(deadline, direct.lend(upstreams))
                    .await
                    .map_err(|_| timed_out())?,
            )),
            None => None,
        };
        parts.uri = match loan {
            // HTTP/1.1 to an origin server: the origin form, as the pool would send.
            Some((_, Lent::Connection(_))) => Uri::from(path_and_query),
            _ => self.absolute(path_and_query)?,
        };
        if !parts.headers.contains_key(header::HOST) {
            // HTTP/2 carries the host in :authority; give HTTP/1 upstreams a Host.
            if let Ok(value) = HeaderValue::from_str(self.authority.as_str()) {
                parts.headers.insert(header::HOST, value);
            }
        }
        parts.version = Version::HTTP_11;
        clean_request_headers(&mut parts.headers, &self.identity);
        add_forwarding_headers(&mut parts.headers, peer);
        if let Some(user) = user {
            self.add_identity(&mut parts.headers, user)?;
        }

        let request = Request::from_parts(parts, body);
        let mut response = match loan {
            Some((direct, Lent::Connection(mut loan))) => {
                let sent = direct.send(&mut loan, request);
                let response = tokio::time::timeout_at(deadline, sent)
                    .await
                    .map_err(|_| timed_out())??;
                response.map(|body| Either::Right(loan.body(body)))
            }
            Some((_, Lent::Pool(room))) => {
                let response = self.pooled(request, deadline).await?;
                response.map(|body| Either::Left(Pooled::new(body, Some(room))))
            }
            None => {
                let response = self.pooled(request, deadline).await?;
                response.map(|body| Either::Left(Pooled::new(body, None)))
            }
        };
        remove_hop_by_hop(response.headers_mut());
        Ok(response.map(crate::body::streamed))
    }

    /// Sends `request` through the pooled client. A request with a body asks the
    /// upstream to close the connection after it (HTTP/1.1; hyper drops the header for
    /// HTTP/2, whose streams cannot mix): the pool would reuse the connection once the
    /// body is sent, even if the upstream answered before reading it and will read it
    /// as a request of its own (`crate::lane` watches for that; the pool cannot).
    async fn pooled(
        &self,
        mut request: Request<Incoming>,
        deadline: tokio::time::Instant,
    ) -> Result<Response<Incoming>, ProxyError> {
        if !request.body().is_end_stream() {
            request
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let sent = match &self.transport {
            Transport::Tcp(client) => client.request(request),
            Transport::Unix(client) => client.request(request),
        };
        match tokio::time::timeout_at(deadline, sent).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(ProxyError::UpstreamUnavailable(error_chain(&error))),
            Err(_) => Err(ProxyError::UpstreamTimeout(Spent::default())),
        }
    }

    /// `--upstream-timeout` (or the listener's): the most a request may wait for the
    /// exporter's response headers.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The absolute URI the pool is given: `--upstream`'s scheme and authority.
    fn absolute(&self, path_and_query: PathAndQuery) -> Result<Uri, ProxyError> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| ProxyError::Internal(format!("building upstream URI: {e}")))
    }

    /// The upstream's URI for a request (tests).
    #[cfg(test)]
    fn target(&self, incoming: &Uri) -> Result<Uri, ProxyError> {
        let tail = Tail {
            rest: incoming.path(),
            join: Join::Subtree,
        };
        self.absolute(self.target_path(tail, incoming.query())?)
    }

    /// The path and query the upstream is sent: Go's `singleJoiningSlash` of the base
    /// path and `tail`, `&`-joined queries.
    pub(crate) fn target_path(
        &self,
        tail: Tail<'_>,
        query: Option<&str>,
    ) -> Result<PathAndQuery, ProxyError> {
        let mut path = join_paths(&self.base_path, tail.rest);
        if tail.join == Join::Exact && path.ends_with('/') {
            path.pop();
        }
        if path.is_empty() {
            // Go's `URL.RequestURI` sends an empty path as `/`.
            path.push('/');
        }
        let query = match (self.base_query.as_deref(), query) {
            (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() => Some(format!("{a}&{b}")),
            (Some(a), None) | (Some(a), Some("")) => Some(a.to_owned()),
            (_, b) => b.map(str::to_owned),
        };
        let path_and_query = match query {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        PathAndQuery::try_from(path_and_query)
            .map_err(|_| ProxyError::BadRequest("request target cannot be forwarded"))
    }

    fn add_identity(&self, headers: &mut HeaderMap, user: &User) -> Result<(), ProxyError> {
        if !self.identity.enabled {
            return Ok(());
        }
        let value = |s: &str| {
            HeaderValue::from_str(s).map_err(|_| {
                ProxyError::Internal("user or group is not a valid header value".into())
            })
        };
        headers.insert(self.identity.user.clone(), value(&user.name)?);
        let groups = user.groups.join(&self.identity.separator);
        headers.insert(self.identity.groups.clone(), value(&groups)?);
        Ok(())
    }
}

/// Refuses a request that names two hosts: an HTTP/2 `host` header beside a different
/// `:authority`, or more than one `Host` (RFC 9112 asks for a 400). The upstream would
/// see the `Host` header, which nothing checked against the authority the client
/// connected for; an exporter that routes or links by host must not be steered by a
/// second name. Host names compare case-insensitively. An HTTP/1.1 absolute-form
/// target keeps its meaning (the path is forwarded in origin form with the `Host`).
fn one_host(parts: &http::request::Parts) -> Result<(), ProxyError> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let (Some(host), None) = (hosts.next(), hosts.next()) else {
        return match parts.headers.contains_key(header::HOST) {
            true => Err(ProxyError::BadRequest("more than one Host header")),
            false => Ok(()),
        };
    };
    match parts
        .uri
        .authority()
        .filter(|_| parts.version == Version::HTTP_2)
    {
        Some(authority)
            if !host
                .as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes()) =>
        {
            Err(ProxyError::BadRequest(
                "the Host header differs from :authority",
            ))
        }
        _ => Ok(()),
    }
}

/// Go's `singleJoiningSlash`.
pub(crate) fn join_paths(base: &str, path: &str) -> String {
    match (base.ends_with('/'), path.starts_with('/')) {
        (true, true) => format!("{base}{}", &path[1..]),
        (false, false) => format!("{base}/{path}"),
        _ => format!("{base}{path}"),
    }
}

/// The error and its causes on one line ("client error (Connect): tcp connect
/// error: Connection refused"), for the log.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests;
