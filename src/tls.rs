//! Serving TLS: certificate loading, reload on change, and the version/cipher policy.
//!
//! The serving pair is held behind a resolver so it can be swapped without touching
//! live connections: a reloader re-reads the files when inotify reports a change (and
//! every few seconds anyway, see `reload::Changes`) and installs a new pair only when it
//! parses and the key matches the certificate. A missing or
//! half-written file (a Secret volume mid-swap, cert-manager mid-renewal) is logged and
//! the last good pair keeps serving — kube-rbac-proxy exits in that case.
//!
//! Cipher suite names are Go's, because manifests pass Go's names. As in Go, the list
//! restricts TLS 1.2 only; TLS 1.3 suites are always on. A name rustls cannot serve
//! (CBC, static RSA, 3DES, RC4) is a startup error naming it, never silently dropped.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{atomic::Ordering, Arc, RwLock},
};

use rustls::{
    client::danger::HandshakeSignatureValid,
    crypto::{ring as provider, CryptoProvider},
    server::{
        danger::{ClientCertVerified, ClientCertVerifier},
        ClientHello, ResolvesServerCert, WebPkiClientVerifier,
    },
    sign::CertifiedKey,
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    SupportedCipherSuite,
};
use rustls_pki_types::UnixTime;
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::{
    authn::User,
    config::TlsSource,
    metrics::Metrics,
    reload::{Changes, Watched},
};

/// A problem loading the serving certificate, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("generating a self-signed certificate: {0}")]
    SelfSigned(String),
    #[error("building the TLS configuration: {0}")]
    Config(#[source] rustls::Error),
}

/// `--tls-min-version` and `--tls-cipher-suites`, resolved to rustls terms.
#[derive(Clone)]
pub struct TlsPolicy {
    tls13_only: bool,
    tls12_suites: Vec<SupportedCipherSuite>,
}

impl fmt::Debug for TlsPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self
            .cipher_suites()
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        f.debug_struct("TlsPolicy")
            .field("min_version", &if self.tls13_only { "1.3" } else { "1.2" })
            .field("cipher_suites", &names)
            .finish()
    }
}

impl Default for TlsPolicy {
    fn default() -> Self {
        Self {
            tls13_only: false,
            tls12_suites: provider::DEFAULT_CIPHER_SUITES
                .iter()
                .filter(|s| s.version() == &rustls::version::TLS12)
                .copied()
                .collect(),
        }
    }
}

impl TlsPolicy {
    /// Validates the flags, naming any version or suite that cannot be served.
    pub fn from_flags(min_version: &str, suites: &[String]) -> Result<Self, String> {
        let mut problems = Vec::new();
        let tls13_only = match min_version {
            "VersionTLS12" => false,
            "VersionTLS13" => true,
            "VersionTLS10" | "VersionTLS11" => {
                problems.push(format!(
                    "--tls-min-version {min_version} is not supported (TLS 1.0/1.1 are \
                     insecure); use VersionTLS12 or VersionTLS13"
                ));
                false
            }
            other => {
                problems.push(format!(
                    "--tls-min-version {other:?} is unknown; use VersionTLS12 or VersionTLS13"
                ));
                false
            }
        };
        let mut policy = Self {
            tls13_only,
            ..Self::default()
        };
        let names: Vec<&str> = suites
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect();
        if !names.is_empty() {
            policy.tls12_suites.clear();
        }
        for name in names {
            match go_cipher_suite(name) {
                GoSuite::Tls12(suite) => {
                    if !policy
                        .tls12_suites
                        .iter()
                        .any(|s| s.suite() == suite.suite())
                    {
                        policy.tls12_suites.push(suite);
                    }
                }
                GoSuite::Tls13 => {}
                GoSuite::Insecure => problems.push(format!(
                    "--tls-cipher-suites: {name} is not supported (CBC, static-RSA, 3DES \
                     and RC4 suites are insecure; use the ECDHE GCM/CHACHA20 suites)"
                )),
                GoSuite::Unknown => {
                    problems.push(format!("--tls-cipher-suites: unknown cipher suite {name}"))
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("\n  - "));
        }
        Ok(policy)
    }

    /// All suites offered: every TLS 1.3 suite, then the chosen TLS 1.2 ones.
    pub fn cipher_suites(&self) -> Vec<SupportedCipherSuite> {
        let tls13 = provider::DEFAULT_CIPHER_SUITES
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .copied();
        let tls12 = self.tls12_suites.iter().copied();
        if self.tls13_only {
            tls13.collect()
        } else {
            tls13.chain(tls12).collect()
        }
    }

    fn crypto_provider(&self) -> CryptoProvider {
        CryptoProvider {
            cipher_suites: self.cipher_suites(),
            ..provider::default_provider()
        }
    }

    fn versions(&self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        static TLS12_UP: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        if self.tls13_only {
            &TLS13_ONLY
        } else {
            &TLS12_UP
        }
    }
}

enum GoSuite {
    Tls12(SupportedCipherSuite),
    Tls13,
    Insecure,
    Unknown,
}

/// Maps Go's `tls.CipherSuiteName` spellings (and its legacy aliases) to rustls.
fn go_cipher_suite(name: &str) -> GoSuite {
    use provider::cipher_suite as cs;
    match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => {
            GoSuite::Tls12(cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
        }
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => {
            GoSuite::Tls12(cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
        }
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            GoSuite::Tls12(cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => {
            GoSuite::Tls12(cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
        }
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => {
            GoSuite::Tls12(cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)
        }
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            GoSuite::Tls12(cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256)
        }
        "TLS_AES_128_GCM_SHA256" | "TLS_AES_256_GCM_SHA384" | "TLS_CHACHA20_POLY1305_SHA256" => {
            GoSuite::Tls13
        }
        "TLS_RSA_WITH_RC4_128_SHA"
        | "TLS_RSA_WITH_3DES_EDE_CBC_SHA"
        | "TLS_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_RSA_WITH_AES_256_CBC_SHA"
        | "TLS_RSA_WITH_AES_128_CBC_SHA256"
        | "TLS_RSA_WITH_AES_128_GCM_SHA256"
        | "TLS_RSA_WITH_AES_256_GCM_SHA384"
        | "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_RC4_128_SHA"
        | "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"
        | "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256" => GoSuite::Insecure,
        _ => GoSuite::Unknown,
    }
}

/// The serving certificate: loaded, swappable, and reloaded from disk.
#[derive(Debug)]
pub struct ServingCert {
    current: RwLock<Arc<CertifiedKey>>,
    source: TlsSource,
    metrics: Arc<Metrics>,
}

impl ServingCert {
    /// Loads the files (or generates a self-signed pair), failing with the file's name.
    pub fn load(source: &TlsSource, metrics: Arc<Metrics>) -> Result<Arc<Self>, TlsError> {
        let key = match source {
            TlsSource::Files { cert, key } => load_pair(cert, key)?,
            TlsSource::SelfSigned => self_signed()?,
        };
        let cert = Arc::new(Self {
            current: RwLock::new(Arc::new(key)),
            source: source.clone(),
            metrics,
        });
        cert.record_expiry();
        Ok(cert)
    }

    /// Whether a certificate is loaded and not expired (for /readyz).
    pub fn is_valid(&self) -> bool {
        let not_after = self.metrics.certificate_not_after.load(Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let loaded = self
            .current
            .read()
            .map(|key| !key.cert.is_empty())
            .unwrap_or(false);
        loaded && now < not_after
    }

    fn record_expiry(&self) {
        let not_after = self
            .current
            .read()
            .ok()
            .and_then(|key| key.cert.first().map(|c| not_after(c.as_ref())))
            .unwrap_or(0);
        self.metrics
            .certificate_not_after
            .store(not_after, Ordering::Relaxed);
    }

    /// Re-reads the files when they change (and every few seconds); installs a new pair
    /// only if it is valid.
    pub fn spawn_reloader(self: &Arc<Self>) {
        let TlsSource::Files { cert, key } = self.source.clone() else {
            return;
        };
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut last = read_both(&cert, &key).ok();
            let mut changes = Changes::new(&[&cert, &key]);
            loop {
                changes.next().await;
                let Some(this) = this.upgrade() else { return };
                let Ok(bytes) = read_both(&cert, &key) else {
                    // Missing for a moment during a Secret swap: keep the old pair.
                    continue;
                };
                if last.as_ref() == Some(&bytes) {
                    continue;
                }
                match parse_pair(&bytes.0, &bytes.1, &cert, &key) {
                    Ok(pair) => {
                        if let Ok(mut current) = this.current.write() {
                            *current = Arc::new(pair);
                        }
                        this.record_expiry();
                        tracing::info!(cert = %cert.display(), "serving certificate reloaded");
                        last = Some(bytes);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "new serving certificate rejected; keeping the previous one");
                    }
                }
            }
        });
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|key| Arc::clone(&key))
    }
}

/// `--client-ca-file`: client certificates are requested (not required, so bearer
/// token clients still work) and verified against this CA bundle, which is re-read
/// when it changes. A verified certificate's CN is the user, its O values the groups.
#[derive(Debug)]
pub struct ClientCa {
    verifier: Arc<Watched<Arc<dyn ClientCertVerifier>>>,
}

impl ClientCa {
    /// Loads the bundle; the error names the file.
    pub fn load(path: &Path) -> Result<Arc<Self>, TlsError> {
        let verifier = Watched::load("--client-ca-file", vec![path.to_owned()], |files| {
            let (path, pem) = &files[0];
            let roots = ca_bundle(path, pem)?;
            WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::new(provider::default_provider()),
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| format!("{}: {e}", path.display()))
        })
        .map_err(|message| TlsError::File {
            path: path.to_owned(),
            message: message
                .trim_start_matches(&format!("{}: ", path.display()))
                .to_owned(),
        })?;
        verifier.spawn_reloader();
        Ok(Arc::new(Self { verifier }))
    }
}

impl ClientCertVerifier for ClientCa {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The bundle can change under us; an empty hint list lets clients send any
        // certificate, which is then verified against the current bundle.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verifier
            .get()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier
            .get()
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier
            .get()
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifier.get().supported_verify_schemes()
    }
}

/// A PEM CA bundle as a root store; errors name the file. Shared by the client CA and
/// the upstream CA.
pub(crate) fn ca_bundle(path: &Path, pem: &[u8]) -> Result<RootCertStore, String> {
    let error = |message: String| format!("{}: {message}", path.display());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| error(format!("invalid PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| error(format!("unusable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(error("no CA certificate found".into()));
    }
    Ok(roots)
}

/// The user a verified client certificate names: CN, with O values as groups (the
/// apiserver's x509 authenticator), plus `system:authenticated`. `None` without a CN.
pub fn client_certificate_user(der: &[u8]) -> Option<User> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_owned();
    if name.is_empty() {
        return None;
    }
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    groups.push("system:authenticated".into());
    Some(User {
        name,
        groups: groups.into(),
        ..User::default()
    })
}

/// Builds the acceptor for a listener. `alpn_h2` adds "h2" before "http/1.1".
pub fn acceptor(
    cert: &Arc<ServingCert>,
    policy: &TlsPolicy,
    alpn_h2: bool,
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
    config.alpn_protocols = if alpn_h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The leaf certificate's notAfter as Unix seconds (0 if it cannot be parsed).
fn not_after(der: &[u8]) -> i64 {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert.validity().not_after.timestamp())
        .unwrap_or(0)
}

fn read_both(cert: &Path, key: &Path) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    Ok((std::fs::read(cert)?, std::fs::read(key)?))
}

fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let file_error = |path: &Path, message: String| TlsError::File {
        path: path.to_owned(),
        message,
    };
    let cert_pem = std::fs::read(cert).map_err(|e| file_error(cert, e.to_string()))?;
    let key_pem = std::fs::read(key).map_err(|e| file_error(key, e.to_string()))?;
    parse_pair(&cert_pem, &key_pem, cert, key)
}

pub(crate) fn parse_pair(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert: &Path,
    key: &Path,
) -> Result<CertifiedKey, TlsError> {
    let file_error = |path: &Path, message: String| TlsError::File {
        path: path.to_owned(),
        message,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(cert, format!("invalid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(file_error(cert, "no CERTIFICATE block found".into()));
    }
    let private_key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| file_error(key, format!("no usable private key: {e}")))?;
    certified_key(chain, private_key).map_err(|e| file_error(key, e))
}

fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, String> {
    let signing_key = provider::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("unsupported private key: {e}"))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .map_err(|e| format!("private key does not match the certificate: {e}"))?;
    Ok(certified)
}

/// An in-memory self-signed pair for localhost and this host's name.
fn self_signed() -> Result<CertifiedKey, TlsError> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_owned());
        }
    }
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    let key = PrivateKeyDer::try_from(generated.signing_key.serialize_der())
        .map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    certified_key(vec![generated.cert.der().clone()], key).map_err(TlsError::SelfSigned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_prometheus_suites_are_all_served() {
        let names = [
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        ]
        .map(String::from);
        let policy = TlsPolicy::from_flags("VersionTLS12", &names).unwrap();
        assert_eq!(policy.tls12_suites.len(), 6);
        assert_eq!(policy.cipher_suites().len(), 9);
    }

    #[test]
    fn unservable_and_unknown_names_are_named() {
        let names = ["TLS_RSA_WITH_AES_128_CBC_SHA", "TLS_MADE_UP"].map(String::from);
        let err = TlsPolicy::from_flags("VersionTLS12", &names).unwrap_err();
        assert!(
            err.contains("TLS_RSA_WITH_AES_128_CBC_SHA is not supported"),
            "{err}"
        );
        assert!(err.contains("unknown cipher suite TLS_MADE_UP"), "{err}");
    }

    #[test]
    fn tls13_minimum_offers_only_tls13() {
        let policy = TlsPolicy::from_flags("VersionTLS13", &[]).unwrap();
        assert!(policy
            .cipher_suites()
            .iter()
            .all(|s| s.version() == &rustls::version::TLS13));
        assert!(TlsPolicy::from_flags("VersionTLS11", &[]).is_err());
        assert!(TlsPolicy::from_flags("tls1.2", &[]).is_err());
    }

    #[test]
    fn key_and_certificate_formats() {
        let dir = tempfile::tempdir().unwrap();
        for (name, alg) in [
            ("ecdsa", &rcgen::PKCS_ECDSA_P256_SHA256),
            ("ed25519", &rcgen::PKCS_ED25519),
        ] {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            let (cert_path, key_path) = (
                dir.path().join(name),
                dir.path().join(format!("{name}.key")),
            );
            std::fs::write(&cert_path, cert.pem()).unwrap();
            std::fs::write(&key_path, key.serialize_pem()).unwrap();
            load_pair(&cert_path, &key_path).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("tls.crt");
        let key = dir.path().join("tls.key");
        let err = load_pair(&cert, &key).unwrap_err().to_string();
        assert!(err.contains("tls.crt"), "{err}");

        std::fs::write(&cert, "not a pem").unwrap();
        std::fs::write(&key, "not a pem").unwrap();
        let err = load_pair(&cert, &key).unwrap_err().to_string();
        assert!(
            err.contains("tls.crt") && err.contains("no CERTIFICATE"),
            "{err}"
        );

        // A key that belongs to another certificate.
        let a = rcgen::generate_simple_self_signed(vec!["a".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b".into()]).unwrap();
        std::fs::write(&cert, a.cert.pem()).unwrap();
        std::fs::write(&key, b.signing_key.serialize_pem()).unwrap();
        let err = load_pair(&cert, &key).unwrap_err().to_string();
        assert!(err.contains("does not match"), "{err}");
    }

    #[test]
    fn client_certificate_identity_is_cn_and_o() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "system:serviceaccount:monitoring:prometheus",
        );
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "scrapers");
        let cert = params.self_signed(&key).unwrap();
        let user = client_certificate_user(cert.der()).unwrap();
        assert_eq!(user.name, "system:serviceaccount:monitoring:prometheus");
        assert_eq!(*user.groups, ["scrapers", "system:authenticated"]);

        let mut nameless = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        nameless.distinguished_name = rcgen::DistinguishedName::new();
        let nameless = nameless.self_signed(&key).unwrap();
        assert!(
            client_certificate_user(nameless.der()).is_none(),
            "no CN, no user"
        );
    }

    #[test]
    fn self_signed_is_usable() {
        let cert = ServingCert::load(&TlsSource::SelfSigned, Arc::default()).unwrap();
        assert!(cert.is_valid(), "rcgen's default validity runs to 4096");
        acceptor(&cert, &TlsPolicy::default(), true, None).unwrap();
    }
}
