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
//! the same key share one review.

use std::{borrow::Cow, sync::Arc, time::Duration};

use http::Method;
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes as SarResourceAttributes, SubjectAccessReview,
    SubjectAccessReviewSpec,
};

use crate::{
    apiserver::{Apiserver, ReviewError},
    authn::User,
    cache::{digest_fields, Interner, Key, Served, Verdict, Verdicts},
    error::ProxyError,
    metrics::{Metrics, Source},
    policy::LocalPolicy,
};

/// What a request asks to do. `path` is always the request path (static rules match
/// it); `resource` is set when `--config-file` maps requests to resource attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub path: String,
    pub resource: Option<ResourceAttributes>,
}

/// The resource half of a SubjectAccessReview.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceAttributes {
    pub namespace: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
}

/// The apiserver's mapping of HTTP methods to verbs for non-resource requests.
pub fn verb_for(method: &Method) -> Cow<'static, str> {
    match *method {
        Method::GET | Method::HEAD => "get".into(),
        Method::POST => "create".into(),
        Method::PUT => "update".into(),
        Method::PATCH => "patch".into(),
        Method::DELETE => "delete".into(),
        ref other => other.as_str().to_ascii_lowercase().into(),
    }
}

impl Attributes {
    /// Non-resource attributes for a request.
    pub fn new(method: &Method, path: &str) -> Self {
        Self::non_resource(&verb_for(method), path)
    }

    /// Non-resource attributes: `verb` on `path`.
    pub fn non_resource(verb: &str, path: &str) -> Self {
        Self {
            verb: verb.to_owned(),
            path: path.to_owned(),
            resource: None,
        }
    }

    /// What was asked, in the apiserver's words: `get path "/metrics"`, or
    /// `get resource "pods" in API group "" in the namespace "ns"`.
    pub fn action(&self) -> String {
        let verb = &self.verb;
        match &self.resource {
            None => format!("{verb} path {:?}", self.path),
            Some(r) => {
                let resource = if r.subresource.is_empty() {
                    r.resource.clone()
                } else {
                    format!("{}/{}", r.resource, r.subresource)
                };
                let scope = if r.namespace.is_empty() {
                    "at the cluster scope".to_owned()
                } else {
                    format!("in the namespace {:?}", r.namespace)
                };
                format!(
                    "{verb} resource {resource:?} in API group {:?} {scope}",
                    r.group
                )
            }
        }
    }

    fn cache_key(&self, user: &User) -> Key {
        let resource = self.resource.clone().unwrap_or_default();
        let mut fields: Vec<&[u8]> = vec![
            b"sar/v2",
            user.name.as_bytes(),
            user.uid.as_bytes(),
            self.verb.as_bytes(),
            self.path.as_bytes(),
            if self.resource.is_some() {
                b"resource"
            } else {
                b"path"
            },
            resource.namespace.as_bytes(),
            resource.group.as_bytes(),
            resource.version.as_bytes(),
            resource.resource.as_bytes(),
            resource.subresource.as_bytes(),
            resource.name.as_bytes(),
        ];
        // Counts delimit the variable-length lists so no two users share a key.
        let group_count = user.groups.len().to_le_bytes();
        fields.push(&group_count);
        fields.extend(user.groups.iter().map(|g| g.as_bytes()));
        let extra_counts: Vec<[u8; 8]> =
            user.extra.values().map(|v| v.len().to_le_bytes()).collect();
        for ((key, values), count) in user.extra.iter().zip(&extra_counts) {
            fields.push(key.as_bytes());
            fields.push(count);
            fields.extend(values.iter().map(|v| v.as_bytes()));
        }
        digest_fields(fields)
    }
}

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

/// (`User`, `Attributes`) → allow or 403: local policy, then a cached
/// SubjectAccessReview.
pub struct Authorizer {
    apiserver: Option<Arc<Apiserver>>,
    local: LocalPolicy,
    cache: Verdicts<Decision, ReviewError>,
    reasons: Interner<str>,
    metrics: Arc<Metrics>,
}

impl Authorizer {
    /// `apiserver: None` is standalone mode: what local policy does not allow is denied.
    pub fn new(
        apiserver: Option<Arc<Apiserver>>,
        local: LocalPolicy,
        capacity: u64,
        allow_ttl: Duration,
        deny_ttl: Duration,
    ) -> Self {
        Self {
            apiserver,
            local,
            cache: Verdicts::new(capacity, allow_ttl, deny_ttl),
            reasons: Interner::new(INTERNED_REASONS),
            metrics: Arc::default(),
        }
    }

    /// `--stale-if-error`: reuse an allow that expired less than `window` ago when the
    /// apiserver cannot answer. Denies are never extended.
    pub fn with_stale_window(mut self, window: Duration) -> Self {
        self.cache = self.cache.with_stale_window(window);
        self
    }

    /// Reports outcomes to `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The attributes this request is authorized as (400 if a rewrite finds no value).
    pub fn attributes(
        &self,
        request: &http::request::Parts,
        path: &str,
    ) -> Result<Vec<Attributes>, ProxyError> {
        self.local
            .attributes(&request.method, &request.uri, &request.headers, path)
    }

    /// `Ok` if every one of `attributes` is allowed; 403 with the apiserver-style
    /// message for the first that is not; 503 if the apiserver cannot answer.
    pub async fn authorize(
        &self,
        user: &User,
        attributes: &[Attributes],
    ) -> Result<(), ProxyError> {
        for attrs in attributes {
            let outcome = match self.decide(user, attrs).await {
                Ok(outcome) => outcome,
                Err(error) => {
                    self.metrics.authorized("error", Source::Apiserver);
                    return Err(error);
                }
            };
            let result = if outcome.allowed { "allowed" } else { "denied" };
            self.metrics.authorized(result, outcome.source);
            if outcome.source == Source::Stale {
                tracing::warn!(
                    user = user.name,
                    action = attrs.action(),
                    "apiserver unavailable: reusing a recent allow (--stale-if-error)"
                );
            }
            if !outcome.allowed {
                return Err(ProxyError::Forbidden {
                    user: user.name.clone(),
                    action: attrs.action(),
                    reason: outcome.reason,
                });
            }
        }
        Ok(())
    }

    /// One decision, explained.
    pub async fn decide(
        &self,
        user: &User,
        attributes: &Attributes,
    ) -> Result<Outcome, ProxyError> {
        if let Some(reason) = self.local.allows(user, attributes) {
            return Ok(Outcome {
                allowed: true,
                source: Source::Local,
                reason,
            });
        }
        let Some(apiserver) = &self.apiserver else {
            return Ok(Outcome {
                allowed: false,
                source: Source::Standalone,
                reason: "no local rule allows it and no apiserver is configured".into(),
            });
        };
        let key = attributes.cache_key(user);
        let (decision, served) = self
            .cache
            .get_or_review(key, review(apiserver, user, attributes, &self.reasons))
            .await
            .map_err(|error| {
                ProxyError::ApiserverUnavailable(format!("SubjectAccessReview: {error}"))
            })?;
        let source = match served {
            Served::Cached => Source::Cache,
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

    /// Decisions currently cached.
    pub fn cached(&self) -> u64 {
        self.cache.entry_count()
    }
}

async fn review(
    apiserver: &Apiserver,
    user: &User,
    attributes: &Attributes,
    reasons: &Interner<str>,
) -> Result<Decision, ReviewError> {
    let answer = apiserver
        .subject_access_review(&review_for(user, attributes))
        .await?;
    Ok(judge(answer, reasons))
}

/// The SubjectAccessReview the apiserver is asked.
pub fn review_for(user: &User, attributes: &Attributes) -> SubjectAccessReview {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let (non_resource_attributes, resource_attributes) = match &attributes.resource {
        None => (
            Some(NonResourceAttributes {
                path: Some(attributes.path.clone()),
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
    use k8s_openapi::api::authorization::v1::SubjectAccessReviewStatus;

    #[test]
    fn verbs_from_methods() {
        let table = [
            (Method::GET, "get"),
            (Method::HEAD, "get"),
            (Method::POST, "create"),
            (Method::PUT, "update"),
            (Method::PATCH, "patch"),
            (Method::DELETE, "delete"),
            (Method::OPTIONS, "options"),
            (Method::from_bytes(b"PROPFIND").unwrap(), "propfind"),
        ];
        for (method, verb) in table {
            assert_eq!(Attributes::new(&method, "/metrics").verb, verb, "{method}");
        }
    }

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

    #[test]
    fn cache_keys_separate_users_and_attributes() {
        let user = |name: &str, groups: &[&str]| User {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..User::default()
        };
        let get = Attributes::new(&Method::GET, "/metrics");
        let base = get.cache_key(&user("a", &["g"]));
        assert_eq!(base, get.cache_key(&user("a", &["g"])));
        let different = [
            get.cache_key(&user("b", &["g"])),
            get.cache_key(&user("a", &["g", "h"])),
            get.cache_key(&user("a", &[])),
            Attributes::new(&Method::POST, "/metrics").cache_key(&user("a", &["g"])),
            Attributes::new(&Method::GET, "/metrics/").cache_key(&user("a", &["g"])),
        ];
        for key in different {
            assert_ne!(base, key);
        }
        // Group boundaries matter: ["ab"] is not ["a", "b"].
        assert_ne!(
            get.cache_key(&user("a", &["ab"])),
            get.cache_key(&user("a", &["a", "b"]))
        );
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
