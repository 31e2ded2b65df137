//! Helpers for `benches/load.sh`: a fake apiserver and small load clients that `oha`
//! cannot be: one token per request, a synchronized burst of first scrapes.
//!
//! ```text
//! bench_kit apiserver --dir DIR
//!     HTTPS apiserver on 127.0.0.1:<free port> answering TokenReview and
//!     SubjectAccessReview with the real JSON. Any token starting with "bench-" is
//!     user "system:serviceaccount:bench:<token>", allowed `get` on every path; any
//!     other token is rejected. Writes DIR/kubeconfig (for --kubeconfig) and
//!     DIR/control (host:port of a plain-HTTP control endpoint):
//!       GET /counts          {"token_reviews":N,"sars":M}
//!       GET /delay?ms=N      every review waits N ms before answering
//! bench_kit scrape --url URL --prefix P [--start S] [--count N] [--seconds T]
//!                  [--concurrency C]
//!     GETs URL with token P<S>, P<S+1>, ... (one distinct token per request) over C
//!     kept-alive HTTP/1.1 TLS connections, until N requests or T seconds. Prints JSON.
//! bench_kit burst --url URL --token T [--connections N]
//!     Opens N TLS connections, waits until every handshake is done, then sends one
//!     GET with the same token on each at once. Prints JSON (statuses, seconds).
//! bench_kit exporter --page FILE [--gzip FILE.gz] [--big FILE] --port-file F [--chunk BYTES]
//!     Plain-HTTP/1.1 keep-alive exporter on 127.0.0.1:<free port> (written to F) that
//!     answers every GET as Go's exporters (promhttp) do: `Transfer-Encoding: chunked`,
//!     one write per chunk of BYTES (default 4096, the size of Go's response buffer);
//!     with FILE.gz (gzip made beforehand) and `gzip` in `Accept-Encoding`, that
//!     compressed page with `Content-Encoding: gzip`, else FILE. A path with `/ksm/`
//!     gets the --big page, uncompressed.
//! ```
//! The clients do not verify the server certificate (self-signed, loopback only).

use scrape_guard_testkit as support;

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

fn main() {
    support::install_crypto();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        usage();
    };
    let flags = Flags::parse(rest);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match command.as_str() {
        "apiserver" => runtime.block_on(apiserver(flags)),
        "scrape" => runtime.block_on(scrape(flags)),
        "burst" => runtime.block_on(burst(flags)),
        "exporter" => runtime.block_on(exporter(flags)),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: bench_kit apiserver|scrape|burst|exporter [--flag value ...] (see the source)"
    );
    std::process::exit(2)
}

struct Flags(BTreeMap<String, String>);

impl Flags {
    fn parse(args: &[String]) -> Self {
        let mut map = BTreeMap::new();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let Some(name) = flag.strip_prefix("--") else {
                usage()
            };
            let Some(value) = it.next() else { usage() };
            map.insert(name.to_owned(), value.clone());
        }
        Self(map)
    }

    fn get(&self, name: &str) -> String {
        self.0.get(name).cloned().unwrap_or_else(|| {
            eprintln!("bench_kit: --{name} is required");
            std::process::exit(2)
        })
    }

    fn num(&self, name: &str, default: u64) -> u64 {
        self.0
            .get(name)
            .map(|v| v.parse().expect("a number"))
            .unwrap_or(default)
    }
}

// ---------------------------------------------------------------- exporter

/// A page, chunked as it goes on the wire: each chunk's bytes, header and trailing CRLF
/// included, so that serving it is one write per chunk.
fn chunked(page: &[u8], chunk: usize) -> Vec<Bytes> {
    let mut out: Vec<Bytes> = page
        .chunks(chunk.max(1))
        .map(|piece| {
            let mut wire = format!("{:x}\r\n", piece.len()).into_bytes();
            wire.extend_from_slice(piece);
            wire.extend_from_slice(b"\r\n");
            Bytes::from(wire)
        })
        .collect();
    out.push(Bytes::from_static(b"0\r\n\r\n"));
    out
}

async fn exporter(flags: Flags) {
    let chunk = flags.num("chunk", 4096) as usize;
    let plain = Arc::new(chunked(&std::fs::read(flags.get("page")).unwrap(), chunk));
    let gzip = flags
        .0
        .get("gzip")
        .map(|path| Arc::new(chunked(&std::fs::read(path).unwrap(), chunk)));
    let big = flags
        .0
        .get("big")
        .map(|path| Arc::new(chunked(&std::fs::read(path).unwrap(), chunk)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port_file = flags.get("port-file");
    std::fs::write(
        &port_file,
        listener.local_addr().unwrap().port().to_string(),
    )
    .unwrap();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let pages = Pages {
            plain: Arc::clone(&plain),
            gzip: gzip.clone(),
            big: big.clone(),
        };
        tokio::spawn(async move {
            let _ = export(tcp, pages).await;
        });
    }
}

/// The exporter's pages, chunked.
struct Pages {
    plain: Arc<Vec<Bytes>>,
    gzip: Option<Arc<Vec<Bytes>>>,
    big: Option<Arc<Vec<Bytes>>>,
}

/// Serves the GETs of one keep-alive connection.
async fn export(mut tcp: TcpStream, pages: Pages) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::with_capacity(8192);
    loop {
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut more = [0u8; 4096];
            let n = tcp.read(&mut more).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&more[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        buf.drain(..end);
        let wants_gzip = head.lines().any(|line| {
            line.strip_prefix("accept-encoding:")
                .is_some_and(|value| value.contains("gzip"))
        });
        let big = head
            .lines()
            .next()
            .is_some_and(|line| line.contains("/ksm/"));
        let (chunks, encoding) = match (&pages.big, &pages.gzip) {
            (Some(page), _) if big => (page, ""),
            (_, Some(gzip)) if wants_gzip => (gzip, "Content-Encoding: gzip\r\n"),
            _ => (&pages.plain, ""),
        };
        let header = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
             {encoding}Vary: Accept-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        // Go's connection buffer sends the header with the first chunk.
        let mut first = header.into_bytes();
        first.extend_from_slice(&chunks[0]);
        tcp.write_all(&first).await?;
        for chunk in &chunks[1..] {
            tcp.write_all(chunk).await?;
        }
    }
}

// ---------------------------------------------------------------- fake apiserver

#[derive(Default)]
struct Counters {
    token_reviews: AtomicU64,
    sars: AtomicU64,
    delay_ms: AtomicU64,
}

async fn apiserver(flags: Flags) {
    let dir = PathBuf::from(flags.get("dir"));
    let pki = support::Pki::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let control = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control_addr = control.local_addr().unwrap();
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: bench\n  cluster:\n    \
         server: https://127.0.0.1:{port}\n    certificate-authority: {ca}\n\
         users:\n- name: proxy\n  user:\n    token: proxy-sa-token\n\
         contexts:\n- name: bench\n  context:\n    cluster: bench\n    user: proxy\n\
         current-context: bench\n",
        port = addr.port(),
        ca = pki.ca_path.display()
    );
    std::fs::write(dir.join("kubeconfig"), kubeconfig).unwrap();
    std::fs::write(dir.join("control"), control_addr.to_string()).unwrap();

    let counters = Arc::new(Counters::default());
    let counters2 = Arc::clone(&counters);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = control.accept().await else {
                continue;
            };
            let counters = Arc::clone(&counters2);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let counters = Arc::clone(&counters);
                    async move { Ok::<_, Infallible>(control_answer(&req, &counters)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });

    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(pki.server_config(&[b"http/1.1"])));
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let counters = Arc::clone(&counters);
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                let counters = Arc::clone(&counters);
                async move { Ok::<_, Infallible>(review_answer(req, &counters).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

fn control_answer(req: &Request<Incoming>, counters: &Counters) -> Response<Full<Bytes>> {
    if req.uri().path() == "/delay" {
        let ms = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("ms="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        counters.delay_ms.store(ms, Ordering::SeqCst);
    }
    json_response(
        StatusCode::OK,
        &json!({
            "token_reviews": counters.token_reviews.load(Ordering::SeqCst),
            "sars": counters.sars.load(Ordering::SeqCst),
            "delay_ms": counters.delay_ms.load(Ordering::SeqCst),
        }),
    )
}

const USER_PREFIX: &str = "system:serviceaccount:bench:";

async fn review_answer(req: Request<Incoming>, counters: &Counters) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    if path == "/version" {
        return json_response(
            StatusCode::OK,
            &json!({"major": "1", "minor": "20", "gitVersion": "v1.20.2", "gitCommit": "bench",
                    "gitTreeState": "clean", "buildDate": "2021-01-01T00:00:00Z",
                    "goVersion": "go1.19", "compiler": "gc", "platform": "linux/amd64"}),
        );
    }
    let body = match req.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return json_response(StatusCode::BAD_REQUEST, &json!({"kind": "Status"})),
    };
    let mut review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let status = match path.as_str() {
        "/apis/authentication.k8s.io/v1/tokenreviews" => {
            counters.token_reviews.fetch_add(1, Ordering::SeqCst);
            let token = review["spec"]["token"].as_str().unwrap_or_default();
            match token.strip_prefix("bench-") {
                Some(_) => {
                    let audiences = match review["spec"]["audiences"].as_array() {
                        Some(wanted) if !wanted.is_empty() => Value::Array(wanted.clone()),
                        _ => json!(["https://kubernetes.default.svc"]),
                    };
                    json!({
                        "authenticated": true,
                        "user": {
                            "username": format!("{USER_PREFIX}{token}"),
                            "uid": format!("uid-{token}"),
                            "groups": ["system:serviceaccounts", "system:serviceaccounts:bench",
                                       "system:authenticated"],
                        },
                        "audiences": audiences,
                    })
                }
                None => json!({"user": {}, "error": "invalid bearer token"}),
            }
        }
        "/apis/authorization.k8s.io/v1/subjectaccessreviews" => {
            counters.sars.fetch_add(1, Ordering::SeqCst);
            let spec = &review["spec"];
            let user = spec["user"].as_str().unwrap_or_default();
            let verb = spec["nonResourceAttributes"]["verb"]
                .as_str()
                .unwrap_or_default();
            if user.starts_with(USER_PREFIX) && verb == "get" {
                json!({"allowed": true, "reason": "RBAC: allowed by ClusterRoleBinding \"bench\""})
            } else {
                json!({"allowed": false})
            }
        }
        _ => return json_response(StatusCode::NOT_FOUND, &json!({"kind": "Status"})),
    };
    let delay = counters.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    review["status"] = status;
    json_response(StatusCode::CREATED, &review)
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

// ---------------------------------------------------------------- clients

struct Target {
    addr: SocketAddr,
    uri: Uri,
    connector: tokio_rustls::TlsConnector,
}

impl Target {
    fn new(url: &str) -> Arc<Self> {
        let uri: Uri = url.parse().expect("--url");
        let authority = uri.authority().expect("--url needs host:port");
        let addr: SocketAddr = authority
            .as_str()
            .parse()
            .expect("--url host must be an IP");
        let mut config = rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(support::https::AcceptAnyServer::default()))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(Self {
            addr,
            uri,
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    async fn connect(
        &self,
    ) -> std::io::Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::IpAddress(self.addr.ip().into());
        let tls = self.connector.connect(name, tcp).await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    fn request(&self, token: &str) -> Request<Empty<Bytes>> {
        Request::get(self.uri.path_and_query().map_or("/", |p| p.as_str()))
            .header("host", self.uri.authority().unwrap().as_str())
            .header("authorization", format!("Bearer {token}"))
            .header("user-agent", "bench_kit")
            .body(Empty::new())
            .unwrap()
    }
}

/// Sends one request and drains the body; the status, or None on a transport error.
async fn exchange(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    request: Request<Empty<Bytes>>,
) -> Option<u16> {
    sender.ready().await.ok()?;
    let response = sender.send_request(request).await.ok()?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        frame.ok()?;
    }
    Some(status)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

async fn scrape(flags: Flags) {
    let target = Target::new(&flags.get("url"));
    let prefix = Arc::new(flags.get("prefix"));
    let start = flags.num("start", 0);
    let count = flags.num("count", u64::MAX);
    let seconds = flags.num("seconds", 3600);
    let concurrency = flags.num("concurrency", 64) as usize;
    let next = Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    let deadline = began + Duration::from_secs(seconds);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (target, prefix, next) = (Arc::clone(&target), Arc::clone(&prefix), Arc::clone(&next));
        workers.spawn(async move {
            let mut latencies_us = Vec::new();
            let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
            let mut sender = None;
            loop {
                if Instant::now() >= deadline {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                if sender.is_none() {
                    sender = target.connect().await.ok();
                }
                let Some(s) = sender.as_mut() else {
                    *statuses.entry("connect-error".into()).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let token = format!("{prefix}{}", start + i);
                let sent = Instant::now();
                let status = exchange(s, target.request(&token)).await;
                latencies_us.push(sent.elapsed().as_micros() as u64);
                let key = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
                if status.is_none() {
                    sender = None;
                }
                *statuses.entry(key).or_default() += 1;
            }
            (latencies_us, statuses)
        });
    }
    let mut latencies = Vec::new();
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    while let Some(done) = workers.join_next().await {
        let (l, s) = done.unwrap();
        latencies.extend(l);
        for (k, v) in s {
            *statuses.entry(k).or_default() += v;
        }
    }
    let elapsed = began.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let requests = latencies.len() as f64;
    println!(
        "{}",
        json!({
            "requests": latencies.len(),
            "seconds": elapsed,
            "rps": requests / elapsed,
            "p50_ms": percentile(&latencies, 50.0),
            "p99_ms": percentile(&latencies, 99.0),
            "p999_ms": percentile(&latencies, 99.9),
            "statuses": statuses,
        })
    );
}

async fn burst(flags: Flags) {
    let target = Target::new(&flags.get("url"));
    let token = flags.get("token");
    let connections = flags.num("connections", 1000) as usize;
    // Handshakes first, 50 at a time, so the burst is only requests.
    let mut senders = Vec::with_capacity(connections);
    let connect_began = Instant::now();
    for chunk in (0..connections).collect::<Vec<_>>().chunks(50) {
        let opened = futures_util::future::join_all(chunk.iter().map(|_| target.connect())).await;
        for sender in opened {
            senders.push(sender.expect("connect"));
        }
    }
    let connect_seconds = connect_began.elapsed().as_secs_f64();
    let go = Arc::new(tokio::sync::Barrier::new(connections + 1));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for mut sender in senders {
        let (go, target, token, done) = (
            Arc::clone(&go),
            Arc::clone(&target),
            token.clone(),
            Arc::clone(&done),
        );
        tasks.spawn(async move {
            let request = target.request(&token);
            go.wait().await;
            let status = exchange(&mut sender, request).await;
            done.fetch_add(1, Ordering::Relaxed);
            status
        });
    }
    go.wait().await;
    let began = Instant::now();
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    while let Some(status) = tasks.join_next().await {
        let key = status
            .unwrap()
            .map_or_else(|| "error".to_owned(), |s| s.to_string());
        *statuses.entry(key).or_default() += 1;
    }
    println!(
        "{}",
        json!({
            "connections": connections,
            "connect_seconds": connect_seconds,
            "burst_seconds": began.elapsed().as_secs_f64(),
            "statuses": statuses,
        })
    );
}
