//! `--service-account-token-verification=local`: a service-account token verified in
//! the proxy, against the cluster issuer's keys, instead of with a TokenReview.
//!
//! Why: every sidecar sends a TokenReview for every new token it sees, and a scraper's
//! projected token changes about hourly, so a fleet of N sidecars sends N TokenReviews
//! per scraper per rotation. A service-account token is a JWT the apiserver signs and
//! publishes the keys of (`/.well-known/openid-configuration`, `/openid/v1/jwks`);
//! those two documents are read through the proxy's own apiserver connection and
//! credentials (the `system:service-account-issuer-discovery` ClusterRole).
//!
//! The trade-off, stated once: the apiserver also checks that the service account and
//! the pod a token is bound to still exist. We cannot, so the token of a deleted pod or
//! service account is accepted here until it expires (at most
//! `--service-account-token-max-lifetime` after it was issued).
//!
//! Fail closed, and never wider than a TokenReview: whatever is not a token of the
//! discovered issuer with a verified signature and claims we can judge exactly as the
//! apiserver would (`claims.rs`) is `Outcome::Declined` and goes to a TokenReview, as
//! without this flag — static tokens, other issuers, legacy Secret tokens, keys that
//! cannot be fetched. Keys are at most `KEYS_MAX_AGE` old, fetched again when a token
//! names an unknown `kid` (a key rotation), and fetched at most once per
//! `MIN_REFETCH` — plus one spare for an unknown `kid` in between, so that a rotation
//! soon after a fetch is not missed — so junk naming random keys cannot make us hammer
//! the apiserver.

mod claims;

use std::{
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use serde_json::Value;
use tokio::time::Instant;

use self::claims::{Judgement, Policy};
use super::jwt::{Algorithm, Claims, Expectations, Jwks, JwtError, Verifier};
use crate::{
    apiserver::{Apiserver, ReviewError},
    identity::User,
};

/// Where kube-apiserver serves the issuer's discovery document.
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// Where kube-apiserver serves the issuer's keys, whatever `jwks_uri` its discovery
/// document advertises (`--service-account-jwks-uri` may point elsewhere).
const JWKS_PATH: &str = "/openid/v1/jwks";
/// Keys older than this are fetched again before use (the apiserver's own
/// `Cache-Control: max-age` for them); if that fails, tokens go to a TokenReview.
const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);
/// At most one fetch per this long, whatever tokens arrive.
const MIN_REFETCH: Duration = Duration::from_secs(30);
/// What kube-apiserver signs service-account tokens with.
const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::ES512,
];

/// How bearer tokens of the cluster's service accounts are verified
/// (`--service-account-token-verification`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceAccountVerification {
    /// A TokenReview for every new token, as kube-rbac-proxy does.
    TokenReview,
    /// Against the issuer's keys, in the proxy; tokens it cannot judge still get a
    /// TokenReview. `max_lifetime` is `--service-account-token-max-lifetime`.
    Local { max_lifetime: Duration },
}

/// What local verification says about a token.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// A service-account token: this user, as a TokenReview would describe it.
    Verified(User),
    /// The apiserver would refuse it too (expired, wrong audience): in its words.
    Rejected(String),
    /// Not ours to judge: send a TokenReview.
    Declined(&'static str),
}

/// The cluster's issuer and its keys, as last fetched.
struct Issuer {
    url: String,
    keys: Jwks,
    fetched: Instant,
}

/// Verifies the cluster's service-account tokens; shared by every listener.
pub(crate) struct LocalVerifier {
    apiserver: Arc<Apiserver>,
    audiences: Vec<String>,
    max_lifetime: Duration,
    issuer: RwLock<Option<Arc<Issuer>>>,
    /// Held while a fetch is under way, so that concurrent misses share it.
    fetching: tokio::sync::Mutex<Fetches>,
}

/// The fetch budget: one per `MIN_REFETCH`, and a spare for an unknown `kid`, so at
/// most two per `MIN_REFETCH`.
#[derive(Default)]
struct Fetches {
    last: Option<Instant>,
    /// Given by each fetch that was due, spent by the next unknown `kid` before the
    /// next one is due.
    spare: bool,
}

impl Fetches {
    /// Whether a fetch may start now; if so, it is counted.
    fn take(&mut self, unknown_key: bool) -> bool {
        let due = self.last.is_none_or(|at| at.elapsed() >= MIN_REFETCH);
        let spare = !due && unknown_key && self.spare;
        if due || spare {
            self.last = Some(Instant::now());
            self.spare = due;
        }
        due || spare
    }
}

impl LocalVerifier {
    pub(crate) fn new(
        apiserver: Arc<Apiserver>,
        audiences: &[String],
        max_lifetime: Duration,
    ) -> Self {
        Self {
            apiserver,
            audiences: audiences.to_vec(),
            max_lifetime,
            issuer: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(Fetches::default()),
        }
    }

    /// Judges `token`; only `Verified` and `Rejected` spare a TokenReview.
    pub(crate) async fn verify(&self, token: &str) -> Outcome {
        let Some(payload) = claims::unverified_payload(token) else {
            return Outcome::Declined("not a JWT");
        };
        let Some(issuer) = self.issuer(false).await else {
            return Outcome::Declined("the issuer's keys are not available");
        };
        if payload["iss"].as_str() != Some(issuer.url.as_str()) {
            return Outcome::Declined("another issuer");
        }
        let claims = match verify(token, &issuer) {
            // A key the apiserver has added since we fetched: fetch again, once.
            Err(JwtError::UnknownKey { .. }) => match self.issuer(true).await {
                Some(issuer) => verify(token, &issuer),
                None => return Outcome::Declined("the issuer's keys are not available"),
            },
            verified => verified,
        };
        match claims {
            Ok(claims) => self.judge(&Value::Object(claims), &issuer.url),
            Err(error) => refused(&error),
        }
    }

    fn judge(&self, claims: &Value, issuer: &str) -> Outcome {
        let policy = Policy {
            issuer,
            audiences: &self.audiences,
            max_lifetime: self.max_lifetime,
        };
        match claims::judge(claims, claims::now(), &policy) {
            Judgement::User(user) => Outcome::Verified(user),
            Judgement::Reject(why) => Outcome::Rejected(why),
            Judgement::Decline(why) => Outcome::Declined(why),
        }
    }

    /// The issuer and its keys: fetched when there are none, when they are older than
    /// `KEYS_MAX_AGE`, or when `unknown_key` says a token named a key they lack — at
    /// most once per `MIN_REFETCH`. `None` when there are no usable keys.
    async fn issuer(&self, unknown_key: bool) -> Option<Arc<Issuer>> {
        let usable = |issuer: &Option<Arc<Issuer>>| {
            issuer
                .as_ref()
                .filter(|i| i.fetched.elapsed() < KEYS_MAX_AGE)
                .cloned()
        };
        let current = self.current();
        if !unknown_key {
            if let Some(issuer) = usable(&current) {
                return Some(issuer);
            }
        }
        let asked = Instant::now();
        let mut fetches = self.fetching.lock().await;
        let current = self.current();
        // Fetched by another request while this one waited.
        if current.as_ref().is_some_and(|i| i.fetched >= asked) {
            return current;
        }
        if !fetches.take(unknown_key) {
            return usable(&current);
        }
        match self.fetch().await {
            Ok(issuer) => {
                let issuer = Arc::new(issuer);
                *self.issuer.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&issuer));
                Some(issuer)
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    "service-account issuer keys not fetched: sending TokenReviews instead \
                     (next try in {}s at the earliest)",
                    MIN_REFETCH.as_secs()
                );
                usable(&current)
            }
        }
    }

    fn current(&self) -> Option<Arc<Issuer>> {
        self.issuer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The discovery document (for the issuer) and the keys, from the apiserver.
    async fn fetch(&self) -> Result<Issuer, String> {
        let discovery = self.get(DISCOVERY_PATH).await?;
        let discovery: Value = serde_json::from_str(&discovery)
            .map_err(|e| format!("{DISCOVERY_PATH} is not JSON: {e}"))?;
        let url = discovery["issuer"]
            .as_str()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| format!("{DISCOVERY_PATH} names no issuer"))?
            .to_owned();
        let keys = Jwks::parse(self.get(JWKS_PATH).await?.as_bytes())
            .map_err(|e| format!("{JWKS_PATH}: {e}"))?;
        tracing::info!(issuer = %url, "service-account issuer keys fetched");
        Ok(Issuer {
            url,
            keys,
            fetched: Instant::now(),
        })
    }

    async fn get(&self, path: &str) -> Result<String, String> {
        self.apiserver.get_text(path).await.map_err(|error| {
            let hint = match &error {
                ReviewError::Api(kube::Error::Api(status)) if status.code == 403 => {
                    ": bind the ClusterRole system:service-account-issuer-discovery to the \
                     proxy's service account (deploy/rbac-proxy.yaml does)"
                }
                ReviewError::Api(kube::Error::Api(status)) if status.code == 404 => {
                    ": the apiserver does not serve issuer discovery (its \
                     ServiceAccountIssuerDiscovery feature: on by default from 1.20)"
                }
                _ => "",
            };
            format!("GET {path}: {error}{hint}")
        })
    }
}

/// The JWT core's check of `token` against the issuer's keys: signature (with the
/// algorithms the apiserver uses), `iss`, `exp`, `nbf` and `iat` (60 s leeway). The
/// audience is `claims.rs`'s, whose rules differ with and without
/// `--auth-token-audiences`.
fn verify(token: &str, issuer: &Issuer) -> Result<Claims, JwtError> {
    let expect = Expectations {
        issuer: issuer.url.clone(),
        audiences: None,
        algorithms: ALGORITHMS.to_vec(),
        now: SystemTime::now(),
    };
    Verifier::verify(token, &issuer.keys, &expect)
}

/// A token of the issuer the JWT core did not accept: what the apiserver would refuse
/// for the same reason is refused in its words; the rest goes to a TokenReview.
fn refused(error: &JwtError) -> Outcome {
    let why = match error {
        JwtError::Expired => "service account token has expired",
        JwtError::NotYetValid => "service account token is not valid yet",
        JwtError::IssuedInFuture => "service account token is issued in the future",
        other => {
            tracing::trace!(error = %other, "service-account token not verified locally");
            return Outcome::Declined("not verified with the issuer's keys");
        }
    };
    Outcome::Rejected(why.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn at_most_two_fetches_per_window() {
        let mut fetches = Fetches::default();
        assert!(fetches.take(false), "the first");
        assert!(!fetches.take(false), "too soon");
        assert!(fetches.take(true), "the spare, for an unknown kid");
        assert!(!fetches.take(true), "the spare is spent");
        tokio::time::advance(MIN_REFETCH).await;
        assert!(fetches.take(true), "due again");
        assert!(fetches.take(true), "with a spare again");
        assert!(!fetches.take(true));
    }
}
