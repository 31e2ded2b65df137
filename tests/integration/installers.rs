//! Real installers' kube-rbac-proxy sidecars, run as scrape-guard: "change the image,
//! nothing else, and scrapes keep working".
//!
//! Each fixture is a sidecar's exact arguments and config file as its installer renders
//! them (Helm values at their chart defaults), with the repository, path and commit
//! they were read from. Only what must be local is changed, by `localize`: listen hosts
//! become 127.0.0.1 (`[$(IP)]:9100` → `[127.0.0.1]:…`), ports become free ones, the
//! upstream's port becomes the echo exporter's (its host too, unless `localhost`; its
//! scheme, path and trailing slash are kept), and files become temp files: the config,
//! the test PKI's serving pair and CA, the fake apiserver's kubeconfig. Where a sidecar
//! relies on kube-rbac-proxy's self-signed certificate the test PKI's pair is added, so
//! that the client can verify it.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use bytes::Bytes;
use clap::Parser;
use scrape_guard_testkit::{
    self as support, client, client_with, get, send, Echo, FakeApiserver, Pki, Proxy, SCRAPER,
};

const BIN: &str = env!("CARGO_BIN_EXE_scrape-guard");
/// The identity of OpenShift's Prometheus, in its client certificate.
const PROMETHEUS_K8S: &str = "system:serviceaccount:openshift-monitoring:prometheus-k8s";
const TELEMETER: &str = "system:serviceaccount:openshift-monitoring:telemeter-client";

/// One sidecar as an installer writes it.
struct Sidecar {
    name: &'static str,
    args: &'static [&'static str],
    config: Option<&'static str>,
    /// A request the installer's scraper makes, and what lets it through.
    check: Check,
}

enum Check {
    /// A token allowed the non-resource `get` on the path: 200.
    Scrape(&'static str),
    /// A token allowed `get` on a resource in a namespace: 200.
    Resource {
        path: &'static str,
        header: Option<(&'static str, &'static str)>,
        namespace: &'static str,
        resource: &'static str,
    },
    /// OpenShift's Prometheus client certificate, no token: 200 with no review at all.
    ClientCert(&'static str),
    /// Refused at startup, the message containing this.
    Refused(&'static str),
}

// === the catalogue ===

// prometheus-community/helm-charts @ cf408a290aec489277a94450bb3511432477a53a
// charts/prometheus-node-exporter/templates/daemonset.yaml (kubeRBACProxy.enabled=true;
// service.port 9100, kubeRBACProxy.port 8100, proxyEndpointsPort 8888) and
// templates/rbac-configmap.yaml, release "prometheus-node-exporter" in "monitoring".
const NODE_EXPORTER_CHART_CONFIG: &str = "authorization:
  resourceAttributes:
    namespace: monitoring
    apiVersion: v1
    resource: services
    subresource: prometheus-node-exporter
    name: prometheus-node-exporter
";
// charts/kube-state-metrics/templates/rbac-configmap.yaml, same commit and release.
const KSM_CHART_CONFIG: &str = "authorization:
  resourceAttributes:
    namespace: monitoring
    apiVersion: v1
    resource: services
    subresource: kube-state-metrics
    name: kube-state-metrics
";
// charts/prom-label-proxy/README.md's kubeRBACProxy.config, rendered by
// templates/rbac-configmap.yaml (`toYaml`: keys sorted).
const PROM_LABEL_PROXY_CHART_CONFIG: &str = "authorization:
  resourceAttributes:
    apiVersion: v1
    namespace: '{{ .Value }}'
    resource: namespaces
    subresource: metrics
  rewrites:
    byHttpHeader:
      name: X-Namespace
";
// The cipher list every kube-prometheus and OpenShift sidecar passes.
const KUBE_PROMETHEUS_SUITES: &str = "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305";
// openshift/cluster-monitoring-operator @ f581865b41267ff23bbf1cb30fbdd2e02cecd42f
// assets/*/kube-rbac-proxy*-secret.yaml: the static rule of every metrics proxy.
const CMO_METRICS_CONFIG: &str = r#""authorization":
  "static":
  - "path": "/metrics"
    "resourceRequest": false
    "user":
      "name": "system:serviceaccount:openshift-monitoring:prometheus-k8s"
    "verb": "get""#;
// assets/prometheus-k8s/kube-rbac-proxy-secret.yaml
const CMO_PROMETHEUS_CONFIG: &str = r#""authorization":
  "static":
  - "path": "/metrics"
    "resourceRequest": false
    "user":
      "name": "system:serviceaccount:openshift-monitoring:prometheus-k8s"
    "verb": "get"
  - "path": "/federate"
    "resourceRequest": false
    "user":
      "name": "system:serviceaccount:openshift-monitoring:prometheus-k8s"
    "verb": "get"
  - "path": "/federate"
    "resourceRequest": false
    "user":
      "name": "system:serviceaccount:openshift-monitoring:telemeter-client"
    "verb": "get""#;
// assets/prometheus-k8s/kube-rbac-proxy-web-secret.yaml
const CMO_WEB_CONFIG: &str = r#""authorization":
  "resourceAttributes":
    "apiGroup": "monitoring.coreos.com"
    "name": "k8s"
    "namespace": "openshift-monitoring"
    "resource": "prometheuses"
    "subresource": "api""#;
// assets/thanos-querier/kube-rbac-proxy-secret.yaml
const CMO_TENANCY_CONFIG: &str = r#""authorization":
  "resourceAttributes":
    "apiGroup": "metrics.k8s.io"
    "apiVersion": "v1beta1"
    "namespace": "{{ .Value }}"
    "resource": "pods"
  "rewrites":
    "byQueryParameter":
      "name": "namespace""#;
// assets/thanos-querier/kube-rbac-proxy-rules-secret.yaml
const CMO_RULES_CONFIG: &str = r#""authorization":
  "resourceAttributes":
    "apiGroup": "monitoring.coreos.com"
    "namespace": "{{ .Value }}"
    "resource": "prometheusrules"
  "rewrites":
    "byQueryParameter":
      "name": "namespace""#;
// assets/prometheus-user-workload/kube-rbac-proxy-federate-secret.yaml: `verb` is not an
// upstream kube-rbac-proxy field.
const CMO_FEDERATE_CONFIG: &str = r#""authorization":
  "resourceAttributes":
    "apiVersion": "v1"
    "resource": "namespaces"
    "verb": "get""#;
// OpenShift's "Old" TLS profile (openshift/api config/v1/types_tlssecurityprofile.go)
// as CMO passes it (pkg/manifests/manifests.go setTLSSecurityConfiguration, through
// library-go's OpenSSLToIANACipherSuites, which drops the DHE suites).
const CMO_OLD_PROFILE_SUITES: &str = "--tls-cipher-suites=TLS_AES_128_GCM_SHA256,TLS_AES_256_GCM_SHA384,TLS_CHACHA20_POLY1305_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,TLS_RSA_WITH_AES_128_GCM_SHA256,TLS_RSA_WITH_AES_256_GCM_SHA384,TLS_RSA_WITH_AES_128_CBC_SHA256,TLS_RSA_WITH_AES_128_CBC_SHA,TLS_RSA_WITH_AES_256_CBC_SHA,TLS_RSA_WITH_3DES_EDE_CBC_SHA";
// opendatahub-io/kserve @ 3cf0a0416: pkg/controller/v1beta1/inferenceservice/reconcilers/
// deployment/deployment_reconciler.go createSarCm, for InferenceService
// kserve-demo/sklearn-iris.
const KSERVE_SAR_CONFIG: &str = r#"authorization:
  resourceAttributes:
    namespace: "kserve-demo"
    apiGroup: "serving.kserve.io"
    apiVersion: "v1beta1"
    resource: "inferenceservices"
    name: "sklearn-iris"
    verb: "get""#;
// opendatahub-io/kubeflow @ 026e9174d0024dfd6253ba6ef70649a924084d0f:
// components/odh-notebook-controller/controllers/notebook_kube_rbac_auth.go
// NewNotebookKubeRbacProxyConfigMap, for Notebook ds-project/my-workbench. `resourceName`
// is no kube-rbac-proxy field (it ignores it: any notebook in the namespace).
const NOTEBOOK_CONFIG: &str = "authorization:
  resourceAttributes:
    verb: get
    resource: notebooks
    apiGroup: kubeflow.org
    resourceName: my-workbench
    namespace: ds-project";

// trustyai-explainability/trustyai-service-operator @ 11c335b879fcfcbd2acd9c572d12a06976d985d8:
// controllers/evalhub/configmap.go generateAuthConfigData, the opendatahub fork's
// "Format 2" (`authorization.endpoints`).
const EVALHUB_CONFIG: &str = r#"authorization:
  endpoints:
    - path: /api/v1/evaluations/jobs/*/events
      mappings:
        - methods: [post]
          resources:
            - rewrites:
                byHttpHeader:
                  name: X-Tenant
              resourceAttributes:
                namespace: "{{.FromHeader}}"
                apiGroup: trustyai.opendatahub.io
                resource: status-events
                verb: create
    - path: /api/v1/evaluations/jobs/*
      mappings:
        - methods: [get, delete, put, patch]
          resources:
            - rewrites:
                byHttpHeader:
                  name: X-Tenant
              resourceAttributes:
                namespace: "{{.FromHeader}}"
                apiGroup: trustyai.opendatahub.io
                resource: evaluations
                verb: "{{.FromMethod}}"
    - path: /api/v1/evaluations/jobs
      mappings:
        - methods: [get]
          resources:
            - rewrites:
                byHttpHeader:
                  name: X-Tenant
              resourceAttributes:
                namespace: "{{.FromHeader}}"
                apiGroup: trustyai.opendatahub.io
                resource: evaluations
                verb: list
        - methods: [post]
          resources:
            - rewrites:
                byHttpHeader:
                  name: X-Tenant
              resourceAttributes:
                namespace: "{{.FromHeader}}"
                apiGroup: trustyai.opendatahub.io
                resource: evaluations
                verb: create
            - rewrites:
                byHttpHeader:
                  name: X-Tenant
              resourceAttributes:
                namespace: "{{.FromHeader}}"
                apiGroup: mlflow.kubeflow.org
                resource: experiments
                verb: create
            - rewrites:
                byHttpHeader:
                  name: X-Tenant
              resourceAttributes:
                namespace: "{{.FromHeader}}"
                apiGroup: mlflow.kubeflow.org
                resource: experiments
                verb: get
    - path: /api/v1/evaluations/collections/*
      mappings:
        - methods: [get, delete, put, patch]
          resources:
            - rewrites:
                byHttpHeader:
                  name: X-Tenant
              resourceAttributes:
                namespace: "{{.FromHeader}}"
                apiGroup: trustyai.opendatahub.io
                resource: collections
                verb: "{{.FromMethod}}"
    - path: /api/v1/evaluations/collections
      mappings:
        - methods: [get]
          resources:
            - rewrites:
                byHttpHeader:
                  name: X-Tenant
              resourceAttributes:
                namespace: "{{.FromHeader}}"
                apiGroup: trustyai.opendatahub.io
                resource: collections
                verb: list
        - methods: [post]
          resources:
            - rewrites:
                byHttpHeader:
                  name: X-Tenant
              resourceAttributes:
                namespace: "{{.FromHeader}}"
                apiGroup: trustyai.opendatahub.io
                resource: collections
                verb: create
    - path: /api/v1/evaluations/providers/*
      mappings:
        - methods: [get, delete, put, patch]
          resources:
            - rewrites:
                byHttpHeader:
                  name: X-Tenant
              resourceAttributes:
                namespace: "{{.FromHeader}}"
                apiGroup: trustyai.opendatahub.io
                resource: providers
                verb: "{{.FromMethod}}"
    - path: /api/v1/evaluations/providers
      mappings:
        - methods: [get]
          resources:
            - rewrites:
                byHttpHeader:
                  name: X-Tenant
              resourceAttributes:
                namespace: "{{.FromHeader}}"
                apiGroup: trustyai.opendatahub.io
                resource: providers
                verb: list
        - methods: [post]
          resources:
            - rewrites:
                byHttpHeader:
                  name: X-Tenant
              resourceAttributes:
                namespace: "{{.FromHeader}}"
                apiGroup: trustyai.opendatahub.io
                resource: providers
                verb: create
"#;
// controllers/evalhub/mcp_configmap.go generateMCPAuthConfigData, same commit, for the
// EvalHub evalhub-ns/evalhub.
const EVALHUB_MCP_CONFIG: &str = r#"authorization:
  endpoints:
    - path: /*
      mappings:
        - methods: [get]
          resources:
            - resourceAttributes:
                namespace: "evalhub-ns"
                apiGroup: trustyai.opendatahub.io
                resource: evalhubs
                subresource: proxy
                name: "evalhub"
                verb: get
        - methods: [post]
          resources:
            - resourceAttributes:
                namespace: "evalhub-ns"
                apiGroup: trustyai.opendatahub.io
                resource: evalhubs
                subresource: proxy
                name: "evalhub"
                verb: create
"#;

// The same commit, controllers/nemo_guardrails/templates/kube-rbac-proxy-config.tmpl.yaml
// and controllers/gorch/templates/kube-rbac-proxy/{gateway,built-in}-config.tmpl.yaml, for
// a NemoGuardrails or GuardrailsOrchestrator `guardrails` in namespace `guardrails-ns`.
// Not Format 2: one `resourceAttributes` question, as kube-rbac-proxy's "Format 1".
// `resourceName`, `upstreamConfig` and `tlsConfig` are no kube-rbac-proxy keys: the fork
// ignores them (the review has no name, the upstream is `--upstream`), and so do we, with
// a warning. The three files differ only in `upstreamConfig.url`.
macro_rules! guardrails_config {
    ($url:literal) => {
        concat!(
            r#"authorization:
  resourceAttributes:
    namespace: "guardrails-ns"
    resource: "services"
    resourceName: "guardrails-service"
    verb: "get"
    apiGroup: ""
upstreamConfig:
  url: ""#,
            $url,
            r#""
  proxyTimeout: "30s"
tlsConfig:
  minVersion: "VersionTLS12"
  # FIPS 140-2 approved cipher suites only
  cipherSuites:
    - "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    - "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
    - "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
    - "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
    - "TLS_RSA_WITH_AES_128_GCM_SHA256"
    - "TLS_RSA_WITH_AES_256_GCM_SHA384"
"#
        )
    };
}
const NEMO_GUARDRAILS_CONFIG: &str = guardrails_config!("http://127.0.0.1:8000");
const GORCH_GATEWAY_CONFIG: &str = guardrails_config!("http://127.0.0.1:8090");
const GORCH_BUILT_IN_CONFIG: &str = guardrails_config!("http://127.0.0.1:8080");

const CATALOGUE: &[Sidecar] = &[
    Sidecar {
        name: "helm prometheus-node-exporter kube-rbac-proxy",
        args: &[
            "--secure-listen-address=:9100",
            "--upstream=http://127.0.0.1:8100/",
            "--proxy-endpoints-port=8888",
            "--config-file=/etc/kube-rbac-proxy-config/config-file.yaml",
        ],
        config: Some(NODE_EXPORTER_CHART_CONFIG),
        check: Check::Resource { path: "/metrics", header: None, namespace: "monitoring", resource: "services" },
    },
    // charts/kube-state-metrics/templates/deployment.yaml (kubeRBACProxy.enabled,
    // ignoreProbePaths and selfMonitor.enabled at their defaults).
    Sidecar {
        name: "helm kube-state-metrics kube-rbac-proxy-http",
        args: &[
            "--ignore-paths=/livez,/readyz",
            "--secure-listen-address=:8080",
            "--upstream=http://127.0.0.1:9090/",
            "--proxy-endpoints-port=8888",
            "--config-file=/etc/kube-rbac-proxy-config/config-file.yaml",
        ],
        config: Some(KSM_CHART_CONFIG),
        check: Check::Resource { path: "/metrics", header: None, namespace: "monitoring", resource: "services" },
    },
    Sidecar {
        name: "helm kube-state-metrics kube-rbac-proxy-telemetry",
        args: &[
            "--ignore-paths=/livez,/readyz",
            "--secure-listen-address=:8081",
            "--upstream=http://127.0.0.1:9091/",
            "--proxy-endpoints-port=8889",
            "--config-file=/etc/kube-rbac-proxy-config/config-file.yaml",
        ],
        config: Some(KSM_CHART_CONFIG),
        check: Check::Resource { path: "/metrics", header: None, namespace: "monitoring", resource: "services" },
    },
    // charts/prom-label-proxy/templates/deployment.yaml (kubeRBACProxy.port 8100,
    // config.listenAddress 0.0.0.0:8080).
    Sidecar {
        name: "helm prom-label-proxy kube-rbac-proxy",
        args: &[
            "--secure-listen-address=:8100",
            "--upstream=http://127.0.0.1:8080/",
            "--proxy-endpoints-port=8888",
            "--config-file=/etc/kube-rbac-proxy-config/config-file.yaml",
        ],
        config: Some(PROM_LABEL_PROXY_CHART_CONFIG),
        check: Check::Resource {
            path: "/api/v1/query?query=up",
            header: Some(("X-Namespace", "team-a")),
            namespace: "team-a",
            resource: "namespaces",
        },
    },
    // prometheus-operator/kube-prometheus @ 4d719f1dea8853540b3823ab1fbe6be74a9953b3
    // manifests/nodeExporter-daemonset.yaml
    Sidecar {
        name: "kube-prometheus node-exporter",
        args: &["--secure-listen-address=[$(IP)]:9100", KUBE_PROMETHEUS_SUITES, "--upstream=http://127.0.0.1:9101/"],
        config: None,
        check: Check::Scrape("/metrics"),
    },
    // manifests/kubeStateMetrics-deployment.yaml
    Sidecar {
        name: "kube-prometheus kube-state-metrics kube-rbac-proxy-main",
        args: &["--secure-listen-address=:8443", KUBE_PROMETHEUS_SUITES, "--upstream=http://127.0.0.1:8081/"],
        config: None,
        check: Check::Scrape("/metrics"),
    },
    Sidecar {
        name: "kube-prometheus kube-state-metrics kube-rbac-proxy-self",
        args: &["--secure-listen-address=:9443", KUBE_PROMETHEUS_SUITES, "--upstream=http://127.0.0.1:8082/"],
        config: None,
        check: Check::Scrape("/metrics"),
    },
    // manifests/blackboxExporter-deployment.yaml
    Sidecar {
        name: "kube-prometheus blackbox-exporter",
        args: &["--secure-listen-address=:9115", KUBE_PROMETHEUS_SUITES, "--upstream=http://127.0.0.1:19115/"],
        config: None,
        check: Check::Scrape("/metrics"),
    },
    // manifests/prometheusOperator-deployment.yaml
    Sidecar {
        name: "kube-prometheus prometheus-operator",
        args: &["--secure-listen-address=:8443", KUBE_PROMETHEUS_SUITES, "--upstream=http://127.0.0.1:8080/"],
        config: None,
        check: Check::Scrape("/metrics"),
    },
    // openshift/cluster-monitoring-operator @ f581865b: assets/node-exporter/daemonset.yaml
    Sidecar {
        name: "openshift node-exporter kube-rbac-proxy",
        args: &[
            "--secure-listen-address=[$(IP)]:9100",
            KUBE_PROMETHEUS_SUITES,
            "--upstream=http://127.0.0.1:9101/",
            "--tls-cert-file=/etc/tls/private/tls.crt",
            "--tls-private-key-file=/etc/tls/private/tls.key",
            "--client-ca-file=/etc/tls/client/client-ca.crt",
            "--config-file=/etc/kube-rbac-policy/config.yaml",
        ],
        config: Some(CMO_METRICS_CONFIG),
        check: Check::ClientCert("/metrics"),
    },
    // The same sidecar once CMO applied a cluster whose APIServer uses the Old profile.
    Sidecar {
        name: "openshift node-exporter kube-rbac-proxy, Old TLS profile",
        args: &[
            "--secure-listen-address=[$(IP)]:9100",
            CMO_OLD_PROFILE_SUITES,
            "--upstream=http://127.0.0.1:9101/",
            "--tls-cert-file=/etc/tls/private/tls.crt",
            "--tls-private-key-file=/etc/tls/private/tls.key",
            "--client-ca-file=/etc/tls/client/client-ca.crt",
            "--config-file=/etc/kube-rbac-policy/config.yaml",
            "--tls-min-version=VersionTLS10",
        ],
        config: Some(CMO_METRICS_CONFIG),
        check: Check::ClientCert("/metrics"),
    },
    // assets/kube-state-metrics/deployment.yaml
    Sidecar {
        name: "openshift kube-state-metrics kube-rbac-proxy-main",
        args: &[
            "--secure-listen-address=:8443",
            KUBE_PROMETHEUS_SUITES,
            "--upstream=http://127.0.0.1:8081/",
            "--tls-cert-file=/etc/tls/private/tls.crt",
            "--tls-private-key-file=/etc/tls/private/tls.key",
            "--client-ca-file=/etc/tls/client/client-ca.crt",
            "--config-file=/etc/kube-rbac-policy/config.yaml",
        ],
        config: Some(CMO_METRICS_CONFIG),
        check: Check::ClientCert("/metrics"),
    },
    // assets/prometheus-operator/deployment.yaml
    Sidecar {
        name: "openshift prometheus-operator kube-rbac-proxy",
        args: &[
            "--secure-listen-address=:8443",
            KUBE_PROMETHEUS_SUITES,
            "--upstream=http://localhost:8080/",
            "--tls-cert-file=/etc/tls/private/tls.crt",
            "--tls-private-key-file=/etc/tls/private/tls.key",
            "--client-ca-file=/etc/tls/client/client-ca.crt",
            "--config-file=/etc/kube-rbac-policy/config.yaml",
        ],
        config: Some(CMO_METRICS_CONFIG),
        check: Check::ClientCert("/metrics"),
    },
    // assets/prometheus-k8s/prometheus.yaml, container kube-rbac-proxy
    Sidecar {
        name: "openshift prometheus-k8s kube-rbac-proxy (metrics, federate)",
        args: &[
            "--secure-listen-address=0.0.0.0:9092",
            "--upstream=http://127.0.0.1:9090",
            "--allow-paths=/metrics,/federate",
            "--config-file=/etc/kube-rbac-proxy/config.yaml",
            "--tls-cert-file=/etc/tls/private/tls.crt",
            "--tls-private-key-file=/etc/tls/private/tls.key",
            "--client-ca-file=/etc/tls/client/client-ca.crt",
            KUBE_PROMETHEUS_SUITES,
        ],
        config: Some(CMO_PROMETHEUS_CONFIG),
        check: Check::ClientCert("/metrics"),
    },
    // assets/prometheus-k8s/prometheus.yaml, container kube-rbac-proxy-web
    Sidecar {
        name: "openshift prometheus-k8s kube-rbac-proxy-web",
        args: &[
            "--secure-listen-address=0.0.0.0:9091",
            "--upstream=http://127.0.0.1:9090",
            "--config-file=/etc/kube-rbac-proxy/config.yaml",
            "--tls-cert-file=/etc/tls/private/tls.crt",
            "--tls-private-key-file=/etc/tls/private/tls.key",
            KUBE_PROMETHEUS_SUITES,
            "--ignore-paths=/-/healthy,/-/ready",
        ],
        config: Some(CMO_WEB_CONFIG),
        check: Check::Resource {
            path: "/api/v1/query?query=up",
            header: None,
            namespace: "openshift-monitoring",
            resource: "prometheuses",
        },
    },
    // assets/thanos-querier/deployment.yaml, container kube-rbac-proxy (tenancy)
    Sidecar {
        name: "openshift thanos-querier kube-rbac-proxy (tenancy)",
        args: &[
            "--secure-listen-address=0.0.0.0:9092",
            "--upstream=http://127.0.0.1:9095",
            "--config-file=/etc/kube-rbac-proxy/config.yaml",
            "--tls-cert-file=/etc/tls/private/tls.crt",
            "--tls-private-key-file=/etc/tls/private/tls.key",
            KUBE_PROMETHEUS_SUITES,
            "--allow-paths=/api/v1/query,/api/v1/query_range,/api/v1/labels,/api/v1/label/*/values,/api/v1/series",
        ],
        config: Some(CMO_TENANCY_CONFIG),
        check: Check::Resource { path: "/api/v1/query?namespace=team-a&query=up", header: None, namespace: "team-a", resource: "pods" },
    },
    // assets/thanos-querier/deployment.yaml, container kube-rbac-proxy-rules
    Sidecar {
        name: "openshift thanos-querier kube-rbac-proxy-rules (tenancy)",
        args: &[
            "--secure-listen-address=0.0.0.0:9093",
            "--upstream=http://127.0.0.1:9095",
            "--config-file=/etc/kube-rbac-proxy/config.yaml",
            "--tls-cert-file=/etc/tls/private/tls.crt",
            "--tls-private-key-file=/etc/tls/private/tls.key",
            KUBE_PROMETHEUS_SUITES,
            "--allow-paths=/api/v1/rules,/api/v1/alerts",
        ],
        config: Some(CMO_RULES_CONFIG),
        check: Check::Resource { path: "/api/v1/rules?namespace=team-a", header: None, namespace: "team-a", resource: "prometheusrules" },
    },
    // assets/prometheus-user-workload/prometheus.yaml, container kube-rbac-proxy-federate
    Sidecar {
        name: "openshift prometheus-user-workload kube-rbac-proxy-federate",
        args: &[
            "--secure-listen-address=0.0.0.0:9092",
            "--upstream=http://127.0.0.1:9090",
            "--allow-paths=/federate",
            "--config-file=/etc/kube-rbac-proxy/config.yaml",
            "--tls-cert-file=/etc/tls/private/tls.crt",
            "--tls-private-key-file=/etc/tls/private/tls.key",
            "--client-ca-file=/etc/tls/client/client-ca.crt",
            KUBE_PROMETHEUS_SUITES,
        ],
        config: Some(CMO_FEDERATE_CONFIG),
        check: Check::Resource { path: "/federate?match[]=up", header: None, namespace: "", resource: "namespaces" },
    },
    // kubernetes-sigs/kubebuilder @ 7cc61366b4298e6d053759a6b2ea8768c81b65fa
    // testdata/project-v4/config/default/manager_auth_proxy_patch.yaml (the scaffold
    // before kubebuilder 4.1 dropped the sidecar).
    Sidecar {
        name: "kubebuilder scaffold kube-rbac-proxy",
        args: &[
            "--secure-listen-address=0.0.0.0:8443",
            "--upstream=http://127.0.0.1:8080/",
            "--logtostderr=true",
            "--v=0",
        ],
        config: None,
        check: Check::Scrape("/metrics"),
    },
    // metallb/metallb @ 622c5941b^ (the parent of "Replace kube-rbac-proxy with native
    // TLS and RBAC"): charts/metallb/templates/speaker.yaml, prometheus.secureMetricsPort
    // 9120, metricsPort 7472, speakerMetricsTLSSecret set.
    Sidecar {
        name: "metallb speaker kube-rbac-proxy",
        args: &[
            "--logtostderr",
            "--secure-listen-address=:9120",
            "--upstream=http://localhost:7472/",
            "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_RSA_WITH_AES_128_CBC_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
            "--tls-private-key-file=/etc/metrics/tls.key",
            "--tls-cert-file=/etc/metrics/tls.crt",
        ],
        config: None,
        check: Check::Scrape("/metrics"),
    },
    // kserve/kserve @ 11fb949953f11b8878836f12b023d157a05521c8
    // config/default/manager_auth_proxy_patch.yaml
    Sidecar {
        name: "kserve controller-manager kube-rbac-proxy",
        args: &[
            "--secure-listen-address=0.0.0.0:8443",
            "--upstream=http://127.0.0.1:8080/",
            "--logtostderr=true",
            "--v=10",
        ],
        config: None,
        check: Check::Scrape("/metrics"),
    },
    // opendatahub-io/kserve @ 3cf0a0416: deployment_reconciler.go, the InferenceService
    // auth sidecar (OauthProxyPort 8443, predictor port 8080, upstreamTimeoutSeconds 30).
    Sidecar {
        name: "opendatahub kserve InferenceService kube-rbac-proxy",
        args: &[
            "--secure-listen-address=:8443",
            "--proxy-endpoints-port=8643",
            "--upstream=http://localhost:8080",
            "--auth-header-fields-enabled=true",
            "--tls-cert-file=/etc/tls/private/tls.crt",
            "--tls-private-key-file=/etc/tls/private/tls.key",
            "--config-file=/etc/kube-rbac-proxy/config-file.yaml",
            "--v=4",
            "--upstream-timeout=30s",
        ],
        config: Some(KSERVE_SAR_CONFIG),
        check: Check::Resource { path: "/v1/models/sklearn-iris", header: None, namespace: "kserve-demo", resource: "inferenceservices" },
    },
    // The same sidecar on a predictor with audit logging on (the OpenShift AI fork's
    // image): opendatahub-io/kserve's distro deployment reconciler appends
    // desiredAuditArgs (profile metadata) to the arguments above, after
    // --upstream-timeout (customizeAuthProxyArgs). Read from the code search index's copy
    // of that file, whose commit it does not name; the arguments before the audit ones
    // are those of 3cf0a0416. The events go to standard output, as the fork's.
    Sidecar {
        name: "opendatahub kserve InferenceService kube-rbac-proxy, audit logging on",
        args: &[
            "--secure-listen-address=:8443",
            "--proxy-endpoints-port=8643",
            "--upstream=http://localhost:8080",
            "--auth-header-fields-enabled=true",
            "--tls-cert-file=/etc/tls/private/tls.crt",
            "--tls-private-key-file=/etc/tls/private/tls.key",
            "--config-file=/etc/kube-rbac-proxy/config-file.yaml",
            "--v=4",
            "--upstream-timeout=30s",
            "--audit-log-profile=metadata",
            "--audit-resource-name=sklearn-iris",
            "--audit-resource-namespace=kserve-demo",
            "--audit-resource-type=InferenceService",
            "--audit-ai-provider=KServe",
        ],
        config: Some(KSERVE_SAR_CONFIG),
        check: Check::Resource { path: "/v1/models/sklearn-iris", header: None, namespace: "kserve-demo", resource: "inferenceservices" },
    },
    // opendatahub-io/kubeflow @ 026e9174: components/odh-notebook-controller/controllers/
    // notebook_webhook.go InjectKubeRbacProxy (NotebookKubeRbacProxyPort 8443, NotebookPort
    // 8888, NotebookKubeRbacProxyHealthPort 8444).
    Sidecar {
        name: "opendatahub notebook-controller kube-rbac-proxy",
        args: &[
            "--secure-listen-address=0.0.0.0:8443",
            "--upstream=http://127.0.0.1:8888/",
            "--logtostderr=true",
            "--v=10",
            "--proxy-endpoints-port=8444",
            "--config-file=/etc/kube-rbac-proxy/config-file.yaml",
            "--tls-cert-file=/etc/tls/private/tls.crt",
            "--tls-private-key-file=/etc/tls/private/tls.key",
            "--auth-header-fields-enabled=true",
            "--auth-header-user-field-name=X-Auth-Request-User",
            "--auth-header-groups-field-name=X-Auth-Request-Groups",
        ],
        config: Some(NOTEBOOK_CONFIG),
        check: Check::Resource { path: "/notebook/ds-project/my-workbench/api", header: None, namespace: "ds-project", resource: "notebooks" },
    },
    // gardener/gardener @ b312835d17: pkg/component/observability/opentelemetry/collector/
    // collector.go secureOTLPRBACProxyArgs (KubeRBACProxyOTLPReceiverPort 8080, PushPort
    // 4317) and secureValiRBACProxyArgs (KubeRBACProxyValiPort 8081, ValiPort 3100).
    Sidecar {
        name: "gardener opentelemetry-collector kube-rbac-proxy (OTLP, h2c)",
        args: &[
            "--kubeconfig=/var/run/secrets/gardener.cloud/shoot/generic-kubeconfig/kubeconfig",
            "--logtostderr=true",
            "--v=6",
            "--secure-listen-address=[::]:8080",
            "--upstream=http://127.0.0.1:4317/",
            "--upstream-force-h2c",
            "--tls-cert-file=/etc/tls/tls.crt",
            "--tls-private-key-file=/etc/tls/tls.key",
        ],
        config: None,
        check: Check::Scrape("/opentelemetry.proto.collector.logs.v1.LogsService/Export"),
    },
    Sidecar {
        name: "gardener opentelemetry-collector kube-rbac-proxy (vali)",
        args: &[
            "--kubeconfig=/var/run/secrets/gardener.cloud/shoot/generic-kubeconfig/kubeconfig",
            "--logtostderr=true",
            "--v=6",
            "--secure-listen-address=[::]:8081",
            "--upstream=http://logging:3100/",
            "--tls-cert-file=/etc/tls/tls.crt",
            "--tls-private-key-file=/etc/tls/tls.key",
        ],
        config: None,
        check: Check::Scrape("/loki/api/v1/push"),
    },
    // pkg/component/observability/logging/vali/vali.go: plain HTTP, which scrape-guard
    // never serves.
    Sidecar {
        name: "gardener vali kube-rbac-proxy (plain HTTP)",
        args: &[
            "--insecure-listen-address=0.0.0.0:8080",
            "--upstream=http://127.0.0.1:3100/",
            "--kubeconfig=/var/run/secrets/gardener.cloud/shoot/generic-kubeconfig",
            "--logtostderr=true",
            "--v=6",
        ],
        config: None,
        check: Check::Refused("--insecure-listen-address is not supported"),
    },
    // brancz/kube-rbac-proxy, branch sig-auth-acceptance @ 05196bb5:
    // examples/non-resource-url/deployment.yaml, the k8s.io/apiserver flag dialect.
    Sidecar {
        name: "kube-rbac-proxy rewrite example (k8s.io/apiserver flags)",
        args: &["--secure-port=8443", "--upstream=http://127.0.0.1:8081/", "--v=10"],
        config: None,
        check: Check::Scrape("/metrics"),
    },
    // trustyai-service-operator (commit above): controllers/evalhub/deployment.go and
    // mcp_deployment.go, the kube-rbac-proxy sidecars (evalHubAppPort 8444, mcpAppPort
    // 8445, servicePort 8443, kubeRBACProxyHealthPort 9443).
    Sidecar {
        name: "trustyai EvalHub kube-rbac-proxy (Format 2 endpoints)",
        args: &[
            "--secure-listen-address=0.0.0.0:8443",
            "--upstream=http://127.0.0.1:8444/",
            "--config-file=/etc/kube-rbac-proxy/auth.yaml",
            "--tls-cert-file=/etc/tls/private/tls.crt",
            "--tls-private-key-file=/etc/tls/private/tls.key",
            "--proxy-endpoints-port=9443",
            "--ignore-paths=/api/v1/health",
            "--auth-header-fields-enabled",
            "--auth-header-user-field-name=X-User",
            "--v=0",
        ],
        config: Some(EVALHUB_CONFIG),
        check: Check::Resource {
            path: "/api/v1/evaluations/jobs/j-1",
            header: Some(("X-Tenant", "team-a")),
            namespace: "team-a",
            resource: "evaluations",
        },
    },
    Sidecar {
        name: "trustyai EvalHub MCP kube-rbac-proxy (Format 2 endpoints)",
        args: &[
            "--secure-listen-address=0.0.0.0:8443",
            "--upstream=http://127.0.0.1:8445/",
            "--config-file=/etc/kube-rbac-proxy/auth.yaml",
            "--tls-cert-file=/etc/tls/private/tls.crt",
            "--tls-private-key-file=/etc/tls/private/tls.key",
            "--proxy-endpoints-port=9443",
            "--ignore-paths=/health",
            "--auth-header-fields-enabled",
            "--auth-header-user-field-name=X-User",
            "--v=0",
        ],
        config: Some(EVALHUB_MCP_CONFIG),
        check: Check::Resource {
            path: "/sse",
            header: None,
            namespace: "evalhub-ns",
            resource: "evalhubs",
        },
    },
    // trustyai-service-operator (commit above): controllers/nemo_guardrails/
    // templates/deployment.tmpl.yaml "kubeRBACProxy" with deployment.go setAuthConfig
    // (DownstreamPort 8443, HealthPort 9444, http://localhost:8000). The CA file is for
    // an http:// upstream: no effect there, in kube-rbac-proxy and here (a warning).
    Sidecar {
        name: "trustyai NemoGuardrails kube-rbac-proxy",
        args: &[
            "--secure-listen-address=0.0.0.0:8443",
            "--upstream=http://localhost:8000/",
            "--config-file=/etc/kube-rbac-proxy/config.yaml",
            "--tls-cert-file=/etc/tls/private/tls.crt",
            "--tls-private-key-file=/etc/tls/private/tls.key",
            "--upstream-ca-file=/etc/ssl/certs/ca-certificates.crt",
            "--proxy-endpoints-port=9444",
            "--v=0",
        ],
        config: Some(NEMO_GUARDRAILS_CONFIG),
        check: Check::Resource {
            path: "/v1/chat/completions",
            header: None,
            namespace: "guardrails-ns",
            resource: "services",
        },
    },
    // controllers/gorch/templates/deployment.tmpl.yaml "kubeRBACProxy" with auth.go
    // configureKubeRBACProxy: the gateway (8490, 9444, http://localhost:8090) and the
    // built-in detectors (8480, 9445, http://localhost:8080). The orchestrator's own
    // sidecar (https://<name>-service.<ns>.svc:8032/) is not here: its upstream is
    // https, and the echo exporter is plain http.
    Sidecar {
        name: "trustyai guardrails orchestrator gateway kube-rbac-proxy",
        args: &[
            "--secure-listen-address=0.0.0.0:8490",
            "--upstream=http://localhost:8090/",
            "--config-file=/etc/kube-rbac-proxy/config.yaml",
            "--tls-cert-file=/etc/tls/private/tls.crt",
            "--tls-private-key-file=/etc/tls/private/tls.key",
            "--upstream-ca-file=/etc/tls/ca/service-ca.crt",
            "--proxy-endpoints-port=9444",
            "--v=0",
        ],
        config: Some(GORCH_GATEWAY_CONFIG),
        check: Check::Resource {
            path: "/pii/v1/chat/completions",
            header: None,
            namespace: "guardrails-ns",
            resource: "services",
        },
    },
    Sidecar {
        name: "trustyai guardrails orchestrator built-in detectors kube-rbac-proxy",
        args: &[
            "--secure-listen-address=0.0.0.0:8480",
            "--upstream=http://localhost:8080/",
            "--config-file=/etc/kube-rbac-proxy/config.yaml",
            "--tls-cert-file=/etc/tls/private/tls.crt",
            "--tls-private-key-file=/etc/tls/private/tls.key",
            "--upstream-ca-file=/etc/tls/ca/service-ca.crt",
            "--proxy-endpoints-port=9445",
            "--v=0",
        ],
        config: Some(GORCH_BUILT_IN_CONFIG),
        check: Check::Resource {
            path: "/api/v1/text/contents?detector_id=regex",
            header: None,
            namespace: "guardrails-ns",
            resource: "services",
        },
    },
    // Not a real installer: no public installer's kube-rbac-proxy sidecar with --oidc-*
    // was found. kube-rbac-proxy's own example, brancz/kube-rbac-proxy @ 898a9f44:
    // examples/oidc/deployment.yaml, placeholders as written. It listens in plain
    // HTTP, so it is refused for that; tests/integration/oidc.rs runs the --oidc-* flags.
    Sidecar {
        name: "kube-rbac-proxy OIDC example (not an installer; plain HTTP)",
        args: &[
            "--insecure-listen-address=0.0.0.0:8444",
            "--upstream=http://127.0.0.1:8081/",
            "--logtostderr=true",
            "--v=10",
            "--oidc-issuer={ISSUER}",
            "--oidc-clientID={CLIENT_ID}",
        ],
        config: None,
        check: Check::Refused("--insecure-listen-address is not supported"),
    },
];

fn sidecar(name: &str) -> &'static Sidecar {
    CATALOGUE
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no sidecar {name:?}"))
}

// === running one ===

/// A fake apiserver and an echo exporter for sidecars to run against.
struct Cluster {
    pki: Pki,
    api: Arc<FakeApiserver>,
    echo: Echo,
}

impl Cluster {
    async fn new() -> Self {
        support::install_crypto();
        let pki = Pki::new();
        let api = FakeApiserver::start(&pki).await;
        api.add_token("scraper", SCRAPER);
        api.add_token("telemeter", TELEMETER);
        let echo = Echo::start().await;
        Self { pki, api, echo }
    }

    /// The sidecar's arguments made local (module docs), with what the test needs added
    /// first so the sidecar's own flags win where they overlap.
    fn argv(&self, sidecar: &Sidecar, listen_port: u16, probe_port: u16) -> Vec<String> {
        let config = sidecar.config.map(|text| {
            let path = self
                .pki
                .dir
                .path()
                .join(format!("config-{listen_port}-{probe_port}.yaml"));
            std::fs::write(&path, text).unwrap();
            path
        });
        let mut argv = vec!["scrape-guard".to_owned()];
        let has = |flag: &str| sidecar.args.iter().any(|a| a.starts_with(flag));
        if !has("--kubeconfig") {
            argv.push(format!("--kubeconfig={}", self.api.kubeconfig.display()));
        }
        if !has("--tls-cert-file") {
            argv.push(format!("--tls-cert-file={}", self.pki.cert_path.display()));
            argv.push(format!(
                "--tls-private-key-file={}",
                self.pki.key_path.display()
            ));
        }
        if has("--secure-port") {
            argv.push("--bind-address=127.0.0.1".into());
        }
        for arg in sidecar.args {
            argv.push(self.localize(arg, listen_port, probe_port, config.as_ref()));
        }
        argv
    }

    fn localize(&self, arg: &str, listen: u16, probe: u16, config: Option<&PathBuf>) -> String {
        let Some((flag, value)) = arg.split_once('=') else {
            return arg.to_owned();
        };
        let path = |p: &std::path::Path| format!("{flag}={}", p.display());
        match flag {
            "--secure-listen-address" | "--insecure-listen-address" => {
                let host = if value.starts_with('[') {
                    "[127.0.0.1]"
                } else {
                    "127.0.0.1"
                };
                format!("{flag}={host}:{listen}")
            }
            "--secure-port" => format!("{flag}={listen}"),
            "--proxy-endpoints-port" => format!("{flag}={probe}"),
            "--upstream" => {
                let (scheme, rest) = value.split_once("://").unwrap();
                let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
                let host = if host == "localhost" {
                    host
                } else {
                    "127.0.0.1"
                };
                format!("{flag}={scheme}://{host}:{}{tail}", self.echo.addr.port())
            }
            "--config-file" => path(config.expect("a config for --config-file")),
            "--tls-cert-file" => path(&self.pki.cert_path),
            "--tls-private-key-file" => path(&self.pki.key_path),
            "--client-ca-file" => path(&self.pki.ca_path),
            "--kubeconfig" => path(&self.api.kubeconfig),
            _ => arg.to_owned(),
        }
    }

    /// The sidecar in-process, with the warnings its flags produced.
    async fn start(&self, sidecar: &Sidecar) -> Result<Started, String> {
        let listen = if sidecar.args.iter().any(|a| a.starts_with("--secure-port")) {
            support::free_port()
        } else {
            0
        };
        let argv = self.argv(sidecar, listen, support::free_port());
        let args = scrape_guard::Args::try_parse_from(&argv).map_err(|e| e.to_string())?;
        let config = scrape_guard::Config::try_from(args).map_err(|e| e.to_string())?;
        let warnings = config.warnings.clone();
        let running = scrape_guard::start(config)
            .await
            .map_err(|e| e.to_string())?;
        let proxy = Proxy {
            addr: running.addr,
            admin_addr: running.admin_addr,
            auth_endpoint_addr: running.auth_endpoint_addr,
            listeners: running.listeners.clone(),
            running: Some(running),
        };
        Ok(Started { proxy, warnings })
    }

    fn prometheus_cert(&self) -> (String, String) {
        self.pki
            .client_cert(PROMETHEUS_K8S, &["system:serviceaccounts"])
    }
}

struct Started {
    proxy: Proxy,
    warnings: Vec<String>,
}

impl Started {
    fn probe_url(&self, path: &str) -> String {
        let admin: SocketAddr = self.proxy.admin_addr.expect("a --proxy-endpoints-port");
        format!("https://localhost:{}{path}", admin.port())
    }
}

// === the tests ===

#[tokio::test]
async fn every_installer_sidecar_starts_and_its_scraper_gets_through() {
    let cluster = Cluster::new().await;
    let plain = client(&cluster.pki, false);
    let with_cert = client_with(&cluster.pki, false, Some(&cluster.prometheus_cert()));
    for sidecar in CATALOGUE {
        let name = sidecar.name;
        if let Check::Refused(needle) = sidecar.check {
            let error = cluster.start(sidecar).await.err().unwrap_or_default();
            assert!(error.contains(needle), "{name}: {error}");
            assert!(
                error.contains("--secure-listen-address"),
                "{name} says what to use: {error}"
            );
            continue;
        }
        let started = cluster
            .start(sidecar)
            .await
            .unwrap_or_else(|e| panic!("{name} did not start:\n{e}"));
        assert_eq!(started.proxy.addr.ip().to_string(), "127.0.0.1", "{name}");
        let url = |path: &str| started.proxy.url(path);
        let reply = match sidecar.check {
            Check::Scrape(path) => {
                cluster
                    .api
                    .allow(SCRAPER, "get", path.split('?').next().unwrap());
                get(&plain, &url(path), Some("scraper"), &[]).await
            }
            Check::Resource {
                path,
                header,
                namespace,
                resource,
            } => {
                cluster
                    .api
                    .allow_resource(SCRAPER, "get", namespace, resource);
                let headers: Vec<(&str, &str)> = header.into_iter().collect();
                get(&plain, &url(path), Some("scraper"), &headers).await
            }
            Check::ClientCert(path) => {
                let before = (cluster.api.token_reviews(), cluster.api.sars());
                let reply = get(&with_cert, &url(path), None, &[]).await;
                assert_eq!(
                    (cluster.api.token_reviews(), cluster.api.sars()),
                    before,
                    "{name}: a client certificate and a static rule need no review"
                );
                reply
            }
            Check::Refused(_) => unreachable!("handled above"),
        };
        assert_eq!(reply.status, 200, "{name}: {}", reply.text());
        if started.proxy.admin_addr.is_some() {
            let probe = get(&plain, &started.probe_url("/healthz"), None, &[]).await;
            assert_eq!(probe.status, 200, "{name}: the readiness probe's /healthz");
        }
        started.proxy.shutdown().await;
    }
}

#[tokio::test]
async fn openshift_metrics_proxy_static_rules_client_certificates_and_allow_paths() {
    let cluster = Cluster::new().await;
    let started = cluster
        .start(sidecar(
            "openshift prometheus-k8s kube-rbac-proxy (metrics, federate)",
        ))
        .await
        .unwrap();
    let prometheus = client_with(&cluster.pki, false, Some(&cluster.prometheus_cert()));
    for path in ["/metrics", "/federate?match[]=up"] {
        let reply = get(&prometheus, &started.proxy.url(path), None, &[]).await;
        assert_eq!(reply.status, 200, "{path}");
    }
    assert_eq!((cluster.api.token_reviews(), cluster.api.sars()), (0, 0));
    // The upstream has no trailing slash: the path arrives as sent.
    let paths: Vec<String> = cluster.echo.seen().iter().map(|s| s.uri.clone()).collect();
    assert_eq!(paths, ["/metrics", "/federate?match[]=up"]);

    // Outside --allow-paths: 404 before anything is asked.
    let reply = get(&prometheus, &started.proxy.url("/api/v1/query"), None, &[]).await;
    assert_eq!(reply.status, 404);

    // The telemeter client's token: one TokenReview, then the third static rule.
    let plain = client(&cluster.pki, false);
    let reply = get(
        &plain,
        &started.proxy.url("/federate"),
        Some("telemeter"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!((cluster.api.token_reviews(), cluster.api.sars()), (1, 0));
    // ... but not /metrics: that falls through to a SubjectAccessReview, which denies.
    let reply = get(
        &plain,
        &started.proxy.url("/metrics"),
        Some("telemeter"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 403);
    assert_eq!(cluster.api.sars(), 1);
    started.proxy.shutdown().await;
}

#[tokio::test]
async fn tenancy_proxies_review_each_namespace_and_authenticate_first() {
    let cluster = Cluster::new().await;
    let c = client(&cluster.pki, false);
    let started = cluster
        .start(sidecar(
            "openshift thanos-querier kube-rbac-proxy (tenancy)",
        ))
        .await
        .unwrap();
    let url = |q: &str| started.proxy.url(&format!("/api/v1/query?query=up{q}"));

    // No token: 401, whatever the query; the namespaces are never looked at.
    for q in ["", "&namespace=team-a"] {
        let reply = get(&c, &url(q), None, &[]).await;
        assert_eq!(reply.status, 401, "{q:?}");
    }
    let reply = get(&c, &url("&namespace=team-a"), Some("junk"), &[]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(cluster.api.sars(), 0);

    // Authenticated, no namespace: 400 (kube-rbac-proxy's "malformed" answer).
    let reply = get(&c, &url(""), Some("scraper"), &[]).await;
    assert_eq!(reply.status, 400);
    assert_eq!(cluster.api.sars(), 0);

    // One review per namespace, each in the pods.metrics.k8s.io terms of the config.
    cluster.api.allow_resource(SCRAPER, "get", "team-a", "pods");
    let reply = get(
        &c,
        &url("&namespace=team-a&namespace=team-b"),
        Some("scraper"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 403, "team-b is not allowed");
    assert_eq!(cluster.api.sars(), 2);
    let spec = cluster.api.last_sar_spec();
    assert_eq!(spec["resourceAttributes"]["namespace"], "team-b");
    assert_eq!(spec["resourceAttributes"]["group"], "metrics.k8s.io");
    assert_eq!(spec["resourceAttributes"]["version"], "v1beta1");
    assert_eq!(spec["resourceAttributes"]["resource"], "pods");
    // (team-b's "no" is cached for --authz-deny-ttl: another namespace is granted.)
    cluster.api.allow_resource(SCRAPER, "get", "team-c", "pods");
    let reply = get(
        &c,
        &url("&namespace=team-c&namespace=team-a"),
        Some("scraper"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200);
    started.proxy.shutdown().await;

    // The Helm chart's prom-label-proxy sidecar takes the namespace from a header.
    let started = cluster
        .start(sidecar("helm prom-label-proxy kube-rbac-proxy"))
        .await
        .unwrap();
    let url = started.proxy.url("/api/v1/query?query=up");
    let reply = get(&c, &url, None, &[("X-Namespace", "team-a")]).await;
    assert_eq!(reply.status, 401);
    let reply = get(&c, &url, Some("scraper"), &[]).await;
    assert_eq!(reply.status, 400);
    cluster
        .api
        .allow_resource(SCRAPER, "get", "team-a", "namespaces");
    let reply = get(&c, &url, Some("scraper"), &[("x-namespace", "team-a")]).await;
    assert_eq!(reply.status, 200, "{}", cluster.api.last_sar_spec());
    assert_eq!(
        cluster.api.last_sar_spec()["resourceAttributes"]["subresource"],
        "metrics"
    );
    started.proxy.shutdown().await;
}

#[tokio::test]
async fn probes_pass_through_ignore_paths_without_credentials() {
    let cluster = Cluster::new().await;
    let c = client(&cluster.pki, false);
    for (name, probes) in [
        (
            "helm kube-state-metrics kube-rbac-proxy-http",
            ["/livez", "/readyz"],
        ),
        (
            "openshift prometheus-k8s kube-rbac-proxy-web",
            ["/-/healthy", "/-/ready"],
        ),
    ] {
        let started = cluster.start(sidecar(name)).await.unwrap();
        for probe in probes {
            let reply = get(&c, &started.proxy.url(probe), None, &[]).await;
            assert_eq!(reply.status, 200, "{name} {probe}");
        }
        let reply = get(&c, &started.proxy.url("/metrics"), None, &[]).await;
        assert_eq!(reply.status, 401, "{name}: everything else is guarded");
        started.proxy.shutdown().await;
    }
    assert_eq!(cluster.api.token_reviews(), 0);
}

#[tokio::test]
async fn resource_attributes_verb_lets_any_method_through_as_get() {
    let cluster = Cluster::new().await;
    let c = client(&cluster.pki, false);
    // RBAC grants `get` only, as KServe's and the notebook controller's do.
    cluster
        .api
        .allow_resource(SCRAPER, "get", "kserve-demo", "inferenceservices");
    let started = cluster
        .start(sidecar(
            "opendatahub kserve InferenceService kube-rbac-proxy",
        ))
        .await
        .unwrap();
    let predict = started.proxy.url("/v1/models/sklearn-iris:predict");
    let body = Bytes::from_static(br#"{"instances": [[6.8, 2.8, 4.8, 1.4]]}"#);
    let reply = send(&c, "POST", &predict, Some("scraper"), &[], body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let spec = cluster.api.last_sar_spec();
    assert_eq!(spec["resourceAttributes"]["verb"], "get");
    assert_eq!(spec["resourceAttributes"]["name"], "sklearn-iris");
    // `--upstream=http://localhost:8080`, no trailing slash: the path is forwarded as is,
    // with the caller named in kube-rbac-proxy's default headers.
    let seen = cluster.echo.seen();
    let last = seen.last().unwrap();
    assert_eq!(
        (last.method.as_str(), last.uri.as_str()),
        ("POST", "/v1/models/sklearn-iris:predict")
    );
    assert_eq!(last.headers["x-remote-user"], SCRAPER);
    started.proxy.shutdown().await;
}

#[tokio::test]
async fn notebook_controller_identity_headers_have_its_names() {
    let cluster = Cluster::new().await;
    let c = client(&cluster.pki, false);
    cluster
        .api
        .allow_resource(SCRAPER, "get", "ds-project", "notebooks");
    let started = cluster
        .start(sidecar("opendatahub notebook-controller kube-rbac-proxy"))
        .await
        .unwrap();
    let spoofed = [("X-Auth-Request-User", "admin")];
    let url = started
        .proxy
        .url("/notebook/ds-project/my-workbench/api/kernels");
    let reply = send(&c, "PUT", &url, Some("scraper"), &spoofed, Bytes::new()).await;
    assert_eq!(reply.status, 200);
    let spec = cluster.api.last_sar_spec();
    assert_eq!(spec["resourceAttributes"]["verb"], "get");
    assert!(
        spec["resourceAttributes"]["name"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "resourceName is no kube-rbac-proxy key: ignored, as there: {spec}"
    );
    let seen = cluster.echo.seen();
    let headers = &seen.last().unwrap().headers;
    assert_eq!(
        headers["x-auth-request-user"], SCRAPER,
        "the client's copy was replaced"
    );
    assert_eq!(headers["x-auth-request-groups"], "system:authenticated");
    started.proxy.shutdown().await;
}

#[tokio::test]
async fn the_real_binary_warns_about_unknown_config_keys_and_unservable_suites() {
    let cluster = Cluster::new().await;
    cluster
        .api
        .allow_resource(SCRAPER, "get", "ds-project", "notebooks");
    cluster.api.allow(SCRAPER, "get", "/metrics");
    let c = client(&cluster.pki, false);
    for (name, path, needles) in [
        (
            "opendatahub notebook-controller kube-rbac-proxy",
            "/notebook/ds-project/my-workbench/api",
            &[
                "unknown key authorization.resourceAttributes.resourceName is ignored",
                "did you mean name?",
                "line 6",
                "upstream kube-rbac-proxy ignores this key",
            ][..],
        ),
        (
            "metallb speaker kube-rbac-proxy",
            "/metrics",
            &[
                "not offering TLS_RSA_WITH_AES_128_CBC_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, \
                 TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
                "not implemented by rustls",
                "--logtostderr",
            ],
        ),
    ] {
        let port = support::free_port();
        let argv = cluster.argv(sidecar(name), port, support::free_port());
        let extra: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
        let child = support::spawn_binary(
            BIN,
            &cluster.pki,
            &cluster.api,
            &cluster.echo.url(),
            port,
            &extra,
            &[],
        )
        .await;
        let reply = get(&c, &format!("https://localhost:{port}{path}"), Some("scraper"), &[]).await;
        assert_eq!(reply.status, 200, "{name}");
        let config = argv.iter().find_map(|a| a.strip_prefix("--config-file="));
        if let Some(config) = config {
            // A new version is warned about too, when it is re-read.
            let tmp = format!("{config}.tmp");
            std::fs::write(&tmp, format!("{NOTEBOOK_CONFIG}\n    labelSelector: a=b\n")).unwrap();
            std::fs::rename(&tmp, config).unwrap();
            tokio::time::sleep(Duration::from_secs(6)).await;
        }
        let (status, logs) = support::terminate(child).await;
        assert_eq!(status.code(), Some(0), "{name}:\n{logs}");
        for needle in needles {
            assert!(logs.contains(needle), "{name}: missing {needle:?} in\n{logs}");
        }
        if let Some(config) = config {
            assert!(logs.contains(config), "the warning names the file:\n{logs}");
            assert!(
                logs.contains("authorization.resourceAttributes.labelSelector is ignored"),
                "the reloaded version's unknown key:\n{logs}"
            );
        }
        if name.starts_with("metallb") {
            assert_eq!(logs.matches("not offering").count(), 1, "warned once:\n{logs}");
        }
    }
}

#[tokio::test]
async fn openshift_old_tls_profile_serves_tls12_up_and_says_so() {
    let cluster = Cluster::new().await;
    let started = cluster
        .start(sidecar(
            "openshift node-exporter kube-rbac-proxy, Old TLS profile",
        ))
        .await
        .unwrap();
    let warnings = started.warnings.join("\n");
    assert!(
        warnings.contains("--tls-min-version VersionTLS10"),
        "{warnings}"
    );
    assert!(
        warnings.contains("TLS_RSA_WITH_3DES_EDE_CBC_SHA"),
        "{warnings}"
    );
    assert!(
        !warnings.contains("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
        "{warnings}"
    );
    let prometheus = client_with(&cluster.pki, false, Some(&cluster.prometheus_cert()));
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        get(&prometheus, &started.proxy.url("/metrics"), None, &[]),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    started.proxy.shutdown().await;
}

#[tokio::test]
async fn evalhub_endpoints_decide_as_the_opendatahub_fork_does() {
    let cluster = Cluster::new().await;
    let started = cluster
        .start(sidecar(
            "trustyai EvalHub kube-rbac-proxy (Format 2 endpoints)",
        ))
        .await
        .unwrap();
    let c = client(&cluster.pki, false);
    let api = &cluster.api;
    api.allow_resource(SCRAPER, "list", "team-a", "evaluations");
    api.allow_resource(SCRAPER, "get", "team-a", "evaluations");
    api.allow_resource(SCRAPER, "create", "team-a", "evaluations");
    api.allow_resource(SCRAPER, "create", "team-a", "experiments");
    api.allow_resource(SCRAPER, "create", "team-a", "status-events");
    let tenant: &[(&str, &str)] = &[("X-Tenant", "team-a")];
    let other: &[(&str, &str)] = &[("X-Tenant", "team-b")];
    // (method, path, headers, status, the reviews it costs: verb and resource, in order)
    type Headers = &'static [(&'static str, &'static str)];
    let table: &[(&str, &str, Headers, u16, Headers)] = &[
        (
            "GET",
            "/api/v1/evaluations/jobs",
            tenant,
            200,
            &[("list", "evaluations")],
        ),
        (
            "GET",
            "/api/v1/evaluations/jobs/j-1",
            tenant,
            200,
            &[("get", "evaluations")],
        ),
        (
            "DELETE",
            "/api/v1/evaluations/jobs/j-1",
            tenant,
            403,
            &[("delete", "evaluations")],
        ),
        (
            "POST",
            "/api/v1/evaluations/jobs/j-1/events",
            tenant,
            200,
            &[("create", "status-events")],
        ),
        // A job's events only take POST: 403 with no review.
        (
            "GET",
            "/api/v1/evaluations/jobs/j-1/events",
            tenant,
            403,
            &[],
        ),
        // Three rules, all must allow: the third (`get experiments`) is denied.
        (
            "POST",
            "/api/v1/evaluations/jobs",
            tenant,
            403,
            &[
                ("create", "evaluations"),
                ("create", "experiments"),
                ("get", "experiments"),
            ],
        ),
        (
            "GET",
            "/api/v1/evaluations/jobs",
            other,
            403,
            &[("list", "evaluations")],
        ),
        // No X-Tenant: 400, no review.
        ("GET", "/api/v1/evaluations/jobs", &[], 400, &[]),
        // Deeper than `*`: no endpoint matches, so the path is reviewed as itself.
        (
            "GET",
            "/api/v1/evaluations/jobs/j-1/x/y",
            tenant,
            403,
            &[("get", "")],
        ),
        // The health path is not authorized at all.
        ("GET", "/api/v1/health", &[], 200, &[]),
    ];
    for &(method, path, headers, want, reviews) in table {
        let before = api.sar_specs().len();
        let token = (path != "/api/v1/health").then_some("scraper");
        let reply = send(
            &c,
            method,
            &started.proxy.url(path),
            token,
            headers,
            Bytes::new(),
        )
        .await;
        assert_eq!(
            reply.status,
            want,
            "{method} {path} {headers:?}: {}",
            reply.text()
        );
        let asked: Vec<(String, String)> = api.sar_specs()[before..]
            .iter()
            .map(|spec| {
                let attrs = if spec["resourceAttributes"].is_object() {
                    &spec["resourceAttributes"]
                } else {
                    &spec["nonResourceAttributes"]
                };
                let text = |k: &str| attrs[k].as_str().unwrap_or_default().to_owned();
                (text("verb"), text("resource"))
            })
            .collect();
        let reviews: Vec<(String, String)> = reviews
            .iter()
            .map(|(v, r)| (v.to_string(), r.to_string()))
            .collect();
        assert_eq!(asked, reviews, "{method} {path}: the reviews asked");
    }
    let first = &api.sar_specs()[0];
    assert_eq!(
        first["resourceAttributes"]["group"],
        "trustyai.opendatahub.io"
    );
    assert_eq!(first["resourceAttributes"]["namespace"], "team-a");
    started.proxy.shutdown().await;
}

/// TrustyAI's guardrails sidecars ask one question whatever the request: `get services`
/// in the owner's namespace, with no name (`resourceName` is not a kube-rbac-proxy key).
#[tokio::test]
async fn trustyai_guardrails_sidecars_ask_get_services_for_every_method() {
    for name in [
        "trustyai NemoGuardrails kube-rbac-proxy",
        "trustyai guardrails orchestrator gateway kube-rbac-proxy",
        "trustyai guardrails orchestrator built-in detectors kube-rbac-proxy",
    ] {
        let cluster = Cluster::new().await;
        let c = client(&cluster.pki, false);
        let started = cluster.start(sidecar(name)).await.unwrap();
        assert!(
            started
                .warnings
                .iter()
                .any(|w| w.contains("--upstream-ca-file has no effect")),
            "{name}: {:?}",
            started.warnings
        );
        let url = started.proxy.url("/v1/chat/completions");
        let body = || Bytes::from_static(br#"{"messages": []}"#);
        // Allowed `get services` in another namespace only: denied.
        cluster
            .api
            .allow_resource(TELEMETER, "get", "other-ns", "services");
        let reply = send(&c, "POST", &url, Some("telemeter"), &[], body()).await;
        assert_eq!(reply.status, 403, "{name}: {}", reply.text());
        // Allowed `get services` in the namespace: a POST passes, reviewed as `get`.
        cluster
            .api
            .allow_resource(SCRAPER, "get", "guardrails-ns", "services");
        let reply = send(&c, "POST", &url, Some("scraper"), &[], body()).await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.text());
        let spec = cluster.api.last_sar_spec();
        let attrs = &spec["resourceAttributes"];
        assert_eq!(
            (&attrs["verb"], &attrs["resource"], &attrs["namespace"]),
            (&"get".into(), &"services".into(), &"guardrails-ns".into()),
            "{name}: {spec}"
        );
        assert_eq!(attrs["name"].as_str().unwrap_or_default(), "", "{name}");
        // No token: 401, nothing forwarded.
        let seen = cluster.echo.seen().len();
        let reply = send(&c, "POST", &url, None, &[], body()).await;
        assert_eq!(reply.status, 401, "{name}");
        assert_eq!(cluster.echo.seen().len(), seen, "{name}");
        started.proxy.shutdown().await;
    }
}

// === Deckhouse: its fork's KUBE_RBAC_PROXY_CONFIG, no --upstream ===

/// A Deckhouse sidecar: its arguments and its `KUBE_RBAC_PROXY_CONFIG`, as rendered
/// from github.com/deckhouse/deckhouse (the commit named), and the requests its
/// Prometheus and kubelet make: (path, with the scraper's token, status, the path the
/// exporter at that upstream port sees).
struct Deckhouse {
    name: &'static str,
    args: &'static [&'static str],
    config: &'static str,
    /// The scraper's grant: (namespace, resource).
    grant: (&'static str, &'static str),
    requests: &'static [Request],
}

/// (path, with the scraper's token, status, the upstream port and path it reaches).
type Request = (&'static str, bool, u16, Option<(u16, &'static str)>);

const DECKHOUSE: &[Deckhouse] = &[
    // modules/340-monitoring-kubernetes/templates/node-exporter/daemonset.yaml
    // @ 012638451ea649314bb6a6c55ee28103438aac16. node-exporter listens on
    // 127.0.0.1:9101, the sidecar on the pod IP's 9101.
    Deckhouse {
        name: "deckhouse node-exporter",
        args: &[
            "--secure-listen-address=$(KUBE_RBAC_PROXY_LISTEN_ADDRESS):9101",
            "--client-ca-file=/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
            "--v=2",
            "--logtostderr=true",
            "--stale-cache-interval=1h30m",
        ],
        config: "upstreams:
- upstream: http://127.0.0.1:9101/metrics
  path: /metrics
  authorization:
    resourceAttributes:
      namespace: d8-monitoring
      apiGroup: apps
      apiVersion: v1
      resource: daemonsets
      subresource: prometheus-metrics
      name: node-exporter
",
        grant: ("d8-monitoring", "daemonsets"),
        requests: &[
            ("/metrics", true, 200, Some((9101, "/metrics"))),
            ("/metrics/", true, 404, None),
            ("/", true, 404, None),
        ],
    },
    // modules/340-monitoring-kubernetes/templates/kube-state-metrics/deployment.yaml
    // @ 2874603851a6d559896b860a2ce3ac4e77c1402d: kube-state-metrics on 127.0.0.1:8081
    // (main) and :8082 (telemetry); the kubelet probes /main/healthz.
    Deckhouse {
        name: "deckhouse kube-state-metrics",
        args: &[
            "--secure-listen-address=$(KUBE_RBAC_PROXY_LISTEN_ADDRESS):8080",
            "--v=2",
            "--logtostderr=true",
            "--stale-cache-interval=1h30m",
        ],
        config: "excludePaths:
- /main/healthz
upstreams:
- upstream: http://127.0.0.1:8081/
  path: /main/
  authorization:
    resourceAttributes:
      namespace: d8-monitoring
      apiGroup: apps
      apiVersion: v1
      resource: deployments
      subresource: prometheus-main-metrics
      name: kube-state-metrics
- upstream: http://127.0.0.1:8082/metrics
  path: /self/metrics
  authorization:
    resourceAttributes:
      namespace: d8-monitoring
      apiGroup: apps
      apiVersion: v1
      resource: deployments
      subresource: prometheus-self-metrics
      name: kube-state-metrics
",
        grant: ("d8-monitoring", "deployments"),
        requests: &[
            ("/main/metrics", true, 200, Some((8081, "/metrics"))),
            ("/self/metrics", true, 200, Some((8082, "/metrics"))),
            ("/main/healthz", false, 200, Some((8081, "/healthz"))),
            ("/main/metrics", false, 401, None),
            ("/metrics", true, 404, None),
        ],
    },
    // The ingress-nginx controller pod as Deckhouse renders it (a hook test's fixture in
    // modules/402-ingress-nginx, the indexed version): the controller on :10254, the
    // protobuf exporter on :9091; the kubelet probes /controller/healthz.
    Deckhouse {
        name: "deckhouse ingress-nginx",
        args: &[
            "--secure-listen-address=$(KUBE_RBAC_PROXY_LISTEN_ADDRESS):10354",
            "--v=2",
            "--logtostderr=true",
            "--stale-cache-interval=1h30m",
        ],
        config: "excludePaths:
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
",
        grant: ("d8-ingress-nginx", "daemonsets"),
        requests: &[
            ("/controller/metrics", true, 200, Some((10254, "/metrics"))),
            ("/protobuf/metrics", true, 200, Some((9091, "/metrics"))),
            ("/controller/healthz", false, 200, Some((10254, "/healthz"))),
            ("/controller", false, 301, None),
            ("/protobuf/metrics", false, 401, None),
            ("/statsd/metrics", true, 404, None),
        ],
    },
];

#[tokio::test]
async fn deckhouse_sidecars_route_each_path_to_its_exporter_by_its_own_rules() {
    support::install_crypto();
    for sidecar in DECKHOUSE {
        let name = sidecar.name;
        let pki = Pki::new();
        let api = FakeApiserver::start(&pki).await;
        api.add_token("scraper", SCRAPER);
        api.allow_resource(SCRAPER, "get", sidecar.grant.0, sidecar.grant.1);
        // One echo exporter per upstream port of the config, at a free port.
        let mut config = sidecar.config.to_owned();
        let mut exporters = Vec::new();
        for port in [9101, 8081, 8082, 10254, 9091] {
            let written = format!("http://127.0.0.1:{port}/");
            if config.contains(&written) || config.contains(&format!("{written}metrics")) {
                let echo = Echo::start().await;
                config = config.replace(
                    &format!("127.0.0.1:{port}/"),
                    &format!("127.0.0.1:{}/", echo.addr.port()),
                );
                exporters.push((port, echo));
            }
        }
        let mut argv = vec![
            "scrape-guard".to_owned(),
            format!("--kubeconfig={}", api.kubeconfig.display()),
            format!("--tls-cert-file={}", pki.cert_path.display()),
            format!("--tls-private-key-file={}", pki.key_path.display()),
            // KUBE_RBAC_PROXY_CONFIG, through the flag it sets (tests share the env).
            format!("--kube-rbac-proxy-config={config}"),
        ];
        for arg in sidecar.args {
            argv.push(match arg.split_once('=') {
                Some(("--secure-listen-address", _)) => {
                    "--secure-listen-address=127.0.0.1:0".into()
                }
                Some(("--client-ca-file", _)) => {
                    format!("--client-ca-file={}", pki.ca_path.display())
                }
                _ => arg.to_string(),
            });
        }
        let args = scrape_guard::Args::try_parse_from(&argv).unwrap();
        let config = scrape_guard::Config::try_from(args).unwrap_or_else(|e| panic!("{name}: {e}"));
        let running = scrape_guard::start(config).await.unwrap();
        let c = client(&pki, false);
        for &(path, token, status, forwarded) in sidecar.requests {
            let url = format!("https://localhost:{}{path}", running.addr.port());
            let before: Vec<usize> = exporters.iter().map(|(_, e)| e.seen().len()).collect();
            let reply = get(&c, &url, token.then_some("scraper"), &[]).await;
            assert_eq!(reply.status, status, "{name} {path}: {}", reply.text());
            for ((port, echo), before) in exporters.iter().zip(before) {
                let seen = echo.seen();
                match forwarded {
                    Some((to, want)) if to == *port => {
                        assert_eq!(seen.len(), before + 1, "{name} {path} reaches :{port}");
                        assert_eq!(seen[before].uri, want, "{name} {path}");
                    }
                    _ => assert_eq!(seen.len(), before, "{name} {path} does not reach :{port}"),
                }
            }
        }
        running.shutdown().await;
    }
}
