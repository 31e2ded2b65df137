//! What scrape-guard asks the apiserver, counted by the apiserver itself
//! (`apiserver_request_total`): one TokenReview and one SubjectAccessReview per fresh
//! token, no SubjectAccessReview for what a local --rbac-file allows, no TokenReview for
//! a client certificate. Each test has a control plane of its own, so that nothing else
//! moves the counters.

use std::time::{Duration, Instant};

use super::support::{
    eventually, forbidden_message, parse_manifests, repo_path, sa_user, Ca, Cluster, NodeExporter,
    Reviews, ScrapeGuard, Subject, PROMETHEUS_SA, UNBOUND_SA,
};

/// 20 scrapes with one fresh token: exactly one more TokenReview and one more
/// SubjectAccessReview. A private control plane, so nothing else moves the counters.
#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn cache_one_review_per_token() {
    let cluster = Cluster::private().await;
    let exporter = NodeExporter::start(cluster.dir()).await;
    let guard = ScrapeGuard::launch(&cluster, "cache", &exporter.url())
        .arg("--auth-cache-ttl=2m")
        .arg("--auth-negative-cache-ttl=10s")
        .arg("--authz-allow-ttl=5m")
        .arg("--authz-deny-ttl=30s")
        .arg("--log-format=json")
        .env("SCRAPE_GUARD_LOG", "debug")
        .start()
        .await;
    let token = cluster.mint_token(PROMETHEUS_SA).await;
    let before = cluster.reviews().await;
    let mut refused = Vec::new();
    for _ in 0..20 {
        let reply = guard.get("/metrics", Some(&token)).await;
        if reply.status != 200 {
            refused.push(reply.describe());
        }
    }
    let reviews = cluster.reviews().await - before;
    println!("20 scrapes: the apiserver served {reviews}");
    assert!(
        refused.is_empty(),
        "{} of 20 scrapes were not 200: {refused:?}",
        refused.len()
    );
    let one_each = Reviews {
        token_reviews: 1,
        access_reviews: 1,
    };
    assert_eq!(reviews, one_each, "reviews for 20 scrapes with one token");
}

/// `--rbac-file=deploy/rbac-scraper.yaml`: the account that file binds is allowed
/// locally, so 10 scrapes with one fresh token cost one TokenReview and no
/// SubjectAccessReview; an account not bound there falls through to a real
/// SubjectAccessReview and gets the forbidden Status.
#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn local_rbac_skips_reviews() {
    let cluster = Cluster::private().await;
    let exporter = NodeExporter::start(cluster.dir()).await;
    let rbac_file = repo_path("deploy/rbac-scraper.yaml");
    let guard = ScrapeGuard::launch(&cluster, "local", &exporter.url())
        .arg(format!("--rbac-file={}", rbac_file.display()))
        .start()
        .await;
    let (namespace, name) = bound_service_account(&rbac_file);
    let bound = (namespace.as_str(), name.as_str());
    let token = cluster.mint_token(bound).await;
    let unbound_token = cluster.mint_token(UNBOUND_SA).await;

    let before = cluster.reviews().await;
    let mut refused = Vec::new();
    for _ in 0..10 {
        let reply = guard.get("/metrics", Some(&token)).await;
        if reply.status != 200 {
            refused.push(reply.describe());
        }
    }
    let after = cluster.reviews().await;
    let unbound = guard.get("/metrics", Some(&unbound_token)).await;
    let fall_through = cluster.reviews().await - after;
    let local = after - before;
    println!("{namespace}/{name}, 10 scrapes: the apiserver served {local}");
    println!(
        "{}: HTTP {}, the apiserver served {fall_through}",
        sa_user(UNBOUND_SA),
        unbound.status.as_u16()
    );

    assert!(
        refused.is_empty(),
        "{} of 10 scrapes by {namespace}/{name} were not 200: {refused:?}",
        refused.len()
    );
    let token_review_only = Reviews {
        token_reviews: 1,
        access_reviews: 0,
    };
    assert_eq!(
        local, token_review_only,
        "{namespace}/{name}, allowed by --rbac-file"
    );
    let want = forbidden_message(&sa_user(UNBOUND_SA));
    assert_eq!(
        unbound.status,
        403,
        "account not in --rbac-file: {}",
        unbound.describe()
    );
    assert!(
        unbound.is_status(403, Some(&want)),
        "account not in --rbac-file: 403 body is not the forbidden Status: {}",
        unbound.describe()
    );
    let both = Reviews {
        token_reviews: 1,
        access_reviews: 1,
    };
    assert_eq!(
        fall_through, both,
        "account not in --rbac-file (the fall-through)"
    );
}

/// The first ServiceAccount a ClusterRoleBinding in the file binds.
fn bound_service_account(file: &std::path::Path) -> (String, String) {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let objects = parse_manifests(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRoleBinding")
        .flat_map(|o| o["subjects"].as_array().cloned().unwrap_or_default())
        .find(|s| s["kind"] == "ServiceAccount")
        .and_then(|s| {
            Some((
                s["namespace"].as_str()?.to_owned(),
                s["name"].as_str()?.to_owned(),
            ))
        })
        .unwrap_or_else(|| panic!("no ServiceAccount subject in {}", file.display()))
}

/// `--client-ca-file`: a certificate from the suite's CA (CN=e2e-cert-scraper,
/// O=e2e-cert-group) and no token is user e2e-cert-scraper in group e2e-cert-group,
/// judged by a real SubjectAccessReview and no TokenReview: 403 naming the user;
/// binding the metrics ClusterRole to the group → 200 once the 1 s deny TTL ran out.
/// The same subject signed by a CA scrape-guard does not trust never gets in.
#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn client_certificate_identity() {
    let cluster = Cluster::private().await;
    let exporter = NodeExporter::start(cluster.dir()).await;
    let (cert, key) = cluster
        .ca()
        .serving("scrape-guard")
        .write(cluster.dir(), "scrape-guard");
    let guard = ScrapeGuard::launch(&cluster, "cert", &exporter.url())
        .arg(format!("--tls-cert-file={}", cert.display()))
        .arg(format!("--tls-private-key-file={}", key.display()))
        .arg(format!("--client-ca-file={}", cluster.ca_path().display()))
        .arg("--authz-deny-ttl=1s")
        .start()
        .await;
    let client_cert = cluster.ca().client("e2e-cert-scraper", &["e2e-cert-group"]);

    let before = cluster.reviews().await;
    let reply = guard
        .get_with_cert("/metrics", &client_cert)
        .await
        .unwrap_or_else(|e| panic!("certificate of the suite's CA: {e}"));
    let reviews = cluster.reviews().await - before;
    let want = forbidden_message("e2e-cert-scraper");
    assert_eq!(
        reply.status,
        403,
        "certificate, no binding: {}",
        reply.describe()
    );
    assert!(
        reply.is_status(403, Some(&want)),
        "403 body is not Status{{code: 403, message: {want:?}}}: {}",
        reply.describe()
    );
    println!("certificate, no binding: 403 {want:?} (apiserver served {reviews})");
    let one_sar = Reviews {
        token_reviews: 0,
        access_reviews: 1,
    };
    assert_eq!(reviews, one_sar, "the certificate's first request");

    cluster
        .bind_metrics_reader("e2e-cert-group", Subject::Group("e2e-cert-group"))
        .await;
    let bound = Instant::now();
    eventually(
        Duration::from_secs(15),
        "200 for the certificate once Group e2e-cert-group is bound",
        || async {
            guard
                .get_with_cert("/metrics", &client_cert)
                .await?
                .status_is(200)
        },
    )
    .await;
    println!(
        "allowed {:?} after binding Group e2e-cert-group (deny TTL 1s)",
        bound.elapsed()
    );
    cluster.delete_binding("e2e-cert-group").await;

    let rogue =
        Ca::new("scrape-guard-e2e-rogue-ca").client("e2e-cert-scraper", &["e2e-cert-group"]);
    match guard.get_with_cert("/metrics", &rogue).await {
        Err(e) => println!("untrusted CA: no HTTP answer ({e})"),
        Ok(reply) if reply.status == 401 => println!("untrusted CA: 401"),
        Ok(reply) => panic!(
            "certificate from an untrusted CA: {}, want a failed handshake or 401",
            reply.describe()
        ),
    }
}
