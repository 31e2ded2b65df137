//! `--tls-sni-cert-key`: more serving pairs, each chosen by the name a client asks for
//! (SNI), as k8s.io/apiserver chooses them (`dynamiccertificates/named_certificates.go`
//! and Go's `tls.Config.getCertificate`).
//!
//! A pair answers to the names given after its files (`cert,key:a.example,*.b.example`),
//! or else to its certificate's names: the subject CN when it is a DNS name (not an IP
//! address) and every DNS subjectAltName. IP subjectAltNames are never a pair's names:
//! a client does not send an IP address as SNI. A name asked for is matched exactly,
//! then with its first label replaced by `*` (`*.example.com` answers for
//! `a.example.com`, not for `example.com` nor `a.b.example.com`); at each of these two
//! steps names given on the flag win over a certificate's, and among those an earlier
//! flag wins over a later one. Nothing matching, or no SNI at all, is the default
//! certificate's. Names are compared without regard to ASCII case.
//!
//! Each pair is re-read like the default pair (`reload::Watched`): a broken new version
//! is logged and the last good one keeps serving.

use std::sync::Arc;

use rustls::sign::CertifiedKey;

use super::{pem::parse_pair, SniCertKey, TlsError};
use crate::{metrics::Metrics, reload::Watched};

/// Which names a pair answers to, and whether they were given on the flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Names {
    /// Lower case; a wildcard is written `*.rest`.
    names: Vec<String>,
    given: bool,
}

impl Names {
    /// The names given on the flag.
    fn given(names: &[String]) -> Self {
        Self {
            names: names.iter().map(|n| n.to_ascii_lowercase()).collect(),
            given: true,
        }
    }

    /// The certificate's own names: its CN if that is a DNS name, and its DNS
    /// subjectAltNames (k8s.io/apiserver's `getCertificateNames`).
    fn of_certificate(der: &[u8]) -> Self {
        let mut names = Vec::new();
        if let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) {
            // Go keeps the last CN of the subject.
            let cn = cert
                .subject()
                .iter_common_name()
                .last()
                .and_then(|cn| cn.as_str().ok());
            if let Some(cn) = cn.filter(|cn| cn_is_a_name(cn)) {
                names.push(cn.to_owned());
            }
            if let Ok(Some(san)) = cert.subject_alternative_name() {
                for name in &san.value.general_names {
                    if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                        names.push((*dns).to_owned());
                    }
                }
            }
        }
        Self {
            names: names.iter().map(|n| n.to_ascii_lowercase()).collect(),
            given: false,
        }
    }

    fn contains(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }
}

/// Whether a subject CN is one of the certificate's names: `*`, or a DNS-1123 subdomain
/// after an optional `*.`, and not an IP address.
fn cn_is_a_name(cn: &str) -> bool {
    if cn == "*" {
        return true;
    }
    if cn.parse::<std::net::IpAddr>().is_ok() || is_sloppy_ipv4(cn) {
        return false;
    }
    let name = cn.strip_prefix("*.").unwrap_or(cn);
    let label = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    name.len() <= 253 && name.split('.').all(label)
}

/// An IPv4 address with leading zeros (`010.0.0.1`), which Go's `ParseIPSloppy` takes.
fn is_sloppy_ipv4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.parse::<u8>().is_ok())
}

/// The pair among `pairs` (in flag order) that answers to `server_name`, if any.
pub(super) fn select<'a>(
    server_name: &str,
    pairs: impl Iterator<Item = &'a Names> + Clone,
) -> Option<usize> {
    let name = server_name.to_ascii_lowercase();
    let wildcard = match name.split_once('.') {
        Some((_, rest)) => format!("*.{rest}"),
        None => "*".to_owned(),
    };
    for wanted in [name, wildcard] {
        for given in [true, false] {
            let found = pairs
                .clone()
                .position(|names| names.given == given && names.contains(&wanted));
            if found.is_some() {
                return found;
            }
        }
    }
    None
}

/// A pair in force: its key and the names it answers to.
#[derive(Debug)]
pub(super) struct Named {
    pub(super) key: Arc<CertifiedKey>,
    names: Names,
}

/// Every `--tls-sni-cert-key` pair of a listener, each reloaded on its own.
#[derive(Debug, Default)]
pub(super) struct SniPairs(Vec<Arc<Watched<Named>>>);

impl SniPairs {
    /// Loads every pair, failing with the flag, its value and the file.
    pub(super) fn load(pairs: &[SniCertKey], metrics: &Arc<Metrics>) -> Result<Self, TlsError> {
        let mut loaded = Vec::with_capacity(pairs.len());
        for pair in pairs {
            let (cert, key) = (pair.cert.clone(), pair.key.clone());
            let given = (!pair.names.is_empty()).then(|| Names::given(&pair.names));
            let watched = Watched::load(
                "--tls-sni-cert-key",
                vec![cert.clone(), key.clone()],
                move |files| {
                    let key = parse_pair(&files[0].1, &files[1].1, &cert, &key)?;
                    let names = match &given {
                        Some(names) => names.clone(),
                        None => Names::of_certificate(key.cert[0].as_ref()),
                    };
                    Ok(Named {
                        key: Arc::new(key),
                        names,
                    })
                },
                metrics,
            )
            .map_err(|e| TlsError::File(format!("--tls-sni-cert-key {pair}: {e}")))?;
            if watched.get().names.names.is_empty() {
                tracing::warn!(
                    "--tls-sni-cert-key {pair}: the certificate has no DNS name (subject CN or \
                     subjectAltName) and no names are given after the files: it is never served"
                );
            }
            watched.spawn_reloader();
            loaded.push(watched);
        }
        Ok(Self(loaded))
    }

    /// The pair for the name the client asked for, if one answers to it.
    pub(super) fn for_name(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        let current: Vec<Arc<Named>> = self.0.iter().map(|w| w.get()).collect();
        let index = select(server_name, current.iter().map(|n| &n.names))?;
        Some(Arc::clone(&current[index].key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(names: &[&str]) -> Names {
        Names::given(&names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
    }

    fn extracted(names: &[&str]) -> Names {
        Names {
            names: names.iter().map(|n| n.to_ascii_lowercase()).collect(),
            given: false,
        }
    }

    #[test]
    fn selection_follows_the_apiservers_rules() {
        let pairs = [
            extracted(&["a.example.com", "*.example.com"]), // 0
            given(&["b.example.com"]),                      // 1
            extracted(&["b.example.com", "c.example.com"]), // 2
            given(&["*.wild.test", "C.Example.Com"]),       // 3
            extracted(&["x.wild.test"]),                    // 4
            given(&["*"]),                                  // 5
        ];
        let pick = |name: &str| select(name, pairs.iter());
        let table = [
            // Exact, from the certificate.
            ("a.example.com", Some(0)),
            // Given on the flag beats the certificate's own, whatever the order.
            ("b.example.com", Some(1)),
            ("c.example.com", Some(3)),
            // An exact match beats a wildcard, even a given one.
            ("x.wild.test", Some(4)),
            // One label only.
            ("y.wild.test", Some(3)),
            ("z.y.wild.test", None),
            ("wild.test", None),
            ("d.example.com", Some(0)),
            // Case does not matter on either side.
            ("A.EXAMPLE.com", Some(0)),
            ("c.example.COM", Some(3)),
            // `*` answers for a single-label name, as in Go.
            ("localhost", Some(5)),
            ("nothing.here", None),
        ];
        for (name, want) in table {
            assert_eq!(pick(name), want, "{name}");
        }
    }

    #[test]
    fn an_earlier_pair_wins_a_name_both_have() {
        let pairs = [
            extracted(&["x.test"]),
            given(&["a.test"]),
            given(&["a.test"]),
        ];
        assert_eq!(select("a.test", pairs.iter()), Some(1));
        let both = [extracted(&["a.test"]), extracted(&["a.test"])];
        assert_eq!(select("a.test", both.iter()), Some(0));
    }

    #[test]
    fn a_certificates_names_are_its_dns_names_and_cn_never_an_ip() {
        let names = |cn: &str, sans: &[&str]| {
            let mut params = rcgen::CertificateParams::new(
                sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
            )
            .unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            Names::of_certificate(cert.der()).names
        };
        assert_eq!(
            names("svc.ns.svc", &["a.test", "127.0.0.1", "*.b.test"]),
            ["svc.ns.svc", "a.test", "*.b.test"]
        );
        assert_eq!(names("10.0.0.1", &["a.test"]), ["a.test"]);
        assert_eq!(names("010.0.0.1", &[]), Vec::<String>::new());
        assert_eq!(names("My Service", &["A.Test"]), ["a.test"]);
        assert_eq!(names("*.wild.test", &[]), ["*.wild.test"]);
    }
}
