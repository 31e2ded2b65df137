//! OIDC against the real issuer: a kube-apiserver whose service-account issuer is its
//! own https URL serves discovery and its key set (`system:service-account-issuer-discovery`
//! bound to `system:unauthenticated`, since scrape-guard, like kube-rbac-proxy, fetches
//! them without credentials). Its TokenRequest tokens for the client ID are verified by
//! scrape-guard itself (ES256, the apiserver's key), authorized by RBAC as the prefixed
//! `sub`, and no TokenReview is sent. Expiry is checked in the unit and integration
//! tests: the apiserver mints no token that is already expired.

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject as RbacSubject};
use kube::api::{Api, Patch, PatchParams};

use super::support::{
    eventually, forbidden_message, sa_user, Cluster, NodeExporter, ScrapeGuard, METRICS_READER,
    PROMETHEUS_SA, UNBOUND_SA,
};

const CLIENT_ID: &str = "scrape-guard-oidc";
const PREFIX: &str = "oidc:";

#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn oidc_with_the_apiserver_as_issuer() {
    let cluster = Cluster::private_own_issuer().await;
    let issuer = cluster.api_url();
    bind(
        &cluster,
        "e2e-oidc-discovery",
        "system:service-account-issuer-discovery",
        "Group",
        "system:unauthenticated",
    )
    .await;
    let scraper = format!("{PREFIX}{}", sa_user(PROMETHEUS_SA));
    bind(
        &cluster,
        "e2e-oidc-scraper",
        METRICS_READER,
        "User",
        &scraper,
    )
    .await;
    cluster.ensure_service_account(PROMETHEUS_SA).await;
    cluster.ensure_service_account(UNBOUND_SA).await;

    let exporter = NodeExporter::start(cluster.dir()).await;
    let guard = ScrapeGuard::launch(&cluster, "oidc", &exporter.url())
        .arg(format!("--oidc-issuer={issuer}"))
        .arg(format!("--oidc-clientID={CLIENT_ID}"))
        .arg(format!("--oidc-ca-file={}", cluster.ca_path().display()))
        .arg("--oidc-username-claim=sub")
        .arg(format!("--oidc-username-prefix={PREFIX}"))
        .arg("--oidc-sign-alg=ES256")
        .start()
        .await;
    let allowed = cluster.mint_token_for(PROMETHEUS_SA, CLIENT_ID).await;
    let reviews_before = cluster.reviews().await;

    // The key set loads in the background: 503 until then, then the answer.
    eventually(
        std::time::Duration::from_secs(60),
        "a scrape with an OIDC token once the key set has loaded",
        || {
            let (guard, allowed) = (&guard, allowed.clone());
            async move { guard.get("/metrics", Some(&allowed)).await.status_is(200) }
        },
    )
    .await;

    let unbound = cluster.mint_token_for(UNBOUND_SA, CLIENT_ID).await;
    let reply = guard.get("/metrics", Some(&unbound)).await;
    assert_eq!(reply.status, 403, "{}", reply.describe());
    let user = format!("{PREFIX}{}", sa_user(UNBOUND_SA));
    assert!(
        reply.is_status(403, Some(&forbidden_message(&user))),
        "{}",
        reply.describe()
    );

    let default_audience = cluster.mint_token(PROMETHEUS_SA).await;
    let tampered = {
        let mut parts: Vec<String> = allowed.split('.').map(str::to_owned).collect();
        parts[2] = parts[2].chars().rev().collect();
        parts.join(".")
    };
    for (label, token) in [
        (
            "the apiserver's default audience",
            default_audience.as_str(),
        ),
        ("garbage", "not-a-token"),
        ("a tampered signature", tampered.as_str()),
    ] {
        let reply = guard.get("/metrics", Some(token)).await;
        assert_eq!(reply.status, 401, "{label}: {}", reply.describe());
    }
    let reviews_after = cluster.reviews().await;
    assert_eq!(
        reviews_after.token_reviews, reviews_before.token_reviews,
        "OIDC sends no TokenReview"
    );
}

/// Binds ClusterRole `role` to one subject (`kind` User or Group).
async fn bind(cluster: &Cluster, name: &str, role: &str, kind: &str, subject: &str) {
    let binding = ClusterRoleBinding {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: Some(vec![RbacSubject {
            kind: kind.into(),
            name: subject.into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            namespace: None,
        }]),
    };
    let bindings: Api<ClusterRoleBinding> = Api::all(cluster.client().clone());
    bindings
        .patch(
            name,
            &PatchParams::apply("scrape-guard-e2e").force(),
            &Patch::Apply(&binding),
        )
        .await
        .unwrap_or_else(|e| panic!("applying ClusterRoleBinding {name}: {e}"));
}
