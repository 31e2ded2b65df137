//! deploy/kube-prometheus/ on kube-prometheus' own node-exporter manifests (vendored
//! in e2e/fixtures/kube-prometheus/): rendered with a standalone kustomize, applied,
//! and scraped through scrape-guard in the one-node cluster.

use std::{net::SocketAddr, time::Duration};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use rustls::pki_types::ServerName;

use super::{
    super::support::{
        eventually, forbidden_message, https_get_named, is_ready, pod_summary, repo_path, restarts,
        run_to_end, sa_user, tls_config, NodeTest, Tool, Trust, NODE_IP, NO_RBAC_SA, PROMETHEUS_SA,
    },
    READY,
};

/// kube-prometheus' own namespace (its manifests', unchanged): deploy/ runs beside it
/// in scrape-guard, under names of its own.
const NAMESPACE: &str = "monitoring";

/// kube-prometheus' node-exporter DaemonSet with the component: every
/// kube-rbac-proxy image is scrape-guard's, kube-rbac-proxy's own args (listen
/// address, Go cipher names, upstream) unchanged; the pod becomes Ready and stays up;
/// scrape-guard answers on the node's port with its self-signed certificate as
/// kube-rbac-proxy would: no token 401, an account without RBAC the forbidden Status,
/// the scraper node-exporter's own metrics.
#[tokio::test]
#[ignore = "needs the node cluster: e2e/provision.sh, e2e/images.sh, then e2e/netns.sh cargo test -p scrape-guard-e2e --test cluster -- --ignored node_"]
async fn node_kube_prometheus_component_swaps_the_image() {
    let t = NodeTest::start().await;
    let _turn = t.turn().await;

    let rendered = t.dir().join("kube-prometheus.yaml");
    let mut kustomize = std::process::Command::new(Tool::Kustomize.path());
    kustomize
        .arg("build")
        .arg(repo_path("e2e/cluster/node/kube-prometheus"))
        .arg("-o")
        .arg(&rendered);
    let log = t.dir().join("kustomize.log");
    let (code, output) = run_to_end(
        "kustomize build",
        kustomize,
        None,
        &log,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        code,
        Some(0),
        "kustomize build e2e/cluster/node/kube-prometheus ({}; e2e/provision.sh installs it): {output}",
        Tool::Kustomize.path().display()
    );
    let manifests = std::fs::read_to_string(&rendered).expect("the rendered manifests");
    assert!(
        !manifests.contains("kube-rbac-proxy:"),
        "an image of kube-rbac-proxy is left:\n{manifests}"
    );
    for arg in [
        "--secure-listen-address=[$(IP)]:19100",
        "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,",
        "--upstream=http://127.0.0.1:19101/",
    ] {
        assert!(
            manifests.contains(arg),
            "kube-prometheus' arg {arg} is gone:\n{manifests}"
        );
    }

    let namespace = t.dir().join("namespace.yaml");
    std::fs::write(
        &namespace,
        format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NAMESPACE}}}\n"),
    )
    .expect("writing the namespace");
    t.kubectl_ok(&["apply", "-f", &namespace.display().to_string()])
        .await;
    t.kubectl_ok(&["apply", "-f", &rendered.display().to_string()])
        .await;

    let pods: Api<Pod> = Api::namespaced(t.client().clone(), NAMESPACE);
    let params = ListParams::default().labels("app.kubernetes.io/part-of=kube-prometheus");
    let pod = eventually(
        READY,
        "kube-prometheus' node-exporter pod Ready",
        || async {
            let list = pods.list(&params).await.map_err(|e| e.to_string())?;
            match list.items.as_slice() {
                [pod] if is_ready(pod) => Ok(pod.clone()),
                [pod] => Err(pod_summary(pod)),
                other => Err(format!("{} pods", other.len())),
            }
        },
    )
    .await;
    println!("{}", pod_summary(&pod));
    let image = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == "kube-rbac-proxy"))
        .and_then(|c| c.image.clone());
    assert_eq!(image.as_deref(), Some("e2e.local/scrape-guard:dev"));

    let tls = tls_config(Trust::Anyone, None);
    let addr: SocketAddr = format!("{NODE_IP}:19100").parse().expect("an address");
    let get = |token: Option<String>| {
        let tls = tls.clone();
        async move {
            https_get_named(
                &tls,
                addr,
                ServerName::from(addr.ip()),
                "/metrics",
                token.as_deref(),
            )
            .await
        }
    };
    let scraper = t.mint_token(PROMETHEUS_SA).await;
    let reply = eventually(Duration::from_secs(60), "a scrape through it", || async {
        let reply = get(Some(scraper.clone())).await?;
        match reply.status.as_u16() {
            200 => Ok(reply),
            _ => Err(reply.describe()),
        }
    })
    .await;
    let body = reply.text();
    assert!(
        body.lines()
            .any(|l| l.starts_with("node_boot_time_seconds")),
        "no node-exporter data in the scrape:\n{}",
        &body[..body.len().min(2000)]
    );
    let reply = get(None).await.expect("a reply");
    assert_eq!(reply.status, 401, "{}", reply.describe());
    let reply = get(Some(t.mint_token(NO_RBAC_SA).await))
        .await
        .expect("a reply");
    let forbidden = forbidden_message(&sa_user(NO_RBAC_SA));
    assert!(
        reply.is_status(403, Some(&forbidden)),
        "{}",
        reply.describe()
    );

    let pod = pods
        .get(pod.metadata.name.as_deref().unwrap_or_default())
        .await
        .expect("the pod again");
    assert_eq!(
        restarts(&pod, "kube-rbac-proxy"),
        0,
        "restarted: {}",
        pod_summary(&pod)
    );
    // Leave the cluster as other tests expect it (the ClusterRole and its binding are
    // cluster-wide; the namespace takes the rest).
    t.kubectl_ok(&[
        "delete",
        "--wait=false",
        "-f",
        &rendered.display().to_string(),
    ])
    .await;
}
