//! JSON Web Tokens, verified locally: a compact JWS checked against a JWK set, then
//! its registered claims against what the caller expects.
//!
//! Used by OIDC (`--oidc-issuer`) and meant for any other local verification (a
//! service-account token against the apiserver's key set). It is deliberately small:
//! only asymmetric signatures (RS*, PS*, ES*), only the algorithms the caller lists,
//! never a key the token itself points to (`jku`, `x5u`, `jwk` are ignored), and no
//! `crit` extension is understood, so a token naming one is refused (RFC 7515 4.1.11).
//! HMAC is not implemented at all, so a token signed "HS256" with a public key as the
//! secret has nothing to be verified with.
//!
//! Time: `exp` is required; `exp`, `nbf` and `iat` are compared with `now` allowing
//! `LEEWAY` (60 s) of clock skew either way, as go-jose's `jwt.Validate` does for the
//! apiserver's service-account tokens. go-oidc (kube-rbac-proxy's OIDC) allows no skew
//! on `exp`; a token is accepted here at most 60 s longer.
//!
//! Size: a token longer than `MAX_TOKEN_BYTES` is refused before anything is decoded,
//! and a key set larger than `MAX_JWKS_BYTES` or with more than `MAX_KEYS` keys is not
//! loaded, so neither a client nor an issuer can make us spend memory out of proportion.

mod jwk;
mod keyset;
#[cfg(test)]
mod tests;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use serde_json::Value;

pub use self::{
    jwk::{Jwk, Jwks, MAX_JWKS_BYTES, MAX_KEYS},
    keyset::{Fetch, FetchFuture, KeySetSettings, Observer, RemoteJwks},
};

/// The verified payload: every claim, as JSON.
pub type Claims = serde_json::Map<String, Value>;

/// Tokens longer than this are refused before decoding. Real ID tokens and
/// service-account tokens are 1–3 KiB; 16 KiB leaves room for large group lists.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Clock skew allowed on `exp`, `nbf` and `iat`.
pub const LEEWAY: Duration = Duration::from_secs(60);

/// A JWS signature algorithm we verify (RFC 7518 3.1). HMAC and `none` are absent on
/// purpose: a token naming them cannot be verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
}

impl Algorithm {
    pub const ALL: [Self; 9] = [
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
        Self::ES512,
    ];

    /// The JOSE name (`"RS256"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::ES512 => "ES512",
        }
    }

    /// The algorithm a JOSE name means, exactly (case-sensitive, as RFC 7518 is).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a token must say to be accepted.
#[derive(Debug, Clone)]
pub struct Expectations {
    /// `iss` must equal this exactly (no normalisation, no trailing-slash tolerance).
    pub issuer: String,
    /// `aud` (a string or an array of strings) must contain one of these. `None`: the
    /// audience is not checked (only its type is).
    pub audiences: Option<Vec<String>>,
    /// The algorithms accepted; the header's `alg` must be one of them.
    pub algorithms: Vec<Algorithm>,
    /// The time to check `exp`, `nbf` and `iat` against.
    pub now: SystemTime,
}

/// Why a token was not accepted. Every variant but `KeysUnavailable` is the token's
/// fault (401); `KeysUnavailable` is ours or the issuer's (503, fail closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    #[error("token is not a compact JWS (header.payload.signature)")]
    Malformed,
    #[error("token {0} is not base64url")]
    Encoding(&'static str),
    #[error("token {0} is not a JSON object")]
    Json(&'static str),
    #[error("token header names no algorithm")]
    NoAlgorithm,
    #[error("token algorithm {0:?} is not accepted")]
    Algorithm(String),
    #[error("token header has critical extensions {0:?}, none is understood")]
    Critical(String),
    #[error("no key fits the token (kid {kid:?}, alg {alg})")]
    UnknownKey { kid: Option<String>, alg: Algorithm },
    #[error("bad signature")]
    Signature,
    #[error("claim {claim:?} is {found}, not {expected}")]
    ClaimType {
        claim: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error("token has no {0:?} claim")]
    Missing(&'static str),
    #[error("token issuer {found:?} is not {expected:?}")]
    Issuer { found: String, expected: String },
    #[error("token audiences {found:?} do not include any of {expected:?}")]
    Audience {
        found: Vec<String>,
        expected: Vec<String>,
    },
    #[error("token expired")]
    Expired,
    #[error("token not valid yet (nbf)")]
    NotYetValid,
    #[error("token issued in the future (iat)")]
    IssuedInFuture,
    #[error("no key set loaded: {0}")]
    KeysUnavailable(String),
}

impl JwtError {
    /// True when the token was not judged because the keys are missing: answer 503,
    /// never cache it as a rejection.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::KeysUnavailable(_))
    }
}

/// Verifies compact JWS tokens. Stateless: the keys and the expectations are passed in.
#[derive(Debug, Clone, Copy, Default)]
pub struct Verifier;

impl Verifier {
    /// The token's claims, if its signature verifies with a key of `keys` and its
    /// claims meet `expect`. The checks run cheapest first; nothing is trusted before
    /// the signature has verified except the header's `alg` and `kid`, used to pick
    /// the key.
    pub fn verify(token: &str, keys: &Jwks, expect: &Expectations) -> Result<Claims, JwtError> {
        let (header, signed, payload, signature) = split(token)?;
        let alg = algorithm(&header, &expect.algorithms)?;
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(other) => return Err(wrong_type("kid", "a string", other)),
        };
        keys.verify(kid, alg, signed.as_bytes(), &signature)?;
        let claims = decode_object(payload, "payload")?;
        check_claims(&claims, expect)?;
        Ok(claims)
    }
}

/// The header (decoded), the signing input, the payload (encoded) and the signature.
fn split(token: &str) -> Result<(Claims, &str, &str, Vec<u8>), JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    if header.is_empty() || payload.is_empty() || signature.is_empty() {
        return Err(JwtError::Malformed);
    }
    let signed = &token[..header.len() + 1 + payload.len()];
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| JwtError::Encoding("signature"))?;
    Ok((decode_object(header, "header")?, signed, payload, signature))
}

fn decode_object(part: &str, what: &'static str) -> Result<Claims, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Encoding(what))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::Json(what)),
    }
}

/// The header's `alg`, if it is one of `accepted`; a `crit` header is refused.
fn algorithm(header: &Claims, accepted: &[Algorithm]) -> Result<Algorithm, JwtError> {
    if let Some(crit) = header.get("crit") {
        return Err(JwtError::Critical(crit.to_string()));
    }
    let name = match header.get("alg") {
        None => return Err(JwtError::NoAlgorithm),
        Some(Value::String(name)) => name,
        Some(other) => return Err(wrong_type("alg", "a string", other)),
    };
    Algorithm::from_name(name)
        .filter(|alg| accepted.contains(alg))
        .ok_or_else(|| JwtError::Algorithm(name.chars().take(32).collect()))
}

fn check_claims(claims: &Claims, expect: &Expectations) -> Result<(), JwtError> {
    let issuer = match claims.get("iss") {
        None => return Err(JwtError::Missing("iss")),
        Some(Value::String(iss)) => iss,
        Some(other) => return Err(wrong_type("iss", "a string", other)),
    };
    if *issuer != expect.issuer {
        return Err(JwtError::Issuer {
            found: issuer.chars().take(256).collect(),
            expected: expect.issuer.clone(),
        });
    }
    let audiences = audiences(claims.get("aud"))?;
    if let Some(expected) = &expect.audiences {
        if !audiences.iter().any(|a| expected.contains(a)) {
            return Err(JwtError::Audience {
                found: audiences.into_iter().take(8).collect(),
                expected: expected.clone(),
            });
        }
    }
    let now = seconds(expect.now);
    let leeway = LEEWAY.as_secs_f64();
    let exp = time_claim(claims, "exp")?.ok_or(JwtError::Missing("exp"))?;
    if now >= exp + leeway {
        return Err(JwtError::Expired);
    }
    if time_claim(claims, "nbf")?.is_some_and(|nbf| nbf > now + leeway) {
        return Err(JwtError::NotYetValid);
    }
    if time_claim(claims, "iat")?.is_some_and(|iat| iat > now + leeway) {
        return Err(JwtError::IssuedInFuture);
    }
    Ok(())
}

/// `aud`: absent, a string, or an array of strings (RFC 7519 4.1.3).
fn audiences(aud: Option<&Value>) -> Result<Vec<String>, JwtError> {
    const EXPECTED: &str = "a string or an array of strings";
    match aud {
        None => Ok(Vec::new()),
        Some(Value::String(one)) => Ok(vec![one.clone()]),
        Some(Value::Array(many)) => many
            .iter()
            .map(|a| match a {
                Value::String(a) => Ok(a.clone()),
                other => Err(wrong_type("aud", EXPECTED, other)),
            })
            .collect(),
        Some(other) => Err(wrong_type("aud", EXPECTED, other)),
    }
}

/// A NumericDate claim (seconds since the epoch, possibly fractional), if present.
fn time_claim(claims: &Claims, claim: &'static str) -> Result<Option<f64>, JwtError> {
    match claims.get(claim) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|n| n.is_finite())
            .map(Some)
            .ok_or_else(|| wrong_type(claim, "a number", &Value::Null)),
        Some(other) => Err(wrong_type(claim, "a number", other)),
    }
}

fn seconds(time: SystemTime) -> f64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

pub(crate) fn wrong_type(claim: &'static str, expected: &'static str, found: &Value) -> JwtError {
    JwtError::ClaimType {
        claim,
        expected,
        found: json_type(found),
    }
}

/// The JSON type's name, for messages.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
