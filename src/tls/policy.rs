//! `--tls-min-version`, `--tls-cipher-suites` and `--tls-curve-preferences`, resolved to
//! rustls terms.
//!
//! Cipher suite names are Go's, because manifests pass Go's names. As in Go, the list
//! restricts TLS 1.2 only; TLS 1.3 suites are always on. Go serves the list it is given,
//! and installers pass lists with suites rustls does not implement (MetalLB's CBC
//! suites, OpenShift's "Old" profile with TLS 1.0): those are left out with one warning
//! naming them, never silently. Only a list of which nothing can be served, and names
//! Go does not know either, stop the start.
//!
//! The server picks the suite, as Go's does (`crypto/tls`, `defaults.go`): AES-128-GCM,
//! then AES-256-GCM, then ChaCha20-Poly1305 when this CPU has AES-GCM instructions,
//! ChaCha20 first when it does not; the order of `--tls-cipher-suites` is ignored, as
//! in Go. (Go also puts ChaCha20 first for a client that prefers it; rustls has no hook
//! for that, so such a client is served AES-GCM.)
//!
//! A FIPS build (`fips::Module::Fips`) serves approved suites only: the AES-GCM ones.
//! Unlike the default build, which warns about a listed suite it cannot serve and serves
//! the rest, it refuses to start with a listed suite that is not approved (ChaCha20,
//! CBC, static RSA): an auditor reads the flag as what is served.

use std::fmt;

use rustls::{crypto::CryptoProvider, SupportedCipherSuite};

use super::{
    fips::{self, Module},
    provider, Curves,
};

/// `--tls-min-version`, `--tls-cipher-suites` and `--tls-curve-preferences`, resolved to
/// rustls terms.
#[derive(Clone)]
pub struct TlsPolicy {
    module: Module,
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
        Self::defaults(Module::BUILT)
    }
}

/// Every suite a build on `module` may offer for `version`, in rustls' order.
fn suites(
    module: Module,
    version: &'static rustls::SupportedProtocolVersion,
) -> impl Iterator<Item = SupportedCipherSuite> {
    provider::ALL_CIPHER_SUITES
        .iter()
        .filter(move |s| s.version() == version)
        .filter(move |s| module == Module::Standard || fips::approved_suite(s.suite()))
        .copied()
}

impl TlsPolicy {
    /// Resolves the flags as Go would serve them, within what rustls implements: what
    /// Go would serve and rustls cannot (TLS 1.0/1.1, CBC and static-RSA suites) is left
    /// out with one warning in `warnings`, naming it. An error names what Go refuses too
    /// (an unknown version or suite name) and a suite list of which nothing can be served.
    pub fn from_flags(
        min_version: &str,
        suites: &[String],
        warnings: &mut Vec<String>,
    ) -> Result<Self, String> {
        Self::from_flags_for(Module::BUILT, min_version, suites, warnings)
    }

    fn defaults(module: Module) -> Self {
        Self {
            module,
            tls13_only: false,
            tls12_suites: suites(module, &rustls::version::TLS12).collect(),
            curves: Curves::defaults(module),
        }
    }

    /// As [`TlsPolicy::from_flags`], for a build on `module`.
    pub(super) fn from_flags_for(
        module: Module,
        min_version: &str,
        suites: &[String],
        warnings: &mut Vec<String>,
    ) -> Result<Self, String> {
        let mut problems = Vec::new();
        let tls13_only = match min_version {
            "" | "VersionTLS12" => false,
            "VersionTLS13" => true,
            "VersionTLS10" | "VersionTLS11" => {
                warnings.push(format!(
                    "--tls-min-version {min_version}: TLS 1.0 and 1.1 are not implemented by \
                     rustls; serving TLS 1.2 and 1.3 only (a client that cannot speak TLS 1.2 \
                     cannot connect)"
                ));
                false
            }
            other => {
                problems.push(format!(
                    "--tls-min-version {other:?} is unknown; use VersionTLS12 or VersionTLS13 \
                     (Go's names)"
                ));
                false
            }
        };
        let mut policy = Self {
            tls13_only,
            ..Self::defaults(module)
        };
        let names: Vec<&str> = suites
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect();
        if names.is_empty() {
            return finish(policy, problems);
        }
        policy.tls12_suites.clear();
        let (mut tls13_listed, mut not_offered) = (false, Vec::new());
        let (names, refused): (Vec<&str>, Vec<&str>) = names.into_iter().partition(|name| {
            module == Module::Standard
                || matches!(go_cipher_suite(name), GoSuite::Unknown)
                || fips_approved(name)
        });
        if !refused.is_empty() {
            problems.push(format!(
                "--tls-cipher-suites: {} not FIPS-approved; this FIPS build serves {}",
                refused.join(", ") + if refused.len() == 1 { " is" } else { " are" },
                approved_names().join(", "),
            ));
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
                GoSuite::Tls13 => tls13_listed = true,
                GoSuite::Insecure => not_offered.push(name),
                GoSuite::Unknown => problems.push(unknown_suite(name)),
            }
        }
        let why = "CBC, static-RSA, 3DES and RC4 suites are not implemented by rustls";
        let usable = !policy.tls12_suites.is_empty() || tls13_listed;
        if !usable && !tls13_only && !not_offered.is_empty() {
            let names: Vec<String> = not_offered
                .iter()
                .map(|n| format!("{n} is not supported"))
                .collect();
            problems.push(format!(
                "--tls-cipher-suites: no listed suite can be served ({}; {why}); add one of the \
                 ECDHE GCM or CHACHA20 suites",
                names.join(", ")
            ));
        } else if !not_offered.is_empty() {
            warnings.push(format!(
                "--tls-cipher-suites: not offering {} ({why}); serving the other listed suites",
                not_offered.join(", ")
            ));
        }
        if usable && policy.tls12_suites.is_empty() && !tls13_only {
            warnings.push(
                "--tls-cipher-suites lists only TLS 1.3 suites: TLS 1.2 clients cannot connect \
                 (as with Go)"
                    .to_owned(),
            );
        }
        finish(policy, problems)
    }

    /// The policy with these key exchanges (`--tls-curve-preferences`).
    pub fn with_curves(self, curves: Curves) -> Self {
        Self { curves, ..self }
    }

    /// The key exchanges accepted, and those asked for that this build lacks.
    pub fn curves(&self) -> &Curves {
        &self.curves
    }

    /// All suites offered, in the order the server prefers them (Go's): every TLS 1.3
    /// suite, then the chosen TLS 1.2 ones.
    pub fn cipher_suites(&self) -> Vec<SupportedCipherSuite> {
        let mut tls13: Vec<_> = suites(self.module, &rustls::version::TLS13).collect();
        let mut tls12 = self.tls12_suites.clone();
        let aes = aes_gcm_hardware();
        tls13.sort_by_key(|s| go_preference(s, aes));
        tls12.sort_by_key(|s| go_preference(s, aes));
        if !self.tls13_only {
            tls13.extend(tls12);
        }
        tls13
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

/// Where Go's server puts a suite (lower first): by bulk cipher, AES-128-GCM first
/// with AES-GCM hardware, ChaCha20-Poly1305 first without.
fn go_preference(suite: &SupportedCipherSuite, aes_hardware: bool) -> u8 {
    use rustls::CipherSuite as S;
    let rank = match suite.suite() {
        S::TLS13_AES_128_GCM_SHA256
        | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        S::TLS13_AES_256_GCM_SHA384
        | S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 1,
        S::TLS13_CHACHA20_POLY1305_SHA256
        | S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        | S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => 2,
        _ => 3,
    };
    match (aes_hardware, rank) {
        (false, 2) => 0,
        (false, 0 | 1) => rank + 1,
        _ => rank,
    }
}

/// Go's `hasAESGCMHardwareSupport`: AES and carry-less multiply instructions.
pub(crate) fn aes_gcm_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Whether a FIPS build serves the suite Go calls `name`.
fn fips_approved(name: &str) -> bool {
    match go_cipher_suite(name) {
        GoSuite::Tls12(suite) => fips::approved_suite(suite.suite()),
        GoSuite::Tls13 => fips::APPROVED_TLS13_SUITES.contains(&name),
        GoSuite::Insecure | GoSuite::Unknown => false,
    }
}

/// Go's names of the suites a FIPS build serves, for its error message.
fn approved_names() -> Vec<&'static str> {
    let mut names = fips::APPROVED_TLS13_SUITES.to_vec();
    names.extend(GO_TLS12_GCM);
    names
}

/// Go's names of the TLS 1.2 AES-GCM suites.
const GO_TLS12_GCM: [&str; 4] = [
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
];

fn finish(policy: TlsPolicy, problems: Vec<String>) -> Result<TlsPolicy, String> {
    if problems.is_empty() {
        Ok(policy)
    } else {
        Err(problems.join("\n  - "))
    }
}

fn unknown_suite(name: &str) -> String {
    if !name.starts_with("TLS_") && name.contains('-') {
        format!(
            "--tls-cipher-suites: unknown cipher suite {name} (an OpenSSL name? Go's names are \
             like TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)"
        )
    } else {
        format!("--tls-cipher-suites: unknown cipher suite {name}")
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
mod tests;
