//! The config file's `endpoints` (the opendatahub fork's "Format 2") over real TLS,
//! against the fake apiserver: the reviews each request costs and their attributes, 403
//! for an unlisted method with no review, 401 before 400, the fall-through to the rest
//! of the file; our `anyOf`, `authorizers` and captures; the same block in a
//! `--listeners-file` and reloaded; `{{ .NodeName }}` from the real binary's environment.

use scrape_guard_testkit as support;

use std::{path::Path, time::Duration};

use bytes::Bytes;
use serde_json::Value;
use support::{client, eventually, get, send, Echo, FakeApiserver, Pki, Proxy};

const SA: &str = "system:serviceaccount:team-a:client";
const BIN: &str = env!("CARGO_BIN_EXE_scrape-guard");

const CONFIG: &str = r#"authorization:
  static:
  - user: {name: system:serviceaccount:team-a:client}
    resourceRequest: true
    resource: services
    subresource: metrics
  endpoints:
  - path: /api/{ns}/jobs
    authorizers: [subjectAccessReview]
    mappings:
    - methods: [get]
      resources:
      - resourceAttributes:
          namespace: "{{ .PathParams.ns }}"
          apiGroup: trustyai.opendatahub.io
          resource: evaluations
          verb: list
    - methods: [post]
      resources:
      - rewrites: {byHttpHeader: {name: X-Tenant}}
        resourceAttributes: {namespace: "{{ .FromHeader }}", resource: evaluations}
      - rewrites: {byHttpHeader: {name: X-Tenant}}
        resourceAttributes: {namespace: "{{ .FromHeader }}", resource: experiments, verb: get}
  - path: /metrics
    authorizers: [static]
    mappings:
    - methods: [GET]
      resources:
      - resourceAttributes: {namespace: team-a, resource: services, subresource: metrics}
  - path: /node/*
    mappings:
    - methods: [GET]
      anyOf:
      - resourceAttributes: {resource: nodes, subresource: metrics, name: n1}
      - resourceAttributes: {resource: nodeproxies, subresource: proxy, name: n1}
"#;

struct World {
    pki: Pki,
    api: std::sync::Arc<FakeApiserver>,
    echo: Echo,
}

async fn world() -> World {
    support::install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token("client", SA);
    let echo = Echo::start().await;
    World { pki, api, echo }
}

fn resource(spec: &Value) -> (String, String, String, String) {
    let r = &spec["resourceAttributes"];
    let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
    (s("verb"), s("namespace"), s("resource"), s("subresource"))
}

fn row(verb: &str, ns: &str, res: &str, sub: &str) -> (String, String, String, String) {
    (verb.into(), ns.into(), res.into(), sub.into())
}

#[tokio::test]
async fn endpoints_decide_by_path_and_method_with_one_review_per_question() {
    let w = world().await;
    let config = w.pki.dir.path().join("config.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let proxy = Proxy::start(
        &w.pki,
        &w.api,
        &w.echo.url(),
        &[&format!("--config-file={}", config.display())],
    )
    .await;
    let c = client(&w.pki, false);
    let status = |path: &'static str, headers: &'static [(&'static str, &'static str)]| {
        let (c, url) = (c.clone(), proxy.url(path));
        async move { get(&c, &url, Some("client"), headers).await.status.as_u16() }
    };

    // A capture becomes the namespace; denied, then granted: one review each time.
    assert_eq!(status("/api/team-a/jobs", &[]).await, 403);
    assert_eq!(
        w.api.sar_specs().iter().map(resource).collect::<Vec<_>>(),
        [row("list", "team-a", "evaluations", "")]
    );
    assert_eq!(
        w.api.last_sar_spec()["resourceAttributes"]["group"],
        "trustyai.opendatahub.io"
    );
    w.api.allow_resource(SA, "list", "team-a", "evaluations");
    assert_eq!(status("/api/team-b/jobs", &[]).await, 403);
    assert_eq!(
        status("/api/team-a/jobs", &[]).await,
        403,
        "the deny is cached"
    );
    assert_eq!(
        w.api.sars(),
        2,
        "team-b reviewed; team-a's deny served from the cache"
    );

    // An unlisted method on a matched path: 403, no review.
    let reply = send(
        &c,
        "DELETE",
        &proxy.url("/api/team-a/jobs"),
        Some("client"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert_eq!(w.api.sars(), 2);

    // Two rules, both must allow; the first denied one decides and the next is not asked.
    let tenant: &[(&str, &str)] = &[("x-tenant", "team-c")];
    let post = |headers| {
        let (c, url) = (c.clone(), proxy.url("/api/team-a/jobs"));
        async move {
            send(&c, "POST", &url, Some("client"), headers, Bytes::new())
                .await
                .status
                .as_u16()
        }
    };
    assert_eq!(post(tenant).await, 403);
    assert_eq!(w.api.sars(), 3);
    assert_eq!(
        resource(&w.api.last_sar_spec()),
        row("create", "team-c", "evaluations", "")
    );
    // Another tenant, granted both: two questions, two reviews, then none.
    let tenant_d: &[(&str, &str)] = &[("x-tenant", "team-d")];
    w.api.allow_resource(SA, "create", "team-d", "evaluations");
    w.api.allow_resource(SA, "get", "team-d", "experiments");
    assert_eq!(post(tenant_d).await, 200);
    assert_eq!(w.api.sars(), 5, "two rules, two reviews");
    assert_eq!(post(tenant_d).await, 200);
    assert_eq!(w.api.sars(), 5, "both answers cached");

    // A missing rewrite header: 400 after authentication; without credentials: 401.
    assert_eq!(post(&[]).await, 400);
    let anonymous = send(
        &c,
        "POST",
        &proxy.url("/api/team-a/jobs"),
        None,
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(anonymous.status, 401);

    // `authorizers: [static]`: the static rule allows, nothing is reviewed.
    let before = w.api.sars();
    assert_eq!(status("/metrics", &[]).await, 200);
    assert_eq!(w.api.sars(), before);

    // anyOf: the fine-grained rule first, then the fallback.
    assert_eq!(status("/node/x", &[]).await, 403);
    let specs = w.api.sar_specs();
    assert_eq!(
        specs[before..].iter().map(resource).collect::<Vec<_>>(),
        [
            row("get", "", "nodes", "metrics"),
            row("get", "", "nodeproxies", "proxy")
        ]
    );
    // A path no endpoint matches falls through to a non-resource review of the path.
    w.api.allow(SA, "get", "/other");
    assert_eq!(status("/other", &[]).await, 200);
    assert_eq!(
        w.api.last_sar_spec()["nonResourceAttributes"]["path"],
        "/other"
    );
    // The path forwarded is the path authorized.
    let seen = w.echo.seen();
    assert_eq!(seen.last().unwrap().uri, "/other");
}

#[tokio::test]
async fn any_of_falls_back_and_static_only_endpoints_never_ask() {
    let w = world().await;
    let config = w.pki.dir.path().join("config.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    w.api.allow_resource(SA, "get", "", "nodeproxies");
    let proxy = Proxy::start(
        &w.pki,
        &w.api,
        &w.echo.url(),
        &[&format!("--config-file={}", config.display())],
    )
    .await;
    let c = client(&w.pki, false);
    let reply = get(&c, &proxy.url("/node/x"), Some("client"), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        w.api.sars(),
        2,
        "nodes/metrics denied, then the fallback allowed"
    );
    w.api.allow_resource(SA, "get", "", "nodes");
    let reply = get(&c, &proxy.url("/node/z"), Some("client"), &[]).await;
    assert_eq!(reply.status, 200);

    // Another user: the static rule does not name them, and only it may decide /metrics.
    w.api
        .add_token("other", "system:serviceaccount:team-b:other");
    w.api.allow_resource(
        "system:serviceaccount:team-b:other",
        "get",
        "team-a",
        "services",
    );
    let before = w.api.sars();
    let reply = get(&c, &proxy.url("/metrics"), Some("other"), &[]).await;
    assert_eq!(reply.status, 403);
    assert_eq!(w.api.sars(), before, "authorizers: [static] never reviews");
}

#[tokio::test]
async fn a_listener_block_holds_endpoints_and_reloads_them() {
    let w = world().await;
    let dir = w.pki.dir.path();
    let file = dir.join("listeners.yaml");
    let block = |ns: &str| {
        format!(
            "  authorization:\n    endpoints:\n    - path: /api/*\n      mappings:\n      - methods: \
             [GET]\n        resources:\n        - resourceAttributes: {{namespace: {ns}, resource: \
             jobs}}\n"
        )
    };
    let listeners = |ns: &str| {
        format!(
            "listeners:\n- name: api\n  secureListenAddress: 127.0.0.1:0\n  upstream: {}\n  \
             tlsCertFile: {}\n  tlsPrivateKeyFile: {}\n{}",
            w.echo.url(),
            w.pki.cert_path.display(),
            w.pki.key_path.display(),
            block(ns)
        )
    };
    std::fs::write(&file, listeners("one")).unwrap();
    w.api.allow_resource(SA, "get", "two", "jobs");
    let proxy = Proxy::start_listeners(&w.api, &file, &[]).await;
    let c = client(&w.pki, false);
    let url = proxy.listener_url("api", "/api/x");
    assert_eq!(get(&c, &url, Some("client"), &[]).await.status, 403);
    assert_eq!(
        w.api.last_sar_spec()["resourceAttributes"]["namespace"],
        "one"
    );

    write_atomically(&file, &listeners("two"));
    eventually(Duration::from_secs(20), || {
        let (c, url) = (c.clone(), url.clone());
        async move {
            match get(&c, &url, Some("client"), &[]).await.status.as_u16() {
                200 => Ok(()),
                other => Err(format!("still {other} after the reload")),
            }
        }
    })
    .await;

    // A broken version (a mapping without methods) keeps the last good one.
    write_atomically(
        &file,
        &listeners("two").replace("methods: [GET]", "methods: []"),
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(get(&c, &url, Some("client"), &[]).await.status, 200);
}

#[tokio::test]
async fn node_name_comes_from_the_environment_of_the_real_binary() {
    let w = world().await;
    let config = w.pki.dir.path().join("node.yaml");
    std::fs::write(
        &config,
        "authorization:\n  endpoints:\n  - path: /metrics\n    mappings:\n    - methods: [GET]\n      \
         resources:\n      - resourceAttributes: {resource: nodes, subresource: metrics, name: \
         '{{ .NodeName }}'}\n",
    )
    .unwrap();
    let port = support::free_port();
    let flag = format!("--config-file={}", config.display());
    let child = support::spawn_binary(
        BIN,
        &w.pki,
        &w.api,
        &w.echo.url(),
        port,
        &[&flag],
        &[("NODE_NAME", "worker-7")],
    )
    .await;
    let c = client(&w.pki, false);
    let url = format!("https://localhost:{port}/metrics");
    assert_eq!(get(&c, &url, Some("client"), &[]).await.status, 403);
    let spec = w.api.last_sar_spec();
    assert_eq!(spec["resourceAttributes"]["name"], "worker-7");
    assert_eq!(spec["resourceAttributes"]["subresource"], "metrics");
    drop(child);

    // Without NODE_NAME the file is refused at startup, naming the file and line.
    let output = std::process::Command::new(BIN)
        .args([
            "--secure-listen-address=127.0.0.1:0".to_owned(),
            format!("--kubeconfig={}", w.api.kubeconfig.display()),
            format!("--upstream={}", w.echo.url()),
            format!("--tls-cert-file={}", w.pki.cert_path.display()),
            format!("--tls-private-key-file={}", w.pki.key_path.display()),
            flag,
        ])
        .env_remove("NODE_NAME")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("node.yaml") && stderr.contains("line 7") && stderr.contains("NODE_NAME"),
        "{stderr}"
    );
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn can_i_names_the_endpoint_mapping_and_rule_that_decided() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "authorization:\n  endpoints:\n  - path: /api/{ns}/jobs\n    mappings:\n    - methods: \
         [GET]\n      resources:\n      - rewrites: {byHttpHeader: {name: X-Tenant}}\n        \
         resourceAttributes: {namespace: '{{ .PathParams.ns }}', apiGroup: \
         trustyai.opendatahub.io, resource: evaluations, verb: list}\n",
    )
    .unwrap();
    let rbac = dir.path().join("rbac.yaml");
    std::fs::write(
        &rbac,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: r, namespace: x}\n\
         rules:\n- {apiGroups: [trustyai.opendatahub.io], resources: [evaluations], verbs: [list]}\n\
         ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: r, \
         namespace: x}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: r}\n\
         subjects:\n- {kind: ServiceAccount, name: client, namespace: team-a}\n",
    )
    .unwrap();
    let can_i = |path: &str, header: Option<&str>| {
        let mut command = std::process::Command::new(BIN);
        command
            .args([
                "can-i".to_owned(),
                format!("--as={SA}"),
                format!("--config-file={}", config.display()),
                format!("--rbac-file={}", rbac.display()),
                format!("--path={path}"),
            ])
            .env_remove("KUBECONFIG");
        if let Some(header) = header {
            command.arg(format!("--header={header}"));
        }
        let output = command.output().unwrap();
        // The diagnosis is on stderr, the RBAC to apply on stdout.
        (
            output.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stderr),
                String::from_utf8_lossy(&output.stdout)
            ),
        )
    };
    let (code, out) = can_i("/api/x/jobs", Some("X-Tenant: t"));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "endpoint 1 (/api/{ns}/jobs), mapping 1 (GET), rule 1: list \
             evaluations.trustyai.opendatahub.io in ns=x: allowed by local policy"
        ),
        "{out}"
    );
    let (code, out) = can_i("/api/y/jobs", Some("X-Tenant: t"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("in ns=y: denied by"), "{out}");
    assert!(
        out.contains("kind: Role\n") && out.contains("namespace: y"),
        "{out}"
    );
    let (code, out) = can_i("/api/x/jobs", None);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("400 Bad Request"), "{out}");
}
