//! Path policy: `--allow-paths` and `--ignore-paths`, the first stage of the pipeline.
//!
//! Both take Go `path.Match` globs, so the matcher below is a port of Go's algorithm
//! (chunks between stars matched leftmost-first, `*` and `?` never crossing `/`,
//! character classes with ranges, negation and escapes). Porting it rather than using
//! a glob crate keeps existing kube-rbac-proxy patterns meaning exactly what they meant,
//! and its greedy chunk matching keeps the cost linear in the path length, which an
//! attacker controls.

use std::fmt;

use crate::error::ProxyError;

/// What the path policy decided for a request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Authenticate and authorize, then forward.
    Guard,
    /// In `--ignore-paths`: forward without authentication.
    Ignore,
}

/// `--allow-paths` / `--ignore-paths`, validated. At most one of them is non-empty.
#[derive(Debug, Clone, Default)]
pub struct PathPolicy {
    allow: Vec<String>,
    ignore: Vec<String>,
}

impl fmt::Display for PathPolicy {
    /// For the startup line: `every path`, `allow /metrics,/federate*`, `ignore /healthz`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.allow.is_empty(), self.ignore.is_empty()) {
            (false, _) => write!(f, "allow {}", self.allow.join(",")),
            (true, false) => write!(f, "every path; unguarded: {}", self.ignore.join(",")),
            (true, true) => write!(f, "every path"),
        }
    }
}

impl PathPolicy {
    /// Validates the globs; the flags are mutually exclusive, as in kube-rbac-proxy.
    pub fn new(allow: &[String], ignore: &[String]) -> Result<Self, String> {
        let clean = |globs: &[String]| -> Vec<String> {
            globs
                .iter()
                .map(|g| g.trim().to_owned())
                .filter(|g| !g.is_empty())
                .collect()
        };
        let (allow, ignore) = (clean(allow), clean(ignore));
        if !allow.is_empty() && !ignore.is_empty() {
            return Err("--allow-paths and --ignore-paths cannot be used together".into());
        }
        for (flag, glob) in allow
            .iter()
            .map(|g| ("--allow-paths", g))
            .chain(ignore.iter().map(|g| ("--ignore-paths", g)))
        {
            validate(glob).map_err(|()| format!("{flag}: {glob:?} is not a valid glob"))?;
        }
        Ok(Self { allow, ignore })
    }

    /// Decides the route for a request path: 404 outside `--allow-paths`.
    ///
    /// Servlet containers (Tomcat, Jetty: Java exporters, Spring actuator) drop
    /// `;parameters` from each segment before routing, so `/static/admin;.js` is
    /// `/static/admin` to them. A path with a `;` is therefore allowed or ignored only
    /// if both its literal form and its parameter-free form match.
    pub fn route(&self, path: &str) -> Result<Route, ProxyError> {
        let stripped = path.contains(';').then(|| without_parameters(path));
        let matches = |globs: &[String]| {
            let literal = globs.iter().any(|g| glob_match(g, path));
            literal
                && stripped
                    .as_deref()
                    .is_none_or(|stripped| globs.iter().any(|g| glob_match(g, stripped)))
        };
        if !self.allow.is_empty() && !matches(&self.allow) {
            return Err(ProxyError::NotFound);
        }
        if matches(&self.ignore) {
            return Ok(Route::Ignore);
        }
        Ok(Route::Guard)
    }
}

/// The path as a servlet container routes it: each segment cut at its first `;`.
fn without_parameters(path: &str) -> String {
    path.split('/')
        .map(|segment| segment.split(';').next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("/")
}

/// Go's `path.Match(pattern, name)` for a pattern already known to be valid.
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    let mut pattern = pattern.as_bytes();
    let mut name = name.as_bytes();
    'pattern: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // A trailing star matches the rest unless it holds a '/'.
            return !name.contains(&b'/');
        }
        if let Ok(Some(t)) = match_chunk(chunk, name) {
            // The last chunk must consume the whole name.
            if t.is_empty() || !pattern.is_empty() {
                name = t;
                continue;
            }
        }
        if star {
            // Skip ahead one byte at a time; a star cannot skip a '/'.
            let mut i = 0;
            while i < name.len() && name[i] != b'/' {
                if let Ok(Some(t)) = match_chunk(chunk, &name[i + 1..]) {
                    if pattern.is_empty() && !t.is_empty() {
                        i += 1;
                        continue;
                    }
                    name = t;
                    continue 'pattern;
                }
                i += 1;
            }
        }
        return false;
    }
    name.is_empty()
}

/// Go's `path.Match` rejects malformed patterns with ErrBadPattern; we do it at startup.
fn validate(pattern: &str) -> Result<(), ()> {
    let mut pattern = pattern.as_bytes();
    while !pattern.is_empty() {
        let (_, chunk, rest) = scan_chunk(pattern);
        match_chunk(chunk, b"")?;
        pattern = rest;
    }
    Ok(())
}

/// Splits off leading stars and the chunk up to the next unescaped star outside a class.
fn scan_chunk(mut pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let mut star = false;
    while let [b'*', rest @ ..] = pattern {
        pattern = rest;
        star = true;
    }
    let mut in_range = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (star, &pattern[..i], &pattern[i..])
}

/// Matches `chunk` against a prefix of `s`: `Ok(Some(rest))` on a match, `Ok(None)` on
/// none, `Err` on a malformed chunk. Always parses the whole chunk, like Go.
fn match_chunk<'a>(mut chunk: &[u8], mut s: &'a [u8]) -> Result<Option<&'a [u8]>, ()> {
    let mut failed = false;
    while let Some(&c) = chunk.first() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match c {
            b'[' => {
                let mut r = '\0';
                if !failed {
                    let (rune, n) = decode_rune(s);
                    r = rune;
                    s = &s[n..];
                }
                chunk = &chunk[1..];
                let negated = chunk.first() == Some(&b'^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut ranges = 0;
                loop {
                    if chunk.first() == Some(&b']') && ranges > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = escaped_rune(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if chunk.first() == Some(&b'-') {
                        let (h, rest) = escaped_rune(&chunk[1..])?;
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    ranges += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            b'?' => {
                if !failed {
                    if s[0] == b'/' {
                        failed = true;
                    }
                    let (_, n) = decode_rune(s);
                    s = &s[n..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                if c == b'\\' {
                    chunk = &chunk[1..];
                    if chunk.is_empty() {
                        return Err(());
                    }
                }
                if !failed {
                    if chunk[0] != s[0] {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    Ok((!failed).then_some(s))
}

/// One possibly-escaped rune inside a character class (Go's `getEsc`).
fn escaped_rune(mut chunk: &[u8]) -> Result<(char, &[u8]), ()> {
    match chunk.first() {
        None | Some(b'-' | b']') => return Err(()),
        Some(b'\\') => {
            chunk = &chunk[1..];
            if chunk.is_empty() {
                return Err(());
            }
        }
        Some(_) => {}
    }
    let (r, n) = decode_rune(chunk);
    if r == char::REPLACEMENT_CHARACTER && n == 1 {
        return Err(());
    }
    let rest = &chunk[n..];
    if rest.is_empty() {
        return Err(());
    }
    Ok((r, rest))
}

/// The first UTF-8 rune of `s` and its length; invalid bytes decode as U+FFFD, length 1.
fn decode_rune(s: &[u8]) -> (char, usize) {
    let len = match s.first() {
        None => return (char::REPLACEMENT_CHARACTER, 0),
        Some(b) if *b < 0x80 => 1,
        Some(b) if b >> 5 == 0b110 => 2,
        Some(b) if b >> 4 == 0b1110 => 3,
        Some(b) if b >> 3 == 0b11110 => 4,
        Some(_) => return (char::REPLACEMENT_CHARACTER, 1),
    };
    s.get(..len)
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .and_then(|text| text.chars().next())
        .map_or((char::REPLACEMENT_CHARACTER, 1), |c| (c, len))
}

#[cfg(test)]
mod tests;
