//! The serving certificate rotated through its Secret volume.

use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

use super::{
    super::support::{peer_certificate, NodeTest, ScrapeLoop, NODE_IP, PROMETHEUS_SA},
    NODE_EXPORTER_NAME, READY,
};

/// A new certificate in the Secret reaches scrape-guard through the kubelet's volume
/// update (`..data` swapped): new handshakes get it, and not one scrape fails.
#[tokio::test]
#[ignore = "needs the node cluster: e2e/provision.sh, e2e/images.sh, then e2e/netns.sh cargo test -p scrape-guard-e2e --test cluster -- --ignored node_"]
async fn node_serving_certificate_rotates_through_the_secret() {
    let t = NodeTest::start().await;
    let _turn = t.turn().await;
    let pod = t.ready_pod("node-exporter", READY).await;
    let tls = t.scrape_tls();
    let addr = format!("{NODE_IP}:9100").parse().expect("an address");
    let name = || ServerName::try_from(NODE_EXPORTER_NAME.to_owned()).expect("a name");
    let before = peer_certificate(&tls, addr, name())
        .await
        .expect("a certificate");
    let token = t.mint_token(PROMETHEUS_SA).await;
    let scrapes = ScrapeLoop::start(tls.clone(), 9100, NODE_EXPORTER_NAME, token);
    let window = Instant::now();

    let new = t
        .put_serving_secret("scrape-guard-node-exporter-tls", NODE_EXPORTER_NAME)
        .await;
    assert_ne!(new.cert_der(), before.as_slice());
    let started = Instant::now();
    let on_disk = t
        .pod_volume_dir(&pod)
        .join("kubernetes.io~secret/tls/tls.crt");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let now = peer_certificate(&tls, addr, name()).await;
        if now.as_deref() == Ok(new.cert_der()) {
            break;
        }
        if Instant::now() > deadline {
            let file = std::fs::read_to_string(&on_disk).unwrap_or_default();
            let served = if now.as_deref() == Ok(before.as_slice()) {
                "the old certificate"
            } else {
                "something else"
            };
            let volume = if file == new.cert_pem {
                "the new one"
            } else if file.is_empty() {
                "unreadable"
            } else {
                "not the new one"
            };
            panic!(
                "new handshakes still get {served} after {:?}; the volume's tls.crt is {volume}; scrape-guard's log:\n{}",
                started.elapsed(),
                last_lines(&t.container_log(&pod, "scrape-guard"), 30),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "new certificate served {:?} after the Secret changed",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let scrapes = scrapes.stop().await;
    let (failed, all) = t
        .prometheus()
        .failed_scrapes("scrape-guard-node-exporter", window.elapsed())
        .await
        .expect("a query");
    println!("direct scrapes: {scrapes:?}; Prometheus: {failed} of {all} failed");
    assert_eq!(
        scrapes.failed, 0,
        "scrapes failed during the rotation: {scrapes:?}"
    );
    assert!(scrapes.ok > 10, "{scrapes:?}");
    assert_eq!(
        failed, 0,
        "Prometheus saw failed scrapes during the rotation"
    );
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
