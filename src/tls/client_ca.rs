//! `--client-ca-file`: who a client certificate says the caller is.
//!
//! Client certificates are requested, not required, so bearer-token clients on the same
//! port still work. The bundle is re-read when it changes (`reload::Watched`); each
//! handshake is verified against the bundle in force. A verified certificate names the
//! user the way the apiserver's x509 authenticator does: CN is the name, O the groups.

use std::{path::Path, sync::Arc};

use rustls::{
    client::danger::HandshakeSignatureValid,
    server::{
        danger::{ClientCertVerified, ClientCertVerifier},
        WebPkiClientVerifier,
    },
    DigitallySignedStruct, DistinguishedName, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::provider;

use super::{ca_bundle, TlsError};
use crate::{identity::User, metrics::Metrics, reload::Watched};

/// `--client-ca-file`: client certificates are requested (not required, so bearer
/// token clients still work) and verified against this CA bundle, which is re-read
/// when it changes. A verified certificate's CN is the user, its O values the groups.
#[derive(Debug)]
pub(crate) struct ClientCa {
    verifier: Arc<Watched<Arc<dyn ClientCertVerifier>>>,
}

impl ClientCa {
    /// Loads the bundle; the error names the file.
    pub(crate) fn load(path: &Path, metrics: &Arc<Metrics>) -> Result<Arc<Self>, TlsError> {
        let parse = |files: &[(std::path::PathBuf, Vec<u8>)]| {
            let (path, pem) = &files[0];
            let roots = ca_bundle(path, pem)?;
            WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::new(provider::default_provider()),
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| format!("{}: {e}", path.display()))
        };
        let verifier = Watched::load("--client-ca-file", vec![path.to_owned()], parse, metrics)
            .map_err(|e| TlsError::File(format!("--client-ca-file {e}")))?;
        verifier.spawn_reloader();
        Ok(Arc::new(Self { verifier }))
    }
}

impl ClientCa {
    /// The user a client certificate chain names, if it verifies.
    ///
    /// On a full handshake rustls has just verified the chain. A resumed session
    /// carries the chain verified when the session began, possibly long ago, and every
    /// resumption issues fresh tickets: so it is verified again, now and against the
    /// bundle in force, and a certificate that has expired since (or whose CA was taken
    /// out of `--client-ca-file`) names nobody. Go refuses such resumptions too.
    pub(crate) fn user(&self, chain: &[CertificateDer<'_>], resumed: bool) -> Option<User> {
        let (leaf, intermediates) = chain.split_first()?;
        if resumed {
            if let Err(error) =
                self.verifier
                    .get()
                    .verify_client_cert(leaf, intermediates, UnixTime::now())
            {
                tracing::info!(%error, "a resumed TLS session's client certificate no longer verifies; ignoring it");
                return None;
            }
        }
        client_certificate_user(leaf.as_ref())
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

/// The user a verified client certificate names: CN, with O values as groups (the
/// apiserver's x509 authenticator), plus `system:authenticated`. `None` without a CN.
pub(crate) fn client_certificate_user(der: &[u8]) -> Option<User> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
