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
