//! The config file's `endpoints` against the real apiserver and real RBAC: a Role grants
//! one endpoint's resource in one namespace and not in another; `anyOf` with
//! `{{ .NodeName }}` lets a ClusterRole on `nodes/metrics` for this node through, as the
//! kubelet does for its own /metrics.

use std::time::Duration;

use super::support::{eventually, write_file, Cluster, RecordingUpstream, ScrapeGuard};

const NODE: &str = "e2e-endpoints-node";

const CONFIG: &str = r#"authorization:
  endpoints:
  - path: /ns/{ns}/jobs
    mappings:
    - methods: [GET]
      resources:
      - resourceAttributes:
          namespace: "{{ .PathParams.ns }}"
          apiGroup: trustyai.opendatahub.io
          resource: evaluations
          verb: list
  - path: /metrics
    mappings:
    - methods: [GET]
      anyOf:
      - resourceAttributes: {resource: nodes, subresource: metrics, name: "{{ .NodeName }}"}
      - resourceAttributes: {resource: nodes, subresource: proxy, name: "{{ .NodeName }}"}
"#;

const RBAC: &str = r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: e2e-endpoints-evaluations, namespace: e2e-endpoints}
rules:
- apiGroups: [trustyai.opendatahub.io]
  resources: [evaluations]
  verbs: [list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: e2e-endpoints-evaluations, namespace: e2e-endpoints}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: e2e-endpoints-evaluations}
subjects:
- {kind: ServiceAccount, name: client, namespace: e2e-endpoints}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: e2e-endpoints-node-metrics}
rules:
- apiGroups: [""]
  resources: [nodes/metrics]
  resourceNames: [e2e-endpoints-node]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-endpoints-node-metrics}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: e2e-endpoints-node-metrics}
subjects:
- {kind: ServiceAccount, name: client, namespace: e2e-endpoints}
"#;

#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn endpoints_follow_real_rbac_per_path() {
    let cluster = Cluster::shared().await;
    let sa = ("e2e-endpoints", "client");
    cluster.ensure_service_account(sa).await;
    let manifests = cluster.dir().join("endpoints-rbac.yaml");
    write_file(&manifests, RBAC);
    cluster
        .apply_file(&manifests)
        .await
        .expect("applying the endpoints RBAC");
    let config = cluster.dir().join("endpoints-config.yaml");
    write_file(&config, CONFIG);
    let upstream = RecordingUpstream::start().await;
    let guard = ScrapeGuard::launch(&cluster, "endpoints", &upstream.url())
        .arg(format!("--config-file={}", config.display()))
        .env("NODE_NAME", NODE)
        .start()
        .await;
    let token = cluster.mint_token(sa).await;
    let status = |path: &'static str| {
        let (guard, token) = (&guard, &token);
        move || async move {
            let reply = guard.get(path, Some(token)).await;
            Ok::<u16, String>(reply.status.as_u16())
        }
    };
    // (the apiserver's RBAC sees new bindings after a moment)
    for (path, want) in [("/ns/e2e-endpoints/jobs", 200), ("/metrics", 200)] {
        eventually(Duration::from_secs(15), path, || {
            let check = status(path);
            async move {
                match check().await? {
                    s if s == want => Ok(()),
                    other => Err(format!("{path}: {other}, want {want}")),
                }
            }
        })
        .await;
    }
    // The same endpoint, another namespace: no Role there.
    assert_eq!(status("/ns/default/jobs")().await.unwrap(), 403);
    // The forwarded paths are the authorized ones.
    let seen: Vec<String> = upstream.seen().into_iter().map(|s| s.path).collect();
    assert!(
        seen.contains(&"/ns/e2e-endpoints/jobs".to_owned()),
        "{seen:?}"
    );
    assert!(!seen.iter().any(|p| p == "/ns/default/jobs"), "{seen:?}");
}
