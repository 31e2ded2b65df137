//! The upstream's certificate as Go's client judges it: a self-signed upstream (CA:TRUE
//! with its serving names, as `openssl req -x509` and older client-go make them, and a
//! plain self-signed leaf) is trusted when its very certificate is `--upstream-ca-file`;
//! another self-signed certificate is a 502 whose log line says why; a name the
//! certificate lacks is refused. And `--upstream-ca-file` beside an http:// upstream
//! (TrustyAI's operator renders it so) starts with a warning and is not read.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use scrape_guard_testkit::{
    self as support, client, get, Echo, FakeApiserver, Pki, Proxy, SCRAPER,
};

const BIN: &str = env!("CARGO_BIN_EXE_scrape-guard");

/// A self-signed certificate for `names`: (cert PEM, key PEM). `ca`: CA:TRUE, with
/// certificate signing among its key usages and serverAuth (client-go's old shape).
fn self_signed(names: &[&str], ca: bool) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{}@1700000000", names[0]));
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyCertSign,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    }
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// An https exporter on 127.0.0.1 presenting `(cert, key)`; returns its port.
async fn https_exporter((cert, key): &(String, String)) -> u16 {
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap(),
            PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(|_: http::Request<hyper::body::Incoming>| async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(b"metrics\n")),
                        ))
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    port
}

struct Setup {
    pki: Pki,
    api: Arc<FakeApiserver>,
}

impl Setup {
    async fn new() -> Self {
        support::install_crypto();
        let pki = Pki::new();
        let api = FakeApiserver::start(&pki).await;
        api.add_token("scraper", SCRAPER);
        api.allow(SCRAPER, "get", "/metrics");
        Self { pki, api }
    }

    /// `pem` as a CA file; the flag naming it.
    fn ca_file(&self, name: &str, pem: &str) -> String {
        let path = self.pki.dir.path().join(name);
        support::pki::write(&path, pem);
        format!("--upstream-ca-file={}", path.display())
    }

    /// The status of a scrape through a proxy to `upstream` with `extra` flags.
    async fn scrape(&self, upstream: &str, extra: &[&str]) -> u16 {
        let proxy = Proxy::start(&self.pki, &self.api, upstream, extra).await;
        let reply = get(
            &client(&self.pki, false),
            &proxy.url("/metrics"),
            Some("scraper"),
            &[],
        )
        .await;
        proxy.shutdown().await;
        reply.status.as_u16()
    }
}

#[tokio::test]
async fn a_self_signed_upstream_is_trusted_by_its_own_certificate() {
    let setup = Setup::new().await;
    for (shape, ca) in [("CA:TRUE", true), ("a plain leaf", false)] {
        let pair = self_signed(&["localhost", "127.0.0.1"], ca);
        let port = https_exporter(&pair).await;
        let flag = setup.ca_file(&format!("self-signed-{ca}.crt"), &pair.0);
        for host in ["localhost", "127.0.0.1"] {
            let status = setup
                .scrape(&format!("https://{host}:{port}/"), &[&flag])
                .await;
            assert_eq!(status, 200, "{shape} at {host}");
        }
    }
}

#[tokio::test]
async fn a_self_signed_certificate_without_the_upstreams_name_is_refused() {
    let setup = Setup::new().await;
    for ca in [true, false] {
        let pair = self_signed(&["exporter.test"], ca);
        let port = https_exporter(&pair).await;
        let flag = setup.ca_file(&format!("exporter-{ca}.crt"), &pair.0);
        let status = setup
            .scrape(&format!("https://localhost:{port}/"), &[&flag])
            .await;
        assert_eq!(status, 502, "CA:{ca}");
    }
}

#[tokio::test]
async fn another_self_signed_certificate_is_a_502_whose_log_says_why() {
    let setup = Setup::new().await;
    let served = self_signed(&["localhost"], true);
    let port = https_exporter(&served).await;
    let flag = setup.ca_file("stale.crt", &self_signed(&["localhost"], true).0);
    let listen = support::free_port();
    let child = support::spawn_binary(
        BIN,
        &setup.pki,
        &setup.api,
        &format!("https://localhost:{port}/"),
        listen,
        &[&flag],
        &[],
    )
    .await;
    let url = format!("https://localhost:{listen}/metrics");
    let reply = get(&client(&setup.pki, false), &url, Some("scraper"), &[]).await;
    assert_eq!(reply.status, 502);
    let (_, logs) = support::terminate(child).await;
    assert!(
        logs.contains("self-signed, and not itself in --upstream-ca-file"),
        "{logs}"
    );
}

// trustyai-explainability/trustyai-service-operator @ 11c335b879fcfcbd2acd9c572d12a06976d985d8:
// controllers/nemo_guardrails/templates/deployment.tmpl.yaml and controllers/gorch's
// gateway and built-in sidecars render `--upstream=http://localhost:…/` beside
// `--upstream-ca-file`; kube-rbac-proxy's transport never uses it for http://.
#[tokio::test]
async fn tls_files_beside_an_http_upstream_are_accepted_with_a_warning_and_not_read() {
    let setup = Setup::new().await;
    let echo = Echo::start().await;
    let missing = setup.pki.dir.path().join("absent");
    let flags = [
        format!(
            "--upstream-ca-file={}",
            missing.join("service-ca.crt").display()
        ),
        format!(
            "--upstream-client-cert-file={}",
            missing.join("tls.crt").display()
        ),
        format!(
            "--upstream-client-key-file={}",
            missing.join("tls.key").display()
        ),
    ];
    let mut argv = vec![
        "scrape-guard".to_owned(),
        "--secure-listen-address=127.0.0.1:0".into(),
        format!("--upstream={}", echo.url()),
    ];
    argv.extend(flags.iter().cloned());
    let args = <scrape_guard::Args as clap::Parser>::try_parse_from(argv).unwrap();
    let config = scrape_guard::Config::try_from(args).unwrap();
    for flag in [
        "--upstream-ca-file",
        "--upstream-client-cert-file",
        "--upstream-client-key-file",
    ] {
        let want = format!("{flag} has no effect on an http:// --upstream");
        assert!(
            config.warnings.iter().any(|w| w.starts_with(&want)),
            "{want} in {:?}",
            config.warnings
        );
    }
    let extra: Vec<&str> = flags.iter().map(String::as_str).collect();
    assert_eq!(setup.scrape(&echo.url(), &extra).await, 200);
}
