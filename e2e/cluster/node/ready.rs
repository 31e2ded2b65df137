//! Pods Ready through the kubelet's probes, the shipped image's user, Prometheus
//! scraping through scrape-guard.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use rustls::pki_types::ServerName;

use super::{
    super::support::{
        eventually, forbidden_message, http_get_bearer, https_get_named, pod_summary, restarts,
        sa_user, NodeTest, NODE_IP, NO_RBAC_SA, PROMETHEUS_SA,
    },
    NODE_EXPORTER_NAME,
};

/// The pods become Ready through the kubelet's own probes, run the shipped image as
/// 65532 on a read-only root, and a real Prometheus scrapes every target through
/// scrape-guard, and scrape-guard's own /metrics on the probes ports (`up == 1`), with
/// the credentials and CA the ServiceMonitors name; a scraper without RBAC sees 403 in
/// `lastError`.
#[tokio::test]
#[ignore = "needs the node cluster: e2e/provision.sh, e2e/images.sh, then e2e/netns.sh cargo test -p scrape-guard-e2e --test cluster -- --ignored node_"]
async fn node_pods_ready_and_scraped_through_the_guard() {
    let t = NodeTest::start().await;
    let _turn = t.turn().await;
    let times = t.start_times();
    println!(
        "from a cold start: apiserver ready {:?}, node Ready {:?}, pods Ready {:?}, first scrape (up == 1) {:?}",
        times.apiserver_ready, times.node_ready, times.pods_ready, times.first_scrape
    );

    for (app, guards) in [
        ("node-exporter", &["scrape-guard"][..]),
        ("kube-state-metrics", &["scrape-guard"][..]),
    ] {
        let pod = t.ready_pod(app, Duration::from_secs(60)).await;
        println!("{}", pod_summary(&pod));
        for guard in guards {
            assert_eq!(
                restarts(&pod, guard),
                0,
                "{guard} restarted: {}",
                pod_summary(&pod)
            );
            let status = process_status(&t, &pod, guard);
            assert!(
                status
                    .lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("65532")),
                "{guard} does not run as 65532:\n{status}"
            );
        }
    }

    let prometheus = t.prometheus();
    // (the last two: scrape-guard's own /metrics on each pod's probes port, the
    // ServiceMonitors deploy/mixin/'s alerts read)
    for job in [
        "scrape-guard-node-exporter",
        "scrape-guard-kube-state-metrics-main",
        "scrape-guard-kube-state-metrics-self",
        "scrape-guard-node-exporter-proxy",
        "scrape-guard-kube-state-metrics-proxy",
    ] {
        eventually(
            Duration::from_secs(60),
            &format!("up == 1 for {job}"),
            || async {
                match prometheus.up(job).await?.as_str() {
                    "1" => Ok(()),
                    other => Err(format!(
                        "up = {other}: {}",
                        prometheus.last_error(job).await
                    )),
                }
            },
        )
        .await;
    }
    // What came through is the exporters' own data: node-exporter read the host's
    // /proc through its hostPath mount, and both kube-state-metrics ports answered.
    for selector in [
        "node_boot_time_seconds{job=\"scrape-guard-node-exporter\"}",
        "kube_state_metrics_standin{job=\"scrape-guard-kube-state-metrics-main\"}",
        "kube_state_metrics_standin_scrapes_total{job=\"scrape-guard-kube-state-metrics-self\"}",
    ] {
        eventually(Duration::from_secs(30), selector, || async {
            match prometheus.series(selector).await? {
                0 => Err("no series yet".to_owned()),
                _ => Ok(()),
            }
        })
        .await;
    }

    let forbidden = forbidden_message(&sa_user(NO_RBAC_SA));
    eventually(Duration::from_secs(30), "the no-rbac job's 403", || async {
        let up = prometheus.up("no-rbac").await?;
        let error = prometheus.last_error("no-rbac").await;
        if up == "0" && error.contains("403") {
            Ok(())
        } else {
            Err(format!("up = {up}, lastError = {error:?}"))
        }
    })
    .await;
    println!(
        "no-rbac lastError: {}",
        prometheus.last_error("no-rbac").await
    );

    // The same by hand: no token 401, the unbound account's 403 names it, a path
    // outside --allow-paths 404, node-exporter itself not reachable on the node IP.
    let tls = t.scrape_tls();
    let addr = format!("{NODE_IP}:9100").parse().expect("an address");
    let name = || ServerName::try_from(NODE_EXPORTER_NAME.to_owned()).expect("a name");
    let get = |path: &'static str, token: Option<String>| {
        let tls = tls.clone();
        async move { https_get_named(&tls, addr, name(), path, token.as_deref()).await }
    };
    let reply = get("/metrics", None).await.expect("a reply");
    assert_eq!(reply.status, 401, "{}", reply.describe());
    let no_rbac = t.mint_token(NO_RBAC_SA).await;
    let reply = get("/metrics", Some(no_rbac)).await.expect("a reply");
    assert!(
        reply.is_status(403, Some(&forbidden)),
        "{}",
        reply.describe()
    );
    let scraper = t.mint_token(PROMETHEUS_SA).await;
    let reply = get("/debug/pprof/", Some(scraper.clone()))
        .await
        .expect("a reply");
    assert_eq!(reply.status, 404, "{}", reply.describe());
    let reply = get("/metrics", Some(scraper)).await.expect("a reply");
    assert_eq!(reply.status, 200, "{}", reply.describe());
    // Plain HTTP on the node's port 9100 reaches scrape-guard's TLS listener, never
    // node-exporter (which listens on the node's loopback only).
    if let Ok(reply) = http_get_bearer(addr, "/metrics", None).await {
        assert_ne!(
            reply.status,
            200,
            "plain HTTP on {addr}: {}",
            reply.describe()
        );
    }
}

/// `/proc/<pid>/status` of a container's main process.
fn process_status(t: &NodeTest, pod: &Pod, container: &str) -> String {
    let cgroup = t.container_memory_cgroup(pod, container);
    let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).expect("cgroup.procs");
    let pid = procs.lines().next().expect("a process in the container");
    std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status")
}
