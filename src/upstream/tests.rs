use super::*;
use http::HeaderName;

fn settings(url: &str) -> UpstreamSettings {
    UpstreamSettings {
        url: url.parse().unwrap(),
        options: UpstreamOptions::default(),
        timeout: Duration::from_secs(1),
        identity: IdentityHeaders {
            enabled: true,
            user: HeaderName::from_static("x-remote-user"),
            groups: HeaderName::from_static("x-remote-groups"),
            separator: "|".into(),
        },
    }
}

#[test]
fn joins_paths_like_go() {
    let table = [
        ("/", "/metrics", "/metrics"),
        ("", "/metrics", "/metrics"),
        ("/base", "/metrics", "/base/metrics"),
        ("/base/", "/metrics", "/base/metrics"),
        ("/base/", "metrics", "/base/metrics"),
        ("/base", "metrics", "/base/metrics"),
        ("/", "//metrics", "//metrics"),
    ];
    for (base, path, want) in table {
        assert_eq!(join_paths(base, path), want, "{base} + {path}");
    }
}

#[tokio::test]
async fn targets_keep_path_and_join_queries() {
    let upstream = |url: &str| Upstream::new(&settings(url), &Arc::default()).unwrap();
    let table = [
        (
            "http://127.0.0.1:9100/",
            "/metrics",
            "http://127.0.0.1:9100/metrics",
        ),
        (
            "http://127.0.0.1:9100",
            "/metrics?x=1",
            "http://127.0.0.1:9100/metrics?x=1",
        ),
        ("http://h:1/base/", "/metrics", "http://h:1/base/metrics"),
        (
            "http://h:1/?a=1",
            "/metrics?b=2",
            "http://h:1/metrics?a=1&b=2",
        ),
        ("http://h:1/?a=1", "/metrics", "http://h:1/metrics?a=1"),
        ("https://h:1/", "/m%2Fx?q=%20", "https://h:1/m%2Fx?q=%20"),
    ];
    for (base, incoming, want) in table {
        let target = upstream(base).target(&incoming.parse().unwrap()).unwrap();
        assert_eq!(target.to_string(), want, "{base} + {incoming}");
    }
}

#[tokio::test]
async fn identity_headers_are_set_when_enabled() {
    let upstream = Upstream::new(&settings("http://127.0.0.1:9100/"), &Arc::default()).unwrap();
    let user = User {
        name: "system:serviceaccount:monitoring:prometheus".into(),
        groups: [
            "system:serviceaccounts".to_owned(),
            "system:authenticated".to_owned(),
        ]
        .into(),
        ..User::default()
    };
    let mut headers = HeaderMap::new();
    upstream.add_identity(&mut headers, &user).unwrap();
    assert_eq!(headers["x-remote-user"], user.name);
    assert_eq!(
        headers["x-remote-groups"],
        "system:serviceaccounts|system:authenticated"
    );
}

/// Deckhouse's fork: `singleJoiningSlash(upstream's path, request path minus the route's
/// pattern)`, one trailing `/` dropped for an exact pattern.
#[tokio::test]
async fn a_routes_tail_joins_the_upstreams_path_as_the_fork_does() {
    let upstream = |url: &str| Upstream::new(&settings(url), &Arc::default()).unwrap();
    let table = [
        // path: /main/ and upstream http://127.0.0.1:8081/: /main/metrics → /metrics
        (
            "http://127.0.0.1:8081/",
            "metrics",
            Join::Subtree,
            "/metrics",
        ),
        ("http://127.0.0.1:8081/", "", Join::Subtree, "/"),
        ("http://127.0.0.1:8081", "a/b", Join::Subtree, "/a/b"),
        (
            "http://127.0.0.1:8081/base",
            "x/",
            Join::Subtree,
            "/base/x/",
        ),
        // path: /self/metrics and upstream http://127.0.0.1:8082/metrics → /metrics
        ("http://127.0.0.1:8082/metrics", "", Join::Exact, "/metrics"),
        (
            "http://127.0.0.1:8082/metrics/",
            "",
            Join::Exact,
            "/metrics",
        ),
        ("http://127.0.0.1:8082/", "", Join::Exact, "/"),
        ("http://127.0.0.1:8082", "", Join::Exact, "/"),
        ("http://127.0.0.1:8082/m?a=1", "", Join::Exact, "/m?a=1"),
    ];
    for (base, rest, join, want) in table {
        let tail = Tail { rest, join };
        let target = upstream(base).target_path(tail, None).unwrap();
        assert_eq!(target.as_str(), want, "{base} + {rest:?} ({join:?})");
    }
    let tail = Tail {
        rest: "metrics",
        join: Join::Subtree,
    };
    let with_query = upstream("http://h:1/")
        .target_path(tail, Some("x=1"))
        .unwrap();
    assert_eq!(with_query.as_str(), "/metrics?x=1");
}
