//! Towards the exporter: the token never goes upstream, and an exporter outage is a
//! 502 that heals when the exporter is back.

use std::time::Duration;

use super::support::{
    eventually, Cluster, NodeExporter, RecordingUpstream, ScrapeGuard, PROMETHEUS_SA,
};

/// The upstream receives the allowed request without an `Authorization` header.
#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn token_not_forwarded_upstream() {
    let cluster = Cluster::shared().await;
    let upstream = RecordingUpstream::start().await;
    let guard = ScrapeGuard::launch(&cluster, "out", &upstream.url())
        .env("SCRAPE_GUARD_LOG", "debug")
        .start()
        .await;
    let token = cluster.mint_token(PROMETHEUS_SA).await;
    let before = upstream.seen().len();
    let reply = guard.get("/metrics", Some(&token)).await;
    assert_eq!(reply.status, 200, "{}", reply.describe());
    let seen = upstream.seen();
    assert_eq!(
        seen.len(),
        before + 1,
        "requests the upstream saw: {seen:?}"
    );
    let request = &seen[before];
    println!(
        "the upstream saw {} with headers {:?}",
        request.path, request.headers
    );
    assert_eq!(request.path, "/metrics");
    assert!(
        !request.has_header("authorization"),
        "the upstream received an Authorization header: {request:?}"
    );
}

/// node-exporter stopped (by PID) → 502; started again on the same port → 200.
#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn exporter_outage() {
    let cluster = Cluster::shared().await;
    let mut exporter = NodeExporter::start(cluster.dir()).await;
    let guard = ScrapeGuard::launch(&cluster, "main", &exporter.url())
        .start()
        .await;
    let token = cluster.mint_token(PROMETHEUS_SA).await;
    let reply = guard.get("/metrics", Some(&token)).await;
    assert_eq!(reply.status, 200, "before the outage: {}", reply.describe());
    exporter.stop();
    let down = guard.get("/metrics", Some(&token)).await;
    exporter.restart().await;
    assert_eq!(
        down.status,
        502,
        "with node-exporter stopped: {}",
        down.describe()
    );
    eventually(
        Duration::from_secs(15),
        "200 after node-exporter restarted",
        || async { guard.get("/metrics", Some(&token)).await.status_is(200) },
    )
    .await;
}
