//! RBAC changes in the cluster reach scrape-guard within its authorization TTLs.

use std::time::{Duration, Instant};

use super::support::{eventually, Cluster, NodeExporter, ScrapeGuard, Subject};

/// Authorization TTLs of 3 s: delete the binding → still 200 from the cache, then 403
/// once the allow expires; recreate it → still 403 (cached deny), then 200 once the
/// deny expires.
#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn rbac_change_respects_ttls() {
    let cluster = Cluster::shared().await;
    let sa = ("e2e", "rbac-flip");
    let binding = "e2e-rbac-flip";
    cluster.ensure_service_account(sa).await;
    cluster
        .bind_metrics_reader(binding, Subject::ServiceAccount(sa))
        .await;
    let exporter = NodeExporter::start(cluster.dir()).await;
    let guard = ScrapeGuard::launch(&cluster, "rbac", &exporter.url())
        .arg("--authz-allow-ttl=3s")
        .arg("--authz-deny-ttl=3s")
        .start()
        .await;
    let token = cluster.mint_token(sa).await;
    let answers = |want: u16| {
        let (guard, token) = (&guard, &token);
        move || async move {
            let reply = guard.get("/metrics", Some(token)).await;
            if reply.status == want {
                Ok(Instant::now())
            } else {
                Err(reply.describe())
            }
        }
    };

    // (the apiserver's RBAC sees a new binding after a moment)
    let allowed = eventually(
        Duration::from_secs(15),
        "200 with the binding",
        answers(200),
    )
    .await;
    cluster.delete_binding(binding).await;
    let reply = guard.get("/metrics", Some(&token)).await;
    let age = allowed.elapsed();
    if age < Duration::from_secs(2) {
        assert_eq!(
            reply.status,
            200,
            "{age:?} after the allow was cached (TTL 3s), binding deleted: {}, want the cached 200",
            reply.describe()
        );
    }
    let denied = eventually(
        Duration::from_secs(15),
        "403 after deleting the binding",
        answers(403),
    )
    .await;
    println!(
        "denied {:?} after the last 200 (allow TTL 3s)",
        denied - allowed
    );

    cluster
        .bind_metrics_reader(binding, Subject::ServiceAccount(sa))
        .await;
    let reply = guard.get("/metrics", Some(&token)).await;
    let age = denied.elapsed();
    if age < Duration::from_millis(1500) {
        assert_eq!(
            reply.status, 403,
            "{age:?} after the deny was cached (TTL 3s), binding recreated: {}, want the cached 403",
            reply.describe()
        );
    }
    let again = eventually(
        Duration::from_secs(15),
        "200 after recreating the binding",
        answers(200),
    )
    .await;
    println!(
        "allowed again {:?} after the last 403 (deny TTL 3s)",
        again - denied
    );
    cluster.delete_binding(binding).await;
}
