use super::*;
use proptest::prelude::*;

/// Go's own `path.Match` test table (src/path/match_test.go).
#[test]
fn gos_match_table() {
    let table: &[(&str, &str, Option<bool>)] = &[
        ("abc", "abc", Some(true)),
        ("*", "abc", Some(true)),
        ("*c", "abc", Some(true)),
        ("a*", "a", Some(true)),
        ("a*", "abc", Some(true)),
        ("a*", "ab/c", Some(false)),
        ("a*/b", "abc/b", Some(true)),
        ("a*/b", "a/c/b", Some(false)),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", Some(true)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Some(true)),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Some(false)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Some(false)),
        ("a*b?c*x", "abxbbxdbxebxczzx", Some(true)),
        ("a*b?c*x", "abxbbxdbxebxczzy", Some(false)),
        ("ab[c]", "abc", Some(true)),
        ("ab[b-d]", "abc", Some(true)),
        ("ab[e-g]", "abc", Some(false)),
        ("ab[^c]", "abc", Some(false)),
        ("ab[^b-d]", "abc", Some(false)),
        ("ab[^e-g]", "abc", Some(true)),
        ("a\\*b", "a*b", Some(true)),
        ("a\\*b", "ab", Some(false)),
        ("a?b", "a☺b", Some(true)),
        ("a[^a]b", "a☺b", Some(true)),
        ("a???b", "a☺b", Some(false)),
        ("a[^a][^a][^a]b", "a☺b", Some(false)),
        ("[a-ζ]*", "α", Some(true)),
        ("*[a-ζ]", "A", Some(false)),
        ("a?b", "a/b", Some(false)),
        ("a*b", "a/b", Some(false)),
        ("[\\]a]", "]", Some(true)),
        ("[\\-]", "-", Some(true)),
        ("[x\\-]", "x", Some(true)),
        ("[x\\-]", "-", Some(true)),
        ("[x\\-]", "z", Some(false)),
        ("[\\-x]", "x", Some(true)),
        ("[\\-x]", "-", Some(true)),
        ("[\\-x]", "a", Some(false)),
        ("[]a]", "]", None),
        ("[-]", "-", None),
        ("[x-]", "x", None),
        ("[x-]", "-", None),
        ("[x-]", "z", None),
        ("[-x]", "x", None),
        ("[-x]", "-", None),
        ("[-x]", "a", None),
        ("\\", "a", None),
        ("[a-b-c]", "a", None),
        ("[", "a", None),
        ("[^", "a", None),
        ("[^bc", "a", None),
        ("a[", "a", None),
        ("a[", "ab", None),
        ("a[", "x", None),
        ("a/b[", "x", None),
        ("*x", "xxx", Some(true)),
    ];
    for &(pattern, name, want) in table {
        match want {
            None => assert!(validate(pattern).is_err(), "{pattern:?} should be invalid"),
            Some(want) => {
                assert!(validate(pattern).is_ok(), "{pattern:?} should be valid");
                assert_eq!(glob_match(pattern, name), want, "{pattern:?} vs {name:?}");
            }
        }
    }
}

#[test]
fn policy_routes() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let allow = PathPolicy::new(&s(&["/metrics", "/api/*/metrics"]), &[]).unwrap();
    assert_eq!(allow.route("/metrics").unwrap(), Route::Guard);
    assert_eq!(allow.route("/api/v1/metrics").unwrap(), Route::Guard);
    for denied in [
        "/",
        "/metrics/",
        "/metricsx",
        "/api/v1/x/metrics",
        "//metrics",
    ] {
        assert!(
            matches!(allow.route(denied), Err(ProxyError::NotFound)),
            "{denied}"
        );
    }
    let ignore = PathPolicy::new(&[], &s(&["/healthz", "/static/*"])).unwrap();
    assert_eq!(ignore.route("/healthz").unwrap(), Route::Ignore);
    assert_eq!(ignore.route("/static/app.js").unwrap(), Route::Ignore);
    assert_eq!(ignore.route("/static/a/b.js").unwrap(), Route::Guard);
    assert_eq!(ignore.route("/metrics").unwrap(), Route::Guard);
    // What a servlet container would serve decides too: `/static/admin;.js` is
    // `/static/admin` there.
    let ignore_js = PathPolicy::new(&[], &s(&["/static/*.js"])).unwrap();
    assert_eq!(ignore_js.route("/static/admin;.js").unwrap(), Route::Guard);
    assert_eq!(ignore_js.route("/static/app.js").unwrap(), Route::Ignore);
    // Both forms must match: the literal one here does not.
    assert_eq!(ignore_js.route("/static/app.js;v=2").unwrap(), Route::Guard);
    let allow = PathPolicy::new(&s(&["/static/*.js"]), &[]).unwrap();
    assert!(matches!(
        allow.route("/static/admin;.js"),
        Err(ProxyError::NotFound)
    ));
    assert_eq!(allow.route("/static/app.js").unwrap(), Route::Guard);
    assert_eq!(
        PathPolicy::default().route("/anything").unwrap(),
        Route::Guard
    );

    let both = PathPolicy::new(&s(&["/metrics"]), &s(&["/healthz"]));
    assert!(both.unwrap_err().contains("cannot be used together"));
    let bad = PathPolicy::new(&s(&["/metrics["]), &[]);
    assert!(bad.unwrap_err().contains("--allow-paths"));
}

/// A plain backtracking glob, obviously correct and obviously slow, as the oracle.
fn oracle(p: &[char], n: &[char]) -> bool {
    match p.split_first() {
        None => n.is_empty(),
        Some(('*', rest)) => (0..=n.len())
            .take_while(|&i| i == 0 || n[i - 1] != '/')
            .any(|i| oracle(rest, &n[i..])),
        Some(('?', rest)) => n.first().is_some_and(|&c| c != '/') && oracle(rest, &n[1..]),
        Some((c, rest)) => n.first() == Some(c) && oracle(rest, &n[1..]),
    }
}

proptest! {
    #[test]
    fn agrees_with_a_backtracking_oracle(
        pattern in "[ab/*?]{0,8}",
        name in "[ab/]{0,10}",
    ) {
        let p: Vec<char> = pattern.chars().collect();
        let n: Vec<char> = name.chars().collect();
        prop_assert_eq!(glob_match(&pattern, &name), oracle(&p, &n));
    }

    #[test]
    fn never_panics_on_arbitrary_input(pattern in ".{0,12}", name in ".{0,24}") {
        if validate(&pattern).is_ok() {
            let _ = glob_match(&pattern, &name);
        }
    }
}
