//! Routing by path: which upstream (and whose authorization) a request is for, chosen
//! before anyone is authenticated.
//!
//! Deckhouse's fork of kube-rbac-proxy serves several upstreams behind one port from
//! its config's `upstreams:` list, each registered on a Go `http.ServeMux` under its
//! `path`; `--livez-path` is registered on the same mux. This module is that mux for
//! literal patterns: a pattern ending in `/` is a subtree, any other is one exact path,
//! the longest matching pattern wins, and nothing matching is 404. ServeMux's two
//! redirects are kept (301, before authentication, nothing forwarded): an unclean path
//! (`//metrics`) to its clean form, and a subtree's root without its slash (`/main`) to
//! `/main/`. Dot segments and encoded dots and slashes never get here: the guard
//! refuses them with 400 first, where ServeMux would redirect.
//!
//! Patterns match the path as the client sent it, percent-encoding and all. Go matches
//! the decoded path, so `/m%61in/x` would reach `/main/` there; here it matches nothing
//! (404). That is the price of authorizing and forwarding the very bytes received.
//!
//! The path handed on is split once, here: [`Routed::path`] is the request's path (what
//! the path policy and the authorizer see, as in the fork, which authorizes before its
//! director rewrites) and [`Routed::tail`] is a suffix of that same string (the pattern
//! stripped), which the upstream joins to its own base path. Both come from one value,
//! so what is forwarded is always the authorized path minus the matched pattern.
//!
//! Without `upstreams:` there is one route for every path, with nothing stripped and no
//! redirects: the proxy behaves as it always did.

use std::fmt;

use crate::{
    error::ProxyError,
    upstream::{Join, Tail},
};

/// A ServeMux pattern: a literal path; ending in `/`, a subtree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern(String);

impl Pattern {
    /// Validates a pattern as Go's ServeMux would accept it and mean it literally
    /// (Go 1.22 and later read `{…}` as a wildcard and a leading host or method as
    /// such: refused here rather than read differently).
    pub(crate) fn new(path: &str) -> Result<Self, String> {
        if path.is_empty() {
            return Err("is empty (Go's ServeMux refuses an empty pattern)".into());
        }
        if !path.starts_with('/') {
            return Err(format!(
                "{path:?} must start with '/' (a host or method pattern is not supported)"
            ));
        }
        if path.contains(['{', '}']) || path.chars().any(char::is_whitespace) {
            return Err(format!(
                "{path:?}: wildcards and spaces are not supported (a literal path only)"
            ));
        }
        Ok(Self(path.to_owned()))
    }

    fn subtree(&self) -> bool {
        self.0.ends_with('/')
    }

    fn matches(&self, path: &str) -> bool {
        match self.subtree() {
            true => path.starts_with(&self.0),
            false => path == self.0,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a pattern serves.
#[derive(Debug)]
enum Entry<T> {
    /// `--livez-path`: an unauthenticated `OK`.
    Livez,
    Route(T),
}

/// The routes of one listener.
#[derive(Debug)]
pub(crate) struct Routes<T> {
    /// Longest pattern first, so the first match is ServeMux's choice.
    entries: Vec<(Pattern, Entry<T>)>,
    /// `upstreams:`: Go's ServeMux (its redirects, 404 when nothing matches).
    /// Otherwise the one route takes every path unchanged.
    mux: bool,
}

/// Where a request goes.
#[derive(Debug)]
pub(crate) enum Selected<'r, 'p, T> {
    /// `--livez-path`.
    Livez,
    Route(Routed<'r, 'p, T>),
}

/// A request's route, and the one path both authorized and (stripped) forwarded.
#[derive(Debug)]
pub(crate) struct Routed<'r, 'p, T> {
    pub(crate) target: &'r T,
    path: &'p str,
    /// Where the tail starts in `path`.
    stripped: usize,
    join: Join,
}

impl<'r, 'p, T> Routed<'r, 'p, T> {
    /// The request's path, as received: what path policy and authorization see.
    pub(crate) fn path(&self) -> &'p str {
        self.path
    }

    /// What the upstream joins to its base path: `path` without the matched pattern.
    pub(crate) fn tail(&self) -> Tail<'p> {
        Tail {
            rest: &self.path[self.stripped..],
            join: self.join,
        }
    }
}

impl<T> Routes<T> {
    /// One route for every path, nothing stripped (the flags' `--upstream`), and
    /// `--livez-path` if given.
    pub(crate) fn single(target: T, livez: Option<Pattern>) -> Self {
        let mut entries: Vec<_> = livez.into_iter().map(|p| (p, Entry::Livez)).collect();
        entries.push((Pattern("/".into()), Entry::Route(target)));
        Self {
            entries,
            mux: false,
        }
    }

    /// `upstreams:` and `--livez-path` on one ServeMux. Each pattern is registered
    /// once (`config` refuses a second, which is a panic in Go); were one given twice,
    /// the first would win.
    pub(crate) fn mux(routes: Vec<(Pattern, T)>, livez: Option<Pattern>) -> Self {
        let mut entries: Vec<(Pattern, Entry<T>)> = livez
            .into_iter()
            .map(|p| (p, Entry::Livez))
            .chain(routes.into_iter().map(|(p, t)| (p, Entry::Route(t))))
            .collect();
        // Stable: of two patterns of one length only an equal one could match too.
        entries.sort_by_key(|(p, _)| std::cmp::Reverse(p.0.len()));
        Self { entries, mux: true }
    }

    /// The target of the longest pattern (there is always one: `single` has its one,
    /// `config` makes `mux` only with routes).
    pub(crate) fn any(&self) -> &T {
        self.entries
            .iter()
            .find_map(|(_, e)| match e {
                Entry::Route(t) => Some(t),
                Entry::Livez => None,
            })
            .unwrap_or_else(|| unreachable!("a listener has at least one route"))
    }

    /// The route for `path` (a path the guard accepted: no dot segments), with `query`
    /// for a redirect's `Location`. 404 when nothing matches; 301 where ServeMux
    /// redirects.
    pub(crate) fn select<'r, 'p>(
        &'r self,
        path: &'p str,
        query: Option<&str>,
    ) -> Result<Selected<'r, 'p, T>, ProxyError> {
        if self.mux {
            if path.contains("//") {
                return Err(moved(&clean(path), query));
            }
            if !path.ends_with('/') && !self.exact(path) {
                let root = format!("{path}/");
                if self.entries.iter().any(|(p, _)| p.0 == root) {
                    return Err(moved(&root, query));
                }
            }
        }
        let (pattern, entry) = self
            .entries
            .iter()
            .find(|(p, _)| p.matches(path))
            .ok_or(ProxyError::NotFound)?;
        let target = match entry {
            Entry::Livez => return Ok(Selected::Livez),
            Entry::Route(target) => target,
        };
        let (stripped, join) = match (self.mux, pattern.subtree()) {
            (false, _) => (0, Join::Subtree),
            (true, true) => (pattern.0.len(), Join::Subtree),
            (true, false) => (pattern.0.len(), Join::Exact),
        };
        Ok(Selected::Route(Routed {
            target,
            path,
            stripped,
            join,
        }))
    }

    /// Whether a pattern is exactly `path`.
    fn exact(&self, path: &str) -> bool {
        self.entries.iter().any(|(p, _)| p.0 == path)
    }
}

/// Go's `cleanPath` for a path without dot segments: runs of `/` made one.
fn clean(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

/// ServeMux's redirect: the path and the request's query.
fn moved(path: &str, query: Option<&str>) -> ProxyError {
    ProxyError::MovedPermanently(match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    })
}

#[cfg(test)]
mod tests;
