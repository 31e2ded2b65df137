//! `--tls-min-version`, `--tls-cipher-suites` and `--tls-curve-preferences`, resolved to
//! rustls terms.
//!
//! Cipher suite names are Go's, because manifests pass Go's names. As in Go, the list
//! restricts TLS 1.2 only; TLS 1.3 suites are always on. A name rustls cannot serve
//! (CBC, static RSA, 3DES, RC4) is a startup error naming it, never silently dropped.

use std::fmt;

use rustls::{crypto::CryptoProvider, SupportedCipherSuite};

use super::{provider, Curves};

/// `--tls-min-version`, `--tls-cipher-suites` and `--tls-curve-preferences`, resolved to
/// rustls terms.
#[derive(Clone)]
pub struct TlsPolicy {
    tls13_only: bool,
    tls12_suites: Vec<SupportedCipherSuite>,
    curves: Curves,
}

impl fmt::Debug for TlsPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self
            .cipher_suites()
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        f.debug_struct("TlsPolicy")
            .field("min_version", &if self.tls13_only { "1.3" } else { "1.2" })
            .field("cipher_suites", &names)
            .field("curves", &self.curves)
            .finish()
    }
}

impl Default for TlsPolicy {
    fn default() -> Self {
        Self {
            tls13_only: false,
            tls12_suites: provider::DEFAULT_CIPHER_SUITES
                .iter()
                .filter(|s| s.version() == &rustls::version::TLS12)
                .copied()
                .collect(),
            curves: Curves::default(),
        }
    }
}

impl TlsPolicy {
    /// Validates the flags, naming any version or suite that cannot be served.
    pub fn from_flags(min_version: &str, suites: &[String]) -> Result<Self, String> {
        let mut problems = Vec::new();
        let tls13_only = match min_version {
            "VersionTLS12" => false,
            "VersionTLS13" => true,
            "VersionTLS10" | "VersionTLS11" => {
                problems.push(format!(
                    "--tls-min-version {min_version} is not supported (TLS 1.0/1.1 are \
                     insecure); use VersionTLS12 or VersionTLS13"
                ));
                false
            }
            other => {
                problems.push(format!(
                    "--tls-min-version {other:?} is unknown; use VersionTLS12 or VersionTLS13"
                ));
                false
            }
        };
        let mut policy = Self {
            tls13_only,
            ..Self::default()
        };
        let names: Vec<&str> = suites
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect();
        if !names.is_empty() {
            policy.tls12_suites.clear();
        }
        for name in names {
            match go_cipher_suite(name) {
                GoSuite::Tls12(suite) => {
                    if !policy
                        .tls12_suites
                        .iter()
                        .any(|s| s.suite() == suite.suite())
                    {
                        policy.tls12_suites.push(suite);
                    }
                }
                GoSuite::Tls13 => {}
                GoSuite::Insecure => problems.push(format!(
                    "--tls-cipher-suites: {name} is not supported (CBC, static-RSA, 3DES \
                     and RC4 suites are insecure; use the ECDHE GCM/CHACHA20 suites)"
                )),
                GoSuite::Unknown => {
                    problems.push(format!("--tls-cipher-suites: unknown cipher suite {name}"))
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("\n  - "));
        }
        Ok(policy)
    }

    /// The policy with these key exchanges (`--tls-curve-preferences`).
    pub fn with_curves(self, curves: Curves) -> Self {
        Self { curves, ..self }
    }

    /// The key exchanges accepted, and those asked for that this build lacks.
    pub fn curves(&self) -> &Curves {
        &self.curves
    }

    /// All suites offered: every TLS 1.3 suite, then the chosen TLS 1.2 ones.
    pub fn cipher_suites(&self) -> Vec<SupportedCipherSuite> {
        let tls13 = provider::DEFAULT_CIPHER_SUITES
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .copied();
        let tls12 = self.tls12_suites.iter().copied();
        if self.tls13_only {
            tls13.collect()
        } else {
            tls13.chain(tls12).collect()
        }
    }

    pub(super) fn crypto_provider(&self) -> CryptoProvider {
        CryptoProvider {
            cipher_suites: self.cipher_suites(),
            kx_groups: self.curves.kx_groups(),
            ..provider::default_provider()
        }
    }

    pub(super) fn versions(&self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        static TLS12_UP: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        if self.tls13_only {
            &TLS13_ONLY
        } else {
            &TLS12_UP
        }
    }
}

enum GoSuite {
    Tls12(SupportedCipherSuite),
    Tls13,
    Insecure,
    Unknown,
}

/// Maps Go's `tls.CipherSuiteName` spellings (and its legacy aliases) to rustls.
fn go_cipher_suite(name: &str) -> GoSuite {
    use provider::cipher_suite as cs;
    match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => {
            GoSuite::Tls12(cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
        }
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => {
            GoSuite::Tls12(cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
        }
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            GoSuite::Tls12(cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => {
            GoSuite::Tls12(cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
        }
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => {
            GoSuite::Tls12(cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)
        }
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            GoSuite::Tls12(cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256)
        }
        "TLS_AES_128_GCM_SHA256" | "TLS_AES_256_GCM_SHA384" | "TLS_CHACHA20_POLY1305_SHA256" => {
            GoSuite::Tls13
        }
        "TLS_RSA_WITH_RC4_128_SHA"
        | "TLS_RSA_WITH_3DES_EDE_CBC_SHA"
        | "TLS_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_RSA_WITH_AES_256_CBC_SHA"
        | "TLS_RSA_WITH_AES_128_CBC_SHA256"
        | "TLS_RSA_WITH_AES_128_GCM_SHA256"
        | "TLS_RSA_WITH_AES_256_GCM_SHA384"
        | "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_RC4_128_SHA"
        | "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"
        | "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256" => GoSuite::Insecure,
        _ => GoSuite::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_prometheus_suites_are_all_served() {
        let names = [
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        ]
        .map(String::from);
        let policy = TlsPolicy::from_flags("VersionTLS12", &names).unwrap();
        assert_eq!(policy.tls12_suites.len(), 6);
        assert_eq!(policy.cipher_suites().len(), 9);
    }

    #[test]
    fn unservable_and_unknown_names_are_named() {
        let names = ["TLS_RSA_WITH_AES_128_CBC_SHA", "TLS_MADE_UP"].map(String::from);
        let err = TlsPolicy::from_flags("VersionTLS12", &names).unwrap_err();
        assert!(
            err.contains("TLS_RSA_WITH_AES_128_CBC_SHA is not supported"),
            "{err}"
        );
        assert!(err.contains("unknown cipher suite TLS_MADE_UP"), "{err}");
    }

    #[test]
    fn tls13_minimum_offers_only_tls13() {
        let policy = TlsPolicy::from_flags("VersionTLS13", &[]).unwrap();
        assert!(policy
            .cipher_suites()
            .iter()
            .all(|s| s.version() == &rustls::version::TLS13));
        assert!(TlsPolicy::from_flags("VersionTLS11", &[]).is_err());
        assert!(TlsPolicy::from_flags("tls1.2", &[]).is_err());
    }
}
