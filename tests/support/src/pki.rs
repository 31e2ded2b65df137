//! Certificates generated at test time into a temp dir: a CA, a serving certificate for
//! localhost/127.0.0.1, and client certificates on demand. Nothing is checked in, so
//! nothing expires; the price is a few milliseconds of key generation per test.

use std::path::PathBuf;

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
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    /// A new CA and serving certificate in a new temp dir.
    #[expect(
        clippy::new_without_default,
        reason = "generating keys and writing files is not a default value"
    )]
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "scrape-guard test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let ca_key_path = dir.path().join("ca.key");
        std::fs::write(&ca_key_path, ca_key.serialize_pem()).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let ca_path = dir.path().join("ca.crt");
        let cert_path = dir.path().join("tls.crt");
        let key_path = dir.path().join("tls.key");
        std::fs::write(&ca_path, ca.pem()).unwrap();
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Self {
            dir,
            ca_pem: ca.pem(),
            cert_path,
            key_path,
            ca_path,
            ca_key_path,
            issuer,
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
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        for org in organizations {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, *org);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        if let Some(lifetime) = lifetime {
            let now = time::OffsetDateTime::now_utc();
            params.not_before = now - time::Duration::minutes(1);
            params.not_after = now + lifetime;
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A new serving certificate for localhost from the same CA: (cert PEM, key PEM).
    pub fn serving_cert(&self) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
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
