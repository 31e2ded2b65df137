//! Certificates generated at test time with rcgen (nothing checked in, nothing that
//! expires): a CA, serving certificates for 127.0.0.1, client certificates, and the
//! service-account signing key pair of the apiserver. All keys are ECDSA P-256.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate authority that signs serving and client certificates.
pub(crate) struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: CertificateDer<'static>,
}

/// A certificate and its private key.
pub(crate) struct KeyCert {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Ca {
    pub(crate) fn new(common_name: &str) -> Self {
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
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    pub(crate) fn pem(&self) -> &str {
        &self.pem
    }

    pub(crate) fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// A serving certificate for 127.0.0.1, localhost and kubernetes.default.svc.
    pub(crate) fn serving(&self, common_name: &str) -> KeyCert {
        self.serving_for(
            common_name,
            &["127.0.0.1", "localhost", "kubernetes.default.svc"],
        )
    }

    /// A serving certificate for these names and addresses.
    pub(crate) fn serving_for(&self, common_name: &str, sans: &[&str]) -> KeyCert {
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
    pub(crate) fn client(&self, common_name: &str, organizations: &[&str]) -> KeyCert {
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

    fn sign(&self, params: CertificateParams) -> KeyCert {
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
    pub(crate) fn cert_der(&self) -> &[u8] {
        self.cert_der.as_ref()
    }

    /// Writes `<name>.crt` and `<name>.key` into `dir`: (certificate path, key path).
    pub(crate) fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        write(&cert, &self.cert_pem);
        write(&key, &self.key_pem);
        (cert, key)
    }

    pub(crate) fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert_der.clone()]
    }

    pub(crate) fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.key_der.clone()).into()
    }
}

/// The apiserver's service-account token key pair: (private PEM, public PEM).
pub(crate) fn signing_key_pair() -> (String, String) {
    let key = KeyPair::generate().expect("generating the service-account key");
    (key.serialize_pem(), key.public_key_pem())
}

pub(crate) fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
