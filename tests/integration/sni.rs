//! `--tls-sni-cert-key` on the wire: a client asks for a name (SNI) and gets the pair
//! k8s.io/apiserver would serve it — exact before wildcard, names given on the flag
//! before a certificate's own, the default pair for no match and for no SNI (a client
//! that connects to 127.0.0.1 sends none); each pair reloaded on its own, a broken
//! version keeping the last good one; a `--listeners-file` listener's own pairs; startup
//! errors naming the flag and the value.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use rcgen::{CertificateParams, DnType};
use rustls_pki_types::ServerName;
use scrape_guard_testkit::{
    self as support, client, eventually, get, https::AcceptAnyServer, pki::Ca, Echo, FakeApiserver,
    Pki, Proxy, SCRAPER,
};

/// The leaf certificate `addr` serves to a client asking for `name` (an IP address:
/// no SNI), DER. Any certificate is accepted: which one is the question.
async fn served(addr: SocketAddr, name: &str) -> Vec<u8> {
    let config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer::default()))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        connector.connect(name, tcp).await.unwrap()
    };
    let tls = tokio::time::timeout(Duration::from_secs(5), handshake)
        .await
        .expect("TLS handshake timed out");
    let certificates = tls.get_ref().1.peer_certificates().unwrap();
    certificates[0].as_ref().to_vec()
}

/// A serving certificate from `ca`: CN `cn`, these subjectAltNames.
fn serving(ca: &Ca, cn: &str, sans: &[&str]) -> support::pki::KeyCert {
    let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(sans).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    ca.sign(params)
}

fn der(path: &Path) -> Vec<u8> {
    use rustls_pki_types::{pem::PemObject, CertificateDer};
    CertificateDer::from_pem_file(path)
        .unwrap()
        .as_ref()
        .to_vec()
}

#[tokio::test]
async fn the_certificate_served_follows_the_name_asked_for() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    let echo = Echo::start().await;
    let ca = Ca::new("sni test CA");
    let dir = pki.dir.path();
    // A: its own names (CN and SANs). B: given names, which replace its own.
    // C: an exact name inside B's wildcard, and 127.0.0.1 among its SANs.
    let a = serving(&ca, "a.test", &["a.test", "*.a-wild.test"]).write(dir, "a");
    let b = serving(&ca, "b", &["other.test"]).write(dir, "b");
    let c = serving(&ca, "c", &["x.wild.test", "127.0.0.1"]).write(dir, "c");
    let flag = |(cert, key): &(std::path::PathBuf, std::path::PathBuf), names: &str| {
        format!(
            "--tls-sni-cert-key={},{}{names}",
            cert.display(),
            key.display()
        )
    };
    let proxy = Proxy::start(
        &pki,
        &api,
        &echo.url(),
        &[
            &flag(&a, ""),
            &flag(&b, ":b.test, *.wild.test"),
            &flag(&c, ""),
        ],
    )
    .await;
    let (a, b, c, default) = (der(&a.0), der(&b.0), der(&c.0), der(&pki.cert_path));
    let table: [(&str, &[u8], &str); 10] = [
        ("a.test", &a, "the certificate's own name"),
        ("q.a-wild.test", &a, "the certificate's own wildcard"),
        ("b.test", &b, "a given name"),
        ("B.Test", &b, "names are compared without regard to case"),
        (
            "other.test",
            &default,
            "given names replace the certificate's",
        ),
        ("y.wild.test", &b, "a given wildcard"),
        ("x.wild.test", &c, "an exact name beats a wildcard"),
        ("z.y.wild.test", &default, "a wildcard covers one label"),
        ("nothing.test", &default, "no match: the default pair"),
        ("127.0.0.1", &default, "no SNI (an IP address is not sent)"),
    ];
    for (name, want, why) in table {
        assert!(served(proxy.addr, name).await == want, "{name}: {why}");
    }
    // A handshake over an SNI pair, verified against its CA as any client would.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let name = ServerName::try_from("a.test").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await;
    assert!(tls.is_ok(), "{:?}", tls.err());
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_sni_pair_is_reloaded_and_a_broken_version_keeps_the_last_good_one() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token("scraper", SCRAPER);
    api.allow(SCRAPER, "get", "/metrics");
    let echo = Echo::start().await;
    let ca = Ca::new("sni test CA");
    let dir = pki.dir.path();
    let (cert, key) = serving(&ca, "a.test", &["a.test"]).write(dir, "a");
    let admin = support::free_port();
    let proxy = Proxy::start(
        &pki,
        &api,
        &echo.url(),
        &[
            &format!("--tls-sni-cert-key={},{}", cert.display(), key.display()),
            &format!("--proxy-endpoints-port={admin}"),
        ],
    )
    .await;
    let first = der(&cert);
    assert_eq!(served(proxy.addr, "a.test").await, first);

    // A new pair: new handshakes get it.
    let renewed = serving(&ca, "a.test", &["a.test"]);
    support::pki::write(&key, &renewed.key_pem);
    support::pki::write(&cert, &renewed.cert_pem);
    let second = renewed.cert_der().to_vec();
    eventually(Duration::from_secs(20), || async {
        match served(proxy.addr, "a.test").await {
            got if got == second => Ok(()),
            _ => Err("the renewed SNI certificate is not served"),
        }
    })
    .await;

    // A broken version: rejected (the reload gauge says so), the last good pair serves.
    support::pki::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    );
    let gauge = format!(
        "scrape_guard_config_last_reload_successful{{flag=\"--tls-sni-cert-key\",file=\"{},{}\"}} ",
        cert.display(),
        key.display()
    );
    let url = format!("https://localhost:{admin}/metrics");
    let c = client(&pki, false);
    eventually(Duration::from_secs(20), || async {
        let text = get(&c, &url, Some("scraper"), &[]).await.text();
        match text.lines().find_map(|l| l.strip_prefix(&gauge)) {
            Some("0") => Ok(()),
            other => Err(format!(
                "the broken version is not reported: {other:?}\n{text}"
            )),
        }
    })
    .await;
    assert_eq!(served(proxy.addr, "a.test").await, second);
    assert_eq!(served(proxy.addr, "localhost").await, der(&pki.cert_path));
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_listener_of_the_file_serves_its_own_sni_pairs() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    let echo = Echo::start().await;
    let ca = Ca::new("sni test CA");
    let dir = pki.dir.path();
    let (a_cert, a_key) = serving(&ca, "a", &["a.test"]).write(dir, "a");
    let (b_cert, b_key) = serving(&ca, "b", &["b.test"]).write(dir, "b");
    let file = dir.join("listeners.yaml");
    support::pki::write(
        &file,
        &format!(
            "listeners:\n\
             - name: main\n  secureListenAddress: 127.0.0.1:0\n  upstream: {up}\n\
             \x20 tlsCertFile: {cert}\n  tlsPrivateKeyFile: {key}\n\
             \x20 tlsSNICertKey:\n  - {a_cert},{a_key}\n  - {b_cert},{b_key}:b.test,*.b.test\n\
             - name: other\n  secureListenAddress: 127.0.0.1:0\n  upstream: {up}\n\
             \x20 tlsCertFile: {cert}\n  tlsPrivateKeyFile: {key}\n",
            up = echo.url(),
            cert = pki.cert_path.display(),
            key = pki.key_path.display(),
            a_cert = a_cert.display(),
            a_key = a_key.display(),
            b_cert = b_cert.display(),
            b_key = b_key.display(),
        ),
    );
    let proxy = Proxy::start_listeners(&api, &file, &[]).await;
    let addr = |name: &str| {
        let (_, addr) = proxy.listeners.iter().find(|(n, _)| n == name).unwrap();
        *addr
    };
    let default = der(&pki.cert_path);
    assert_eq!(served(addr("main"), "a.test").await, der(&a_cert));
    assert_eq!(served(addr("main"), "x.b.test").await, der(&b_cert));
    assert_eq!(served(addr("other"), "a.test").await, default);
    proxy.shutdown().await;
}

#[tokio::test]
async fn startup_errors_name_the_flag_and_the_value() {
    support::install_crypto();
    let pki = Pki::new();
    let ca = Ca::new("sni test CA");
    let dir = pki.dir.path();
    let (cert, _) = serving(&ca, "a", &["a.test"]).write(dir, "a");
    let (_, other_key) = serving(&ca, "b", &["b.test"]).write(dir, "b");
    let start = |value: String| async move {
        let argv = [
            "scrape-guard".to_owned(),
            "--secure-listen-address=127.0.0.1:0".into(),
            "--upstream=http://127.0.0.1:9/".into(),
            format!("--tls-sni-cert-key={value}"),
        ];
        let args = <scrape_guard::Args as clap::Parser>::try_parse_from(argv).unwrap();
        match scrape_guard::Config::try_from(args) {
            Err(e) => e.to_string(),
            Ok(config) => match scrape_guard::start(config).await {
                Err(e) => e.to_string(),
                Ok(running) => {
                    running.shutdown().await;
                    "started".to_owned()
                }
            },
        }
    };
    let malformed = start(cert.display().to_string()).await;
    assert!(
        malformed.contains(&format!("--tls-sni-cert-key \"{}\"", cert.display()))
            && malformed.contains("comma"),
        "{malformed}"
    );
    let missing = start(format!(
        "{},{}",
        cert.display(),
        dir.join("nope.key").display()
    ))
    .await;
    assert!(
        missing.contains("--tls-sni-cert-key") && missing.contains("nope.key"),
        "{missing}"
    );
    let mismatched = start(format!("{},{}", cert.display(), other_key.display())).await;
    assert!(
        mismatched.contains("--tls-sni-cert-key") && mismatched.contains("does not match"),
        "{mismatched}"
    );
}
