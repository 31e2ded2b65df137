//! Certificates generated at test time with rcgen: nothing is checked in, so nothing
//! expires; the price is a few milliseconds of key generation per test. The one test PKI
//! of every suite:
//! - [`Pki`]: the integration tests' bundle, a CA and a serving certificate for
//!   localhost/127.0.0.1 as files in a temp dir, client certificates on demand, rustls
//!   configs trusting the CA;
//! - [`Ca`] and [`KeyCert`]: any CA and the certificates it signs (the end-to-end suite's
//!   apiserver, kubelet and scrape-guard certificates), [`signing_key_pair`] for the
//!   apiserver's service-account tokens. All keys are ECDSA P-256.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Installs aws-lc-rs as rustls' process-wide crypto provider, as `main` does. Every test
/// calls it; all but the first call are no-ops.
pub fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A test CA and a serving certificate for localhost/127.0.0.1, as PEM files.
pub struct Pki {
    /// Holds the PEM files (and anything else a test writes beside them).
    pub dir: tempfile::TempDir,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The serving certificate, PEM file.
    pub cert_path: PathBuf,
    /// The serving certificate's key, PEM file.
    pub key_path: PathBuf,
    /// The CA certificate, PEM file.
    pub ca_path: PathBuf,
    /// The CA's private key, PEM file (for certificates made with other tools).
    pub ca_key_path: PathBuf,
    ca: Ca,
}

impl Pki {
    /// A new CA and serving certificate in a new temp dir.
    #[expect(
        clippy::new_without_default,
        reason = "generating keys and writing files is not a default value"
    )]
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("scrape-guard test CA");
        let serving = ca.sign(localhost());
        let ca_path = dir.path().join("ca.crt");
        let ca_key_path = dir.path().join("ca.key");
        let cert_path = dir.path().join("tls.crt");
        let key_path = dir.path().join("tls.key");
        write(&ca_path, ca.pem());
        write(&ca_key_path, ca.key_pem());
        write(&cert_path, &serving.cert_pem);
        write(&key_path, &serving.key_pem);
        Self {
            dir,
            ca_pem: ca.pem().to_owned(),
            cert_path,
            key_path,
            ca_path,
            ca_key_path,
            ca,
        }
    }

    /// A client certificate from the test CA with this CN and O values: (cert PEM, key PEM).
    pub fn client_cert(&self, common_name: &str, organizations: &[&str]) -> (String, String) {
        self.client_cert_expiring(common_name, organizations, None)
    }

    /// A client certificate that expires `lifetime` from now.
    pub fn short_lived_client_cert(
        &self,
        common_name: &str,
        lifetime: std::time::Duration,
    ) -> (String, String) {
        self.client_cert_expiring(common_name, &[], Some(lifetime))
    }

    fn client_cert_expiring(
        &self,
        common_name: &str,
        organizations: &[&str],
        lifetime: Option<std::time::Duration>,
    ) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        for org in organizations {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *org);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if let Some(lifetime) = lifetime {
            let now = time::OffsetDateTime::now_utc();
            params.not_before = now - time::Duration::minutes(1);
            params.not_after = now + lifetime;
        }
        let cert = self.ca.sign(params);
        (cert.cert_pem, cert.key_pem)
    }

    /// A new serving certificate for localhost from the same CA: (cert PEM, key PEM).
    pub fn serving_cert(&self) -> (String, String) {
        let cert = self.ca.sign(localhost());
        (cert.cert_pem, cert.key_pem)
    }

    /// A server config presenting the serving certificate, offering `alpn`.
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

    /// A client config trusting the test CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> rustls::ClientConfig {
        self.client_config_with(alpn, None)
    }

    /// A client config trusting the test CA that offers only these key exchanges, in
    /// this order, over only these TLS versions (aws-lc-rs, as the proxy).
    pub fn client_config_offering(
        &self,
        kx_groups: &[&'static dyn rustls::crypto::SupportedKxGroup],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> rustls::ClientConfig {
        let provider = rustls::crypto::CryptoProvider {
            kx_groups: kx_groups.to_vec(),
            ..rustls::crypto::aws_lc_rs::default_provider()
        };
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(self.roots())
            .with_no_client_auth()
    }

    fn roots(&self) -> rustls::RootCertStore {
        use rustls_pki_types::{pem::PemObject, CertificateDer};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        roots
    }

    /// A client config, optionally presenting a client certificate (cert PEM, key PEM).
    pub fn client_config_with(
        &self,
        alpn: &[&[u8]],
        identity: Option<&(String, String)>,
    ) -> rustls::ClientConfig {
        use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
        let builder = rustls::ClientConfig::builder().with_root_certificates(self.roots());
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

/// A serving certificate's parameters for localhost and 127.0.0.1, nothing else set.
fn localhost() -> CertificateParams {
    CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap()
}

// === any CA ===

/// A certificate authority that signs serving and client certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

/// A certificate and its private key.
pub struct KeyCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PKCS#8 PEM.
    pub key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Ca {
    /// A new self-signed CA with this CN.
    pub fn new(common_name: &str) -> Self {
        let key = KeyPair::generate().expect("generating a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params.self_signed(&key).expect("self-signing the CA");
        Self {
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The CA's private key, PEM (for certificates made with other tools).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The CA certificate, DER.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// A serving certificate for 127.0.0.1, localhost and kubernetes.default.svc.
    pub fn serving(&self, common_name: &str) -> KeyCert {
        self.serving_for(
            common_name,
            &["127.0.0.1", "localhost", "kubernetes.default.svc"],
        )
    }

    /// A serving certificate for these names and addresses.
    pub fn serving_for(&self, common_name: &str, sans: &[&str]) -> KeyCert {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).expect("serving cert params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A client certificate: CN `common_name`, one O per entry of `organizations`.
    pub fn client(&self, common_name: &str, organizations: &[&str]) -> KeyCert {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        for org in organizations {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *org);
        }
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    /// A certificate with exactly these parameters, signed by this CA, for a new key.
    pub fn sign(&self, params: CertificateParams) -> KeyCert {
        let key = KeyPair::generate().expect("generating a key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("signing a certificate");
        KeyCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }
}

impl KeyCert {
    /// The certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        self.cert_der.as_ref()
    }

    /// Writes `<name>.crt` and `<name>.key` into `dir`: (certificate path, key path).
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        write(&cert, &self.cert_pem);
        write(&key, &self.key_pem);
        (cert, key)
    }

    /// The certificate as a one-certificate chain, for rustls.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert_der.clone()]
    }

    /// The private key, for rustls.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.key_der.clone()).into()
    }
}

/// The apiserver's service-account token key pair: (private PEM, public PEM).
pub fn signing_key_pair() -> (String, String) {
    let key = KeyPair::generate().expect("generating the service-account key");
    (key.serialize_pem(), key.public_key_pem())
}

/// Writes `contents` to `path`, panicking with the path if it cannot.
pub fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
