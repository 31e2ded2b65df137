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
        }
    }
}
