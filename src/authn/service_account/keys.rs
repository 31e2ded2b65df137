//! The issuer's signing keys (a JWKS) and a JWS signature check over them: the
//! algorithms kube-apiserver signs service-account tokens with (RS256, ES256, ES384,
//! ES512), with aws-lc-rs. Nothing else is accepted: no `none`, no HMAC.
//!
//! This is the narrow seam to the JWT core: `KeySet::parse`, `KeySet::knows` and
//! `KeySet::verify` are all the rest of `service_account` uses.

use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;

use super::claims::base64url;

/// Why a token's signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureError {
    /// Not a compact JWS with a JSON header naming a supported `alg`.
    Malformed,
    /// No key of the set has the token's `kid` (worth fetching the set again).
    UnknownKey,
    /// A key matched, the signature did not.
    Invalid,
}

/// One public key from the set.
#[derive(Debug, Clone)]
struct Jwk {
    kid: Option<String>,
    key: PublicKey,
}

#[derive(Debug, Clone)]
enum PublicKey {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed point (`04 || x || y`) and the curve's JWS name.
    Ec {
        alg: &'static str,
        point: Vec<u8>,
    },
}

/// The issuer's keys.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeySet {
    keys: Vec<Jwk>,
}

impl KeySet {
    /// Reads a JWKS document; keys of other types or curves are skipped, as the
    /// apiserver only signs with RSA and the NIST curves.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let document: Value =
            serde_json::from_str(text).map_err(|e| format!("key set is not JSON: {e}"))?;
        let Some(entries) = document["keys"].as_array() else {
            return Err("key set has no \"keys\" list".into());
        };
        let keys: Vec<Jwk> = entries.iter().filter_map(jwk).collect();
        if keys.is_empty() {
            return Err("key set has no RSA or EC signing key".into());
        }
        Ok(Self { keys })
    }

    /// Whether a key for `kid` is in the set (without a `kid`, every key is tried).
    pub(crate) fn knows(&self, kid: Option<&str>) -> bool {
        kid.is_none_or(|kid| self.keys.iter().any(|k| k.kid.as_deref() == Some(kid)))
    }

    /// The payload of `token` if a key of the set signed it.
    pub(crate) fn verify(&self, token: &str) -> Result<Value, SignatureError> {
        let (signed, signature) = token.rsplit_once('.').ok_or(SignatureError::Malformed)?;
        let (header, payload) = signed.split_once('.').ok_or(SignatureError::Malformed)?;
        let header: Value = base64url(header)
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or(SignatureError::Malformed)?;
        let alg = header["alg"].as_str().ok_or(SignatureError::Malformed)?;
        let signature = base64url(signature).ok_or(SignatureError::Malformed)?;
        let kid = header["kid"].as_str();
        if !self.knows(kid) {
            return Err(SignatureError::UnknownKey);
        }
        let candidates = self
            .keys
            .iter()
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid);
        let mut verified = false;
        for key in candidates {
            if key.key.verifies(alg, signed.as_bytes(), &signature)? {
                verified = true;
                break;
            }
        }
        if !verified {
            return Err(SignatureError::Invalid);
        }
        base64url(payload)
            .and_then(|p| serde_json::from_slice(&p).ok())
            .ok_or(SignatureError::Malformed)
    }
}

impl PublicKey {
    /// `Ok(false)` for a key of another type than `alg` names, or a bad signature.
    fn verifies(&self, alg: &str, message: &[u8], sig: &[u8]) -> Result<bool, SignatureError> {
        let ok = match (self, alg) {
            (Self::Rsa { n, e }, "RS256") => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                .is_ok(),
            (Self::Ec { alg: curve, point }, _) if *curve == alg => {
                let algorithm = match alg {
                    "ES256" => &signature::ECDSA_P256_SHA256_FIXED,
                    "ES384" => &signature::ECDSA_P384_SHA384_FIXED,
                    _ => &signature::ECDSA_P521_SHA512_FIXED,
                };
                UnparsedPublicKey::new(algorithm, point)
                    .verify(message, sig)
                    .is_ok()
            }
            (_, "RS256" | "ES256" | "ES384" | "ES512") => false,
            _ => return Err(SignatureError::Malformed),
        };
        Ok(ok)
    }
}

/// One JWKS entry, if it is a signing key we can use.
fn jwk(entry: &Value) -> Option<Jwk> {
    if entry["use"].as_str().is_some_and(|u| u != "sig") {
        return None;
    }
    let key = match entry["kty"].as_str()? {
        "RSA" => PublicKey::Rsa {
            n: base64url(entry["n"].as_str()?)?,
            e: base64url(entry["e"].as_str()?)?,
        },
        "EC" => {
            let (alg, size) = match entry["crv"].as_str()? {
                "P-256" => ("ES256", 32),
                "P-384" => ("ES384", 48),
                "P-521" => ("ES512", 66),
                _ => return None,
            };
            let (x, y) = (
                base64url(entry["x"].as_str()?)?,
                base64url(entry["y"].as_str()?)?,
            );
            if x.len() != size || y.len() != size {
                return None;
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            PublicKey::Ec { alg, point }
        }
        _ => return None,
    };
    Some(Jwk {
        kid: entry["kid"].as_str().map(str::to_owned),
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::{
        rand::SystemRandom,
        signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING},
    };
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
    use serde_json::json;

    fn key_and_set(kid: &str) -> (EcdsaKeyPair, KeySet) {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = key.public_key().as_ref();
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])}]});
        (key, KeySet::parse(&jwks.to_string()).unwrap())
    }

    fn sign(key: &EcdsaKeyPair, header: Value, payload: Value) -> String {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        let signature = key.sign(&SystemRandom::new(), signed.as_bytes()).unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    #[test]
    fn a_signed_token_verifies_and_a_tampered_one_does_not() {
        let (key, set) = key_and_set("k1");
        let token = sign(
            &key,
            json!({"alg": "ES256", "kid": "k1"}),
            json!({"iss": "me"}),
        );
        assert_eq!(set.verify(&token).unwrap()["iss"], "me");
        let (head, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let forged = format!(
            "{head}.{}.{signature}",
            URL_SAFE_NO_PAD.encode(r#"{"iss":"you"}"#)
        );
        assert_eq!(set.verify(&forged), Err(SignatureError::Invalid));
    }

    #[test]
    fn only_known_keys_and_supported_algorithms() {
        let (key, set) = key_and_set("k1");
        let other_kid = sign(&key, json!({"alg": "ES256", "kid": "k2"}), json!({}));
        assert_eq!(set.verify(&other_kid), Err(SignatureError::UnknownKey));
        let no_kid = sign(&key, json!({"alg": "ES256"}), json!({"ok": 1}));
        assert_eq!(set.verify(&no_kid).unwrap()["ok"], 1);
        for alg in ["none", "HS256", "PS256"] {
            let token = sign(&key, json!({"alg": alg, "kid": "k1"}), json!({}));
            assert_eq!(set.verify(&token), Err(SignatureError::Malformed), "{alg}");
        }
        let wrong_type = sign(&key, json!({"alg": "RS256", "kid": "k1"}), json!({}));
        assert_eq!(set.verify(&wrong_type), Err(SignatureError::Invalid));
        assert!(KeySet::parse(r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).is_err());
    }
}
