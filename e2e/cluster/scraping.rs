//! Prometheus scraping node-exporter through scrape-guard, as in a cluster: allowed
//! with the deploy/ RBAC, refused without it, and scrape-guard started with
//! kube-prometheus' own sidecar arguments.

use std::time::Duration;

use super::support::{
    eventually, forbidden_message, free_port, sa_user, Cluster, Job, NodeExporter, Prometheus,
    ScrapeGuard, ScrapeTls, PROMETHEUS_SA, UNBOUND_SA,
};

/// scrape-guard with a CA-signed serving certificate (Prometheus verifies it) and long
/// TTLs, in front of node-exporter.
async fn main_instance(cluster: &Cluster, exporter: &NodeExporter) -> ScrapeGuard {
    let (cert, key) = cluster
        .ca()
        .serving("scrape-guard")
        .write(cluster.dir(), "scrape-guard");
    ScrapeGuard::launch(cluster, "main", &exporter.url())
        .arg(format!("--tls-cert-file={}", cert.display()))
        .arg(format!("--tls-private-key-file={}", key.display()))
        .arg("--auth-cache-ttl=10m")
        .arg("--authz-allow-ttl=10m")
        .arg("--authz-deny-ttl=10m")
        .start()
        .await
}

/// Waits until Prometheus reports `up{job} == 1` and node-exporter's CPU series for it.
async fn assert_scraped(prometheus: &Prometheus, job: &str) {
    eventually(
        Duration::from_secs(30),
        &format!("up{{job=\"{job}\"}} == 1"),
        || async {
            match prometheus.up(job).await {
                Ok(up) if up == "1" => Ok(()),
                other => Err(format!(
                    "{other:?}; target: {:?}",
                    prometheus.target(job).await
                )),
            }
        },
    )
    .await;
    let selector = format!("node_cpu_seconds_total{{job=\"{job}\"}}");
    let series = eventually(Duration::from_secs(10), &selector, || async {
        match prometheus.series(&selector).await? {
            0 => Err("no series yet".to_owned()),
            n => Ok(n),
        }
    })
    .await;
    println!("{selector}: {series} series");
}

/// Prometheus scrapes with a token of scrape-guard/scraper (bound by deploy/), TLS
/// verified against the CA: `up == 1` and node-exporter series arrive, through TLS, a
/// real TokenReview and a real SubjectAccessReview.
#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn prometheus_scrape_allowed() {
    let cluster = Cluster::shared().await;
    let exporter = NodeExporter::start(cluster.dir()).await;
    let guard = main_instance(&cluster, &exporter).await;
    let token = cluster.mint_token(PROMETHEUS_SA).await;
    let job = Job {
        name: "guarded",
        target: guard.addr(),
        tls: ScrapeTls::VerifyWithCa(cluster.ca_path().to_owned()),
        token: &token,
    };
    let prometheus = Prometheus::start(&cluster, &[job]).await;
    assert_scraped(&prometheus, "guarded").await;
}

/// A job whose account has no binding: `up == 0`, the target's lastError says 403, and
/// the body is the apiserver-style Status naming the service account.
#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn prometheus_scrape_forbidden() {
    let cluster = Cluster::shared().await;
    let exporter = NodeExporter::start(cluster.dir()).await;
    let guard = main_instance(&cluster, &exporter).await;
    let token = cluster.mint_token(UNBOUND_SA).await;
    let job = Job {
        name: "unbound",
        target: guard.addr(),
        tls: ScrapeTls::VerifyWithCa(cluster.ca_path().to_owned()),
        token: &token,
    };
    let prometheus = Prometheus::start(&cluster, &[job]).await;
    let last_error = eventually(
        Duration::from_secs(30),
        "the unbound target scraped with an error",
        || async {
            let target = prometheus.target("unbound").await?;
            match target["lastError"].as_str() {
                Some(error) if !error.is_empty() => Ok(error.to_owned()),
                _ => Err(format!("target: {target}")),
            }
        },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "up{job=\"unbound\"} == 0",
        || async {
            match prometheus.up("unbound").await? {
                up if up == "0" => Ok(()),
                up => Err(format!("up = {up}")),
            }
        },
    )
    .await;
    println!("lastError: {last_error}");
    assert!(
        last_error.contains("403"),
        "lastError {last_error:?} does not mention 403"
    );
    let want = forbidden_message(&sa_user(UNBOUND_SA));
    let reply = guard.get("/metrics", Some(&token)).await;
    assert_eq!(
        reply.status,
        403,
        "direct GET with the unbound token: {}",
        reply.describe()
    );
    assert!(
        reply.is_status(403, Some(&want)),
        "403 body is not Status{{code: 403, message: {want:?}}}: {}",
        reply.describe()
    );
}

/// kube-prometheus' node-exporter sidecar arguments, exactly (Go `[ip]:port` form, its
/// cipher-suite names, `--logtostderr`), the kubeconfig from the environment as the
/// in-cluster config would be in a pod, and Prometheus scraping with
/// insecure_skip_verify as kube-prometheus' ServiceMonitor does: `up == 1` with
/// node-exporter series.
#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn dropin_kube_prometheus_args() {
    let cluster = Cluster::shared().await;
    let exporter = NodeExporter::start(cluster.dir()).await;
    let port = free_port();
    let args = vec![
        "--logtostderr".to_owned(),
        format!("--secure-listen-address=[127.0.0.1]:{port}"),
        "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,\
         TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,\
         TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
            .to_owned(),
        format!("--upstream={}", exporter.url()),
    ];
    println!("args: {args:?}");
    let guard = ScrapeGuard::exact(&cluster, "dropin", port, args)
        .env(
            "KUBECONFIG",
            cluster.proxy_kubeconfig().display().to_string(),
        )
        .start()
        .await;
    let token = cluster.mint_token(PROMETHEUS_SA).await;
    let job = Job {
        name: "dropin",
        target: guard.addr(),
        tls: ScrapeTls::InsecureSkipVerify,
        token: &token,
    };
    let prometheus = Prometheus::start(&cluster, &[job]).await;
    assert_scraped(&prometheus, "dropin").await;
}
