//! A service-account token's claims → the `User` a TokenReview would return, as pure
//! functions over the token's JSON, so every rule is one table-driven test away.
//!
//! The rules are kube-apiserver's (`pkg/serviceaccount` `jwt.go` and `claims.go`,
//! `k8s.io/apiserver` `authentication/serviceaccount/util.go`), minus the lookups it
//! makes and we cannot: that the service account, and the pod a token is bound to,
//! still exist with the same uid. Whatever we cannot decide exactly as the apiserver
//! would is `Judgement::Decline`d: the token goes to a TokenReview, as without local
//! verification. Only what the apiserver would refuse for the same reason, by the
//! token alone, is `Judgement::Reject`ed here.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use serde_json::Value;

use crate::identity::User;

/// go-jose's `DefaultLeeway`, which the apiserver allows on `exp`, `nbf` and `iat`.
const LEEWAY: u64 = 60;

const PREFIX_USER: &str = "system:serviceaccount:";
const ALL_SERVICE_ACCOUNTS: &str = "system:serviceaccounts";
const PREFIX_GROUP: &str = "system:serviceaccounts:";
const AUTHENTICATED: &str = "system:authenticated";
const POD_NAME: &str = "authentication.kubernetes.io/pod-name";
const POD_UID: &str = "authentication.kubernetes.io/pod-uid";
const NODE_NAME: &str = "authentication.kubernetes.io/node-name";
const NODE_UID: &str = "authentication.kubernetes.io/node-uid";
const CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

/// What a token must satisfy to be accepted without a TokenReview.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy<'a> {
    /// The cluster's service-account issuer, from its discovery document.
    pub(crate) issuer: &'a str,
    /// `--auth-token-audiences`; empty: the token's `aud` must name the issuer.
    pub(crate) audiences: &'a [String],
    /// `--service-account-token-max-lifetime`.
    pub(crate) max_lifetime: Duration,
}

/// What to do with a token whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Judgement {
    /// Who it is: exactly what a TokenReview would say.
    User(User),
    /// The apiserver would refuse it too, for this reason (its own words).
    Reject(String),
    /// Not ours to decide: ask the apiserver.
    Decline(&'static str),
}

/// The payload of a token that looks like a JWT (three base64url parts, a JSON
/// payload), read *without* verifying anything: its `iss` only picks who verifies.
pub(crate) fn unverified_payload(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    serde_json::from_slice(&base64url(payload)?).ok()
}

/// Unpadded base64url (RFC 7515 section 2), as JWTs use it; `None` on anything else.
fn base64url(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
}

/// The verified claims of a token from `policy.issuer`, judged at `now` (Unix seconds).
pub(crate) fn judge(claims: &Value, now: u64, policy: &Policy<'_>) -> Judgement {
    match judge_inner(claims, now, policy) {
        Ok(user) => Judgement::User(user),
        Err(judgement) => judgement,
    }
}

fn judge_inner(claims: &Value, now: u64, policy: &Policy<'_>) -> Result<User, Judgement> {
    use Judgement::{Decline, Reject};
    if claims["iss"].as_str() != Some(policy.issuer) {
        return Err(Decline("another issuer"));
    }
    // Legacy (Secret) tokens have no `exp`; they are never verified here.
    let exp = seconds(&claims["exp"]).ok_or(Decline("no exp: a legacy token"))?;
    let iat = seconds(&claims["iat"]).ok_or(Decline("no iat"))?;
    let kube = &claims["kubernetes.io"];
    let namespace = non_empty(&kube["namespace"]).ok_or(Decline("no namespace claim"))?;
    let account = &kube["serviceaccount"];
    let name = non_empty(&account["name"]).ok_or(Decline("no service account claim"))?;
    let uid = non_empty(&account["uid"]).ok_or(Decline("no service account uid"))?;
    if !kube["secret"].is_null() {
        return Err(Decline(
            "bound to a Secret, which only the apiserver can check",
        ));
    }
    let pod = match &kube["pod"] {
        Value::Null => None,
        pod => Some((
            non_empty(&pod["name"]).ok_or(Decline("pod claim without a name"))?,
            non_empty(&pod["uid"]).ok_or(Decline("pod claim without a uid"))?,
        )),
    };
    let node = &kube["node"];
    if pod.is_none() && !node.is_null() {
        return Err(Decline(
            "bound to a Node, which only the apiserver can check",
        ));
    }

    if now > exp.saturating_add(LEEWAY) {
        return Err(Reject("service account token has expired".into()));
    }
    if seconds(&claims["nbf"]).is_some_and(|nbf| now.saturating_add(LEEWAY) < nbf) {
        return Err(Reject("service account token is not valid yet".into()));
    }
    if iat > now.saturating_add(LEEWAY) {
        return Err(Reject(
            "service account token is issued in the future".into(),
        ));
    }
    // An extended token (a kubelet's 1h token the apiserver made valid for a year) is
    // trusted here only until its `warnafter`, when the kubelet should have replaced it.
    let local_end = match seconds(&kube["warnafter"]) {
        Some(warn) if now > warn => return Err(Decline("past its warnafter")),
        Some(warn) => exp.min(warn),
        None => exp,
    };
    if local_end.saturating_sub(iat) > policy.max_lifetime.as_secs() {
        return Err(Decline(
            "lifetime above --service-account-token-max-lifetime",
        ));
    }
    check_audiences(&claims["aud"], policy)?;

    let mut extra = BTreeMap::new();
    if let Some((pod_name, pod_uid)) = pod {
        extra.insert(POD_NAME.to_owned(), vec![pod_name.to_owned()]);
        extra.insert(POD_UID.to_owned(), vec![pod_uid.to_owned()]);
        if let Some(node_name) = non_empty(&node["name"]) {
            extra.insert(NODE_NAME.to_owned(), vec![node_name.to_owned()]);
            if let Some(node_uid) = non_empty(&node["uid"]) {
                extra.insert(NODE_UID.to_owned(), vec![node_uid.to_owned()]);
            }
        }
    }
    if let Some(jti) = non_empty(&claims["jti"]) {
        extra.insert(CREDENTIAL_ID.to_owned(), vec![format!("JTI={jti}")]);
    }
    Ok(User {
        name: format!("{PREFIX_USER}{namespace}:{name}"),
        uid: uid.to_owned(),
        groups: Arc::from(vec![
            ALL_SERVICE_ACCOUNTS.to_owned(),
            format!("{PREFIX_GROUP}{namespace}"),
            AUTHENTICATED.to_owned(),
        ]),
        extra,
    })
}

/// With `--auth-token-audiences`, what a TokenReview naming them checks: the token's
/// `aud` meets them. Without, the token's `aud` must name the issuer (kube-apiserver's
/// default `--api-audiences`); a token for other audiences goes to a TokenReview,
/// since only the apiserver knows its own `--api-audiences`.
fn check_audiences(aud: &Value, policy: &Policy<'_>) -> Result<(), Judgement> {
    let token: Vec<&str> = match aud {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if token.is_empty() {
        // The apiserver would check its implicit audiences, which we cannot know.
        return Err(Judgement::Decline("no aud"));
    }
    if policy.audiences.is_empty() {
        return match token.contains(&policy.issuer) {
            true => Ok(()),
            false => Err(Judgement::Decline("aud does not name the issuer")),
        };
    }
    match token
        .iter()
        .any(|a| policy.audiences.iter().any(|w| w == a))
    {
        true => Ok(()),
        false => Err(Judgement::Reject(format!(
            "token audiences {token:?} is invalid for the target audiences {:?}",
            policy.audiences
        ))),
    }
}

/// A JWT NumericDate, as whole seconds (fractions dropped, as go-jose does).
fn seconds(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

fn non_empty(value: &Value) -> Option<&str> {
    value.as_str().filter(|s| !s.is_empty())
}

/// Seconds since the Unix epoch, by this node's clock.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
