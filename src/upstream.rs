//! Forwarding: the last stage. Builds the upstream request, cleans its headers,
//! streams both bodies and maps transport failures to 502/504.
//!
//! Header hygiene is the security-relevant part: the client's `Authorization` (a
//! token must never reach the exporter), hop-by-hop headers (including any named in
//! `Connection`, which is how a client could otherwise smuggle one past us) and any
//! client-supplied identity headers are removed on every request, whether or not
//! `--auth-header-fields-enabled` is on; when it is, we set them from the reviewed user.
//!
//! URL joining follows Go's `httputil.NewSingleHostReverseProxy`, so a kube-rbac-proxy
//! `--upstream` with a base path or query means what it meant there. Bodies stream both
//! ways; nothing is buffered whole, and `Content-Encoding` passes through untouched.
//!
//! Transports: TCP (`http://`, `https://` with h2 by ALPN, or h2c with
//! `--upstream-force-h2c`) and Unix sockets (`unix:///path.sock`). For https, the CA
//! bundle and the client certificate are re-read when they change, like the serving
//! certificate; a client certificate works with or without `--upstream-ca-file`.

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::{
    header::{self, HeaderName},
    uri::{Authority, PathAndQuery, Scheme},
    HeaderMap, HeaderValue, Request, Response, Uri, Version,
};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioTimer},
};
use rustls::{
    client::{
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        ResolvesClientCert, WebPkiServerVerifier,
    },
    sign::CertifiedKey,
    ClientConfig, DigitallySignedStruct, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::UnixStream;

use crate::{
    authn::User, body::ProxyBody, config::IdentityHeaders, error::ProxyError, reload::Watched,
};

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
    Tls(#[source] rustls::Error),
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

/// The pooled client, over TCP (with TLS for https) or a Unix socket.
enum Transport {
    Tcp(Client<HttpsConnector<HttpConnector>, Incoming>),
    Unix(Client<UnixConnector, Incoming>),
}

/// The exporter behind the proxy.
pub struct Upstream {
    transport: Transport,
    scheme: Scheme,
    authority: Authority,
    base_path: String,
    base_query: Option<String>,
    timeout: Duration,
    identity: IdentityHeaders,
}

impl Upstream {
    /// A pooled client for `--upstream` (h1; h2 by ALPN for https://).
    pub fn new(
        url: &Uri,
        options: &UpstreamOptions,
        timeout: Duration,
        identity: IdentityHeaders,
    ) -> Result<Self, UpstreamError> {
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            // hyper grows each upstream connection's read buffer to ~400-600 KiB on large
            // pages; capped, 64 connections streaming 5 MB pages fit in ~30 MiB instead
            // of ~70 (benches/RESULTS.md), at some cost in bulk throughput.
            .http1_max_buf_size(UPSTREAM_READ_BUFFER)
            .http2_only(options.force_h2c);
        let transport = match &options.unix_socket {
            Some(path) => Transport::Unix(builder.build(UnixConnector {
                path: Arc::from(path.as_path()),
            })),
            None => {
                let tls = client_tls(options)?;
                let mut http = HttpConnector::new();
                http.enforce_http(false);
                http.set_nodelay(true);
                http.set_connect_timeout(Some(timeout));
                let connector = HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_or_http()
                    .enable_http1()
                    .enable_http2()
                    .wrap_connector(http);
                Transport::Tcp(builder.build(connector))
            }
        };
        let base_path = url.path().to_owned();
        Ok(Self {
            transport,
            scheme: url.scheme().cloned().unwrap_or(Scheme::HTTP),
            authority: url
                .authority()
                .cloned()
                .unwrap_or_else(|| Authority::from_static("127.0.0.1")),
            base_path,
            base_query: url.query().map(str::to_owned),
            timeout,
            identity,
        })
    }

    /// Sends the request upstream and returns its streamed response.
    pub async fn forward(
        &self,
        mut parts: http::request::Parts,
        body: Incoming,
        user: Option<&User>,
        peer: SocketAddr,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        parts.uri = self.target(&parts.uri)?;
        if !parts.headers.contains_key(header::HOST) {
            // HTTP/2 carries the host in :authority; give HTTP/1 upstreams a Host.
            if let Some(value) = parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            {
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
        let sent = match &self.transport {
            Transport::Tcp(client) => client.request(request),
            Transport::Unix(client) => client.request(request),
        };
        let mut response = match tokio::time::timeout(self.timeout, sent).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                return Err(ProxyError::UpstreamUnavailable(error_chain(&error)));
            }
            Err(_) => return Err(ProxyError::UpstreamTimeout(self.timeout)),
        };
        remove_hop_by_hop(response.headers_mut());
        Ok(response.map(Either::Left))
    }

    /// Go's `singleJoiningSlash` on the path, `&`-joined queries; same authority.
    fn target(&self, incoming: &Uri) -> Result<Uri, ProxyError> {
        let path = join_paths(&self.base_path, incoming.path());
        let query = match (self.base_query.as_deref(), incoming.query()) {
            (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() => Some(format!("{a}&{b}")),
            (Some(a), None) | (Some(a), Some("")) => Some(a.to_owned()),
            (_, b) => b.map(str::to_owned),
        };
        let path_and_query = match query {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        let path_and_query = PathAndQuery::try_from(path_and_query)
            .map_err(|_| ProxyError::BadRequest("request target cannot be forwarded"))?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| ProxyError::Internal(format!("building upstream URI: {e}")))
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

/// Go's `singleJoiningSlash`.
pub fn join_paths(base: &str, path: &str) -> String {
    match (base.ends_with('/'), path.starts_with('/')) {
        (true, true) => format!("{base}{}", &path[1..]),
        (false, false) => format!("{base}/{path}"),
        _ => format!("{base}{path}"),
    }
}

/// Strips what must never reach the upstream from a client request.
pub fn clean_request_headers(headers: &mut HeaderMap, identity: &IdentityHeaders) {
    remove_hop_by_hop(headers);
    headers.remove(header::UPGRADE);
    headers.remove(header::AUTHORIZATION);
    headers.remove(&identity.user);
    headers.remove(&identity.groups);
}

/// Removes hop-by-hop headers, including every header `Connection` names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
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

fn client_tls(options: &UpstreamOptions) -> Result<ClientConfig, UpstreamError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(UpstreamError::Tls)?;
    let builder = match &options.ca_file {
        Some(path) => {
            let verifier = ReloadingVerifier::load(path, provider)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder
                .with_platform_verifier()
                .map_err(UpstreamError::Tls)?
        }
    };
    Ok(match &options.client_cert {
        Some((cert, key)) => builder.with_client_cert_resolver(ClientIdentity::load(cert, key)?),
        None => builder.with_no_client_auth(),
    })
}

/// `--upstream-ca-file`, re-read when it changes. Verification is webpki's, against
/// the current bundle.
#[derive(Debug)]
struct ReloadingVerifier(Arc<Watched<Arc<WebPkiServerVerifier>>>);

impl ReloadingVerifier {
    fn load(
        path: &Path,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Arc<Self>, UpstreamError> {
        let watched = Watched::load("--upstream-ca-file", vec![path.to_owned()], move |files| {
            let (path, pem) = &files[0];
            let roots = crate::tls::ca_bundle(path, pem)?;
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()
                .map_err(|e| format!("{}: {e}", path.display()))
        })
        .map_err(|message| UpstreamError::File {
            flag: "--upstream-ca-file",
            message,
        })?;
        watched.spawn_reloader();
        Ok(Arc::new(Self(watched)))
    }
}

impl ServerCertVerifier for ReloadingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0
            .get()
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.get().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.get().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.get().supported_verify_schemes()
    }
}

/// `--upstream-client-cert-file`/`--upstream-client-key-file`, re-read when they change.
#[derive(Debug)]
struct ClientIdentity(Arc<Watched<Arc<CertifiedKey>>>);

impl ClientIdentity {
    fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, UpstreamError> {
        let (cert_path, key_path) = (cert.to_owned(), key.to_owned());
        let watched = Watched::load(
            "--upstream-client-cert-file",
            vec![cert.to_owned(), key.to_owned()],
            move |files| {
                crate::tls::parse_pair(&files[0].1, &files[1].1, &cert_path, &key_path)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            },
        )
        .map_err(|message| UpstreamError::File {
            flag: "--upstream-client-cert-file/--upstream-client-key-file",
            message,
        })?;
        watched.spawn_reloader();
        Ok(Arc::new(Self(watched)))
    }
}

impl ResolvesClientCert for ClientIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0.get()))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Connects every request to one Unix socket, whatever the URI says.
#[derive(Clone)]
struct UnixConnector {
    path: Arc<Path>,
}

impl tower_service::Service<Uri> for UnixConnector {
    type Response = hyper_util::rt::TokioIo<UnixStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let path = Arc::clone(&self.path);
        Box::pin(async move {
            Ok(hyper_util::rt::TokioIo::new(
                UnixStream::connect(&*path).await?,
            ))
        })
    }
}

/// The error and its causes on one line ("client error (Connect): tcp connect
/// error: Connection refused"), for the log.
fn error_chain(error: &dyn std::error::Error) -> String {
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
    fn joins_paths_like_go() {
        let table = [
            ("/", "/metrics", "/metrics"),
            ("", "/metrics", "/metrics"),
            ("/base", "/metrics", "/base/metrics"),
            ("/base/", "/metrics", "/base/metrics"),
            ("/base/", "metrics", "/base/metrics"),
            ("/base", "metrics", "/base/metrics"),
            ("/", "//metrics", "//metrics"),
        ];
        for (base, path, want) in table {
            assert_eq!(join_paths(base, path), want, "{base} + {path}");
        }
    }

    #[tokio::test]
    async fn targets_keep_path_and_join_queries() {
        let upstream = |url: &str| {
            Upstream::new(
                &url.parse().unwrap(),
                &UpstreamOptions::default(),
                Duration::from_secs(1),
                identity(),
            )
            .unwrap()
        };
        let table = [
            (
                "http://127.0.0.1:9100/",
                "/metrics",
                "http://127.0.0.1:9100/metrics",
            ),
            (
                "http://127.0.0.1:9100",
                "/metrics?x=1",
                "http://127.0.0.1:9100/metrics?x=1",
            ),
            ("http://h:1/base/", "/metrics", "http://h:1/base/metrics"),
            (
                "http://h:1/?a=1",
                "/metrics?b=2",
                "http://h:1/metrics?a=1&b=2",
            ),
            ("http://h:1/?a=1", "/metrics", "http://h:1/metrics?a=1"),
            ("https://h:1/", "/m%2Fx?q=%20", "https://h:1/m%2Fx?q=%20"),
        ];
        for (base, incoming, want) in table {
            let target = upstream(base).target(&incoming.parse().unwrap()).unwrap();
            assert_eq!(target.to_string(), want, "{base} + {incoming}");
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
    fn forwarding_headers_append() {
        let mut headers = HeaderMap::new();
        let peer: SocketAddr = "[::ffff:10.0.0.7]:5555".parse().unwrap();
        add_forwarding_headers(&mut headers, peer);
        assert_eq!(headers["x-forwarded-for"], "10.0.0.7");
        assert_eq!(headers["x-forwarded-proto"], "https");
        add_forwarding_headers(&mut headers, "127.0.0.1:1".parse().unwrap());
        assert_eq!(headers["x-forwarded-for"], "10.0.0.7, 127.0.0.1");
    }

    #[tokio::test]
    async fn identity_headers_are_set_when_enabled() {
        let upstream = Upstream::new(
            &"http://127.0.0.1:9100/".parse().unwrap(),
            &UpstreamOptions::default(),
            Duration::from_secs(1),
            identity(),
        )
        .unwrap();
        let user = User {
            name: "system:serviceaccount:monitoring:prometheus".into(),
            groups: [
                "system:serviceaccounts".to_owned(),
                "system:authenticated".to_owned(),
            ]
            .into(),
            ..User::default()
        };
        let mut headers = HeaderMap::new();
        upstream.add_identity(&mut headers, &user).unwrap();
        assert_eq!(headers["x-remote-user"], user.name);
        assert_eq!(
            headers["x-remote-groups"],
            "system:serviceaccounts|system:authenticated"
        );
    }
}
