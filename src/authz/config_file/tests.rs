use super::*;
use crate::yaml::Level;

fn parse(yaml: &str) -> Result<ConfigFile, String> {
    ConfigFile::parse(&[("config.yaml".into(), yaml.as_bytes().to_vec())])
}

fn user(name: &str, groups: &[&str]) -> User {
    User {
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..User::default()
    }
}

#[test]
fn no_resource_attributes_means_a_non_resource_review_of_the_path() {
    let config = parse("authorization: {}\n").unwrap();
    let attrs = config
        .attributes(
            &Method::GET,
            &"/metrics?x=1".parse().unwrap(),
            &HeaderMap::new(),
            "/metrics",
        )
        .unwrap();
    assert_eq!(attrs, vec![Attributes::non_resource("get", "/metrics")]);
}

#[test]
fn rewrites_template_one_record_per_value() {
    let config = parse(
        r#"
authorization:
  resourceAttributes:
    namespace: "{{ .Value }}"
    apiGroup: monitoring.coreos.com
    apiVersion: v1
    resource: prometheusrules
  rewrites:
    byQueryParameter: {name: namespace}
    byHttpHeader: {name: x-namespace}
"#,
    )
    .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("x-namespace", "team-c".parse().unwrap());
    let attrs = config
        .attributes(
            &Method::GET,
            &"/api/v1/rules?namespace=team-a&namespace=team%2Db"
                .parse()
                .unwrap(),
            &headers,
            "/api/v1/rules",
        )
        .unwrap();
    let namespaces: Vec<&str> = attrs
        .iter()
        .map(|a| a.resource.as_ref().unwrap().namespace.as_str())
        .collect();
    assert_eq!(namespaces, ["team-a", "team-b", "team-c"]);
    let first = attrs[0].resource.as_ref().unwrap();
    assert_eq!(first.group, "monitoring.coreos.com");
    assert_eq!(first.resource, "prometheusrules");
    assert_eq!(attrs[0].verb, "get");

    let none = config.attributes(
        &Method::GET,
        &"/api/v1/rules".parse().unwrap(),
        &HeaderMap::new(),
        "/api/v1/rules",
    );
    assert!(matches!(none, Err(ProxyError::BadRequest(_))));
}

#[test]
fn rewrite_values_are_deduplicated_capped_and_share_the_path() {
    let config = parse(
        r#"
authorization:
  resourceAttributes: {namespace: "{{ .Value }}", resource: pods, apiVersion: v1}
  rewrites:
    byQueryParameter: {name: namespace}
"#,
    )
    .unwrap();
    let path = format!("/{}", "p".repeat(16 * 1024));
    let attributes = |query: String| {
        let uri: Uri = format!("{path}?{query}").parse().unwrap();
        config.attributes(&Method::GET, &uri, &HeaderMap::new(), &path)
    };
    let repeated = vec!["namespace=a"; 4000].join("&");
    let attrs = attributes(repeated).unwrap();
    assert_eq!(attrs.len(), 1, "4,000 copies of one value are one review");

    let distinct = |n: usize| {
        (0..n)
            .map(|i| format!("namespace=ns{i}"))
            .collect::<Vec<_>>()
            .join("&")
    };
    let attrs = attributes(distinct(rewrite::MAX_VALUES)).unwrap();
    assert_eq!(attrs.len(), rewrite::MAX_VALUES);
    assert!(
        attrs.iter().all(|a| Arc::ptr_eq(&a.path, &attrs[0].path)),
        "one copy of the path for all records"
    );
    assert!(matches!(
        attributes(distinct(rewrite::MAX_VALUES + 1)),
        Err(ProxyError::BadRequest(_))
    ));
}

#[test]
fn static_rules_honour_groups_and_wildcards() {
    let config = parse(
        r#"
authorization:
  static:
  - user: {name: system:serviceaccount:monitoring:prometheus-k8s}
    verb: get
    path: /metrics
  - user: {groups: [scrapers, ops]}
    path: /federate
  - resourceRequest: true
    resource: namespaces
    verb: get
"#,
    )
    .unwrap();
    let table = [
        (
            user("system:serviceaccount:monitoring:prometheus-k8s", &[]),
            Attributes::non_resource("get", "/metrics"),
            true,
        ),
        (
            user("system:serviceaccount:monitoring:prometheus-k8s", &[]),
            Attributes::non_resource("create", "/metrics"),
            false,
        ),
        (
            user("someone", &["ops"]),
            Attributes::non_resource("get", "/federate"),
            true,
        ),
        (
            user("someone", &["ops"]),
            Attributes::non_resource("delete", "/federate"),
            true,
        ),
        (
            user("someone", &["devs"]),
            Attributes::non_resource("get", "/federate"),
            false,
        ),
        (
            user("someone", &["ops"]),
            Attributes::non_resource("get", "/metrics"),
            false,
        ),
        (
            user("anyone", &[]),
            Attributes {
                verb: "get".into(),
                path: "/x".into(),
                resource: Some(ResourceAttributes {
                    resource: "namespaces".into(),
                    ..Default::default()
                }),
            },
            true,
        ),
        (
            user("anyone", &[]),
            Attributes::non_resource("get", "/namespaces"),
            false,
        ),
    ];
    for (who, attributes, want) in table {
        assert_eq!(
            config.static_allows(&who, &attributes).is_some(),
            want,
            "{} {attributes:?}",
            who.name
        );
    }
}

#[test]
fn what_kube_rbac_proxy_refuses_or_would_misread_is_an_error_with_a_line() {
    let table = [
        ("authorization:\n  resourceAttributes:\n    namespace: \"{{ .Namespace }}\"\n  rewrites: {byQueryParameter: {name: ns}}\n", "line 3: authorization.resourceAttributes.namespace: unsupported template"),
        ("authorization:\n  static:\n  - resourceRequest: maybe\n", "line 3"),
        ("authorization:\n  static: [\n", "line"),
    ];
    for (yaml, needle) in table {
        let err = parse(yaml).unwrap_err();
        assert!(
            err.contains("config.yaml") && err.contains(needle),
            "{yaml}\n→ {err}"
        );
    }
    assert!(parse("").is_ok(), "an empty file is an empty config");
}

#[test]
fn what_kube_rbac_proxy_accepts_is_accepted_with_a_warning_and_means_the_same() {
    let warnings = |yaml: &str| -> Vec<String> {
        let (_, notes) = ConfigFile::decode("config.yaml", yaml.as_bytes()).unwrap();
        notes
            .into_iter()
            .filter(|n| n.level == Level::Warn)
            .map(|n| format!("line {}: {}", n.line, n.text))
            .collect()
    };
    let table = [
        ("authorization:\n  statik: []\n", "line 2: unknown key authorization.statik is ignored (kube-rbac-proxy ignores it too); did you mean static?"),
        ("authorization:\n  resourceAttributes: {namespace: \"{{ .Value }}\"}\n", "reviewed literally"),
        ("authorization:\n  rewrites: {byQueryParameter: {name: ns}}\n", "has no effect without"),
        ("authorization:\n  static:\n  - {resourceRequest: true, path: /metrics, user: {name: a}}\n", "static[0] never matches"),
        ("authorization:\n  static:\n  - {resource: pods, user: {name: a}}\n", "static[0] never matches"),
        ("authorization:\n  resourceAttributes: {resource: pods}\n  rewrites: {}\n", "every request is refused with 400"),
    ];
    for (yaml, needle) in table {
        let got = warnings(yaml);
        assert!(got.iter().any(|w| w.contains(needle)), "{yaml}\n→ {got:?}");
    }

    // ... and they behave as in kube-rbac-proxy: the literal text is reviewed, the
    // rewrites are ignored, the dead rules never match.
    let literal =
        parse("authorization:\n  resourceAttributes: {namespace: \"{{ .Value }}\"}\n").unwrap();
    let attrs = literal
        .attributes(
            &Method::GET,
            &"/m".parse().unwrap(),
            &HeaderMap::new(),
            "/m",
        )
        .unwrap();
    assert_eq!(
        attrs[0].resource.as_ref().unwrap().namespace,
        "{{ .Value }}"
    );
    let ignored = parse("authorization:\n  rewrites: {byQueryParameter: {name: ns}}\n").unwrap();
    let attrs = ignored
        .attributes(
            &Method::GET,
            &"/m?ns=a".parse().unwrap(),
            &HeaderMap::new(),
            "/m",
        )
        .unwrap();
    assert_eq!(attrs, vec![Attributes::non_resource("get", "/m")]);
    let dead = parse("authorization:\n  static:\n  - {resource: pods, user: {name: a}}\n").unwrap();
    assert!(dead
        .static_allows(&user("a", &[]), &Attributes::non_resource("get", "/m"))
        .is_none());
    let no_source =
        parse("authorization:\n  resourceAttributes: {resource: pods}\n  rewrites: {}\n").unwrap();
    let refused = no_source.attributes(
        &Method::GET,
        &"/m".parse().unwrap(),
        &HeaderMap::new(),
        "/m",
    );
    assert!(matches!(refused, Err(ProxyError::BadRequest(_))));
}

#[test]
fn resource_attributes_verb_overrides_the_method_verb() {
    let config = parse(
        "authorization:\n  resourceAttributes:\n    resource: inferenceservices\n    \
         apiGroup: serving.kserve.io\n    name: model\n    verb: get\n",
    )
    .unwrap();
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::GET] {
        let attrs = config
            .attributes(
                &method,
                &"/v1/models/model:predict".parse().unwrap(),
                &HeaderMap::new(),
                "/v1/models/model:predict",
            )
            .unwrap();
        assert_eq!(attrs[0].verb, "get", "{method}");
        assert_eq!(attrs[0].resource.as_ref().unwrap().name, "model");
    }
    let (_, notes) = ConfigFile::decode(
        "c.yaml",
        b"authorization:\n  resourceAttributes: {verb: get}\n",
    )
    .unwrap();
    assert!(notes
        .iter()
        .any(|n| n.level == Level::Info && n.text.contains("upstream kube-rbac-proxy ignores")));
}
