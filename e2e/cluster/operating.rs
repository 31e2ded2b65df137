//! Operating scrape-guard: its own /metrics is guarded like a scrape, tokens never go
//! into a log, and `--log-format=json` means every line.

use super::support::{
    forbidden_message, random_hex, remember_secret, sa_user, secret_count, secrets_in, Cluster,
    NodeExporter, RecordingUpstream, ScrapeGuard, PROMETHEUS_SA, UNBOUND_SA,
};

/// scrape-guard's own /metrics on `--proxy-endpoints-port`: no token → 401; an account
/// that may `get /metrics` → 200 with scrape-guard's series; the unbound account → the
/// forbidden Status.
#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn own_metrics_are_guarded() {
    let cluster = Cluster::shared().await;
    let upstream = RecordingUpstream::start().await;
    let guard = ScrapeGuard::launch(&cluster, "out", &upstream.url())
        .with_endpoints_port()
        .start()
        .await;
    let get = |bearer: Option<String>| {
        let guard = &guard;
        async move {
            guard
                .endpoints_get("/metrics", bearer.as_deref())
                .await
                .unwrap_or_else(|e| panic!("own /metrics: {e}"))
        }
    };
    let reply = get(None).await;
    assert_eq!(
        reply.status,
        401,
        "own /metrics without a token: {}",
        reply.describe()
    );

    let reply = get(Some(cluster.mint_token(PROMETHEUS_SA).await)).await;
    assert_eq!(
        reply.status,
        200,
        "own /metrics, the scraper's token: {}",
        reply.describe()
    );
    let body = reply.text();
    for metric in ["scrape_guard_requests_total", "scrape_guard_build_info"] {
        assert!(
            body.lines().any(|l| l
                .strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))),
            "own /metrics (200) has no {metric} series:\n{}",
            body
        );
    }
    let samples = body
        .lines()
        .filter(|l| l.starts_with("scrape_guard_"))
        .count();
    println!("{samples} scrape_guard_* samples");

    let reply = get(Some(cluster.mint_token(UNBOUND_SA).await)).await;
    let want = forbidden_message(&sa_user(UNBOUND_SA));
    assert_eq!(
        reply.status,
        403,
        "own /metrics, unbound token: {}",
        reply.describe()
    );
    assert!(
        reply.is_status(403, Some(&want)),
        "own /metrics, unbound token: not the forbidden Status: {}",
        reply.describe()
    );
}

/// `--log-format=json`: every line the instance writes (startup, allowed, forbidden
/// and unauthenticated requests, at debug level) is a JSON object.
#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn json_log_format() {
    let cluster = Cluster::shared().await;
    let exporter = NodeExporter::start(cluster.dir()).await;
    let mut guard = ScrapeGuard::launch(&cluster, "json", &exporter.url())
        .arg("--log-format=json")
        .env("SCRAPE_GUARD_LOG", "debug")
        .start()
        .await;
    let bogus = format!("bogus-{}", random_hex(8));
    remember_secret("the bogus token of json_log_format", &bogus);
    let tokens = [
        cluster.mint_token(PROMETHEUS_SA).await,
        cluster.mint_token(UNBOUND_SA).await,
        bogus,
    ];
    for token in &tokens {
        guard.get("/metrics", Some(token)).await;
    }
    guard.stop();
    let log = guard.log_text();
    let lines: Vec<&str> = log.lines().collect();
    assert!(!lines.is_empty(), "the instance wrote no log lines");
    let not_json: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v.is_object()))
        .collect();
    assert!(
        not_json.is_empty(),
        "{} of {} lines are not JSON objects: {not_json:#?}",
        not_json.len(),
        lines.len()
    );
    println!("{} JSON lines", lines.len());
}

/// Tokens are secrets. An instance at debug level with access logs sees a valid, a
/// forbidden, a bogus and a wrong-audience token (and its own in its kubeconfig); no
/// token the suite has seen so far (these, every other test's, the admin's) appears in
/// its log. The same scan runs on every scrape-guard instance of every test when it
/// stops (support/proxy.rs), and on every `can-i` output.
#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn tokens_never_logged() {
    let cluster = Cluster::shared().await;
    let exporter = NodeExporter::start(cluster.dir()).await;
    let mut guard = ScrapeGuard::launch(&cluster, "secrets", &exporter.url())
        .arg("--access-log")
        .arg("--auth-token-audiences=scrape-guard")
        .env("SCRAPE_GUARD_LOG", "debug")
        .start()
        .await;
    let bogus = format!("bogus-{}", random_hex(16));
    remember_secret("the bogus token of tokens_never_logged", &bogus);
    let requests = [
        (
            cluster.mint_token_for(PROMETHEUS_SA, "scrape-guard").await,
            200,
        ),
        (
            cluster.mint_token_for(UNBOUND_SA, "scrape-guard").await,
            403,
        ),
        (bogus, 401),
        (cluster.mint_token(PROMETHEUS_SA).await, 401),
    ];
    for (token, want) in &requests {
        let reply = guard.get("/metrics", Some(token)).await;
        assert_eq!(reply.status, *want, "{}", reply.describe());
    }
    // (the scan itself finds a token where there is one)
    let probe = format!("level=debug token={}", requests[2].0);
    assert!(
        !secrets_in(&probe).is_empty(),
        "the secret scan finds nothing"
    );
    let leaked = guard.secrets_logged();
    let lines = guard.log_text().lines().count();
    println!(
        "{} secrets checked against {lines} log lines",
        secret_count()
    );
    assert!(lines > 0, "the instance wrote no log lines");
    assert!(
        leaked.is_empty(),
        "secrets in scrape-guard's debug log: {leaked:?}"
    );
}
