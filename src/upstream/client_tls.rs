//! The TLS client for an `https://` upstream: `--upstream-ca-file` (else the platform's
//! roots) and `--upstream-client-cert-file`/`--upstream-client-key-file`. Both are
//! re-read when they change (`reload::Watched`), like the serving certificate; a client
//! certificate works with or without `--upstream-ca-file`.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    client::{
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        ResolvesClientCert, WebPkiServerVerifier,
    },
    sign::CertifiedKey,
    ClientConfig, DigitallySignedStruct, SignatureScheme,
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
    Ok(match &options.client_cert {
        Some((cert, key)) => {
            builder.with_client_cert_resolver(ClientIdentity::load(cert, key, metrics)?)
        }
        None => builder.with_no_client_auth(),
    })
}

/// `--upstream-ca-file`, re-read when it changes. Verification is webpki's, against
/// the current bundle.
#[derive(Debug)]
struct ReloadingVerifier(Arc<Watched<Arc<WebPkiServerVerifier>>>);

impl ReloadingVerifier {
    fn load(
        path: &Path,
        provider: Arc<rustls::crypto::CryptoProvider>,
        metrics: &Arc<Metrics>,
    ) -> Result<Arc<Self>, UpstreamError> {
        let parse = move |files: &[(PathBuf, Vec<u8>)]| {
            let (path, pem) = &files[0];
            let roots = tls::ca_bundle(path, pem)?;
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()
                .map_err(|e| format!("{}: {e}", path.display()))
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
        self.0
            .get()
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.get().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.get().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.get().supported_verify_schemes()
    }
}

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
