//! The FIPS build (`cargo test --features fips --test integration fips::`; CI's
//! `.ci/fips.sh`): what a client can negotiate with it on the wire, what it refuses to
//! start with, and how it says it is in FIPS mode. The policy's logic is tested in the
//! default build too (`tls::policy` and `tls::curves` unit tests).

use scrape_guard_testkit as support;

use std::{process::Command, sync::Arc, time::Duration};

use rustls::{
    crypto::{aws_lc_rs as provider, CryptoProvider, SupportedKxGroup},
    version::{TLS12, TLS13},
    ClientConfig, NamedGroup, SupportedCipherSuite, SupportedProtocolVersion,
};
use rustls_pki_types::{pem::PemObject, CertificateDer};
use support::World;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const BIN: &str = env!("CARGO_BIN_EXE_scrape-guard");
const TOKEN: &str = "good";

/// A client offering exactly these groups, suites and versions. rustls' FIPS build still
/// implements X25519 and ChaCha20 (they are only left out of its defaults), so the
/// client can offer what the server must refuse.
fn client(
    w: &World,
    kx_groups: &[&'static dyn SupportedKxGroup],
    cipher_suites: &[SupportedCipherSuite],
    versions: &[&'static SupportedProtocolVersion],
) -> ClientConfig {
    let provider = CryptoProvider {
        kx_groups: kx_groups.to_vec(),
        cipher_suites: cipher_suites.to_vec(),
        ..provider::default_provider()
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(w.pki.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// The group and suite negotiated, or rustls' error.
async fn handshake(w: &World, config: ClientConfig) -> Result<(NamedGroup, String), String> {
    let tcp = TcpStream::connect(w.proxy.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let connect = TlsConnector::from(Arc::new(config)).connect(name, tcp);
    let tls = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .expect("TLS handshake timed out")
        .map_err(|e| e.to_string())?;
    let (_, session) = tls.get_ref();
    let group = session.negotiated_key_exchange_group().unwrap().name();
    let suite = format!("{:?}", session.negotiated_cipher_suite().unwrap().suite());
    Ok((group, suite))
}

fn aes_gcm() -> Vec<SupportedCipherSuite> {
    use provider::cipher_suite as cs;
    vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ]
}

#[tokio::test]
async fn x25519_alone_is_refused_and_approved_groups_are_served() {
    use provider::kx_group;
    let w = World::start(TOKEN, &[]).await;
    for versions in [&[&TLS13], &[&TLS12]] {
        let only_x25519 = client(&w, &[kx_group::X25519], &aes_gcm(), versions);
        let refused = handshake(&w, only_x25519).await;
        assert!(
            refused.is_err(),
            "X25519 alone over {versions:?}: {refused:?}"
        );
    }
    for (group, name, versions) in [
        (kx_group::SECP256R1, NamedGroup::secp256r1, &[&TLS13]),
        (kx_group::SECP256R1, NamedGroup::secp256r1, &[&TLS12]),
        (kx_group::SECP384R1, NamedGroup::secp384r1, &[&TLS13]),
        (
            kx_group::X25519MLKEM768,
            NamedGroup::X25519MLKEM768,
            &[&TLS13],
        ),
        (
            kx_group::SECP256R1MLKEM768,
            NamedGroup::secp256r1MLKEM768,
            &[&TLS13],
        ),
    ] {
        let config = client(&w, &[group], &aes_gcm(), versions);
        let got = handshake(&w, config).await;
        assert_eq!(got.map(|(g, _)| g), Ok(name), "{name:?} over {versions:?}");
    }
    // Go 1.24+ and browsers: the hybrid first, then X25519; they get the hybrid.
    let go_like = [kx_group::X25519MLKEM768, kx_group::X25519];
    let got = handshake(&w, client(&w, &go_like, &aes_gcm(), &[&TLS13])).await;
    assert_eq!(got.map(|(g, _)| g), Ok(NamedGroup::X25519MLKEM768));
    // A TLS 1.2 client offering X25519 then P-256 falls back to P-256.
    let classic = [kx_group::X25519, kx_group::SECP256R1];
    let got = handshake(&w, client(&w, &classic, &aes_gcm(), &[&TLS12])).await;
    assert_eq!(got.map(|(g, _)| g), Ok(NamedGroup::secp256r1));
}

#[tokio::test]
async fn only_aes_gcm_suites_are_negotiated() {
    use provider::{cipher_suite as cs, kx_group};
    let w = World::start(TOKEN, &[]).await;
    let p256 = [kx_group::SECP256R1];
    for (suite, versions) in [
        (cs::TLS13_CHACHA20_POLY1305_SHA256, &[&TLS13]),
        (cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, &[&TLS12]),
    ] {
        let config = client(&w, &p256, &[suite], versions);
        let refused = handshake(&w, config).await;
        assert!(refused.is_err(), "{:?}: {refused:?}", suite.suite());
    }
    for (suite, versions) in [
        (cs::TLS13_AES_256_GCM_SHA384, &[&TLS13]),
        (cs::TLS13_AES_128_GCM_SHA256, &[&TLS13]),
        (cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, &[&TLS12]),
    ] {
        let config = client(&w, &p256, &[suite], versions);
        let got = handshake(&w, config).await.map(|(_, s)| s);
        assert_eq!(got, Ok(format!("{:?}", suite.suite())));
    }
    // Offered ChaCha20 first, the server still picks an approved suite.
    let chacha_first = [
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
    ];
    let got = handshake(&w, client(&w, &p256, &chacha_first, &[&TLS13])).await;
    assert_eq!(
        got.map(|(_, s)| s),
        Ok("TLS13_AES_256_GCM_SHA384".to_owned())
    );
}

/// Flags that would serve something unapproved stop the start, naming the flag.
#[test]
fn flags_outside_the_approved_set_are_refused_at_startup() {
    for (flag, named) in [
        (
            "--tls-curve-preferences=CurveP256,X25519",
            "X25519 is not FIPS-approved",
        ),
        ("--tls-curve-preferences=29", "29 is not FIPS-approved"),
        (
            "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,\
             TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305 is not FIPS-approved",
        ),
        (
            "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
            "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA is not FIPS-approved",
        ),
    ] {
        let output = Command::new(BIN)
            .args(["--upstream=http://127.0.0.1:9100/", flag])
            .env_remove("KUBECONFIG")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag}: {err}");
        let name = flag.split('=').next().unwrap();
        assert!(err.contains(&format!("{name}: ")), "{flag}: {err}");
        assert!(err.contains(named), "{flag}: {err}");
    }
}

/// The startup line says FIPS and names only approved groups; the metric says 1.
#[test]
fn the_startup_line_and_the_metric_say_fips() {
    support::install_crypto();
    let pki = support::Pki::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let api = runtime.block_on(support::FakeApiserver::start(&pki));
    let echo = runtime.block_on(support::Echo::start());
    let port = support::free_port();
    let child = runtime.block_on(support::spawn_binary(
        BIN,
        &pki,
        &api,
        &echo.url(),
        port,
        &[],
        &[],
    ));
    let (status, logs) = runtime.block_on(support::terminate(child));
    assert_eq!(status.code(), Some(0), "exit status; logs:\n{logs}");
    let line = logs
        .lines()
        .find(|line| line.contains("scrape-guard serving"))
        .unwrap_or_else(|| panic!("no startup line:\n{logs}"));
    assert!(line.contains("crypto=\"FIPS"), "{line}");
    assert!(
        line.contains("curves=\"X25519MLKEM768,SecP256r1MLKEM768,CurveP256,CurveP384\""),
        "{line}"
    );
    let metrics = scrape_guard::Metrics::new().encode(0, 0);
    assert!(
        metrics.contains("\nscrape_guard_fips_mode 1\n"),
        "{metrics}"
    );
}
