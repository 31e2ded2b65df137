//! Front-proxy authentication against the real apiserver: kube-apiserver, started with
//! `--requestheader-*` and `--proxy-client-*`, publishes its requestheader CA in
//! kube-system/extension-apiserver-authentication; scrape-guard, in kube-rbac-proxy's
//! rewrite's flags, looks it up (with the RoleBinding deploy/ grants) and trusts it. The
//! test acts as the front proxy.

use super::support::{
    https_get_with_headers, sa_user, tls_config, Cluster, NodeExporter, ScrapeGuard, Trust,
    PROMETHEUS_SA,
};

/// A certificate of the published requestheader CA and the user it names: authorized
/// by real RBAC as that user; the same headers without the certificate, or with a CN
/// the apiserver does not allow, name nobody.
#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn front_proxy_names_the_user_rbac_decides() {
    let cluster = Cluster::shared().await;
    let exporter = NodeExporter::start(cluster.dir()).await;
    let guard = ScrapeGuard::launch(&cluster, "front-proxy", &exporter.url())
        // The rewrite's flags: the lookup is on, as there.
        .arg("--authentication-skip-lookup=false")
        .start()
        .await;
    let log = guard.log_text();
    assert!(
        log.contains("front proxies: the cluster's requestheader CA, CNs front-proxy-client"),
        "the startup log does not say what the lookup trusts:\n{log}"
    );

    let scraper = sa_user(PROMETHEUS_SA);
    let front = cluster.front_proxy_ca().client("front-proxy-client", &[]);
    let as_front_proxy = tls_config(Trust::Anyone, Some(&front));
    let named = [
        ("X-Remote-User", scraper.as_str()),
        ("X-Remote-Group", "e2e-front-proxied"),
    ];
    let reply = https_get_with_headers(&as_front_proxy, guard.addr(), "/metrics", &named)
        .await
        .unwrap();
    assert_eq!(
        reply.status,
        200,
        "front proxy naming {scraper}: {}",
        reply.describe()
    );
    assert!(reply.text().contains("node_"), "not node-exporter's page");

    // A user RBAC grants nothing: 403 under that name (the SAR asked about it).
    let nobody = [("X-Remote-User", "e2e-front-proxied-nobody")];
    let reply = https_get_with_headers(&as_front_proxy, guard.addr(), "/metrics", &nobody)
        .await
        .unwrap();
    assert!(
        reply.is_status(
            403,
            Some("forbidden: User \"e2e-front-proxied-nobody\" cannot get path \"/metrics\"")
        ),
        "{}",
        reply.describe()
    );

    // The same headers without the certificate: nobody (no token), 401.
    let plain = tls_config(Trust::Anyone, None);
    let reply = https_get_with_headers(&plain, guard.addr(), "/metrics", &named)
        .await
        .unwrap();
    assert_eq!(
        reply.status,
        401,
        "headers without a certificate: {}",
        reply.describe()
    );

    // The published CA, a CN the apiserver's --requestheader-allowed-names does not list.
    let intruder = cluster.front_proxy_ca().client("intruder", &[]);
    let as_intruder = tls_config(Trust::Anyone, Some(&intruder));
    let reply = https_get_with_headers(&as_intruder, guard.addr(), "/metrics", &named)
        .await
        .unwrap();
    assert_eq!(reply.status, 401, "a CN not allowed: {}", reply.describe());
}
