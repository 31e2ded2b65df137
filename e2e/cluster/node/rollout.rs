//! Rollouts and pod deletion while Prometheus scrapes.

use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, WatchEvent, WatchParams};

use super::{
    super::support::{container_ids, eventually, NodeTest, ScrapeLoop, NAMESPACE, PROMETHEUS_SA},
    NODE_EXPORTER_NAME, READY,
};

/// `kubectl rollout restart` of the node-exporter DaemonSet, then deletion of its pod,
/// while scraping (not kube-state-metrics' pod: credentials.rs needs it to live for
/// the kubelet to rotate its token): every old scrape-guard exits 0 after its drain, the new pods
/// become Ready, and the failed scrapes are only those of the gap between the old pod
/// and the new (on one node, a host-network pod's replacement cannot start before
/// the old one freed the ports): measured and reported.
#[tokio::test]
#[ignore = "needs the node cluster: e2e/provision.sh, e2e/images.sh, then e2e/netns.sh cargo test -p scrape-guard-e2e --test cluster -- --ignored node_"]
async fn node_rollout_restart_and_pod_deletion() {
    let t = NodeTest::start().await;
    let _turn = t.turn().await;
    let token = t.mint_token(PROMETHEUS_SA).await;
    for (app, port, name, how) in [
        ("node-exporter", 9100, NODE_EXPORTER_NAME, "rollout restart"),
        ("node-exporter", 9100, NODE_EXPORTER_NAME, "pod deletion"),
    ] {
        let old = t.ready_pod(app, READY).await;
        let old_name = old.metadata.name.clone().expect("a pod name");
        let scrapes = ScrapeLoop::start(t.scrape_tls(), port, name, token.clone());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let window = Instant::now();
        let window_wall = SystemTime::now();
        let old_containers = container_ids(&old);
        let task_exits = t.task_exits();
        let exits = watch_exit_codes(&t, &old_name);
        match how {
            "rollout restart" => {
                t.kubectl_ok(&[
                    "-n",
                    NAMESPACE,
                    "rollout",
                    "restart",
                    "daemonset/scrape-guard-node-exporter",
                ])
                .await;
            }
            _ => {
                t.kubectl_ok(&["-n", NAMESPACE, "delete", "pod", &old_name, "--wait=false"])
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
        let ready_at = scrapes.elapsed();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let scrapes = scrapes.stop().await;
        let exits = exits.await.expect("the exit watcher");
        let job = app;
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
        // Every old scrape-guard ended, and cleanly: by the kubelet's last status when it
        // sent one, else by containerd's own record of the task's exit (a kubelet may
        // remove the pod without that status: seen in CI after a pod deletion, and after a
        // rollout that followed an apiserver restart). The new pod is Ready on the same
        // ports, so the old containers are gone by now.
        let mut guards = 0;
        for (container, id) in &old_containers {
            let reported = exits
                .iter()
                .find(|(c, _)| c == container)
                .map(|(_, code)| *code);
            let code = reported.or_else(|| task_exits.of(id, Duration::from_secs(10)));
            println!("old {container} ({id}): exit {code:?} (in the pod's status: {reported:?})");
            if container.starts_with("scrape-guard") {
                guards += 1;
                let code = code.unwrap_or_else(|| {
                    panic!("neither the kubelet nor containerd saw the old {container} end")
                });
                assert_eq!(code, 0, "old {container} exited {code}");
            }
        }
        drop(task_exits);
        assert!(
            guards > 0,
            "the old pod had no scrape-guard container: {old_containers:?}"
        );
        assert!(scrapes.ok > 0, "{scrapes:?}");
        // Once the new pod is Ready (its scrape-guard's /readyz), scrapes work: the
        // gap before is the pod's replacement (kubelet, controllers), not the guard.
        assert!(
            scrapes
                .last_failure
                .is_none_or(|at| at < ready_at + Duration::from_secs(2)),
            "scrapes still failed {:?} after the new pod was Ready: {scrapes:?}",
            scrapes.last_failure.map(|at| at.saturating_sub(ready_at))
        );
        // A host-network pod's replacement cannot listen before the old one freed
        // the port, so Prometheus may fail while the port is closed (the direct loop
        // measures that gap: `outage_span`), and during the scrape in flight when
        // node-exporter exits. A failed scrape outside that gap, widened by one
        // scrape timeout and the direct loop's poll, is one scrape-guard caused.
        // Only this window's scrapes: the tests before it on the shared cluster may
        // have left failures of their own (an apiserver restart, a rotation).
        let failed_at: Vec<SystemTime> = t
            .prometheus()
            .failed_scrape_times(job, window.elapsed() + Duration::from_secs(2))
            .await
            .expect("a query")
            .into_iter()
            .filter(|at| *at >= window_wall)
            .collect();
        let slack = Duration::from_millis(1500);
        let unexplained: Vec<String> = failed_at
            .iter()
            .filter(|at| {
                scrapes
                    .outage_span
                    .is_none_or(|(from, to)| **at + slack < from || **at > to + slack)
            })
            .map(|at| match scrapes.outage_span {
                Some((from, to)) => format!(
                    "{:?} before the gap / {:?} after it",
                    from.duration_since(*at).unwrap_or_default(),
                    at.duration_since(to).unwrap_or_default()
                ),
                None => "with no gap at all".to_owned(),
            })
            .collect();
        assert!(
            unexplained.is_empty(),
            "Prometheus saw {} failed scrapes of {job} outside the gap between the pods: {unexplained:?}",
            unexplained.len()
        );
    }
}

/// Watches a pod until it is deleted, collecting its containers' exit codes from every
/// version of it the apiserver sends (a watch, not a poll: the kubelet's last status,
/// with the exit codes, can come a few milliseconds before the deletion).
fn watch_exit_codes(t: &NodeTest, pod: &str) -> tokio::task::JoinHandle<Vec<(String, i32)>> {
    let pods: Api<Pod> = Api::namespaced(t.client().clone(), NAMESPACE);
    let name = pod.to_owned();
    tokio::spawn(async move {
        let mut codes = std::collections::BTreeMap::new();
        let mut record = |pod: Pod| {
            for c in pod
                .status
                .and_then(|s| s.container_statuses)
                .unwrap_or_default()
            {
                if let Some(t) = c.state.and_then(|s| s.terminated) {
                    codes.insert(c.name, t.exit_code);
                }
            }
        };
        let params = WatchParams::default()
            .fields(&format!("metadata.name={name}"))
            .timeout(200);
        let watched = async {
            let Ok(events) = pods.watch(&params, "0").await else {
                return;
            };
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                match event {
                    Ok(WatchEvent::Added(pod) | WatchEvent::Modified(pod)) => record(pod),
                    Ok(WatchEvent::Deleted(pod)) => {
                        record(pod);
                        return;
                    }
                    _ => {}
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(180), watched).await;
        codes.into_iter().collect()
    })
}
