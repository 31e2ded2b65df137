//! Deckhouse's `upstreams:` against the real apiserver: two node-exporters behind one
//! port, routed by path, each route reviewed by a real SubjectAccessReview for its own
//! `resourceAttributes` and decided by real RBAC; the config from
//! `KUBE_RBAC_PROXY_CONFIG`, no `--upstream`, `--livez-path` and
//! `--stale-cache-interval` as Deckhouse's sidecars pass them.

use std::time::Duration;

use super::support::{eventually, free_port, Cluster, NodeExporter, ScrapeGuard};

/// Two routes, each a daemonset's own metrics subresource (the shape of Deckhouse's
/// kube-state-metrics sidecar: a subtree and an exact path).
fn config(main: &NodeExporter, own: &NodeExporter) -> String {
    let route = |upstream: String, path: &str, subresource: &str| {
        format!(
            "- upstream: {upstream}\n  path: {path}\n  authorization:\n    resourceAttributes:\n      \
             namespace: d8-monitoring\n      apiGroup: apps\n      apiVersion: v1\n      \
             resource: daemonsets\n      subresource: {subresource}\n      name: node-exporter\n"
        )
    };
    format!(
        "excludePaths:\n- /main/healthz\nupstreams:\n{}{}",
        route(main.url(), "/main/", "prometheus-main-metrics"),
        route(
            format!("{}metrics", own.url()),
            "/self/metrics",
            "prometheus-self-metrics"
        ),
    )
}

/// A scraper granted the main route's subresource only: `/main/metrics` → 200 with
/// node-exporter's series, `/self/metrics` → 403 (the other route's review), any other
/// path → 404 unasked, `/livez` → `OK` unasked.
#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn deckhouse_upstreams_route_and_review_per_path() {
    let cluster = Cluster::shared().await;
    let sa = ("e2e", "deckhouse-scraper");
    cluster.ensure_service_account(sa).await;
    let rbac = cluster.dir().join("deckhouse-rbac.yaml");
    std::fs::write(
        &rbac,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  \
         name: e2e-deckhouse-main-metrics\nrules:\n- apiGroups: [apps]\n  \
         resources: [daemonsets/prometheus-main-metrics]\n  verbs: [get]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  \
         name: e2e-deckhouse-main-metrics\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  \
         kind: ClusterRole\n  name: e2e-deckhouse-main-metrics\nsubjects:\n\
         - kind: ServiceAccount\n  namespace: e2e\n  name: deckhouse-scraper\n",
    )
    .unwrap();
    cluster.apply_file(&rbac).await.unwrap();
    let dirs = ["main", "self"].map(|d| {
        let dir = cluster.dir().join(format!("deckhouse-{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    });
    let main = NodeExporter::start(&dirs[0]).await;
    let own = NodeExporter::start(&dirs[1]).await;
    let port = free_port();
    let args = vec![
        format!("--secure-listen-address=127.0.0.1:{port}"),
        format!("--kubeconfig={}", cluster.proxy_kubeconfig().display()),
        "--v=2".to_owned(),
        "--logtostderr=true".to_owned(),
        "--stale-cache-interval=1h30m".to_owned(),
        "--livez-path=/livez".to_owned(),
    ];
    let guard = ScrapeGuard::exact(&cluster, "deckhouse", port, args)
        .env("KUBE_RBAC_PROXY_CONFIG", config(&main, &own))
        .start()
        .await;
    let token = cluster.mint_token(sa).await;

    let livez = guard.get("/livez", None).await;
    assert_eq!(livez.status, 200, "{}", livez.describe());
    assert_eq!(livez.text(), "OK");
    // (the apiserver's RBAC sees a new binding after a moment)
    let scraped = eventually(Duration::from_secs(15), "200 on /main/metrics", || async {
        let reply = guard.get("/main/metrics", Some(&token)).await;
        match reply.status_is(200) {
            Ok(()) => Ok(reply),
            Err(e) => Err(e),
        }
    })
    .await;
    assert!(
        scraped.text().contains("node_cpu_seconds_total"),
        "node-exporter's page through /main/: {}",
        scraped.describe()
    );
    let other_route = guard.get("/self/metrics", Some(&token)).await;
    assert_eq!(other_route.status, 403, "{}", other_route.describe());
    assert!(
        other_route.text().contains("daemonsets"),
        "reviewed as the route's resource: {}",
        other_route.describe()
    );
    let nowhere = guard.get("/metrics", Some(&token)).await;
    assert_eq!(nowhere.status, 404, "{}", nowhere.describe());
    let anonymous = guard.get("/main/metrics", None).await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.describe());
}
