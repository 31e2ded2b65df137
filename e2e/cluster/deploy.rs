//! deploy/ against the real apiserver: every manifest is accepted, and its RBAC alone
//! is what scrape-guard and the scraper need.

use std::time::Duration;

use super::support::{deploy_files, file_name, repo_path, run_to_end, snippet, Cluster};

/// Every file in deploy/, deploy/cert-manager/ and the mixin's PrometheusRule passes
/// `kubectl apply --dry-run=server` (what users run, judged by the real apiserver), and
/// so does `kubectl apply -k deploy/`. deploy/servicemonitor.yaml,
/// deploy/cert-manager/certificates.yaml and deploy/mixin/prometheusrule.yaml need the
/// ServiceMonitor, Certificate and PrometheusRule kinds: minimal CRDs
/// (e2e/fixtures/{servicemonitor,certificate,prometheusrule}-crd.yaml, schema
/// `x-kubernetes-preserve-unknown-fields`) are installed first, so those files'
/// group/version/kind and envelope are validated, not their spec fields. (The node
/// suite, e2e/cluster/node.rs, applies deploy/ for real in a cluster with a kubelet.)
#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn deploy_manifests_dry_run() {
    let cluster = Cluster::shared().await;
    for (fixture, crd) in [
        (
            "servicemonitor-crd.yaml",
            "servicemonitors.monitoring.coreos.com",
        ),
        ("certificate-crd.yaml", "certificates.cert-manager.io"),
        (
            "prometheusrule-crd.yaml",
            "prometheusrules.monitoring.coreos.com",
        ),
    ] {
        let path = repo_path("e2e/fixtures").join(fixture);
        if let Err(e) = cluster.apply_file(&path).await {
            panic!("installing the CRD fixture {fixture}: {e}");
        }
        cluster.await_crd_established(crd).await;
    }
    let files = deploy_files();
    assert!(!files.is_empty(), "no manifests found in deploy/");
    let mut failed = Vec::new();
    let mut kubectl = cluster.kubectl();
    kubectl
        .args(["apply", "--dry-run=server", "-k"])
        .arg(repo_path("deploy"));
    let log = cluster.dir().join("kubectl-dry-run-kustomization.log");
    let what = "kubectl apply --dry-run=server -k deploy/";
    let (code, output) = run_to_end(what, kubectl, None, &log, Duration::from_secs(60)).await;
    if code == Some(0) {
        println!("ok   -k deploy/: {}", snippet(output.trim(), 300));
    } else {
        println!("FAIL -k deploy/ (exit {code:?}): {output}");
        failed.push(format!("-k deploy/: {}", snippet(output.trim(), 500)));
    }
    for file in &files {
        let name = file_name(file);
        let mut kubectl = cluster.kubectl();
        kubectl.args(["apply", "--dry-run=server", "-f"]).arg(file);
        let log = cluster.dir().join(format!("kubectl-dry-run-{name}.log"));
        let what = format!("kubectl apply --dry-run=server -f deploy/{name}");
        let (code, output) = run_to_end(&what, kubectl, None, &log, Duration::from_secs(60)).await;
        if code == Some(0) {
            println!("ok   deploy/{name}: {}", snippet(output.trim(), 300));
        } else {
            println!("FAIL deploy/{name} (exit {code:?}): {output}");
            failed.push(format!("deploy/{name}: {}", snippet(output.trim(), 500)));
        }
    }
    assert!(
        failed.is_empty(),
        "server-side dry run failed for: {failed:#?}"
    );
}

/// The RBAC in deploy/ alone lets scrape-guard's account create TokenReviews and
/// SubjectAccessReviews and lets monitoring/prometheus-k8s get /metrics (setup checked
/// it with SubjectAccessReviews; had it fallen short, setup applied
/// e2e/fixtures/fallback-rbac-*.yaml so that the other checks could still run).
#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn deploy_rbac_sufficient() {
    let cluster = Cluster::shared().await;
    let (applied, missing) = cluster.deploy_rbac();
    println!("applied from deploy/: {applied:?}");
    assert!(
        missing.is_empty(),
        "deploy/ RBAC ({applied:?}) is missing {missing:?}; the suite used e2e/fixtures/fallback-rbac-*.yaml"
    );
}
