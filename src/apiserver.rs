//! The apiserver client shared by authentication and authorization.
//!
//! Wraps a kube `Client` with what a sidecar in every pod owes the apiserver: a
//! client-side token bucket (`--kube-api-qps`/`--kube-api-burst`, client-go's
//! semantics), a cap on reviews in flight (`--max-inflight-reviews`, so a thundering
//! herd of distinct tokens cannot flood it), retries with jittered exponential backoff
//! on retryable failures (429, 5xx, connection errors), all inside one hard time budget
//! per review (`--apiserver-timeout`: waiting for the bucket, a slot and retries
//! included, so a backlog turns into 503s rather than a growing queue), and a record of
//! whether the apiserver answered lately, for `/readyz`.

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

use crate::metrics::Metrics;

/// Retries after the first attempt, within `--apiserver-timeout`.
const MAX_RETRIES: u32 = 3;
/// First backoff; doubled each retry, with ±50% jitter.
const BACKOFF: Duration = Duration::from_millis(50);

/// How often `/readyz` re-checks the apiserver when no review has told us lately.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// How long the apiserver may go unanswered before `/readyz` fails: one failed probe
/// or review is a blip, not an outage.
const UNREACHABLE_GRACE: Duration = Duration::from_secs(5);

/// Client-side limit on reviews sent to the apiserver (client-go's QPS/burst).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateLimit {
    Unlimited,
    TokenBucket { qps: f64, burst: u32 },
}

impl RateLimit {
    /// client-go semantics: 0 means its defaults (5 QPS, burst 10); negative, no limit.
    pub fn from_flags(qps: f32, burst: u32) -> Self {
        if qps < 0.0 {
            return Self::Unlimited;
        }
        let qps = if qps == 0.0 { 5.0 } else { f64::from(qps) };
        let burst = if burst == 0 { 10 } else { burst };
        Self::TokenBucket { qps, burst }
    }
}

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
}

/// Why the apiserver client could not be built at startup.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("--kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error(
        "no Kubernetes API configuration: not running in a cluster, and no usable \
         --kubeconfig, $KUBECONFIG or ~/.kube/config ({0})"
    )]
    NotFound(String),
    #[error("building the Kubernetes client: {0}")]
    Build(String),
}

/// The apiserver, as the proxy uses it.
pub struct Apiserver {
    client: Client,
    limiter: Option<TokenBucket>,
    inflight: Semaphore,
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
                    .map_err(|e| ClientError::NotFound(format!("{in_cluster}; {e}")))?,
            },
        };
        config.connect_timeout = Some(timeout);
        config.read_timeout = Some(timeout);
        config.write_timeout = Some(timeout);
        let client = Client::try_from(config).map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(Some(Self::new(client, settings, metrics)))
    }

    /// Wraps an existing client (tests, benches); `settings.kubeconfig` and `fallback`
    /// are not used. Review latency and errors go to `metrics`.
    pub fn new(client: Client, settings: &ApiserverSettings, metrics: Arc<Metrics>) -> Self {
        let timeout = settings.timeout;
        let limiter = match settings.rate_limit {
            RateLimit::Unlimited => None,
            RateLimit::TokenBucket { qps, burst } => Some(TokenBucket::new(qps, burst)),
        };
        Self {
            client,
            limiter,
            inflight: Semaphore::new(settings.max_inflight.clamp(1, Semaphore::MAX_PERMITS)),
            timeout,
            unreachable_since: Mutex::new(None),
            metrics,
        }
    }

    /// POSTs a TokenReview.
    pub async fn token_review(&self, review: &TokenReview) -> Result<TokenReview, ReviewError> {
        self.create("tokenreview", review).await
    }

    /// POSTs a SubjectAccessReview.
    pub async fn subject_access_review(
        &self,
        review: &SubjectAccessReview,
    ) -> Result<SubjectAccessReview, ReviewError> {
        self.create("subjectaccessreview", review).await
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

    async fn create<K>(&self, kind: &'static str, object: &K) -> Result<K, ReviewError>
    where
        K: kube::Resource<Scope = kube::core::ClusterResourceScope>
            + serde::Serialize
            + serde::de::DeserializeOwned
            + Clone
            + fmt::Debug,
        K::DynamicType: Default,
    {
        let started = Instant::now();
        let result =
            match tokio::time::timeout(self.timeout, self.create_with_retries(object)).await {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(error)) => Err(ReviewError::Api(error)),
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

    async fn create_with_retries<K>(&self, object: &K) -> Result<K, kube::Error>
    where
        K: kube::Resource<Scope = kube::core::ClusterResourceScope>
            + serde::Serialize
            + serde::de::DeserializeOwned
            + Clone
            + fmt::Debug,
        K::DynamicType: Default,
    {
        // Closed only if the semaphore is dropped, which cannot happen while `self` lives.
        let _slot = self.inflight.acquire().await;
        let api: Api<K> = Api::all(self.client.clone());
        let mut attempt = 0;
        loop {
            if let Some(limiter) = &self.limiter {
                limiter.acquire().await;
            }
            match api.create(&PostParams::default(), object).await {
                Err(error) if attempt < MAX_RETRIES && retryable(&error) => {
                    tracing::debug!(%error, attempt, "review failed; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                result => return result,
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

/// client-go's token bucket: `qps` tokens a second, up to `burst` saved up. Callers
/// reserve a token and sleep until it is due, so waiting is fair and bounded by the
/// caller's own timeout.
struct TokenBucket {
    qps: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            qps,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    async fn acquire(&self) {
        let wait = {
            // A poisoned lock only means another waiter panicked; the numbers are fine.
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let (tokens, last) = *state;
            let refilled =
                (tokens + now.duration_since(last).as_secs_f64() * self.qps).min(self.burst);
            let left = refilled - 1.0;
            *state = (left, now);
            if left >= 0.0 {
                return;
            }
            Duration::from_secs_f64(-left / self.qps)
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter() {
        for attempt in 0..4 {
            let base = BACKOFF.as_secs_f64() * f64::from(1u32 << attempt);
            for _ in 0..20 {
                let wait = backoff(attempt).as_secs_f64();
                assert!(wait >= base * 0.5 && wait < base * 1.5, "{attempt}: {wait}");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn token_bucket_allows_a_burst_then_paces() {
        let bucket = TokenBucket::new(5.0, 10);
        let start = Instant::now();
        for _ in 0..10 {
            bucket.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst is free");
        for _ in 0..5 {
            bucket.acquire().await;
        }
        let paced = start.elapsed().as_secs_f64();
        assert!(
            (paced - 1.0).abs() < 0.01,
            "5 more at 5 qps take 1s, took {paced}"
        );
    }
}
