//! Flag validation into a `Config`: defaults, Go value forms, every problem at once.

use super::*;
use crate::{apiserver::RateLimit, tls::TlsSource};
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
    assert_eq!(config.listeners[0].listen.to_string(), "0.0.0.0:8443");
    assert!(matches!(
        config.listeners[0].tls.source,
        TlsSource::SelfSigned
    ));
    assert!(config.http.http2);
    assert_eq!(config.http.max_concurrent_streams, 100);
    assert_eq!(config.proxy_endpoints_port, None);
    assert_eq!(config.auth.authn.cache.positive, Duration::from_secs(120));
    assert_eq!(config.auth.authn.cache.negative, Duration::from_secs(10));
    assert_eq!(config.auth.authz.cache.positive, Duration::from_secs(300));
    assert_eq!(config.auth.authz.cache.negative, Duration::from_secs(30));
    assert_eq!(config.auth.authn.cache.capacity, 65536);
    assert_eq!(config.worker_threads, serving::available_cpus().min(2));
    assert_eq!(config.auth.apiserver.timeout, Duration::from_secs(5));
    assert_eq!(
        config.listeners[0].upstream.timeout,
        Duration::from_secs(30)
    );
    assert_eq!(config.shutdown_grace, Duration::from_secs(10));
    assert_eq!(
        config.auth.apiserver.rate_limit,
        RateLimit::TokenBucket {
            qps: 5.0,
            burst: 10
        }
    );
    assert!(!config.listeners[0].upstream.identity.enabled);
    assert_eq!(config.listeners[0].upstream.identity.user, "x-remote-user");
    assert_eq!(
        config.listeners[0].upstream.identity.groups,
        "x-remote-groups"
    );
    assert_eq!(config.listeners[0].upstream.identity.separator, "|");
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
    assert_eq!(config.listeners[0].listen.host, "10.1.2.3");
    assert_eq!(config.listeners[0].tls.policy.cipher_suites().len(), 6 + 3);
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
    assert!(!config.http.http2);
    assert!(config.listeners[0].upstream.identity.enabled);
    assert_eq!(config.auth.authn.audiences, ["a", "b"]);
    assert_eq!(config.auth.authz.cache.positive, Duration::from_secs(90));
    assert_eq!(config.auth.apiserver.rate_limit, RateLimit::Unlimited);

    let config = parse(&[
        "--upstream=http://127.0.0.1:9100/",
        "--http2-disable=false",
        "--auth-header-fields-enabled=0",
    ])
    .unwrap();
    assert!(config.http.http2);
    assert!(!config.listeners[0].upstream.identity.enabled);
}

#[test]
fn a_repeated_flag_counts_once_as_in_go() {
    // pflag: the last value of a scalar flag wins; list flags accumulate.
    let config = parse(&[
        "--upstream=http://127.0.0.1:1/",
        "--upstream=http://127.0.0.1:9100/",
        "--allow-paths=/metrics",
        "--allow-paths=/federate",
        "--secure-listen-address=:1",
        "--secure-listen-address=127.0.0.1:9443",
    ])
    .unwrap();
    assert_eq!(
        config.listeners[0].upstream.url.to_string(),
        "http://127.0.0.1:9100/"
    );
    assert_eq!(config.listeners[0].listen.to_string(), "127.0.0.1:9443");
    assert!(
        config.listeners[0].paths.to_string().contains("/federate"),
        "{}",
        config.listeners[0].paths
    );
    assert!(
        config.listeners[0].paths.to_string().contains("/metrics"),
        "{}",
        config.listeners[0].paths
    );
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
    let args = Args::try_parse_from(["scrape-guard", "--upstream=http://x/", "--v", "10"]).unwrap();
    assert_eq!(args.legacy.ignored(), ["-v"]);
}

#[test]
fn every_problem_is_reported_at_once_naming_its_flag() {
    let err = parse(&[
        "--insecure-listen-address=0.0.0.0:8080",
        "--oidc-issuer=https://issuer",
        "--tls-cert-file=/x.pem",
        "--tls-min-version=VersionSSL30",
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
fn reviews_per_peer_defaults_to_8_and_must_be_at_least_1() {
    let config = parse(&["--upstream=http://127.0.0.1:9100/"]).unwrap();
    assert_eq!(config.auth.apiserver.max_per_peer, 8);
    let config = parse(&[
        "--upstream=http://127.0.0.1:9100/",
        "--max-reviews-per-peer=64",
    ])
    .unwrap();
    assert_eq!(config.auth.apiserver.max_per_peer, 64);
    let err = parse(&[
        "--upstream=http://127.0.0.1:9100/",
        "--max-reviews-per-peer=0",
    ])
    .unwrap_err();
    assert!(
        err.contains("--max-reviews-per-peer must be at least 1"),
        "{err}"
    );
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
