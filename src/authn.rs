//! Authentication: who is calling? A bearer token, from `--token-auth-file` or
//! reviewed by the apiserver.
//!
//! The token is parsed into `BearerToken`, whose `Debug` is redacted so it cannot leak
//! into a log line by accident. It is looked up by HMAC in the cache; on a miss one
//! TokenReview runs for all concurrent requests with that token. Rejections are cached
//! too (for `--auth-negative-cache-ttl`), so a client retrying a bad token cannot make
//! us send one TokenReview per request. An apiserver error is never cached and never
//! lets the request through.
//!
//! A token in use is renewed ahead of its expiry (`cache::Renewal`): a request that
//! reads its answer past half `--auth-cache-ttl` is served from the cache and starts
//! one TokenReview in the background, at the renewals' turn (`Requester::Renewal`), so
//! a scraper whose token authenticated never waits behind a junk flood. That review
//! holds its own copy of the token, like any TokenReview, and drops it with the request.
//!
//! With `--service-account-token-verification=local` (`service_account.rs`), a miss is
//! first judged in the proxy: a service-account token of the cluster's issuer is
//! verified against its keys and cached like a TokenReview's answer; any other token
//! still gets its TokenReview.

pub(crate) mod front_proxy;
pub mod jwt;
pub(crate) mod lookup;
mod oidc;
pub(crate) mod service_account;
pub(crate) mod token_file;

use std::{fmt, path::PathBuf, sync::Arc};

use http::{header, HeaderMap};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};

use crate::{
    apiserver::{Apiserver, Requester, ReviewError},
    cache::{CacheSettings, Interner, Key, Served, TokenHasher, Verdict, Verdicts},
    error::ProxyError,
    identity::{Source, User},
    metrics::{Authn, Metrics},
    reload::Watched,
    tls::PeerCertificate,
};

use self::{
    front_proxy::FrontProxy,
    oidc::Oidc,
    service_account::{LocalVerifier, Outcome},
    token_file::TokenFile,
};
pub use self::{oidc::OidcSettings, service_account::ServiceAccountVerification};

/// A bearer token, borrowed from the request's headers: the only owned copy is the one
/// sent in a TokenReview, and it is dropped with that request. `Debug` never shows it.
pub struct BearerToken<'a>(&'a str);

impl fmt::Debug for BearerToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BearerToken(<redacted, {} bytes>)", self.0.len())
    }
}

impl<'a> BearerToken<'a> {
    /// The token from the request's `Authorization: Bearer <token>` header.
    ///
    /// Exactly one Authorization header, scheme `Bearer` in any case, one space-free
    /// token of visible ASCII. Anything else is a 401: a malformed credential must not
    /// be mistaken for an anonymous request.
    pub fn from_headers(headers: &'a HeaderMap) -> Result<Self, ProxyError> {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Err(unauthenticated("no bearer token"));
        };
        if values.next().is_some() {
            return Err(unauthenticated("more than one Authorization header"));
        }
        let value = value
            .to_str()
            .map_err(|_| unauthenticated("Authorization header is not visible ASCII"))?;
        Self::from_authorization(value)
    }

    /// The token from an `Authorization` header value (`Bearer <token>`).
    pub fn from_authorization(value: &'a str) -> Result<Self, ProxyError> {
        let (scheme, token) = value
            .trim()
            .split_once(' ')
            .ok_or_else(|| unauthenticated("Authorization header is not 'Bearer <token>'"))?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(unauthenticated("Authorization scheme is not Bearer"));
        }
        let token = token.trim_start_matches(' ');
        if token.is_empty() {
            return Err(unauthenticated("empty bearer token"));
        }
        Self::new(token)
    }

    /// A bare token (from a file): non-empty, visible ASCII, no whitespace.
    pub fn new(token: &'a str) -> Result<Self, ProxyError> {
        if token.is_empty() {
            return Err(unauthenticated("empty bearer token"));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(unauthenticated(
                "bearer token contains whitespace or non-ASCII",
            ));
        }
        Ok(Self(token))
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

fn unauthenticated(why: &str) -> ProxyError {
    ProxyError::Unauthenticated(why.to_owned())
}

/// A cached TokenReview answer.
#[derive(Debug, Clone)]
enum Identity {
    Authenticated(Arc<User>),
    /// A service-account token verified in the proxy, without a TokenReview.
    Verified(Arc<User>),
    Rejected(Arc<str>),
}

impl Verdict for Identity {
    fn is_positive(&self) -> bool {
        matches!(self, Self::Authenticated(_) | Self::Verified(_))
    }
}

/// Distinct group lists (and rejection reasons) shared between cached answers; more
/// are stored unshared.
const INTERNED_GROUP_LISTS: usize = 1024;

/// How the authenticator is configured.
#[derive(Debug, Clone)]
pub struct AuthnSettings {
    /// `--auth-token-audiences` (trimmed, empty ones dropped): sent in every review and
    /// required in its answer.
    pub audiences: Vec<String>,
    /// `--token-auth-file`, checked before any TokenReview.
    pub token_file: Option<PathBuf>,
    /// `--auth-cache-ttl`, `--auth-negative-cache-ttl`, `--stale-if-error`.
    pub cache: CacheSettings,
    /// `--service-account-token-verification`, `--service-account-token-max-lifetime`.
    pub service_accounts: ServiceAccountVerification,
    /// `--oidc-*`: tokens are verified as ID tokens of this issuer instead of reviewed.
    pub oidc: Option<OidcSettings>,
}

/// Why the authenticator could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    /// The message names the file and line.
    #[error("--token-auth-file {0}")]
    TokenFile(String),
    #[error("no randomness for the token cache key")]
    Randomness,
    /// The message names the flag.
    #[error("{0}")]
    Oidc(String),
}

/// Bearer token → `User`: the static token file first, then a cached TokenReview.
///
/// Each listener has its own (`with_metrics`), recording its outcomes under its name;
/// they all share one token file, one TokenReview cache and its key, so a token is
/// reviewed once whichever listener it is sent to.
pub struct Authenticator {
    reviews: Arc<TokenReviews>,
    metrics: Arc<Metrics>,
    /// Front-proxy (requestheader) authentication, asked first (`front_proxy.rs`).
    front_proxy: Option<Arc<FrontProxy>>,
}

/// What every listener's authenticator shares.
struct TokenReviews {
    apiserver: Option<Arc<Apiserver>>,
    tokens: Option<Arc<Watched<TokenFile>>>,
    audiences: Vec<String>,
    /// `--service-account-token-verification=local` with an apiserver to fetch keys from.
    local: Option<LocalVerifier>,
    hasher: Arc<TokenHasher>,
    cache: Verdicts<Identity, ReviewError>,
    groups: Interner<[String]>,
    rejections: Interner<str>,
    /// Replaces the TokenReview when set.
    oidc: Option<Oidc>,
}

impl Authenticator {
    /// Loads `--token-auth-file` (kept fresh from then on). `apiserver: None` is
    /// standalone mode: only the token file authenticates.
    pub fn new(
        settings: &AuthnSettings,
        apiserver: Option<Arc<Apiserver>>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, AuthnError> {
        let hasher = Arc::new(TokenHasher::random().map_err(|_| AuthnError::Randomness)?);
        let tokens = match &settings.token_file {
            Some(path) => {
                let hasher = Arc::clone(&hasher);
                let tokens = Watched::load(
                    "--token-auth-file",
                    vec![path.clone()],
                    move |files| TokenFile::parse(files, &hasher),
                    &metrics,
                )
                .map_err(|e| AuthnError::TokenFile(e.to_string()))?;
                tokens.spawn_reloader();
                Some(tokens)
            }
            None => None,
        };
        let local = match (settings.service_accounts, &apiserver) {
            (ServiceAccountVerification::Local { max_lifetime }, Some(apiserver)) => Some(
                LocalVerifier::new(Arc::clone(apiserver), &settings.audiences, max_lifetime),
            ),
            _ => None,
        };
        let oidc = match &settings.oidc {
            Some(oidc) => Some(Oidc::start(oidc, &metrics)?),
            None => None,
        };
        let reviews = TokenReviews {
            oidc,
            apiserver,
            local,
            tokens,
            audiences: settings.audiences.clone(),
            hasher,
            cache: Verdicts::new(settings.cache),
            groups: Interner::new(INTERNED_GROUP_LISTS),
            rejections: Interner::new(INTERNED_GROUP_LISTS),
        };
        Ok(Self {
            reviews: Arc::new(reviews),
            metrics,
            front_proxy: None,
        })
    }

    /// The same, with front-proxy authentication asked first.
    pub(crate) fn with_front_proxy(self, front_proxy: Option<Arc<FrontProxy>>) -> Self {
        Self {
            front_proxy,
            ..self
        }
    }

    /// Removes the front-proxy headers in force from a request about to be forwarded,
    /// whether or not they were honoured.
    pub(crate) fn strip_front_proxy_headers(&self, headers: &mut HeaderMap) {
        if let Some(front_proxy) = &self.front_proxy {
            front_proxy.strip(headers);
        }
    }

    /// The same token file and caches, recording outcomes in `metrics` (another
    /// listener's view).
    pub(crate) fn with_metrics(&self, metrics: Arc<Metrics>) -> Self {
        Self {
            reviews: Arc::clone(&self.reviews),
            metrics,
            front_proxy: self.front_proxy.clone(),
        }
    }

    /// Who is calling, in k8s.io/apiserver's order (its union authenticator): a front
    /// proxy's headers (a certificate of the requestheader CA with an allowed CN, and
    /// a username header), else the user a certificate of the client CA names, else
    /// the bearer token's. With OIDC a client-CA certificate does not count, as in
    /// kube-rbac-proxy, whose OIDC authenticator reads nothing but the token.
    pub(crate) async fn authenticate_caller(
        &self,
        headers: &HeaderMap,
        certificate: &PeerCertificate,
        requester: Requester,
    ) -> Result<Arc<User>, ProxyError> {
        let proxied = match (&self.front_proxy, &certificate.front_proxy) {
            (Some(front_proxy), Some(cn)) => front_proxy.user(cn, headers),
            _ => None,
        };
        if let Some(user) = proxied.map(Arc::new).or_else(|| {
            certificate
                .user
                .clone()
                .filter(|_| self.reviews.oidc.is_none())
        }) {
            self.metrics
                .authenticated(Authn::Authenticated, Source::Certificate);
            return Ok(user);
        }
        self.authenticate(headers, requester).await
    }

    /// Who sent this request. 401 if nobody we can vouch for; 503 if we cannot ask,
    /// including a TokenReview refused before it was sent (the rate limit,
    /// `requester`'s cap).
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        requester: Requester,
    ) -> Result<Arc<User>, ProxyError> {
        self.authenticate_token(BearerToken::from_headers(headers)?, requester)
            .await
    }

    /// Who this token belongs to.
    pub async fn authenticate_token(
        &self,
        token: BearerToken<'_>,
        requester: Requester,
    ) -> Result<Arc<User>, ProxyError> {
        let reviews = &*self.reviews;
        let key = reviews.hasher.key(token.as_bytes());
        if let Some(user) = reviews.tokens.as_ref().and_then(|t| t.get().lookup(&key)) {
            self.metrics
                .authenticated(Authn::Authenticated, Source::Local);
            return Ok(user);
        }
        if let Some(oidc) = &reviews.oidc {
            return self.oidc(oidc, &token).await;
        }
        let Some(apiserver) = &reviews.apiserver else {
            self.metrics
                .authenticated(Authn::Rejected, Source::Standalone);
            return Err(unauthenticated(
                "unknown token (standalone: not in --token-auth-file)",
            ));
        };
        // Run only on a miss, by the one caller the others wait for.
        let review = reviews.review(apiserver, reviews.request(&token), requester);
        let (identity, served) = match reviews.cache.get_or_review(key, review).await {
            Ok(answer) => answer,
            Err(error) => {
                self.metrics.authenticated(Authn::Error, Source::Apiserver);
                return Err(ProxyError::ApiserverUnavailable(format!(
                    "TokenReview: {error}"
                )));
            }
        };
        let source = match served {
            Served::Reviewed if matches!(identity, Identity::Verified(_)) => Source::Local,
            Served::Cached => Source::Cache,
            Served::Ageing => {
                self.renew(apiserver, key, &token);
                Source::Cache
            }
            Served::Reviewed => Source::Apiserver,
            Served::Stale => Source::Stale,
        };
        match identity {
            Identity::Authenticated(user) | Identity::Verified(user) => {
                if served == Served::Stale {
                    tracing::warn!(
                        user = user.name,
                        "apiserver unavailable: reusing a recent authentication (--stale-if-error)"
                    );
                }
                self.metrics.authenticated(Authn::Authenticated, source);
                Ok(user)
            }
            Identity::Rejected(why) => {
                self.metrics.authenticated(Authn::Rejected, source);
                Err(ProxyError::Unauthenticated(why.to_string()))
            }
        }
    }

    /// Verifies `token` as an OIDC ID token: 401 if it is not a good one, 503 while the
    /// issuer's keys cannot be had.
    async fn oidc(&self, oidc: &Oidc, token: &BearerToken<'_>) -> Result<Arc<User>, ProxyError> {
        match oidc.authenticate(token.0).await {
            Ok(user) => {
                self.metrics
                    .authenticated(Authn::Authenticated, Source::Oidc);
                Ok(Arc::new(user))
            }
            Err(oidc::Refusal::Invalid(why)) => {
                self.metrics.authenticated(Authn::Rejected, Source::Oidc);
                Err(ProxyError::Unauthenticated(why))
            }
            Err(oidc::Refusal::Unavailable(why)) => {
                self.metrics.authenticated(Authn::Error, Source::Oidc);
                Err(ProxyError::ApiserverUnavailable(why))
            }
        }
    }

    /// `None` without OIDC; else whether its key set has loaded, and if not why.
    pub(crate) fn oidc_ready(&self) -> Option<Result<(), String>> {
        self.reviews.oidc.as_ref().map(Oidc::ready)
    }

    /// Reviews `token` again in the background, unless its renewal is under way.
    fn renew(&self, apiserver: &Arc<Apiserver>, key: Key, token: &BearerToken<'_>) {
        let Some(renewal) = self.reviews.cache.claim_renewal(key) else {
            return;
        };
        let (reviews, apiserver) = (Arc::clone(&self.reviews), Arc::clone(apiserver));
        let request = reviews.request(token);
        tokio::spawn(async move {
            let review = reviews.review(&apiserver, request, Requester::Renewal);
            reviews.cache.renew(renewal, review).await;
        });
    }

    /// Tokens currently cached (positive and negative), for every listener.
    pub fn cached(&self) -> u64 {
        self.reviews.cache.entry_count()
    }
}

// === impl TokenReviews ===

impl TokenReviews {
    /// The TokenReview for `token`: the one owned copy of it, dropped with the review.
    fn request(&self, token: &BearerToken<'_>) -> TokenReview {
        TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.0.to_owned()),
                audiences: (!self.audiences.is_empty()).then(|| self.audiences.clone()),
            },
            ..TokenReview::default()
        }
    }

    async fn review(
        &self,
        apiserver: &Apiserver,
        request: TokenReview,
        requester: Requester,
    ) -> Result<Identity, ReviewError> {
        if let Some(identity) = self.verify_locally(&request).await {
            return Ok(identity);
        }
        let answer = apiserver.token_review(&request, requester).await;
        // The request (and with it the token copy) is dropped here, before caching.
        drop(request);
        Ok(self.judge(answer?))
    }

    /// The token judged in the proxy (`--service-account-token-verification=local`);
    /// `None`: it needs a TokenReview.
    async fn verify_locally(&self, request: &TokenReview) -> Option<Identity> {
        let (local, token) = (self.local.as_ref()?, request.spec.token.as_deref()?);
        match local.verify(token).await {
            Outcome::Verified(user) => Some(Identity::Verified(Arc::new(User {
                groups: self.groups.intern(&user.groups),
                ..user
            }))),
            Outcome::Rejected(why) => Some(self.rejected(&why)),
            Outcome::Declined(why) => {
                tracing::trace!(why, "not verified locally: sending a TokenReview");
                None
            }
        }
    }

    /// A negative answer; the reasons repeat ("invalid bearer token"), so they are shared.
    fn rejected(&self, why: &str) -> Identity {
        Identity::Rejected(self.rejections.intern(why))
    }

    /// Turns a TokenReview answer into an identity, checking audiences ourselves too:
    /// an apiserver that ignores `spec.audiences` must not widen who gets in.
    fn judge(&self, review: TokenReview) -> Identity {
        let Some(status) = review.status else {
            return self.rejected("TokenReview returned no status");
        };
        if status.authenticated != Some(true) {
            let why = status
                .error
                .unwrap_or_else(|| "token not authenticated".into());
            return self.rejected(&why);
        }
        if !self.audiences.is_empty() {
            let reviewed = status.audiences.unwrap_or_default();
            if !reviewed.iter().any(|a| self.audiences.contains(a)) {
                return self.rejected(&format!(
                    "token audiences {reviewed:?} do not include any of {:?}",
                    self.audiences
                ));
            }
        }
        let Some(user) = status.user else {
            return self.rejected("TokenReview returned no user");
        };
        let name = user.username.unwrap_or_default();
        if name.is_empty() {
            return self.rejected("TokenReview returned an empty user name");
        }
        Identity::Authenticated(Arc::new(User {
            name,
            uid: user.uid.unwrap_or_default(),
            groups: self.groups.intern(&user.groups.unwrap_or_default()),
            extra: user.extra.unwrap_or_default(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(
                header::AUTHORIZATION,
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn bearer_parsing_table() {
        let table: &[(&[&[u8]], Option<&str>)] = &[
            (&[b"Bearer abc.def-ghi_jkl"], Some("abc.def-ghi_jkl")),
            (&[b"bearer abc"], Some("abc")),
            (&[b"BEARER abc"], Some("abc")),
            (&[b"Bearer  abc"], Some("abc")),
            (&[b"  Bearer abc  "], Some("abc")),
            (&[], None),
            (&[b""], None),
            (&[b"Bearer"], None),
            (&[b"Bearer "], None),
            (&[b"Basic dXNlcjpwYXNz"], None),
            (&[b"Bearerabc"], None),
            (&[b"Bearer abc def"], None),
            (&[b"Bearer abc\tdef"], None),
            (&[b"Bearer a", b"Bearer b"], None),
            (&[b"Bearer \xfftoken"], None),
        ];
        for (values, want) in table {
            let map = headers(values);
            let got = BearerToken::from_headers(&map);
            match (got, want) {
                (Ok(token), Some(want)) => assert_eq!(token.0, *want, "{values:?}"),
                (Err(ProxyError::Unauthenticated(_)), None) => {}
                (got, want) => panic!("{values:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn debug_never_shows_the_token() {
        let map = headers(&[b"Bearer s3cr3t"]);
        let token = BearerToken::from_headers(&map).unwrap();
        let shown = format!("{token:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_headers_never_panics(value in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                let mut map = HeaderMap::new();
                map.insert(header::AUTHORIZATION, value);
                if let Ok(token) = BearerToken::from_headers(&map) {
                    prop_assert!(!token.0.is_empty());
                    prop_assert!(!token.0.bytes().any(|b| b.is_ascii_whitespace()));
                }
            }
        }
    }
}
