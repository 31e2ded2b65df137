//! Key exchange on the wire: the post-quantum hybrid X25519MLKEM768 by default, and
//! `--tls-curve-preferences` narrowing what the listener accepts. Two independent
//! clients: rustls (aws-lc-rs) told to offer exactly some groups, and Go's crypto/tls
//! (Go >= 1.24 offers X25519MLKEM768 first by default), built from a small program
//! below when a Go toolchain is found.

use scrape_guard_testkit as support;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, OnceLock},
    time::Duration,
};

use rustls::{
    crypto::{aws_lc_rs::kx_group, SupportedKxGroup},
    version::{TLS12, TLS13},
    NamedGroup, SupportedProtocolVersion,
};
use support::World;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

const TOKEN: &str = "good";

/// What one handshake (and a scrape over it) came to.
#[derive(Debug)]
enum Outcome {
    /// The handshake finished with this group, and `GET /metrics` got this status line.
    Served(NamedGroup, String),
    /// The handshake failed (rustls' error).
    Refused(String),
}

/// Connects with a rustls client offering exactly `groups` over `versions`, then
/// scrapes `/metrics` on that connection.
async fn connect(
    w: &World,
    groups: &[&'static dyn SupportedKxGroup],
    versions: &[&'static SupportedProtocolVersion],
) -> Outcome {
    let config = w.pki.client_config_offering(groups, versions);
    let tcp = TcpStream::connect(w.proxy.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let handshake = TlsConnector::from(Arc::new(config)).connect(name, tcp);
    let mut tls = match tokio::time::timeout(Duration::from_secs(5), handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => return Outcome::Refused(error.to_string()),
        Err(_) => panic!("TLS handshake timed out"),
    };
    let group = tls.get_ref().1.negotiated_key_exchange_group().unwrap();
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\
         Connection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut response))
        .await
        .expect("response timed out")
        .unwrap();
    let status = String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    Outcome::Served(group.name(), status)
}

fn served(outcome: &Outcome, group: NamedGroup) {
    match outcome {
        Outcome::Served(got, status) => {
            assert_eq!(*got, group, "negotiated group");
            assert_eq!(status, "HTTP/1.1 200 OK", "the scrape on that connection");
        }
        Outcome::Refused(error) => panic!("handshake refused, expected {group:?}: {error}"),
    }
}

fn refused(outcome: &Outcome) {
    assert!(
        matches!(outcome, Outcome::Refused(_)),
        "expected the handshake to fail: {outcome:?}"
    );
}

// === rustls clients ===

/// As Go's server, scrape-guard picks the suite: AES-128-GCM when this CPU has AES-GCM
/// instructions, even for a client (rustls' default) that lists AES-256-GCM first.
#[tokio::test]
async fn the_server_picks_the_suite_as_gos_does() {
    let w = World::start(TOKEN, &[]).await;
    #[cfg(target_arch = "x86_64")]
    let aes = std::arch::is_x86_feature_detected!("aes")
        && std::arch::is_x86_feature_detected!("pclmulqdq");
    #[cfg(not(target_arch = "x86_64"))]
    let aes = true;
    for (versions, aes_128, chacha) in [
        (
            &[&TLS13],
            "TLS13_AES_128_GCM_SHA256",
            "TLS13_CHACHA20_POLY1305_SHA256",
        ),
        (
            &[&TLS12],
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        ),
    ] {
        let config = w.pki.client_config_offering(&[kx_group::X25519], versions);
        let first = format!("{:?}", config.crypto_provider().cipher_suites[0].suite());
        assert!(first.contains("AES_256_GCM"), "the client prefers {first}");
        let tcp = TcpStream::connect(w.proxy.addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        let suite = format!(
            "{:?}",
            tls.get_ref().1.negotiated_cipher_suite().unwrap().suite()
        );
        assert_eq!(suite, if aes { aes_128 } else { chacha });
    }
}

#[tokio::test]
async fn default_negotiates_x25519mlkem768_with_a_client_offering_only_it() {
    let w = World::start(TOKEN, &[]).await;
    let pq_only = connect(&w, &[kx_group::X25519MLKEM768], &[&TLS13]).await;
    served(&pq_only, NamedGroup::X25519MLKEM768);
}

#[tokio::test]
async fn default_gives_a_go_like_client_the_hybrid_and_classic_clients_their_curve() {
    let w = World::start(TOKEN, &[]).await;
    // Go 1.24+, Chrome, Firefox, OpenSSL 3.5: the hybrid first, X25519 next.
    let go_like = [kx_group::X25519MLKEM768, kx_group::X25519];
    served(
        &connect(&w, &go_like, &[&TLS13]).await,
        NamedGroup::X25519MLKEM768,
    );
    // Older clients keep what they had.
    for (group, name) in [
        (kx_group::X25519, NamedGroup::X25519),
        (kx_group::SECP256R1, NamedGroup::secp256r1),
        (kx_group::SECP384R1, NamedGroup::secp384r1),
        (kx_group::SECP256R1MLKEM768, NamedGroup::secp256r1MLKEM768),
    ] {
        served(&connect(&w, &[group], &[&TLS13]).await, name);
    }
    // The hybrid is TLS 1.3 only: a TLS 1.2 client gets its classic curve.
    served(&connect(&w, &go_like, &[&TLS12]).await, NamedGroup::X25519);
}

#[tokio::test]
async fn x25519_only_refuses_a_post_quantum_only_client_and_serves_classic_ones() {
    let w = World::start(TOKEN, &["--tls-curve-preferences=X25519"]).await;
    refused(&connect(&w, &[kx_group::X25519MLKEM768], &[&TLS13]).await);
    refused(&connect(&w, &[kx_group::SECP256R1], &[&TLS13]).await);
    served(
        &connect(&w, &[kx_group::X25519], &[&TLS13]).await,
        NamedGroup::X25519,
    );
    // A client that prefers the hybrid falls back to X25519.
    let go_like = [kx_group::X25519MLKEM768, kx_group::X25519];
    served(&connect(&w, &go_like, &[&TLS13]).await, NamedGroup::X25519);
}

#[tokio::test]
async fn numeric_ids_work_as_kube_rbac_proxy_takes_them() {
    // 23 = CurveP256, 4588 = X25519MLKEM768.
    let w = World::start(TOKEN, &["--tls-curve-preferences=23,4588"]).await;
    refused(&connect(&w, &[kx_group::X25519], &[&TLS13]).await);
    served(
        &connect(&w, &[kx_group::SECP256R1], &[&TLS12]).await,
        NamedGroup::secp256r1,
    );
    served(
        &connect(&w, &[kx_group::X25519MLKEM768], &[&TLS13]).await,
        NamedGroup::X25519MLKEM768,
    );
}

#[tokio::test]
async fn the_clients_order_decides_among_the_accepted_groups() {
    // Listed last here, first by the client: the client's order wins, as rustls does
    // (Go's server ignores the list's order too, for a fixed one of its own).
    let w = World::start(TOKEN, &["--tls-curve-preferences=X25519,X25519MLKEM768"]).await;
    let go_like = [kx_group::X25519MLKEM768, kx_group::X25519];
    served(
        &connect(&w, &go_like, &[&TLS13]).await,
        NamedGroup::X25519MLKEM768,
    );
    let classic_first = [kx_group::X25519, kx_group::X25519MLKEM768];
    served(
        &connect(&w, &classic_first, &[&TLS13]).await,
        NamedGroup::X25519,
    );
}

// === Go's crypto/tls ===

/// A client in Go: dials with the test CA, optionally restricted to the named
/// key exchange, scrapes /metrics over HTTP/1.1 written by hand, prints the status line.
const GO_CLIENT: &str = r#"package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

func main() {
	addr, caFile, token, curve := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	pem, err := os.ReadFile(caFile)
	if err != nil {
		panic(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	config := &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS13}
	if curve == "X25519MLKEM768" {
		config.CurvePreferences = []tls.CurveID{tls.X25519MLKEM768}
	}
	conn, err := tls.Dial("tcp", addr, config)
	if err != nil {
		fmt.Println("handshake failed:", err)
		os.Exit(3)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n", token)
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		panic(err)
	}
	fmt.Print(status)
}
"#;

/// A Go toolchain of at least 1.24: `$SCRAPE_GUARD_GO`, `go` on PATH, or Debian's
/// versioned packages (`golang-1.2x-go`).
fn go_toolchain() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("SCRAPE_GUARD_GO")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    candidates.push("go".into());
    if let Ok(dirs) = std::fs::read_dir("/usr/lib") {
        let mut debian: Vec<PathBuf> = dirs
            .flatten()
            .filter(|d| d.file_name().to_string_lossy().starts_with("go-1."))
            .map(|d| d.path().join("bin/go"))
            .collect();
        debian.sort();
        candidates.extend(debian.into_iter().rev());
    }
    candidates.into_iter().find(|go| {
        let Ok(out) = Command::new(go).arg("version").output() else {
            return false;
        };
        // "go version go1.24.4 linux/amd64"
        let text = String::from_utf8_lossy(&out.stdout);
        let minor = text
            .split_whitespace()
            .nth(2)
            .and_then(|v| v.strip_prefix("go1."))
            .and_then(|v| v.split('.').next())
            .and_then(|v| v.parse::<u32>().ok());
        minor.is_some_and(|m| m >= 24)
    })
}

/// The Go client, built once per test binary. The tests that use it are `#[ignore]`d,
/// so that plain `cargo test` reports them as ignored (with the reason) rather than
/// passed when no Go >= 1.24 is around; run with `--ignored` (as `.ci/run` does) they
/// fail without one: nothing is ever skipped in silence.
fn go_client() -> &'static Path {
    static CLIENT: OnceLock<PathBuf> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let Some(go) = go_toolchain() else {
            panic!(
                "no Go >= 1.24 toolchain (tried $SCRAPE_GUARD_GO, go on PATH, \
                     /usr/lib/go-1.*): .ci/install-go.sh installs Debian's golang-1.24-go"
            );
        };
        // Under target/tmp, rebuilt each run (Go's build cache makes that quick).
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-tls-client");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("main.go"), GO_CLIENT).unwrap();
        // A module that says go 1.24: outside one, Go applies the defaults of Go 1.20,
        // which do not offer X25519MLKEM768.
        std::fs::write(dir.join("go.mod"), "module tlsclient\n\ngo 1.24\n").unwrap();
        let binary = dir.join("tls-client");
        let out = Command::new(&go)
            .current_dir(&dir)
            .args(["build", "-o"])
            .arg(&binary)
            .arg(".")
            // Kept beside the build, so that no $HOME is needed and a second run is quick.
            .env("GOCACHE", dir.join("cache"))
            .env("GOPATH", dir.join("gopath"))
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "")
            .env("GO111MODULE", "on")
            .env("GOPROXY", "off")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "go build: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        binary
    })
}

/// Runs the Go client against the proxy: its stdout (status line or handshake error).
async fn go_scrape(w: &World, client: &Path, curve: &str) -> String {
    let mut command = Command::new(client);
    command
        .arg(w.proxy.addr.to_string())
        .arg(&w.pki.ca_path)
        .arg(TOKEN)
        .arg(curve);
    let out = tokio::task::spawn_blocking(move || command.output());
    let out = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .expect("the Go client hung")
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if stdout.is_empty() {
        format!("(no output) {}", String::from_utf8_lossy(&out.stderr))
    } else {
        stdout
    }
}

#[tokio::test]
#[ignore = "needs Go >= 1.24 (.ci/install-go.sh): cargo test --test integration -- --ignored tls_curves::go_"]
async fn go_clients_negotiate_x25519mlkem768_by_default() {
    let client = go_client();
    let w = World::start(TOKEN, &[]).await;
    assert_eq!(
        go_scrape(&w, client, "X25519MLKEM768").await,
        "HTTP/1.1 200 OK",
        "Go restricted to X25519MLKEM768 is served"
    );
    // Go's defaults (X25519MLKEM768 first) against a listener that accepts only the
    // hybrid: served, so a default Go client offers and negotiates it.
    let pq_only = World::start(TOKEN, &["--tls-curve-preferences=X25519MLKEM768"]).await;
    assert_eq!(
        go_scrape(&pq_only, client, "default").await,
        "HTTP/1.1 200 OK"
    );
}

#[tokio::test]
#[ignore = "needs Go >= 1.24 (.ci/install-go.sh): cargo test --test integration -- --ignored tls_curves::go_"]
async fn go_post_quantum_only_client_is_refused_by_x25519_only() {
    let client = go_client();
    let w = World::start(TOKEN, &["--tls-curve-preferences=X25519"]).await;
    let out = go_scrape(&w, client, "X25519MLKEM768").await;
    assert!(out.starts_with("handshake failed"), "{out}");
    assert_eq!(go_scrape(&w, client, "default").await, "HTTP/1.1 200 OK");
}
