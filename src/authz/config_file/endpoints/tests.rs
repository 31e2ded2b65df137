use http::{HeaderMap, Method, Uri};

use super::*;
use crate::authz::config_file::ConfigFile;

fn parse(yaml: &str) -> Result<ConfigFile, String> {
    ConfigFile::parse(&[("config.yaml".into(), yaml.as_bytes().to_vec())])
}

fn warnings(yaml: &str) -> Vec<String> {
    let (_, notes) = ConfigFile::decode("config.yaml", yaml.as_bytes()).unwrap();
    notes
        .into_iter()
        .filter(|n| n.level == crate::yaml::Level::Warn)
        .map(|n| format!("line {}: {}", n.line, n.text))
        .collect()
}

const CONFIG: &str = r#"
authorization:
  resourceAttributes: {resource: fallback, apiVersion: v1}
  endpoints:
  - path: /api/v1/evaluations/jobs/*/events
    mappings:
    - methods: [post]
      resources:
      - rewrites: {byHttpHeader: {name: X-Tenant}}
        resourceAttributes:
          namespace: "{{ .FromHeader }}"
          apiGroup: trustyai.opendatahub.io
          resource: status-events
          verb: create
  - path: /api/v1/evaluations/jobs
    mappings:
    - methods: [GET]
      resources:
      - rewrites: {byQueryParameter: {name: namespace}}
        resourceAttributes:
          namespace: "{{ .Value }}"
          apiGroup: trustyai.opendatahub.io
          resource: evaluationjobs
    - methods: [get, POST]
      resources:
      - resourceAttributes: {resource: shadowed}
  - path: /ns/{ns}/jobs
    authorizers: [rbac, subjectAccessReview]
    mappings:
    - methods: [GET, DELETE]
      resources:
      - resourceAttributes:
          namespace: '{{ index .PathParams "ns" }}'
          resource: jobs
          verb: "{{ .FromMethod }}"
      - resourceAttributes: {namespace: "{{ .PathParams.ns }}", resource: pods, verb: list}
  - path: /*
    mappings:
    - methods: [GET]
      anyOf:
      - resourceAttributes: {resource: nodes, subresource: metrics, name: n}
      - resourceAttributes: {resource: nodes, subresource: proxy, name: n}
"#;

/// (verb, namespace, resource, subresource).
type Record = (String, String, String, String);

/// Each record of a plan, summarized.
fn summary(plan: &Plan) -> Vec<Record> {
    plan.records()
        .iter()
        .map(|a| {
            let r = a.resource.clone().unwrap_or_default();
            (a.verb.clone(), r.namespace, r.resource, r.subresource)
        })
        .collect()
}

fn plan_for(
    config: &ConfigFile,
    method: Method,
    target: &str,
    headers: &[(&str, &str)],
) -> Result<Plan, ProxyError> {
    let uri: Uri = target.parse().unwrap();
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            http::HeaderName::try_from(*name).unwrap(),
            value.parse().unwrap(),
        );
    }
    config.plan(&method, &uri, &map, uri.path())
}

fn row(verb: &str, ns: &str, resource: &str, sub: &str) -> Record {
    (verb.into(), ns.into(), resource.into(), sub.into())
}

#[test]
fn the_first_matching_endpoint_and_mapping_decide() {
    let config = parse(CONFIG).unwrap();
    let events = "/api/v1/evaluations/jobs/j1/events";
    let tenant = [("x-tenant", "team-a")];
    type Row<'a> = (
        Method,
        &'a str,
        &'a [(&'a str, &'a str)],
        Vec<Record>,
        Option<&'a str>,
    );
    let table: Vec<Row<'_>> = vec![
        (
            Method::POST,
            events,
            &tenant,
            vec![row("create", "team-a", "status-events", "")],
            Some("endpoint 1 (/api/v1/evaluations/jobs/*/events), mapping 1 (post)"),
        ),
        // Cleaned first: duplicate and trailing slashes.
        (
            Method::POST,
            "//api/v1/evaluations//jobs/j1/events/",
            &tenant,
            vec![row("create", "team-a", "status-events", "")],
            None,
        ),
        // `*` is exactly one segment: two do not match, and the file's top level decides.
        (
            Method::POST,
            "/api/v1/evaluations/jobs/a/b/events",
            &[],
            vec![row("create", "", "fallback", "")],
            None,
        ),
        // The first mapping listing GET wins over a later one; method case is free.
        (
            Method::GET,
            "/api/v1/evaluations/jobs?namespace=ns-1",
            &[],
            vec![row("get", "ns-1", "evaluationjobs", "")],
            Some("endpoint 2 (/api/v1/evaluations/jobs), mapping 1 (GET)"),
        ),
        (
            Method::POST,
            "/api/v1/evaluations/jobs",
            &[],
            vec![row("create", "", "shadowed", "")],
            Some("endpoint 2 (/api/v1/evaluations/jobs), mapping 2 (get, POST)"),
        ),
        // Captures, percent-decoded; every rule is a record, all must allow.
        (
            Method::DELETE,
            "/ns/te%61m-b/jobs",
            &[],
            vec![
                row("delete", "team-b", "jobs", ""),
                row("list", "team-b", "pods", ""),
            ],
            None,
        ),
        (
            Method::GET,
            "/metrics",
            &[],
            vec![
                row("get", "", "nodes", "metrics"),
                row("get", "", "nodes", "proxy"),
            ],
            Some("endpoint 4 (/*), mapping 1 (GET)"),
        ),
        // `/*` matches the root too: Go splits "/" into two empty segments.
        (
            Method::GET,
            "/",
            &[],
            vec![
                row("get", "", "nodes", "metrics"),
                row("get", "", "nodes", "proxy"),
            ],
            None,
        ),
    ];
    for (method, target, headers, want, origin) in table {
        let plan = plan_for(&config, method.clone(), target, headers)
            .unwrap_or_else(|e| panic!("{method} {target}: {e}"));
        assert_eq!(summary(&plan), want, "{method} {target}");
        if let Some(origin) = origin {
            let Plan::Check(checks) = &plan else {
                panic!("{target}: refused")
            };
            assert_eq!(checks.origin.as_deref(), Some(origin));
        }
    }
}

#[test]
fn combination_and_authorizers_come_from_the_endpoint() {
    let config = parse(CONFIG).unwrap();
    let Plan::Check(any) = plan_for(&config, Method::GET, "/metrics", &[]).unwrap() else {
        panic!("refused")
    };
    assert_eq!(any.combine, Combine::Any);
    assert_eq!(any.authorizers, Authorizers::default());
    let Plan::Check(all) = plan_for(&config, Method::GET, "/ns/a/jobs", &[]).unwrap() else {
        panic!("refused")
    };
    assert_eq!(all.combine, Combine::All);
    assert_eq!(all.authorizers.names(), ["rbac", "subjectAccessReview"]);
    // The records carry the request path as it is forwarded.
    assert_eq!(&*all.records[0].path, "/ns/a/jobs");
}

#[test]
fn an_unlisted_method_is_refused_and_a_missing_rewrite_is_a_bad_request() {
    let config = parse(CONFIG).unwrap();
    let events = "/api/v1/evaluations/jobs/j1/events";
    let refused = plan_for(&config, Method::GET, events, &[]).unwrap();
    assert_eq!(
        refused,
        Plan::Refuse {
            action: format!("GET path {events:?}"),
            reason: "endpoint 1 (/api/v1/evaluations/jobs/*/events) has no mapping for GET".into(),
        }
    );
    assert!(matches!(
        plan_for(&config, Method::HEAD, "/metrics", &[]),
        Ok(Plan::Refuse { .. })
    ));
    for (target, headers) in [
        (events, &[][..]),
        (events, &[("x-tenant", "")][..]),
        (events, &[("x-tenant", "a"), ("x-tenant", "b")][..]),
        ("/api/v1/evaluations/jobs", &[][..]),
        ("/api/v1/evaluations/jobs?namespace=a&namespace=b", &[][..]),
    ] {
        let method = if target == events {
            Method::POST
        } else {
            Method::GET
        };
        let result = plan_for(&config, method, target, headers);
        assert!(
            matches!(result, Err(ProxyError::BadRequest(_))),
            "{target} {headers:?}: {result:?}"
        );
    }
    // The same value twice is one value; `?namespace=` is an empty one, as in the fork.
    let twice = [("x-tenant", "a"), ("x-tenant", "a")];
    assert!(plan_for(&config, Method::POST, events, &twice).is_ok());
    let empty = plan_for(
        &config,
        Method::GET,
        "/api/v1/evaluations/jobs?namespace=",
        &[],
    );
    assert_eq!(
        summary(&empty.unwrap()),
        [row("get", "", "evaluationjobs", "")]
    );
}

#[test]
fn the_default_verb_is_the_forks() {
    let config = parse(
        "authorization:\n  endpoints:\n  - path: /x\n    mappings:\n    - methods: [GET, HEAD, \
         OPTIONS, PUT, PATCH, PROPFIND]\n      resources: [{resourceAttributes: {resource: r}}]\n",
    )
    .unwrap();
    for (method, verb) in [
        ("GET", "get"),
        ("HEAD", "head"),
        ("OPTIONS", "options"),
        ("PUT", "update"),
        ("PATCH", "patch"),
        ("PROPFIND", "propfind"),
    ] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let plan = plan_for(&config, method.clone(), "/x", &[]).unwrap();
        assert_eq!(plan.records()[0].verb, verb, "{method}");
    }
}

#[test]
fn clean_is_gos_path_clean() {
    for (path, want) in [
        ("", "/"),
        ("/", "/"),
        ("//a//b/", "/a/b"),
        ("/a/./b/../c", "/a/c"),
        ("/../a", "/a"),
    ] {
        assert_eq!(clean(path), want, "{path:?}");
    }
}

#[test]
fn what_the_fork_refuses_and_what_we_add_are_errors_with_a_line() {
    let endpoint = |body: &str| format!("authorization:\n  endpoints:\n  - {body}\n");
    let ok_mapping =
        "mappings: [{methods: [GET], resources: [{resourceAttributes: {resource: r}}]}]";
    let table = [
        (
            endpoint(&format!("path: ' '\n    {ok_mapping}")),
            "config.yaml: line 3: authorization.endpoints[0]: path must be non-empty",
        ),
        (
            "authorization:\n  endpoints:\n  - ~\n".to_owned(),
            "line 3: authorization.endpoints[0]: path must be non-empty",
        ),
        (
            endpoint("path: /x"),
            "line 3: authorization.endpoints[0] (path \"/x\"): mappings must contain at least one entry",
        ),
        (
            endpoint("path: /x\n    mappings:\n    - resources: [{}]"),
            "line 5: authorization.endpoints[0] (path \"/x\"): mappings[0] must specify a non-empty methods list",
        ),
        (
            endpoint("path: /x\n    mappings:\n    - methods: [GET]"),
            "line 5: authorization.endpoints[0] (path \"/x\"): mappings[0] must contain at least one resource rule",
        ),
        (
            endpoint(
                "path: /x\n    mappings:\n    - methods: [GET]\n      resources:\n      - \
                 rewrites:\n          byHttpHeader: {name: ' '}",
            ),
            "line 8: authorization.endpoints[0] (path \"/x\"): mappings[0].resources[0].rewrites.byHttpHeader must specify a non-empty name",
        ),
        (
            endpoint(&format!("path: /a/{{b-c}}\n    {ok_mapping}")),
            "line 3: authorization.endpoints[0] (path \"/a/{b-c}\"): \"{b-c}\" is not a capture",
        ),
        (
            endpoint(&format!("path: /a/{{x}}/{{x}}\n    {ok_mapping}")),
            "the capture {x} is given twice",
        ),
        (
            endpoint(
                "path: /a/{x}\n    mappings:\n    - methods: [GET]\n      resources:\n      - \
                 resourceAttributes: {namespace: '{{ .PathParams.y }}'}",
            ),
            "line 7: authorization.endpoints[0] (path \"/a/{x}\"): mappings[0].resources[0].resourceAttributes.namespace: the path has no {y} capture",
        ),
        (
            endpoint(
                "path: /x\n    mappings:\n    - methods: [GET]\n      resources: [{}]\n      \
                 anyOf: [{}]",
            ),
            "line 7: authorization.endpoints[0] (path \"/x\"): mappings[0]: give resources",
        ),
        (
            endpoint(&format!("path: /x\n    authorizers: [static, apiserver]\n    {ok_mapping}")),
            "line 4: authorization.endpoints[0].authorizers: unknown authorizer \"apiserver\"",
        ),
        (
            endpoint(&format!("path: /x\n    authorizers: []\n    {ok_mapping}")),
            "an empty list would deny every request",
        ),
        (
            endpoint(
                "path: /x\n    mappings:\n    - methods: [GET]\n      resources:\n      - \
                 resourceAttributes: {namespace: '{{ .Namespace }}'}",
            ),
            "resources[0].resourceAttributes.namespace: unsupported template",
        ),
    ];
    for (yaml, want) in table {
        let err = parse(&yaml).unwrap_err();
        assert!(err.contains(want), "{yaml}\n→ {err}\nwanted {want}");
    }
}

#[test]
fn node_name_needs_the_environment() {
    if std::env::var_os(read::NODE_NAME_ENV).is_some() {
        return; // Set where this runs: the error cannot happen.
    }
    let err = parse(
        "authorization:\n  endpoints:\n  - path: /metrics\n    mappings:\n    - methods: [GET]\n      \
         resources:\n      - resourceAttributes: {resource: nodes, name: '{{ .NodeName }}'}\n",
    )
    .unwrap_err();
    assert!(
        err.contains("line 7: ") && err.contains("NODE_NAME"),
        "{err}"
    );
}

#[test]
fn paths_that_never_match_and_empty_templates_are_warned_about() {
    let notes = warnings(
        "authorization:\n  endpoints:\n  - path: /metrics/\n    mappings:\n    - methods: [GET]\n      \
         resources:\n      - resourceAttributes: {namespace: '{{ .FromHeader }}'}\n      - {}\n",
    );
    assert!(
        notes[0]
            .starts_with("line 3: authorization.endpoints[0] (path \"/metrics/\") never matches"),
        "{notes:?}"
    );
    assert!(
        notes[1].starts_with("line 7: ")
            && notes[1].contains(".FromHeader without rewrites.byHttpHeader"),
        "{notes:?}"
    );
    assert!(
        notes[2].starts_with("line 8: ") && notes[2].contains("has no resourceAttributes"),
        "{notes:?}"
    );
}
