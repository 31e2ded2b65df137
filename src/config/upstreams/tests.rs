//! Deckhouse's config into routes: what the fork accepts, what it refuses, what it
//! ignores (and we say so).

use std::{io::Write as _, time::Duration};

use clap::Parser;

use crate::{
    authz::ConfigSource,
    config::{Args, Config},
};

fn parse(args: &[&str]) -> Result<Config, String> {
    let mut argv = vec!["scrape-guard"];
    argv.extend_from_slice(args);
    let args = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
    Config::try_from(args).map_err(|e| e.to_string())
}

fn file(contents: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(contents.as_bytes()).unwrap();
    file
}

/// Deckhouse's ingress-nginx sidecar's config (Helm values filled in).
const INGRESS_NGINX: &str = "\
excludePaths:
- /controller/healthz
upstreams:
- upstream: http://127.0.0.1:10254/
  path: /controller/
  authorization:
    resourceAttributes:
      namespace: d8-ingress-nginx
      apiGroup: apps
      apiVersion: v1
      resource: daemonsets
      subresource: prometheus-controller-metrics
      name: ingress-nginx
- upstream: http://127.0.0.1:9091/metrics
  path: /protobuf/metrics
  authorization:
    resourceAttributes:
      namespace: d8-ingress-nginx
      apiGroup: apps
      apiVersion: v1
      resource: daemonsets
      subresource: prometheus-protobuf-metrics
      name: ingress-nginx
";

#[test]
fn upstreams_route_the_flags_listener_without_upstream() {
    let config_file = file(INGRESS_NGINX);
    let path = config_file.path().to_str().unwrap();
    let config = parse(&[
        &format!("--config-file={path}"),
        "--stale-cache-interval=1h30m",
    ])
    .unwrap();
    let listener = &config.listeners[0];
    let routes: Vec<(String, String)> = listener
        .routes
        .iter()
        .map(|r| (r.pattern.to_string(), r.upstream.url.to_string()))
        .collect();
    assert_eq!(
        routes,
        [
            ("/controller/".into(), "http://127.0.0.1:10254/".into()),
            (
                "/protobuf/metrics".into(),
                "http://127.0.0.1:9091/metrics".into()
            ),
        ]
    );
    for route in &listener.routes {
        assert!(matches!(
            route.policy.config,
            Some(ConfigSource::Route { .. })
        ));
        assert!(
            route.policy.condition.is_some(),
            "re-read only while the routes stay"
        );
    }
    assert_eq!(
        listener.paths.to_string(),
        "every path; unguarded: /controller/healthz"
    );
    assert_eq!(config.auth.authz.cache.stale, Duration::from_secs(5400));
    assert_eq!(config.auth.authn.cache.stale, Duration::from_secs(5400));
}

#[test]
fn the_environment_is_read_instead_of_the_config_file() {
    let config_file = file("authorization:\n  static: [{user: {name: x}}]\n");
    let path = config_file.path().to_str().unwrap();
    let env = "upstreams:\n- upstream: http://127.0.0.1:9101/metrics\n  path: /metrics\n";
    let config = parse(&[
        &format!("--config-file={path}"),
        &format!("--kube-rbac-proxy-config={env}"),
    ])
    .unwrap();
    let listener = &config.listeners[0];
    assert_eq!(listener.routes.len(), 1);
    assert!(matches!(
        listener.routes[0].policy.config,
        Some(ConfigSource::Env {
            locate: Some(_),
            ..
        })
    ));
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.contains("is not read: KUBE_RBAC_PROXY_CONFIG")),
        "{:?}",
        config.warnings
    );
    // Empty is unset, as in the fork: the file is read.
    let config = parse(&[
        "--upstream=http://127.0.0.1:9100/",
        &format!("--config-file={path}"),
        "--kube-rbac-proxy-config=",
    ])
    .unwrap();
    assert!(config.listeners[0].routes.is_empty());
    assert!(matches!(
        config.listeners[0].policy.config,
        Some(ConfigSource::File(_))
    ));
}

#[test]
fn without_upstreams_the_environments_authorization_is_the_flags_listeners() {
    let env = "excludePaths: [/healthz]\nauthorization:\n  resourceAttributes: {namespace: x}\n";
    let config = parse(&[
        "--upstream=http://127.0.0.1:9100/",
        &format!("--kube-rbac-proxy-config={env}"),
    ])
    .unwrap();
    let listener = &config.listeners[0];
    assert!(listener.routes.is_empty());
    assert!(matches!(
        listener.policy.config,
        Some(ConfigSource::Env { locate: None, .. })
    ));
    assert_eq!(
        listener.paths.to_string(),
        "every path; unguarded: /healthz"
    );
    // Still --upstream is required when nothing routes.
    let error = parse(&[&format!("--kube-rbac-proxy-config={env}")]).unwrap_err();
    assert!(error.contains("--upstream is required"), "{error}");
}

#[test]
fn what_the_fork_refuses_or_we_cannot_honour_is_a_startup_error() {
    let cases = [
        ("upstreams:\n- upstream: http://h:1/\n", "upstreams[0].path is empty"),
        ("upstreams:\n- path: /x\n", "upstreams[0].upstream"),
        (
            "upstreams:\n- {upstream: 'http://h:1/', path: /a}\n- {upstream: 'http://h:2/', path: /a}\n",
            "upstreams[1].path /a is registered twice",
        ),
        (
            "upstreams:\n- {upstream: 'http://h:1/', path: /livez}\n",
            "path /livez is registered twice",
        ),
        (
            "upstreams:\n- {upstream: 'https://h:1/', path: /a, upstreamInsecureSkipVerify: true}\n",
            "always verifies an https upstream",
        ),
        ("upstreams:\n- {upstream: 'http://h:1/', path: '/{x}'}\n", "wildcards"),
        ("upstreams: {path: /a}\n", "upstreams"),
        ("excludePaths: /healthz\n", "excludePaths"),
    ];
    for (env, want) in cases {
        let error = parse(&[
            "--livez-path=/livez",
            &format!("--kube-rbac-proxy-config={env}"),
        ])
        .unwrap_err();
        assert!(error.contains(want), "{env}: {error}");
        assert!(error.contains("KUBE_RBAC_PROXY_CONFIG"), "{env}: {error}");
    }
    let error = parse(&[
        "--allow-paths=/metrics",
        "--kube-rbac-proxy-config=excludePaths: [/healthz]\nupstreams: [{upstream: 'http://h:1/', path: /}]\n",
    ])
    .unwrap_err();
    assert!(
        error.contains("cannot be used with --allow-paths"),
        "{error}"
    );
    let error = parse(&[
        "--upstream=http://h:1/",
        "--stale-if-error=1m",
        "--stale-cache-interval=2m",
    ])
    .unwrap_err();
    assert!(error.contains("disagree"), "{error}");
    assert!(parse(&["--upstream=http://h:1/", "--livez-path=livez"]).is_err());
}

#[test]
fn what_the_fork_ignores_is_warned_about() {
    let env =
        "upstreams:\n- upstream: http://h:1/\n  path: /a\n  upstreamInsecureSkipVerify: true\n  \
               upstreamCaFile: /ca.crt\n  excludePaths: [/x]\n  unknownKey: 1\n";
    let config = parse(&[
        "--upstream=http://other:1/",
        "--upstream-ca-file=/x.crt",
        &format!("--kube-rbac-proxy-config={env}"),
    ])
    .unwrap();
    let warnings = config.warnings.join("\n");
    for want in [
        "--upstream is not used",
        "--upstream-ca-file is not used",
        "upstreamInsecureSkipVerify has no effect",
        "upstreamCaFile is not used",
        "excludePaths is ignored",
        "unknown key upstreams[0].unknownKey",
    ] {
        assert!(warnings.contains(want), "{want}: {warnings}");
    }
    assert_eq!(
        config.listeners[0].routes[0].upstream.url.to_string(),
        "http://h:1/"
    );
}
