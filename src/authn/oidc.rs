//! OIDC: bearer tokens verified locally as ID tokens of `--oidc-issuer`, as
//! kube-rbac-proxy does with k8s.io/apiserver's OIDC authenticator.
//!
//! When `--oidc-issuer` is set, OIDC *replaces* the TokenReview: a token is never sent
//! to the apiserver, and (as in kube-rbac-proxy, whose OIDC authenticator reads only
//! the bearer token) a client certificate does not authenticate. `--token-auth-file`,
//! ours, is still looked up first. SubjectAccessReviews are sent as before.
//!
//! Keys: discovery (`{issuer}/.well-known/openid-configuration`, whose `issuer` must
//! equal the flag exactly) gives the `jwks_uri`; both are fetched over TLS verified
//! with `--oidc-ca-file` (read once at startup, as k8s.io/apiserver does) or else the
//! platform's roots. Until a key set has loaded, a background task retries with
//! backoff (kube-rbac-proxy polls every 10 s), tokens are answered 503 (never a cached
//! 401), and `/readyz` says why. Once loaded, the set is fetched again only when a
//! token names a key it does not hold (`jwt::RemoteJwks`), as go-oidc does.
//!
//! Claims, as k8s.io/apiserver maps them without CEL: the username claim must be a
//! string (with `email`, an `email_verified` claim, if present, must be `true`), and
//! `--oidc-username-prefix` is prepended as given — kube-rbac-proxy passes it always,
//! so kube-apiserver's `{issuer}#` default for non-email claims does not apply. The
//! groups claim may be a string or an array of strings, each prefixed. A `jti` becomes
//! the `authentication.kubernetes.io/credential-id` extra (`JTI=<jti>`).
//!
//! Verified tokens are not cached: verifying is local CPU (one RSA or ECDSA
//! verification), cheaper than the HMAC-keyed cache lookup's bookkeeping would save,
//! and a rejected token costs no remote call.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex, Weak},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use serde_json::Value;

use super::{
    jwt::{self, Algorithm, Claims, Expectations, FetchFuture, RemoteJwks},
    AuthnError,
};
use crate::{
    identity::User,
    metrics::{KeySet, Metrics},
    tls,
};

/// How long one discovery or key set request may take (k8s.io/apiserver's client
/// timeout).
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Discovery documents larger than this are not read.
const MAX_DISCOVERY_BYTES: usize = 64 * 1024;
/// The first retry of an unloaded key set, doubled up to `MAX_RETRY`.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(10);
/// The extra a `jti` is reported under (k8s.io/apiserver's `user.CredentialIDKey`).
const CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

/// `--oidc-*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// `--oidc-issuer`: an `https://` URL, compared with `iss` exactly.
    pub issuer: String,
    /// `--oidc-clientID`: must be in the token's `aud`.
    pub client_id: String,
    /// `--oidc-ca-file`; else the platform's roots.
    pub ca_file: Option<PathBuf>,
    /// `--oidc-username-claim` (`email`).
    pub username_claim: String,
    /// `--oidc-username-prefix`, prepended as given.
    pub username_prefix: String,
    /// `--oidc-groups-claim` (`groups`); empty: no groups.
    pub groups_claim: String,
    /// `--oidc-groups-prefix`, prepended to each group.
    pub groups_prefix: String,
    /// `--oidc-sign-alg` (`RS256`).
    pub algorithms: Vec<Algorithm>,
}

/// Why an OIDC token did not authenticate.
#[derive(Debug)]
pub(super) enum Refusal {
    /// The token is bad: 401.
    Invalid(String),
    /// No key set to judge it with: 503.
    Unavailable(String),
}

/// The OIDC authenticator: settings, the issuer's key set, its loader.
pub(super) struct Oidc {
    settings: OidcSettings,
    keys: Arc<RemoteJwks>,
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

impl Oidc {
    /// Reads `--oidc-ca-file` and starts loading the key set in the background.
    pub(super) fn start(
        settings: &OidcSettings,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, AuthnError> {
        let client = https_client(settings.ca_file.as_deref())?;
        let issuer = settings.issuer.clone();
        let jwks_uri = Arc::new(Mutex::new(None::<String>));
        let fetch = move || -> FetchFuture {
            let (client, issuer, jwks_uri) =
                (client.clone(), issuer.clone(), Arc::clone(&jwks_uri));
            Box::pin(async move { fetch_keys(&client, &issuer, &jwks_uri).await })
        };
        let observed = Arc::clone(metrics);
        let keys = RemoteJwks::new(fetch, jwt::KeySetSettings::default()).with_observer(Box::new(
            move |outcome| observed.key_set_fetched(KeySet::Oidc, outcome.is_ok()),
        ));
        metrics.key_set_expected(KeySet::Oidc);
        let keys = Arc::new(keys);
        tokio::spawn(load(Arc::downgrade(&keys), settings.issuer.clone()));
        Ok(Self {
            settings: settings.clone(),
            keys,
        })
    }

    /// The user `token` is an ID token of, if it is one.
    pub(super) async fn authenticate(&self, token: &str) -> Result<User, Refusal> {
        let expect = Expectations {
            issuer: self.settings.issuer.clone(),
            audiences: Some(vec![self.settings.client_id.clone()]),
            algorithms: self.settings.algorithms.clone(),
            now: SystemTime::now(),
        };
        let claims = match self.keys.verify(token, &expect).await {
            Ok(claims) => claims,
            Err(error) if error.is_unavailable() => {
                return Err(Refusal::Unavailable(format!(
                    "OIDC issuer {}: {error}",
                    self.settings.issuer
                )))
            }
            Err(error) => return Err(Refusal::Invalid(format!("OIDC: {error}"))),
        };
        user(&self.settings, &claims).map_err(|why| Refusal::Invalid(format!("OIDC: {why}")))
    }

    /// `Ok` once a key set has loaded; else why not (for `/readyz`).
    pub(super) fn ready(&self) -> Result<(), String> {
        match self.keys.current() {
            Some(_) => Ok(()),
            None => Err(self
                .keys
                .last_error()
                .unwrap_or_else(|| "key set not loaded yet".into())),
        }
    }
}

/// Retries until the key set has loaded (or the authenticator is gone).
async fn load(keys: Weak<RemoteJwks>, issuer: String) {
    let mut delay = FIRST_RETRY;
    loop {
        let Some(remote) = keys.upgrade() else { return };
        if remote.current().is_some() {
            return;
        }
        match remote.refresh().await {
            Ok(set) => {
                tracing::info!(issuer, keys = set.keys().len(), "OIDC key set loaded");
                return;
            }
            Err(error) => tracing::warn!(
                issuer,
                error,
                retry_in = ?delay,
                "OIDC key set not loaded: tokens are answered 503 until it is"
            ),
        }
        drop(remote);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RETRY);
    }
}

/// Claims → `User`, as k8s.io/apiserver's claim mappings do.
fn user(settings: &OidcSettings, claims: &Claims) -> Result<User, String> {
    let claim = settings.username_claim.as_str();
    let username = match claims.get(claim) {
        Some(Value::String(name)) => name,
        Some(other) => {
            return Err(format!(
                "username claim {claim:?} is {}, not a string",
                jwt::json_type(other)
            ))
        }
        None => return Err(format!("no username claim {claim:?}")),
    };
    if username.is_empty() {
        return Err(format!("username claim {claim:?} is empty"));
    }
    if claim == "email" {
        match claims.get("email_verified") {
            None | Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => return Err("email not verified".into()),
            Some(other) => {
                return Err(format!(
                    "email_verified is {}, not a boolean",
                    jwt::json_type(other)
                ))
            }
        }
    }
    let groups = groups(settings, claims)?;
    let mut extra = BTreeMap::new();
    if let Some(Value::String(jti)) = claims.get("jti") {
        extra.insert(CREDENTIAL_ID.to_owned(), vec![format!("JTI={jti}")]);
    }
    Ok(User {
        name: format!("{}{username}", settings.username_prefix),
        uid: String::new(),
        groups: groups.into(),
        extra,
    })
}

/// The groups claim: absent (no groups), a string, or an array of strings.
fn groups(settings: &OidcSettings, claims: &Claims) -> Result<Vec<String>, String> {
    let claim = settings.groups_claim.as_str();
    if claim.is_empty() {
        return Ok(Vec::new());
    }
    let prefixed = |g: &str| format!("{}{g}", settings.groups_prefix);
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(group)) => Ok(vec![prefixed(group)]),
        Some(Value::Array(groups)) => groups
            .iter()
            .map(|g| match g {
                Value::String(g) => Ok(prefixed(g)),
                other => Err(format!(
                    "groups claim {claim:?} holds {}, not strings",
                    jwt::json_type(other)
                )),
            })
            .collect(),
        Some(other) => Err(format!(
            "groups claim {claim:?} is {}, not a string or an array of strings",
            jwt::json_type(other)
        )),
    }
}

// === fetching ===

fn https_client(ca_file: Option<&std::path::Path>) -> Result<HttpsClient, AuthnError> {
    let provider = Arc::new(tls::provider::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AuthnError::Oidc(format!("TLS: {e}")))?;
    let config = match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| AuthnError::Oidc(format!("--oidc-ca-file {}: {e}", path.display())))?;
            let roots = tls::ca_bundle(path, &pem)
                .map_err(|e| AuthnError::Oidc(format!("--oidc-ca-file {e}")))?;
            builder.with_root_certificates(roots)
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder
                .with_platform_verifier()
                .map_err(|e| AuthnError::Oidc(format!("system roots: {e}")))?
        }
    }
    .with_no_client_auth();
    tls::require_fips("the --oidc-issuer client", config.fips())
        .map_err(|e| AuthnError::Oidc(e.to_string()))?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// Discovery (once it has succeeded, its `jwks_uri` is kept), then the key set.
async fn fetch_keys(
    client: &HttpsClient,
    issuer: &str,
    jwks_uri: &Mutex<Option<String>>,
) -> Result<Vec<u8>, String> {
    let known = jwks_uri
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    let uri = match known {
        Some(uri) => uri,
        None => {
            let uri = discover(client, issuer).await?;
            *jwks_uri
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(uri.clone());
            uri
        }
    };
    get(client, &uri, jwt::MAX_JWKS_BYTES).await
}

/// The issuer's `jwks_uri`, from its discovery document.
async fn discover(client: &HttpsClient, issuer: &str) -> Result<String, String> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let body = get(client, &url, MAX_DISCOVERY_BYTES).await?;
    let document: Value =
        serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))?;
    match document.get("issuer") {
        Some(Value::String(found)) if found == issuer => {}
        found => {
            return Err(format!(
                "{url}: issuer {found:?} is not {issuer:?} (they must match exactly)"
            ))
        }
    }
    match document.get("jwks_uri") {
        Some(Value::String(uri)) if uri.starts_with("https://") => Ok(uri.clone()),
        found => Err(format!("{url}: jwks_uri {found:?} is not an https URL")),
    }
}

/// GET `url`; the body if the answer is 200 and at most `limit` bytes.
async fn get(client: &HttpsClient, url: &str, limit: usize) -> Result<Vec<u8>, String> {
    // No Accept header, as Go's client sends none: the apiserver answers a key set
    // request accepting only application/json with 406 (it is application/jwk-set+json).
    let request = http::Request::get(url)
        .body(Empty::new())
        .map_err(|e| format!("{url}: {e}"))?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
        let status = response.status();
        if status != http::StatusCode::OK {
            return Err(format!("GET {url}: {status}"));
        }
        let body = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        Ok(body.to_bytes().to_vec())
    };
    tokio::time::timeout(FETCH_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("GET {url}: no answer within {FETCH_TIMEOUT:?}"))?
}

/// An error and its causes, one line (hyper's own message is only "client error").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
