//! `--service-account-token-verification=local` against the real kube-apiserver: tokens
//! from the TokenRequest API — bound to nothing, bound to a pod, and the kubelet's
//! extended kind (3607 s asked, a year given, `warnafter` at the hour) — verified by
//! the proxy's own authenticator against the keys the apiserver publishes, are the
//! user, uid, groups and extra a real TokenReview returns for them; and the real
//! binary scrapes with them while the apiserver counts no TokenReview. A private
//! control plane, so that nothing else moves the apiserver's counters.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::{
    authentication::v1::{
        BoundObjectReference, TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
        UserInfo,
    },
    core::v1::{Container, Pod, PodSpec, ServiceAccount},
};
use kube::{api::PostParams, Api};
use scrape_guard::{
    Apiserver, ApiserverSettings, Authenticator, AuthnSettings, BearerToken, CacheSettings,
    Fallback, Metrics, RateLimit, Requester, ServiceAccountVerification,
};

use super::support::{remember_secret, Cluster, NodeExporter, ScrapeGuard, PROMETHEUS_SA};

#[tokio::test]
#[ignore = "needs the real cluster: e2e/provision.sh, then cargo test -p scrape-guard-e2e --test cluster -- --ignored"]
async fn local_verification_is_a_token_review_without_the_review() {
    let cluster = Cluster::private().await;
    let pod = create_pod(&cluster, "local-verification").await;
    let tokens = [
        (
            "bound to nothing",
            request_token(&cluster, None, 3600).await,
        ),
        (
            "bound to a pod",
            request_token(&cluster, Some(&pod), 3601).await,
        ),
        (
            "the kubelet's extended kind",
            request_token(&cluster, Some(&pod), 3607).await,
        ),
    ];

    let authn = local_authenticator(&cluster).await;
    let before = cluster.reviews().await;
    let mut verified = Vec::new();
    for (what, token) in &tokens {
        let token = BearerToken::new(token).unwrap();
        match authn.authenticate_token(token, Requester::Process).await {
            Ok(user) => verified.push(user),
            Err(e) => panic!("a token {what} was not authenticated: {e:?}"),
        }
    }
    let reviews = cluster.reviews().await - before;
    println!(
        "local verification of {} tokens: the apiserver served {reviews}",
        tokens.len()
    );
    assert_eq!(reviews.token_reviews, 0, "verified without a TokenReview");

    for ((what, token), user) in tokens.iter().zip(&verified) {
        let reviewed = token_review(&cluster, token).await;
        println!("{what}: TokenReview {reviewed:?}; local {user:?}");
        assert_eq!(Some(&user.name), reviewed.username.as_ref(), "{what}: user");
        assert_eq!(Some(&user.uid), reviewed.uid.as_ref(), "{what}: uid");
        assert_eq!(
            user.groups.to_vec(),
            reviewed.groups.clone().unwrap_or_default(),
            "{what}: groups"
        );
        assert_eq!(
            user.extra,
            reviewed.extra.clone().unwrap_or_default(),
            "{what}: extra"
        );
    }
    assert!(
        verified[1]
            .extra
            .contains_key("authentication.kubernetes.io/pod-name"),
        "a pod-bound token names its pod: {:?}",
        verified[1].extra
    );

    // The real binary: scrapes with each token, and no TokenReview at the apiserver.
    let exporter = NodeExporter::start(cluster.dir()).await;
    let guard = ScrapeGuard::launch(&cluster, "local", &exporter.url())
        .arg("--service-account-token-verification=local")
        .start()
        .await;
    let before = cluster.reviews().await;
    for (what, token) in &tokens {
        let reply = guard.get("/metrics", Some(token)).await;
        assert_eq!(reply.status, 200, "a token {what}: {}", reply.describe());
    }
    let reviews = cluster.reviews().await - before;
    println!("3 scrapes with 3 tokens, local: the apiserver served {reviews}");
    assert_eq!(reviews.token_reviews, 0, "no TokenReview from the proxy");
    // The two pod-bound tokens are one user (the same pod in extra): two users.
    assert_eq!(
        reviews.access_reviews, 2,
        "one SubjectAccessReview per user"
    );

    // A token that is no JWT still gets its TokenReview.
    let before = cluster.reviews().await;
    let reply = guard.get("/metrics", Some("not-a-jwt")).await;
    assert_eq!(reply.status, 401, "{}", reply.describe());
    let reviews = cluster.reviews().await - before;
    assert_eq!(
        reviews.token_reviews, 1,
        "a TokenReview for a token that is no JWT"
    );
}

/// The proxy's authenticator, in local mode, on the proxy's own credentials (its
/// service account, bound by deploy/ to system:service-account-issuer-discovery).
async fn local_authenticator(cluster: &Cluster) -> Authenticator {
    let metrics = Arc::new(Metrics::new());
    let settings = ApiserverSettings {
        kubeconfig: Some(cluster.proxy_kubeconfig().to_owned()),
        fallback: Fallback::UserKubeconfig,
        rate_limit: RateLimit::Unlimited,
        timeout: Duration::from_secs(10),
        max_inflight: 8,
        max_per_peer: 8,
    };
    let apiserver = Apiserver::connect(&settings, Arc::clone(&metrics))
        .await
        .expect("the proxy's kubeconfig")
        .expect("an apiserver");
    let authn = AuthnSettings {
        audiences: Vec::new(),
        token_file: None,
        cache: CacheSettings::one_shot(),
        service_accounts: ServiceAccountVerification::Local {
            max_lifetime: Duration::from_secs(2 * 3600),
        },
        oidc: None,
    };
    Authenticator::new(&authn, Some(Arc::new(apiserver)), metrics).expect("an authenticator")
}

/// A pod of the scraper's account (no node will run it; a token can be bound to it).
async fn create_pod(cluster: &Cluster, name: &str) -> (String, String) {
    let (namespace, account) = PROMETHEUS_SA;
    let pod = Pod {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            service_account_name: Some(account.into()),
            // No token volume: 1.20's admission would wait for a token Secret.
            automount_service_account_token: Some(false),
            containers: vec![Container {
                name: "scraper".into(),
                image: Some("scraper:never-run".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let pods: Api<Pod> = Api::namespaced(cluster.client().clone(), namespace);
    let created = pods
        .create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("creating pod {namespace}/{name}: {e}"));
    let uid = created.metadata.uid.expect("a pod uid");
    (name.to_owned(), uid)
}

/// A token of the scraper's account from the TokenRequest API, for the apiserver's
/// audience, bound to `pod` if given.
async fn request_token(cluster: &Cluster, pod: Option<&(String, String)>, seconds: i64) -> String {
    let (namespace, account) = PROMETHEUS_SA;
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(seconds),
            bound_object_ref: pod.map(|(name, uid)| BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name.clone()),
                uid: Some(uid.clone()),
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let accounts: Api<ServiceAccount> = Api::namespaced(cluster.client().clone(), namespace);
    let token = accounts
        .create_token_request(account, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{account}: {e}"))
        .status
        .map(|s| s.token)
        .expect("a token");
    remember_secret(format!("{seconds}s token of {namespace}/{account}"), &token);
    token
}

/// What a real TokenReview (no audiences: the apiserver's own) says of `token`.
async fn token_review(cluster: &Cluster, token: &str) -> UserInfo {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.into()),
            audiences: None,
        },
        ..Default::default()
    };
    let reviews: Api<TokenReview> = Api::all(cluster.client().clone());
    let answer = reviews
        .create(&PostParams::default(), &review)
        .await
        .unwrap_or_else(|e| panic!("TokenReview: {e}"));
    let status = answer.status.expect("a status");
    assert_eq!(status.authenticated, Some(true), "{:?}", status.error);
    status.user.expect("a user")
}
