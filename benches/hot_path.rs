//! In-process hot paths: what every cache-hit scrape pays, stage by stage, plus one
//! whole scrape through the proxy over loopback TLS for comparison.
//!
//! `cargo bench --bench hot_path`. End-to-end figures against nginx and the bare
//! exporter come from the load script (see benches/README.md), not from here.

use scrape_guard_testkit as support;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use scrape_guard::{
    add_forwarding_headers, clean_request_headers, forwardable_path, Apiserver, ApiserverSettings,
    Attributes, Authenticator, AuthnSettings, Authorizer, AuthzSettings, CacheSettings, Fallback,
    IdentityHeaders, Metrics, PathPolicy, RateLimit, Requester, ServiceAccountVerification,
};

const SA: &str = "system:serviceaccount:monitoring:prometheus-k8s";

/// A Prometheus scrape's request headers, as they arrive.
fn scrape_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("host", "10.1.2.3:9100"),
        ("user-agent", "Prometheus/2.42.0"),
        (
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        ),
        ("accept-encoding", "gzip"),
        (
            "authorization",
            "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6IiJ9.eyJpc3MiOiJrdWJlcm5ldGVzIn0.c2lnbmF0dXJl",
        ),
        ("x-prometheus-scrape-timeout-seconds", "10"),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    headers
}

fn cache_hit(c: &mut Criterion) {
    support::install_crypto();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (authn, authz, _pki, _api) = runtime.block_on(async {
        let pki = support::Pki::new();
        let api = support::FakeApiserver::start(&pki).await;
        let token = "eyJhbGciOiJSUzI1NiIsImtpZCI6IiJ9.eyJpc3MiOiJrdWJlcm5ldGVzIn0.c2lnbmF0dXJl";
        api.add_token(token, SA);
        api.allow(SA, "get", "/metrics");
        let kubeconfig = kube::config::Kubeconfig::read_from(&api.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let metrics = Arc::new(Metrics::new());
        let settings = ApiserverSettings {
            kubeconfig: None,
            fallback: Fallback::UserKubeconfig,
            rate_limit: RateLimit::Unlimited,
            timeout: Duration::from_secs(5),
            max_inflight: 64,
            max_per_peer: 8,
        };
        let apiserver = Arc::new(Apiserver::new(client, &settings, Arc::clone(&metrics)));
        let ttl = Duration::from_secs(3600);
        let cache = CacheSettings {
            capacity: 65536,
            positive: ttl,
            negative: ttl,
            stale: Duration::ZERO,
        };
        let authn = Authenticator::new(
            &AuthnSettings {
                oidc: None,
                audiences: vec![],
                token_file: None,
                cache,
                service_accounts: ServiceAccountVerification::TokenReview,
            },
            Some(Arc::clone(&apiserver)),
            Arc::clone(&metrics),
        )
        .unwrap();
        let authz = Authorizer::new(&AuthzSettings { cache }, Some(apiserver), metrics);
        // Warm both caches.
        let user = authn
            .authenticate(&scrape_headers(), Requester::Process)
            .await
            .unwrap();
        authz
            .authorize(
                &user,
                &[Attributes::new(&Method::GET, "/metrics")],
                Requester::Process,
            )
            .await
            .unwrap();
        (authn, authz, pki, api)
    });
    let headers = scrape_headers();
    c.bench_function("cache_hit_decision", |b| {
        b.to_async(&runtime).iter(|| async {
            let attributes = Attributes::new(&Method::GET, "/metrics");
            let user = authn
                .authenticate(&headers, Requester::Process)
                .await
                .unwrap();
            authz
                .authorize(&user, std::slice::from_ref(&attributes), Requester::Process)
                .await
                .unwrap();
        })
    });
}

fn hygiene_and_paths(c: &mut Criterion) {
    let identity = IdentityHeaders {
        enabled: false,
        user: HeaderName::from_static("x-remote-user"),
        groups: HeaderName::from_static("x-remote-groups"),
        separator: "|".into(),
    };
    let peer: SocketAddr = "10.0.0.7:43210".parse().unwrap();
    let headers = scrape_headers();
    c.bench_function("header_hygiene", |b| {
        b.iter(|| {
            let mut headers = headers.clone();
            clean_request_headers(&mut headers, &identity);
            add_forwarding_headers(&mut headers, peer);
            headers
        })
    });
    let policy = PathPolicy::new(&["/metrics".into(), "/federate*".into()], &[]).unwrap();
    let uri: Uri = "/metrics?name[]=up".parse().unwrap();
    c.bench_function("path_policy", |b| {
        b.iter(|| {
            let path = forwardable_path(&uri).unwrap();
            policy.route(path).unwrap()
        })
    });
}

fn whole_scrape(c: &mut Criterion) {
    support::install_crypto();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (client, url, world) = runtime.block_on(async {
        let pki = support::Pki::new();
        let api = support::FakeApiserver::start(&pki).await;
        api.add_token("bench", SA);
        api.allow(SA, "get", "/metrics");
        api.allow(SA, "get", "/big");
        let echo = support::Echo::start().await;
        let proxy = support::Proxy::start(&pki, &api, &echo.url(), &[]).await;
        let client = support::client(&pki, false);
        let url = proxy.url("/metrics");
        (client, url, (pki, api, echo, proxy))
    });
    c.bench_function("whole_scrape_loopback_tls_h1", |b| {
        b.to_async(&runtime).iter(|| async {
            let reply = support::get(&client, &url, Some("bench"), &[]).await;
            assert_eq!(reply.status, 200);
        })
    });
    // The same with a node-exporter-sized body (the size of benches/fixtures/
    // node-exporter.prom), streamed by the echo exporter in 64 KiB chunks.
    let big = url.replace("/metrics", "/big?bytes=72555");
    c.bench_function("whole_scrape_loopback_tls_h1_72kb", |b| {
        b.to_async(&runtime).iter(|| async {
            let reply = support::get(&client, &big, Some("bench"), &[]).await;
            assert_eq!(reply.body.len(), 72555);
        })
    });
    let h2 = support::client(&world.0, true);
    c.bench_function("whole_scrape_loopback_tls_h2_72kb", |b| {
        b.to_async(&runtime).iter(|| async {
            let reply = support::get(&h2, &big, Some("bench"), &[]).await;
            assert_eq!(reply.body.len(), 72555);
        })
    });
}

criterion_group!(benches, cache_hit, hygiene_and_paths, whole_scrape);
criterion_main!(benches);
