//! Authorization: may this user do this to this path? A SubjectAccessReview.
//!
//! The request becomes non-resource attributes (`verb` from the method, `path` exactly
//! as it will be forwarded), the same attributes the apiserver checks for its own
//! `/metrics`. The answer is cached under a digest of the full user (name, uid, groups,
//! extra) and the attributes, allow and deny with separate TTLs; concurrent misses for
//! the same key share one review.

use std::{sync::Arc, time::Duration};

use http::Method;
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};

use crate::{
    apiserver::{Apiserver, ReviewError},
    authn::User,
    cache::{digest_fields, Key, Verdict, Verdicts},
    error::ProxyError,
};

/// What a request asks to do: the non-resource attributes of a SubjectAccessReview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub path: String,
}

impl Attributes {
    /// The apiserver's mapping of HTTP methods to verbs, for a non-resource path.
    pub fn new(method: &Method, path: &str) -> Self {
        let verb = match *method {
            Method::GET | Method::HEAD => "get".to_owned(),
            Method::POST => "create".to_owned(),
            Method::PUT => "update".to_owned(),
            Method::PATCH => "patch".to_owned(),
            Method::DELETE => "delete".to_owned(),
            ref other => other.as_str().to_ascii_lowercase(),
        };
        Self {
            verb,
            path: path.to_owned(),
        }
    }

    fn cache_key(&self, user: &User) -> Key {
        let mut fields: Vec<&[u8]> = vec![
            b"sar/v1",
            user.name.as_bytes(),
            user.uid.as_bytes(),
            self.verb.as_bytes(),
            self.path.as_bytes(),
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

/// A cached SubjectAccessReview answer.
#[derive(Debug, Clone)]
enum Decision {
    Allow,
    Deny(Arc<str>),
}

impl Verdict for Decision {
    fn is_positive(&self) -> bool {
        matches!(self, Self::Allow)
    }
}

/// (`User`, `Attributes`) → allow or 403, via a cached SubjectAccessReview.
pub struct Authorizer {
    apiserver: Arc<Apiserver>,
    cache: Verdicts<Decision>,
}

impl Authorizer {
    pub fn new(
        apiserver: Arc<Apiserver>,
        capacity: u64,
        allow_ttl: Duration,
        deny_ttl: Duration,
    ) -> Self {
        Self {
            apiserver,
            cache: Verdicts::new(capacity, allow_ttl, deny_ttl),
        }
    }

    /// `Ok` if allowed; 403 with the apiserver-style message if not; 503 if unknown.
    pub async fn authorize(&self, user: &User, attributes: &Attributes) -> Result<(), ProxyError> {
        let key = attributes.cache_key(user);
        let decision = self
            .cache
            .get_or_review(key, self.review(user, attributes))
            .await
            .map_err(|error| {
                ProxyError::ApiserverUnavailable(format!("SubjectAccessReview: {error}"))
            })?;
        match decision {
            Decision::Allow => Ok(()),
            Decision::Deny(reason) => Err(ProxyError::Forbidden {
                user: user.name.clone(),
                verb: attributes.verb.clone(),
                path: attributes.path.clone(),
                reason: reason.to_string(),
            }),
        }
    }

    /// Decisions currently cached.
    pub fn cached(&self) -> u64 {
        self.cache.entry_count()
    }

    async fn review(&self, user: &User, attributes: &Attributes) -> Result<Decision, ReviewError> {
        let answer = self
            .apiserver
            .subject_access_review(&review_for(user, attributes))
            .await?;
        Ok(judge(answer))
    }
}

/// The SubjectAccessReview the apiserver is asked.
pub fn review_for(user: &User, attributes: &Attributes) -> SubjectAccessReview {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: non_empty(&user.name),
            uid: non_empty(&user.uid),
            groups: (!user.groups.is_empty()).then(|| user.groups.clone()),
            extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some(attributes.path.clone()),
                verb: Some(attributes.verb.clone()),
            }),
            resource_attributes: None,
        },
        ..SubjectAccessReview::default()
    }
}

/// Allowed only when the apiserver says allowed and not denied; no opinion is a no.
fn judge(review: SubjectAccessReview) -> Decision {
    let Some(status) = review.status else {
        return Decision::Deny("SubjectAccessReview returned no status".into());
    };
    if let Some(error) = status.evaluation_error.as_deref().filter(|e| !e.is_empty()) {
        tracing::debug!(error, "SubjectAccessReview evaluation error");
    }
    if status.allowed && status.denied != Some(true) {
        Decision::Allow
    } else {
        Decision::Deny(status.reason.unwrap_or_default().into())
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
            groups: vec![
                "system:serviceaccounts".into(),
                "system:authenticated".into(),
            ],
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
        assert!(matches!(judge(answer(true, None)), Decision::Allow));
        assert!(matches!(judge(answer(true, Some(false))), Decision::Allow));
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
    }
}
