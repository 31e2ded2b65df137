//! Client certificates: which CA bundles the handshake accepts, and what a verified
//! certificate says about the caller.
//!
//! Two kinds of bundle can be in force on a listener, each a [`CaBundle`] that can
//! change under us (a watched file, or what the cluster lookup last read):
//! - the client CA (`--client-ca-file`, or the cluster's `client-ca-file`): a
//!   certificate verified against it names the user the way the apiserver's x509
//!   authenticator does: CN is the name, O the groups;
//! - the requestheader CA (`--requestheader-client-ca-file`, or the cluster's): a
//!   certificate verified against it is a front proxy, whose request headers name the
//!   user (`authn::front_proxy`).
//!
//! Client certificates are requested, not required, so bearer-token clients on the same
//! port still work. The handshake accepts a certificate that verifies against either
//! bundle; after it, each is checked on its own ([`ClientCa::identify`]), so a front
//! proxy's certificate never names its CN as a user, and a client certificate never
//! makes its holder a front proxy.

use std::{
    path::Path,
    sync::{Arc, RwLock},
};

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

type Verifier = Arc<dyn ClientCertVerifier>;

/// A CA bundle that may change while the proxy runs: a file (re-read when it changes,
/// `reload::Watched`), or one published by the cluster lookup (empty until then: it
/// verifies nothing).
pub(crate) struct CaBundle {
    source: Source,
}

enum Source {
    File(Arc<Watched<Verifier>>),
    Published(RwLock<Option<Verifier>>),
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.source {
            Source::File(_) => "file",
            Source::Published(_) => "published",
        };
        f.debug_struct("CaBundle").field("source", &kind).finish()
    }
}

// === impl CaBundle ===

impl CaBundle {
    /// Loads the bundle `flag` names and keeps it fresh; the error names the flag and file.
    pub(crate) fn load(
        flag: &'static str,
        path: &Path,
        metrics: &Arc<Metrics>,
    ) -> Result<Arc<Self>, TlsError> {
        let parse = |files: &[(std::path::PathBuf, Vec<u8>)]| {
            let (path, pem) = &files[0];
            verifier(path, pem)
        };
        let verifier = Watched::load(flag, vec![path.to_owned()], parse, metrics)
            .map_err(|e| TlsError::File(format!("{flag} {e}")))?;
        verifier.spawn_reloader();
        Ok(Arc::new(Self {
            source: Source::File(verifier),
        }))
    }

    /// A bundle the cluster lookup fills in ([`CaBundle::publish`]); empty until then.
    pub(crate) fn published() -> Arc<Self> {
        Arc::new(Self {
            source: Source::Published(RwLock::new(None)),
        })
    }

    /// Puts `pem` in force. `what` says where it came from, for the message. An
    /// unusable bundle leaves the last good one in force.
    pub(crate) fn publish(&self, what: &str, pem: &[u8]) -> Result<(), String> {
        let Source::Published(current) = &self.source else {
            return Err(format!(
                "{what}: a file's bundle is not replaced by the lookup"
            ));
        };
        let verifier = verifier(Path::new(what), pem)?;
        *current.write().unwrap_or_else(|e| e.into_inner()) = Some(verifier);
        Ok(())
    }

    /// Whether a bundle is in force (a file's always is).
    pub(crate) fn is_set(&self) -> bool {
        self.current().is_some()
    }

    fn current(&self) -> Option<Verifier> {
        match &self.source {
            Source::File(watched) => Some(Arc::clone(&watched.get())),
            Source::Published(current) => current.read().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    /// Whether the chain verifies against the bundle in force, now (client-auth usage).
    pub(crate) fn verifies(&self, chain: &[CertificateDer<'_>]) -> bool {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return false;
        };
        self.current().is_some_and(|verifier| {
            verifier
                .verify_client_cert(leaf, intermediates, UnixTime::now())
                .is_ok()
        })
    }
}

fn verifier(path: &Path, pem: &[u8]) -> Result<Verifier, String> {
    let roots = ca_bundle(path, pem)?;
    WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(provider::default_provider()),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| format!("{}: {e}", path.display()))
}

/// What a verified client certificate says about the caller: each bundle checked on its
/// own.
#[derive(Debug, Default, Clone)]
pub(crate) struct PeerCertificate {
    /// The user it names (CN, O), verified against the client CA.
    pub(crate) user: Option<Arc<User>>,
    /// Its CN, verified against the requestheader CA: the caller is a front proxy (its
    /// CN still to be checked against the allowed names).
    pub(crate) front_proxy: Option<Arc<str>>,
}

/// The client certificates a listener accepts: its client CA, the requestheader CA, or
/// both. The handshake accepts a certificate either verifies.
#[derive(Debug)]
pub(crate) struct ClientCa {
    client: Option<Arc<CaBundle>>,
    front_proxy: Option<Arc<CaBundle>>,
}

impl ClientCa {
    /// The listener's client CA and the requestheader CA; `None` when it has neither
    /// (then no client certificate is asked for).
    pub(crate) fn new(
        client: Option<Arc<CaBundle>>,
        front_proxy: Option<Arc<CaBundle>>,
    ) -> Option<Arc<Self>> {
        if client.is_none() && front_proxy.is_none() {
            return None;
        }
        Some(Arc::new(Self {
            client,
            front_proxy,
        }))
    }

    /// What the chain says, each bundle checked on its own, now and against the bundle
    /// in force.
    ///
    /// On a full handshake rustls has just verified the chain against one of them; which
    /// one is not recorded, so both are asked again. A resumed session carries the
    /// chain verified when the session began, possibly long ago, so this also makes a
    /// certificate that has expired since (or whose CA was taken out) name nobody. Go
    /// refuses such resumptions too.
    pub(crate) fn identify(&self, chain: &[CertificateDer<'_>]) -> PeerCertificate {
        let Some(leaf) = chain.first() else {
            return PeerCertificate::default();
        };
        let verified =
            |bundle: &Option<Arc<CaBundle>>| bundle.as_ref().is_some_and(|b| b.verifies(chain));
        let user = verified(&self.client)
            .then(|| client_certificate_user(leaf.as_ref()))
            .flatten()
            .map(Arc::new);
        let front_proxy = verified(&self.front_proxy)
            .then(|| common_name(leaf.as_ref()))
            .map(|cn| Arc::from(cn.unwrap_or_default()));
        if user.is_none() && front_proxy.is_none() {
            tracing::info!("a client certificate no longer verifies against the CA bundles in force; ignoring it");
        }
        PeerCertificate { user, front_proxy }
    }

    fn bundles(&self) -> impl Iterator<Item = Verifier> + '_ {
        [&self.client, &self.front_proxy]
            .into_iter()
            .flatten()
            .filter_map(|bundle| bundle.current())
    }
}

impl ClientCertVerifier for ClientCa {
    /// Asked on every handshake: while no bundle is in force (the lookup has found
    /// none yet), no certificate is asked for, so a client that would send one it has
    /// is not refused for it: the listener behaves as one without a client CA.
    fn offer_client_auth(&self) -> bool {
        self.bundles().next().is_some()
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The bundles can change under us; an empty hint list lets clients send any
        // certificate, which is then verified against the current bundles.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let mut last = None;
        for verifier in self.bundles() {
            match verifier.verify_client_cert(end_entity, intermediates, now) {
                Ok(verified) => return Ok(verified),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The signature check does not depend on the roots.
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}

/// The provider's signature algorithms, made once.
fn algorithms() -> rustls::crypto::WebPkiSupportedAlgorithms {
    static ALGORITHMS: std::sync::LazyLock<rustls::crypto::WebPkiSupportedAlgorithms> =
        std::sync::LazyLock::new(|| provider::default_provider().signature_verification_algorithms);
    *ALGORITHMS
}

/// A certificate's first CN, if it has one.
fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let name = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_owned();
    Some(name)
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

    fn bundle(ca: &scrape_guard_testkit::pki::Ca) -> Arc<CaBundle> {
        let bundle = CaBundle::published();
        bundle.publish("test CA", ca.pem().as_bytes()).unwrap();
        bundle
    }

    #[test]
    fn each_bundle_vouches_only_for_its_own_certificates() {
        scrape_guard_testkit::install_crypto();
        let clients = scrape_guard_testkit::pki::Ca::new("client CA");
        let proxies = scrape_guard_testkit::pki::Ca::new("front-proxy CA");
        let stranger = scrape_guard_testkit::pki::Ca::new("nobody's CA");
        let both = ClientCa::new(Some(bundle(&clients)), Some(bundle(&proxies))).unwrap();

        let alice = clients.client("alice", &["devs"]);
        let seen = both.identify(&alice.chain());
        assert_eq!(seen.user.unwrap().name, "alice");
        assert!(
            seen.front_proxy.is_none(),
            "a client certificate is no front proxy"
        );

        let proxy = proxies.client("front-proxy", &["system:masters"]);
        let seen = both.identify(&proxy.chain());
        assert!(seen.user.is_none(), "a front proxy's CN is no user");
        assert_eq!(seen.front_proxy.as_deref(), Some("front-proxy"));

        let seen = both.identify(&stranger.client("mallory", &[]).chain());
        assert!(seen.user.is_none() && seen.front_proxy.is_none());

        // The handshake accepts either, nothing else.
        let now = UnixTime::now();
        assert!(both.verify_client_cert(&alice.chain()[0], &[], now).is_ok());
        assert!(both.verify_client_cert(&proxy.chain()[0], &[], now).is_ok());
        let mallory = stranger.client("mallory", &[]).chain();
        assert!(both.verify_client_cert(&mallory[0], &[], now).is_err());

        // An empty published bundle (the lookup found nothing) vouches for nobody.
        let empty = ClientCa::new(None, Some(CaBundle::published())).unwrap();
        assert!(empty.identify(&proxy.chain()).front_proxy.is_none());
        assert!(empty
            .verify_client_cert(&proxy.chain()[0], &[], now)
            .is_err());
        assert!(
            !empty.offer_client_auth(),
            "nothing in force: no certificate asked for"
        );
        assert!(both.offer_client_auth());
        assert!(ClientCa::new(None, None).is_none());
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
}
