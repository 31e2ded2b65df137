//! scrape-guard as a container in a pod: deploy/ applied with `kubectl apply -k` to a
//! single-node cluster with a real kubelet, containerd and runc, the image built by
//! `image/build.sh`, and what a cluster does to a sidecar — probes, the pod's rotating
//! service-account token, certificate rotation through a Secret volume, rollouts and
//! pod deletion, a memory limit enforced by a cgroup, an apiserver restart.
//!
//! These run only inside the network namespace `e2e/netns.sh` makes (see
//! `support/node.rs` for the cluster and the network rule):
//!
//! ```sh
//! e2e/provision.sh && e2e/images.sh
//! e2e/netns.sh cargo test --test cluster -- --ignored node_ --test-threads=8
//! ```

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use rustls::pki_types::ServerName;

use super::support::{
    eventually, forbidden_message, peer_certificate, pod_summary, restarts, sa_user, NodeTest,
    ScrapeLoop, NODE_IP, NO_RBAC_SA, PROMETHEUS_SA,
};

const NODE_EXPORTER_NAME: &str = "node-exporter.monitoring.svc";
const KSM_NAME: &str = "kube-state-metrics.monitoring.svc";
/// The projected token volume's lifetime in the overlay (token.yaml).
const TOKEN_LIFETIME: Duration = Duration::from_secs(600);

/// The pods become Ready through the kubelet's own probes, run the shipped image as
/// 65532 on a read-only root, and a real Prometheus scrapes every target through
/// scrape-guard (`up == 1`) with the credentials and CA the ServiceMonitors name; a
/// scraper without RBAC sees 403 in `lastError`.
#[tokio::test]
#[ignore = "needs the node cluster: e2e/provision.sh, e2e/images.sh, then e2e/netns.sh cargo test --test cluster -- --ignored node_"]
async fn node_pods_ready_and_scraped_through_the_guard() {
    let t = NodeTest::start().await;
    let _turn = t.turn().await;
    let times = t.start_times();
    println!(
        "from a cold start: apiserver ready {:?}, node Ready {:?}, pods Ready {:?}, first scrape (up == 1) {:?}",
        times.apiserver_ready, times.node_ready, times.pods_ready, times.first_scrape
    );

    for (app, guards) in [
        ("node-exporter", &["scrape-guard"][..]),
        (
            "kube-state-metrics",
            &["scrape-guard-main", "scrape-guard-self"][..],
        ),
    ] {
        let pod = t.ready_pod(app, Duration::from_secs(60)).await;
        println!("{}", pod_summary(&pod));
        for guard in guards {
            assert_eq!(
                restarts(&pod, guard),
                0,
                "{guard} restarted: {}",
                pod_summary(&pod)
            );
            let status = process_status(&t, &pod, guard);
            assert!(
                status
                    .lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("65532")),
                "{guard} does not run as 65532:\n{status}"
            );
        }
    }

    let prometheus = t.prometheus();
    for job in [
        "node-exporter",
        "kube-state-metrics-main",
        "kube-state-metrics-self",
    ] {
        eventually(
            Duration::from_secs(60),
            &format!("up == 1 for {job}"),
            || async {
                match prometheus.up(job).await?.as_str() {
                    "1" => Ok(()),
                    other => Err(format!(
                        "up = {other}: {}",
                        prometheus.last_error(job).await
                    )),
                }
            },
        )
        .await;
    }
    // What came through is the exporters' own data: node-exporter read the host's
    // /proc through its hostPath mount, and both kube-state-metrics ports answered.
    for selector in [
        "node_boot_time_seconds{job=\"node-exporter\"}",
        "kube_state_metrics_standin{job=\"kube-state-metrics-main\"}",
        "kube_state_metrics_standin_scrapes_total{job=\"kube-state-metrics-self\"}",
    ] {
        eventually(Duration::from_secs(30), selector, || async {
            match prometheus.series(selector).await? {
                0 => Err("no series yet".to_owned()),
                _ => Ok(()),
            }
        })
        .await;
    }

    let forbidden = forbidden_message(&sa_user(NO_RBAC_SA));
    eventually(Duration::from_secs(30), "the no-rbac job's 403", || async {
        let up = prometheus.up("no-rbac").await?;
        let error = prometheus.last_error("no-rbac").await;
        if up == "0" && error.contains("403") {
            Ok(())
        } else {
            Err(format!("up = {up}, lastError = {error:?}"))
        }
    })
    .await;
    println!(
        "no-rbac lastError: {}",
        prometheus.last_error("no-rbac").await
    );

    // The same by hand: no token 401, the unbound account's 403 names it, a path
    // outside --allow-paths 404, node-exporter itself not reachable on the node IP.
    let tls = t.scrape_tls();
    let addr = format!("{NODE_IP}:9100").parse().expect("an address");
    let name = || ServerName::try_from(NODE_EXPORTER_NAME.to_owned()).expect("a name");
    let get = |path: &'static str, token: Option<String>| {
        let tls = tls.clone();
        async move { super::support::https_get_named(&tls, addr, name(), path, token.as_deref()).await }
    };
    let reply = get("/metrics", None).await.expect("a reply");
    assert_eq!(reply.status, 401, "{}", reply.describe());
    let no_rbac = t.mint_token(NO_RBAC_SA).await;
    let reply = get("/metrics", Some(no_rbac)).await.expect("a reply");
    assert!(
        reply.is_status(403, Some(&forbidden)),
        "{}",
        reply.describe()
    );
    let scraper = t.mint_token(PROMETHEUS_SA).await;
    let reply = get("/debug/pprof/", Some(scraper.clone()))
        .await
        .expect("a reply");
    assert_eq!(reply.status, 404, "{}", reply.describe());
    let reply = get("/metrics", Some(scraper)).await.expect("a reply");
    assert_eq!(reply.status, 200, "{}", reply.describe());
    // Plain HTTP on the node's port 9100 reaches scrape-guard's TLS listener, never
    // node-exporter (which listens on the node's loopback only).
    if let Ok(reply) = super::support::http_get_bearer(addr, "/metrics", None).await {
        assert_ne!(
            reply.status,
            200,
            "plain HTTP on {addr}: {}",
            reply.describe()
        );
    }
}

/// scrape-guard authenticates to the apiserver with its pod's projected
/// service-account token (in-cluster config: no kubeconfig anywhere in deploy/), and
/// keeps working after the kubelet rotated that token and the old one expired: a
/// brand-new scraper (no cache entry) is still reviewed and let in.
#[tokio::test]
#[ignore = "needs the node cluster: e2e/provision.sh, e2e/images.sh, then e2e/netns.sh cargo test --test cluster -- --ignored node_"]
async fn node_proxy_uses_the_pods_rotating_token() {
    let t = NodeTest::start().await;
    // kube-state-metrics' pod: no other test restarts it.
    let pod = {
        let _turn = t.turn().await;
        t.ready_pod("kube-state-metrics", Duration::from_secs(120))
            .await
    };
    let token_file = t
        .pod_volume_dir(&pod)
        .join("kubernetes.io~projected/kube-api-access/token");
    let first = std::fs::read_to_string(&token_file)
        .unwrap_or_else(|e| panic!("the pod's token {}: {e}", token_file.display()));
    let claims = jwt_claims(&first);
    assert_eq!(
        claims["sub"], "system:serviceaccount:monitoring:kube-state-metrics",
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
            super::support::https_get_named(&tls, addr, name, "/metrics", Some(&token)).await
        }
    };
    let reply = scrape_main(t.mint_token(PROMETHEUS_SA).await)
        .await
        .expect("a reply");
    assert_eq!(
        reply.status,
        200,
        "before the rotation: {}",
        reply.describe()
    );

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
    for guard in ["scrape-guard-main", "scrape-guard-self"] {
        assert_eq!(restarts(&pod_now, guard), 0, "{}", pod_summary(&pod_now));
    }
}

/// A new certificate in the Secret reaches scrape-guard through the kubelet's volume
/// update (`..data` swapped): new handshakes get it, and not one scrape fails.
#[tokio::test]
#[ignore = "needs the node cluster: e2e/provision.sh, e2e/images.sh, then e2e/netns.sh cargo test --test cluster -- --ignored node_"]
async fn node_serving_certificate_rotates_through_the_secret() {
    let t = NodeTest::start().await;
    let _turn = t.turn().await;
    let pod = t.ready_pod("node-exporter", Duration::from_secs(120)).await;
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
        .put_serving_secret("node-exporter-tls", NODE_EXPORTER_NAME)
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
        .failed_scrapes("node-exporter", window.elapsed())
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

/// `kubectl rollout restart` of the DaemonSet and deletion of the kube-state-metrics
/// pod while scraping: every old scrape-guard exits 0 after its drain, the new pods
/// become Ready, and the failed scrapes are only those of the gap between the old pod
/// and the new (on one node, a host-network pod's replacement cannot start before
/// the old one freed the ports): measured and reported.
#[tokio::test]
#[ignore = "needs the node cluster: e2e/provision.sh, e2e/images.sh, then e2e/netns.sh cargo test --test cluster -- --ignored node_"]
async fn node_rollout_restart_and_pod_deletion() {
    let t = NodeTest::start().await;
    let _turn = t.turn().await;
    let token = t.mint_token(PROMETHEUS_SA).await;
    for (app, port, name, how) in [
        ("node-exporter", 9100, NODE_EXPORTER_NAME, "rollout restart"),
        ("kube-state-metrics", 8443, KSM_NAME, "pod deletion"),
    ] {
        let old = t.ready_pod(app, Duration::from_secs(120)).await;
        let old_name = old.metadata.name.clone().expect("a pod name");
        let scrapes = ScrapeLoop::start(t.scrape_tls(), port, name, token.clone());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let window = Instant::now();
        let exits = watch_exit_codes(&t, &old_name);
        match how {
            "rollout restart" => {
                t.kubectl_ok(&[
                    "-n",
                    "monitoring",
                    "rollout",
                    "restart",
                    "daemonset/node-exporter",
                ])
                .await;
            }
            _ => {
                t.kubectl_ok(&[
                    "-n",
                    "monitoring",
                    "delete",
                    "pod",
                    &old_name,
                    "--wait=false",
                ])
                .await;
            }
        }
        let new = eventually(
            Duration::from_secs(180),
            &format!("a new Ready {app} pod"),
            || async {
                let pod = t.try_ready_pod(app).await?;
                if pod.metadata.name.as_deref() == Some(old_name.as_str()) {
                    Err("still the old pod".to_owned())
                } else {
                    Ok(pod)
                }
            },
        )
        .await;
        let replaced_in = window.elapsed();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let scrapes = scrapes.stop().await;
        let exits = exits.await.expect("the exit watcher");
        let job = if app == "node-exporter" {
            "node-exporter"
        } else {
            "kube-state-metrics-main"
        };
        let (failed, all) = t
            .prometheus()
            .failed_scrapes(job, window.elapsed())
            .await
            .expect("a query");
        println!(
            "{app} {how}: new pod {} Ready after {replaced_in:?}; direct scrapes {} ok, {} failed, outage {:?} (first failures: {:?}); Prometheus: {failed} of {all} scrapes failed; old containers exited {exits:?}",
            new.metadata.name.as_deref().unwrap_or("?"),
            scrapes.ok,
            scrapes.failed,
            scrapes.outage,
            scrapes.failures.iter().take(3).collect::<Vec<_>>(),
        );
        for (container, code) in &exits {
            if container.starts_with("scrape-guard") {
                assert_eq!(*code, 0, "old {container} exited {code}");
            }
        }
        assert!(
            exits.iter().any(|(c, _)| c.starts_with("scrape-guard")),
            "never saw the old scrape-guard terminate: {exits:?}"
        );
        assert!(scrapes.ok > 0, "{scrapes:?}");
        assert!(
            scrapes.outage < Duration::from_secs(60),
            "scrapes failed for {:?}",
            scrapes.outage
        );
        // Prometheus stops scraping a target when its endpoint goes: the pod's
        // deletion removes it from the Endpoints at once, and discovery here takes up
        // to ~2 s (a 1 s poll, then Prometheus' file_sd reload), so up to 3 scrapes at
        // a 1 s interval may still reach the terminating pod (node-exporter exits on
        // SIGTERM at once: 502; then scrape-guard's drain ends: refused).
        assert!(
            failed <= 3,
            "Prometheus saw {failed} failed scrapes of {job}, more than the endpoint change explains"
        );
    }
}

/// A burst of scrapes and a full identity cache (16,384 entries, the manifest's
/// --cache-max-entries) stay under the container's memory limit (40Mi in the
/// manifest): no OOM kill, no restart, the peak read from the container's memory
/// cgroup. Filling 16,384 identities through 5 reviews/s (the default rate) and the
/// 20m CPU limit would take most of an hour, so for this test only the DaemonSet's
/// review rate (SCRAPE_GUARD_KUBE_API_QPS/BURST, SCRAPE_GUARD_MAX_REVIEWS_PER_PEER: the
/// test is one client address) and CPU limit are raised: none of them changes what
/// memory an entry or a connection costs. `kubectl rollout undo` puts them back.
#[tokio::test]
#[ignore = "needs the node cluster: e2e/provision.sh, e2e/images.sh, then e2e/netns.sh cargo test --test cluster -- --ignored node_"]
async fn node_memory_stays_under_the_limit() {
    let t = NodeTest::start().await;
    let _turn = t.turn().await;
    let patch = |qps: &str, cpu: &str| {
        format!(
            r#"{{"spec":{{"template":{{"spec":{{"containers":[{{"name":"scrape-guard","env":[{{"name":"SCRAPE_GUARD_KUBE_API_QPS","value":"{qps}"}},{{"name":"SCRAPE_GUARD_KUBE_API_BURST","value":"{qps}"}},{{"name":"SCRAPE_GUARD_MAX_REVIEWS_PER_PEER","value":"64"}}],"resources":{{"limits":{{"cpu":"{cpu}"}}}}}}]}}}}}}}}"#
        )
    };
    let old = t.ready_pod("node-exporter", Duration::from_secs(120)).await;
    t.kubectl_ok(&[
        "-n",
        "monitoring",
        "patch",
        "daemonset/node-exporter",
        "--type=strategic",
        "-p",
        &patch("2000", "2"),
    ])
    .await;
    let pod = eventually(
        Duration::from_secs(180),
        "the patched node-exporter pod",
        || async {
            let pod = t.try_ready_pod("node-exporter").await?;
            if pod.metadata.uid == old.metadata.uid {
                Err("still the old pod".to_owned())
            } else {
                Ok(pod)
            }
        },
    )
    .await;
    let cgroup = t.container_memory_cgroup(&pod, "scrape-guard");
    let read = |file: &str| -> u64 {
        std::fs::read_to_string(cgroup.join(file))
            .unwrap_or_else(|e| panic!("{}/{file}: {e}", cgroup.display()))
            .trim()
            .parse()
            .expect("a number")
    };
    let limit = read("memory.limit_in_bytes");
    assert_eq!(limit, 40 * 1024 * 1024, "the manifest's 40Mi limit");
    let idle = read("memory.usage_in_bytes");

    // 16,384 identities: distinct tokens, each reviewed once.
    let identities = 16_384;
    let started = Instant::now();
    let tokens = mint_many(&t, identities).await;
    println!("minted {identities} tokens in {:?}", started.elapsed());
    let started = Instant::now();
    let statuses = scrape_with_each(&t, &tokens, 16).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    println!(
        "{ok} of {identities} new identities let in, in {:?} (others: {:?})",
        started.elapsed(),
        statuses
            .iter()
            .filter(|s| **s != 200)
            .take(5)
            .collect::<Vec<_>>()
    );
    let after_fill = read("memory.usage_in_bytes");

    // Then the burst: 64 connections, 50 scrapes each, known identities.
    let burst: Vec<String> = tokens.iter().take(64).cloned().collect();
    let repeated: Vec<String> = burst.iter().cycle().take(64 * 50).cloned().collect();
    let statuses = scrape_with_each(&t, &repeated, 64).await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "burst: {:?}",
        statuses.iter().filter(|s| **s != 200).count()
    );

    let peak = read("memory.max_usage_in_bytes");
    let failcnt = read("memory.failcnt");
    let pod_now = t.ready_pod("node-exporter", Duration::from_secs(30)).await;
    let mib = |b: u64| b as f64 / 1048576.0;
    println!(
        "scrape-guard container memory (cgroup): idle {:.1} MiB, after 16,384 identities {:.1} MiB, peak {:.1} MiB of a {:.0} MiB limit; failcnt {failcnt}; {}",
        mib(idle),
        mib(after_fill),
        mib(peak),
        mib(limit),
        pod_summary(&pod_now)
    );
    // Back to the manifest's values first, whatever the verdict.
    t.kubectl_ok(&[
        "-n",
        "monitoring",
        "rollout",
        "undo",
        "daemonset/node-exporter",
    ])
    .await;
    eventually(
        Duration::from_secs(180),
        "the restored node-exporter pod",
        || async {
            let now = t.try_ready_pod("node-exporter").await?;
            if now.metadata.uid == pod.metadata.uid {
                Err("still the patched pod".to_owned())
            } else {
                Ok(())
            }
        },
    )
    .await;

    assert_eq!(
        pod_now.metadata.uid, pod.metadata.uid,
        "the pod was replaced"
    );
    assert_eq!(
        restarts(&pod_now, "scrape-guard"),
        0,
        "{}",
        pod_summary(&pod_now)
    );
    assert!(peak < limit, "peak {peak} reached the limit {limit}");
    assert!(
        ok >= identities * 99 / 100,
        "only {ok} of {identities} identities were let in"
    );
}

/// The apiserver goes away for longer than the token cache's TTL (2 min) and comes
/// back. With deploy/'s `--stale-if-error=5m`, the scraper scrape-guard already knows
/// is served all along (its expired answers reused, counted as `source="stale"`); a
/// token it has never seen gets 503, never a 200 (fail closed); afterwards everything
/// is reviewed again.
#[tokio::test]
#[ignore = "needs the node cluster: e2e/provision.sh, e2e/images.sh, then e2e/netns.sh cargo test --test cluster -- --ignored node_"]
async fn node_apiserver_restart_with_stale_if_error() {
    let t = NodeTest::start().await;
    let _turn = t.turn().await;
    let pod = t.ready_pod("node-exporter", Duration::from_secs(120)).await;
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
    let reply =
        super::support::https_get_named(&tls, addr, name.clone(), "/metrics", Some(&unknown))
            .await
            .expect("a reply");
    assert!(
        reply.status >= 500,
        "a token never seen, apiserver down: {}",
        reply.describe()
    );
    tokio::time::sleep(outage).await;
    t.start_apiserver().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let scrapes = scrapes.stop().await;
    println!("during and after the outage: {scrapes:?}");
    assert_eq!(
        scrapes.failed, 0,
        "a known scraper was refused: {scrapes:?}"
    );

    let reply =
        super::support::https_get_named(&tls, addr, name.clone(), "/metrics", Some(&unknown))
            .await
            .expect("a reply");
    assert_eq!(reply.status, 200, "after the restart: {}", reply.describe());
    // scrape-guard's own metrics (on the probes port, guarded like a scrape).
    let probes = format!("{NODE_IP}:9101").parse().expect("an address");
    let metrics = super::support::https_get_named(&tls, probes, name, "/metrics", Some(&known))
        .await
        .expect("a reply");
    assert_eq!(metrics.status, 200, "{}", metrics.describe());
    let stale: Vec<&str> = metrics
        .body
        .lines()
        .filter(|l| l.contains("source=\"stale\"") && !l.starts_with('#'))
        .collect();
    println!("{stale:#?}");
    assert!(
        stale.iter().any(|l| !l.ends_with(" 0")),
        "no answer was served stale during the outage:\n{}",
        metrics.body
    );
    let pod_now = t.ready_pod("node-exporter", Duration::from_secs(120)).await;
    assert_eq!(pod_now.metadata.uid, pod.metadata.uid);
    assert_eq!(
        restarts(&pod_now, "scrape-guard"),
        0,
        "{}",
        pod_summary(&pod_now)
    );
}

// === helpers ===

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
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

/// `/proc/<pid>/status` of a container's main process.
fn process_status(t: &NodeTest, pod: &Pod, container: &str) -> String {
    let cgroup = t.container_memory_cgroup(pod, container);
    let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).expect("cgroup.procs");
    let pid = procs.lines().next().expect("a process in the container");
    std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status")
}

/// Polls a pod until it is gone, collecting its containers' exit codes as the kubelet
/// reports them.
fn watch_exit_codes(t: &NodeTest, pod: &str) -> tokio::task::JoinHandle<Vec<(String, i32)>> {
    let pods: Api<Pod> = Api::namespaced(t.client().clone(), "monitoring");
    let name = pod.to_owned();
    tokio::spawn(async move {
        let mut codes = std::collections::BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(180);
        while Instant::now() < deadline {
            match pods.get_opt(&name).await {
                Ok(Some(pod)) => {
                    for c in pod
                        .status
                        .and_then(|s| s.container_statuses)
                        .unwrap_or_default()
                    {
                        if let Some(t) = c.state.and_then(|s| s.terminated) {
                            codes.insert(c.name, t.exit_code);
                        }
                    }
                }
                Ok(None) => break,
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        codes.into_iter().collect()
    })
}

/// `count` fresh tokens of the scraper, 16 TokenRequests at a time.
async fn mint_many(t: &NodeTest, count: usize) -> Vec<String> {
    use futures_util::StreamExt as _;
    futures_util::stream::iter(0..count)
        .map(|_| t.mint_token(PROMETHEUS_SA))
        .buffer_unordered(16)
        .collect()
        .await
}

/// One scrape of node-exporter per token, `concurrency` at a time, on keep-alive
/// connections: the status codes.
async fn scrape_with_each(t: &NodeTest, tokens: &[String], concurrency: usize) -> Vec<u16> {
    let addr = format!("{NODE_IP}:9100").parse().expect("an address");
    let tls = t.scrape_tls();
    let chunks: Vec<Vec<String>> = tokens
        .chunks(tokens.len().div_ceil(concurrency))
        .map(<[String]>::to_vec)
        .collect();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let tls = tls.clone();
        tasks.push(tokio::spawn(async move {
            super::support::keep_alive_gets(&tls, addr, NODE_EXPORTER_NAME, "/metrics", &chunk)
                .await
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.extend(task.await.expect("a scrape task"));
    }
    statuses
}
