//! Command-line flags (kube-rbac-proxy compatible) and their validation into a `Config`.
//!
//! Manifests written for kube-rbac-proxy must start scrape-guard unchanged, so flag
//! names, Go's `--flag=value`/`--flag value` forms, Go booleans (`--flag`,
//! `--flag=false`), comma lists, Go durations and Go listen addresses (`:8443`,
//! `[$(IP)]:9100`) are all accepted. klog's logging flags are accepted and ignored with
//! one warning. Flags we cannot honour safely (`--insecure-listen-address`, `--oidc-*`)
//! are a startup error rather than silently ignored: ignoring an auth flag fails open.
//!
//! Validation collects every problem and reports them together, each naming its flag.

mod args;
mod go;

use std::{fmt, path::PathBuf, time::Duration};

use http::Uri;

pub use self::{
    args::*,
    go::{parse_go_bool, parse_go_duration, parse_listen_address, ListenAddress},
};

use crate::{
    apiserver::RateLimit,
    paths::PathPolicy,
    tls::{TlsPolicy, TlsSource},
    upstream::{IdentityHeaders, UpstreamOptions},
};

/// The validated configuration `run` works from.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: ListenAddress,
    pub tls: TlsSource,
    pub tls_policy: TlsPolicy,
    pub client_ca_file: Option<PathBuf>,
    pub http2: bool,
    pub http2_max_concurrent_streams: u32,
    pub http2_max_size: u32,
    pub max_request_header_bytes: u32,
    pub max_connections: usize,
    /// `--worker-threads`, already capped at the CPUs available.
    pub worker_threads: usize,
    pub tls_handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub proxy_endpoints_port: Option<u16>,
    pub shutdown_grace: Duration,
    pub upstream: Uri,
    pub upstream_options: UpstreamOptions,
    pub upstream_timeout: Duration,
    pub paths: PathPolicy,
    pub identity_headers: IdentityHeaders,
    pub kubeconfig: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
    pub rbac_files: Vec<PathBuf>,
    pub token_auth_file: Option<PathBuf>,
    pub rate_limit: RateLimit,
    pub audiences: Vec<String>,
    pub apiserver_timeout: Duration,
    pub ttls: Ttls,
    pub cache_max_entries: u64,
    pub stale_if_error: Duration,
    pub max_inflight_reviews: usize,
    pub access_log: bool,
}

/// Cache lifetimes, one per kind of answer.
#[derive(Debug, Clone, Copy)]
pub struct Ttls {
    pub authn_ok: Duration,
    pub authn_rejected: Duration,
    pub authz_allow: Duration,
    pub authz_deny: Duration,
}

/// Every problem found in the flags, reported together.
#[derive(Debug)]
pub struct ConfigError(pub Vec<String>);

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

/// CPUs this process may use: affinity and cgroup CPU quota included.
fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

impl TryFrom<Args> for Config {
    type Error = ConfigError;

    fn try_from(args: Args) -> Result<Self, ConfigError> {
        // Destructured in full so that a flag nobody reads is a compile error.
        let Args {
            serving,
            upstream,
            kube,
            policy,
            cache,
            logging,
            legacy,
        } = args;
        let LoggingArgs {
            log_format: _,
            access_log,
        } = logging;
        let PolicyArgs {
            config_file,
            rbac_file,
            token_auth_file,
        } = policy;
        let ServingArgs {
            secure_listen_address,
            tls_cert_file,
            client_ca_file,
            tls_private_key_file,
            tls_min_version,
            tls_cipher_suites,
            http2_disable,
            http2_max_concurrent_streams,
            http2_max_size,
            max_request_header_bytes,
            max_connections,
            worker_threads,
            tls_handshake_timeout,
            header_read_timeout,
            idle_timeout,
            proxy_endpoints_port,
            shutdown_grace,
        } = serving;
        let UpstreamArgs {
            upstream,
            upstream_ca_file,
            upstream_client_cert_file,
            upstream_client_key_file,
            upstream_force_h2c,
            upstream_timeout,
            allow_paths,
            ignore_paths,
            auth_header_fields_enabled,
            auth_header_user_field_name,
            auth_header_groups_field_name,
            auth_header_groups_field_separator,
        } = upstream;
        let KubeArgs {
            kubeconfig,
            kube_api_qps,
            kube_api_burst,
            auth_token_audiences,
            apiserver_timeout,
            max_inflight_reviews,
        } = kube;
        let CacheArgs {
            auth_cache_ttl,
            auth_negative_cache_ttl,
            authz_allow_ttl,
            authz_deny_ttl,
            cache_max_entries,
            stale_if_error,
        } = cache;

        let mut problems = legacy.refused();
        let mut check = |result: Result<(), String>| {
            if let Err(problem) = result {
                problems.push(problem);
            }
        };

        let tls = match (tls_cert_file, tls_private_key_file) {
            (Some(cert), Some(key)) => TlsSource::Files { cert, key },
            (None, None) => TlsSource::SelfSigned,
            (Some(_), None) => {
                check(Err("--tls-cert-file needs --tls-private-key-file".into()));
                TlsSource::SelfSigned
            }
            (None, Some(_)) => {
                check(Err("--tls-private-key-file needs --tls-cert-file".into()));
                TlsSource::SelfSigned
            }
        };
        let tls_policy = TlsPolicy::from_flags(&tls_min_version, &tls_cipher_suites)
            .unwrap_or_else(|problem| {
                check(Err(problem));
                TlsPolicy::default()
            });

        let (upstream, unix_socket) = match upstream.as_deref().map(parse_upstream) {
            Some(Ok(parsed)) => parsed,
            Some(Err(problem)) => {
                check(Err(problem));
                (Uri::default(), None)
            }
            None => {
                check(Err(
                    "--upstream is required (e.g. http://127.0.0.1:9100/)".into()
                ));
                (Uri::default(), None)
            }
        };
        let https = upstream.scheme_str() == Some("https") && unix_socket.is_none();
        if upstream_ca_file.is_some() && !https {
            check(Err("--upstream-ca-file needs an https:// --upstream".into()));
        }
        let client_cert = match (upstream_client_cert_file, upstream_client_key_file) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                check(Err(
                    "--upstream-client-cert-file needs --upstream-client-key-file".into(),
                ));
                None
            }
            (None, Some(_)) => {
                check(Err(
                    "--upstream-client-key-file needs --upstream-client-cert-file".into(),
                ));
                None
            }
        };
        if client_cert.is_some() && !https {
            check(Err(
                "--upstream-client-cert-file needs an https:// --upstream".into(),
            ));
        }
        if upstream_force_h2c && https {
            check(Err(
                "--upstream-force-h2c is for http:// or unix:// upstreams (https negotiates h2 by ALPN)".into(),
            ));
        }
        let upstream_options = UpstreamOptions {
            ca_file: upstream_ca_file,
            client_cert,
            force_h2c: upstream_force_h2c,
            unix_socket,
        };

        let paths = PathPolicy::new(&allow_paths, &ignore_paths).unwrap_or_else(|problem| {
            check(Err(problem));
            PathPolicy::default()
        });

        let header_name = |flag: &str, value: &str| {
            http::HeaderName::try_from(value.trim())
                .map_err(|_| format!("{flag}: {value:?} is not a valid HTTP header name"))
        };
        let user = header_name(
            "--auth-header-user-field-name",
            &auth_header_user_field_name,
        );
        let groups = header_name(
            "--auth-header-groups-field-name",
            &auth_header_groups_field_name,
        );
        let identity_headers = match (user, groups) {
            (Ok(user), Ok(groups)) => Some(IdentityHeaders {
                enabled: auth_header_fields_enabled,
                user,
                groups,
                separator: auth_header_groups_field_separator,
            }),
            (user, groups) => {
                check(user.map(drop));
                check(groups.map(drop));
                None
            }
        };

        for (flag, value) in [
            ("--apiserver-timeout", apiserver_timeout),
            ("--upstream-timeout", upstream_timeout),
            ("--tls-handshake-timeout", tls_handshake_timeout),
            ("--header-read-timeout", header_read_timeout),
            ("--idle-timeout", idle_timeout),
        ] {
            if value.is_zero() {
                check(Err(format!("{flag} must be greater than 0")));
            }
        }
        if max_inflight_reviews == 0 {
            check(Err("--max-inflight-reviews must be at least 1".into()));
        }
        if cache_max_entries == 0 {
            check(Err("--cache-max-entries must be at least 1".into()));
        }
        if !(16_384..=16_777_215).contains(&http2_max_size) {
            check(Err(format!(
                "--http2-max-size {http2_max_size} must be between 16384 and 16777215"
            )));
        }
        if max_request_header_bytes < 8192 {
            check(Err(
                "--max-request-header-bytes must be at least 8192".into()
            ));
        }
        if max_connections == 0 {
            check(Err("--max-connections must be at least 1".into()));
        }
        if worker_threads == 0 {
            check(Err("--worker-threads must be at least 1".into()));
        }
        if http2_max_concurrent_streams == 0 {
            check(Err(
                "--http2-max-concurrent-streams must be at least 1".into()
            ));
        }
        if proxy_endpoints_port != 0 && proxy_endpoints_port == secure_listen_address.port {
            check(Err(format!(
                "--proxy-endpoints-port {proxy_endpoints_port} is the port of \
                 --secure-listen-address"
            )));
        }
        if !kube_api_qps.is_finite() {
            check(Err("--kube-api-qps must be a number".into()));
        }

        let (Some(identity_headers), true) = (identity_headers, problems.is_empty()) else {
            return Err(ConfigError(problems));
        };
        Ok(Config {
            listen: secure_listen_address,
            tls,
            tls_policy,
            client_ca_file,
            http2: !http2_disable,
            http2_max_concurrent_streams,
            http2_max_size,
            max_request_header_bytes,
            max_connections,
            worker_threads: worker_threads.min(available_cpus()),
            tls_handshake_timeout,
            header_read_timeout,
            idle_timeout,
            proxy_endpoints_port: (proxy_endpoints_port != 0).then_some(proxy_endpoints_port),
            shutdown_grace,
            upstream,
            upstream_options,
            upstream_timeout,
            paths,
            identity_headers,
            kubeconfig,
            config_file,
            rbac_files: rbac_file,
            token_auth_file,
            rate_limit: RateLimit::from_flags(kube_api_qps, kube_api_burst),
            audiences: auth_token_audiences
                .into_iter()
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect(),
            apiserver_timeout,
            ttls: Ttls {
                authn_ok: auth_cache_ttl,
                authn_rejected: auth_negative_cache_ttl,
                authz_allow: authz_allow_ttl,
                authz_deny: authz_deny_ttl,
            },
            cache_max_entries,
            stale_if_error,
            max_inflight_reviews,
            access_log,
        })
    }
}

/// A `--upstream`: an http(s) URL with a host and no user info, or `unix:///socket`
/// (then the requests go to `http://localhost` over that socket).
fn parse_upstream(s: &str) -> Result<(Uri, Option<PathBuf>), String> {
    if let Some(path) = s.strip_prefix("unix://") {
        if !path.starts_with('/') || path.len() < 2 {
            return Err(format!("--upstream {s:?}: want unix:///absolute/path.sock"));
        }
        return Ok((
            Uri::from_static("http://localhost/"),
            Some(PathBuf::from(path)),
        ));
    }
    parse_http_upstream(s).map(|uri| (uri, None))
}

fn parse_http_upstream(s: &str) -> Result<Uri, String> {
    let uri: Uri = s
        .parse()
        .map_err(|e| format!("--upstream {s:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(format!(
                "--upstream {s:?} must start with http:// or https://"
            ))
        }
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("--upstream {s:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "--upstream {s:?}: user info in the URL is not supported"
        ));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["scrape-guard"];
        argv.extend_from_slice(args);
        let args = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
        Config::try_from(args).map_err(|e| e.to_string())
    }

    #[test]
    fn clap_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let config = parse(&["--upstream=http://127.0.0.1:9100/"]).unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:8443");
        assert!(matches!(config.tls, TlsSource::SelfSigned));
        assert!(config.http2);
        assert_eq!(config.http2_max_concurrent_streams, 100);
        assert_eq!(config.proxy_endpoints_port, None);
        assert_eq!(config.ttls.authn_ok, Duration::from_secs(120));
        assert_eq!(config.ttls.authn_rejected, Duration::from_secs(10));
        assert_eq!(config.ttls.authz_allow, Duration::from_secs(300));
        assert_eq!(config.ttls.authz_deny, Duration::from_secs(30));
        assert_eq!(config.cache_max_entries, 65536);
        assert_eq!(config.worker_threads, available_cpus().min(2));
        assert_eq!(config.apiserver_timeout, Duration::from_secs(5));
        assert_eq!(config.upstream_timeout, Duration::from_secs(30));
        assert_eq!(config.shutdown_grace, Duration::from_secs(10));
        assert_eq!(
            config.rate_limit,
            RateLimit::TokenBucket {
                qps: 5.0,
                burst: 10
            }
        );
        assert!(!config.identity_headers.enabled);
        assert_eq!(config.identity_headers.user, "x-remote-user");
        assert_eq!(config.identity_headers.groups, "x-remote-groups");
        assert_eq!(config.identity_headers.separator, "|");
    }

    #[test]
    fn kube_prometheus_node_exporter_sidecar_args() {
        let config = parse(&[
            "--logtostderr",
            "--secure-listen-address=[10.1.2.3]:9100",
            "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
            "--upstream=http://127.0.0.1:9100/",
        ])
        .unwrap();
        assert_eq!(config.listen.host, "10.1.2.3");
        assert_eq!(config.tls_policy.cipher_suites().len(), 6 + 3);
    }

    #[test]
    fn flag_value_forms_and_go_booleans() {
        let config = parse(&[
            "--upstream",
            "http://127.0.0.1:9100/",
            "--http2-disable",
            "--auth-header-fields-enabled=true",
            "--allow-paths",
            "/metrics,/federate",
            "--auth-token-audiences=a,b",
            "--authz-allow-ttl",
            "1m30s",
            "--kube-api-qps=-1",
        ])
        .unwrap();
        assert!(!config.http2);
        assert!(config.identity_headers.enabled);
        assert_eq!(config.audiences, ["a", "b"]);
        assert_eq!(config.ttls.authz_allow, Duration::from_secs(90));
        assert_eq!(config.rate_limit, RateLimit::Unlimited);

        let config = parse(&[
            "--upstream=http://127.0.0.1:9100/",
            "--http2-disable=false",
            "--auth-header-fields-enabled=0",
        ])
        .unwrap();
        assert!(config.http2);
        assert!(!config.identity_headers.enabled);
    }

    #[test]
    fn klog_flags_are_accepted_and_listed() {
        let args = Args::try_parse_from([
            "scrape-guard",
            "--upstream=http://127.0.0.1:9100/",
            "--logtostderr=true",
            "--alsologtostderr",
            "-v=2",
            "--vmodule=foo=3",
            "--log-dir=/tmp",
            "--log-file=/tmp/x",
            "--skip-headers",
            "--stderrthreshold=ERROR",
            "--tls-reload-interval=1m",
            "--log-flush-frequency=5s",
            "--add-dir-header",
            "--one-output=false",
            "--skip-log-headers",
            "--log-backtrace-at=:0",
            "--log-file-max-size=1800",
        ])
        .unwrap();
        assert_eq!(args.legacy.ignored().len(), 15);
        assert!(Config::try_from(args).is_ok());
        let args =
            Args::try_parse_from(["scrape-guard", "--upstream=http://x/", "--v", "10"]).unwrap();
        assert_eq!(args.legacy.ignored(), ["-v"]);
    }

    #[test]
    fn every_problem_is_reported_at_once_naming_its_flag() {
        let err = parse(&[
            "--insecure-listen-address=0.0.0.0:8080",
            "--oidc-issuer=https://issuer",
            "--tls-cert-file=/x.pem",
            "--tls-min-version=VersionTLS10",
            "--tls-cipher-suites=TLS_RSA_WITH_AES_128_CBC_SHA",
            "--allow-paths=/metrics",
            "--ignore-paths=/healthz",
            "--auth-header-user-field-name=bad header",
            "--apiserver-timeout=0",
        ])
        .unwrap_err();
        for needle in [
            "--insecure-listen-address",
            "--oidc-issuer",
            "--tls-private-key-file",
            "--tls-min-version",
            "TLS_RSA_WITH_AES_128_CBC_SHA",
            "--allow-paths",
            "--auth-header-user-field-name",
            "--apiserver-timeout",
            "--upstream is required",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        }
    }

    #[test]
    fn upstream_urls() {
        for good in [
            "http://127.0.0.1:9100/",
            "http://127.0.0.1:9100",
            "https://exporter.local:8443/base/",
            "http://[::1]:9100/",
        ] {
            assert!(parse_upstream(good).is_ok(), "{good}");
        }
        for bad in [
            "127.0.0.1:9100",
            "ftp://x/",
            "http:///metrics",
            "http://u:p@x/",
            "/x",
        ] {
            assert!(parse_upstream(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn env_vars_set_flags() {
        // Each flag declares its SCRAPE_GUARD_ variable; check the names are derived
        // consistently rather than mutating the process environment in a test.
        for arg in Args::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if arg
                .get_help_heading()
                .is_some_and(|h| h.starts_with("Compatibility"))
                || arg.is_hide_set()
                || matches!(long, "help" | "version")
            {
                continue;
            }
            let want = format!("SCRAPE_GUARD_{}", long.to_uppercase().replace('-', "_"));
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert_eq!(env.as_deref(), Some(want.as_str()), "--{long}");
        }
    }
}
