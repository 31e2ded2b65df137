//! The startup line: one a person can read at a glance — where it listens, where it
//! forwards, how it decides, from which files, for how long answers are kept. With
//! `--listeners-file`, that line names every listener and says what they share, and
//! each listener says the rest in a line of its own (in its `listener` span).

use std::{net::SocketAddr, path::Path};

use super::listeners::Bound;
use crate::{
    apiserver::RateLimit,
    authz::ConfigSource,
    config::{AuthSettings, Config, ListenerConfig, Origin},
    tls::{Module, TlsSource},
};

/// What one listener says about itself.
struct Summary {
    upstream: String,
    tls: String,
    client_ca: String,
    policy: String,
    upstream_timeout: String,
}

fn files<'a>(files: impl IntoIterator<Item = &'a Path>) -> String {
    let names: Vec<String> = files.into_iter().map(|f| f.display().to_string()).collect();
    if names.is_empty() {
        "-".to_owned()
    } else {
        names.join(",")
    }
}

fn duration(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn summary(listener: &ListenerConfig) -> Summary {
    let url = |upstream: &crate::upstream::UpstreamSettings| match &upstream.options.unix_socket {
        Some(socket) => format!("unix://{}", socket.display()),
        None => upstream.url.to_string(),
    };
    // Deckhouse's upstreams: "PATH=URL" for each route.
    let upstream = match listener.routes.is_empty() {
        true => url(&listener.upstream),
        false => {
            let routes = listener.routes.iter();
            let routes: Vec<String> = routes
                .map(|r| format!("{}={}", r.pattern, url(&r.upstream)))
                .collect();
            routes.join(",")
        }
    };
    let tls = match &listener.tls.source {
        TlsSource::Files { cert, .. } => cert.display().to_string(),
        TlsSource::SelfSigned => "self-signed (in memory)".into(),
    };
    let mut policy: Vec<String> = Vec::new();
    match &listener.policy.config {
        Some(ConfigSource::File(path)) => policy.push(path.display().to_string()),
        Some(ConfigSource::Block { file, .. } | ConfigSource::Route { file, .. }) => {
            policy.push(format!("{} (authorization)", file.display()));
        }
        Some(ConfigSource::Env { .. }) => policy.push("$KUBE_RBAC_PROXY_CONFIG".to_owned()),
        None => {}
    }
    let rbac_files = listener.policy.rbac_files.iter();
    policy.extend(rbac_files.map(|p| p.display().to_string()));
    Summary {
        upstream,
        tls,
        client_ca: files(listener.tls.client_ca_file.as_deref()),
        policy: if policy.is_empty() {
            "-".to_owned()
        } else {
            policy.join(",")
        },
        upstream_timeout: duration(listener.upstream.timeout),
    }
}

/// Logs the startup line(s) and what the flags mean that may surprise. The flags'
/// listener alone says everything in one line; beside others, each listener says its
/// own part in a line of its own.
pub(super) fn log(
    config: &Config,
    listeners: &[Bound],
    admin_addr: Option<SocketAddr>,
    apiserver: bool,
) {
    let auth = &config.auth;
    let auth_endpoint = config
        .auth_endpoint
        .as_ref()
        .map_or("off".to_owned(), |(address, settings)| {
            format!("{address} ({:?})", settings.style)
        });
    let curves = listeners
        .first()
        .map(|l| l.loaded.scoped.config.tls.policy.curves());
    let curve_names = curves.map(|c| c.names().collect::<Vec<_>>().join(","));
    let audiences = match auth.authn.audiences.is_empty() {
        true => "-".to_owned(),
        false => auth.authn.audiences.join(","),
    };
    // The flags' listener alone: its own part goes in the one line.
    let (only, names) = match listeners {
        [only] if only.loaded.scoped.config.name.is_none() => (Some(only), None),
        all => {
            let names: Vec<String> = all
                .iter()
                .map(|l| {
                    let name = l.loaded.scoped.config.name.as_deref();
                    format!("{} {}", name.unwrap_or("-"), l.addr)
                })
                .collect();
            (None, Some(names.join(", ")))
        }
    };
    let own = only.map(|l| summary(&l.loaded.scoped.config));
    let own = own.as_ref();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = only.map(|l| tracing::field::display(l.addr)),
        listeners = names,
        proxy_endpoints = admin_addr.map_or("off".to_owned(), |a| a.to_string()),
        auth_endpoint,
        upstream = own.map(|s| &s.upstream),
        mode = if apiserver {
            "apiserver"
        } else {
            "standalone (offline)"
        },
        tls = own.map(|s| &s.tls),
        crypto = Module::BUILT.describe(),
        curves = curve_names,
        client_ca = own.map(|s| &s.client_ca),
        http2 = config.http.http2,
        paths = only.map(|l| tracing::field::display(&l.loaded.scoped.config.paths)),
        audiences,
        policy = own.map(|s| &s.policy),
        token_auth_file = files(auth.authn.token_file.as_deref()),
        caches = caches(auth),
        kube_api = match auth.apiserver.rate_limit {
            RateLimit::Unlimited => "unlimited".to_owned(),
            RateLimit::TokenBucket { qps, burst } => format!("{qps} qps, burst {burst}"),
        },
        apiserver_timeout = duration(auth.apiserver.timeout),
        upstream_timeout = own.map(|s| &s.upstream_timeout),
        access_log = config.access_log,
        "scrape-guard serving"
    );
    for listener in listeners.iter().filter(|_| only.is_none()) {
        let scoped = &listener.loaded.scoped;
        let Summary {
            upstream,
            tls,
            client_ca,
            policy,
            upstream_timeout,
        } = summary(&scoped.config);
        scoped.span.in_scope(|| {
            tracing::info!(
                listen = %listener.addr,
                upstream,
                tls,
                client_ca,
                paths = %scoped.config.paths,
                policy,
                upstream_timeout,
                "listener serving"
            );
        });
    }
    warn(config, listeners);
}

/// What may surprise: key exchanges this build lacks, the flags' warnings, and each
/// listener serving a self-signed certificate.
fn warn(config: &Config, listeners: &[Bound]) {
    let curves = listeners
        .first()
        .map(|l| l.loaded.scoped.config.tls.policy.curves());
    if let Some(curves) = curves.filter(|c| !c.unavailable().is_empty()) {
        tracing::warn!(
            unavailable = curves.unavailable().join(","),
            using = curves.names().collect::<Vec<_>>().join(","),
            "--tls-curve-preferences names key exchanges this build does not implement; \
             they are not offered"
        );
    }
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    for listener in listeners {
        let scoped = &listener.loaded.scoped;
        if matches!(scoped.config.tls.source, TlsSource::SelfSigned) {
            scoped.span.in_scope(|| {
                tracing::warn!(
                    "no {}: serving a self-signed certificate generated at startup; clients \
                     cannot verify it",
                    match scoped.config.origin {
                        Origin::File { .. } => "tlsCertFile/tlsPrivateKeyFile",
                        Origin::Flags => "--tls-cert-file/--tls-private-key-file",
                    }
                );
            });
        }
    }
}

/// The review caches' lifetimes and size.
fn caches(auth: &AuthSettings) -> String {
    let (authn, authz) = (auth.authn.cache, auth.authz.cache);
    format!(
        "authn {}/{} (ok/rejected), authz {}/{} (allow/deny), {} entries, stale-if-error {}",
        duration(authn.positive),
        duration(authn.negative),
        duration(authz.positive),
        duration(authz.negative),
        authn.capacity,
        duration(authn.stale),
    )
}
