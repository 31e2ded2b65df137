//! Front-proxy (requestheader) authentication, as k8s.io/apiserver's `headerrequest`
//! package does it: a caller whose client certificate verifies against the
//! requestheader CA (and whose CN is allowed) is a front proxy, and the user is the one
//! its request headers name.
//!
//! - the name: the first `username` header with a non-empty first value, in the
//!   configured order; without one the headers name nobody and authentication carries
//!   on (client certificate, then bearer token), as the apiserver's union does;
//! - the uid: the same rule over the `uid` headers;
//! - the groups: every non-empty value of every `group` header, in order;
//! - the extras: every header starting with an extra prefix, its remainder lowercased
//!   and %-unescaped (a malformed escape keeps the remainder as it is), every value.
//!
//! Header names are compared case-insensitively (hyper already lowercases them). The
//! headers are removed from every request before it is forwarded, honoured or not,
//! with the apiserver's standard `X-Remote-User`, `-Uid`, `-Group` and `-Extra-*`
//! (`FrontProxy::strip`): the upstream never sees a name a client made up. The
//! configuration comes from the `--requestheader-*` flags or from the cluster lookup
//! (`authn::lookup`), which may change it while the proxy runs; each request reads the
//! one in force.

use std::sync::{Arc, RwLock};

use http::HeaderMap;

use crate::{identity::User, tls::CaBundle};

/// The group every authenticated user is in (k8s.io/apiserver's `AuthenticatedGroupAdder`).
const AUTHENTICATED: &str = "system:authenticated";

/// Which headers name the user, and which certificates may set them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHeaders {
    /// `--requestheader-username-headers`.
    pub username: Vec<String>,
    /// `--requestheader-uid-headers`.
    pub uid: Vec<String>,
    /// `--requestheader-group-headers`.
    pub group: Vec<String>,
    /// `--requestheader-extra-headers-prefix`.
    pub extra_prefixes: Vec<String>,
    /// `--requestheader-allowed-names`: the CNs a front proxy's certificate may have;
    /// empty allows any certificate the requestheader CA verifies.
    pub allowed_names: Vec<String>,
}

// === impl RequestHeaders ===

impl RequestHeaders {
    /// k8s.io/apiserver's flag defaults: `x-remote-user`, `x-remote-group`,
    /// `x-remote-extra-`; no uid header, any CN.
    pub fn flag_defaults() -> Self {
        Self {
            username: vec!["x-remote-user".into()],
            uid: Vec::new(),
            group: vec!["x-remote-group".into()],
            extra_prefixes: vec!["x-remote-extra-".into()],
            allowed_names: Vec::new(),
        }
    }

    /// Trims every name (k8s.io/apiserver does), lowercases the header names (ours
    /// are compared lowercase) and drops empty ones.
    pub(crate) fn normalized(mut self) -> Self {
        for list in [
            &mut self.username,
            &mut self.uid,
            &mut self.group,
            &mut self.extra_prefixes,
        ] {
            *list = list
                .iter()
                .map(|name| name.trim().to_ascii_lowercase())
                .filter(|name| !name.is_empty())
                .collect();
        }
        self.allowed_names = self
            .allowed_names
            .iter()
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .collect();
        self
    }

    /// Whether a front proxy with this CN may name users.
    pub(crate) fn allows(&self, common_name: &str) -> bool {
        self.allowed_names.is_empty() || self.allowed_names.iter().any(|n| n == common_name)
    }

    /// The user the headers name, `None` without a username.
    pub(crate) fn user(&self, headers: &HeaderMap) -> Option<User> {
        let name = first_value(headers, &self.username)?;
        let uid = first_value(headers, &self.uid).unwrap_or_default();
        let mut groups: Vec<String> = self
            .group
            .iter()
            .flat_map(|header| headers.get_all(header.as_str()))
            .filter_map(|value| std::str::from_utf8(value.as_bytes()).ok())
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
            .collect();
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.into());
        }
        let mut extra = std::collections::BTreeMap::<String, Vec<String>>::new();
        for prefix in &self.extra_prefixes {
            for (header, value) in headers {
                let Some(rest) = header.as_str().strip_prefix(prefix.as_str()) else {
                    continue;
                };
                let Ok(value) = std::str::from_utf8(value.as_bytes()) else {
                    continue;
                };
                extra
                    .entry(unescape(rest))
                    .or_default()
                    .push(value.to_owned());
            }
        }
        Some(User {
            name,
            uid,
            groups: groups.into(),
            extra,
        })
    }

    /// Removes every header these settings read.
    pub(crate) fn strip(&self, headers: &mut HeaderMap) {
        for name in self.username.iter().chain(&self.uid).chain(&self.group) {
            headers.remove(name.as_str());
        }
        if self.extra_prefixes.is_empty() {
            return;
        }
        let extras: Vec<http::HeaderName> = headers
            .keys()
            .filter(|name| {
                self.extra_prefixes
                    .iter()
                    .any(|prefix| name.as_str().starts_with(prefix.as_str()))
            })
            .cloned()
            .collect();
        for name in extras {
            headers.remove(name);
        }
    }
}

/// The first header of `names` whose first value is non-empty (Go's `Header.Get`).
fn first_value(headers: &HeaderMap, names: &[String]) -> Option<String> {
    names.iter().find_map(|name| {
        let value = headers.get(name.as_str())?;
        let value = std::str::from_utf8(value.as_bytes()).ok()?;
        (!value.is_empty()).then(|| value.to_owned())
    })
}

/// Go's `url.PathUnescape`: `%XX` decoded; a malformed escape (or bytes that are not
/// UTF-8) keeps the key as it was, as k8s.io/apiserver records it.
fn unescape(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let digit = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        let (Some(high), Some(low)) = (digit(i + 1), digit(i + 2)) else {
            return key.to_owned();
        };
        // Two hex digits: at most 0xff.
        out.push((high * 16 + low) as u8);
        i += 3;
    }
    String::from_utf8(out).unwrap_or_else(|_| key.to_owned())
}

/// Front-proxy authentication in force: the requestheader CA and the header settings,
/// both replaced as the cluster lookup reads new ones (flags: fixed names, a watched
/// CA file).
#[derive(Debug)]
pub(crate) struct FrontProxy {
    ca: Arc<CaBundle>,
    headers: RwLock<Arc<RequestHeaders>>,
}

// === impl FrontProxy ===

impl FrontProxy {
    pub(crate) fn new(ca: Arc<CaBundle>, headers: RequestHeaders) -> Arc<Self> {
        Arc::new(Self {
            ca,
            headers: RwLock::new(Arc::new(headers.normalized())),
        })
    }

    /// The requestheader CA, for the listeners' handshakes.
    pub(crate) fn ca(&self) -> &Arc<CaBundle> {
        &self.ca
    }

    /// The header settings in force.
    pub(crate) fn headers(&self) -> Arc<RequestHeaders> {
        Arc::clone(&self.headers.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts new header settings in force (the lookup read them).
    pub(crate) fn set_headers(&self, headers: RequestHeaders) {
        *self.headers.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(headers.normalized());
    }

    /// The user a front proxy's headers name: `front_proxy` is the CN of a certificate
    /// the requestheader CA verified. `None` if the CN is not allowed or no username
    /// header is set; the caller then authenticates as if the headers were not there.
    pub(crate) fn user(&self, front_proxy: &str, headers: &HeaderMap) -> Option<User> {
        let settings = self.headers();
        if !settings.allows(front_proxy) {
            tracing::debug!(cn = %crate::logging::cut(front_proxy), "front proxy's certificate CN is not in the allowed names; its headers are ignored");
            return None;
        }
        settings.user(headers)
    }

    /// Removes the headers in force, and the apiserver's standard ones, from a request
    /// about to be forwarded. The standard ones too: while the lookup has found nothing
    /// no names are in force, and the cluster may name them at any moment.
    pub(crate) fn strip(&self, headers: &mut HeaderMap) {
        static STANDARD: std::sync::LazyLock<RequestHeaders> =
            std::sync::LazyLock::new(|| RequestHeaders {
                uid: vec!["x-remote-uid".into()],
                ..RequestHeaders::flag_defaults()
            });
        self.headers().strip(headers);
        STANDARD.strip(headers);
    }
}

#[cfg(test)]
mod tests;
