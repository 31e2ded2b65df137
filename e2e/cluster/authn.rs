//! Who is calling: bearer tokens judged by the real apiserver's TokenReview (bogus,
//! missing, for another audience).

use super::support::{
    random_hex, remember_secret, Cluster, NodeExporter, ScrapeGuard, PROMETHEUS_SA,
};

/// A bogus token and no token at all: 401 with `WWW-Authenticate: Bearer` and a
/// Kubernetes Status body.
#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn unauthenticated_401() {
    let cluster = Cluster::shared().await;
    let exporter = NodeExporter::start(cluster.dir()).await;
    let guard = ScrapeGuard::launch(&cluster, "main", &exporter.url())
        .start()
        .await;
    let bogus = format!("not-a-real-token-{}", random_hex(8));
    remember_secret("the bogus token", &bogus);
    for (label, token) in [("bogus token", Some(bogus.as_str())), ("no token", None)] {
        let reply = guard.get("/metrics", token).await;
        assert_eq!(reply.status, 401, "{label}: {}", reply.describe());
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains("Bearer"),
            "{label}: 401 with WWW-Authenticate {challenge:?}, want Bearer"
        );
        assert!(
            reply.is_status(401, None),
            "{label}: 401 body is not a Status with code 401: {}",
            reply.describe()
        );
    }
}

/// `--auth-token-audiences=scrape-guard`: a TokenRequest token for audience
/// scrape-guard is accepted, a token for the apiserver's default audience is not.
#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn token_audiences() {
    let cluster = Cluster::shared().await;
    let exporter = NodeExporter::start(cluster.dir()).await;
    let guard = ScrapeGuard::launch(&cluster, "aud", &exporter.url())
        .arg("--auth-token-audiences=scrape-guard")
        .start()
        .await;
    let for_us = cluster.mint_token_for(PROMETHEUS_SA, "scrape-guard").await;
    let default_audience = cluster.mint_token(PROMETHEUS_SA).await;
    let reply = guard.get("/metrics", Some(&for_us)).await;
    assert_eq!(
        reply.status,
        200,
        "audience scrape-guard: {}",
        reply.describe()
    );
    let reply = guard.get("/metrics", Some(&default_audience)).await;
    assert_eq!(reply.status, 401, "default audience: {}", reply.describe());
}
