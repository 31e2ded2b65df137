//! Who is calling, and where the answer about them came from: the types every stage
//! shares. A leaf: it imports nothing of ours, so anything may import it without
//! creating a cycle.

use std::{collections::BTreeMap, sync::Arc};

/// An authenticated caller, as the apiserver described it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    pub name: String,
    pub uid: String,
    /// Shared between users with the same groups (interned by the authenticator).
    pub groups: Arc<[String]>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Where an authentication or authorization answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A cached review (including requests that waited on another's review).
    Cache,
    /// A review sent now.
    Apiserver,
    /// `--token-auth-file`, `--rbac-file` or a static rule.
    Local,
    /// A recent allow reused because the apiserver could not answer (`--stale-if-error`).
    Stale,
    /// Standalone mode's default deny.
    Standalone,
    /// A client certificate verified against `--client-ca-file`.
    Certificate,
    /// An ID token verified with the `--oidc-issuer`'s keys.
    Oidc,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cache => "cache",
            Self::Apiserver => "apiserver",
            Self::Local => "local",
            Self::Stale => "stale",
            Self::Standalone => "standalone",
            Self::Certificate => "client_certificate",
            Self::Oidc => "oidc",
        }
    }
}

/// A client as the per-client limits count it: an IPv4 address (an IPv4-mapped IPv6
/// one included, as a dual-stack listener reports it), or an IPv6 /64.
///
/// A host given a /64 (the smallest prefix a SLAAC network assigns, and what a cloud
/// hands a pod or a VM) can pick any of 2^64 source addresses; keyed on the whole
/// address, it would be as many clients as it likes. Every client of one /64 shares
/// one share instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PeerKey(std::net::IpAddr);

impl PeerKey {
    pub(crate) fn of(addr: std::net::IpAddr) -> Self {
        use std::net::{IpAddr, Ipv6Addr};
        match addr.to_canonical() {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                Self(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
        }
    }
}

impl std::fmt::Display for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            std::net::IpAddr::V4(v4) => v4.fmt(f),
            std::net::IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PeerKey;

    #[test]
    fn ipv4_is_itself_mapped_or_not_and_ipv6_is_its_64() {
        let key = |s: &str| PeerKey::of(s.parse().unwrap());
        assert_eq!(key("10.0.0.1"), key("::ffff:10.0.0.1"));
        assert_ne!(key("10.0.0.1"), key("10.0.0.2"));
        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
        assert_eq!(key("::ffff:10.0.0.1").to_string(), "10.0.0.1");
    }
}
