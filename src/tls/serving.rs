//! The serving certificate: loaded at startup, swapped without touching live
//! connections when its files change.
//!
//! The pair sits behind a resolver, so a new one applies to the next handshake. It is
//! re-read like every other watched file (`reload::Watched`): a new pair is installed
//! only when it parses and the key matches the certificate, and a missing or
//! half-written file (a Secret volume mid-swap, cert-manager mid-renewal) is logged once
//! while the last good pair keeps serving. The `--tls-sni-cert-key` pairs beside it
//! (`sni.rs`) are chosen by the name a client asks for; this pair answers the rest.

use std::sync::Arc;

use rustls::{
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use rustls_pki_types::PrivateKeyDer;

use super::{
    pem::{certified_key, not_after, parse_pair},
    sni::SniPairs,
    TlsError, TlsSettings, TlsSource,
};
use crate::{metrics::Metrics, reload::Watched};

/// A pair in force, with its expiry read once when it was loaded.
struct Pair {
    key: Arc<CertifiedKey>,
    /// The leaf's notAfter, Unix seconds (0 if unreadable, which counts as expired).
    not_after: i64,
}

impl Pair {
    fn new(key: CertifiedKey) -> Self {
        let not_after = key.cert.first().map_or(0, |c| not_after(c.as_ref()));
        Self {
            key: Arc::new(key),
            not_after,
        }
    }
}

/// The serving certificate: loaded, swappable, and reloaded from disk.
#[derive(Debug)]
pub(crate) struct ServingCert {
    pair: Arc<Watched<Pair>>,
    /// `--tls-sni-cert-key`: chosen by SNI before `pair`.
    sni: SniPairs,
}

impl ServingCert {
    /// Loads the files (or generates a self-signed pair), failing with the file's name,
    /// and re-reads them when they change from then on. Each pair's expiry goes to the
    /// certificate-expiry gauge when it is swapped in. The `--tls-sni-cert-key` pairs
    /// are loaded and watched the same way.
    pub(crate) fn load(tls: &TlsSettings, metrics: &Arc<Metrics>) -> Result<Arc<Self>, TlsError> {
        let source = &tls.source;
        let expiry = Arc::clone(metrics);
        let on_swap = move |pair: &Pair| expiry.certificate_expires(pair.not_after);
        let pair = match source {
            TlsSource::Files { cert, key } => {
                let (cert_path, key_path) = (cert.clone(), key.clone());
                Watched::load_with(
                    "--tls-cert-file/--tls-private-key-file",
                    vec![cert.clone(), key.clone()],
                    move |files| {
                        parse_pair(&files[0].1, &files[1].1, &cert_path, &key_path).map(Pair::new)
                    },
                    metrics,
                    on_swap,
                )
                .map_err(|e| {
                    TlsError::File(format!("--tls-cert-file/--tls-private-key-file {e}"))
                })?
            }
            TlsSource::SelfSigned => Watched::fixed(
                "self-signed certificate",
                Pair::new(self_signed()?),
                on_swap,
            ),
        };
        pair.spawn_reloader();
        let sni = SniPairs::load(&tls.sni, metrics)?;
        Ok(Arc::new(Self { pair, sni }))
    }

    /// Whether the certificate in force is unexpired (for /readyz).
    pub(crate) fn is_valid(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let pair = self.pair.get();
        !pair.key.cert.is_empty() && now < pair.not_after
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // rustls passes no IP address as SNI: a client that connects by address gets
        // the default pair.
        let named = hello.server_name().and_then(|name| self.sni.for_name(name));
        Some(named.unwrap_or_else(|| Arc::clone(&self.pair.get().key)))
    }
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
    use crate::tls::{acceptor, Alpn, TlsPolicy};

    #[test]
    fn self_signed_is_usable() {
        let settings = TlsSettings {
            source: TlsSource::SelfSigned,
            sni: Vec::new(),
            policy: TlsPolicy::default(),
            client_ca_file: None,
        };
        let cert = ServingCert::load(&settings, &Arc::default()).unwrap();
        assert!(cert.is_valid(), "rcgen's default validity runs to 4096");
        acceptor(&cert, &TlsPolicy::default(), Alpn::Http2AndHttp11, None).unwrap();
    }
}
