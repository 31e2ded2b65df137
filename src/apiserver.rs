//! The apiserver client shared by authentication and authorization.
//!
//! Wraps a kube `Client` with what a sidecar in every pod owes the apiserver: a
//! client-side token bucket (`--kube-api-qps`/`--kube-api-burst`, client-go's
//! semantics), a cap on reviews in flight (`--max-inflight-reviews`, so a thundering
//! herd of distinct tokens cannot flood it) and on reviews per client address
//! (`--max-reviews-per-peer`, so one client cannot queue up everybody's share),
//! retries with jittered exponential backoff on retryable failures (429, 5xx,
//! connection errors), all inside one hard time budget per review
//! (`--apiserver-timeout`: waiting for the bucket, a slot and retries included, so a
//! backlog turns into 503s rather than a growing queue), and a record of whether the
//! apiserver answered lately, for `/readyz`.
//!
//! A review that is not sent costs nothing (`limit.rs`): refused at once when the rate
//! limit has no room for it within its budget or its client is at its cap, and its
//! token given back when it is dropped while waiting. Waiting reviews get their tokens
//! by turns, one client address after another, with renewals of known identities every
//! other turn (`fair.rs`), so a few busy addresses cannot starve the rest. Only misses
//! and renewals get here: cached answers and `--token-auth-file` hits are never limited.

mod fair;
mod limit;
mod queued;

use std::{
    fmt,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::api::{authentication::v1::TokenReview, authorization::v1::SubjectAccessReview};
use kube::{
    api::PostParams,
    config::{KubeConfigOptions, Kubeconfig},
    Api, Client,
};
use tokio::{sync::Semaphore, time::Instant};

use crate::cache::ReviewFailure;
use crate::metrics::{Limited, Metrics, Review};

pub(crate) use self::limit::Limit;
pub use self::limit::{RateLimit, Requester};
pub(crate) use self::queued::QueueClock;
use self::{
    fair::{FairBucket, Lane},
    limit::{LimitLog, PeerLimit},
};

/// Retries after the first attempt, within `--apiserver-timeout`.
const MAX_RETRIES: u32 = 3;
/// First backoff; doubled each retry, with ±50% jitter.
const BACKOFF: Duration = Duration::from_millis(50);

/// How often `/readyz` re-checks the apiserver when no review has told us lately.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// How long the apiserver may go unanswered before `/readyz` fails: one failed probe
/// or review is a blip, not an outage.
const UNREACHABLE_GRACE: Duration = Duration::from_secs(5);

/// How the apiserver is reached and how much of it the proxy may use.
#[derive(Debug, Clone)]
pub struct ApiserverSettings {
    /// `--kubeconfig`; else the in-cluster config, else `fallback`.
    pub kubeconfig: Option<PathBuf>,
    pub fallback: Fallback,
    /// `--kube-api-qps`, `--kube-api-burst`.
    pub rate_limit: RateLimit,
    /// `--apiserver-timeout`: the whole budget of one review.
    pub timeout: Duration,
    /// `--max-inflight-reviews`.
    pub max_inflight: usize,
    /// `--max-reviews-per-peer`: reviews waiting or in flight for one client address.
    pub max_per_peer: usize,
}

/// Where to look outside a cluster when `--kubeconfig` is not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// `$KUBECONFIG` or `~/.kube/config`: a developer's machine.
    UserKubeconfig,
    /// Nowhere: run without an apiserver (`--token-auth-file` and local policy decide).
    Standalone,
}

/// Why a review produced no answer. Never carries a token.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Api(#[source] kube::Error),
    /// Not sent: it would have waited past its budget, or its client is at its cap.
    #[error("not sent: {0}")]
    Limited(Limit),
}

/// Only the apiserver's own failures may let `--stale-if-error` stand in: a review the
/// proxy refused to send says nothing about the apiserver, and reviving an allow for it
/// would serve a revoked token or grant for as long as junk keeps the budget busy.
impl ReviewFailure for ReviewError {
    fn apiserver_failed(&self) -> bool {
        !matches!(self, Self::Limited(_))
    }
}

/// Why the apiserver client could not be built at startup.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("--kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error(
        "no Kubernetes API configuration: not running in a cluster, and no --kubeconfig, \
         $KUBECONFIG or ~/.kube/config to read ({0}). Give --kubeconfig=FILE, or run \
         standalone (offline): --token-auth-file=FILE to authenticate and --rbac-file=FILE \
         to authorize"
    )]
    NotFound(String),
    #[error("building the Kubernetes client: {0}")]
    Build(String),
}

/// In a FIPS build, the TLS configuration kube's client is built with (the same
/// `rustls_client_config`) must be in FIPS mode; the default build checks nothing.
fn fips_client(config: &kube::Config) -> Result<(), ClientError> {
    #[cfg(feature = "fips")]
    {
        use kube::client::ConfigExt;
        let build = |e: &dyn std::fmt::Display| ClientError::Build(e.to_string());
        let tls = config.rustls_client_config().map_err(|e| build(&e))?;
        crate::tls::require_fips("the apiserver client", tls.fips()).map_err(|e| build(&e))?;
    }
    let _ = config;
    Ok(())
}

/// The apiserver, as the proxy uses it.
pub struct Apiserver {
    client: Client,
    limiter: Option<Arc<FairBucket>>,
    inflight: Semaphore,
    peers: PeerLimit,
    limited: LimitLog,
    timeout: Duration,
    /// When the apiserver stopped answering; `None` while it answers.
    unreachable_since: Mutex<Option<Instant>>,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for Apiserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Apiserver")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Apiserver {
    /// Loads `--kubeconfig`, else the in-cluster config, else the fallback: with
    /// `Fallback::Standalone` no apiserver at all (`Ok(None)`), otherwise `$KUBECONFIG`
    /// or `~/.kube/config` (kube-rbac-proxy's order, plus the developer fallback).
    pub async fn connect(
        settings: &ApiserverSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Self>, ClientError> {
        let kubeconfig = settings.kubeconfig.as_deref();
        if kubeconfig.is_none()
            && settings.fallback == Fallback::Standalone
            && kube::Config::incluster().is_err()
        {
            return Ok(None);
        }
        let timeout = settings.timeout;
        let mut config = match kubeconfig {
            Some(path) => {
                let file_error = |message: String| ClientError::Kubeconfig {
                    path: path.display().to_string(),
                    message,
                };
                let kubeconfig =
                    Kubeconfig::read_from(path).map_err(|e| file_error(e.to_string()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| file_error(e.to_string()))?
            }
            None => match kube::Config::incluster() {
                Ok(config) => config,
                Err(in_cluster) => kube::Config::from_kubeconfig(&KubeConfigOptions::default())
                    .await
                    .map_err(|e| {
                        // kube quotes the path twice ('"~/.kube/config"').
                        let e = e.to_string().replace("'\"", "'").replace("\"'", "'");
                        ClientError::NotFound(format!("{in_cluster}; {e}"))
                    })?,
            },
        };
        config.connect_timeout = Some(timeout);
        config.read_timeout = Some(timeout);
        config.write_timeout = Some(timeout);
        fips_client(&config)?;
        let client = Client::try_from(config).map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(Some(Self::new(client, settings, metrics)))
    }

    /// Wraps an existing client (tests, benches); `settings.kubeconfig` and `fallback`
    /// are not used. Review latency and errors go to `metrics`.
    pub fn new(client: Client, settings: &ApiserverSettings, metrics: Arc<Metrics>) -> Self {
        let timeout = settings.timeout;
        let limiter = match settings.rate_limit {
            RateLimit::Unlimited => None,
            RateLimit::TokenBucket { qps, burst } => Some(FairBucket::new(qps, burst)),
        };
        Self {
            client,
            limiter,
            inflight: Semaphore::new(settings.max_inflight.clamp(1, Semaphore::MAX_PERMITS)),
            peers: PeerLimit::new(settings.max_per_peer),
            limited: LimitLog::default(),
            timeout,
            unreachable_since: Mutex::new(None),
            metrics,
        }
    }

    /// POSTs a TokenReview for `requester`'s request.
    pub async fn token_review(
        &self,
        review: &TokenReview,
        requester: Requester,
    ) -> Result<TokenReview, ReviewError> {
        self.create(Review::TokenReview, review, requester).await
    }

    /// POSTs a SubjectAccessReview for `requester`'s request.
    pub async fn subject_access_review(
        &self,
        review: &SubjectAccessReview,
        requester: Requester,
    ) -> Result<SubjectAccessReview, ReviewError> {
        self.create(Review::SubjectAccessReview, review, requester)
            .await
    }

    /// GETs a ConfigMap (the cluster's authentication settings, `authn::lookup`);
    /// `Ok(None)` if there is none. Not a review: no rate limit, no retries (the lookup
    /// reads it again soon), bounded by `--apiserver-timeout`.
    pub async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<k8s_openapi::api::core::v1::ConfigMap>, ReviewError> {
        let api = kube::Api::namespaced(self.client.clone(), namespace);
        match tokio::time::timeout(self.timeout, api.get_opt(name)).await {
            Ok(result) => result.map_err(ReviewError::Api),
            Err(_) => Err(ReviewError::Timeout(self.timeout)),
        }
    }

    /// GETs `path` (the service-account issuer's discovery document and key set) with
    /// the proxy's own credentials, within --apiserver-timeout. Not rate limited: the
    /// caller fetches rarely and limits how often.
    pub(crate) async fn get_text(&self, path: &str) -> Result<String, ReviewError> {
        let request = http::Request::get(path)
            .body(Vec::new())
            .map_err(|e| ReviewError::Api(kube::Error::HttpError(e)))?;
        match tokio::time::timeout(self.timeout, self.client.request_text(request)).await {
            Ok(answer) => answer.map_err(ReviewError::Api),
            Err(_) => Err(ReviewError::Timeout(self.timeout)),
        }
    }

    /// False once the apiserver has failed every review and probe for
    /// `UNREACHABLE_GRACE` (for `/readyz`).
    pub fn is_reachable(&self) -> bool {
        self.unreachable_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none_or(|since| since.elapsed() < UNREACHABLE_GRACE)
    }

    /// Records whether the apiserver just answered; logs the transitions.
    fn record(&self, answered: bool) {
        let mut since = self
            .unreachable_since
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match (answered, *since) {
            (true, Some(_)) => {
                tracing::info!("apiserver reachable again");
                *since = None;
            }
            (false, None) => {
                tracing::warn!("apiserver unreachable");
                *since = Some(Instant::now());
            }
            _ => {}
        }
    }

    /// Checks reachability every few seconds, so `/readyz` is right even when idle.
    pub fn spawn_probe(self: &Arc<Self>) {
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(PROBE_INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(this) = this.upgrade() else { return };
                let answered =
                    tokio::time::timeout(this.timeout, this.client.apiserver_version()).await;
                this.record(matches!(answered, Ok(Ok(_))));
            }
        });
    }

    async fn create<K>(
        &self,
        kind: Review,
        object: &K,
        requester: Requester,
    ) -> Result<K, ReviewError>
    where
        K: kube::Resource<Scope = kube::core::ClusterResourceScope>
            + serde::Serialize
            + serde::de::DeserializeOwned
            + Clone
            + fmt::Debug,
        K::DynamicType: Default,
    {
        let started = Instant::now();
        // Held until the review ends or is dropped (its client went away).
        let Some(_place) = self.peers.admit(requester) else {
            return Err(self.limited(kind, Limit::Peer, requester));
        };
        let deadline = started + self.timeout;
        let attempts = self.create_with_retries(object, Lane::of(requester), deadline);
        let result = match tokio::time::timeout_at(deadline, attempts).await {
            Ok(Err(ReviewError::Limited(limit))) => {
                return Err(self.limited(kind, limit, requester));
            }
            Ok(result) => result,
            Err(_) => Err(ReviewError::Timeout(self.timeout)),
        };
        // A 4xx is still an answer from a live apiserver; anything else is not.
        let answered = match &result {
            Ok(_) => true,
            Err(ReviewError::Api(kube::Error::Api(status))) => status.code < 500,
            Err(_) => false,
        };
        self.record(answered);
        self.metrics
            .review(kind, started.elapsed().as_secs_f64(), result.is_ok());
        result
    }

    /// A review not sent says nothing about the apiserver: it is counted and logged
    /// (at most every 30 s), not recorded as an error or a latency.
    fn limited(&self, kind: Review, limit: Limit, requester: Requester) -> ReviewError {
        let reason = match limit {
            Limit::Peer => Limited::Peer,
            Limit::Rate => Limited::Rate,
        };
        self.metrics.review_limited(kind, reason);
        if let Some(unlogged) = self.limited.record() {
            let peer = match requester {
                Requester::Peer(addr) => Some(addr),
                Requester::Process | Requester::Renewal => None,
            };
            tracing::warn!(
                review = kind.as_str(),
                reason = limit.as_str(),
                peer = peer.map(tracing::field::display),
                limited_since_last_line = unlogged,
                "limiting reviews: {limit}; answering 503 without asking the apiserver \
                 (counted in scrape_guard_reviews_limited_total, logged at most every 30s)"
            );
        }
        ReviewError::Limited(limit)
    }

    /// Sends the review, retrying within `deadline`. Each attempt takes a token at
    /// `lane`'s turn; an attempt whose turn would not come by `deadline` is not made:
    /// the first is `Limited`, a retry leaves the last failure standing.
    async fn create_with_retries<K>(
        &self,
        object: &K,
        lane: Lane,
        deadline: Instant,
    ) -> Result<K, ReviewError>
    where
        K: kube::Resource<Scope = kube::core::ClusterResourceScope>
            + serde::Serialize
            + serde::de::DeserializeOwned
            + Clone
            + fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::all(self.client.clone());
        let mut attempt = 0;
        let mut failed = None;
        let mut slot = None;
        loop {
            let waiting = queued::Waiting::start();
            if let Some(limiter) = &self.limiter {
                if let Err(limit) = limiter.acquire(lane, deadline).await {
                    return Err(match failed {
                        None => ReviewError::Limited(limit),
                        Some(error) => ReviewError::Api(error),
                    });
                }
            }
            // The token first, then a slot: a first-come wait for a slot before the
            // turns would undo them. Closed only if the semaphore is dropped, which
            // cannot happen while `self` lives.
            if slot.is_none() {
                slot = Some(self.inflight.acquire().await);
            }
            drop(waiting);
            match api.create(&PostParams::default(), object).await {
                Err(error) if attempt < MAX_RETRIES && retryable(&error) => {
                    tracing::debug!(%error, attempt, "review failed; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                    failed = Some(error);
                }
                result => return result.map_err(ReviewError::Api),
            }
        }
    }
}

/// Failures worth another try: throttling, server errors, broken connections.
fn retryable(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// `BACKOFF · 2^attempt`, scaled by a random factor in [0.5, 1.5) so that many proxies
/// retrying at once spread out.
fn backoff(attempt: u32) -> Duration {
    let mut byte = [0u8; 1];
    let _ = aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut byte);
    let jitter = 0.5 + f64::from(byte[0]) / 256.0;
    BACKOFF.saturating_mul(1 << attempt.min(10)).mul_f64(jitter)
}

#[cfg(test)]
mod tests;
