//! The Kubernetes API, policy and caching flag groups: everything authentication and
//! authorization are built from. The proxy and `scrape-guard can-i` both come here, so
//! the doctor answers with the settings the proxy would use.

use std::time::Duration;

use super::{
    args::{CacheArgs, KubeArgs, PolicyArgs},
    AuthSettings, Problems,
};
use crate::{
    apiserver::{ApiserverSettings, Fallback, RateLimit},
    authn::{AuthnSettings, ServiceAccountVerification},
    authz::AuthzSettings,
    cache::CacheSettings,
};

/// The caches' settings: one per stage.
pub(super) struct Caches {
    pub(super) authn: CacheSettings,
    pub(super) authz: CacheSettings,
}

impl Caches {
    /// `scrape-guard can-i` asks one question: nothing is worth keeping.
    pub(super) fn one_shot() -> Self {
        Self {
            authn: CacheSettings::one_shot(),
            authz: CacheSettings::one_shot(),
        }
    }
}

pub(super) fn caches(args: CacheArgs, problems: &mut Problems) -> Caches {
    let CacheArgs {
        auth_cache_ttl,
        auth_negative_cache_ttl,
        authz_allow_ttl,
        authz_deny_ttl,
        cache_max_entries,
        stale_if_error,
    } = args;
    let auth_cache_ttl = auth_cache_ttl.unwrap_or(Duration::from_secs(120));
    let auth_negative_cache_ttl = auth_negative_cache_ttl.unwrap_or(Duration::from_secs(10));
    let authz_allow_ttl = authz_allow_ttl.unwrap_or(Duration::from_secs(300));
    let authz_deny_ttl = authz_deny_ttl.unwrap_or(Duration::from_secs(30));
    if cache_max_entries == 0 {
        problems.add("--cache-max-entries must be at least 1");
    }
    Caches {
        authn: CacheSettings {
            capacity: cache_max_entries,
            positive: auth_cache_ttl,
            negative: auth_negative_cache_ttl,
            stale: stale_if_error,
        },
        authz: CacheSettings {
            capacity: cache_max_entries,
            positive: authz_allow_ttl,
            negative: authz_deny_ttl,
            stale: stale_if_error,
        },
    }
}

/// Who the settings are for: the proxy authenticates every request; `can-i --as`
/// names its user and authenticates nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    Proxy,
    CanIAsUser,
}

pub(super) fn validate(
    kube: KubeArgs,
    policy: PolicyArgs,
    caches: Caches,
    purpose: Purpose,
    problems: &mut Problems,
) -> AuthSettings {
    let KubeArgs {
        kubeconfig,
        kube_api_qps,
        kube_api_burst,
        auth_token_audiences,
        apiserver_timeout,
        max_inflight_reviews,
        max_reviews_per_peer,
        service_account_token_verification,
        service_account_token_max_lifetime,
    } = kube;
    let PolicyArgs {
        config_file,
        rbac_file,
        token_auth_file,
    } = policy;
    problems.positive("--apiserver-timeout", apiserver_timeout);
    problems.at_least_one("--max-inflight-reviews", max_inflight_reviews);
    problems.at_least_one("--max-reviews-per-peer", max_reviews_per_peer);
    if !kube_api_qps.is_finite() {
        problems.add("--kube-api-qps must be a number");
    }
    let service_accounts = service_accounts(
        &service_account_token_verification,
        service_account_token_max_lifetime,
        problems,
    );
    AuthSettings {
        // Filled in by `front_proxy::settings` (the proxy's flags only).
        front_proxy: Default::default(),
        apiserver: ApiserverSettings {
            kubeconfig,
            // Outside a cluster, without --kubeconfig, local files mean offline: a token
            // file (the proxy's only way to authenticate then), or for `can-i --as`, which
            // authenticates nobody, any local policy.
            fallback: if token_auth_file.is_some()
                || (purpose == Purpose::CanIAsUser
                    && (config_file.is_some() || !rbac_file.is_empty()))
            {
                Fallback::Standalone
            } else {
                Fallback::UserKubeconfig
            },
            rate_limit: RateLimit::from_flags(kube_api_qps, kube_api_burst),
            timeout: apiserver_timeout,
            max_inflight: max_inflight_reviews,
            max_per_peer: max_reviews_per_peer,
        },
        authn: AuthnSettings {
            audiences: auth_token_audiences
                .into_iter()
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect(),
            token_file: token_auth_file,
            cache: caches.authn,
            service_accounts,
            // Filled in from `--oidc-*` (`config/oidc.rs`).
            oidc: None,
        },
        // The local policy is each listener's (`listeners::policy`): the shared
        // authorizer has none.
        authz: AuthzSettings {
            cache: caches.authz,
        },
    }
}

/// The default `--service-account-token-max-lifetime`: the kubelet asks for 3607 s
/// tokens (and the apiserver sets their `warnafter` there), so 1h would turn every
/// projected token away; day- and year-long tokens still get a TokenReview.
const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(2 * 3600);

fn service_accounts(
    verification: &str,
    max_lifetime: Option<Duration>,
    problems: &mut Problems,
) -> ServiceAccountVerification {
    match (verification, max_lifetime) {
        ("local", max_lifetime) => {
            let max_lifetime = max_lifetime.unwrap_or(DEFAULT_MAX_LIFETIME);
            problems.positive("--service-account-token-max-lifetime", max_lifetime);
            ServiceAccountVerification::Local { max_lifetime }
        }
        (_, Some(_)) => {
            problems.add(
                "--service-account-token-max-lifetime needs \
                 --service-account-token-verification=local",
            );
            ServiceAccountVerification::TokenReview
        }
        (_, None) => ServiceAccountVerification::TokenReview,
    }
}
