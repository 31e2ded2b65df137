use super::*;
use serde_json::json;

const ISSUER: &str = "https://kubernetes.default.svc";
const NOW: u64 = 1_700_000_000;

fn policy(audiences: &[String]) -> Policy<'_> {
    Policy {
        issuer: ISSUER,
        audiences,
        max_lifetime: Duration::from_secs(2 * 3600),
    }
}

/// A pod-bound token as kube-apiserver 1.20 issues it for a kubelet (extended: valid a
/// year, `warnafter` after 3607 s).
fn pod_token() -> Value {
    json!({
        "aud": [ISSUER],
        "exp": NOW + 365 * 24 * 3600,
        "iat": NOW - 60,
        "nbf": NOW - 60,
        "iss": ISSUER,
        "sub": "system:serviceaccount:monitoring:prometheus",
        "kubernetes.io": {
            "namespace": "monitoring",
            "pod": {"name": "prometheus-0", "uid": "pod-uid"},
            "serviceaccount": {"name": "prometheus", "uid": "sa-uid"},
            "warnafter": NOW - 60 + 3607,
        }
    })
}

/// `claims` with the key at `pointer` set (added if missing).
fn with(mut claims: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    claims
        .pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .insert(key.to_owned(), value);
    claims
}

fn without(mut claims: Value, object: &str, key: &str) -> Value {
    claims
        .pointer_mut(object)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(key);
    claims
}

fn extra(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()]))
        .collect()
}

#[test]
fn a_pod_bound_token_is_the_user_a_token_review_returns() {
    let got = judge(&pod_token(), NOW, &policy(&[]));
    let want = User {
        name: "system:serviceaccount:monitoring:prometheus".into(),
        uid: "sa-uid".into(),
        groups: Arc::from(vec![
            "system:serviceaccounts".to_owned(),
            "system:serviceaccounts:monitoring".to_owned(),
            "system:authenticated".to_owned(),
        ]),
        extra: extra(&[(POD_NAME, "prometheus-0"), (POD_UID, "pod-uid")]),
    };
    assert_eq!(got, Judgement::User(want));
}

#[test]
fn newer_claims_add_the_extras_newer_apiservers_add() {
    let claims = with(
        pod_token(),
        "/kubernetes.io/node",
        json!({"name": "node-1", "uid": "node-uid"}),
    );
    let claims = with(claims, "/jti", json!("4f6c"));
    let Judgement::User(user) = judge(&claims, NOW, &policy(&[])) else {
        panic!("not accepted");
    };
    assert_eq!(
        user.extra,
        extra(&[
            (POD_NAME, "prometheus-0"),
            (POD_UID, "pod-uid"),
            (NODE_NAME, "node-1"),
            (NODE_UID, "node-uid"),
            (CREDENTIAL_ID, "JTI=4f6c"),
        ])
    );
    // A node name without a uid: the name only, as the apiserver does.
    let claims = with(
        pod_token(),
        "/kubernetes.io/node",
        json!({"name": "node-1"}),
    );
    let Judgement::User(user) = judge(&claims, NOW, &policy(&[])) else {
        panic!("not accepted");
    };
    assert_eq!(user.extra[NODE_NAME], vec!["node-1".to_owned()]);
    assert!(!user.extra.contains_key(NODE_UID));
}

#[test]
fn a_token_of_no_pod_has_no_extras() {
    let claims = without(pod_token(), "/kubernetes.io", "pod");
    let claims = without(claims, "/kubernetes.io", "warnafter");
    let claims = with(claims, "/exp", json!(NOW + 3600));
    let Judgement::User(user) = judge(&claims, NOW, &policy(&[])) else {
        panic!("not accepted");
    };
    assert!(user.extra.is_empty(), "{:?}", user.extra);
    assert_eq!(user.name, "system:serviceaccount:monitoring:prometheus");
}

#[test]
fn refusals_table() {
    let aud = |a: Value| with(pod_token(), "/aud", a);
    let legacy = json!({
        "iss": "kubernetes/serviceaccount",
        "sub": "system:serviceaccount:default:old",
        "kubernetes.io/serviceaccount/namespace": "default",
    });
    // (case, claims, whether --auth-token-audiences=prometheus, outcome)
    let table: Vec<(&str, Value, bool, &str)> = vec![
        ("legacy Secret token", legacy, false, "decline"),
        (
            "another issuer",
            with(pod_token(), "/iss", json!("https://elsewhere")),
            false,
            "decline",
        ),
        ("no exp", without(pod_token(), "", "exp"), false, "decline"),
        ("no iat", without(pod_token(), "", "iat"), false, "decline"),
        (
            "no namespace",
            without(pod_token(), "/kubernetes.io", "namespace"),
            false,
            "decline",
        ),
        (
            "empty sa uid",
            with(pod_token(), "/kubernetes.io/serviceaccount/uid", json!("")),
            false,
            "decline",
        ),
        (
            "secret-bound",
            with(
                pod_token(),
                "/kubernetes.io/secret",
                json!({"name": "s", "uid": "u"}),
            ),
            false,
            "decline",
        ),
        (
            "node-bound",
            with(
                without(pod_token(), "/kubernetes.io", "pod"),
                "/kubernetes.io/node",
                json!({"name": "n", "uid": "u"}),
            ),
            false,
            "decline",
        ),
        (
            "pod without uid",
            with(pod_token(), "/kubernetes.io/pod", json!({"name": "p"})),
            false,
            "decline",
        ),
        (
            "past warnafter",
            with(pod_token(), "/kubernetes.io/warnafter", json!(NOW - 1)),
            false,
            "decline",
        ),
        (
            "a day-long token",
            with(
                without(pod_token(), "/kubernetes.io", "warnafter"),
                "/exp",
                json!(NOW + 24 * 3600),
            ),
            false,
            "decline",
        ),
        ("no aud", without(pod_token(), "", "aud"), false, "decline"),
        (
            "aud not the issuer",
            aud(json!(["vault"])),
            false,
            "decline",
        ),
        (
            "expired",
            with(
                with(pod_token(), "/exp", json!(NOW - 61)),
                "/kubernetes.io/warnafter",
                json!(NOW + 10),
            ),
            false,
            "reject",
        ),
        (
            "not yet valid",
            with(pod_token(), "/nbf", json!(NOW + 61)),
            false,
            "reject",
        ),
        (
            "issued in the future",
            with(
                with(pod_token(), "/iat", json!(NOW + 61)),
                "/nbf",
                json!(NOW),
            ),
            false,
            "reject",
        ),
        ("configured audience missing", pod_token(), true, "reject"),
        (
            "configured audience present",
            aud(json!("prometheus")),
            true,
            "accept",
        ),
        (
            "expired within the leeway",
            with(
                with(pod_token(), "/exp", json!(NOW - 59)),
                "/iat",
                json!(NOW - 3600),
            ),
            false,
            "accept",
        ),
        ("aud as one string", aud(json!(ISSUER)), false, "accept"),
    ];
    let configured = ["prometheus".to_owned()];
    for (case, claims, with_audiences, want) in table {
        let audiences: &[String] = if with_audiences { &configured } else { &[] };
        let got = match judge(&claims, NOW, &policy(audiences)) {
            Judgement::User(_) => "accept",
            Judgement::Reject(_) => "reject",
            Judgement::Decline(_) => "decline",
        };
        assert_eq!(got, want, "{case}");
    }
}

#[test]
fn rejections_speak_the_apiservers_words() {
    let expired = with(pod_token(), "/exp", json!(NOW - 3600));
    assert_eq!(
        judge(&expired, NOW, &policy(&[])),
        Judgement::Reject("service account token has expired".into())
    );
}

#[test]
fn only_three_base64url_parts_of_json_are_a_jwt() {
    use base64::Engine as _;
    let part = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let payload = part(&json!({"iss": ISSUER}));
    let jwt = format!("{}.{payload}.c2ln", part(&json!({"alg": "RS256"})));
    assert_eq!(unverified_payload(&jwt).unwrap()["iss"], ISSUER);
    for junk in [
        "static-token",
        "a.b",
        "a.b.c.d",
        &format!("x.{payload}=.y"),
        "x.bm90IGpzb24.y",
    ] {
        assert!(unverified_payload(junk).is_none(), "{junk}");
    }
}
