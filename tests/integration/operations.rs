//! Running it in production: apiserver trouble (retries, stale-if-error), the proxy's
//! own metrics behind authentication, and the access log.

use scrape_guard_testkit as support;

use std::time::Duration;

use support::{client, free_port, get, Echo, FakeApiserver, Mode, Pki, Proxy};

const SA: &str = "system:serviceaccount:monitoring:prometheus";

#[tokio::test]
async fn stale_if_error_reuses_recent_allows_but_never_denies_or_unknown_tokens() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token("good", SA);
    api.add_token("unbound", "system:serviceaccount:default:stranger");
    api.add_token("never-seen", "system:serviceaccount:default:late");
    api.allow(SA, "get", "/metrics");
    api.allow("system:serviceaccount:default:late", "get", "/metrics");
    let echo = Echo::start().await;
    let short = [
        "--auth-cache-ttl=200ms",
        "--auth-negative-cache-ttl=200ms",
        "--authz-allow-ttl=200ms",
        "--authz-deny-ttl=200ms",
        "--apiserver-timeout=500ms",
        "--stale-if-error=1m",
    ];
    let proxy = Proxy::start(&pki, &api, &echo.url(), &short).await;
    let c = client(&pki, false);
    let url = proxy.url("/metrics");
    assert_eq!(get(&c, &url, Some("good"), &[]).await.status, 200);
    assert_eq!(get(&c, &url, Some("unbound"), &[]).await.status, 403);

    tokio::time::sleep(Duration::from_millis(400)).await;
    api.set_mode(Mode::Fail);
    assert_eq!(
        get(&c, &url, Some("good"), &[]).await.status,
        200,
        "a recent allow stands in while the apiserver fails"
    );
    assert_eq!(
        get(&c, &url, Some("unbound"), &[]).await.status,
        503,
        "a deny is never extended into an allow, nor reused"
    );
    assert_eq!(
        get(&c, &url, Some("never-seen"), &[]).await.status,
        503,
        "an unknown token is never let in"
    );
    assert_eq!(
        echo.seen().len(),
        2,
        "only the two allowed scrapes were forwarded"
    );
}

#[tokio::test]
async fn without_stale_if_error_an_expired_allow_is_not_reused() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token("good", SA);
    api.allow(SA, "get", "/metrics");
    let echo = Echo::start().await;
    let args = [
        "--auth-cache-ttl=100ms",
        "--authz-allow-ttl=100ms",
        "--apiserver-timeout=500ms",
    ];
    let proxy = Proxy::start(&pki, &api, &echo.url(), &args).await;
    let c = client(&pki, false);
    assert_eq!(
        get(&c, &proxy.url("/metrics"), Some("good"), &[])
            .await
            .status,
        200
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    api.set_mode(Mode::Fail);
    assert_eq!(
        get(&c, &proxy.url("/metrics"), Some("good"), &[])
            .await
            .status,
        503
    );
}

#[tokio::test]
async fn transient_apiserver_errors_are_retried_within_the_budget() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token("good", SA);
    api.allow(SA, "get", "/metrics");
    let echo = Echo::start().await;
    let proxy = Proxy::start(&pki, &api, &echo.url(), &["--apiserver-timeout=5s"]).await;
    api.fail_next(2);
    let reply = get(
        &client(&pki, false),
        &proxy.url("/metrics"),
        Some("good"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200, "a retry after a 500 succeeded");
    assert_eq!(
        api.token_reviews(),
        3,
        "two failures, then the third attempt succeeded"
    );
}

#[tokio::test]
async fn own_metrics_are_guarded_like_a_scrape() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token("good", SA);
    api.add_token("unbound", "system:serviceaccount:default:stranger");
    api.allow(SA, "get", "/metrics");
    let echo = Echo::start().await;
    let port = free_port();
    let proxy = Proxy::start(
        &pki,
        &api,
        &echo.url(),
        &[&format!("--proxy-endpoints-port={port}")],
    )
    .await;
    let c = client(&pki, false);
    assert_eq!(
        get(&c, &proxy.url("/metrics"), Some("good"), &[])
            .await
            .status,
        200
    );
    let url = format!("https://localhost:{port}/metrics");
    assert_eq!(get(&c, &url, None, &[]).await.status, 401);
    assert_eq!(get(&c, &url, Some("unbound"), &[]).await.status, 403);
    let reply = get(&c, &url, Some("good"), &[]).await;
    assert_eq!(reply.status, 200);
    let text = reply.text();
    for needle in [
        "scrape_guard_requests_total{code=\"200\"} 1",
        "scrape_guard_authentication_total{result=\"authenticated\",source=\"apiserver\"} 2",
        "scrape_guard_authentication_total{result=\"authenticated\",source=\"cache\"} 1",
        "scrape_guard_authorization_total{result=\"denied\",source=\"apiserver\"} 1",
        "scrape_guard_review_duration_seconds_count{review=\"tokenreview\"}",
        "scrape_guard_cache_entries{cache=\"authentication\"}",
        "scrape_guard_certificate_expiry_timestamp_seconds",
        "scrape_guard_build_info{version=",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert_eq!(
        reply.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(
        text.contains("# TYPE scrape_guard_requests_total counter\n") && !text.contains("# EOF")
    );
    // Asked for OpenMetrics (as Prometheus asks), it gets it; an HTTP/2 scrape is
    // counted by its ALPN.
    let h2 = client(&pki, true);
    let scrape = get(&h2, &proxy.url("/metrics"), Some("good"), &[]).await;
    assert_eq!(scrape.version, http::Version::HTTP_2);
    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let reply = get(&c, &url, Some("good"), &[("accept", accept)]).await;
    assert_eq!(
        reply.headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = reply.text();
    assert!(text.ends_with("# EOF\n"), "{text}");
    for needle in [
        "# TYPE scrape_guard_requests counter\n",
        "scrape_guard_tls_connections_total{alpn=\"h2\"} 1\n",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert_eq!(echo.seen().len(), 2, "own metrics never touch the exporter");
}

#[test]
fn access_log_has_one_line_per_request_and_no_token() {
    support::install_crypto();
    let pki = Pki::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let api = runtime.block_on(FakeApiserver::start(&pki));
    api.add_token("access-log-secret", SA);
    api.allow(SA, "get", "/metrics");
    let echo = runtime.block_on(Echo::start());
    let port = free_port();
    let child = runtime.block_on(support::spawn_binary(
        env!("CARGO_BIN_EXE_scrape-guard"),
        &pki,
        &api,
        &echo.url(),
        port,
        &["--access-log", "--log-format=json"],
        &[],
    ));
    runtime.block_on(async {
        let c = client(&pki, false);
        let url = format!("https://localhost:{port}/metrics");
        assert_eq!(
            get(&c, &url, Some("access-log-secret"), &[]).await.status,
            200
        );
        assert_eq!(get(&c, &url, None, &[]).await.status, 401);
    });
    let (_, logs) = runtime.block_on(support::terminate(child));
    let access: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["target"] == "access")
        .collect();
    assert_eq!(access.len(), 2, "one line per request:\n{logs}");
    assert_eq!(access[0]["fields"]["status"], 200);
    assert_eq!(access[0]["fields"]["user"], SA);
    assert_eq!(access[0]["fields"]["path"], "/metrics");
    assert_eq!(access[1]["fields"]["status"], 401);
    assert_eq!(access[1]["fields"]["user"], "-");
    assert!(
        !logs.contains("access-log-secret"),
        "token in the logs:\n{logs}"
    );
}

#[tokio::test]
async fn client_certificates_authenticate_as_cn_with_o_groups() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token("good", SA);
    api.allow(SA, "get", "/metrics");
    api.allow("cert-user", "get", "/metrics");
    let echo = Echo::start().await;
    let proxy = Proxy::start(
        &pki,
        &api,
        &echo.url(),
        &[
            &format!("--client-ca-file={}", pki.ca_path.display()),
            "--auth-header-fields-enabled",
        ],
    )
    .await;
    let url = proxy.url("/metrics");

    // A certificate from the CA: no token needed, no TokenReview; SAR for CN with O groups.
    let identity = pki.client_cert("cert-user", &["scrapers"]);
    let with_cert = support::client_with(&pki, false, Some(&identity));
    let reply = get(&with_cert, &url, None, &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(api.token_reviews(), 0);
    let sar = api.last_sar_spec();
    assert_eq!(sar["user"], "cert-user");
    assert_eq!(sar["groups"][0], "scrapers");
    assert_eq!(echo.seen()[0].headers["x-remote-user"], "cert-user");

    // Certificate first, then token: the certificate's identity wins.
    let reply = get(&with_cert, &url, Some("good"), &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(api.token_reviews(), 0);

    // A client without a certificate still works with a token (requested, not required).
    let plain = client(&pki, false);
    assert_eq!(get(&plain, &url, Some("good"), &[]).await.status, 200);
    assert_eq!(get(&plain, &url, None, &[]).await.status, 401);

    // A certificate from another CA fails the handshake.
    let other = Pki::new();
    let foreign = other.client_cert("cert-user", &[]);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(pki.client_config_with(&[], Some(&foreign)))
        .https_only()
        .enable_http1()
        .build();
    let foreign_client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build::<_, http_body_util::Full<bytes::Bytes>>(connector);
    let request = http::Request::get(&url)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), foreign_client.request(request))
        .await
        .expect("bounded");
    let refused = match outcome {
        Err(_) => true,
        Ok(response) => response.status() != 200,
    };
    assert!(refused, "an unknown CA's certificate must not get through");
}

/// Serves `METRICS_PAGE` over HTTP/1 or h2c on a Unix socket, recording request versions.
async fn unix_exporter(
    path: std::path::PathBuf,
) -> std::sync::Arc<std::sync::Mutex<Vec<http::Version>>> {
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let versions: std::sync::Arc<std::sync::Mutex<Vec<http::Version>>> = Default::default();
    let seen = std::sync::Arc::clone(&versions);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = std::sync::Arc::clone(&seen);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        seen.lock().unwrap().push(req.version());
                        async move {
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(
                                    support::METRICS_PAGE.as_bytes(),
                                )),
                            ))
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            });
        }
    });
    versions
}

#[tokio::test]
async fn unix_socket_upstreams_with_and_without_h2c() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token("good", SA);
    api.allow(SA, "get", "/metrics");
    for h2c in [false, true] {
        let socket = pki.dir.path().join(format!("exporter-{h2c}.sock"));
        let versions = unix_exporter(socket.clone()).await;
        let upstream = format!("unix://{}", socket.display());
        let extra: &[&str] = if h2c { &["--upstream-force-h2c"] } else { &[] };
        let proxy = Proxy::start(&pki, &api, &upstream, extra).await;
        let reply = get(
            &client(&pki, false),
            &proxy.url("/metrics"),
            Some("good"),
            &[],
        )
        .await;
        assert_eq!(reply.status, 200, "h2c={h2c}");
        assert_eq!(reply.text(), support::METRICS_PAGE);
        let want = if h2c {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        assert_eq!(versions.lock().unwrap().as_slice(), [want], "h2c={h2c}");
    }
}

/// One scrape on a new TLS connection from `connector` (whose session cache it
/// shares): the status, and whether the session was resumed.
async fn scrape_on_new_connection(
    connector: &tokio_rustls::TlsConnector,
    addr: std::net::SocketAddr,
) -> (u16, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .expect("handshake within 5 s")
        .expect("handshake");
    let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    tls.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, resumed)
}

#[tokio::test]
async fn a_resumed_session_does_not_outlive_its_client_certificate() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.allow("cert-user", "get", "/metrics");
    let echo = Echo::start().await;
    let proxy = Proxy::start(
        &pki,
        &api,
        &echo.url(),
        &[&format!("--client-ca-file={}", pki.ca_path.display())],
    )
    .await;
    let lifetime = Duration::from_secs(3);
    let identity = pki.short_lived_client_cert("cert-user", lifetime);
    // One client config: its session cache is what lets the second connection resume.
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        pki.client_config_with(&[b"http/1.1"], Some(&identity)),
    ));

    let (status, resumed) = scrape_on_new_connection(&connector, proxy.addr).await;
    assert_eq!(
        (status, resumed),
        (200, false),
        "a full handshake, as cert-user"
    );
    let (status, resumed) = scrape_on_new_connection(&connector, proxy.addr).await;
    assert_eq!(
        (status, resumed),
        (200, true),
        "resumed while the certificate is valid"
    );

    tokio::time::sleep(lifetime + Duration::from_secs(1)).await;
    let (status, resumed) = scrape_on_new_connection(&connector, proxy.addr).await;
    assert!(resumed, "the client resumed its session after expiry");
    assert_eq!(
        status, 401,
        "an expired certificate names nobody, resumed session or not"
    );
}

/// A v1 client certificate from the test CA, as `openssl x509 -req` makes by default.
fn openssl_v1_client_cert(pki: &Pki) -> (String, String) {
    let dir = pki.dir.path();
    let (key, csr, cert) = (dir.join("v1.key"), dir.join("v1.csr"), dir.join("v1.crt"));
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl (Debian package openssl) is needed to make a v1 certificate");
        assert!(status.success(), "openssl {args:?}");
    };
    let path = |p: &std::path::Path| p.display().to_string();
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=v1-user",
        "-keyout",
        &path(&key),
        "-out",
        &path(&csr),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &path(&csr),
        "-CA",
        &path(&pki.ca_path),
        "-CAkey",
        &path(&pki.ca_key_path),
        "-set_serial",
        "7",
        "-days",
        "1",
        "-out",
        &path(&cert),
    ]);
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    (read(&cert), read(&key))
}

#[tokio::test]
async fn refused_client_certificates_are_explained_in_the_log() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    let echo = Echo::start().await;
    let port = free_port();
    let ca = format!("--client-ca-file={}", pki.ca_path.display());
    let child = support::spawn_binary(
        env!("CARGO_BIN_EXE_scrape-guard"),
        &pki,
        &api,
        &echo.url(),
        port,
        &[&ca],
        &[],
    )
    .await;
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let handshake = |identity: (String, String)| {
        let config = client_presenting(&pki, &identity);
        async move {
            let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
            let (status, _) = scrape_on_new_connection_or_refused(&connector, addr).await;
            status
        }
    };
    assert_eq!(handshake(Pki::new().client_cert("foreign", &[])).await, 0);
    assert_eq!(handshake(openssl_v1_client_cert(&pki)).await, 0);
    let (_, logs) = support::terminate(child).await;
    assert!(
        logs.contains("not signed by a CA in --client-ca-file"),
        "no reason for the foreign certificate:\n{logs}"
    );
    assert!(
        logs.contains("X.509 v1") && logs.contains("reissue it as v3"),
        "no reason for the v1 certificate:\n{logs}"
    );
    assert!(logs.contains("127.0.0.1:"), "the peer is named:\n{logs}");
}

/// A client config presenting this certificate whatever it is: rustls' own client
/// would refuse to send a v1 certificate, Go's (Prometheus) sends it.
fn client_presenting(pki: &Pki, identity: &(String, String)) -> rustls::ClientConfig {
    use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    #[derive(Debug)]
    struct Always(std::sync::Arc<rustls::sign::CertifiedKey>);
    impl rustls::client::ResolvesClientCert for Always {
        fn resolve(
            &self,
            _: &[&[u8]],
            _: &[rustls::SignatureScheme],
        ) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
            Some(std::sync::Arc::clone(&self.0))
        }
        fn has_certs(&self) -> bool {
            true
        }
    }
    let chain = CertificateDer::pem_slice_iter(identity.0.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(identity.1.as_bytes()).unwrap();
    let signer = rustls::crypto::aws_lc_rs::default_provider()
        .key_provider
        .load_private_key(key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_cert_resolver(std::sync::Arc::new(Always(std::sync::Arc::new(
            rustls::sign::CertifiedKey::new(chain, signer),
        ))));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// `scrape_on_new_connection`, with 0 for a handshake the server refused.
async fn scrape_on_new_connection_or_refused(
    connector: &tokio_rustls::TlsConnector,
    addr: std::net::SocketAddr,
) -> (u16, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let Ok(Ok(mut tls)) =
        tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp)).await
    else {
        return (0, false);
    };
    // TLS 1.3: the server's verdict on the client certificate arrives after the
    // client's side of the handshake is done, as an alert on the first read.
    let _ = tls
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    let mut response = Vec::new();
    match tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut response)).await {
        Ok(Ok(_)) if !response.is_empty() => {}
        _ => return (0, false),
    }
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (
        status,
        tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
    )
}

#[tokio::test]
async fn https_upstream_gets_our_client_certificate() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token("good", SA);
    api.allow(SA, "get", "/metrics");

    // An https exporter that requires a client certificate from the test CA.
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(std::sync::Arc::new(roots))
        .build()
        .unwrap();
    let (cert, key) = pki.serving_cert();
    let server = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            rustls_pki_types::pem::PemObject::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap(),
            rustls_pki_types::pem::PemObject::from_pem_slice(key.as_bytes()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    |_req: http::Request<hyper::body::Incoming>| async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(
                                b"secret metrics\n",
                            )),
                        ))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });

    let (client_cert, client_key) = pki.client_cert("scrape-guard", &[]);
    let cert_path = pki.dir.path().join("upstream-client.crt");
    let key_path = pki.dir.path().join("upstream-client.key");
    std::fs::write(&cert_path, client_cert).unwrap();
    std::fs::write(&key_path, client_key).unwrap();
    let upstream = format!("https://localhost:{port}/");
    let proxy = Proxy::start(
        &pki,
        &api,
        &upstream,
        &[
            &format!("--upstream-ca-file={}", pki.ca_path.display()),
            &format!("--upstream-client-cert-file={}", cert_path.display()),
            &format!("--upstream-client-key-file={}", key_path.display()),
        ],
    )
    .await;
    let reply = get(
        &client(&pki, false),
        &proxy.url("/metrics"),
        Some("good"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "secret metrics\n");

    // Without our client certificate the exporter refuses the handshake: 502.
    let bare = Proxy::start(
        &pki,
        &api,
        &upstream,
        &[&format!("--upstream-ca-file={}", pki.ca_path.display())],
    )
    .await;
    let reply = get(
        &client(&pki, false),
        &bare.url("/metrics"),
        Some("good"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 502);
}
