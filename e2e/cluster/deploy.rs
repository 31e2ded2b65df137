//! deploy/ against the real apiserver: every manifest is accepted, and its RBAC alone
//! is what scrape-guard and the scraper need.

use std::{collections::BTreeSet, path::Path, time::Duration};

use serde_json::Value;

use super::support::{
    deploy_files, file_name, parse_manifests, repo_path, run_to_end, snippet, Cluster,
};

/// deploy/'s own namespace: nothing of kube-prometheus' or the charts' lives there.
const NAMESPACE: &str = "scrape-guard";

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
    // The mixin's PrometheusRule goes where the user's Prometheus is: kube-prometheus'
    // namespace (deploy/ itself brings only its own, scrape-guard).
    let monitoring = cluster.dir().join("namespace-monitoring.yaml");
    std::fs::write(
        &monitoring,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: monitoring}\n",
    )
    .expect("writing the namespace manifest");
    if let Err(e) = cluster.apply_file(&monitoring).await {
        panic!("creating the namespace monitoring: {e}");
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
/// SubjectAccessReviews and lets scrape-guard/scraper get /metrics (setup checked
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

/// deploy/ can be applied beside kube-prometheus (no cluster needed): no object of
/// deploy/ (every file, deploy/cert-manager/ and the mixin's PrometheusRule) has the
/// (kind, namespace, name) of one of kube-prometheus' manifests vendored in
/// e2e/fixtures/kube-prometheus/; what `kubectl apply -k deploy/` creates lives in
/// the namespace scrape-guard (but for the RoleBinding to the built-in Role in
/// kube-system) or, cluster-wide, under a `scrape-guard` name; and every workload and
/// Service selects `app.kubernetes.io/part-of: scrape-guard`, so that none of them can
/// take another's pods.
#[test]
fn deploy_does_not_collide_with_kube_prometheus() {
    let ours: Vec<(String, Value)> = deploy_files()
        .iter()
        .flat_map(|file| objects_of(file).into_iter().map(|o| (file_name(file), o)))
        .collect();
    assert!(
        ours.len() > 20,
        "too few objects in deploy/: {}",
        ours.len()
    );
    let theirs: BTreeSet<_> = std::fs::read_dir(repo_path("e2e/fixtures/kube-prometheus"))
        .expect("e2e/fixtures/kube-prometheus/")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "yaml")
                && p.file_name().is_some_and(|n| n != "kustomization.yaml")
        })
        .flat_map(|file| objects_of(&file))
        .map(|o| key(&o))
        .collect();
    assert!(theirs.len() >= 5, "kube-prometheus' fixtures: {theirs:?}");
    let clashes: Vec<_> = ours
        .iter()
        .map(|(file, o)| (file, key(o)))
        .filter(|(_, k)| theirs.contains(k))
        .collect();
    assert!(
        clashes.is_empty(),
        "deploy/ overwrites kube-prometheus': {clashes:?}"
    );

    let kustomization = parse_manifests(
        &std::fs::read_to_string(repo_path("deploy/kustomization.yaml"))
            .expect("deploy/kustomization.yaml"),
    )
    .expect("deploy/kustomization.yaml parses");
    let resources: Vec<&str> = kustomization[0]["resources"]
        .as_array()
        .expect("resources in deploy/kustomization.yaml")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for (file, object) in &ours {
        let from_kustomization = resources.contains(&file.as_str());
        if !from_kustomization && !file.ends_with("certificates.yaml") {
            continue; // (the mixin lives where the user's Prometheus reads rules)
        }
        let (kind, namespace, name) = key(object);
        match namespace.as_str() {
            "" => assert!(
                name.starts_with("scrape-guard"),
                "{file}: cluster-wide {kind} {name} is not prefixed scrape-guard"
            ),
            NAMESPACE => {}
            "kube-system" if kind == "RoleBinding" => {}
            other => panic!("{file}: {kind} {other}/{name} outside the namespace {NAMESPACE}"),
        }
        let selector = match kind.as_str() {
            "DaemonSet" | "Deployment" => &object["spec"]["selector"]["matchLabels"],
            "Service" => &object["spec"]["selector"],
            "ServiceMonitor" => &object["spec"]["selector"]["matchLabels"],
            _ => continue,
        };
        assert_eq!(
            selector["app.kubernetes.io/part-of"], NAMESPACE,
            "{file}: {kind} {name} selects pods that are not deploy/'s: {selector}"
        );
    }
}

/// A file's objects (a test of deploy/: a file that does not parse fails it).
fn objects_of(file: &Path) -> Vec<Value> {
    let text =
        std::fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    parse_manifests(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// (kind, namespace or "" when cluster-wide, name).
fn key(object: &Value) -> (String, String, String) {
    let field = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (
        field(&object["kind"]),
        field(&object["metadata"]["namespace"]),
        field(&object["metadata"]["name"]),
    )
}
