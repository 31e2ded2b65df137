use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc, Mutex,
};

use aws_lc_rs::{
    hmac,
    rand::SystemRandom,
    rsa::KeySize,
    signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair},
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use serde_json::{json, Value};

use super::*;

const ISSUER: &str = "https://issuer.example";
const CLIENT: &str = "scrape-guard";
/// 2026-01-01T00:00:00Z.
const NOW: u64 = 1_767_225_600;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

enum Private {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair, &'static str),
}

/// A signing key and its public JWK.
struct TestKey {
    kid: String,
    private: Private,
}

impl TestKey {
    fn rsa(kid: &str) -> Self {
        let key = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        Self {
            kid: kid.into(),
            private: Private::Rsa(key),
        }
    }

    fn ec(kid: &str, alg: Algorithm) -> Self {
        let (signing, crv) = match alg {
            Algorithm::ES256 => (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256"),
            Algorithm::ES384 => (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384"),
            _ => (&signature::ECDSA_P521_SHA512_FIXED_SIGNING, "P-521"),
        };
        Self {
            kid: kid.into(),
            private: Private::Ec(EcdsaKeyPair::generate(signing).unwrap(), crv),
        }
    }

    fn jwk(&self) -> Value {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        match &self.private {
            Private::Rsa(key) => {
                let (n, e) = rsa_components(key.public_key().as_ref());
                json!({"kty": "RSA", "kid": self.kid, "use": "sig", "n": b64(&n), "e": b64(&e)})
            }
            Private::Ec(key, crv) => {
                let point = key.public_key().as_ref();
                let len = (point.len() - 1) / 2;
                json!({"kty": "EC", "kid": self.kid, "crv": crv,
                       "x": b64(&point[1..1 + len]), "y": b64(&point[1 + len..])})
            }
        }
    }

    fn sign(&self, alg: &str, header: Value, claims: &Value) -> String {
        let mut header = header;
        header["alg"] = json!(alg);
        match header.get("kid") {
            None => header["kid"] = json!(self.kid),
            // `"kid": null` asks for a header without one.
            Some(Value::Null) => {
                header.as_object_mut().unwrap().remove("kid");
            }
            Some(_) => {}
        }
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let sig = match (&self.private, alg) {
            (Private::Rsa(key), _) => {
                let encoding: &'static dyn signature::RsaEncoding = match alg {
                    "RS256" => &signature::RSA_PKCS1_SHA256,
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    "PS384" => &signature::RSA_PSS_SHA384,
                    _ => &signature::RSA_PSS_SHA512,
                };
                let mut sig = vec![0; key.public_modulus_len()];
                key.sign(encoding, &rng, input.as_bytes(), &mut sig)
                    .unwrap();
                sig
            }
            (Private::Ec(key, _), _) => key.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn token(&self, claims: &Value) -> String {
        self.sign("RS256", json!({}), claims)
    }
}

/// `n` and `e` of a DER RSAPublicKey (PKCS#1), as aws-lc-rs serialises the public key.
fn rsa_components(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    fn length(der: &[u8], at: &mut usize) -> usize {
        let first = der[*at];
        *at += 1;
        if first < 0x80 {
            return usize::from(first);
        }
        let mut len = 0;
        for _ in 0..(first & 0x7f) {
            len = (len << 8) | usize::from(der[*at]);
            *at += 1;
        }
        len
    }
    let mut at = 1;
    length(der, &mut at);
    let mut integer = || {
        at += 1;
        let len = length(der, &mut at);
        let value = &der[at..at + len];
        at += len;
        let start = value.iter().position(|b| *b != 0).unwrap_or(value.len());
        value[start..].to_vec()
    };
    let n = integer();
    let e = integer();
    (n, e)
}

fn jwks(keys: &[&TestKey]) -> Jwks {
    let set = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
    Jwks::parse(set.to_string().as_bytes()).unwrap()
}

fn claims() -> Value {
    json!({"iss": ISSUER, "aud": CLIENT, "sub": "jane", "email": "jane@example.com",
           "exp": NOW + 600, "iat": NOW - 10, "nbf": NOW - 10})
}

fn with(changes: Value) -> Value {
    let mut claims = claims();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

fn expect(algorithms: &[Algorithm]) -> Expectations {
    Expectations {
        issuer: ISSUER.into(),
        audiences: Some(vec![CLIENT.into()]),
        algorithms: algorithms.to_vec(),
        now: now(),
    }
}

fn rs256() -> Expectations {
    expect(&[Algorithm::RS256])
}

#[test]
fn every_algorithm_verifies_when_configured() {
    let rsa = TestKey::rsa("r");
    let keys = jwks(&[&rsa]);
    for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
        let token = rsa.sign(alg, json!({}), &claims());
        let want = Algorithm::from_name(alg).unwrap();
        let got = Verifier::verify(&token, &keys, &expect(&[want])).unwrap();
        assert_eq!(got["sub"], "jane", "{alg}");
        // The same token is refused when its algorithm is not configured.
        let err = Verifier::verify(&token, &keys, &expect(&[Algorithm::ES256])).unwrap_err();
        assert!(matches!(err, JwtError::Algorithm(_)), "{alg}: {err:?}");
    }
    for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::ES512] {
        let ec = TestKey::ec("e", alg);
        let token = ec.sign(alg.as_str(), json!({}), &claims());
        Verifier::verify(&token, &jwks(&[&ec]), &expect(&[alg])).unwrap();
    }
}

#[test]
fn refusals_table() {
    let key = TestKey::rsa("k1");
    let other = TestKey::rsa("k1");
    let keys = jwks(&[&key]);
    let leeway = LEEWAY.as_secs();
    let bad_sig = {
        let token = key.token(&claims());
        let (rest, _) = token.rsplit_once('.').unwrap();
        let (_, sig) = other
            .token(&claims())
            .rsplit_once('.')
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .unwrap();
        format!("{rest}.{sig}")
    };
    let swapped_payload = {
        let token = key.token(&claims());
        let forged = key.token(&with(json!({"sub": "admin"})));
        let parts: Vec<&str> = token.split('.').collect();
        let forged: Vec<&str> = forged.split('.').collect();
        format!("{}.{}.{}", parts[0], forged[1], parts[2])
    };
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    let none_with_sig = format!("{none}c2ln");
    let hs256 = {
        // Algorithm confusion: the RSA public key as an HMAC secret.
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":"k1"}"#),
            URL_SAFE_NO_PAD.encode(claims().to_string())
        );
        let secret = key.jwk()["n"].as_str().unwrap().to_owned();
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
            input.as_bytes(),
        );
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    };
    let long = "a".repeat(MAX_TOKEN_BYTES + 1);
    type Check = fn(&JwtError) -> bool;
    let table: Vec<(&str, String, Check)> = vec![
        ("bad signature", bad_sig, |e| *e == JwtError::Signature),
        ("payload swapped", swapped_payload, |e| {
            *e == JwtError::Signature
        }),
        ("alg none", none, |e| matches!(e, JwtError::Malformed)),
        (
            "alg none with a signature",
            none_with_sig,
            |e| matches!(e, JwtError::Algorithm(a) if a == "none"),
        ),
        (
            "HS256 with the RSA key as secret",
            hs256,
            |e| matches!(e, JwtError::Algorithm(a) if a == "HS256"),
        ),
        (
            "ES256 not configured",
            TestKey::ec("k1", Algorithm::ES256).sign("ES256", json!({}), &claims()),
            |e| matches!(e, JwtError::Algorithm(_)),
        ),
        (
            "wrong issuer",
            key.token(&with(json!({"iss": "https://evil.example"}))),
            |e| matches!(e, JwtError::Issuer { .. }),
        ),
        (
            "issuer with a trailing slash",
            key.token(&with(json!({"iss": format!("{ISSUER}/")}))),
            |e| matches!(e, JwtError::Issuer { .. }),
        ),
        ("no issuer", key.token(&with(json!({"iss": null}))), |e| {
            *e == JwtError::Missing("iss")
        }),
        (
            "wrong audience",
            key.token(&with(json!({"aud": "someone-else"}))),
            |e| matches!(e, JwtError::Audience { .. }),
        ),
        (
            "wrong audiences",
            key.token(&with(json!({"aud": ["a", "b"]}))),
            |e| matches!(e, JwtError::Audience { .. }),
        ),
        ("no audience", key.token(&with(json!({"aud": null}))), |e| {
            matches!(e, JwtError::Audience { .. })
        }),
        (
            "expired",
            key.token(&with(json!({"exp": NOW - leeway}))),
            |e| *e == JwtError::Expired,
        ),
        ("no exp", key.token(&with(json!({"exp": null}))), |e| {
            *e == JwtError::Missing("exp")
        }),
        (
            "nbf in the future",
            key.token(&with(json!({"nbf": NOW + leeway + 1}))),
            |e| *e == JwtError::NotYetValid,
        ),
        (
            "iat in the future",
            key.token(&with(json!({"iat": NOW + leeway + 1}))),
            |e| *e == JwtError::IssuedInFuture,
        ),
        ("iss a number", key.token(&with(json!({"iss": 1}))), |e| {
            matches!(e, JwtError::ClaimType { claim: "iss", .. })
        }),
        ("aud a number", key.token(&with(json!({"aud": 1}))), |e| {
            matches!(e, JwtError::ClaimType { claim: "aud", .. })
        }),
        (
            "aud with a number",
            key.token(&with(json!({"aud": [CLIENT, 1]}))),
            |e| matches!(e, JwtError::ClaimType { claim: "aud", .. }),
        ),
        (
            "exp a string",
            key.token(&with(json!({"exp": "tomorrow"}))),
            |e| matches!(e, JwtError::ClaimType { claim: "exp", .. }),
        ),
        (
            "nbf a boolean",
            key.token(&with(json!({"nbf": true}))),
            |e| matches!(e, JwtError::ClaimType { claim: "nbf", .. }),
        ),
        ("iat an array", key.token(&with(json!({"iat": [1]}))), |e| {
            matches!(e, JwtError::ClaimType { claim: "iat", .. })
        }),
        (
            "kid a number",
            key.sign("RS256", json!({"kid": 7}), &claims()),
            |e| matches!(e, JwtError::ClaimType { claim: "kid", .. }),
        ),
        (
            "alg a number",
            {
                let t = key.token(&claims());
                let rest = t.split_once('.').unwrap().1;
                format!("{}.{rest}", URL_SAFE_NO_PAD.encode(r#"{"alg":256}"#))
            },
            |e| matches!(e, JwtError::ClaimType { claim: "alg", .. }),
        ),
        (
            "crit",
            key.sign("RS256", json!({"crit": ["exp"]}), &claims()),
            |e| matches!(e, JwtError::Critical(_)),
        ),
        (
            "unknown kid",
            key.sign("RS256", json!({"kid": "k2"}), &claims()),
            |e| matches!(e, JwtError::UnknownKey { .. }),
        ),
        ("too long", long, |e| *e == JwtError::TooLong),
        ("two parts", "a.b".into(), |e| *e == JwtError::Malformed),
        ("four parts", "a.b.c.d".into(), |e| {
            *e == JwtError::Malformed
        }),
        ("not base64", "a.b.c!".into(), |e| {
            matches!(e, JwtError::Encoding(_))
        }),
        (
            "header not JSON",
            format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode("[1]")),
            |e| *e == JwtError::Json("header"),
        ),
        (
            "payload not an object",
            key.sign("RS256", json!({}), &json!("claims")),
            |e| *e == JwtError::Json("payload"),
        ),
    ];
    for (name, token, check) in table {
        let err = Verifier::verify(&token, &keys, &rs256()).unwrap_err();
        assert!(check(&err), "{name}: {err:?}");
        assert!(!err.is_unavailable(), "{name}");
    }
}

#[test]
fn time_claims_allow_the_leeway() {
    let key = TestKey::rsa("k");
    let keys = jwks(&[&key]);
    let leeway = LEEWAY.as_secs();
    for claims in [
        with(json!({"exp": NOW - leeway + 1})),
        with(json!({"nbf": NOW + leeway, "iat": NOW + leeway})),
        with(json!({"nbf": null, "iat": null, "exp": (NOW + 600) as f64 + 0.5})),
        with(json!({"aud": ["other", CLIENT]})),
    ] {
        Verifier::verify(&key.token(&claims), &keys, &rs256()).unwrap();
    }
    // No audience expected: any (or none) will do, but its type is still checked.
    let mut any = rs256();
    any.audiences = None;
    Verifier::verify(&key.token(&with(json!({"aud": null}))), &keys, &any).unwrap();
    let err = Verifier::verify(&key.token(&with(json!({"aud": {}}))), &keys, &any).unwrap_err();
    assert!(matches!(err, JwtError::ClaimType { claim: "aud", .. }));
}

#[test]
fn a_key_is_used_only_for_what_it_says() {
    let rsa = TestKey::rsa("k");
    let token = rsa.token(&claims());
    let mut jwk = rsa.jwk();
    let load = |jwk: &Value| {
        Jwks::parse(
            json!({"keys": [jwk, TestKey::ec("x", Algorithm::ES256).jwk()]})
                .to_string()
                .as_bytes(),
        )
        .unwrap()
    };
    jwk["alg"] = json!("RS384");
    let err = Verifier::verify(&token, &load(&jwk), &rs256()).unwrap_err();
    assert!(matches!(err, JwtError::UnknownKey { .. }), "{err:?}");
    jwk["alg"] = json!("RS256");
    Verifier::verify(&token, &load(&jwk), &rs256()).unwrap();
    jwk["use"] = json!("enc");
    let err = Verifier::verify(&token, &load(&jwk), &rs256()).unwrap_err();
    assert!(matches!(err, JwtError::UnknownKey { .. }), "{err:?}");
    jwk["use"] = json!("sig");
    jwk["key_ops"] = json!(["encrypt"]);
    let err = Verifier::verify(&token, &load(&jwk), &rs256()).unwrap_err();
    assert!(matches!(err, JwtError::UnknownKey { .. }), "{err:?}");
    // An EC key never verifies an RS256 token, even under the RSA key's kid.
    let ec = TestKey::ec("k", Algorithm::ES256);
    let err = Verifier::verify(&token, &jwks(&[&ec]), &rs256()).unwrap_err();
    assert!(matches!(err, JwtError::UnknownKey { .. }), "{err:?}");
    // Without a kid, every key that fits is tried.
    let other = TestKey::rsa("o");
    let token = rsa.sign("RS256", json!({"kid": null}), &claims());
    Verifier::verify(&token, &jwks(&[&other, &rsa]), &rs256()).unwrap();
}

#[test]
fn key_sets_are_bounded_and_checked() {
    let table: &[(&str, &str)] = &[
        ("not JSON", "nope"),
        ("no keys", "{}"),
        ("keys not an array", r#"{"keys": {}}"#),
        (
            "no usable key",
            r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#,
        ),
        ("RSA without n", r#"{"kty": "RSA", "e": "AQAB"}"#),
        (
            "EC coordinates short",
            r#"{"kty": "EC", "crv": "P-256", "x": "AQAB", "y": "AQAB"}"#,
        ),
        (
            "kid a number",
            r#"{"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": 1}"#,
        ),
    ];
    for (name, json) in table {
        let json = if json.starts_with(r#"{"kty"#) {
            format!(r#"{{"keys": [{json}]}}"#)
        } else {
            (*json).to_owned()
        };
        assert!(Jwks::parse(json.as_bytes()).is_err(), "{name}");
    }
    let many = json!({"keys": vec![TestKey::ec("e", Algorithm::ES256).jwk(); MAX_KEYS + 1]});
    assert!(Jwks::parse(many.to_string().as_bytes()).is_err());
    assert!(Jwks::parse(&vec![b' '; MAX_JWKS_BYTES + 1]).is_err());
}

/// A key set served from memory, counting fetches.
fn served(json: Arc<Mutex<Option<String>>>, fetches: Arc<AtomicUsize>) -> RemoteJwks {
    let fetch = move || -> FetchFuture {
        fetches.fetch_add(1, Ordering::SeqCst);
        let body = json.lock().unwrap().clone();
        Box::pin(async move {
            body.map(String::into_bytes)
                .ok_or_else(|| "issuer down".to_owned())
        })
    };
    RemoteJwks::new(fetch, KeySetSettings::default())
}

#[tokio::test(start_paused = true)]
async fn unknown_kid_fetches_the_rotated_set_rate_limited() {
    let (old, new) = (TestKey::rsa("old"), TestKey::rsa("new"));
    let body = Arc::new(Mutex::new(Some(json!({"keys": [old.jwk()]}).to_string())));
    let fetches = Arc::new(AtomicUsize::new(0));
    let remote = served(Arc::clone(&body), Arc::clone(&fetches));
    remote
        .verify(&old.token(&claims()), &rs256())
        .await
        .unwrap();
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    // The issuer rotates; a token under the new key makes us fetch again, once the
    // rate limit allows.
    *body.lock().unwrap() = Some(json!({"keys": [new.jwk()]}).to_string());
    let err = remote
        .verify(&new.token(&claims()), &rs256())
        .await
        .unwrap_err();
    assert!(matches!(err, JwtError::UnknownKey { .. }), "{err:?}");
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "rate limited");
    tokio::time::advance(KeySetSettings::default().min_refresh_interval).await;
    remote
        .verify(&new.token(&claims()), &rs256())
        .await
        .unwrap();
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    // Junk kids right after cost no fetch.
    for i in 0..5 {
        let junk = new.sign("RS256", json!({"kid": format!("junk{i}")}), &claims());
        assert!(remote.verify(&junk, &rs256()).await.is_err());
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn no_key_set_is_unavailable_not_invalid() {
    let key = TestKey::rsa("k");
    let body = Arc::new(Mutex::new(None));
    let fetches = Arc::new(AtomicUsize::new(0));
    let remote = served(Arc::clone(&body), Arc::clone(&fetches));
    let err = remote
        .verify(&key.token(&claims()), &rs256())
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(remote.refresh().await.is_err());
    assert_eq!(remote.last_error().as_deref(), Some("issuer down"));

    *body.lock().unwrap() = Some(json!({"keys": [key.jwk()]}).to_string());
    remote.refresh().await.unwrap();
    remote
        .verify(&key.token(&claims()), &rs256())
        .await
        .unwrap();

    // The issuer goes down again: the last good set stays in force, and a token under
    // a key we have never seen is unavailable, not invalid (the fetch failed).
    *body.lock().unwrap() = None;
    tokio::time::advance(KeySetSettings::default().min_refresh_interval).await;
    let rotated = TestKey::rsa("rotated");
    let err = remote
        .verify(&rotated.token(&claims()), &rs256())
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    remote
        .verify(&key.token(&claims()), &rs256())
        .await
        .unwrap();
}
