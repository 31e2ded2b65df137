//! `--tls-curve-preferences`: which key exchanges the listener accepts.
//!
//! Names are Go's `tls.CurveID` spellings, because manifests pass Go's names; the
//! numeric IDs that Kubernetes' and kube-rbac-proxy's own flag take (`29`, `4588`, …) are
//! accepted too. Unset, the listener offers what current Go offers (Go 1.26: the
//! post-quantum hybrids first, then X25519 and the NIST curves), less what the crypto
//! provider does not implement. A name that is not a key exchange is a startup error;
//! one this build cannot offer (P-521, SecP384r1MLKEM1024) is a warning, and an error
//! only when nothing usable is left.
//!
//! Who chooses among the accepted groups: rustls takes the client's order (the first
//! group the client lists that is accepted here), as Go's server follows its own fixed
//! order rather than the list's. Clients that offer a post-quantum hybrid list it first,
//! so by default they get it.
//!
//! A FIPS build (`fips::Module::Fips`) accepts only approved key exchanges: its default
//! is Go's less X25519, and a listed X25519 is a startup error, not a warning.

use std::fmt;

use rustls::{crypto::SupportedKxGroup, NamedGroup};

use super::{
    fips::{self, Module},
    provider,
};

/// Go's key exchange names and IDs (the IANA codepoints), in Go's preference order.
const GO_CURVES: &[(&str, u16)] = &[
    ("X25519MLKEM768", 0x11ec),
    ("SecP256r1MLKEM768", 0x11eb),
    ("SecP384r1MLKEM1024", 0x11ed),
    ("MLKEM1024", 0x0202),
    ("X25519", 0x001d),
    ("CurveP256", 0x0017),
    ("CurveP384", 0x0018),
    ("CurveP521", 0x0019),
];

/// What current Go enables when `CurvePreferences` is empty (`MLKEM1024` only on request).
const GO_DEFAULT: &[&str] = &[
    "X25519MLKEM768",
    "SecP256r1MLKEM768",
    "SecP384r1MLKEM1024",
    "X25519",
    "CurveP256",
    "CurveP384",
    "CurveP521",
];

/// The key exchanges a listener accepts, in the order given.
#[derive(Clone)]
pub struct Curves {
    groups: Vec<Group>,
    /// Named on the command line but not implemented by this build's provider.
    unavailable: Vec<&'static str>,
}

#[derive(Clone, Copy)]
struct Group {
    name: &'static str,
    kx: &'static dyn SupportedKxGroup,
}

impl fmt::Debug for Curves {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Curves {
    /// Validates `--tls-curve-preferences`: unknown names are errors, names the crypto
    /// provider does not implement are set aside for a warning.
    pub fn from_flag(values: &[String]) -> Result<Self, String> {
        Self::from_flag_for(Module::BUILT, values)
    }

    /// As [`Curves::from_flag`], for a build on `module`.
    pub(super) fn from_flag_for(module: Module, values: &[String]) -> Result<Self, String> {
        let values: Vec<&str> = values
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect();
        if values.is_empty() {
            return Ok(Self::defaults(module));
        }
        let mut curves = Self {
            groups: Vec::new(),
            unavailable: Vec::new(),
        };
        let (mut unknown, mut not_approved) = (Vec::new(), Vec::new());
        for value in values {
            let Some(&(name, id)) = GO_CURVES
                .iter()
                .find(|(name, id)| *name == value || value.parse() == Ok(*id))
            else {
                unknown.push(value);
                continue;
            };
            if curves.names().any(|n| n == name) || curves.unavailable.contains(&name) {
                continue;
            }
            if !approved(module, name) {
                not_approved.push(value);
                continue;
            }
            match find(name, id) {
                Some(group) => curves.groups.push(group),
                None => curves.unavailable.push(name),
            }
        }
        if !unknown.is_empty() {
            return Err(format!(
                "--tls-curve-preferences: unknown key exchange {}; use Go's names: {}",
                unknown.join(", "),
                GO_CURVES
                    .iter()
                    .map(|(name, _)| *name)
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        if !not_approved.is_empty() {
            return Err(format!(
                "--tls-curve-preferences: {} not FIPS-approved; this FIPS build accepts {}",
                not_approved.join(", ")
                    + if not_approved.len() == 1 {
                        " is"
                    } else {
                        " are"
                    },
                Self::defaults(module)
                    .names()
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        if curves.groups.is_empty() {
            return Err(format!(
                "--tls-curve-preferences: this build implements none of {}; it has {}",
                curves.unavailable.join(", "),
                Self::defaults(module)
                    .names()
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        Ok(curves)
    }

    /// Go's names of the accepted groups, in order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.groups.iter().map(|g| g.name)
    }

    /// Names given on the command line that this build cannot offer (for a warning).
    pub fn unavailable(&self) -> &[&'static str] {
        &self.unavailable
    }

    pub(super) fn kx_groups(&self) -> Vec<&'static dyn SupportedKxGroup> {
        self.groups.iter().map(|g| g.kx).collect()
    }
}

impl Default for Curves {
    /// Go's default list, less what the provider lacks (and, in a FIPS build, what is
    /// not approved).
    fn default() -> Self {
        Self::defaults(Module::BUILT)
    }
}

impl Curves {
    /// The default list of a build on `module`.
    pub(super) fn defaults(module: Module) -> Self {
        let groups = GO_DEFAULT
            .iter()
            .filter(|name| approved(module, name))
            .filter_map(|name| {
                let (name, id) = GO_CURVES.iter().find(|(n, _)| n == name)?;
                find(name, *id)
            })
            .collect();
        Self {
            groups,
            unavailable: Vec::new(),
        }
    }
}

/// Whether a build on `module` may offer the key exchange Go calls `name`.
fn approved(module: Module, name: &str) -> bool {
    module == Module::Standard || fips::APPROVED_CURVES.contains(&name)
}

/// Go's name of a group, if Go has one.
#[cfg(all(test, feature = "fips"))]
pub(super) fn go_name(group: NamedGroup) -> Option<&'static str> {
    GO_CURVES
        .iter()
        .find(|(_, id)| NamedGroup::from(*id) == group)
        .map(|(name, _)| *name)
}

/// The provider's implementation of a group: any it has, not only its defaults (which
/// leave out the NIST hybrid that Go enables).
fn find(name: &'static str, id: u16) -> Option<Group> {
    let named = NamedGroup::from(id);
    provider::ALL_KX_GROUPS
        .iter()
        .find(|kx| kx.name() == named)
        .map(|&kx| Group { name, kx })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(values: &[&str]) -> Result<Curves, String> {
        in_build(Module::Standard, values)
    }

    fn in_build(module: Module, values: &[&str]) -> Result<Curves, String> {
        let values: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        Curves::from_flag_for(module, &values)
    }

    #[test]
    fn fips_default_is_gos_without_x25519() {
        let curves = in_build(Module::Fips, &[]).unwrap();
        assert_eq!(
            curves.names().collect::<Vec<_>>(),
            [
                "X25519MLKEM768",
                "SecP256r1MLKEM768",
                "CurveP256",
                "CurveP384"
            ]
        );
    }

    #[test]
    fn fips_refuses_x25519_naming_the_flag_by_name_or_id() {
        for list in [
            &["CurveP256", "X25519"][..],
            &["29"],
            &["X25519", "CurveP384"],
        ] {
            let err = in_build(Module::Fips, list).unwrap_err();
            assert!(err.starts_with("--tls-curve-preferences: "), "{err}");
            assert!(err.contains("not FIPS-approved"), "{err}");
            assert!(
                err.contains("accepts X25519MLKEM768, SecP256r1MLKEM768, CurveP256, CurveP384"),
                "{err}"
            );
        }
        let curves = in_build(Module::Fips, &["CurveP384", "23", "X25519MLKEM768"]).unwrap();
        assert_eq!(
            curves.names().collect::<Vec<_>>(),
            ["CurveP384", "CurveP256", "X25519MLKEM768"]
        );
        // The same list is fine in the default build.
        assert!(in_build(Module::Standard, &["X25519"]).is_ok());
    }

    #[test]
    fn names_and_ids_keep_their_order() {
        let curves = flag(&["CurveP256", " X25519 ", "29", "4588"]).unwrap();
        assert_eq!(
            curves.names().collect::<Vec<_>>(),
            ["CurveP256", "X25519", "X25519MLKEM768"]
        );
        assert!(curves.unavailable().is_empty());
    }

    #[test]
    fn default_is_go_order_with_the_hybrid_first() {
        let curves = flag(&[]).unwrap();
        assert_eq!(
            curves.names().collect::<Vec<_>>(),
            [
                "X25519MLKEM768",
                "SecP256r1MLKEM768",
                "X25519",
                "CurveP256",
                "CurveP384"
            ]
        );
        assert_eq!(
            curves.kx_groups()[0].name(),
            NamedGroup::X25519MLKEM768,
            "the hybrid's codepoint is 0x11EC"
        );
    }

    #[test]
    fn unknown_names_are_errors_naming_them() {
        let err = flag(&["X25519", "P256", "secp256r1", "30"]).unwrap_err();
        assert!(
            err.contains("unknown key exchange P256, secp256r1, 30"),
            "{err}"
        );
        assert!(err.contains("CurveP256"), "{err}");
    }

    #[test]
    fn curves_this_build_lacks_are_set_aside_and_fail_only_alone() {
        let curves = flag(&["CurveP521", "X25519"]).unwrap();
        assert_eq!(curves.unavailable(), ["CurveP521"]);
        assert_eq!(curves.names().collect::<Vec<_>>(), ["X25519"]);
        let err = flag(&["CurveP521", "25"]).unwrap_err();
        assert!(err.contains("implements none of CurveP521"), "{err}");
    }
}
