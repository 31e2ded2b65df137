//! Test doubles that speak the real wire formats over real sockets:
//! - `Pki`: a CA and certificates generated into a temp dir (nothing checked in expires);
//! - `FakeApiserver`: HTTPS, the real TokenReview/SubjectAccessReview JSON, counts
//!   reviews, and can be told to fail, stall or go away;
//! - `Echo`: an HTTP exporter that reports what it received;
//! - `Proxy`: scrape-guard itself, started from command-line flags;
//! - `client`: an HTTPS client (HTTP/1.1 or HTTP/2) trusting the test CA.

#![allow(dead_code, unreachable_pub)]

use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use serde_json::{json, Value};
use tokio::{net::TcpListener, task::JoinSet};

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A test CA and a serving certificate for localhost/127.0.0.1, as PEM files.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub ca_path: PathBuf,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "scrape-guard test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let ca_path = dir.path().join("ca.crt");
        let cert_path = dir.path().join("tls.crt");
        let key_path = dir.path().join("tls.key");
        std::fs::write(&ca_path, ca.pem()).unwrap();
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Self {
            dir,
            ca_pem: ca.pem(),
            cert_path,
            key_path,
            ca_path,
            issuer,
        }
    }

    /// A client certificate from the test CA with this CN and O values: (cert PEM, key PEM).
    pub fn client_cert(&self, common_name: &str, organizations: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        for org in organizations {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, *org);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A new serving certificate for localhost from the same CA: (cert PEM, key PEM).
    pub fn serving_cert(&self) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn server_config(&self, alpn: &[&[u8]]) -> rustls::ServerConfig {
        use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_file_iter(&self.cert_path)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&self.key_path).unwrap();
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }

    pub fn client_config(&self, alpn: &[&[u8]]) -> rustls::ClientConfig {
        self.client_config_with(alpn, None)
    }

    /// A client config, optionally presenting a client certificate (cert PEM, key PEM).
    pub fn client_config_with(
        &self,
        alpn: &[&[u8]],
        identity: Option<&(String, String)>,
    ) -> rustls::ClientConfig {
        use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let mut config = match identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(cert.as_bytes())
                        .collect::<Result<Vec<_>, _>>()
                        .unwrap(),
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }
}

/// How the fake apiserver answers reviews.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// 500 Internal Server Error for every review.
    Fail,
    /// Never answers.
    Stall,
}

#[derive(Clone, Debug)]
pub struct FakeUser {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub audiences: Vec<String>,
}

#[derive(Default)]
struct ApiState {
    users: HashMap<String, FakeUser>,
    allowed: HashSet<(String, String, String)>,
    sar_specs: Vec<Value>,
    token_review_specs: Vec<Value>,
}

/// An HTTPS apiserver that answers TokenReview and SubjectAccessReview like the real
/// one, from a table of tokens and allowed (user, verb, path) triples.
pub struct FakeApiserver {
    pub addr: SocketAddr,
    pub kubeconfig: PathBuf,
    token_reviews: Arc<AtomicUsize>,
    sars: Arc<AtomicUsize>,
    mode: Arc<Mutex<Mode>>,
    fail_next: Arc<AtomicUsize>,
    delay: Arc<Mutex<Duration>>,
    state: Arc<Mutex<ApiState>>,
    tasks: Mutex<JoinSet<()>>,
}

impl FakeApiserver {
    pub async fn start(pki: &Pki) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let kubeconfig = pki.dir.path().join(format!("kubeconfig-{}", addr.port()));
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    \
                 server: https://127.0.0.1:{port}\n    certificate-authority: {ca}\n\
                 users:\n- name: proxy\n  user:\n    token: proxy-sa-token\n\
                 contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: proxy\n\
                 current-context: fake\n",
                port = addr.port(),
                ca = pki.ca_path.display()
            ),
        )
        .unwrap();
        let server = Arc::new(Self {
            addr,
            kubeconfig,
            token_reviews: Arc::default(),
            sars: Arc::default(),
            mode: Arc::new(Mutex::new(Mode::Normal)),
            fail_next: Arc::default(),
            delay: Arc::new(Mutex::new(Duration::ZERO)),
            state: Arc::default(),
            tasks: Mutex::new(JoinSet::new()),
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(pki.server_config(&[b"http/1.1"])));
        let this = Arc::clone(&server);
        server.tasks.lock().unwrap().spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let this2 = Arc::clone(&this);
                this.tasks.lock().unwrap().spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let this = Arc::clone(&this2);
                        async move { Ok::<_, Infallible>(this.answer(req).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        server
    }

    /// A token that authenticates as `name` (groups: system:authenticated).
    pub fn add_token(&self, token: &str, name: &str) {
        self.add_user(
            token,
            FakeUser {
                name: name.into(),
                uid: format!("uid-{name}"),
                groups: vec!["system:authenticated".into()],
                audiences: vec!["https://kubernetes.default.svc".into()],
            },
        );
    }

    pub fn add_user(&self, token: &str, user: FakeUser) {
        self.state.lock().unwrap().users.insert(token.into(), user);
    }

    pub fn allow(&self, user: &str, verb: &str, path: &str) {
        self.state
            .lock()
            .unwrap()
            .allowed
            .insert((user.into(), verb.into(), path.into()));
    }

    pub fn token_reviews(&self) -> usize {
        self.token_reviews.load(Ordering::SeqCst)
    }

    pub fn sars(&self) -> usize {
        self.sars.load(Ordering::SeqCst)
    }

    pub fn last_sar_spec(&self) -> Value {
        self.state
            .lock()
            .unwrap()
            .sar_specs
            .last()
            .cloned()
            .unwrap()
    }

    pub fn last_token_review_spec(&self) -> Value {
        self.state
            .lock()
            .unwrap()
            .token_review_specs
            .last()
            .cloned()
            .unwrap()
    }

    /// Answers the next `n` reviews with 500, then recovers.
    pub fn fail_next(&self, n: usize) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// How long each review takes (to make concurrent misses overlap).
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    /// Closes the listener and every open connection: the apiserver is gone.
    pub fn kill(&self) {
        self.tasks.lock().unwrap().abort_all();
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        if path == "/version" {
            return json_response(
                StatusCode::OK,
                json!({"major": "1", "minor": "20", "gitVersion": "v1.20.2",
                       "gitCommit": "fake", "gitTreeState": "clean", "buildDate": "2021-01-01T00:00:00Z",
                       "goVersion": "go1.19", "compiler": "gc", "platform": "linux/amd64"}),
            );
        }
        let body: Value =
            serde_json::from_slice(&req.into_body().collect().await.unwrap().to_bytes())
                .unwrap_or(Value::Null);
        let counter = match path.as_str() {
            "/apis/authentication.k8s.io/v1/tokenreviews" => &self.token_reviews,
            "/apis/authorization.k8s.io/v1/subjectaccessreviews" => &self.sars,
            _ => return json_response(StatusCode::NOT_FOUND, json!({"kind": "Status"})),
        };
        counter.fetch_add(1, Ordering::SeqCst);
        let delay = *self.delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        let failing = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "message": "transient", "reason": "InternalError", "code": 500}),
            );
        }
        match *self.mode.lock().unwrap() {
            Mode::Normal => {}
            Mode::Fail => {
                return json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "message": "etcd is on fire", "reason": "InternalError", "code": 500}),
                )
            }
            Mode::Stall => {
                // Checked again below after the lock is released.
            }
        }
        if *self.mode.lock().unwrap() == Mode::Stall {
            std::future::pending::<()>().await;
        }
        let status = if path.ends_with("tokenreviews") {
            self.token_review_status(&body)
        } else {
            self.sar_status(&body)
        };
        let mut answer = body;
        answer["status"] = status;
        json_response(StatusCode::CREATED, answer)
    }

    fn token_review_status(&self, review: &Value) -> Value {
        let mut state = self.state.lock().unwrap();
        state.token_review_specs.push(review["spec"].clone());
        let token = review["spec"]["token"].as_str().unwrap_or_default();
        let Some(user) = state.users.get(token) else {
            return json!({"user": {}, "error": "invalid bearer token"});
        };
        let wanted: Vec<String> = review["spec"]["audiences"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let audiences: Vec<String> = if wanted.is_empty() {
            user.audiences.clone()
        } else {
            wanted
                .into_iter()
                .filter(|a| user.audiences.contains(a))
                .collect()
        };
        if audiences.is_empty() {
            return json!({"user": {}, "error": "token audiences are invalid for the target audiences"});
        }
        json!({
            "authenticated": true,
            "user": {"username": user.name, "uid": user.uid, "groups": user.groups},
            "audiences": audiences,
        })
    }

    fn sar_status(&self, review: &Value) -> Value {
        let mut state = self.state.lock().unwrap();
        state.sar_specs.push(review["spec"].clone());
        let spec = &review["spec"];
        let key = (
            spec["user"].as_str().unwrap_or_default().to_owned(),
            spec["nonResourceAttributes"]["verb"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            spec["nonResourceAttributes"]["path"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        if state.allowed.contains(&key) {
            json!({"allowed": true, "reason": "RBAC: allowed by ClusterRoleBinding \"metrics\""})
        } else {
            json!({"allowed": false})
        }
    }
}

impl Drop for FakeApiserver {
    fn drop(&mut self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.abort_all();
        }
    }
}

fn json_response(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// What the echo exporter saw for one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: http::HeaderMap,
}

/// A plain-HTTP exporter. `/metrics` answers a small page; `/big?bytes=N` streams N
/// bytes; `/slow?ms=N` waits first; `/gzip` answers pre-compressed bytes. Every request
/// is recorded.
pub struct Echo {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

pub const METRICS_PAGE: &str = "# HELP up test\n# TYPE up gauge\nup 1\n";

type EchoBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

impl Echo {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let recorded = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let recorded = Arc::clone(&recorded);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let recorded = Arc::clone(&recorded);
                        async move { Ok::<_, Infallible>(Echo::answer(req, &recorded).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Self { addr, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn stop(&self) {
        self.task.abort();
    }

    async fn answer(req: Request<Incoming>, recorded: &Mutex<Vec<Seen>>) -> Response<EchoBody> {
        recorded.lock().unwrap().push(Seen {
            method: req.method().to_string(),
            uri: req.uri().to_string(),
            headers: req.headers().clone(),
        });
        let query: HashMap<String, String> = req
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let number = |key: &str| query.get(key).and_then(|v| v.parse::<u64>().ok());
        match req.uri().path() {
            "/big" => {
                let total = number("bytes").unwrap_or(0);
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                let chunks = (0..total.div_ceil(chunk.len() as u64)).map(move |i| {
                    let len = (total - i * chunk.len() as u64).min(chunk.len() as u64);
                    Ok::<_, Infallible>(Frame::data(chunk.slice(..len as usize)))
                });
                let body = StreamBody::new(futures_util::stream::iter(chunks));
                Response::new(BodyExt::boxed(body))
            }
            "/slow" => {
                tokio::time::sleep(Duration::from_millis(number("ms").unwrap_or(0))).await;
                Response::new(full(METRICS_PAGE))
            }
            "/gzip" => Response::builder()
                .header("content-encoding", "gzip")
                .header("content-type", "text/plain")
                .body(full(&b"\x1f\x8b\x08\x00fake-gzip-bytes"[..]))
                .unwrap(),
            "/echo" => {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                Response::new(BodyExt::boxed(Full::new(body)))
            }
            _ => Response::builder()
                .header("content-type", "text/plain; version=0.0.4")
                .body(full(METRICS_PAGE))
                .unwrap(),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn full(bytes: impl Into<Bytes>) -> EchoBody {
    BodyExt::boxed(Full::new(bytes.into()))
}

/// scrape-guard, started in-process from command-line flags.
pub struct Proxy {
    pub running: Option<scrape_guard::Running>,
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
}

impl Proxy {
    /// Starts scrape-guard on 127.0.0.1:0 with the test certificate, the fake
    /// apiserver's kubeconfig, `upstream`, and any extra flags.
    pub async fn start(pki: &Pki, api: &FakeApiserver, upstream: &str, extra: &[&str]) -> Self {
        let kubeconfig = format!("--kubeconfig={}", api.kubeconfig.display());
        let mut args = vec![kubeconfig.as_str()];
        args.extend_from_slice(extra);
        Self::start_with(pki, upstream, &args).await
    }

    /// Starts scrape-guard with no apiserver unless `extra` names one.
    pub async fn start_with(pki: &Pki, upstream: &str, extra: &[&str]) -> Self {
        let mut argv = vec![
            "scrape-guard".to_owned(),
            "--secure-listen-address=127.0.0.1:0".into(),
            format!("--tls-cert-file={}", pki.cert_path.display()),
            format!("--tls-private-key-file={}", pki.key_path.display()),
            format!("--upstream={upstream}"),
            "--kube-api-qps=-1".into(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        let args = <scrape_guard::Args as clap::Parser>::try_parse_from(argv).unwrap();
        let config = scrape_guard::Config::try_from(args).unwrap();
        let running = scrape_guard::start(config).await.unwrap();
        Self {
            addr: running.addr,
            admin_addr: running.admin_addr,
            running: Some(running),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    pub async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}

/// An HTTPS client trusting the test CA. `h2` chooses HTTP/2 (ALPN h2 only).
pub fn client(
    pki: &Pki,
    h2: bool,
) -> Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>> {
    client_with(pki, h2, None)
}

/// Like `client`, presenting a client certificate (cert PEM, key PEM).
pub fn client_with(
    pki: &Pki,
    h2: bool,
    identity: Option<&(String, String)>,
) -> Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>> {
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(pki.client_config_with(&[], identity))
        .https_only();
    // The builder sets ALPN: "h2" alone, or "http/1.1" alone.
    let connector = if h2 {
        builder.enable_http2().build()
    } else {
        builder.enable_http1().build()
    };
    Client::builder(TokioExecutor::new())
        .http2_only(h2)
        .build(connector)
}

/// A response, collected.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// GET `url` with an optional bearer token and extra headers.
pub async fn get(
    client: &Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> Reply {
    send(client, "GET", url, token, headers, Bytes::new()).await
}

pub async fn send(
    client: &Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    method: &str,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Reply {
    let mut request = Request::builder().method(method).uri(url);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = tokio::time::timeout(
        Duration::from_secs(30),
        client.request(request.body(Full::new(body)).unwrap()),
    )
    .await
    .expect("request timed out")
    .expect("request failed");
    let status = response.status();
    let version = response.version();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        version,
        headers,
        body,
    }
}

/// A free 127.0.0.1 port (bound, then released for the caller to use).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real `scrape-guard` binary on 127.0.0.1:`port` with the test certificate, the
/// fake apiserver's kubeconfig and `upstream`, plus `extra` flags and `env`. Returns
/// once it accepts connections (bounded wait); stderr is piped for `terminate`.
pub fn spawn_binary(
    pki: &Pki,
    api: &FakeApiserver,
    upstream: &str,
    port: u16,
    extra: &[&str],
    env: &[(&str, &str)],
) -> std::process::Child {
    let mut args = vec![
        format!("--secure-listen-address=[127.0.0.1]:{port}"),
        format!("--kubeconfig={}", api.kubeconfig.display()),
        format!("--upstream={upstream}"),
        format!("--tls-cert-file={}", pki.cert_path.display()),
        format!("--tls-private-key-file={}", pki.key_path.display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    // Defined for integration tests; examples and benches that share this module do not
    // spawn the binary.
    let Some(binary) = option_env!("CARGO_BIN_EXE_scrape-guard") else {
        panic!("spawn_binary is for integration tests (CARGO_BIN_EXE_scrape-guard)");
    };
    let mut child = std::process::Command::new(binary)
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("scrape-guard never listened on {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// SIGTERM by PID, then wait (bounded) for the exit; returns the status and stderr.
pub fn terminate(mut child: std::process::Child) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("scrape-guard did not exit within 20 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    (status, logs)
}

/// The scraper every suite uses: allowed to `get /metrics`.
pub const SCRAPER: &str = "system:serviceaccount:monitoring:prometheus";
/// A valid user with no grants at all.
pub const UNBOUND: &str = "system:serviceaccount:default:stranger";

/// A fake apiserver, an echo exporter and scrape-guard between them.
pub struct World {
    pub pki: Pki,
    pub api: Arc<FakeApiserver>,
    pub echo: Echo,
    pub proxy: Proxy,
}

impl World {
    /// `token` authenticates as `SCRAPER` (may `get /metrics`), "unbound" as `UNBOUND`;
    /// `extra` are scrape-guard flags.
    pub async fn start(token: &str, extra: &[&str]) -> Self {
        install_crypto();
        let pki = Pki::new();
        let api = FakeApiserver::start(&pki).await;
        api.add_token(token, SCRAPER);
        api.add_token("unbound", UNBOUND);
        api.allow(SCRAPER, "get", "/metrics");
        let echo = Echo::start().await;
        let proxy = Proxy::start(&pki, &api, &echo.url(), extra).await;
        Self {
            pki,
            api,
            echo,
            proxy,
        }
    }
}
