//! The TLS client for an `https://` upstream: `--upstream-ca-file` (else the platform's
//! roots) and `--upstream-client-cert-file`/`--upstream-client-key-file`. Both are
//! re-read when they change (`reload::Watched`), like the serving certificate; a client
//! certificate works with or without `--upstream-ca-file`.
//!
//! A self-signed upstream (CA:TRUE, as `openssl req -x509` and older client-go make
//! them, or a plain leaf) is trusted by putting its very certificate in
//! `--upstream-ca-file`, as Go trusts it: Go accepts a leaf that is itself one of the
//! roots, while webpki refuses a CA certificate presented as the server's. So a
//! presented certificate byte-identical to one in the bundle is checked here — its
//! validity dates, its names against the upstream's host (subjectAltNames, as Go and
//! webpki), a serverAuth extended key usage if it lists any — and its handshake
//! signature is verified as for any other; every other certificate goes to webpki.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    client::{
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        verify_server_name, ResolvesClientCert, WebPkiServerVerifier,
    },
    pki_types::pem::PemObject,
    server::ParsedCertificate,
    sign::CertifiedKey,
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::{UpstreamError, UpstreamOptions};
use crate::{metrics::Metrics, reload::Watched, tls};

/// The rustls client configuration for the upstream. For an `http://` or `unix://`
/// upstream it is never used, so it trusts nothing and reads no system CA bundle (a
/// distroless image may have none).
pub(super) fn client_tls(
    options: &UpstreamOptions,
    https: bool,
    metrics: &Arc<Metrics>,
) -> Result<ClientConfig, UpstreamError> {
    let provider = Arc::new(tls::provider::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(UpstreamError::Tls)?;
    let builder = match &options.ca_file {
        None if !https => builder.with_root_certificates(rustls::RootCertStore::empty()),
        Some(path) => {
            let verifier = ReloadingVerifier::load(path, provider, metrics)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder
                .with_platform_verifier()
                .map_err(UpstreamError::SystemRoots)?
        }
    };
    let config = match &options.client_cert {
        Some((cert, key)) => {
            builder.with_client_cert_resolver(ClientIdentity::load(cert, key, metrics)?)
        }
        None => builder.with_no_client_auth(),
    };
    tls::require_fips("the upstream client (--upstream)", config.fips())?;
    Ok(config)
}

/// `--upstream-ca-file`, re-read when it changes: webpki's verification against the
/// current bundle, and the bundle's certificates themselves (module docs).
#[derive(Debug)]
struct ReloadingVerifier(Arc<Watched<Trust>>);

/// One version of the bundle.
#[derive(Debug)]
struct Trust {
    webpki: Arc<WebPkiServerVerifier>,
    /// Every certificate in the file, DER: trusted as they are when presented.
    certificates: Vec<CertificateDer<'static>>,
}

impl ReloadingVerifier {
    fn load(
        path: &Path,
        provider: Arc<rustls::crypto::CryptoProvider>,
        metrics: &Arc<Metrics>,
    ) -> Result<Arc<Self>, UpstreamError> {
        let parse = move |files: &[(PathBuf, Vec<u8>)]| {
            let (path, pem) = &files[0];
            let roots = tls::ca_bundle(path, pem)?;
            let certificates = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: invalid PEM: {e}", path.display()))?;
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(Trust {
                webpki,
                certificates,
            })
        };
        let watched = Watched::load("--upstream-ca-file", vec![path.to_owned()], parse, metrics)
            .map_err(|e| UpstreamError::File {
                flag: "--upstream-ca-file",
                message: e.to_string(),
            })?;
        watched.spawn_reloader();
        Ok(Arc::new(Self(watched)))
    }
}

impl ServerCertVerifier for ReloadingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let trust = self.0.get();
        if trust
            .certificates
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref())
        {
            return verify_pinned(end_entity, server_name, now);
        }
        trust
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|error| explain(error, end_entity))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .get()
            .webpki
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .get()
            .webpki
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.get().webpki.supported_verify_schemes()
    }
}

/// A presented certificate that is itself in `--upstream-ca-file`: trusted as it is,
/// as Go trusts a leaf found among its roots, if it is valid now, names the upstream's
/// host and may serve TLS. (The handshake signature is checked by
/// `verify_tls1x_signature`, as for any certificate.)
fn verify_pinned(
    end_entity: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<ServerCertVerified, rustls::Error> {
    let bad = |error: CertificateError| rustls::Error::InvalidCertificate(error);
    let parsed = ParsedCertificate::try_from(end_entity)?;
    verify_server_name(&parsed, server_name)?;
    let (_, cert) = x509_parser::parse_x509_certificate(end_entity.as_ref())
        .map_err(|_| bad(CertificateError::BadEncoding))?;
    let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    if now_secs < cert.validity().not_before.timestamp() {
        return Err(bad(CertificateError::NotValidYet));
    }
    if now_secs > cert.validity().not_after.timestamp() {
        return Err(bad(CertificateError::Expired));
    }
    match cert.extended_key_usage() {
        Ok(Some(eku)) if !eku.value.server_auth && !eku.value.any => {
            Err(bad(CertificateError::InvalidPurpose))
        }
        Ok(_) => Ok(ServerCertVerified::assertion()),
        Err(_) => Err(bad(CertificateError::BadEncoding)),
    }
}

/// webpki's refusal, said in the terms of the fix when the upstream's certificate is
/// self-signed: webpki reports that as an unknown issuer, a bad signature or a CA
/// certificate used as the server's, none of which says what to do.
fn explain(error: rustls::Error, end_entity: &CertificateDer<'_>) -> rustls::Error {
    let self_signed = x509_parser::parse_x509_certificate(end_entity.as_ref())
        .is_ok_and(|(_, cert)| cert.subject().as_raw() == cert.issuer().as_raw());
    match error {
        rustls::Error::InvalidCertificate(
            // webpki's CaUsedAsEndEntity reaches rustls as `Other`; a bundle certificate
            // with the same subject (a self-signed certificate made again) as a bad
            // signature.
            CertificateError::UnknownIssuer
            | CertificateError::BadSignature
            | CertificateError::Other(_),
        ) if self_signed => rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(
            Arc::new(NotInBundle),
        ))),
        other => other,
    }
}

/// A self-signed upstream certificate that is not in the bundle. rustls shows it with
/// `Debug` ("invalid peer certificate: Other(OtherError(…))"), so both say the same.
struct NotInBundle;

impl std::fmt::Display for NotInBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Short: the log field holding it is cut at 256 bytes (`logging::cut`).
        f.write_str("self-signed, and not itself in --upstream-ca-file")
    }
}

impl std::fmt::Debug for NotInBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for NotInBundle {}

/// `--upstream-client-cert-file`/`--upstream-client-key-file`, re-read when they change.
#[derive(Debug)]
struct ClientIdentity(Arc<Watched<Arc<CertifiedKey>>>);

impl ClientIdentity {
    fn load(cert: &Path, key: &Path, metrics: &Arc<Metrics>) -> Result<Arc<Self>, UpstreamError> {
        let (cert_path, key_path) = (cert.to_owned(), key.to_owned());
        let watched = Watched::load(
            "--upstream-client-cert-file",
            vec![cert.to_owned(), key.to_owned()],
            move |files| {
                tls::parse_pair(&files[0].1, &files[1].1, &cert_path, &key_path).map(Arc::new)
            },
            metrics,
        )
        .map_err(|e| UpstreamError::File {
            flag: "--upstream-client-cert-file/--upstream-client-key-file",
            message: e.to_string(),
        })?;
        watched.spawn_reloader();
        Ok(Arc::new(Self(watched)))
    }
}

impl ResolvesClientCert for ClientIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0.get()))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `names`, edited first: (DER, PEM).
    fn self_signed(
        names: &[&str],
        edit: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> (Vec<u8>, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        edit(&mut params);
        let cert = params.self_signed(&key).unwrap();
        (cert.der().to_vec(), cert.pem())
    }

    fn ca_true(params: &mut rcgen::CertificateParams) {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }

    type Cert = (Vec<u8>, String);

    /// Verifies `presented` for `name` against a bundle of `bundle`.
    async fn verify(bundle: &[&Cert], presented: &Cert, name: &str) -> Result<(), String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.crt");
        let pem: String = bundle.iter().map(|(_, pem)| pem.as_str()).collect();
        std::fs::write(&path, pem).unwrap();
        let provider = Arc::new(tls::provider::default_provider());
        let verifier = ReloadingVerifier::load(&path, provider, &Arc::default()).unwrap();
        verifier
            .verify_server_cert(
                &CertificateDer::from(presented.0.clone()),
                &[],
                &ServerName::try_from(name.to_owned()).unwrap(),
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn a_certificate_in_the_bundle_is_trusted_as_it_is_if_valid_for_the_name() {
        let ca = self_signed(&["localhost", "127.0.0.1"], ca_true);
        let leaf = self_signed(&["localhost"], |_| {});
        for cert in [&ca, &leaf] {
            assert_eq!(verify(&[cert], cert, "localhost").await, Ok(()));
            let wrong = verify(&[cert], cert, "exporter.test").await.unwrap_err();
            assert!(wrong.contains("not valid for name"), "{wrong}");
        }
        assert_eq!(verify(&[&leaf, &ca], &ca, "127.0.0.1").await, Ok(()));
        // webpki alone: a CA certificate is no server certificate.
        let provider = Arc::new(tls::provider::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(ca.0.clone())).unwrap();
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        let refused = webpki.verify_server_cert(
            &CertificateDer::from(ca.0.clone()),
            &[],
            &ServerName::try_from("localhost").unwrap(),
            &[],
            UnixTime::now(),
        );
        assert!(refused.is_err());
    }

    #[tokio::test]
    async fn a_certificate_in_the_bundle_must_be_in_date_and_for_serving() {
        let expired = self_signed(&["localhost"], |p| {
            ca_true(p);
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        });
        let error = verify(&[&expired], &expired, "localhost")
            .await
            .unwrap_err();
        assert!(error.contains("Expired"), "{error}");
        let client_only = self_signed(&["localhost"], |p| {
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        });
        let error = verify(&[&client_only], &client_only, "localhost")
            .await
            .unwrap_err();
        assert!(error.contains("InvalidPurpose"), "{error}");
    }

    #[tokio::test]
    async fn another_self_signed_certificate_is_refused_saying_what_to_do() {
        let in_file = self_signed(&["localhost"], ca_true);
        let others = [
            self_signed(&["localhost"], ca_true),
            self_signed(&["localhost"], |_| {}),
        ];
        for presented in &others {
            let error = verify(&[&in_file], presented, "localhost")
                .await
                .unwrap_err();
            assert!(
                error.contains("not itself in --upstream-ca-file"),
                "{error}"
            );
        }
    }
}
