//! An OpenID issuer over HTTPS on 127.0.0.1 (the test CA's serving certificate):
//! discovery at `/.well-known/openid-configuration`, its key set at `/keys`, and ID
//! tokens minted with an RSA key (RS256) generated at test time. It can rotate its key
//! and go down (every answer 503) and come back, and counts key set fetches.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    rand::SystemRandom,
    rsa::KeySize,
    signature::{KeyPair as _, RsaKeyPair, RSA_PKCS1_SHA256},
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use serde_json::{json, Value};
use tokio::{net::TcpListener, task::JoinSet};

use crate::Pki;

/// The client ID tokens are minted for unless a test says otherwise.
pub const CLIENT_ID: &str = "scrape-guard";

/// An in-process OpenID issuer.
pub struct FakeIssuer {
    /// `https://127.0.0.1:<port>`: the issuer URL, exactly as tokens and discovery say it.
    pub url: String,
    key: Mutex<(String, Arc<RsaKeyPair>)>,
    generation: AtomicUsize,
    up: AtomicBool,
    jwks_fetches: AtomicUsize,
    tasks: Mutex<JoinSet<()>>,
}

impl FakeIssuer {
    /// Listens on 127.0.0.1:0 with the test serving certificate.
    pub async fn start(pki: &Pki) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let issuer = Arc::new(Self {
            url: format!("https://127.0.0.1:{}", addr.port()),
            key: Mutex::new(("key-0".into(), Arc::new(new_key()))),
            generation: AtomicUsize::new(0),
            up: AtomicBool::new(true),
            jwks_fetches: AtomicUsize::new(0),
            tasks: Mutex::new(JoinSet::new()),
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(pki.server_config(&[b"http/1.1"])));
        let this = Arc::clone(&issuer);
        issuer.tasks.lock().unwrap().spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, served) = (acceptor.clone(), Arc::clone(&this));
                this.tasks.lock().unwrap().spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let reply = served.answer(&req);
                        async move { Ok::<_, Infallible>(reply) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        issuer
    }

    fn answer(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if !self.up.load(Ordering::SeqCst) {
            return reply(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "down"}));
        }
        match req.uri().path() {
            "/.well-known/openid-configuration" => reply(
                StatusCode::OK,
                json!({"issuer": self.url, "jwks_uri": format!("{}/keys", self.url),
                       "id_token_signing_alg_values_supported": ["RS256"]}),
            ),
            "/keys" => {
                self.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                let (kid, key) = self.key.lock().unwrap().clone();
                let (n, e) = rsa_components(key.public_key().as_ref());
                reply(
                    StatusCode::OK,
                    json!({"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                                     "n": URL_SAFE_NO_PAD.encode(&n),
                                     "e": URL_SAFE_NO_PAD.encode(&e)}]}),
                )
            }
            _ => reply(StatusCode::NOT_FOUND, json!({})),
        }
    }

    /// Claims of a good ID token for `email`: this issuer, `CLIENT_ID`, valid 10 minutes.
    pub fn claims(&self, email: &str) -> Value {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        json!({"iss": self.url, "aud": CLIENT_ID, "sub": email, "email": email,
               "email_verified": true, "iat": now, "exp": now + 600})
    }

    /// `claims`, signed RS256 with the current key.
    pub fn token(&self, claims: &Value) -> String {
        let (kid, key) = self.key.lock().unwrap().clone();
        sign(&key, &kid, claims)
    }

    /// A good token for `email` with `changes` applied to its claims (`null` removes one).
    pub fn token_with(&self, email: &str, changes: Value) -> String {
        let mut claims = self.claims(email);
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        self.token(&claims)
    }

    /// Replaces the signing key with a new one under a new `kid`.
    pub fn rotate(&self) {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        *self.key.lock().unwrap() = (format!("key-{generation}"), Arc::new(new_key()));
    }

    /// Down: every request is answered 503. Up: served again.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    /// Key set requests answered so far.
    pub fn jwks_fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }

    /// The flags that point scrape-guard at this issuer (`--oidc-ca-file` trusting `pki`).
    pub fn flags(&self, pki: &Pki) -> Vec<String> {
        vec![
            format!("--oidc-issuer={}", self.url),
            format!("--oidc-clientID={CLIENT_ID}"),
            format!("--oidc-ca-file={}", pki.ca_path.display()),
        ]
    }
}

impl Drop for FakeIssuer {
    fn drop(&mut self) {
        if let Ok(tasks) = self.tasks.get_mut() {
            tasks.abort_all();
        }
    }
}

fn new_key() -> RsaKeyPair {
    RsaKeyPair::generate(KeySize::Rsa2048).unwrap()
}

/// A compact JWS of `claims`, RS256 with `key` under `kid`.
pub fn sign(key: &RsaKeyPair, kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": kid});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
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

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}
