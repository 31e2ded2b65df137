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

fn warnings(files: &[(&str, &str)]) -> Vec<String> {
    let files: Vec<(PathBuf, Vec<u8>)> = files
        .iter()
        .map(|(name, text)| (PathBuf::from(name), text.as_bytes().to_vec()))
        .collect();
    let (rbac, warnings) = Rbac::parse_and_lint(&files).unwrap();
    assert_eq!(Rbac::parse(&files).unwrap().warnings(), warnings.len());
    drop(rbac);
    warnings
        .into_iter()
        .map(|w| format!("{} line {}: {}", w.file, w.line, w.text))
        .collect()
}

const READER: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: \
                      {name: reader}\nrules:\n- nonResourceURLs: [/metrics]\n  verbs: [get]\n";

#[test]
fn the_shipped_example_has_no_warnings() {
    let example = include_str!("../../../deploy/examples/standalone/rbac.yaml");
    assert_eq!(warnings(&[("a.yaml", example)]), Vec::<String>::new());
}

#[test]
fn mistakes_that_allow_nothing_are_warnings_with_file_and_line() {
    let table: &[(&str, &[&str])] = &[
        (
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\n\
             rules:\n- nonResourceURL: [/metrics]\n  verbs: [get]\n",
            &["f.yaml line 5: ClusterRole \"r\": unknown key rules[0].nonResourceURL is ignored; \
               did you mean nonResourceURLs?"],
        ),
        (
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r, \
             namespce: x}\nrule: []\n",
            &[
                "f.yaml line 3: ClusterRole \"r\": unknown key metadata.namespce is ignored; did \
                 you mean namespace?",
                "f.yaml line 4: ClusterRole \"r\": unknown key rule is ignored; did you mean rules?",
            ],
        ),
        (
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: \
             b}\nroleRef: {kind: ClusterRole, name: missing}\nsubjects:\n- {kind: ServiceAccount, \
             name: prometheus}\n",
            &[
                "f.yaml line 4: ClusterRoleBinding \"b\" binds ClusterRole \"missing\", which no \
                 --rbac-file defines: it allows nothing here (local RBAC sees only these files)",
                "f.yaml line 6: ClusterRoleBinding \"b\": subjects[0] is ServiceAccount \
                 \"prometheus\" without a namespace: it matches nobody (only a RoleBinding's \
                 subjects default to its namespace; the apiserver refuses this one)",
            ],
        ),
        (
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b, \
             namespace: ns}\nroleRef:\n  kind: Role\n  name: r\n  apigroup: x\nsubjects:\n- {kind: ServiceAccount, name: a}\n- {kind: \
             Serviceaccount, name: c}\n",
            &[
                "f.yaml line 6: RoleBinding \"b\" binds Role \"r\" in namespace \"ns\", which no \
                 --rbac-file defines: it allows nothing here (local RBAC sees only these files)",
                "f.yaml line 7: RoleBinding \"b\": unknown key roleRef.apigroup is ignored; did \
                 you mean apiGroup?",
                "f.yaml line 10: RoleBinding \"b\": subjects[1].kind \"Serviceaccount\" is not \
                 User, Group or ServiceAccount: it matches nobody",
            ],
        ),
        (
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: rbac.authorization.k8s.io/v1\n  kind: \
             ClusterRoleBinding\n  metadata: {name: b}\n  roleRef: {kind: Role, name: r}\n",
            &["f.yaml line 7: ClusterRoleBinding \"b\": roleRef.kind \"Role\" is not \
               ClusterRole: it allows nothing"],
        ),
    ];
    for (yaml, want) in table {
        assert_eq!(&warnings(&[("f.yaml", yaml)]), want, "{yaml}");
    }
}

#[test]
fn a_role_in_another_file_is_defined() {
    let binding = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: \
                   {name: b}\nroleRef: {kind: ClusterRole, name: reader}\nsubjects:\n- {kind: User, \
                   name: alice}\n";
    assert_eq!(
        warnings(&[("binding.yaml", binding), ("role.yaml", READER)]),
        Vec::<String>::new()
    );
    assert_eq!(warnings(&[("binding.yaml", binding)]).len(), 1);
}
