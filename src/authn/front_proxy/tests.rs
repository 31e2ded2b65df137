use http::{HeaderMap, HeaderValue};

use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn settings() -> RequestHeaders {
    RequestHeaders {
        username: vec!["X-Remote-User".into(), "X-Other-User".into()],
        uid: vec!["X-Remote-Uid".into()],
        group: vec!["X-Remote-Group".into(), "X-Other-Group".into()],
        extra_prefixes: vec!["X-Remote-Extra-".into(), "X-Other-Extra-".into()],
        allowed_names: vec!["front-proxy".into()],
    }
    .normalized()
}

/// Request headers, and the user they should name.
type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);

#[test]
fn the_user_is_the_first_username_header_set_in_the_configured_order() {
    let cases: &[Case<'_>] = &[
        (&[("x-remote-user", "alice")], Some("alice")),
        (
            &[("x-other-user", "bob"), ("x-remote-user", "alice")],
            Some("alice"),
        ),
        (&[("x-other-user", "bob")], Some("bob")),
        // An empty first value does not count (Go's Header.Get): the next header does.
        (
            &[("x-remote-user", ""), ("x-other-user", "bob")],
            Some("bob"),
        ),
        (&[("x-remote-user", ""), ("x-remote-user", "alice")], None),
        // The first value of a repeated header.
        (
            &[("x-remote-user", "alice"), ("x-remote-user", "mallory")],
            Some("alice"),
        ),
        (&[("x-unrelated", "alice")], None),
        (&[], None),
    ];
    for (pairs, want) in cases {
        let user = settings().user(&headers(pairs));
        assert_eq!(user.map(|u| u.name).as_deref(), *want, "{pairs:?}");
    }
}

#[test]
fn header_names_are_case_insensitive() {
    let settings = RequestHeaders {
        username: vec!["X-REMOTE-USER".into()],
        group: vec!["x-Remote-Group".into()],
        extra_prefixes: vec!["X-Remote-EXTRA-".into()],
        ..RequestHeaders::default()
    }
    .normalized();
    let user = settings
        .user(&headers(&[
            ("X-Remote-User", "alice"),
            ("X-REMOTE-GROUP", "admins"),
            ("x-remote-extra-Scopes", "read"),
        ]))
        .unwrap();
    assert_eq!(user.name, "alice");
    assert_eq!(*user.groups, ["admins", "system:authenticated"]);
    assert_eq!(user.extra["scopes"], ["read"]);
}

#[test]
fn groups_are_every_non_empty_value_of_every_group_header_in_order() {
    let user = settings()
        .user(&headers(&[
            ("x-remote-user", "alice"),
            ("x-other-group", "c"),
            ("x-remote-group", "a"),
            ("x-remote-group", ""),
            ("x-remote-group", "b"),
        ]))
        .unwrap();
    // Not split on commas, as the apiserver does not.
    assert_eq!(*user.groups, ["a", "b", "c", "system:authenticated"]);
    let already = settings()
        .user(&headers(&[
            ("x-remote-user", "alice"),
            ("x-remote-group", "system:authenticated"),
            ("x-remote-group", "a,b"),
        ]))
        .unwrap();
    assert_eq!(*already.groups, ["system:authenticated", "a,b"]);
}

#[test]
fn uid_is_the_first_uid_header_set() {
    let user = settings()
        .user(&headers(&[
            ("x-remote-user", "alice"),
            ("x-remote-uid", "1234"),
        ]))
        .unwrap();
    assert_eq!(user.uid, "1234");
    let none = settings()
        .user(&headers(&[("x-remote-user", "alice")]))
        .unwrap();
    assert_eq!(none.uid, "");
}

#[test]
fn extras_are_keyed_by_the_lowercased_unescaped_suffix() {
    let user = settings()
        .user(&headers(&[
            ("x-remote-user", "alice"),
            ("x-remote-extra-scopes", "read"),
            ("x-remote-extra-scopes", "write"),
            ("x-remote-extra-Acme.com%2Fproject", "p1"),
            ("x-other-extra-scopes", "admin"),
            ("x-remote-extra-bad%zzkey", "kept"),
            ("x-remote-extra-trailing%4", "kept"),
            ("x-remote-extra-sign%+f", "kept"),
            ("x-remote-extra-empty", ""),
        ]))
        .unwrap();
    assert_eq!(user.extra["scopes"], ["read", "write", "admin"]);
    assert_eq!(user.extra["acme.com/project"], ["p1"]);
    // A malformed escape keeps the key as it was (Go's url.PathUnescape fails).
    assert_eq!(user.extra["bad%zzkey"], ["kept"]);
    assert_eq!(user.extra["trailing%4"], ["kept"]);
    assert_eq!(user.extra["sign%+f"], ["kept"]);
    // Empty values are recorded, as the apiserver does.
    assert_eq!(user.extra["empty"], [""]);
}

#[test]
fn unescape_is_go_path_unescape() {
    for (escaped, want) in [
        ("plain", "plain"),
        ("a%2fb", "a/b"),
        ("a%2Fb", "a/b"),
        ("%41%42", "AB"),
        ("a+b", "a+b"),
        ("%", "%"),
        ("%g1", "%g1"),
        ("%c3%a9", "é"),
        // Not UTF-8 once decoded: kept as it was.
        ("%ff", "%ff"),
    ] {
        assert_eq!(unescape(escaped), want, "{escaped}");
    }
}

#[test]
fn allowed_names_empty_means_any_cn() {
    assert!(settings().allows("front-proxy"));
    assert!(!settings().allows("front-proxy-2"));
    assert!(!settings().allows(""));
    let any = RequestHeaders::flag_defaults();
    assert!(any.allows("anything"));
    assert!(any.allows(""));
}

#[test]
fn strip_removes_every_configured_header_and_prefix() {
    let mut map = headers(&[
        ("x-remote-user", "alice"),
        ("x-other-user", "bob"),
        ("x-remote-uid", "1"),
        ("x-remote-group", "a"),
        ("x-other-group", "b"),
        ("x-remote-extra-scopes", "read"),
        ("X-Other-Extra-Thing", "x"),
        ("x-remote-userinfo", "kept: not a configured name"),
        ("accept", "text/plain"),
    ]);
    settings().strip(&mut map);
    let mut left: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
    left.sort_unstable();
    assert_eq!(left, ["accept", "x-remote-userinfo"]);
}

#[test]
fn a_front_proxy_with_a_cn_not_allowed_names_nobody() {
    let front_proxy = FrontProxy::new(crate::tls::CaBundle::published(), settings());
    let request = headers(&[("x-remote-user", "alice")]);
    assert_eq!(
        front_proxy.user("front-proxy", &request).unwrap().name,
        "alice"
    );
    assert!(front_proxy.user("someone-else", &request).is_none());
    front_proxy.set_headers(RequestHeaders {
        allowed_names: Vec::new(),
        ..settings()
    });
    assert_eq!(
        front_proxy.user("someone-else", &request).unwrap().name,
        "alice"
    );
}

#[test]
fn the_standard_headers_are_stripped_while_no_names_are_in_force() {
    // The lookup has found nothing yet: no names in force.
    let front_proxy = FrontProxy::new(crate::tls::CaBundle::published(), RequestHeaders::default());
    let mut map = headers(&[
        ("x-remote-user", "alice"),
        ("x-remote-uid", "1"),
        ("x-remote-group", "a"),
        ("x-remote-extra-scopes", "read"),
        ("accept", "text/plain"),
    ]);
    front_proxy.strip(&mut map);
    let left: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
    assert_eq!(left, ["accept"]);
    assert!(front_proxy
        .user("front-proxy", &headers(&[("x-remote-user", "alice")]))
        .is_none());
}
