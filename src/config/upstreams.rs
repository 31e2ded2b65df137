//! Deckhouse's fork of kube-rbac-proxy, whose config its whole platform writes: the
//! config may come from `KUBE_RBAC_PROXY_CONFIG` (read instead of `--config-file` when
//! set and not empty), `excludePaths` joins `--ignore-paths`, and `upstreams:` routes
//! by path to several upstreams behind one port, each with its own `authorization:`.
//!
//! ```yaml
//! excludePaths: [/controller/healthz]
//! upstreams:
//! - upstream: http://127.0.0.1:10254/     # where; its path is the base the tail joins
//!   path: /controller/                     # a Go ServeMux pattern (routes.rs)
//!   upstreamCaFile: /etc/ca.crt            # an https upstream's CA (not --upstream-ca-file)
//!   authorization: {resourceAttributes: {...}}   # kube-rbac-proxy's block, unchanged
//! ```
//!
//! A route is a listener's upstream and authorization without a socket of its own: its
//! upstream settings are the flags' (`--upstream-timeout`, `--upstream-force-h2c`, the
//! identity headers…) with its own URL and CA, and its authorization is loaded and
//! reloaded like a `--listeners-file` listener's block (`ConfigSource::Route`, found by
//! its index). What the routes are (`upstreams:` without the blocks) and `excludePaths`
//! are read once, at startup; the blocks are re-read only while those still say what
//! they said (`reload::Condition`), so that an edit never changes who is allowed
//! without the log saying so. `KUBE_RBAC_PROXY_CONFIG` is read once, like the fork.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{
    args::{CacheArgs, DeckhouseArgs},
    listeners::{ListenerArgs, RouteConfig},
    upstream::parse_upstream,
    Problems,
};
use crate::{
    authz::{self, ConfigSource, Locate, PolicySettings},
    reload::Condition,
    routes::Pattern,
    upstream::UpstreamSettings,
    yaml::{self, join, take, Decoder},
};

/// The environment variable the fork reads its config from.
pub(super) const ENV: &str = "KUBE_RBAC_PROXY_CONFIG";

/// What the fork's config and flags say, read at startup.
#[derive(Debug, Default)]
pub(super) struct Deckhouse {
    text: Option<Text>,
    shape: Shape,
    /// `--livez-path`.
    pub(super) livez: Option<Pattern>,
}

/// Where the config came from.
#[derive(Debug, Clone)]
enum Text {
    File(PathBuf),
    Env(Arc<[u8]>),
}

/// `excludePaths` and `upstreams:` as written, their `authorization:` blocks aside:
/// what must not change for the blocks to be re-read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Shape {
    exclude_paths: Vec<String>,
    upstreams: Vec<Written>,
}

/// One entry of `upstreams:` (the fork's `upstream` struct, its JSON names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Written {
    upstream: String,
    path: String,
    ca_file: String,
    insecure_skip_verify: bool,
    /// In the fork's struct, read by nothing.
    exclude_paths: Vec<String>,
}

/// Reads the fork's flags and config. `--stale-cache-interval` is folded into
/// `--stale-if-error` here, before the caches are validated.
pub(super) fn read(
    args: DeckhouseArgs,
    config_file: Option<&Path>,
    cache: &mut CacheArgs,
    problems: &mut Problems,
) -> Deckhouse {
    let DeckhouseArgs {
        stale_cache_interval,
        livez_path,
        kube_rbac_proxy_config,
    } = args;
    if let Some(interval) = stale_cache_interval {
        let ours = cache.stale_if_error;
        if !ours.is_zero() && ours != interval {
            problems.add(format!(
                "--stale-if-error {ours:?} and --stale-cache-interval {interval:?} disagree: \
                 they are the same setting, give one (or the same value)"
            ));
        }
        cache.stale_if_error = interval;
    }
    let livez = livez_path.and_then(|path| {
        let pattern = Pattern::new(&path).map_err(|e| format!("--livez-path {e}"));
        problems.or(pattern.map(Some), None)
    });
    let env = kube_rbac_proxy_config.filter(|c| !c.is_empty());
    let (text, origin, bytes) = match (env, config_file) {
        (Some(contents), file) => {
            if let Some(file) = file {
                problems.warn(format!(
                    "--config-file {} is not read: {ENV} is set, and Deckhouse's fork of \
                     kube-rbac-proxy reads it instead",
                    file.display()
                ));
            }
            let bytes: Arc<[u8]> = Arc::from(contents.into_bytes());
            (
                Text::Env(Arc::clone(&bytes)),
                ENV.to_owned(),
                bytes.to_vec(),
            )
        }
        (None, Some(file)) => match std::fs::read(file) {
            Ok(bytes) => (
                Text::File(file.to_owned()),
                format!("--config-file {}", file.display()),
                bytes,
            ),
            // `authz` reports the file when it loads it.
            Err(_) => {
                return Deckhouse {
                    livez,
                    ..Deckhouse::default()
                }
            }
        },
        (None, None) => {
            return Deckhouse {
                livez,
                ..Deckhouse::default()
            }
        }
    };
    let shape = match decode(&bytes) {
        Ok((shape, notes)) => {
            for note in notes {
                problems.warn(format!("{origin} line {}: {}", note.line, note.text));
            }
            shape
        }
        Err(error) => {
            problems.add(format!("{origin}: {error}"));
            Shape::default()
        }
    };
    Deckhouse {
        text: Some(text),
        shape,
        livez,
    }
}

impl Deckhouse {
    /// The flags' listener as the fork makes it: `excludePaths` after `--ignore-paths`;
    /// with `upstreams:`, `--upstream` and `--upstream-ca-file` unused (as in the fork)
    /// and the first route's URL standing in for `--upstream` while the listener's
    /// other settings are validated (the routes' URLs are checked in `routes`).
    pub(super) fn apply(&self, flags: &mut ListenerArgs, problems: &mut Problems) {
        let exclude = &self.shape.exclude_paths;
        if !exclude.is_empty() {
            if flags.allow_paths.iter().any(|p| !p.trim().is_empty()) {
                problems.add(format!(
                    "excludePaths in {} is added to --ignore-paths, which cannot be used with \
                     --allow-paths (Deckhouse's fork refuses this too)",
                    self.origin()
                ));
            } else {
                flags.ignore_paths.extend(exclude.iter().cloned());
            }
        }
        let Some(first) = self.shape.upstreams.first() else {
            return;
        };
        for (given, flag) in [
            (flags.upstream.is_some(), "--upstream"),
            (flags.upstream_ca_file.is_some(), "--upstream-ca-file"),
        ] {
            if given {
                problems.warn(format!(
                    "{flag} is not used: {} has upstreams:, each with its own upstream and \
                     upstreamCaFile (Deckhouse's fork ignores it too)",
                    self.origin()
                ));
            }
        }
        let stand_in = match parse_upstream(&first.upstream) {
            Ok(_) => first.upstream.clone(),
            Err(_) => "http://127.0.0.1/".to_owned(),
        };
        flags.upstream = Some(stand_in);
        flags.upstream_ca_file = None;
    }

    /// The flags' listener's own policy: `KUBE_RBAC_PROXY_CONFIG`'s top-level block in
    /// place of `--config-file`; a file's is re-read while its routes stay as they were.
    pub(super) fn policy(&self, policy: &mut PolicySettings) {
        match &self.text {
            Some(Text::Env(contents)) => {
                policy.config = Some(ConfigSource::Env {
                    contents: Arc::clone(contents),
                    locate: None,
                });
            }
            Some(Text::File(file)) => {
                policy.condition = Some(self.condition(file));
            }
            None => {}
        }
    }

    /// The routes of `upstreams:`, each from the flags' listener's `upstream` settings
    /// with its own URL and CA, and its own authorization; problems name the entry.
    pub(super) fn routes(
        &self,
        listener: &UpstreamSettings,
        rbac_files: &[PathBuf],
        problems: &mut Problems,
    ) -> Vec<RouteConfig> {
        let Some(text) = &self.text else {
            return Vec::new();
        };
        let origin = self.origin();
        let mut routes: Vec<RouteConfig> = Vec::new();
        for (i, written) in self.shape.upstreams.iter().enumerate() {
            let at = format!("{origin}: upstreams[{i}]");
            let mut own = Problems::default();
            let route = route(written, listener, &mut own);
            let policy = self.route_policy(text, i, rbac_files);
            if let Some((pattern, upstream)) = route {
                if routes.iter().any(|r| r.pattern == pattern)
                    || self.livez.as_ref() == Some(&pattern)
                {
                    own.add(format!(
                        "path {pattern} is registered twice (Go's ServeMux panics on it)"
                    ));
                }
                routes.push(RouteConfig {
                    pattern,
                    upstream,
                    policy,
                });
            }
            let Problems { errors, warnings } = own;
            errors
                .into_iter()
                .for_each(|e| problems.add(format!("{at}.{e}")));
            warnings
                .into_iter()
                .for_each(|w| problems.warn(format!("{at}.{w}")));
        }
        routes
    }

    /// Each route's pattern and authorization, as `routes` makes them, for `can-i`:
    /// the upstreams are not validated (the proxy does that).
    pub(super) fn route_policies(
        &self,
        rbac_files: &[PathBuf],
        problems: &mut Problems,
    ) -> Vec<(Pattern, PolicySettings)> {
        let Some(text) = &self.text else {
            return Vec::new();
        };
        let origin = self.origin();
        let mut routes = Vec::new();
        for (i, written) in self.shape.upstreams.iter().enumerate() {
            match Pattern::new(&written.path) {
                Ok(pattern) => routes.push((pattern, self.route_policy(text, i, rbac_files))),
                Err(e) => problems.add(format!("{origin}: upstreams[{i}].path {e}")),
            }
        }
        routes
    }

    /// The `authorization:` of entry `i`, with the listener's RBAC files.
    fn route_policy(&self, text: &Text, i: usize, rbac_files: &[PathBuf]) -> PolicySettings {
        let locate = locate(i);
        PolicySettings {
            config: Some(match text {
                Text::File(file) => ConfigSource::Route {
                    file: file.clone(),
                    locate,
                },
                Text::Env(contents) => ConfigSource::Env {
                    contents: Arc::clone(contents),
                    locate: Some(locate),
                },
            }),
            rbac_files: rbac_files.to_vec(),
            condition: match text {
                Text::File(file) => Some(self.condition(file)),
                Text::Env(_) => None,
            },
        }
    }

    fn origin(&self) -> String {
        match &self.text {
            Some(Text::File(file)) => format!("--config-file {}", file.display()),
            Some(Text::Env(_)) | None => ENV.to_owned(),
        }
    }

    /// The file's blocks apply while its routes and `excludePaths` are what they were.
    fn condition(&self, file: &Path) -> Condition {
        let (startup, shown) = (self.shape.clone(), file.display().to_string());
        Condition {
            file: file.to_owned(),
            holds: Arc::new(move |bytes| {
                let (now, _) = decode(bytes).map_err(|e| format!("{shown}: {e}"))?;
                if now == startup {
                    return Ok(());
                }
                Err(format!(
                    "{shown}: upstreams: or excludePaths changed, not only authorization \
                     blocks; they are read at startup, so the routes and every policy in \
                     the file stay as they were until the next start"
                ))
            }),
        }
    }
}

/// One entry, validated: its pattern and upstream settings. Problems name its keys.
fn route(
    written: &Written,
    listener: &UpstreamSettings,
    problems: &mut Problems,
) -> Option<(Pattern, UpstreamSettings)> {
    let pattern = Pattern::new(&written.path).map_err(|e| format!("path {e}"));
    let target = parse_upstream(&written.upstream).map_err(|e| format!("upstream {e}"));
    if !written.exclude_paths.is_empty() {
        problems.warn(
            "excludePaths is ignored (Deckhouse's fork ignores it too): give it at the top \
             level, where it applies to every route",
        );
    }
    let (pattern, (url, unix_socket)) = match (pattern, target) {
        (Ok(pattern), Ok(target)) => (pattern, target),
        (pattern, target) => {
            for problem in [pattern.err(), target.err()].into_iter().flatten() {
                problems.add(problem);
            }
            return None;
        }
    };
    let https = url.scheme_str() == Some("https") && unix_socket.is_none();
    let ca_file = Some(PathBuf::from(&written.ca_file)).filter(|_| !written.ca_file.is_empty());
    if ca_file.is_some() && !https {
        problems.warn("upstreamCaFile is not used: the upstream is not https://");
    }
    if written.insecure_skip_verify {
        if https {
            problems.add(
                "upstreamInsecureSkipVerify: scrape-guard always verifies an https upstream; \
                 give upstreamCaFile with the CA that signed its certificate",
            );
        } else {
            problems.warn("upstreamInsecureSkipVerify has no effect: the upstream is not https://");
        }
    }
    let mut settings = listener.clone();
    settings.url = url;
    settings.options.unix_socket = unix_socket;
    settings.options.ca_file = ca_file.filter(|_| https);
    if settings.options.force_h2c && https {
        problems.add("upstream: --upstream-force-h2c is for http:// or unix:// upstreams");
    }
    Some((pattern, settings))
}

/// Finds `upstreams[index].authorization` (the condition has checked that the entries
/// are the ones of startup, so the index still names the same route).
fn locate(index: usize) -> Locate {
    authz::locate(move |docs| {
        let at = format!("upstreams[{index}]");
        let mut d = Decoder::default();
        let root = docs.first().map(|root| d.objects(&[root], "the file"));
        let maps = match root {
            Some(maps) => maps?.unwrap_or_default(),
            None => Vec::new(),
        };
        let [upstreams] = take(d.fields(&maps, "", &["upstreams"])?);
        let items = d.list(&upstreams, "upstreams")?.unwrap_or_default();
        let Some(item) = items.get(index) else {
            return Err(format!(
                "{at} is no longer there; removing a route takes a restart"
            ));
        };
        let maps = d.objects(&[item], &at)?.unwrap_or_default();
        let [block] = take(d.fields(&maps, &at, &["authorization"])?);
        Ok(block.last().copied())
    })
}

/// The config's `excludePaths` and `upstreams:`, read with kube-rbac-proxy's YAML
/// rules; notes about those keys (the rest of the file is `authz`'s to warn about).
fn decode(bytes: &[u8]) -> Result<(Shape, Vec<yaml::Note>), String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let docs = yaml::parse(text)?;
    let mut d = Decoder::default();
    let Some(root) = docs.first() else {
        return Ok((Shape::default(), Vec::new()));
    };
    let Some(maps) = d.objects(&[root], "the file")? else {
        return Ok((Shape::default(), Vec::new()));
    };
    let [_authorization, exclude, upstreams] =
        take(d.fields(&maps, "", &["authorization", "excludePaths", "upstreams"])?);
    // Unknown top-level keys are `authz`'s to warn about.
    d.notes.clear();
    let exclude_paths = d.strings(&exclude, "excludePaths")?;
    let mut entries = Vec::new();
    for (i, item) in d
        .list(&upstreams, "upstreams")?
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let at = format!("upstreams[{i}]");
        // Go decodes `null` into a struct as nothing: every field empty.
        let maps = d.objects(&[item], &at)?.unwrap_or_default();
        let [_authorization, path, upstream, ca, insecure, exclude] = take(d.fields(
            &maps,
            &at,
            &[
                "authorization",
                "path",
                "upstream",
                "upstreamCaFile",
                "upstreamInsecureSkipVerify",
                "excludePaths",
            ],
        )?);
        let text = |d: &mut Decoder, values, key: &str| -> Result<String, String> {
            Ok(d.string(values, &join(&at, key))?
                .map(|(text, _)| text)
                .unwrap_or_default())
        };
        entries.push(Written {
            path: text(&mut d, &path, "path")?,
            upstream: text(&mut d, &upstream, "upstream")?,
            ca_file: text(&mut d, &ca, "upstreamCaFile")?,
            insecure_skip_verify: d.boolean(&insecure, &join(&at, "upstreamInsecureSkipVerify"))?,
            exclude_paths: d.strings(&exclude, &join(&at, "excludePaths"))?,
        });
    }
    let shape = Shape {
        exclude_paths,
        upstreams: entries,
    };
    Ok((shape, d.notes))
}

#[cfg(test)]
mod tests;
