//! The fake apiserver's service-account issuer: an ES256 signing key (rotatable), the
//! discovery document and key set kube-apiserver serves, and tokens minted with the
//! claims kube-apiserver writes (`kubernetes.io`: namespace, service account, pod,
//! `warnafter`). The real apiserver in the end-to-end suite is the judge of fidelity.

use std::{
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING},
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use serde_json::{json, Value};

/// kube-apiserver's usual `--service-account-issuer` (and the end-to-end suite's).
pub const ISSUER: &str = "https://kubernetes.default.svc";

/// A token to mint: who it is for and how long it lives.
#[derive(Clone, Debug)]
pub struct ServiceAccountToken {
    pub namespace: String,
    pub name: String,
    /// The service account's uid.
    pub uid: String,
    /// The pod it is bound to: (name, uid).
    pub pod: Option<(String, String)>,
    /// `aud`; kube-apiserver's default is the issuer.
    pub audiences: Vec<String>,
    /// From `iat` to `exp`.
    pub lifetime: Duration,
    /// From `iat` to `kubernetes.io.warnafter` (an extended kubelet token).
    pub warn_after: Option<Duration>,
    /// `iss`; [`ISSUER`] unless a test wants another.
    pub issuer: String,
}

impl ServiceAccountToken {
    /// A one-hour token of `namespace/name` for the issuer's audience, bound to no pod.
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            uid: format!("uid-{namespace}-{name}"),
            pod: None,
            audiences: vec![ISSUER.into()],
            lifetime: Duration::from_secs(3600),
            warn_after: None,
            issuer: ISSUER.into(),
        }
    }

    /// The same, bound to pod `name` (uid `uid-<name>`).
    pub fn bound_to_pod(mut self, name: &str) -> Self {
        self.pod = Some((name.into(), format!("uid-{name}")));
        self
    }

    /// The user name a TokenReview returns for it.
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }

    /// The user's `extra`, as a TokenReview returns it.
    pub fn extra(&self) -> Value {
        match &self.pod {
            Some((name, uid)) => json!({
                "authentication.kubernetes.io/pod-name": [name],
                "authentication.kubernetes.io/pod-uid": [uid],
            }),
            None => json!({}),
        }
    }

    fn claims(&self, now: u64) -> Value {
        let mut kube = json!({
            "namespace": self.namespace,
            "serviceaccount": {"name": self.name, "uid": self.uid},
        });
        if let Some((name, uid)) = &self.pod {
            kube["pod"] = json!({"name": name, "uid": uid});
        }
        if let Some(warn) = self.warn_after {
            kube["warnafter"] = json!(now + warn.as_secs());
        }
        json!({
            "aud": self.audiences,
            "exp": now + self.lifetime.as_secs(),
            "iat": now,
            "nbf": now,
            "iss": self.issuer,
            "sub": self.username(),
            "kubernetes.io": kube,
        })
    }
}

/// The issuer's keys: the last one signs, all are published.
pub(crate) struct Issuer {
    keys: Mutex<Vec<(String, EcdsaKeyPair)>>,
}

impl Issuer {
    pub(crate) fn new() -> Self {
        let issuer = Self {
            keys: Mutex::new(Vec::new()),
        };
        issuer.rotate();
        issuer
    }

    /// Adds a new signing key with a new `kid`; the old ones stay published.
    pub(crate) fn rotate(&self) {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let mut keys = self.keys.lock().unwrap();
        let kid = format!("key-{}", keys.len() + 1);
        keys.push((kid, key));
    }

    /// `/.well-known/openid-configuration`, as kube-apiserver writes it.
    pub(crate) fn discovery(&self) -> Value {
        json!({
            "issuer": ISSUER,
            "jwks_uri": format!("{ISSUER}/openid/v1/jwks"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }

    /// `/openid/v1/jwks`.
    pub(crate) fn jwks(&self) -> Value {
        let keys = self.keys.lock().unwrap();
        let keys: Vec<Value> = keys
            .iter()
            .map(|(kid, key)| {
                let point = key.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                       "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                       "y": URL_SAFE_NO_PAD.encode(&point[33..])})
            })
            .collect();
        json!({ "keys": keys })
    }

    /// A signed token for `spec`, issued now.
    pub(crate) fn mint(&self, spec: &ServiceAccountToken) -> String {
        self.sign(&spec.claims(unix_now()))
    }

    /// A legacy (Secret) token: `iss` `kubernetes/serviceaccount`, no `exp`.
    pub(crate) fn legacy(&self, namespace: &str, name: &str) -> String {
        self.sign(&json!({
            "iss": "kubernetes/serviceaccount",
            "sub": format!("system:serviceaccount:{namespace}:{name}"),
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/secret.name": format!("{name}-token-x"),
            "kubernetes.io/serviceaccount/service-account.name": name,
            "kubernetes.io/serviceaccount/service-account.uid": format!("uid-{namespace}-{name}"),
        }))
    }

    fn sign(&self, claims: &Value) -> String {
        let keys = self.keys.lock().unwrap();
        let (kid, key) = keys.last().unwrap();
        let header = json!({"alg": "ES256", "kid": kid});
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = key.sign(&SystemRandom::new(), signed.as_bytes()).unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
