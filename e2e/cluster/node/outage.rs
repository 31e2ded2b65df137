//! The apiserver restarts under the node.

use std::time::Duration;

use rustls::pki_types::ServerName;

use super::{
    super::support::{
        https_get_named, pod_summary, restarts, NodeTest, ScrapeLoop, NODE_IP, PROMETHEUS_SA,
    },
    NODE_EXPORTER_NAME, READY,
};

/// The apiserver goes away for longer than the token cache's TTL (2 min) and comes
/// back. With deploy/'s `--stale-if-error=5m`, the scraper scrape-guard already knows
/// is served all along (its expired answers reused, counted as `source="stale"`); a
/// token it has never seen gets 503, never a 200 (fail closed); afterwards everything
/// is reviewed again.
#[tokio::test]
#[ignore = "needs the node cluster: e2e/provision.sh, e2e/images.sh, then e2e/netns.sh cargo test -p scrape-guard-e2e --test cluster -- --ignored node_"]
async fn node_apiserver_restart_with_stale_if_error() {
    let t = NodeTest::start().await;
    let _turn = t.turn().await;
    let pod = t.ready_pod("node-exporter", READY).await;
    let known = t.mint_token(PROMETHEUS_SA).await;
    let unknown = t.mint_token(PROMETHEUS_SA).await;
    let tls = t.scrape_tls();
    let scrapes = ScrapeLoop::start(tls.clone(), 9100, NODE_EXPORTER_NAME, known.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;

    t.stop_apiserver();
    let outage = Duration::from_secs(150);
    println!("apiserver stopped for {outage:?}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let addr = format!("{NODE_IP}:9100").parse().expect("an address");
    let name = ServerName::try_from(NODE_EXPORTER_NAME.to_owned()).expect("a name");
    let reply = https_get_named(&tls, addr, name.clone(), "/metrics", Some(&unknown))
        .await
        .expect("a reply");
    assert!(
        reply.status.as_u16() >= 500,
        "a token never seen, apiserver down: {}",
        reply.describe()
    );
    tokio::time::sleep(outage).await;
    t.start_apiserver().await;
    t.restart_controllers();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let scrapes = scrapes.stop().await;
    println!("during and after the outage: {scrapes:?}");
    assert_eq!(
        scrapes.failed, 0,
        "a known scraper was refused: {scrapes:?}"
    );

    let reply = https_get_named(&tls, addr, name.clone(), "/metrics", Some(&unknown))
        .await
        .expect("a reply");
    assert_eq!(reply.status, 200, "after the restart: {}", reply.describe());
    // scrape-guard's own metrics (on the probes port, guarded like a scrape).
    let probes = format!("{NODE_IP}:9101").parse().expect("an address");
    let metrics = https_get_named(&tls, probes, name, "/metrics", Some(&known))
        .await
        .expect("a reply");
    assert_eq!(metrics.status, 200, "{}", metrics.describe());
    let metrics_body = metrics.text();
    let stale: Vec<&str> = metrics_body
        .lines()
        .filter(|l| l.contains("source=\"stale\"") && !l.starts_with('#'))
        .collect();
    println!("{stale:#?}");
    assert!(
        stale.iter().any(|l| !l.ends_with(" 0")),
        "no answer was served stale during the outage:\n{}",
        metrics_body
    );
    let pod_now = t.ready_pod("node-exporter", READY).await;
    assert_eq!(pod_now.metadata.uid, pod.metadata.uid);
    assert_eq!(
        restarts(&pod_now, "scrape-guard"),
        0,
        "{}",
        pod_summary(&pod_now)
    );
}
