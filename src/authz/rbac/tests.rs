use super::*;
use crate::authz::ResourceAttributes;

fn user(name: &str, groups: &[&str]) -> User {
    User {
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..User::default()
    }
}

fn get(path: &str) -> Attributes {
    Attributes::non_resource("get", path)
}

fn rbac(yaml: &str) -> Rbac {
    Rbac::parse(&[("rbac.yaml".into(), yaml.as_bytes().to_vec())]).unwrap()
}

#[test]
fn non_resource_url_matching_is_the_apiservers() {
    let table = [
        ("*", "/anything", true),
        ("/metrics", "/metrics", true),
        ("/metrics", "/metrics/", false),
        ("/metrics", "/Metrics", false),
        ("/metrics*", "/metrics", true),
        ("/metrics*", "/metrics/cadvisor", true),
        ("/metrics*", "/metricsfoo", true),
        ("/metrics/*", "/metrics", false),
        ("/metrics/*", "/metrics/x", true),
        ("/met*rics", "/met*rics", true),
        ("/met*rics", "/metXrics", false),
    ];
    for (rule, path, want) in table {
        assert_eq!(
            non_resource_url_matches(rule, path),
            want,
            "{rule} vs {path}"
        );
    }
}

const METRICS_READER: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: metrics-reader}
rules:
- nonResourceURLs: ["/metrics", "/federate*"]
  verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: prometheus}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: metrics-reader}
subjects:
- {kind: ServiceAccount, name: prometheus, namespace: monitoring}
- {kind: Group, name: scrapers, apiGroup: rbac.authorization.k8s.io}
- {kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: ignored, namespace: monitoring}
"#;

#[test]
fn cluster_role_bindings_by_subject_kind() {
    let rbac = rbac(METRICS_READER);
    let table = [
        (
            user("system:serviceaccount:monitoring:prometheus", &[]),
            "/metrics",
            true,
        ),
        (
            user("system:serviceaccount:default:prometheus", &[]),
            "/metrics",
            false,
        ),
        (user("prometheus", &[]), "/metrics", false),
        (user("bob", &["scrapers"]), "/metrics", true),
        (user("bob", &["Scrapers"]), "/metrics", false),
        (user("alice", &[]), "/metrics", true),
        (user("alice", &[]), "/federate/x", true),
        (user("alice", &[]), "/metrics/cadvisor", false),
        (
            user("mallory", &["system:authenticated"]),
            "/metrics",
            false,
        ),
    ];
    for (who, path, want) in table {
        assert_eq!(
            rbac.allows(&who, &get(path)).is_some(),
            want,
            "{} {path}",
            who.name
        );
    }
    let why = rbac.allows(&user("alice", &[]), &get("/metrics")).unwrap();
    assert!(why.contains("ClusterRoleBinding \"prometheus\""), "{why}");
    let post = Attributes::non_resource("create", "/metrics");
    assert!(
        rbac.allows(&user("alice", &[]), &post).is_none(),
        "verb must match"
    );
}

#[test]
fn roles_grant_only_resources_in_their_namespace() {
    let rbac = rbac(
        r#"
apiVersion: v1
kind: List
items:
- apiVersion: rbac.authorization.k8s.io/v1
  kind: Role
  metadata: {name: pod-reader, namespace: team-a}
  rules:
  - {apiGroups: [""], resources: ["pods", "pods/log"], verbs: ["get", "list"]}
  - {nonResourceURLs: ["/metrics"], verbs: ["get"]}
- apiVersion: rbac.authorization.k8s.io/v1
  kind: RoleBinding
  metadata: {name: read-pods, namespace: team-a}
  roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
  subjects:
  - {kind: ServiceAccount, name: bot}
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRole
  metadata: {name: any-status}
  rules:
  - {apiGroups: ["*"], resources: ["*/status"], verbs: ["*"], resourceNames: ["one"]}
- apiVersion: rbac.authorization.k8s.io/v1
  kind: RoleBinding
  metadata: {name: status, namespace: team-b}
  roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: any-status}
  subjects:
  - {kind: User, name: carol}
"#,
    );
    let resource = |ns: &str, group: &str, res: &str, sub: &str, name: &str| ResourceAttributes {
        namespace: ns.into(),
        group: group.into(),
        version: "v1".into(),
        resource: res.into(),
        subresource: sub.into(),
        name: name.into(),
    };
    let attrs = |verb: &str, r: ResourceAttributes| Attributes {
        verb: verb.into(),
        path: "/".into(),
        resource: Some(r),
    };
    let bot = user("system:serviceaccount:team-a:bot", &[]);
    let carol = user("carol", &[]);
    let table = [
        (
            &bot,
            attrs("get", resource("team-a", "", "pods", "", "p")),
            true,
        ),
        (
            &bot,
            attrs("list", resource("team-a", "", "pods", "log", "")),
            true,
        ),
        (
            &bot,
            attrs("get", resource("team-a", "", "pods", "exec", "p")),
            false,
        ),
        (
            &bot,
            attrs("delete", resource("team-a", "", "pods", "", "p")),
            false,
        ),
        (
            &bot,
            attrs("get", resource("team-b", "", "pods", "", "p")),
            false,
        ),
        (
            &bot,
            attrs("get", resource("team-a", "apps", "pods", "", "p")),
            false,
        ),
        (
            &carol,
            attrs(
                "update",
                resource("team-b", "apps", "deployments", "status", "one"),
            ),
            true,
        ),
        (
            &carol,
            attrs(
                "update",
                resource("team-b", "apps", "deployments", "status", "two"),
            ),
            false,
        ),
        (
            &carol,
            attrs(
                "update",
                resource("team-b", "apps", "deployments", "", "one"),
            ),
            false,
        ),
        (
            &carol,
            attrs(
                "update",
                resource("team-a", "apps", "deployments", "status", "one"),
            ),
            false,
        ),
    ];
    for (who, attributes, want) in table {
        assert_eq!(
            rbac.allows(who, &attributes).is_some(),
            want,
            "{} {attributes:?}",
            who.name
        );
    }
    // nonResourceURLs in a namespaced Role grant nothing.
    assert!(rbac.allows(&bot, &get("/metrics")).is_none());
}

#[test]
fn errors_name_the_file_and_line() {
    let err = Rbac::parse(&[(
        "r.yaml".into(),
        b"kind: ClusterRole\nmetadata: [\n".to_vec(),
    )])
    .unwrap_err();
    assert!(err.contains("r.yaml") && err.contains("line"), "{err}");
    let err = Rbac::parse(&[(
        "r.yaml".into(),
        b"kind: RoleBinding\nmetadata: {name: x}\nroleRef: {apiGroup: a, kind: Role, name: r}\n"
            .to_vec(),
    )])
    .unwrap_err();
    assert!(err.contains("no metadata.namespace"), "{err}");
}

#[test]
fn a_type_mistake_names_the_line_and_shows_it() {
    let err = Rbac::parse(&[(
        "rbac.yaml".into(),
        b"kind: ServiceAccount\nmetadata: {name: a}\n---\nkind: ClusterRole\nmetadata:\n  name: r\nrules:\n- nonResourceURLs: \"/metrics\"\n  verbs: [get]\n".to_vec(),
    )])
    .unwrap_err();
    assert!(err.contains("ClusterRole \"r\""), "{err}");
    assert!(err.contains("line 8"), "{err}");
    assert!(
        err.contains("rbac.yaml:8:"),
        "the snippet is labelled with the file: {err}"
    );
    assert!(!err.contains("<input>"), "{err}");
}
