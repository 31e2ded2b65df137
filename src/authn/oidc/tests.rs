use serde_json::json;

use super::*;

fn settings() -> OidcSettings {
    OidcSettings {
        issuer: "https://issuer.example".into(),
        client_id: "scrape-guard".into(),
        ca_file: None,
        username_claim: "email".into(),
        username_prefix: String::new(),
        groups_claim: "groups".into(),
        groups_prefix: String::new(),
        algorithms: vec![Algorithm::RS256],
    }
}

fn claims(value: serde_json::Value) -> Claims {
    value.as_object().unwrap().clone()
}

/// Name, settings, claims, and the user name and groups (or part of the error).
type Case<'a> = (
    &'a str,
    &'a OidcSettings,
    serde_json::Value,
    Result<(&'a str, Vec<&'a str>), &'a str>,
);

#[test]
fn claims_map_to_a_user_as_k8s_apiserver_does() {
    let mut prefixed = settings();
    prefixed.username_claim = "sub".into();
    prefixed.username_prefix = "oidc:".into();
    prefixed.groups_prefix = "oidc:".into();
    let plain = settings();
    let mut no_groups = settings();
    no_groups.groups_claim = String::new();
    let table: Vec<Case<'_>> = vec![
        (
            "email",
            &plain,
            json!({"email": "jane@example.com", "groups": ["a", "b"]}),
            Ok(("jane@example.com", vec!["a", "b"])),
        ),
        (
            "email verified",
            &plain,
            json!({"email": "j@x", "email_verified": true}),
            Ok(("j@x", vec![])),
        ),
        (
            "email not verified",
            &plain,
            json!({"email": "j@x", "email_verified": false}),
            Err("email not verified"),
        ),
        (
            "email_verified a string",
            &plain,
            json!({"email": "j@x", "email_verified": "true"}),
            Err("email_verified is a string"),
        ),
        (
            "no email",
            &plain,
            json!({"sub": "jane"}),
            Err("no username claim"),
        ),
        (
            "email a number",
            &plain,
            json!({"email": 7}),
            Err("is a number, not a string"),
        ),
        ("empty email", &plain, json!({"email": ""}), Err("is empty")),
        (
            "groups a string",
            &plain,
            json!({"email": "j@x", "groups": "admins"}),
            Ok(("j@x", vec!["admins"])),
        ),
        (
            "groups null",
            &plain,
            json!({"email": "j@x", "groups": null}),
            Ok(("j@x", vec![])),
        ),
        (
            "groups a number",
            &plain,
            json!({"email": "j@x", "groups": 1}),
            Err("not a string or an array"),
        ),
        (
            "groups with a number",
            &plain,
            json!({"email": "j@x", "groups": ["a", 1]}),
            Err("not strings"),
        ),
        (
            "no groups claim configured",
            &no_groups,
            json!({"email": "j@x", "groups": 1}),
            Ok(("j@x", vec![])),
        ),
        // email_verified only matters for the email claim; the prefix is used as given.
        (
            "sub with prefixes",
            &prefixed,
            json!({"sub": "jane", "email_verified": false, "groups": ["a"]}),
            Ok(("oidc:jane", vec!["oidc:a"])),
        ),
    ];
    for (name, settings, value, want) in table {
        match (user(settings, &claims(value)), want) {
            (Ok(user), Ok((name_want, groups))) => {
                assert_eq!(user.name, name_want, "{name}");
                assert_eq!(
                    &*user.groups,
                    groups
                        .iter()
                        .map(|g| g.to_string())
                        .collect::<Vec<_>>()
                        .as_slice(),
                    "{name}"
                );
            }
            (Err(got), Err(want)) => assert!(got.contains(want), "{name}: {got}"),
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn jti_becomes_the_credential_id() {
    let user = user(&settings(), &claims(json!({"email": "j@x", "jti": "abc"}))).unwrap();
    assert_eq!(user.extra[CREDENTIAL_ID], ["JTI=abc"]);
}
