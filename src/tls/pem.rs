//! PEM in, rustls types out: certificate chains, private keys, CA bundles. Every error
//! names the file it came from. Shared by the serving pair, the client CA and the
//! upstream client.

use std::path::Path;

use rustls::{sign::CertifiedKey, RootCertStore};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

use super::provider;

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

/// The leaf certificate's notAfter as Unix seconds (0 if it cannot be parsed).
pub(super) fn not_after(der: &[u8]) -> i64 {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert.validity().not_after.timestamp())
        .unwrap_or(0)
}

/// A certificate chain and its private key, checked to belong together. `cert` and
/// `key` are the files they came from, for the message.
pub(crate) fn parse_pair(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert: &Path,
    key: &Path,
) -> Result<CertifiedKey, String> {
    let file_error = |path: &Path, message: String| format!("{}: {message}", path.display());
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

pub(super) fn certified_key(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
        let read =
            |path: &Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
        parse_pair(&read(cert)?, &read(key)?, cert, key)
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
}
