//! What one request must be allowed to do: the attribute records to decide, how their
//! decisions combine, which authorizers may decide them, and where that came from.
//!
//! Without `endpoints` in the config file every request is one plan: all records must
//! be allowed, by any authorizer of the chain (static rules, local RBAC, a
//! SubjectAccessReview). An endpoint of the file's `endpoints` (the opendatahub fork's
//! "Format 2") can say more: `anyOf` (ours) is allowed by the first record allowed, in
//! order — the kubelet's "nodes/metrics, else nodes/proxy" — and `authorizers` (ours)
//! narrows the chain for that endpoint.

use super::{Attributes, Authorizer, Outcome};
use crate::{
    apiserver::Requester,
    error::ProxyError,
    identity::{Source, User},
    metrics::Authz,
};

/// The decision a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Decide these records.
    Check(Checks),
    /// Refused without asking anyone: an endpoint matched the path but has no mapping
    /// for the method (the fork answers 403 too).
    Refuse {
        /// The apiserver-style wording: `DELETE path "/api/x"`.
        action: String,
        /// Which endpoint refused it.
        reason: String,
    },
}

/// Records to decide, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checks {
    pub records: Vec<Attributes>,
    pub combine: Combine,
    pub authorizers: Authorizers,
    /// The endpoint and mapping the records come from (`endpoint 2 (/api/*/jobs),
    /// mapping 1 (GET)`); `None` for the top-level config.
    pub origin: Option<String>,
}

/// How the decisions of several records make one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Combine {
    /// Every record must be allowed; the first denied one decides (the fork's
    /// `resources`).
    #[default]
    All,
    /// The first allowed record decides, tried in order; denied if none is (`anyOf`).
    Any,
}

/// Which authorizers of the chain may allow a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authorizers {
    /// The config file's `static` rules.
    pub static_rules: bool,
    /// `--rbac-file`.
    pub rbac: bool,
    /// A SubjectAccessReview (or the standalone default deny).
    pub review: bool,
}

impl Default for Authorizers {
    fn default() -> Self {
        Self {
            static_rules: true,
            rbac: true,
            review: true,
        }
    }
}

impl Authorizers {
    /// The names used in the config file, in chain order.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.static_rules, "static"),
            (self.rbac, "rbac"),
            (self.review, "subjectAccessReview"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

impl From<Vec<Attributes>> for Plan {
    /// Every record allowed, by the whole chain.
    fn from(records: Vec<Attributes>) -> Self {
        Self::Check(Checks {
            records,
            combine: Combine::All,
            authorizers: Authorizers::default(),
            origin: None,
        })
    }
}

impl Plan {
    /// The records to decide (none for a refusal).
    pub fn records(&self) -> &[Attributes] {
        match self {
            Self::Check(checks) => &checks.records,
            Self::Refuse { .. } => &[],
        }
    }
}

// === impl Authorizer ===

impl Authorizer {
    /// `Ok` if `plan` is allowed: every record (`Combine::All`), or one of them in order
    /// (`Combine::Any`); 403 with the apiserver-style message for the record that
    /// decided (the first denied one); 503 if the apiserver cannot answer — also in
    /// `anyOf`, where a later record is not tried after an error (fail closed).
    /// `decided` is left holding the outcome that settled it (none after an error),
    /// for the audit log.
    pub async fn authorize_plan(
        &self,
        user: &User,
        plan: &Plan,
        requester: Requester,
        decided: &mut Option<Outcome>,
    ) -> Result<(), ProxyError> {
        let checks = match plan {
            Plan::Check(checks) => checks,
            Plan::Refuse { action, reason } => {
                self.metrics.authorized(Authz::Denied, Source::Local);
                *decided = Some(Outcome {
                    allowed: false,
                    source: Source::Local,
                    reason: reason.clone(),
                });
                return Err(ProxyError::Forbidden {
                    user: user.name.clone(),
                    action: action.clone(),
                    reason: reason.clone(),
                });
            }
        };
        // Every request asks for something; an empty list would otherwise pass the loop
        // below without a single decision.
        if checks.records.is_empty() {
            return Err(ProxyError::Internal("no attributes to authorize".into()));
        }
        let mut denied = None;
        for (i, attrs) in checks.records.iter().enumerate() {
            let outcome = match self
                .decide_by(user, attrs, checks.authorizers, requester)
                .await
            {
                Ok(outcome) => outcome,
                Err(error) => {
                    self.metrics.authorized(Authz::Error, Source::Apiserver);
                    return Err(error);
                }
            };
            let result = if outcome.allowed {
                Authz::Allowed
            } else {
                Authz::Denied
            };
            self.metrics.authorized(result, outcome.source);
            if outcome.source == Source::Stale {
                tracing::warn!(
                    user = user.name,
                    action = attrs.action(),
                    "apiserver unavailable: reusing a recent allow (--stale-if-error)"
                );
            }
            match (outcome.allowed, checks.combine) {
                (true, Combine::All) => *decided = Some(outcome),
                (true, Combine::Any) => {
                    *decided = Some(outcome);
                    return Ok(());
                }
                (false, combine) => {
                    let reason = match &checks.origin {
                        Some(origin) => format!("{origin}, rule {}: {}", i + 1, outcome.reason),
                        None => outcome.reason,
                    };
                    let first = denied.is_none();
                    if first || combine == Combine::All {
                        *decided = Some(Outcome {
                            allowed: false,
                            source: outcome.source,
                            reason: reason.clone(),
                        });
                    }
                    let error = ProxyError::Forbidden {
                        user: user.name.clone(),
                        action: attrs.action(),
                        reason,
                    };
                    if combine == Combine::All {
                        return Err(error);
                    }
                    denied.get_or_insert(error);
                }
            }
        }
        denied.map_or(Ok(()), Err)
    }
}
