//! The pod's own, rotating service-account token as scrape-guard's credentials.

use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

use super::{
    super::support::{
        eventually, https_get_named, pod_summary, restarts, NodeTest, NODE_IP, PROMETHEUS_SA,
    },
    KSM_NAME,
};

/// The projected token volume's lifetime in the overlay (token.yaml).
const TOKEN_LIFETIME: Duration = Duration::from_secs(600);

/// scrape-guard authenticates to the apiserver with its pod's projected
/// service-account token (in-cluster config: no kubeconfig anywhere in deploy/), and
/// keeps working after the kubelet rotated that token and the old one expired: a
/// brand-new scraper (no cache entry) is still reviewed and let in.
#[tokio::test]
#[ignore = "needs the node cluster: e2e/provision.sh, e2e/images.sh, then e2e/netns.sh cargo test -p scrape-guard-e2e --test cluster -- --ignored node_"]
async fn node_proxy_uses_the_pods_rotating_token() {
    let t = NodeTest::start().await;
    // kube-state-metrics' pod: no other test replaces it (rollout.rs and memory.rs
    // replace node-exporter's). (No turn yet: the clock
    // starts now, while the others take theirs; the wait rides out an apiserver
    // restart by another test.)
    let pod = t
        .ready_pod("kube-state-metrics", Duration::from_secs(300))
        .await;
    let token_file = t
        .pod_volume_dir(&pod)
        .join("kubernetes.io~projected/kube-api-access/token");
    let first = std::fs::read_to_string(&token_file)
        .unwrap_or_else(|e| panic!("the pod's token {}: {e}", token_file.display()));
    let claims = jwt_claims(&first);
    assert_eq!(
        claims["sub"], "system:serviceaccount:scrape-guard:scrape-guard-kube-state-metrics",
        "{claims}"
    );
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, TOKEN_LIFETIME.as_secs(), "{claims}");
    println!("the pod's first token: issued {iat}, expires {exp}");

    let scrape_main = |token: String| {
        let tls = t.scrape_tls();
        async move {
            let addr = format!("{NODE_IP}:8443").parse().expect("an address");
            let name = ServerName::try_from(KSM_NAME.to_owned()).expect("a name");
            https_get_named(&tls, addr, name, "/metrics", Some(&token)).await
        }
    };
    // (That scrape-guard reviews scrapers with this token before the rotation is
    // what ready.rs's up == 1 for kube-state-metrics shows.)

    // The kubelet refreshes a projected token after 80 % of its life (~480 s).
    let rotated_in = TOKEN_LIFETIME + Duration::from_secs(120);
    let started = Instant::now();
    let second = eventually(rotated_in, "the kubelet to rotate the token", || async {
        let now = std::fs::read_to_string(&token_file).map_err(|e| e.to_string())?;
        if now != first {
            Ok(now)
        } else {
            Err("still the first token".to_owned())
        }
    })
    .await;
    let second_claims = jwt_claims(&second);
    println!(
        "rotated after {:?}: new token issued {}, expires {}",
        started.elapsed(),
        second_claims["iat"],
        second_claims["exp"]
    );

    // Past the first token's expiry (plus kube-rs' 60 s reload period and the
    // apiserver's clock leeway), reviews only work with the new one.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock")
        .as_secs();
    let wait = (exp + 90).saturating_sub(now);
    println!("waiting {wait} s until the first token has expired");
    tokio::time::sleep(Duration::from_secs(wait)).await;

    let _turn = t.turn().await;
    let pod_now = t
        .ready_pod("kube-state-metrics", Duration::from_secs(120))
        .await;
    assert_eq!(
        pod_now.metadata.uid, pod.metadata.uid,
        "the kube-state-metrics pod was replaced during the test"
    );
    let fresh = t.mint_token(PROMETHEUS_SA).await;
    let reply = scrape_main(fresh).await.expect("a reply");
    assert_eq!(
        reply.status,
        200,
        "a new scraper after the pod's first token expired: {}",
        reply.describe()
    );
    assert_eq!(
        restarts(&pod_now, "scrape-guard"),
        0,
        "{}",
        pod_summary(&pod_now)
    );
}

/// The claims of a JWT (not verified: the apiserver did that).
fn jwt_claims(token: &str) -> serde_json::Value {
    let payload = token.trim().split('.').nth(1).expect("a JWT");
    let sextet = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => panic!("not base64url: {c}"),
    };
    let (mut bytes, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for c in payload.bytes().filter(|c| *c != b'=') {
        acc = (acc << 6) | u32::from(sextet(c));
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((acc >> bits) as u8);
        }
    }
    serde_json::from_slice(&bytes).expect("JSON claims")
}
