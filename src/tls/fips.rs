//! The FIPS build (`cargo build --features fips`; docs/fips.md): what it may offer, and
//! the startup check that every TLS configuration is in FIPS mode.
//!
//! The approved sets are written out here rather than read from rustls' `fips()`
//! methods, for two reasons: the default build has to be able to check the FIPS policy
//! (its tests run without the FIPS module, where every `fips()` is false), and an
//! auditor reads one list. The FIPS build's own tests check the lists against rustls'
//! `fips()` on the module itself, so the two cannot drift apart.
//!
//! Approved key exchanges: P-256 and P-384 (SP 800-56A ECDH), ML-KEM (FIPS 203), and
//! the hybrids whose first share is approved (SP 800-56C rev. 2, section 2: Z' = Z || T
//! with Z from an approved scheme): X25519MLKEM768 (ML-KEM first) and
//! SecP256r1MLKEM768 (P-256 first). X25519 alone is not approved. Approved suites:
//! AES-GCM with ECDHE (TLS 1.2, where rustls also requires the extended master secret)
//! and the TLS 1.3 AES-GCM suites; ChaCha20-Poly1305 is not approved.

use rustls::CipherSuite;

/// Which crypto module this binary was built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Module {
    /// aws-lc-rs on AWS-LC: every group and suite rustls implements.
    Standard,
    /// aws-lc-rs on the AWS-LC FIPS module: approved groups and suites only, and a
    /// startup that refuses any TLS configuration rustls does not call FIPS.
    Fips,
}

impl Module {
    /// This binary's module (the `fips` cargo feature).
    pub(crate) const BUILT: Self = if cfg!(feature = "fips") {
        Self::Fips
    } else {
        Self::Standard
    };

    /// For the startup line.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::Standard => "aws-lc-rs",
            Self::Fips => {
                "FIPS (aws-lc-rs on the AWS-LC FIPS module; approved groups and suites only)"
            }
        }
    }
}

/// Go's names of the key exchanges a FIPS build may offer.
pub(super) const APPROVED_CURVES: &[&str] = &[
    "X25519MLKEM768",
    "SecP256r1MLKEM768",
    "SecP384r1MLKEM1024",
    "MLKEM1024",
    "CurveP256",
    "CurveP384",
    "CurveP521",
];

/// Go's names of the TLS 1.3 suites a FIPS build serves (TLS 1.3 suites cannot be
/// turned off one by one, so only these are ever offered).
pub(super) const APPROVED_TLS13_SUITES: &[&str] =
    &["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"];

/// Whether a FIPS build may offer this suite.
pub(super) fn approved_suite(suite: CipherSuite) -> bool {
    use CipherSuite as S;
    matches!(
        suite,
        S::TLS13_AES_128_GCM_SHA256
            | S::TLS13_AES_256_GCM_SHA384
            | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            | S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
    )
}

/// A TLS configuration that rustls does not call FIPS, in a FIPS build.
#[derive(Debug, thiserror::Error)]
#[error(
    "FIPS build: {0} is not in FIPS mode (rustls' fips() is false: the FIPS module did not \
     initialise, or a group, suite or setting outside the approved set is configured); \
     refusing to start"
)]
pub struct NotFips(pub &'static str);

/// In a FIPS build, refuses `what` (a listener, the apiserver client, …) unless its
/// rustls configuration says `fips()`; in the default build, accepts it.
pub(crate) fn require(what: &'static str, fips: bool) -> Result<(), NotFips> {
    match (Module::BUILT, fips) {
        (Module::Fips, false) => Err(NotFips(what)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chacha_and_cbc_are_not_approved() {
        use CipherSuite as S;
        for suite in [
            S::TLS13_CHACHA20_POLY1305_SHA256,
            S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            S::TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
        ] {
            assert!(!approved_suite(suite), "{suite:?}");
        }
        assert!(approved_suite(S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384));
        assert!(!APPROVED_CURVES.contains(&"X25519"));
    }

    #[test]
    fn require_refuses_only_in_a_fips_build() {
        assert!(require("the test", true).is_ok());
        let refused = require("the test", false);
        assert_eq!(refused.is_err(), cfg!(feature = "fips"));
        if let Err(error) = refused {
            assert!(
                error.to_string().contains("the test is not in FIPS mode"),
                "{error}"
            );
        }
    }

    /// The lists above agree with rustls' own judgement on the module this binary has.
    #[cfg(feature = "fips")]
    #[test]
    fn the_lists_agree_with_rustls_on_the_fips_module() {
        use super::super::provider;
        assert!(
            aws_lc_rs::try_fips_mode().is_ok(),
            "the FIPS module is in FIPS mode"
        );
        for suite in provider::ALL_CIPHER_SUITES {
            assert_eq!(
                suite.fips(),
                approved_suite(suite.suite()),
                "{:?}",
                suite.suite()
            );
        }
        for kx in provider::ALL_KX_GROUPS {
            let name = super::super::curves::go_name(kx.name());
            let approved = name.is_some_and(|n| APPROVED_CURVES.contains(&n));
            // MLKEM768 alone has no Go name; rustls approves it (ML-KEM, FIPS 203).
            let approved = approved || kx.name() == rustls::NamedGroup::MLKEM768;
            assert_eq!(kx.fips(), approved, "{:?} ({name:?})", kx.name());
        }
    }
}
