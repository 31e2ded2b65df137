//! Command-line flags (kube-rbac-proxy compatible) and their validation into each
//! stage's settings.
//!
//! Manifests written for kube-rbac-proxy must start scrape-guard unchanged, so flag
//! names, Go's `--flag=value`/`--flag value` forms, Go booleans (`--flag`,
//! `--flag=false`), comma lists, Go durations and Go listen addresses (`:8443`,
//! `[$(IP)]:9100`) are all accepted. klog's logging flags are accepted and ignored with
//! one warning. Flags we cannot honour safely (`--insecure-listen-address`, `--oidc-*`)
//! are a startup error rather than silently ignored: ignoring an auth flag fails open.
//!
//! Each flag group is validated in its own file (`serving`, `upstream`, `auth`) into the
//! settings types of the stages it configures; this module only puts them together.
//! The flags' listener is validated as a `--listeners-file` entry is (`listeners.rs`),
//! into the same `ListenerConfig`. Validation collects every problem and reports them
//! together, each naming its flag (or file, line and key).

mod args;
mod audit;
mod auth;
mod dialect;
mod front_proxy;
mod go;
mod listeners;
mod oidc;
mod serving;
mod upstream;
mod upstreams;

use std::{fmt, path::PathBuf, time::Duration};

pub use self::args::{Args, Cli, Command, VersionFlag};
use self::args::{AuthEndpointArgs, CacheArgs, LoggingArgs};
pub(crate) use self::listeners::{ListenerConfig, ListenersFile, Origin};
pub(crate) use self::{
    args::{CanIArgs, RbacArgs},
    go::ListenAddress,
    listeners::{in_keys as in_listener_keys, unchanged as listeners_unchanged, FLAGS_LISTENER},
};
use crate::{
    apiserver::ApiserverSettings,
    audit::AuditSettings,
    auth_endpoint::{AuthEndpointSettings, Style},
    authn::{lookup::FrontProxySettings, AuthnSettings},
    authz::{AuthzSettings, PolicySettings},
    routes::Pattern,
    server::HttpSettings,
    upstream::IdentityHeaders,
};

/// The validated configuration the proxy starts from: its listeners, and one settings
/// value per stage for what they share.
#[derive(Debug, Clone)]
pub struct Config {
    /// Every listener, in the order served: the flags' first (`--upstream`; named
    /// "default" beside `--listeners-file`), then the file's.
    pub listeners: Vec<ListenerConfig>,
    /// `--proxy-endpoints-port`: /healthz, /readyz and own /metrics.
    pub proxy_endpoints_port: Option<u16>,
    /// `--worker-threads`, already capped at the CPUs available.
    pub worker_threads: usize,
    /// `--shutdown-grace`.
    pub shutdown_grace: Duration,
    pub http: HttpSettings,
    /// What the listeners share: the apiserver, the token file, the caches. The local
    /// policy is each listener's own (`ListenerConfig::policy`).
    pub auth: AuthSettings,
    /// `--access-log`.
    pub access_log: bool,
    /// `--audit-*`: the audit log of decisions.
    pub audit: AuditSettings,
    /// `--auth-endpoint-address` and how it reads requests.
    pub auth_endpoint: Option<(ListenAddress, AuthEndpointSettings)>,
    /// `--listeners-file`, watched for changes its listeners do not take until a restart.
    pub listeners_file: Option<ListenersFile>,
    /// What the flags mean that may surprise (suites rustls lacks, a TLS 1.0 minimum…),
    /// logged once at startup.
    pub warnings: Vec<String>,
}

/// Everything authentication and authorization are built from; what `scrape-guard
/// can-i` shares with the proxy.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub apiserver: ApiserverSettings,
    pub authn: AuthnSettings,
    pub authz: AuthzSettings,
    /// `--requestheader-*` and the cluster lookup.
    pub front_proxy: FrontProxySettings,
}

/// `scrape-guard can-i`, validated.
#[derive(Debug, Clone)]
pub(crate) struct CanIConfig {
    pub auth: AuthSettings,
    /// `--config-file` and `--rbac-file`, as the flags' listener has them.
    pub policy: PolicySettings,
    pub who: Who,
    /// `--path`.
    pub path: String,
    /// `--verb`.
    pub verb: String,
    /// `--header`, as name and value.
    pub headers: Vec<(String, String)>,
    /// `upstreams:` of `KUBE_RBAC_PROXY_CONFIG` or `--config-file`: each route's pattern
    /// and authorization (empty: `policy` decides every path).
    pub routes: Vec<(Pattern, PolicySettings)>,
    /// `--livez-path`, beside the routes.
    pub livez: Option<Pattern>,
}

/// Whom `can-i` asks about.
#[derive(Debug, Clone)]
pub(crate) enum Who {
    /// `--token-file`: authenticated as the proxy would.
    Token(PathBuf),
    /// `--as` and `--as-group`: taken as given.
    User { name: String, groups: Vec<String> },
}

/// Every problem found in the flags, reported together.
#[derive(Debug)]
pub struct ConfigError(Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration:")?;
        for problem in &self.0 {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Problems found so far. Validation carries on past each one (with a placeholder
/// value), so that a user sees every problem at once. Warnings are what starts but
/// should be said.
#[derive(Debug, Default)]
struct Problems {
    errors: Vec<String>,
    warnings: Vec<String>,
}

impl Problems {
    fn add(&mut self, problem: impl Into<String>) {
        self.errors.push(problem.into());
    }

    fn warn(&mut self, warning: impl Into<String>) {
        self.warnings.push(warning.into());
    }

    /// The value, or `placeholder` with the problem recorded.
    fn or<T>(&mut self, result: Result<T, String>, placeholder: T) -> T {
        result.unwrap_or_else(|problem| {
            self.add(problem);
            placeholder
        })
    }

    fn positive(&mut self, flag: &str, value: Duration) {
        if value.is_zero() {
            self.add(format!("{flag} must be greater than 0"));
        }
    }

    fn at_least_one(&mut self, flag: &str, value: usize) {
        if value == 0 {
            self.add(format!("{flag} must be at least 1"));
        }
    }

    fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError(self.errors))
        }
    }
}

impl TryFrom<Args> for Config {
    type Error = ConfigError;

    fn try_from(args: Args) -> Result<Self, ConfigError> {
        // Destructured in full (here and in each group's validator) so that a flag
        // nobody reads is a compile error.
        let Args {
            mut serving,
            upstream,
            mut kube,
            policy,
            oidc,
            mut cache,
            endpoint,
            logging,
            legacy,
            apiserver,
            deckhouse,
            audit,
        } = args;
        let LoggingArgs {
            log_format: _,
            access_log,
        } = logging;
        let mut problems = Problems {
            errors: legacy.refused(),
            warnings: Vec::new(),
        };
        let (front_proxy, rewrite) = dialect::resolve(
            apiserver,
            &mut serving,
            &mut kube,
            &mut cache,
            &mut problems,
        );
        let client_ca_given = serving.client_ca_file.is_some();
        // Deckhouse's fork: its config's upstreams: and excludePaths, its flags.
        let deckhouse = upstreams::read(
            deckhouse,
            policy.config_file.as_deref(),
            &mut cache,
            &mut problems,
        );
        let mut flags = listeners::from_flags(&serving, upstream, &policy);
        deckhouse.apply(&mut flags, &mut problems);
        // The flags define a listener unless --listeners-file declares them all.
        let flags_listener = flags.upstream.is_some() || serving.listeners_file.is_none();
        if !flags_listener {
            for key in flags.given() {
                problems.add(format!(
                    "{} configures the listener --upstream defines, and there is none \
                     (--listeners-file declares them all): give it to a listener there, as {}",
                    key.flag, key.key
                ));
            }
        }
        let serving = serving::validate(serving, &mut problems);
        // Not served without --upstream beside the file, and what it could say is
        // reported above; its identity headers are still the auth endpoint's.
        let mut unserved = Problems::default();
        let mut flags = listeners::validate(
            flags,
            &listeners::Declared::Flags,
            &serving.tls_policy,
            if flags_listener {
                &mut problems
            } else {
                &mut unserved
            },
        );
        deckhouse.policy(&mut flags.policy);
        flags.routes = deckhouse.routes(&flags.upstream, &flags.policy.rbac_files, &mut problems);
        flags.livez = deckhouse.livez.clone();
        let caches = auth::caches(cache, &mut problems);
        let mut auth = auth::validate(kube, policy, caches, auth::Purpose::Proxy, &mut problems);
        auth.front_proxy = front_proxy::settings(front_proxy, rewrite, &mut problems);
        auth.authn.oidc = oidc::validate(oidc, &mut problems);
        if client_ca_given && auth.authn.oidc.is_some() {
            problems.warn(
                "--client-ca-file: client certificates do not authenticate while --oidc-issuer \
                 is set (as in kube-rbac-proxy); only OIDC bearer tokens do",
            );
        }
        let auth_endpoint = auth_endpoint(endpoint, &flags.upstream.identity, &mut problems);
        let serving::Serving {
            proxy_endpoints_port,
            worker_threads,
            shutdown_grace,
            tls_policy,
            http,
            listeners_file,
        } = serving;
        if let Some(port) =
            proxy_endpoints_port.filter(|p| flags_listener && *p == flags.listen.port)
        {
            problems.add(format!(
                "--proxy-endpoints-port {port} is the port of --secure-listen-address"
            ));
        }
        let (file_listeners, listeners_file) = match listeners_file {
            Some(path) => {
                let context = listeners::Context {
                    flags_listener: flags_listener.then_some(&flags.listen),
                    proxy_endpoints_port,
                    auth_endpoint: auth_endpoint.as_ref().map(|(address, _)| address),
                    tls_policy: &tls_policy,
                };
                let (listeners, file) = listeners::read(&path, &context, &mut problems);
                (listeners, Some(file))
            }
            None => (Vec::new(), None),
        };
        let mut flags = flags_listener.then_some(flags);
        if let Some(flags) = flags.as_mut().filter(|_| listeners_file.is_some()) {
            flags.name = Some(FLAGS_LISTENER.to_owned());
        }
        let audit = audit::settings(audit, &mut problems);
        let warnings = std::mem::take(&mut problems.warnings);
        problems.finish(Config {
            listeners: flags.into_iter().chain(file_listeners).collect(),
            proxy_endpoints_port,
            worker_threads,
            shutdown_grace,
            http,
            auth,
            access_log,
            audit,
            auth_endpoint,
            listeners_file,
            warnings,
        })
    }
}

/// `--auth-endpoint-*`: where, and whose conventions. Its identity headers are the
/// upstream's (`--auth-header-*-field-name`).
fn auth_endpoint(
    args: AuthEndpointArgs,
    identity: &IdentityHeaders,
    problems: &mut Problems,
) -> Option<(ListenAddress, AuthEndpointSettings)> {
    let AuthEndpointArgs {
        auth_endpoint_address,
        auth_endpoint_style,
        auth_endpoint_path_prefix,
    } = args;
    let prefix = auth_endpoint_path_prefix.trim_end_matches('/').to_owned();
    if !prefix.is_empty() && !prefix.starts_with('/') {
        problems.add("--auth-endpoint-path-prefix must start with '/'");
    }
    let style = match auth_endpoint_style.as_str() {
        "traefik" => Style::Traefik,
        "envoy" => Style::Envoy { prefix },
        _ => Style::Nginx,
    };
    let address = auth_endpoint_address?;
    Some((
        address,
        AuthEndpointSettings {
            style,
            identity: identity.clone(),
        },
    ))
}

impl TryFrom<CanIArgs> for CanIConfig {
    type Error = ConfigError;

    fn try_from(args: CanIArgs) -> Result<Self, ConfigError> {
        let CanIArgs {
            token_file,
            as_user,
            as_groups,
            path,
            verb,
            headers,
            kube,
            policy,
            livez_path,
            kube_rbac_proxy_config,
            oidc,
        } = args;
        let mut problems = Problems::default();
        // Deckhouse's config as the proxy reads it; no cache to fold a flag into here.
        let deckhouse = args::DeckhouseArgs {
            stale_cache_interval: None,
            livez_path,
            kube_rbac_proxy_config,
        };
        let deckhouse = upstreams::read(
            deckhouse,
            policy.config_file.as_deref(),
            &mut CacheArgs {
                auth_cache_ttl: None,
                auth_negative_cache_ttl: None,
                authz_allow_ttl: None,
                authz_deny_ttl: None,
                cache_max_entries: 0,
                stale_if_error: Duration::ZERO,
            },
            &mut problems,
        );
        let headers = headers
            .iter()
            .filter_map(|h| match h.split_once(':') {
                Some((name, value)) => Some((name.trim().to_owned(), value.trim().to_owned())),
                None => {
                    problems.add(format!("--header {h:?}: want NAME: VALUE"));
                    None
                }
            })
            .collect();
        // The flags' listener's local policy, made as the proxy makes it.
        let mut local = listeners::policy(
            &listeners::Declared::Flags,
            policy.config_file.clone(),
            policy.rbac_file.clone(),
            &mut problems,
        );
        deckhouse.policy(&mut local);
        let routes = deckhouse.route_policies(&local.rbac_files, &mut problems);
        let purpose = match as_user {
            Some(_) => auth::Purpose::CanIAsUser,
            None => auth::Purpose::Proxy,
        };
        let mut auth = auth::validate(
            kube,
            policy,
            auth::Caches::one_shot(),
            purpose,
            &mut problems,
        );
        auth.authn.oidc = oidc::validate(*oidc, &mut problems);
        let who = match (as_user, token_file) {
            (Some(name), _) => Who::User {
                name,
                groups: as_groups,
            },
            (None, Some(path)) => Who::Token(path),
            (None, None) => {
                problems.add("--token-file or --as is required");
                Who::User {
                    name: String::new(),
                    groups: Vec::new(),
                }
            }
        };
        problems.finish(CanIConfig {
            auth,
            policy: local,
            who,
            path,
            verb,
            headers,
            routes,
            livez: deckhouse.livez.clone(),
        })
    }
}

#[cfg(test)]
mod tests;
