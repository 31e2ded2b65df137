//! The startup line: one a person can read at a glance — where it listens, where it
//! forwards, how it decides, from which files, for how long answers are kept. With
//! `--listeners-file`, that line names every listener and says what they share, and
//! each listener says the rest in a line of its own (in its `listener` span).

use std::{net::SocketAddr, path::Path};

use super::listeners::Plan;
use crate::{apiserver::RateLimit, authz::ConfigSource, config::Config, tls::TlsSource};

/// A listener being served, and where.
pub(super) struct Serving {
    pub(super) plan: Plan,
    pub(super) addr: SocketAddr,
}

/// What one listener says about itself.
struct Described {
    upstream: String,
    tls: String,
    client_ca: String,
    policy: String,
}

fn files<'a>(files: impl IntoIterator<Item = &'a Path>) -> String {
    let names: Vec<String> = files.into_iter().map(|f| f.display().to_string()).collect();
    if names.is_empty() {
        "-".to_owned()
    } else {
        names.join(",")
    }
}

fn describe(config: &Config, plan: &Plan) -> Described {
    let upstream = match &plan.upstream.options.unix_socket {
        Some(socket) => format!("unix://{}", socket.display()),
        None => plan.upstream.url.to_string(),
    };
    let tls = match &plan.tls.source {
        TlsSource::Files { cert, .. } => cert.display().to_string(),
        TlsSource::SelfSigned => "self-signed (in memory)".into(),
    };
    let mut policy: Vec<String> = Vec::new();
    let (config_source, rbac_files) = match &plan.policy {
        Some(own) => (own.config.clone(), own.rbac_files.as_slice()),
        None => (
            config
                .auth
                .authz
                .config_file
                .clone()
                .map(ConfigSource::File),
            config.auth.authz.rbac_files.as_slice(),
        ),
    };
    match config_source {
        Some(ConfigSource::File(path)) => policy.push(path.display().to_string()),
        Some(ConfigSource::Block { file, .. }) => {
            policy.push(format!("{} (authorization)", file.display()));
        }
        None => {}
    }
    policy.extend(rbac_files.iter().map(|p| p.display().to_string()));
    Described {
        upstream,
        tls,
        client_ca: files(plan.tls.client_ca_file.as_deref()),
        policy: if policy.is_empty() {
            "-".to_owned()
        } else {
            policy.join(",")
        },
    }
}

/// Logs the startup line(s) and what the flags mean that may surprise.
pub(super) fn log(
    config: &Config,
    serving: &[Serving],
    admin_addr: Option<SocketAddr>,
    apiserver: bool,
) {
    let duration = |d| humantime::format_duration(d).to_string();
    let auth = &config.auth;
    let token_file = files(auth.authn.token_file.as_deref());
    let kube_api = match auth.apiserver.rate_limit {
        RateLimit::Unlimited => "unlimited".to_owned(),
        RateLimit::TokenBucket { qps, burst } => format!("{qps} qps, burst {burst}"),
    };
    let (authn, authz) = (auth.authn.cache, auth.authz.cache);
    let caches = format!(
        "authn {}/{} (ok/rejected), authz {}/{} (allow/deny), {} entries, stale-if-error {}",
        duration(authn.positive),
        duration(authn.negative),
        duration(authz.positive),
        duration(authz.negative),
        authn.capacity,
        duration(authn.stale),
    );
    let proxy_endpoints = admin_addr.map_or("off".to_owned(), |a| a.to_string());
    let auth_endpoint = config
        .auth_endpoint
        .as_ref()
        .map_or("off".to_owned(), |(address, settings)| {
            format!("{address} ({:?})", settings.style)
        });
    let mode = if apiserver {
        "apiserver"
    } else {
        "standalone (offline)"
    };
    let curves = config.tls.policy.curves();
    let curve_names = curves.names().collect::<Vec<_>>().join(",");
    let audiences = if auth.authn.audiences.is_empty() {
        "-".to_owned()
    } else {
        auth.authn.audiences.join(",")
    };
    match serving {
        [only] if only.plan.name.is_none() => {
            let Described {
                upstream,
                tls,
                client_ca,
                policy,
            } = describe(config, &only.plan);
            tracing::info!(
                version = env!("CARGO_PKG_VERSION"),
                listen = %only.addr,
                proxy_endpoints,
                auth_endpoint,
                upstream,
                mode,
                tls,
                curves = curve_names,
                client_ca,
                http2 = config.http.http2,
                paths = %only.plan.paths,
                audiences,
                policy,
                token_auth_file = token_file,
                caches,
                kube_api,
                apiserver_timeout = duration(auth.apiserver.timeout),
                upstream_timeout = duration(only.plan.upstream.timeout),
                access_log = config.access_log,
                "scrape-guard serving"
            );
        }
        listeners => {
            let names: Vec<String> = listeners
                .iter()
                .map(|l| format!("{} {}", l.plan.name.as_deref().unwrap_or("-"), l.addr))
                .collect();
            tracing::info!(
                version = env!("CARGO_PKG_VERSION"),
                listeners = names.join(", "),
                proxy_endpoints,
                auth_endpoint,
                mode,
                curves = curve_names,
                http2 = config.http.http2,
                audiences,
                token_auth_file = token_file,
                caches,
                kube_api,
                apiserver_timeout = duration(auth.apiserver.timeout),
                access_log = config.access_log,
                "scrape-guard serving"
            );
            for listener in listeners {
                let Described {
                    upstream,
                    tls,
                    client_ca,
                    policy,
                } = describe(config, &listener.plan);
                listener.plan.span.in_scope(|| {
                    tracing::info!(
                        listen = %listener.addr,
                        upstream,
                        tls,
                        client_ca,
                        paths = %listener.plan.paths,
                        policy,
                        upstream_timeout = duration(listener.plan.upstream.timeout),
                        "listener serving"
                    );
                });
            }
        }
    }
    if !curves.unavailable().is_empty() {
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
    for listener in serving {
        if matches!(listener.plan.tls.source, TlsSource::SelfSigned) {
            listener.plan.span.in_scope(|| {
                tracing::warn!(
                    "no {}: serving a self-signed certificate generated at startup; clients \
                     cannot verify it",
                    match listener.plan.declared {
                        Some(_) => "tlsCertFile/tlsPrivateKeyFile",
                        None => "--tls-cert-file/--tls-private-key-file",
                    }
                );
            });
        }
    }
}
