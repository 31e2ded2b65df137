//! Deckhouse's `upstreams:`: several exporters behind one port, routed by path before
//! authentication, each authorized by its own `authorization:`; `excludePaths`;
//! `KUBE_RBAC_PROXY_CONFIG`; `--livez-path`; no `--upstream` at all.

use scrape_guard_testkit as support;

use std::{net::SocketAddr, path::Path, time::Duration};

use support::{client, eventually, free_port, get, Echo, FakeApiserver, Pki, SCRAPER};

/// The bound on every wait for a reload.
const WAIT: Duration = Duration::from_secs(20);

const OTHER: &str = "system:serviceaccount:monitoring:other";

/// scrape-guard from flags alone (no `--upstream`), in-process, on 127.0.0.1:0.
struct Guard {
    running: Option<scrape_guard::Running>,
    addr: SocketAddr,
}

impl Guard {
    async fn start(pki: &Pki, api: &FakeApiserver, extra: &[&str]) -> Result<Self, String> {
        let mut argv = vec![
            "scrape-guard".to_owned(),
            "--secure-listen-address=127.0.0.1:0".into(),
            format!("--tls-cert-file={}", pki.cert_path.display()),
            format!("--tls-private-key-file={}", pki.key_path.display()),
            format!("--kubeconfig={}", api.kubeconfig.display()),
            "--kube-api-qps=-1".into(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        let args = <scrape_guard::Args as clap::Parser>::try_parse_from(argv)
            .map_err(|e| e.to_string())?;
        let config = scrape_guard::Config::try_from(args).map_err(|e| e.to_string())?;
        let running = scrape_guard::start(config)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self {
            addr: running.addr,
            running: Some(running),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}

/// A route's `resourceAttributes` block, at the indentation of an `upstreams:` entry.
fn resource(namespace: &str, subresource: &str) -> String {
    format!(
        "  authorization:\n    resourceAttributes:\n      namespace: {namespace}\n      \
         apiGroup: apps\n      apiVersion: v1\n      resource: daemonsets\n      \
         subresource: {subresource}\n      name: exporter\n"
    )
}

/// Two exporters: `/main/` (a subtree of the first's root) and `/self/metrics` (exactly,
/// to the second's `/metrics`), each in its own namespace; `/main/healthz` unguarded.
fn config(main: &Echo, own: &Echo) -> String {
    format!(
        "excludePaths:\n- /main/healthz\nupstreams:\n\
         - upstream: {main}/\n  path: /main/\n{main_authz}\
         - upstream: {own}/metrics\n  path: /self/metrics\n{own_authz}",
        main = main.url().trim_end_matches('/'),
        own = own.url().trim_end_matches('/'),
        main_authz = resource("ns-main", "prometheus-main-metrics"),
        own_authz = resource("ns-self", "prometheus-self-metrics"),
    )
}

fn seen(echo: &Echo) -> Vec<String> {
    echo.seen().iter().map(|s| s.uri.clone()).collect()
}

#[tokio::test]
async fn routes_strip_the_prefix_and_authorize_each_upstream_by_its_own_rules() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token("scraper", SCRAPER);
    api.add_token("other", OTHER);
    api.allow_resource(SCRAPER, "get", "ns-main", "daemonsets");
    api.allow_resource(OTHER, "get", "ns-self", "daemonsets");
    let (main, own) = (Echo::start().await, Echo::start().await);
    let file = pki.dir.path().join("config.yaml");
    std::fs::write(&file, config(&main, &own)).unwrap();
    let guard = Guard::start(&pki, &api, &[&format!("--config-file={}", file.display())])
        .await
        .unwrap();
    let c = client(&pki, false);

    // /main/metrics → the first exporter's /metrics, reviewed as ns-main's daemonset.
    let reply = get(&c, &guard.url("/main/metrics?x=1"), Some("scraper"), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(seen(&main), ["/metrics?x=1"]);
    let sar = api.last_sar_spec();
    assert_eq!(sar["resourceAttributes"]["namespace"], "ns-main");
    assert_eq!(
        sar["resourceAttributes"]["subresource"],
        "prometheus-main-metrics"
    );
    // /self/metrics → the second's /metrics (exact: no trailing slash), its own rules;
    // on the same client connection, so never on its connection to the first exporter.
    let reply = get(&c, &guard.url("/self/metrics"), Some("other"), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(seen(&own), ["/metrics"]);
    let sar = api.last_sar_spec();
    assert_eq!(sar["resourceAttributes"]["namespace"], "ns-self");
    assert_eq!(
        sar["resourceAttributes"]["subresource"],
        "prometheus-self-metrics"
    );
    // Each token is allowed on its own route only.
    let reply = get(&c, &guard.url("/self/metrics"), Some("scraper"), &[]).await;
    assert_eq!(reply.status, 403);
    let reply = get(&c, &guard.url("/main/metrics"), Some("other"), &[]).await;
    assert_eq!(reply.status, 403);

    // No route: 404 before anyone is asked; ServeMux's redirects, also unasked.
    let (reviews, sars) = (api.token_reviews(), api.sars());
    for path in ["/metrics", "/self/metrics/x", "/selfish"] {
        let reply = get(&c, &guard.url(path), Some("scraper"), &[]).await;
        assert_eq!(reply.status, 404, "{path}");
    }
    let reply = get(&c, &guard.url("/main"), None, &[]).await;
    assert_eq!(reply.status, 301);
    assert_eq!(reply.headers["location"], "/main/");
    let reply = get(&c, &guard.url("//main/metrics?a=b"), None, &[]).await;
    assert_eq!(reply.status, 301);
    assert_eq!(reply.headers["location"], "/main/metrics?a=b");
    assert_eq!((api.token_reviews(), api.sars()), (reviews, sars));

    // excludePaths: forwarded without credentials, stripped like any other.
    let reply = get(&c, &guard.url("/main/healthz"), None, &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(seen(&main).last().unwrap(), "/healthz");
    let reply = get(&c, &guard.url("/main/other"), None, &[]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(seen(&main).len(), 2, "nothing else reached the exporter");
    assert_eq!(seen(&own).len(), 1);
    guard.stop().await;
}

#[tokio::test]
async fn the_environments_config_and_the_livez_path_need_no_upstream_flag() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token("scraper", SCRAPER);
    api.allow_resource(SCRAPER, "get", "ns-main", "daemonsets");
    let (main, own) = (Echo::start().await, Echo::start().await);
    // Through the flag the environment variable sets (KUBE_RBAC_PROXY_CONFIG), so that
    // tests running at once do not share it; the binary's test below reads the variable.
    let env = format!("--kube-rbac-proxy-config={}", config(&main, &own));
    let guard = Guard::start(&pki, &api, &[&env, "--livez-path=/livez"])
        .await
        .unwrap();
    let c = client(&pki, false);
    let reply = get(&c, &guard.url("/livez"), None, &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "OK");
    let reply = get(&c, &guard.url("/main/metrics"), Some("scraper"), &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(seen(&main), ["/metrics"]);
    assert!(seen(&own).is_empty());
    guard.stop().await;
}

#[tokio::test]
async fn a_routes_authorization_reloads_but_a_route_change_waits_for_a_restart() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token("scraper", SCRAPER);
    api.allow(SCRAPER, "get", "/metrics");
    api.allow_resource(SCRAPER, "get", "ns-main", "daemonsets");
    let (main, own) = (Echo::start().await, Echo::start().await);
    let file = pki.dir.path().join("config.yaml");
    let first = config(&main, &own);
    std::fs::write(&file, &first).unwrap();
    let port = free_port();
    let guard = Guard::start(
        &pki,
        &api,
        &[
            &format!("--config-file={}", file.display()),
            &format!("--proxy-endpoints-port={port}"),
        ],
    )
    .await
    .unwrap();
    let c = client(&pki, false);
    let scrape = || {
        let (c, url) = (c.clone(), guard.url("/main/metrics"));
        async move { get(&c, &url, Some("scraper"), &[]).await.status }
    };
    assert_eq!(scrape().await, 200);

    // A namespace nobody granted in the block: taken without a restart (a new review,
    // denied: the cached allow was for the old attributes).
    write(&file, &first.replace("ns-main", "ns-denied"));
    eventually(WAIT, || async {
        match scrape().await.as_u16() {
            403 => Ok(()),
            other => Err(format!("not reloaded yet: {other}")),
        }
    })
    .await;
    // A route renamed, its block back to the granted namespace: refused whole (the
    // gauge says so), so scrapes of /main/ go on being denied as before, and the new
    // path is nobody's.
    let changed = first.replace("path: /main/", "path: /renamed/");
    write(&file, &changed);
    let gauge = format!(
        "scrape_guard_config_last_reload_successful{{flag=\"--config-file\",file=\"{}\"}} 0",
        file.display()
    );
    eventually(WAIT, || async {
        let reply = get(
            &c,
            &format!("https://localhost:{port}/metrics"),
            Some("scraper"),
            &[],
        )
        .await;
        match reply.text().contains(&gauge) {
            true => Ok(()),
            false => Err(format!("no {gauge} in\n{}", reply.text())),
        }
    })
    .await;
    assert_eq!(scrape().await, 403);
    let renamed = get(&c, &guard.url("/renamed/metrics"), Some("scraper"), &[]).await;
    assert_eq!(renamed.status, 404);
    guard.stop().await;
}

fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn what_cannot_be_served_as_the_fork_would_is_a_startup_error() {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    let twice = "--kube-rbac-proxy-config=upstreams:\n\
                 - {upstream: 'http://127.0.0.1:1/', path: /a}\n\
                 - {upstream: 'http://127.0.0.1:2/', path: /a}\n";
    let error = Guard::start(&pki, &api, &[twice]).await.err().unwrap();
    assert!(
        error.contains("upstreams[1].path /a is registered twice"),
        "{error}"
    );
    let insecure = "--kube-rbac-proxy-config=upstreams:\n\
                    - {upstream: 'https://127.0.0.1:1/', path: /a, upstreamInsecureSkipVerify: true}\n";
    let error = Guard::start(&pki, &api, &[insecure]).await.err().unwrap();
    assert!(error.contains("upstreamInsecureSkipVerify"), "{error}");
}

/// The real binary reads `KUBE_RBAC_PROXY_CONFIG` itself (and needs no `--upstream`): a
/// config with one path twice is refused naming the variable, before anything binds.
#[test]
fn the_binary_reads_kube_rbac_proxy_config_from_the_environment() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_scrape-guard"))
        .args(["--secure-listen-address=127.0.0.1:0"])
        .env(
            "KUBE_RBAC_PROXY_CONFIG",
            "upstreams:\n- {upstream: 'http://127.0.0.1:1/', path: /a}\n\
             - {upstream: 'http://127.0.0.1:2/', path: /a}\n",
        )
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("KUBE_RBAC_PROXY_CONFIG: upstreams[1].path /a is registered twice"),
        "{stderr}"
    );
    assert!(!stderr.contains("--upstream is required"), "{stderr}");
}

/// `can-i` decides a routed path as the proxy does: by its route's own `authorization:`,
/// read from `KUBE_RBAC_PROXY_CONFIG` or `--config-file`, and names the route; a path no
/// route matches is the proxy's 404.
#[test]
fn can_i_decides_each_path_by_its_routes_authorization() {
    let dir = tempfile::tempdir().unwrap();
    // Standalone: alice may get ns-main's daemonset subresource, nothing in ns-self.
    let rbac = dir.path().join("rbac.yaml");
    std::fs::write(
        &rbac,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: r, namespace: \
         ns-main}\nrules:\n- {apiGroups: [apps], resources: [daemonsets/prometheus-main-metrics], \
         resourceNames: [exporter], verbs: [get]}\n---\napiVersion: rbac.authorization.k8s.io/v1\n\
         kind: RoleBinding\nmetadata: {name: r, namespace: ns-main}\nroleRef: {apiGroup: \
         rbac.authorization.k8s.io, kind: Role, name: r}\nsubjects:\n- {apiGroup: \
         rbac.authorization.k8s.io, kind: User, name: alice}\n",
    )
    .unwrap();
    let config = format!(
        "upstreams:\n- upstream: http://127.0.0.1:10254/\n  path: /main/\n{}\
         - upstream: http://127.0.0.1:9091/metrics\n  path: /self/metrics\n{}",
        resource("ns-main", "prometheus-main-metrics"),
        resource("ns-self", "prometheus-self-metrics"),
    );
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, &config).unwrap();
    let can_i_with = |path: &str, from_env: bool, extra: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_scrape-guard"));
        command
            .args([
                "can-i".to_owned(),
                "--as=alice".to_owned(),
                format!("--rbac-file={}", rbac.display()),
                format!("--path={path}"),
            ])
            .args(extra)
            .env_remove("KUBECONFIG")
            .env_remove("KUBE_RBAC_PROXY_CONFIG");
        if from_env {
            command.env("KUBE_RBAC_PROXY_CONFIG", &config);
        } else {
            command.arg(format!("--config-file={}", file.display()));
        }
        let output = command.output().unwrap();
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        let err = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code().unwrap_or(-1), format!("{out}{err}"))
    };
    let can_i = |path: &str, from_env: bool| can_i_with(path, from_env, &[]);
    for from_env in [true, false] {
        let (code, out) = can_i("/main/metrics", from_env);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("route:     upstreams: path /main/\n"), "{out}");
        assert!(out.contains("decision:  allowed"), "{out}");
        assert!(
            out.contains("prometheus-main-metrics") && out.contains("ns-main"),
            "the request is the route's: {out}"
        );
        let (code, out) = can_i("/self/metrics", from_env);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains("route:     upstreams: path /self/metrics\n"),
            "{out}"
        );
        assert!(out.contains("decision:  denied"), "{out}");
        // The grant printed is for the route's own question.
        assert!(
            out.contains("namespace: ns-self")
                && out.contains("daemonsets/prometheus-self-metrics"),
            "{out}"
        );
        let (code, out) = can_i("/metrics", from_env);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("404 Not Found"), "{out}");
        assert!(!out.contains("user:"), "no one is asked about a 404: {out}");
        // ServeMux's redirect, and --livez-path: answered before any authorization.
        let (code, out) = can_i("/main", from_env);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("301 Moved Permanently to /main/"), "{out}");
        let (code, out) = can_i_with("/livez", from_env, &["--livez-path=/livez"]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("route:     --livez-path"), "{out}");
    }
}
