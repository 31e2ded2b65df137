//! JWK sets (RFC 7517) as aws-lc-rs public keys, and which key may verify which token.
//!
//! A key is used only for what it says it is for: its `kty` (and EC `crv`) must fit the
//! token's algorithm, its `alg` (if given) must equal it, its `use` (if given) must be
//! `sig` and its `key_ops` (if given) must include `verify`. Keys of types we do not
//! verify with (`oct`, `OKP`, encryption keys) are skipped, not errors: issuers publish
//! them beside their signing keys. RSA keys must be 2048 to 8192 bits (aws-lc-rs's
//! bounds; Go accepts smaller ones, no real issuer uses them).

use aws_lc_rs::signature::{self, RsaParameters, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use serde_json::Value;

use super::{Algorithm, JwtError};

/// Key sets larger than this are not loaded.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Key sets with more keys than this are not loaded.
pub const MAX_KEYS: usize = 64;

/// A set of public keys a token may be signed with.
#[derive(Debug, Clone, Default)]
pub struct Jwks {
    keys: Vec<Jwk>,
}

/// One public signing key.
#[derive(Debug, Clone)]
pub struct Jwk {
    kid: Option<String>,
    alg: Option<String>,
    key: Key,
}

#[derive(Debug, Clone)]
enum Key {
    Rsa(RsaPublicKeyComponents<Vec<u8>>),
    /// The curve and the uncompressed point (`04 || x || y`).
    Ec(Curve, Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "P-256" => Some(Self::P256),
            "P-384" => Some(Self::P384),
            "P-521" => Some(Self::P521),
            _ => None,
        }
    }

    fn coordinate_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }
}

// === impl Jwks ===

impl Jwks {
    /// A key set from its JSON (`{"keys": [...]}`). Unusable keys are skipped; a set
    /// with no usable signing key is an error, since it could verify nothing.
    pub fn parse(json: &[u8]) -> Result<Self, String> {
        if json.len() > MAX_JWKS_BYTES {
            return Err(format!("key set larger than {MAX_JWKS_BYTES} bytes"));
        }
        let value: Value =
            serde_json::from_slice(json).map_err(|e| format!("key set is not JSON: {e}"))?;
        let Some(Value::Array(entries)) = value.get("keys") else {
            return Err("key set has no \"keys\" array".into());
        };
        if entries.len() > MAX_KEYS {
            return Err(format!("key set has more than {MAX_KEYS} keys"));
        }
        let mut keys = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            match Jwk::parse(entry) {
                Ok(Some(key)) => keys.push(key),
                Ok(None) => {}
                Err(why) => return Err(format!("key {i}: {why}")),
            }
        }
        if keys.is_empty() {
            return Err("key set has no usable signing key (RSA or EC P-256/384/521)".into());
        }
        Ok(Self { keys })
    }

    /// The keys, in the set's order.
    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }

    /// True if a key with this `kid` that fits `alg` is in the set (`kid: None`: any
    /// key that fits).
    pub fn has_key(&self, kid: Option<&str>, alg: Algorithm) -> bool {
        self.candidates(kid, alg).next().is_some()
    }

    fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a Jwk> + 'a {
        self.keys
            .iter()
            .filter(move |k| kid.is_none() || k.kid.as_deref() == kid)
            .filter(move |k| k.fits(alg))
    }

    /// Verifies `signature` over `message` with the key `kid` names (or, without a
    /// `kid`, any key that fits `alg`, as go-oidc does).
    pub(super) fn verify(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), JwtError> {
        let mut found = false;
        for key in self.candidates(kid, alg) {
            found = true;
            if key.verify(alg, message, signature) {
                return Ok(());
            }
        }
        if found {
            Err(JwtError::Signature)
        } else {
            Err(JwtError::UnknownKey {
                kid: kid.map(|k| k.chars().take(64).collect()),
                alg,
            })
        }
    }
}

// === impl Jwk ===

impl Jwk {
    /// `Ok(None)` for a key we do not verify with (another type, or not for
    /// signatures); `Err` for a key of our types that is malformed.
    fn parse(entry: &Value) -> Result<Option<Self>, String> {
        let field = |name: &str| -> Result<Option<&str>, String> {
            match entry.get(name) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(format!("\"{name}\" is not a string")),
            }
        };
        if field("use")?.is_some_and(|u| u != "sig") {
            return Ok(None);
        }
        if let Some(ops) = entry.get("key_ops") {
            let verifies = ops
                .as_array()
                .is_some_and(|ops| ops.iter().any(|op| op == "verify"));
            if !verifies {
                return Ok(None);
            }
        }
        let key = match field("kty")? {
            Some("RSA") => {
                let n = unsigned(&coordinate(field("n")?, "n")?);
                let e = unsigned(&coordinate(field("e")?, "e")?);
                if n.is_empty() || e.is_empty() {
                    return Err("RSA modulus or exponent is zero".into());
                }
                Key::Rsa(RsaPublicKeyComponents { n, e })
            }
            Some("EC") => {
                let Some(curve) = field("crv")?.and_then(Curve::from_name) else {
                    return Ok(None);
                };
                let x = coordinate(field("x")?, "x")?;
                let y = coordinate(field("y")?, "y")?;
                let len = curve.coordinate_len();
                if x.len() != len || y.len() != len {
                    return Err(format!("EC coordinates are not {len} bytes"));
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                Key::Ec(curve, point)
            }
            _ => return Ok(None),
        };
        Ok(Some(Self {
            kid: field("kid")?.map(str::to_owned),
            alg: field("alg")?.map(str::to_owned),
            key,
        }))
    }

    /// The key's `kid`, if it has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// May this key verify a token signed with `alg`?
    fn fits(&self, alg: Algorithm) -> bool {
        if self.alg.as_deref().is_some_and(|a| a != alg.as_str()) {
            return false;
        }
        use Algorithm::*;
        match (&self.key, alg) {
            (Key::Rsa(_), RS256 | RS384 | RS512 | PS256 | PS384 | PS512) => true,
            (Key::Ec(curve, _), ES256) => *curve == Curve::P256,
            (Key::Ec(curve, _), ES384) => *curve == Curve::P384,
            (Key::Ec(curve, _), ES512) => *curve == Curve::P521,
            _ => false,
        }
    }

    fn verify(&self, alg: Algorithm, message: &[u8], sig: &[u8]) -> bool {
        use Algorithm::*;
        match &self.key {
            Key::Rsa(components) => {
                let params: &RsaParameters = match alg {
                    RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                    PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                    PS512 => &signature::RSA_PSS_2048_8192_SHA512,
                    ES256 | ES384 | ES512 => return false,
                };
                components.verify(params, message, sig).is_ok()
            }
            Key::Ec(_, point) => {
                let algorithm = match alg {
                    ES256 => &signature::ECDSA_P256_SHA256_FIXED,
                    ES384 => &signature::ECDSA_P384_SHA384_FIXED,
                    ES512 => &signature::ECDSA_P521_SHA512_FIXED,
                    _ => return false,
                };
                UnparsedPublicKey::new(algorithm, point)
                    .verify(message, sig)
                    .is_ok()
            }
        }
    }
}

fn coordinate(value: Option<&str>, name: &str) -> Result<Vec<u8>, String> {
    let value = value.ok_or_else(|| format!("\"{name}\" is missing"))?;
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| format!("\"{name}\" is not base64url"))
}

/// A big-endian integer without leading zero bytes (aws-lc-rs's form; some issuers
/// pad `n`).
fn unsigned(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[start..].to_vec()
}
