//! Fault injection: the apiserver slow, down and flapping; the exporter slow,
//! down and back; the serving certificate swapped under load; SIGTERM under load.
//!
//! The invariants are checked on what the exporter received and what the fake
//! apiserver reviewed: a 200 only ever for a token the apiserver allowed, never a
//! status outside the documented set, and the proxy still serving afterwards.
//! Every wait is bounded; the whole file runs in well under a minute on 2 cores.

use scrape_guard_testkit as support;

use std::{
    collections::{BTreeMap, HashSet},
    convert::Infallible,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use support::{
    client, eventually, free_port, get, Echo, FakeApiserver, Mode, Pki, Process, Proxy, World,
    METRICS_PAGE,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::AbortHandle,
};

const SA: &str = support::SCRAPER;
const TOKEN: &str = "good-token";

/// `TOKEN` is `SA` (may get /metrics and /slow); "unbound" may nothing.
async fn world(extra: &[&str]) -> World {
    let world = World::start(TOKEN, extra).await;
    world.api.allow(SA, "get", "/slow");
    world
}

async fn bounded<F: std::future::Future>(what: &str, limit: Duration, f: F) -> F::Output {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {limit:?}"))
}

// ---------------------------------------------------------------------------------
// Apiserver trouble
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_slow_apiserver_is_503_within_the_timeout_and_recovers() {
    let w = world(&["--apiserver-timeout=400ms"]).await;
    w.api.set_delay(Duration::from_secs(3));
    let c = client(&w.pki, false);
    // Concurrent first scrapes with different tokens: all answered, all fail closed.
    for i in 0..10 {
        w.api.add_token(&format!("fresh-{i}"), SA);
    }
    let start = Instant::now();
    let url = w.proxy.url("/metrics");
    let replies = bounded(
        "10 scrapes against a slow apiserver",
        Duration::from_secs(10),
        futures_util::future::join_all((0..10).map(|i| {
            let (c, url) = (&c, &url);
            async move { get(c, url, Some(&format!("fresh-{i}")), &[]).await }
        })),
    )
    .await;
    let took = start.elapsed();
    for reply in &replies {
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert_eq!(reply.json()["reason"], "ServiceUnavailable");
    }
    assert!(
        took < Duration::from_secs(3),
        "answered after the apiserver timeout, not the apiserver's delay: {took:?}"
    );
    assert!(w.echo.seen().is_empty(), "nothing forwarded");

    w.api.set_delay(Duration::ZERO);
    let reply = get(&c, &url, Some("fresh-0"), &[]).await;
    assert_eq!(
        reply.status, 200,
        "recovers once the apiserver is fast again"
    );
    assert_eq!(w.echo.seen().len(), 1);
}

#[tokio::test]
async fn a_dead_apiserver_lets_no_unreviewed_token_in() {
    let w = world(&["--apiserver-timeout=500ms"]).await;
    let c = client(&w.pki, false);
    let url = w.proxy.url("/metrics");
    // Reviewed and allowed while the apiserver was up.
    assert_eq!(get(&c, &url, Some(TOKEN), &[]).await.status, 200);
    w.api.add_token("fresh", SA);
    w.api.kill();
    for _ in 0..3 {
        let reply = get(&c, &url, Some(TOKEN), &[]).await;
        assert_eq!(reply.status, 200, "a cached allow keeps working");
        for token in ["fresh", "unbound", "never-seen"] {
            let reply = bounded(
                "a scrape",
                Duration::from_secs(5),
                get(&c, &url, Some(token), &[]),
            )
            .await;
            assert_eq!(reply.status, 503, "{token}: {}", reply.text());
        }
    }
    assert_eq!(
        w.echo.seen().len(),
        4,
        "only the cached token's scrapes went through"
    );
}

/// The apiserver flips between failing and answering every 100 ms while four
/// clients scrape with tokens of every kind; caches expire every 100 ms so reviews keep
/// happening. Every request is tagged so each request the exporter receives can be
/// traced to the token that sent it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_apiserver_never_lets_a_wrong_token_through() {
    let w = Arc::new(
        world(&[
            "--apiserver-timeout=300ms",
            "--auth-cache-ttl=100ms",
            "--auth-negative-cache-ttl=100ms",
            "--authz-allow-ttl=100ms",
            "--authz-deny-ttl=100ms",
        ])
        .await,
    );
    let flapping = Arc::new(AtomicBool::new(true));
    let flipper = {
        let (api, flapping) = (Arc::clone(&w.api), Arc::clone(&flapping));
        tokio::spawn(async move {
            // 100 ms ticks: three failing, one answering. The failing stretch outlasts
            // the proxy's retries within --apiserver-timeout, so failures are felt.
            let mut tick = 0u32;
            while flapping.load(Ordering::Relaxed) {
                let fail = tick % 4 != 3;
                api.set_mode(if fail { Mode::Fail } else { Mode::Normal });
                tick += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            api.set_mode(Mode::Normal);
        })
    };
    let next = Arc::new(AtomicUsize::new(0));
    // request tag → (token kind, status)
    let results = Arc::new(Mutex::new(BTreeMap::<usize, (&'static str, u16)>::new()));
    // How long the clients keep scraping (a load duration, not a wait for something).
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (w, next, results) = (Arc::clone(&w), Arc::clone(&next), Arc::clone(&results));
        clients.push(tokio::spawn(async move {
            let c = client(&w.pki, false);
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let (kind, token) = match n % 4 {
                    0 => ("allowed", TOKEN.to_owned()),
                    1 => ("denied", "unbound".to_owned()),
                    2 => ("unknown", format!("bogus-{n}")),
                    _ => {
                        let token = format!("fresh-{n}");
                        w.api.add_token(&token, SA);
                        ("allowed", token)
                    }
                };
                let url = w.proxy.url(&format!("/metrics?tag={n}"));
                let reply = bounded(
                    "a scrape",
                    Duration::from_secs(5),
                    get(&c, &url, Some(&token), &[]),
                )
                .await;
                results
                    .lock()
                    .unwrap()
                    .insert(n, (kind, reply.status.as_u16()));
            }
        }));
    }
    for task in clients {
        task.await.expect("a client panicked");
    }
    flapping.store(false, Ordering::Relaxed);
    flipper.await.unwrap();

    let results = results.lock().unwrap().clone();
    let mut tally = BTreeMap::<(&str, u16), usize>::new();
    for (kind, status) in results.values() {
        *tally.entry((*kind, *status)).or_default() += 1;
        let allowed: &[u16] = match *kind {
            "allowed" => &[200, 503],
            "denied" => &[403, 503],
            _ => &[401, 503],
        };
        assert!(
            allowed.contains(status),
            "{kind} token answered {status}: {tally:?}"
        );
    }
    eprintln!(
        "flapping: {} scrapes, (kind, status) → count: {tally:?}",
        results.len()
    );
    assert!(
        results.len() >= 20,
        "too few scrapes to mean anything: {}",
        results.len()
    );
    assert!(
        tally.keys().any(|(_, s)| *s == 503),
        "the flapping was felt: {tally:?}"
    );
    assert!(
        tally.contains_key(&("allowed", 200)),
        "and so was recovery: {tally:?}"
    );

    // Every request the exporter saw was a 200 for an allowed token, and vice versa.
    let forwarded: Vec<usize> = w
        .echo
        .seen()
        .iter()
        .map(|s| s.uri.rsplit('=').next().unwrap().parse().unwrap())
        .collect();
    let forwarded_set: HashSet<usize> = forwarded.iter().copied().collect();
    assert_eq!(
        forwarded.len(),
        forwarded_set.len(),
        "each request forwarded at most once"
    );
    for tag in &forwarded {
        assert_eq!(
            results[tag],
            ("allowed", 200),
            "request {tag} was forwarded"
        );
    }
    let oks = results.values().filter(|r| r.1 == 200).count();
    assert_eq!(oks, forwarded.len(), "every 200 came from the exporter");

    // Back to normal: a brand-new token works at once.
    w.api.add_token("after", SA);
    let reply = get(
        &client(&w.pki, false),
        &w.proxy.url("/metrics"),
        Some("after"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200);
}

// ---------------------------------------------------------------------------------
// Upstream trouble
// ---------------------------------------------------------------------------------

/// A tiny exporter on a fixed port that can be stopped (listener and every connection
/// closed) and started again on the same port. `/hang` never answers.
struct Exporter {
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Exporter {
    async fn start(port: u16) -> Self {
        let listener = eventually(Duration::from_secs(5), || async move {
            TcpListener::bind(("127.0.0.1", port))
                .await
                .map_err(|e| format!("rebinding 127.0.0.1:{port}: {e}"))
        })
        .await;
        let tasks: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let registry = Arc::clone(&tasks);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let conn = tokio::spawn(async move {
                    let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                        match req.uri().path() {
                            "/hang" => std::future::pending::<()>().await,
                            "/slow" => tokio::time::sleep(Duration::from_millis(800)).await,
                            _ => {}
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(METRICS_PAGE))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
                registry.lock().unwrap().push(conn.abort_handle());
            }
        });
        tasks.lock().unwrap().push(accept.abort_handle());
        Self { tasks }
    }

    async fn stop(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
        // Let the aborted tasks drop their sockets.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

#[tokio::test]
async fn a_slow_or_dead_exporter_is_504_or_502_and_recovery_is_immediate() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token(TOKEN, SA);
    for path in ["/metrics", "/hang", "/slow"] {
        api.allow(SA, "get", path);
    }
    let port = free_port();
    let exporter = Exporter::start(port).await;
    let proxy = Proxy::start(
        &pki,
        &api,
        &format!("http://127.0.0.1:{port}/"),
        &["--upstream-timeout=500ms"],
    )
    .await;
    let c = client(&pki, false);
    let scrape = |path: &'static str| {
        let (c, url) = (c.clone(), proxy.url(path));
        async move {
            bounded(
                path,
                Duration::from_secs(5),
                get(&c, &url, Some(TOKEN), &[]),
            )
            .await
        }
    };

    assert_eq!(scrape("/metrics").await.status, 200);
    let start = Instant::now();
    let reply = scrape("/hang").await;
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        scrape("/metrics").await.status,
        200,
        "a hung request does not poison the pool"
    );

    exporter.stop().await;
    for _ in 0..3 {
        let reply = scrape("/metrics").await;
        assert_eq!(reply.status, 502, "{}", reply.text());
    }

    let exporter = Exporter::start(port).await;
    let reply = scrape("/metrics").await;
    assert_eq!(
        reply.status, 200,
        "the first scrape after the exporter is back"
    );
    assert_eq!(reply.text(), METRICS_PAGE);

    // Stopped in the middle of a response: 502 (or a cut-off body), never a hang.
    let inflight = tokio::spawn(scrape("/slow"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    exporter.stop().await;
    let reply = inflight.await.unwrap();
    assert_eq!(reply.status, 502, "{}", reply.text());
    let _exporter = Exporter::start(port).await;
    assert_eq!(scrape("/metrics").await.status, 200);
}

// ---------------------------------------------------------------------------------
// Certificate swap under load
// ---------------------------------------------------------------------------------

/// A CA that can issue serving certificates after the proxy has started.
struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

impl Ca {
    fn new() -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "fault-test CA");
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            issuer: rcgen::Issuer::new(params, key),
            pem,
        }
    }

    /// A client (HTTP/1.1 by ALPN, no session resumption) trusting only this CA.
    fn client_config(&self) -> rustls::ClientConfig {
        use rustls_pki_types::{pem::PemObject, CertificateDer};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // A resumed session re-uses the certificate of the first handshake; these
        // clients must see what a brand-new client would.
        config.resumption = rustls::client::Resumption::disabled();
        config
    }

    /// (certificate PEM, key PEM, certificate DER) for localhost.
    fn issue(&self, name: &str) -> (String, String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

/// Writes a pair the way the kubelet updates a Secret volume: a new timestamped
/// directory, then `..data` atomically re-pointed at it (tls.crt → ..data/tls.crt).
fn publish(dir: &Path, version: &str, cert: &str, key: &str) {
    let target = dir.join(format!("..{version}"));
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("tls.crt"), cert).unwrap();
    std::fs::write(target.join("tls.key"), key).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for file in ["tls.crt", "tls.key"] {
        let link = dir.join(file);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{file}"), &link).unwrap();
        }
    }
}

/// One scrape on a brand-new TLS connection: (status line ok, peer certificate DER).
async fn scrape_new_connection(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
) -> Result<Vec<u8>, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let der = tls
        .get_ref()
        .1
        .peer_certificates()
        .ok_or("no peer certificate")?[0]
        .to_vec();
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    if !response.starts_with(b"HTTP/1.1 200 ") || !response.ends_with(METRICS_PAGE.as_bytes()) {
        return Err(format!(
            "response: {:?}",
            String::from_utf8_lossy(&response)
        ));
    }
    Ok(der)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_swap_under_load_fails_no_request() {
    support::install_crypto();
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert_a, key_a, der_a) = ca.issue("serving A");
    let (cert_b, key_b, der_b) = ca.issue("serving B");
    publish(dir.path(), "2026_01_01_a", &cert_a, &key_a);
    // The fake apiserver has its own test PKI; the proxy serves from `dir`.
    let api_pki = Pki::new();
    let api = FakeApiserver::start(&api_pki).await;
    api.add_token(TOKEN, SA);
    api.allow(SA, "get", "/metrics");
    let echo = Echo::start().await;
    let argv = [
        "scrape-guard".to_owned(),
        "--secure-listen-address=127.0.0.1:0".into(),
        format!("--tls-cert-file={}", dir.path().join("tls.crt").display()),
        format!(
            "--tls-private-key-file={}",
            dir.path().join("tls.key").display()
        ),
        format!("--upstream={}", echo.url()),
        format!("--kubeconfig={}", api.kubeconfig.display()),
        "--kube-api-qps=-1".into(),
    ];
    let args = <scrape_guard::Args as clap::Parser>::try_parse_from(argv).unwrap();
    let config = scrape_guard::Config::try_from(args).unwrap();
    let proxy = scrape_guard::start(config).await.unwrap();
    let client_config = Arc::new(ca.client_config());

    // Two clients, each scraping over a new connection every ~20 ms, recording which
    // certificate each handshake presented.
    let running = Arc::new(AtomicBool::new(true));
    // (when the connection was begun, when the scrape ended, the certificate presented)
    type Entry = (Instant, Instant, Result<Vec<u8>, String>);
    let log = Arc::new(Mutex::new(Vec::<Entry>::new()));
    let mut loops = Vec::new();
    for _ in 0..2 {
        let (config, running, log, addr) = (
            Arc::clone(&client_config),
            Arc::clone(&running),
            Arc::clone(&log),
            proxy.addr,
        );
        loops.push(tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                let begun = Instant::now();
                let result = tokio::time::timeout(
                    Duration::from_secs(5),
                    scrape_new_connection(Arc::clone(&config), addr),
                )
                .await
                .unwrap_or_else(|_| Err("timed out".into()));
                log.lock().unwrap().push((begun, Instant::now(), result));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    // Certificates of the connections begun after `since`.
    let presented_since = |since: Instant| -> Vec<Vec<u8>> {
        log.lock()
            .unwrap()
            .iter()
            .filter(|(begun, _, _)| *begun > since)
            .filter_map(|(_, _, r)| r.as_ref().ok().cloned())
            .collect()
    };

    // 1. A garbage certificate (with a valid key) is published: ignored for > 1 reload.
    tokio::time::sleep(Duration::from_millis(500)).await;
    publish(
        dir.path(),
        "2026_01_02_garbage",
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
        &key_b,
    );
    let garbage_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(6000)).await;
    let during_garbage = presented_since(garbage_at);
    assert!(!during_garbage.is_empty());
    assert!(
        during_garbage.iter().all(|d| *d == der_a),
        "the old certificate keeps serving"
    );

    // 2. A valid new pair: new handshakes present it within 15 s.
    publish(dir.path(), "2026_01_03_b", &cert_b, &key_b);
    let swapped_at = Instant::now();
    let picked_up = eventually(Duration::from_secs(15), || {
        let log = log.lock().unwrap();
        let first_b_served = log
            .iter()
            .filter(|(_, _, r)| r.as_ref().is_ok_and(|d| *d == der_b))
            .map(|(_, ended, _)| *ended)
            .min();
        std::future::ready(match first_b_served {
            Some(b_served) => {
                // Once B is served, A never comes back: no connection begun after a
                // scrape over B had ended presents A. (Log order is not handshake
                // order: a connection begun before the swap may end after one begun
                // after it.)
                assert!(
                    !log.iter()
                        .any(|(begun, _, r)| *begun > b_served
                            && r.as_ref().is_ok_and(|d| *d == der_a)),
                    "flapped back to the old certificate"
                );
                Ok(swapped_at.elapsed())
            }
            None => Err("new certificate not served after 15 s"),
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.store(false, Ordering::Relaxed);
    for task in loops {
        bounded("a client loop", Duration::from_secs(10), task)
            .await
            .unwrap();
    }

    let log = log.lock().unwrap();
    let failures: Vec<&String> = log
        .iter()
        .filter_map(|(_, _, r)| r.as_ref().err())
        .collect();
    eprintln!(
        "certificate swap: {} scrapes on new connections, {} failed, new certificate after {picked_up:?}",
        log.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "failed requests during the swap: {failures:?}"
    );
    assert!(log.len() > 100, "the load was real: {} scrapes", log.len());
    assert_eq!(
        echo.seen().len(),
        log.len(),
        "every scrape reached the exporter"
    );
}

// ---------------------------------------------------------------------------------
// SIGTERM under load (the real binary)
// ---------------------------------------------------------------------------------

const BIN: &str = env!("CARGO_BIN_EXE_scrape-guard");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_completes_every_in_flight_request() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token(TOKEN, SA);
    api.allow(SA, "get", "/slow");
    api.allow(SA, "get", "/metrics");
    let echo = Echo::start().await;
    let port = free_port();
    let log_path: PathBuf = pki.dir.path().join("scrape-guard.log");
    let mut child = Process::kill_on_drop(
        Command::new(BIN)
            .args([
                format!("--secure-listen-address=127.0.0.1:{port}"),
                format!("--kubeconfig={}", api.kubeconfig.display()),
                format!("--upstream={}", echo.url()),
                format!("--tls-cert-file={}", pki.cert_path.display()),
                format!("--tls-private-key-file={}", pki.key_path.display()),
                "--shutdown-grace=5s".into(),
            ])
            .env_remove("KUBECONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log_path).unwrap()))
            .spawn()
            .unwrap(),
    );
    let logs = || std::fs::read_to_string(&log_path).unwrap_or_default();

    eventually(Duration::from_secs(20), || async {
        match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("scrape-guard never listened:\n{}", logs())),
        }
    })
    .await;
    let c = client(&pki, false);
    let base = format!("https://localhost:{port}");
    assert_eq!(
        get(&c, &format!("{base}/metrics"), Some(TOKEN), &[])
            .await
            .status,
        200
    );

    // N slow scrapes in flight (each on its own connection), then SIGTERM.
    const N: usize = 8;
    let in_flight: Vec<_> = (0..N)
        .map(|_| {
            let c = client(&pki, false);
            let url = format!("{base}/slow?ms=800");
            tokio::spawn(async move { get(&c, &url, Some(TOKEN), &[]).await })
        })
        .collect();
    eventually(Duration::from_secs(10), || async {
        if echo.seen().len() < 1 + N {
            Err("the slow scrapes reaching the exporter: not done within 10s")
        } else {
            Ok(())
        }
    })
    .await;
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let signalled = Instant::now();

    for (i, task) in in_flight.into_iter().enumerate() {
        let reply = bounded("an in-flight scrape", Duration::from_secs(10), task)
            .await
            .unwrap_or_else(|e| panic!("in-flight scrape {i} failed: {e}\n{}", logs()));
        assert_eq!(reply.status, 200, "in-flight scrape {i}");
        assert_eq!(reply.text(), METRICS_PAGE);
    }
    // The 8 s count from SIGTERM, not from here.
    let left = Duration::from_secs(8).saturating_sub(signalled.elapsed());
    let status = eventually(left, || {
        let exited = child.try_wait().unwrap();
        std::future::ready(
            exited
                .ok_or_else(|| format!("still running 8 s after SIGTERM (grace 5 s):\n{}", logs())),
        )
    })
    .await;
    let exited_after = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "exit status; logs:\n{}", logs());
    assert!(
        exited_after < Duration::from_secs(5),
        "exited {exited_after:?} after SIGTERM, beyond the grace period"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "nothing listening after exit"
    );
    assert_eq!(echo.seen().len(), 1 + N);
}
