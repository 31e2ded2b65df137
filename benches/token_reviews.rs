//! TokenReviews a fleet of sidecars sends as the scrapers' tokens rotate, with
//! `--service-account-token-verification` `tokenreview` (the default) and `local`,
//! counted by the fake apiserver (`tests/support`), which is also the issuer. In
//! process: N scrape-guards on one fake apiserver, 2 scrapers with pod-bound tokens,
//! R rotations (each a new token per scraper), each scraper scraping every proxy
//! `SCRAPES` times per token. Then the CPU a local verification costs, from the
//! authenticator with nothing cached. `cargo bench --bench token_reviews`; figures in
//! RESULTS.md ("Service-account tokens verified locally").

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use scrape_guard::{
    Apiserver, ApiserverSettings, Authenticator, AuthnSettings, BearerToken, CacheSettings,
    Fallback, Metrics, RateLimit, Requester, ServiceAccountVerification,
};
use scrape_guard_testkit::{
    client, get, install_crypto, Echo, FakeApiserver, Pki, Proxy, ServiceAccountToken,
};

/// Scrapers, each with its own service account and pod.
const SCRAPERS: usize = 2;
/// Token rotations measured (the kubelet's: about one an hour).
const ROTATIONS: usize = 3;
/// Scrapes of each proxy per token (cache hits after the first).
const SCRAPES: usize = 3;
/// Local verifications timed, in batches.
const VERIFICATIONS: usize = 500;
const BATCHES: usize = 7;

fn main() {
    install_crypto();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        println!("| proxies | mode | TokenReviews | per proxy per rotation | issuer GETs |");
        println!("|---|---|---|---|---|");
        for proxies in [1, 10, 50] {
            for mode in ["tokenreview", "local"] {
                let (reviews, fetches) = fleet(proxies, mode).await;
                let per = reviews as f64 / (proxies * ROTATIONS) as f64;
                println!("| {proxies} | `{mode}` | {reviews} | {per:.1} | {fetches} |");
            }
        }
        println!();
        verification_cost().await;
    });
}

/// TokenReviews and issuer GETs for `proxies` sidecars over `ROTATIONS` rotations.
async fn fleet(proxies: usize, mode: &str) -> (usize, usize) {
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    let echo = Echo::start().await;
    let flag = format!("--service-account-token-verification={mode}");
    let mut fleet = Vec::new();
    for _ in 0..proxies {
        fleet.push(Proxy::start(&pki, &api, &echo.url(), &[flag.as_str()]).await);
    }
    let scrapers: Vec<ServiceAccountToken> = (0..SCRAPERS)
        .map(|i| {
            ServiceAccountToken::new("monitoring", &format!("prometheus-{i}"))
                .bound_to_pod(&format!("prometheus-{i}"))
        })
        .collect();
    for scraper in &scrapers {
        api.allow(&scraper.username(), "get", "/metrics");
    }
    let https = client(&pki, false);
    for _ in 0..ROTATIONS {
        for scraper in &scrapers {
            let token = api.mint_service_account_token(scraper);
            for proxy in &fleet {
                for _ in 0..SCRAPES {
                    let reply = get(&https, &proxy.url("/metrics"), Some(&token), &[]).await;
                    assert_eq!(reply.status, 200, "{mode}: {}", reply.text());
                }
            }
        }
    }
    let counts = (api.token_reviews(), api.issuer_fetches());
    for proxy in fleet {
        proxy.shutdown().await;
    }
    counts
}

/// The median time of one local verification (nothing cached), ES256.
async fn verification_cost() {
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    let metrics = Arc::new(Metrics::new());
    let settings = ApiserverSettings {
        kubeconfig: Some(api.kubeconfig.clone()),
        fallback: Fallback::UserKubeconfig,
        rate_limit: RateLimit::Unlimited,
        timeout: Duration::from_secs(5),
        max_inflight: 64,
        max_per_peer: 8,
    };
    let apiserver = Apiserver::connect(&settings, Arc::clone(&metrics))
        .await
        .expect("the fake's kubeconfig")
        .expect("an apiserver");
    let authn = Authenticator::new(
        &AuthnSettings {
            audiences: Vec::new(),
            token_file: None,
            // Nothing kept: every call verifies.
            cache: CacheSettings::one_shot(),
            service_accounts: ServiceAccountVerification::Local {
                max_lifetime: Duration::from_secs(7200),
            },
            oidc: None,
        },
        Some(Arc::new(apiserver)),
        metrics,
    )
    .expect("an authenticator");
    let token = api.mint_service_account_token(
        &ServiceAccountToken::new("monitoring", "prometheus").bound_to_pod("prometheus-0"),
    );
    let verify = || async {
        authn
            .authenticate_token(BearerToken::new(&token).unwrap(), Requester::Process)
            .await
            .expect("verified")
    };
    verify().await; // fetches the keys
    let mut batches = Vec::new();
    for _ in 0..BATCHES {
        let started = Instant::now();
        for _ in 0..VERIFICATIONS {
            verify().await;
        }
        batches.push(started.elapsed() / VERIFICATIONS as u32);
    }
    batches.sort();
    println!(
        "one local verification (ES256, nothing cached, median of {BATCHES} batches of {VERIFICATIONS}): {:?}; TokenReviews sent: {}",
        batches[BATCHES / 2],
        api.token_reviews()
    );
}
