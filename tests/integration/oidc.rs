//! OIDC (`--oidc-issuer`) against an in-process HTTPS issuer (`support::FakeIssuer`):
//! a good ID token reaches the exporter, authorized by a SubjectAccessReview and never
//! sent in a TokenReview; every kind of bad token is 401; a client certificate alone
//! does not authenticate (kube-rbac-proxy's behaviour); an unreachable issuer is 503
//! and `/readyz` says why until the key set loads; a rotated key is fetched; flag
//! validation and aliases; `scrape-guard can-i` authenticates through OIDC too.

use std::{sync::Arc, time::Duration};

use scrape_guard_testkit::{
    client, client_with, eventually, free_port, get, install_crypto, oidc_issuer::CLIENT_ID, Echo,
    FakeApiserver, FakeIssuer, Pki, Proxy, METRICS_PAGE,
};
use serde_json::json;

const JANE: &str = "jane@example.com";

struct Setup {
    pki: Pki,
    api: Arc<FakeApiserver>,
    issuer: Arc<FakeIssuer>,
    proxy: Proxy,
    admin: u16,
    _echo: Echo,
}

async fn setup(issuer_up: bool, extra: &[&str]) -> Setup {
    install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.allow(JANE, "get", "/metrics");
    api.allow("oidc:jane@example.com", "get", "/metrics");
    let issuer = FakeIssuer::start(&pki).await;
    issuer.set_up(issuer_up);
    let echo = Echo::start().await;
    let admin = free_port();
    let mut flags = issuer.flags(&pki);
    flags.push(format!("--proxy-endpoints-port={admin}"));
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let proxy = Proxy::start(&pki, &api, &echo.url(), &flags).await;
    Setup {
        pki,
        api,
        issuer,
        proxy,
        admin,
        _echo: echo,
    }
}

#[tokio::test]
async fn a_good_id_token_is_forwarded_and_bad_ones_are_401() {
    install_crypto();
    let ca = Pki::new();
    let client_ca = format!("--client-ca-file={}", ca.ca_path.display());
    let s = setup(true, &[&client_ca]).await;
    let c = client(&s.pki, false);
    let url = s.proxy.url("/metrics");
    let good = s.issuer.token(&s.issuer.claims(JANE));
    let reply = get(&c, &url, Some(&good), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.describe());
    assert_eq!(reply.text(), METRICS_PAGE);
    assert_eq!(s.api.token_reviews(), 0, "OIDC replaces the TokenReview");
    assert_eq!(s.api.last_sar_spec()["user"], JANE);

    let other_issuer = FakeIssuer::start(&s.pki).await;
    let now = s.issuer.claims(JANE)["iat"].as_u64().unwrap();
    let refusals = [
        ("garbage", "not-a-jwt".to_owned()),
        (
            "wrong audience",
            s.issuer.token_with(JANE, json!({"aud": "someone-else"})),
        ),
        (
            "wrong issuer",
            s.issuer
                .token_with(JANE, json!({"iss": "https://evil.example"})),
        ),
        (
            "expired",
            s.issuer.token_with(JANE, json!({"exp": now - 3600})),
        ),
        (
            "not yet valid",
            s.issuer.token_with(JANE, json!({"nbf": now + 3600})),
        ),
        (
            "email not verified",
            s.issuer.token_with(JANE, json!({"email_verified": false})),
        ),
        (
            "no email",
            s.issuer.token_with(JANE, json!({"email": null})),
        ),
        (
            "groups a number",
            s.issuer.token_with(JANE, json!({"groups": 7})),
        ),
        // Same claims (our issuer), signed by a key not in our issuer's set.
        ("foreign key", other_issuer.token(&s.issuer.claims(JANE))),
    ];
    for (name, token) in refusals {
        let reply = get(&c, &url, Some(&token), &[]).await;
        assert_eq!(reply.status, 401, "{name}: {}", reply.describe());
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer"), "{name}: {challenge}");
    }
    // A client certificate (verified: --client-ca-file) does not authenticate while
    // OIDC is on.
    let identity = ca.client_cert(JANE, &[]);
    let reply = get(
        &client_with(&s.pki, false, Some(&identity)),
        &url,
        None,
        &[],
    )
    .await;
    assert_eq!(reply.status, 401, "{}", reply.describe());
    assert_eq!(s.api.token_reviews(), 0);
    s.proxy.shutdown().await;
}

#[tokio::test]
async fn prefixes_are_prepended_as_given() {
    let s = setup(
        true,
        &["--oidc-username-prefix=oidc:", "--oidc-groups-prefix=oidc:"],
    )
    .await;
    let c = client(&s.pki, false);
    let token = s
        .issuer
        .token_with(JANE, json!({"groups": ["admins", "dev"]}));
    let reply = get(&c, &s.proxy.url("/metrics"), Some(&token), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.describe());
    let sar = s.api.last_sar_spec();
    assert_eq!(sar["user"], "oidc:jane@example.com");
    assert_eq!(sar["groups"], json!(["oidc:admins", "oidc:dev"]));
    s.proxy.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_issuer_is_503_and_not_ready_until_it_recovers() {
    let s = setup(false, &[]).await;
    let c = client(&s.pki, false);
    let url = s.proxy.url("/metrics");
    let readyz = format!("https://localhost:{}/readyz", s.admin);
    let good = s.issuer.token(&s.issuer.claims(JANE));
    let reply = get(&c, &url, Some(&good), &[]).await;
    assert_eq!(reply.status, 503, "{}", reply.describe());
    assert_eq!(reply.header("retry-after"), Some("1"));
    let ready = get(&c, &readyz, None, &[]).await;
    assert_eq!(ready.status, 503, "{}", ready.describe());
    assert!(
        ready.text().contains("[-]oidc (no key set: "),
        "{}",
        ready.text()
    );

    s.issuer.set_up(true);
    eventually(Duration::from_secs(30), || {
        let (c, url, good) = (c.clone(), url.clone(), good.clone());
        async move { get(&c, &url, Some(&good), &[]).await.status_is(200) }
    })
    .await;
    let ready = get(&c, &readyz, None, &[]).await;
    assert_eq!(ready.status, 200, "{}", ready.describe());
    assert!(ready.text().contains("[+]oidc ok"), "{}", ready.text());
    let metrics = get(
        &c,
        &format!("https://localhost:{}/metrics", s.admin),
        Some(&good),
        &[],
    )
    .await
    .text();
    for needle in [
        "scrape_guard_key_set_loaded{key_set=\"oidc\"} 1",
        "scrape_guard_authentication_total{result=\"error\",source=\"oidc\"} 1",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in {metrics}");
    }
    assert!(
        !metrics.contains("scrape_guard_key_set_fetch_failures_total{key_set=\"oidc\"} 0"),
        "failures were counted: {metrics}"
    );
    s.proxy.shutdown().await;
}

#[tokio::test]
async fn a_rotated_key_is_fetched_when_a_token_names_it() {
    let s = setup(true, &[]).await;
    let c = client(&s.pki, false);
    let url = s.proxy.url("/metrics");
    let reply = get(&c, &url, Some(&s.issuer.token(&s.issuer.claims(JANE))), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.describe());
    s.issuer.rotate();
    let rotated = s.issuer.token(&s.issuer.claims(JANE));
    // Refetches are rate limited (10 s), so the first tries may be refused.
    eventually(Duration::from_secs(30), || {
        let (c, url, rotated) = (c.clone(), url.clone(), rotated.clone());
        async move { get(&c, &url, Some(&rotated), &[]).await.status_is(200) }
    })
    .await;
    assert!(s.issuer.jwks_fetches() >= 2);
    assert!(
        s.issuer.jwks_fetches() <= 4,
        "rate limited: {}",
        s.issuer.jwks_fetches()
    );
    s.proxy.shutdown().await;
}

#[tokio::test]
async fn client_id_is_required_and_aliases_must_agree() {
    install_crypto();
    let parse = |flags: &[&str]| {
        let mut argv = vec!["scrape-guard", "--upstream=http://127.0.0.1:1/"];
        argv.extend_from_slice(flags);
        let args = <scrape_guard::Args as clap::Parser>::try_parse_from(argv).unwrap();
        scrape_guard::Config::try_from(args)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let err = parse(&["--oidc-issuer=https://a.example"]).unwrap_err();
    assert!(err.contains("--oidc-clientID is required"), "{err}");
    let err = parse(&["--oidc-issuer=http://a.example", "--oidc-clientID=x"]).unwrap_err();
    assert!(err.contains("https"), "{err}");
    let err = parse(&[
        "--oidc-issuer=https://a.example",
        "--oidc-issuer-url=https://b.example",
        "--oidc-clientID=x",
    ])
    .unwrap_err();
    assert!(
        err.contains("--oidc-issuer") && err.contains("--oidc-issuer-url"),
        "{err}"
    );
    let err = parse(&[
        "--oidc-issuer=https://a.example",
        "--oidc-clientID=x",
        "--oidc-sign-alg=HS256",
    ])
    .unwrap_err();
    assert!(err.contains("HS256"), "{err}");
    parse(&[
        "--oidc-issuer-url=https://a.example",
        "--oidc-client-id",
        CLIENT_ID,
        "--oidc-signing-algs=RS256,ES256",
        "--oidc-sign-alg=ES256",
        "--oidc-sign-alg=RS256",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn can_i_authenticates_a_token_through_oidc() {
    let s = setup(true, &[]).await;
    let can_i = |token: String| {
        let token_file = s.pki.dir.path().join("id-token");
        std::fs::write(&token_file, token).unwrap();
        let mut argv = vec![
            "scrape-guard".to_owned(),
            "can-i".into(),
            format!("--token-file={}", token_file.display()),
            format!("--kubeconfig={}", s.api.kubeconfig.display()),
        ];
        argv.extend(s.issuer.flags(&s.pki));
        let cli = <scrape_guard::Cli as clap::Parser>::try_parse_from(argv).unwrap();
        let Some(scrape_guard::Command::CanI(args)) = cli.command else {
            panic!("not can-i");
        };
        async move {
            let answer = scrape_guard::doctor::can_i(*args).await;
            (answer.diagnosis, answer.code)
        }
    };
    let (out, code) = can_i(s.issuer.token(&s.issuer.claims(JANE))).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(JANE) && out.contains("allowed"), "{out}");
    let (out, code) = can_i(s.issuer.token_with(JANE, json!({"aud": "other"}))).await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("audiences"), "{out}");
    assert_eq!(s.api.token_reviews(), 0);
    s.proxy.shutdown().await;
}
