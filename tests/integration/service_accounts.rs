//! `--service-account-token-verification=local`: a service-account token of the fake
//! apiserver's issuer is verified in the proxy (no TokenReview), as the same user a
//! TokenReview describes (compared through the SubjectAccessReview the proxy then
//! sends); static, legacy and foreign tokens still get a TokenReview; a key rotation
//! works; keys the proxy may not read fall back to TokenReviews.

use std::time::Duration;

use scrape_guard_testkit as support;

use support::{client, get, ServiceAccountToken, World, SCRAPER};

const LOCAL: &str = "--service-account-token-verification=local";

/// A scrape with `token`: its status.
async fn scrape(world: &World, token: &str) -> u16 {
    get(
        &client(&world.pki, false),
        &world.proxy.url("/metrics"),
        Some(token),
        &[],
    )
    .await
    .status
    .as_u16()
}

/// The scraper's projected token: bound to its pod, as the kubelet mounts it.
fn scraper_token() -> ServiceAccountToken {
    ServiceAccountToken::new("monitoring", "prometheus").bound_to_pod("prometheus-0")
}

#[tokio::test]
async fn a_service_account_token_needs_no_token_review() {
    let world = World::start("static-token", &[LOCAL]).await;
    let token = world.api.mint_service_account_token(&scraper_token());
    for _ in 0..3 {
        assert_eq!(scrape(&world, &token).await, 200);
    }
    assert_eq!(world.api.token_reviews(), 0, "verified locally");
    assert_eq!(world.api.issuer_fetches(), 2, "discovery and keys, once");
    let spec = world.api.last_sar_spec();
    assert_eq!(spec["user"], SCRAPER);
    assert_eq!(spec["uid"], "uid-monitoring-prometheus");
    assert_eq!(
        spec["groups"],
        serde_json::json!([
            "system:serviceaccounts",
            "system:serviceaccounts:monitoring",
            "system:authenticated"
        ])
    );
    assert_eq!(spec["extra"], scraper_token().extra());
}

#[tokio::test]
async fn the_user_is_the_one_a_token_review_returns() {
    let spec = scraper_token();
    let mut seen = Vec::new();
    for flags in [&[][..], &[LOCAL][..]] {
        let world = World::start("static-token", flags).await;
        let token = world.api.mint_service_account_token(&spec);
        assert_eq!(scrape(&world, &token).await, 200, "{flags:?}");
        let sar = world.api.last_sar_spec();
        seen.push((
            world.api.token_reviews(),
            [&sar["user"], &sar["uid"], &sar["groups"], &sar["extra"]].map(Clone::clone),
        ));
    }
    assert_eq!(seen[0].0, 1, "tokenreview mode reviews the token");
    assert_eq!(seen[1].0, 0, "local mode does not");
    assert_eq!(seen[0].1, seen[1].1, "the same user, uid, groups and extra");
}

#[tokio::test]
async fn other_tokens_still_get_a_token_review() {
    let world = World::start("static-token", &[LOCAL]).await;
    assert_eq!(scrape(&world, "static-token").await, 200);
    assert_eq!(world.api.token_reviews(), 1, "a static token");

    let legacy = world.api.mint_legacy_token("monitoring", "prometheus");
    assert_eq!(scrape(&world, &legacy).await, 200);
    assert_eq!(world.api.token_reviews(), 2, "a legacy Secret token");

    let mut foreign = scraper_token();
    foreign.issuer = "https://oidc.example.com".into();
    let foreign = world.api.mint_service_account_token(&foreign);
    assert_eq!(scrape(&world, &foreign).await, 200);
    assert_eq!(world.api.token_reviews(), 3, "another issuer's token");

    let mut long = scraper_token();
    long.lifetime = Duration::from_secs(24 * 3600);
    let long = world.api.mint_service_account_token(&long);
    assert_eq!(scrape(&world, &long).await, 200);
    assert_eq!(
        world.api.token_reviews(),
        4,
        "a token above the max lifetime"
    );

    let mut other_audience = scraper_token();
    other_audience.audiences = vec!["vault".into()];
    let other_audience = world.api.mint_service_account_token(&other_audience);
    assert_eq!(scrape(&world, &other_audience).await, 200);
    assert_eq!(world.api.token_reviews(), 5, "a token for another audience");
}

#[tokio::test]
async fn an_extended_kubelet_token_is_local_until_its_warnafter() {
    let world = World::start("static-token", &[LOCAL]).await;
    let mut extended = scraper_token();
    extended.lifetime = Duration::from_secs(365 * 24 * 3600);
    extended.warn_after = Some(Duration::from_secs(3607));
    let token = world.api.mint_service_account_token(&extended);
    assert_eq!(scrape(&world, &token).await, 200);
    assert_eq!(world.api.token_reviews(), 0);
}

#[tokio::test]
async fn configured_audiences_are_checked_locally() {
    let world = World::start(
        "static-token",
        &[LOCAL, "--auth-token-audiences=prometheus"],
    )
    .await;
    let mut spec = scraper_token();
    spec.audiences = vec!["prometheus".into()];
    let ok = world.api.mint_service_account_token(&spec);
    assert_eq!(scrape(&world, &ok).await, 200);
    let wrong = world.api.mint_service_account_token(&scraper_token());
    assert_eq!(scrape(&world, &wrong).await, 401, "aud is only the issuer");
    assert_eq!(world.api.token_reviews(), 0, "both judged locally");
}

#[tokio::test]
async fn a_rotated_key_is_fetched() {
    let world = World::start("static-token", &[LOCAL]).await;
    let before = world.api.mint_service_account_token(&scraper_token());
    assert_eq!(scrape(&world, &before).await, 200);
    world.api.rotate_issuer_key();
    let after = world
        .api
        .mint_service_account_token(&scraper_token().bound_to_pod("prometheus-1"));
    assert_eq!(scrape(&world, &after).await, 200);
    assert_eq!(world.api.token_reviews(), 0);
    assert_eq!(
        world.api.issuer_fetches(),
        4,
        "fetched again for the new kid"
    );
    // Tokens naming unknown keys: one more fetch at most (the spare after a fetch that
    // worked, or the next one after 30 s), however many arrive; each gets a TokenReview.
    let (_header, rest) = after.split_once('.').unwrap();
    for kid in 0..5 {
        let header = format!(r#"{{"alg":"ES256","kid":"forged-{kid}"}}"#);
        let forged = format!("{}.{rest}", base64_url(&header));
        assert_eq!(
            scrape(&world, &forged).await,
            401,
            "the fake rejects it too"
        );
    }
    let fetches = world.api.issuer_fetches();
    assert!(fetches <= 6, "{fetches} GETs of the issuer's documents");
    assert_eq!(world.api.token_reviews(), 5, "declined: TokenReviews");
}

#[tokio::test]
async fn keys_the_proxy_may_not_read_mean_token_reviews() {
    let world = World::start("static-token", &[LOCAL]).await;
    world.api.forbid_issuer_discovery(true);
    let token = world.api.mint_service_account_token(&scraper_token());
    assert_eq!(scrape(&world, &token).await, 200);
    assert_eq!(world.api.token_reviews(), 1, "fell back to a TokenReview");
}

#[test]
fn max_lifetime_needs_local_verification() {
    let args = <scrape_guard::Args as clap::Parser>::try_parse_from([
        "scrape-guard",
        "--upstream=http://127.0.0.1:1/",
        "--service-account-token-max-lifetime=1h",
    ])
    .unwrap();
    let error = scrape_guard::Config::try_from(args)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(
            "--service-account-token-max-lifetime needs --service-account-token-verification=local"
        ),
        "{error}"
    );
}

fn base64_url(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}
