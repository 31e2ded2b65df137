use super::*;
use proptest::prelude::*;

fn p(path: &str) -> Pattern {
    Pattern::new(path).unwrap()
}

/// Deckhouse's ingress-nginx sidecar and friends on one mux.
fn mux() -> Routes<&'static str> {
    Routes::mux(
        vec![
            (p("/main/"), "main"),
            (p("/main/deep/"), "deep"),
            (p("/self/metrics"), "self"),
            (p("/"), "root"),
        ],
        Some(p("/livez")),
    )
}

/// Where `path` goes: the target and the tail, a redirect's location, or 404.
fn route(routes: &Routes<&'static str>, path: &str) -> String {
    match routes.select(path, None) {
        Ok(Selected::Livez) => "livez".into(),
        Ok(Selected::Route(routed)) => {
            assert_eq!(routed.path(), path, "the authorized path is the request's");
            let tail = routed.tail();
            assert!(
                path.ends_with(tail.rest),
                "the tail is a suffix of the path"
            );
            format!("{} {:?} {:?}", routed.target, tail.rest, tail.join)
        }
        Err(ProxyError::MovedPermanently(to)) => format!("301 {to}"),
        Err(ProxyError::NotFound) => "404".into(),
        Err(other) => format!("{other}"),
    }
}

#[test]
fn servemux_rules_longest_pattern_wins_subtree_or_exact() {
    let routes = mux();
    for (path, want) in [
        ("/main/metrics", r#"main "metrics" Subtree"#),
        ("/main/", r#"main "" Subtree"#),
        ("/main/deep/x", r#"deep "x" Subtree"#),
        ("/main/deeper", r#"main "deeper" Subtree"#),
        ("/self/metrics", r#"self "" Exact"#),
        // An exact pattern is no subtree: the root takes what is below it.
        ("/self/metrics/x", r#"root "self/metrics/x" Subtree"#),
        ("/self/metricsx", r#"root "self/metricsx" Subtree"#),
        ("/other", r#"root "other" Subtree"#),
        ("/", r#"root "" Subtree"#),
        ("/livez", "livez"),
        ("/livez/x", r#"root "livez/x" Subtree"#),
    ] {
        assert_eq!(route(&routes, path), want, "{path}");
    }
}

#[test]
fn no_match_is_404() {
    let routes = Routes::mux(
        vec![(p("/main/"), "main"), (p("/self/metrics"), "self")],
        None,
    );
    for path in [
        "/",
        "/metrics",
        "/self",
        "/self/metrics/",
        "/mainx",
        "/Main/metrics",
    ] {
        assert_eq!(route(&routes, path), "404", "{path}");
    }
}

#[test]
fn servemux_redirects_unclean_paths_and_subtree_roots() {
    let routes = Routes::mux(
        vec![(p("/main/"), "main"), (p("/self/metrics"), "self")],
        None,
    );
    assert_eq!(route(&routes, "/main"), "301 /main/");
    assert_eq!(route(&routes, "//main/metrics"), "301 /main/metrics");
    assert_eq!(route(&routes, "/main//metrics"), "301 /main/metrics");
    // Cleaned first, whatever it then matches (Go redirects before matching).
    assert_eq!(route(&routes, "/nothing//here"), "301 /nothing/here");
    match routes.select("/main", Some("a=1")) {
        Err(ProxyError::MovedPermanently(to)) => assert_eq!(to, "/main/?a=1"),
        other => panic!("{other:?}"),
    }
    // An exact pattern for the root itself takes it: no redirect.
    let both = Routes::mux(vec![(p("/main/"), "subtree"), (p("/main"), "exact")], None);
    assert_eq!(route(&both, "/main"), r#"exact "" Exact"#);
}

#[test]
fn without_upstreams_one_route_takes_every_path_unchanged() {
    let routes = Routes::single("only", Some(p("/livez")));
    for (path, want) in [
        ("/metrics", r#"only "/metrics" Subtree"#),
        ("//metrics", r#"only "//metrics" Subtree"#),
        ("/", r#"only "/" Subtree"#),
        ("/livez", "livez"),
        ("/livez/", r#"only "/livez/" Subtree"#),
    ] {
        assert_eq!(route(&routes, path), want, "{path}");
    }
}

#[test]
fn patterns_go_would_read_otherwise_are_refused() {
    for ok in ["/", "/metrics", "/main/", "/a.b/c-d_e/"] {
        assert!(Pattern::new(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "metrics",
        "example.com/",
        "GET /metrics",
        "/{name}",
        "/a b",
    ] {
        assert!(Pattern::new(bad).is_err(), "{bad:?}");
    }
}

proptest! {
    /// Whatever the path, a route's tail is the path minus the matched pattern: the
    /// forwarded path is derived from the authorized one and nothing else.
    #[test]
    fn the_tail_is_the_authorized_path_minus_the_pattern(path in "/[a-z/]{0,24}") {
        let routes = mux();
        if let Ok(Selected::Route(routed)) = routes.select(&path, None) {
            let tail = routed.tail();
            let prefix = &path[..path.len() - tail.rest.len()];
            prop_assert!(routes.entries.iter().any(|(p, _)| p.0 == prefix));
            prop_assert!(path.starts_with(prefix));
        }
    }
}
