//! Serving TLS: the listener's certificate, the client CA, the version and cipher policy.
//!
//! - `policy`: `--tls-min-version` and `--tls-cipher-suites`, Go's names mapped to rustls.
//! - `curves`: `--tls-curve-preferences`, Go's key exchange names mapped to rustls.
//! - `serving`: the serving pair, reloaded on change; the last good pair keeps serving
//!   while a Secret volume or cert-manager is mid-swap (kube-rbac-proxy exits then).
//! - `sni`: `--tls-sni-cert-key`, more serving pairs chosen by the name a client asks
//!   for, each reloaded like the default pair.
//! - `client_ca`: `--client-ca-file` and the requestheader CA (files reloaded on
//!   change, or published by the cluster lookup), and what a verified client
//!   certificate says about the caller.
//! - `pem`: PEM parsing shared with the upstream client.
//! - `fips`: the FIPS build's approved groups and suites, and its startup check.
//!
//! `acceptor` puts them together for one listener.

mod client_ca;
mod curves;
mod fips;
mod pem;
mod policy;
mod serving;
mod sni;

use std::{path::PathBuf, sync::Arc};

use rustls::{
    server::{danger::ClientCertVerifier, ResolvesServerCert},
    ServerConfig,
};
use tokio_rustls::TlsAcceptor;

/// The one crypto provider (`main` installs its `default_provider()` for the process):
/// aws-lc-rs, for the post-quantum hybrid key exchange X25519MLKEM768.
pub(crate) use rustls::crypto::aws_lc_rs as provider;

pub(crate) use self::{
    client_ca::{CaBundle, ClientCa, PeerCertificate},
    curves::Curves,
    fips::{require as require_fips, Module, NotFips},
    pem::{ca_bundle, parse_pair},
    policy::TlsPolicy,
    serving::ServingCert,
};

/// A problem loading a certificate, key or CA bundle; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}")]
    File(String),
    #[error("generating a self-signed certificate: {0}")]
    SelfSigned(String),
    #[error("building the TLS configuration: {0}")]
    Config(#[source] rustls::Error),
    #[error(transparent)]
    Fips(#[from] NotFips),
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    Files { cert: PathBuf, key: PathBuf },
    SelfSigned,
}

/// One `--tls-sni-cert-key` (`cert,key[:name,...]`): a serving pair for the names
/// given, or else for its certificate's own DNS names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniCertKey {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Given after the files; empty: the certificate's names.
    pub names: Vec<String>,
}

impl std::fmt::Display for SniCertKey {
    /// As the flag is written.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{}", self.cert.display(), self.key.display())?;
        if !self.names.is_empty() {
            write!(f, ":{}", self.names.join(","))?;
        }
        Ok(())
    }
}

/// How a listener serves TLS.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// `--tls-cert-file`/`--tls-private-key-file`, or a generated pair: the default.
    pub source: TlsSource,
    /// `--tls-sni-cert-key`, in flag order.
    pub sni: Vec<SniCertKey>,
    /// `--tls-min-version`, `--tls-cipher-suites`, `--tls-curve-preferences`.
    pub policy: TlsPolicy,
    /// `--client-ca-file`.
    pub client_ca_file: Option<PathBuf>,
}

/// Which protocols a listener offers by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alpn {
    /// "h2", then "http/1.1".
    Http2AndHttp11,
    /// "http/1.1" only (`--http2-disable`, the probe port).
    Http11,
}

/// Builds the acceptor for a listener.
pub(crate) fn acceptor(
    cert: &Arc<ServingCert>,
    policy: &TlsPolicy,
    alpn: Alpn,
    client_ca: Option<&Arc<ClientCa>>,
) -> Result<TlsAcceptor, TlsError> {
    let builder = ServerConfig::builder_with_provider(Arc::new(policy.crypto_provider()))
        .with_protocol_versions(policy.versions())
        .map_err(TlsError::Config)?;
    let builder = match client_ca {
        Some(ca) => {
            builder.with_client_cert_verifier(Arc::clone(ca) as Arc<dyn ClientCertVerifier>)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::clone(cert) as Arc<dyn ResolvesServerCert>);
    // The server's preference picks the suite, as Go's does (`TlsPolicy::cipher_suites`):
    // AES-128-GCM for a client that offers AES-256-GCM first, as kube-rbac-proxy serves.
    config.ignore_client_order = true;
    config.alpn_protocols = match alpn {
        Alpn::Http2AndHttp11 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        Alpn::Http11 => vec![b"http/1.1".to_vec()],
    };
    require_fips("a listener's TLS configuration", config.fips())?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
