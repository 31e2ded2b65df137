//! Authorization: may this user do this? Local policy first, then the apiserver.
//!
//! A request becomes attributes: by default non-resource (`verb` from the method,
//! `path` exactly as it will be forwarded), the same attributes the apiserver checks
//! for its own `/metrics`; with `--config-file` resource attributes, possibly one per
//! rewritten value. Each is decided by the chain, as in the apiserver's authorizer
//! chain: local policy (static rules, then local RBAC) can only allow; otherwise a
//! SubjectAccessReview decides — or, with no apiserver (standalone), the answer is no.
//!
//! Review answers are cached under a digest of the full user (name, uid, groups,
//! extra) and the attributes, allow and deny with separate TTLs; concurrent misses for
//! the same key share one review. An allow in use is renewed ahead of its expiry: read
//! past half `--authz-allow-ttl`, it still answers and one review runs in the
//! background at the renewals' turn (`Requester::Renewal`, `cache::Renewal`).

mod attributes;
mod config_file;
mod local;
mod plan;
pub(crate) mod rbac;
mod rewrite;

use std::{fmt, path::PathBuf, sync::Arc};

use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes as SarResourceAttributes, SubjectAccessReview,
    SubjectAccessReviewSpec,
};

use crate::{
    apiserver::{Apiserver, Requester, ReviewError},
    cache::{CacheSettings, Interner, Key, Served, Verdict, Verdicts},
    error::ProxyError,
    identity::{Source, User},
    metrics::Metrics,
    reload::{Condition, ReloadError},
    yaml::Node,
};
use serde_saphyr::Spanned;

pub use self::attributes::Attributes;
pub(crate) use self::plan::{Authorizers, Combine, Plan};
pub(crate) use self::{
    attributes::{verb_for, ResourceAttributes},
    local::LocalPolicy,
};

/// A cached SubjectAccessReview answer, with the apiserver's reason.
#[derive(Debug, Clone)]
enum Decision {
    Allow(Arc<str>),
    Deny(Arc<str>),
}

impl Verdict for Decision {
    fn is_positive(&self) -> bool {
        matches!(self, Self::Allow(_))
    }
}

/// How a decision was reached, for logs and `scrape-guard can-i`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    pub source: Source,
    /// The rule or binding that allowed it, or the apiserver's reason.
    pub reason: String,
}

/// Distinct SubjectAccessReview reasons shared between cached decisions.
const INTERNED_REASONS: usize = 1024;

/// How the shared part of the authorizer is configured (the local policy is each
/// listener's: `PolicySettings`, given to `for_listener`).
#[derive(Debug, Clone)]
pub struct AuthzSettings {
    /// `--authz-allow-ttl`, `--authz-deny-ttl`, `--stale-if-error`.
    pub cache: CacheSettings,
}

/// One listener's local policy (`--listeners-file`): its kube-rbac-proxy authorization
/// config and its RBAC files.
#[derive(Debug, Clone, Default)]
pub(crate) struct PolicySettings {
    /// A listener's `configFile`, or its `authorization:` block.
    pub(crate) config: Option<ConfigSource>,
    /// A listener's `rbacFile`.
    pub(crate) rbac_files: Vec<PathBuf>,
    /// For a listener of `--listeners-file`: its entry there must still say what it
    /// said at startup for any of these files to be re-read (`reload::Condition`).
    pub(crate) condition: Option<Condition>,
}

/// Where a kube-rbac-proxy authorization config is read from.
#[derive(Clone)]
pub(crate) enum ConfigSource {
    /// A kube-rbac-proxy config file (`--config-file`, a listener's `configFile`): the
    /// `authorization:` block at its top level.
    File(PathBuf),
    /// An `authorization:` block inside a file of ours (a listener's in
    /// `--listeners-file`): `locate` finds it in the file's YAML documents each time the
    /// file is read; `Ok(None)` when there is none (nothing configured).
    Block { file: PathBuf, locate: Locate },
    /// A route's `authorization:` block in `--config-file` (Deckhouse's `upstreams:`):
    /// `locate` finds it each time the file is read.
    Route { file: PathBuf, locate: Locate },
    /// `KUBE_RBAC_PROXY_CONFIG` (Deckhouse's fork): a config file's contents in the
    /// environment, read once; `locate` finds a route's block in it (`None`: the
    /// top-level `authorization:`).
    Env {
        contents: Arc<[u8]>,
        locate: Option<Locate>,
    },
}

/// Why local policy (the flags', or a listener's) could not be loaded: the flag (or the
/// listener's key of the same name), then why — the file, and the line where it is
/// wrong, in the parser's words (`config_file`, `rbac` and `yaml` speak in sentences).
#[derive(Debug, thiserror::Error)]
pub(crate) enum PolicyError {
    /// `--config-file`, or a listener's `configFile`.
    #[error("--config-file {0}")]
    Config(ReloadError),
    /// A listener's `authorization:` block in `--listeners-file`.
    #[error("--listeners-file {0}")]
    Block(ReloadError),
    /// `--rbac-file`, or a listener's `rbacFile`.
    #[error("--rbac-file {0}")]
    Rbac(ReloadError),
}

/// Finds an `authorization:` block in a file's YAML documents (`Err`: why the file
/// cannot say; `config` writes these, in strings).
pub(crate) type Locate = Arc<
    dyn for<'a> Fn(&'a [Spanned<Node>]) -> Result<Option<&'a Spanned<Node>>, String> + Send + Sync,
>;

/// A `Locate` from a function or closure (so that its signature is inferred).
pub(crate) fn locate<F>(f: F) -> Locate
where
    F: for<'a> Fn(&'a [Spanned<Node>]) -> Result<Option<&'a Spanned<Node>>, String>
        + Send
        + Sync
        + 'static,
{
    Arc::new(f)
}

impl fmt::Debug for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Block { file, .. } => f.debug_struct("Block").field("file", file).finish(),
            Self::Route { file, .. } => f.debug_struct("Route").field("file", file).finish(),
            Self::Env { .. } => f.write_str("Env"),
        }
    }
}

/// (`User`, `Attributes`) → allow or 403: local policy, then a cached
/// SubjectAccessReview.
///
/// Each listener has its own (`for_listener`), with its own local policy and its
/// outcomes recorded under its name; they all share one SubjectAccessReview cache. A
/// review's answer depends only on the user and the attributes, so listeners that ask
/// the same question share the answer.
pub struct Authorizer {
    local: LocalPolicy,
    reviews: Arc<AccessReviews>,
    metrics: Arc<Metrics>,
}

/// What every listener's authorizer shares.
struct AccessReviews {
    apiserver: Option<Arc<Apiserver>>,
    cache: Verdicts<Decision, ReviewError>,
    reasons: Interner<str>,
}

impl Authorizer {
    /// The SubjectAccessReview cache every listener shares, with no local policy of its
    /// own (each listener's comes with `for_listener`). `apiserver: None` is standalone
    /// mode: what local policy does not allow is denied.
    pub fn new(
        settings: &AuthzSettings,
        apiserver: Option<Arc<Apiserver>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let reviews = AccessReviews {
            apiserver,
            cache: Verdicts::new(settings.cache),
            reasons: Interner::new(INTERNED_REASONS),
        };
        Self {
            local: LocalPolicy::default(),
            reviews: Arc::new(reviews),
            metrics,
        }
    }

    /// Another listener's authorizer: its own local policy (loaded now and kept fresh;
    /// an error names the file and line), its outcomes in `metrics`, this one's
    /// SubjectAccessReview cache.
    pub(crate) fn for_listener(
        &self,
        policy: &PolicySettings,
        metrics: Arc<Metrics>,
    ) -> Result<Self, PolicyError> {
        let local = LocalPolicy::load(
            policy.config.as_ref(),
            &policy.rbac_files,
            policy.condition.as_ref(),
            &metrics,
        )?;
        local.spawn_reloaders();
        Ok(Self {
            local,
            reviews: Arc::clone(&self.reviews),
            metrics,
        })
    }

    /// The same policy and cache, recording outcomes in `metrics`.
    pub(crate) fn with_metrics(&self, metrics: Arc<Metrics>) -> Self {
        Self {
            local: self.local.clone(),
            reviews: Arc::clone(&self.reviews),
            metrics,
        }
    }

    /// Whether every authenticated request will be denied: standalone (no apiserver)
    /// and no local rule that could allow anything.
    pub(crate) fn denies_everything(&self) -> bool {
        self.reviews.apiserver.is_none() && self.local.is_empty()
    }

    /// What this request must be allowed to do (400 if a rewrite finds no value).
    pub fn plan(&self, request: &http::request::Parts, path: &str) -> Result<Plan, ProxyError> {
        self.local
            .plan(&request.method, &request.uri, &request.headers, path)
    }

    /// `Ok` if every one of `attributes` is allowed; 403 with the apiserver-style
    /// message for the first that is not; 503 if the apiserver cannot answer or a
    /// review was refused before it was sent (the rate limit, `requester`'s cap).
    pub async fn authorize(
        &self,
        user: &User,
        attributes: &[Attributes],
        requester: Requester,
    ) -> Result<(), ProxyError> {
        let plan = Plan::from(attributes.to_vec());
        self.authorize_plan(user, &plan, requester, &mut None).await
    }

    /// One decision by the whole chain, explained.
    pub async fn decide(
        &self,
        user: &User,
        attributes: &Attributes,
        requester: Requester,
    ) -> Result<Outcome, ProxyError> {
        self.decide_by(user, attributes, Authorizers::default(), requester)
            .await
    }

    /// One decision by those of the chain's `authorizers` that may decide, explained.
    pub async fn decide_by(
        &self,
        user: &User,
        attributes: &Attributes,
        authorizers: Authorizers,
        requester: Requester,
    ) -> Result<Outcome, ProxyError> {
        if let Some(reason) = self.local.allows(user, attributes, authorizers) {
            return Ok(Outcome {
                allowed: true,
                source: Source::Local,
                reason,
            });
        }
        if !authorizers.review {
            return Ok(Outcome {
                allowed: false,
                source: Source::Local,
                reason: format!(
                    "no local rule allows it and only {} may decide here",
                    authorizers.names().join(" and ")
                ),
            });
        }
        let reviews = &*self.reviews;
        let Some(apiserver) = &reviews.apiserver else {
            return Ok(Outcome {
                allowed: false,
                source: Source::Standalone,
                reason: "no local rule allows it and no apiserver is configured".into(),
            });
        };
        let key = attributes.cache_key(user);
        // Run only on a miss, by the one caller the others wait for.
        let review = review(apiserver, user, attributes, requester, &reviews.reasons);
        let (decision, served) =
            reviews
                .cache
                .get_or_review(key, review)
                .await
                .map_err(|error| {
                    ProxyError::ApiserverUnavailable(format!("SubjectAccessReview: {error}"))
                })?;
        let source = match served {
            Served::Cached => Source::Cache,
            Served::Ageing => {
                self.renew(apiserver, key, user, attributes);
                Source::Cache
            }
            Served::Reviewed => Source::Apiserver,
            Served::Stale => Source::Stale,
        };
        Ok(match decision {
            Decision::Allow(reason) => Outcome {
                allowed: true,
                source,
                reason: reason.to_string(),
            },
            Decision::Deny(reason) => Outcome {
                allowed: false,
                source,
                reason: reason.to_string(),
            },
        })
    }

    /// Reviews an allow in use again in the background, unless its renewal is under way.
    fn renew(&self, apiserver: &Arc<Apiserver>, key: Key, user: &User, attributes: &Attributes) {
        let Some(renewal) = self.reviews.cache.claim_renewal(key) else {
            return;
        };
        let (reviews, apiserver) = (Arc::clone(&self.reviews), Arc::clone(apiserver));
        let (user, attributes) = (user.clone(), attributes.clone());
        tokio::spawn(async move {
            let requester = Requester::Renewal;
            let review = review(&apiserver, &user, &attributes, requester, &reviews.reasons);
            reviews.cache.renew(renewal, review).await;
        });
    }

    /// Decisions currently cached, for every listener.
    pub fn cached(&self) -> u64 {
        self.reviews.cache.entry_count()
    }
}

async fn review(
    apiserver: &Apiserver,
    user: &User,
    attributes: &Attributes,
    requester: Requester,
    reasons: &Interner<str>,
) -> Result<Decision, ReviewError> {
    let answer = apiserver
        .subject_access_review(&review_for(user, attributes), requester)
        .await?;
    Ok(judge(answer, reasons))
}

/// The SubjectAccessReview the apiserver is asked.
pub(crate) fn review_for(user: &User, attributes: &Attributes) -> SubjectAccessReview {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let (non_resource_attributes, resource_attributes) = match &attributes.resource {
        None => (
            Some(NonResourceAttributes {
                path: Some(attributes.path.to_string()),
                verb: Some(attributes.verb.clone()),
            }),
            None,
        ),
        Some(r) => (
            None,
            Some(SarResourceAttributes {
                namespace: non_empty(&r.namespace),
                group: non_empty(&r.group),
                version: non_empty(&r.version),
                resource: non_empty(&r.resource),
                subresource: non_empty(&r.subresource),
                name: non_empty(&r.name),
                verb: Some(attributes.verb.clone()),
                ..SarResourceAttributes::default()
            }),
        ),
    };
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: non_empty(&user.name),
            uid: non_empty(&user.uid),
            groups: (!user.groups.is_empty()).then(|| user.groups.to_vec()),
            extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
            non_resource_attributes,
            resource_attributes,
        },
        ..SubjectAccessReview::default()
    }
}

/// Allowed only when the apiserver says allowed and not denied; no opinion is a no.
/// Reasons are interned: most allows cite the same binding.
fn judge(review: SubjectAccessReview, reasons: &Interner<str>) -> Decision {
    let Some(status) = review.status else {
        return Decision::Deny("SubjectAccessReview returned no status".into());
    };
    if let Some(error) = status.evaluation_error.as_deref().filter(|e| !e.is_empty()) {
        tracing::debug!(error, "SubjectAccessReview evaluation error");
    }
    let reason = reasons.intern(status.reason.as_deref().unwrap_or_default());
    if status.allowed && status.denied != Some(true) {
        Decision::Allow(reason)
    } else {
        Decision::Deny(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;
    use k8s_openapi::api::authorization::v1::SubjectAccessReviewStatus;

    #[test]
    fn the_review_carries_the_whole_user_and_the_exact_path() {
        let user = User {
            name: "system:serviceaccount:monitoring:prometheus".into(),
            uid: "1234".into(),
            groups: [
                "system:serviceaccounts".to_owned(),
                "system:authenticated".to_owned(),
            ]
            .into(),
            extra: [(
                "authentication.kubernetes.io/pod-name".to_owned(),
                vec!["p".to_owned()],
            )]
            .into(),
        };
        let review = review_for(&user, &Attributes::new(&Method::GET, "/metrics/cadvisor"));
        let json = serde_json::to_value(&review).unwrap();
        assert_eq!(json["apiVersion"], "authorization.k8s.io/v1");
        assert_eq!(json["kind"], "SubjectAccessReview");
        let spec = &json["spec"];
        assert_eq!(spec["user"], user.name);
        assert_eq!(spec["uid"], "1234");
        assert_eq!(spec["groups"][1], "system:authenticated");
        assert_eq!(
            spec["extra"]["authentication.kubernetes.io/pod-name"][0],
            "p"
        );
        assert_eq!(spec["nonResourceAttributes"]["path"], "/metrics/cadvisor");
        assert_eq!(spec["nonResourceAttributes"]["verb"], "get");
        assert!(spec.get("resourceAttributes").is_none());
    }

    #[tokio::test]
    async fn forbidden_body_is_the_apiservers_status() {
        let response = ProxyError::Forbidden {
            user: "system:serviceaccount:ns:sa".into(),
            action: Attributes::non_resource("get", "/metrics").action(),
            reason: "no RBAC policy matched".into(),
        }
        .into_response();
        assert_eq!(response.headers()["content-type"], "application/json");
        let body = crate::error::tests::body_of(response).await;
        assert_eq!(
            body,
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\
             \"message\":\"forbidden: User \\\"system:serviceaccount:ns:sa\\\" cannot get path \
             \\\"/metrics\\\"\",\"reason\":\"Forbidden\",\"details\":{},\"code\":403}\n"
        );
    }

    #[tokio::test]
    async fn nothing_to_authorize_is_not_an_allow() {
        let settings = AuthzSettings {
            cache: CacheSettings::one_shot(),
        };
        let authz = Authorizer::new(&settings, None, Arc::default());
        assert!(authz
            .authorize(&User::default(), &[], Requester::Process)
            .await
            .is_err());
    }

    #[test]
    fn only_a_clear_allow_allows() {
        let answer = |allowed: bool, denied: Option<bool>| SubjectAccessReview {
            status: Some(SubjectAccessReviewStatus {
                allowed,
                denied,
                reason: Some("r".into()),
                evaluation_error: None,
            }),
            ..SubjectAccessReview::default()
        };
        let reasons = Interner::new(4);
        let judge = |review| judge(review, &reasons);
        assert!(matches!(judge(answer(true, None)), Decision::Allow(_)));
        assert!(matches!(
            judge(answer(true, Some(false))),
            Decision::Allow(_)
        ));
        assert!(matches!(judge(answer(true, Some(true))), Decision::Deny(_)));
        assert!(matches!(judge(answer(false, None)), Decision::Deny(_)));
        assert!(matches!(
            judge(answer(false, Some(true))),
            Decision::Deny(_)
        ));
        assert!(matches!(
            judge(SubjectAccessReview::default()),
            Decision::Deny(_)
        ));
        // Equal reasons are one allocation between cached decisions.
        let (Decision::Allow(a), Decision::Allow(b)) =
            (judge(answer(true, None)), judge(answer(true, None)))
        else {
            panic!("both allow")
        };
        assert!(Arc::ptr_eq(&a, &b));
    }
}
