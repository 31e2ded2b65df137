//! scrape-guard's own metrics, in Prometheus text format, at `/metrics` on
//! `--proxy-endpoints-port` (behind the same authentication and authorization as
//! scrapes: these numbers say who is calling and who is denied).
//!
//! Counters are updated on the request path with relaxed atomics (prometheus-client);
//! gauges that describe state (cache sizes, certificate expiry) are read at scrape time.
//!
//! With `--listeners-file` the series about one listener (its requests, decisions,
//! handshakes, certificate and files) carry a `listener` label: each listener's stages
//! record through their own [`Metrics::for_listener`] view of the one registry. What
//! the listeners share (reviews, caches, the build) has no such label, and neither has
//! anything while the flags define the only listener: those series look as they always
//! have.

use std::sync::Arc;

use prometheus_client::{
    encoding::{EncodeLabelSet, LabelSetEncoder},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

use crate::identity::Source;

/// The listener a series is about; `None` encodes no label at all.
#[derive(Debug, Clone, Default, Hash, PartialEq, Eq)]
struct ListenerLabel(Option<Arc<str>>);

impl EncodeLabelSet for ListenerLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        match &self.0 {
            Some(name) => [("listener", &**name)].encode(encoder),
            None => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    #[prometheus(flatten)]
    listener: ListenerLabel,
    code: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    #[prometheus(flatten)]
    listener: ListenerLabel,
    result: &'static str,
    source: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReviewLabels {
    review: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitedLabels {
    review: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FileLabels {
    #[prometheus(flatten)]
    listener: ListenerLabel,
    /// The flag the file was given with.
    flag: &'static str,
    /// Its path (several, comma-separated, for a repeated flag).
    file: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    #[prometheus(flatten)]
    listener: ListenerLabel,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric scrape-guard exports about itself, as seen by one listener (or by
/// none: the process, and the only listener of a process without `--listeners-file`).
/// Clones share the registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    families: Arc<Families>,
    listener: ListenerLabel,
}

/// The registry and its metric families, shared by every view.
#[derive(Debug)]
struct Families {
    registry: Registry,
    requests: Family<CodeLabels, Counter>,
    request_duration: HistogramFamily<ListenerLabel>,
    upstream_duration: HistogramFamily<ListenerLabel>,
    authentication: Family<OutcomeLabels, Counter>,
    authorization: Family<OutcomeLabels, Counter>,
    review_duration: HistogramFamily<ReviewLabels>,
    review_errors: Family<ReviewLabels, Counter>,
    reviews_limited: Family<LimitedLabels, Counter>,
    cache_entries: Family<CacheLabels, Gauge>,
    certificate_expiry: Family<ListenerLabel, Gauge>,
    file_ok: Family<FileLabels, Gauge>,
    file_loaded_at: Family<FileLabels, Gauge>,
    handshake_failures: Family<ReasonLabels, Counter>,
    connections_refused: Family<ReasonLabels, Counter>,
    connections_evicted: Family<ReasonLabels, Counter>,
}

fn latency_buckets() -> Histogram {
    // 250µs .. ~16s
    Histogram::new(exponential_buckets(0.00025, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("scrape_guard");
        let requests = Family::<CodeLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by status code",
            requests.clone(),
        );
        let request_duration: HistogramFamily<ListenerLabel> =
            Family::new_with_constructor(latency_buckets);
        registry.register(
            "request_duration_seconds",
            "Time from request to response headers, including reviews and the upstream",
            request_duration.clone(),
        );
        let upstream_duration: HistogramFamily<ListenerLabel> =
            Family::new_with_constructor(latency_buckets);
        registry.register(
            "upstream_duration_seconds",
            "Time for the upstream to send response headers",
            upstream_duration.clone(),
        );
        let authentication = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "authentication",
            "Authentication outcomes (result: authenticated, rejected, error) by source",
            authentication.clone(),
        );
        let authorization = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "authorization",
            "Authorization outcomes (result: allowed, denied, error) by source",
            authorization.clone(),
        );
        let review_duration: HistogramFamily<ReviewLabels> =
            Family::new_with_constructor(latency_buckets);
        registry.register(
            "review_duration_seconds",
            "TokenReview and SubjectAccessReview latency, including retries",
            review_duration.clone(),
        );
        let review_errors = Family::<ReviewLabels, Counter>::default();
        registry.register(
            "review_errors",
            "Reviews that got no answer (timeout, connection error, 5xx after retries)",
            review_errors.clone(),
        );
        let reviews_limited = Family::<LimitedLabels, Counter>::default();
        registry.register(
            "reviews_limited",
            "Reviews not sent, answered 503 at once (reason: peer, the client's \
             --max-reviews-per-peer is taken; rate, --kube-api-qps has no room within \
             --apiserver-timeout)",
            reviews_limited.clone(),
        );
        let cache_entries = Family::<CacheLabels, Gauge>::default();
        registry.register(
            "cache_entries",
            "Entries in each review cache",
            cache_entries.clone(),
        );
        let certificate_expiry = Family::<ListenerLabel, Gauge>::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When the serving certificate expires (Unix time)",
            certificate_expiry.clone(),
        );
        let file_ok = Family::<FileLabels, Gauge>::default();
        registry.register(
            "config_last_reload_successful",
            "Whether a watched file (certificate, key, CA, token, RBAC or config file) as it is \
             now on disk is the version in force (0: missing or rejected; the last good one \
             is used)",
            file_ok.clone(),
        );
        let file_loaded_at = Family::<FileLabels, Gauge>::default();
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "When a watched file was last loaded successfully (Unix time)",
            file_loaded_at.clone(),
        );
        let handshake_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed, by reason (client_certificate, client_alert, \
             incompatible, not_tls, closed, timeout, other)",
            handshake_failures.clone(),
        );
        let connections_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections closed at once, by reason (per_peer_limit)",
            connections_refused.clone(),
        );
        let connections_evicted = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connections_evicted",
            "Connections closed to make room for a new one at --max-connections, by reason \
             (handshake, unauthenticated, idle)",
            connections_evicted.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "scrape-guard's version", build_info);
        let families = Families {
            registry,
            requests,
            request_duration,
            upstream_duration,
            authentication,
            authorization,
            review_duration,
            review_errors,
            reviews_limited,
            cache_entries,
            certificate_expiry,
            file_ok,
            file_loaded_at,
            handshake_failures,
            connections_refused,
            connections_evicted,
        };
        Self {
            families: Arc::new(families),
            listener: ListenerLabel::default(),
        }
    }

    /// The view of listener `name`: the same registry, its series labelled
    /// `listener="<name>"`.
    pub(crate) fn for_listener(&self, name: &str) -> Arc<Self> {
        Arc::new(Self {
            families: Arc::clone(&self.families),
            listener: ListenerLabel(Some(Arc::from(name))),
        })
    }

    /// The process's own view, unlabelled, whichever listener this one is.
    pub(crate) fn unlabelled(&self) -> Arc<Self> {
        Arc::new(Self {
            families: Arc::clone(&self.families),
            listener: ListenerLabel::default(),
        })
    }

    /// This view serves a listener: its latency histograms are exported from now on,
    /// empty until its first request (as a process with one listener always has).
    pub(crate) fn serving(&self) {
        let families = &self.families;
        // The handles are dropped: creating the series is the point.
        let _ = families.request_duration.get_or_create(&self.listener);
        let _ = families.upstream_duration.get_or_create(&self.listener);
    }

    pub fn request(&self, code: u16, seconds: f64) {
        let labels = CodeLabels {
            listener: self.listener.clone(),
            code,
        };
        self.families.requests.get_or_create(&labels).inc();
        self.families
            .request_duration
            .get_or_create(&self.listener)
            .observe(seconds);
    }

    pub fn upstream(&self, seconds: f64) {
        self.families
            .upstream_duration
            .get_or_create(&self.listener)
            .observe(seconds);
    }

    pub fn authenticated(&self, result: &'static str, source: Source) {
        self.families
            .authentication
            .get_or_create(&OutcomeLabels {
                listener: self.listener.clone(),
                result,
                source: source.as_str(),
            })
            .inc();
    }

    pub fn authorized(&self, result: &'static str, source: Source) {
        self.families
            .authorization
            .get_or_create(&OutcomeLabels {
                listener: self.listener.clone(),
                result,
                source: source.as_str(),
            })
            .inc();
    }

    pub fn review(&self, review: &'static str, seconds: f64, ok: bool) {
        let labels = ReviewLabels { review };
        let families = &self.families;
        families
            .review_duration
            .get_or_create(&labels)
            .observe(seconds);
        if !ok {
            families.review_errors.get_or_create(&labels).inc();
        }
    }

    /// A review that was not sent (`reason`: `peer` or `rate`).
    pub fn review_limited(&self, review: &'static str, reason: &'static str) {
        self.families
            .reviews_limited
            .get_or_create(&LimitedLabels { review, reason })
            .inc();
    }

    /// A watched file was (re)read: `ok` if what is on disk now is the version in force.
    pub(crate) fn file_loaded(&self, flag: &'static str, file: &str, ok: bool) {
        let labels = FileLabels {
            listener: self.listener.clone(),
            flag,
            file: file.to_owned(),
        };
        self.families
            .file_ok
            .get_or_create(&labels)
            .set(i64::from(ok));
        if ok {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            self.families.file_loaded_at.get_or_create(&labels).set(now);
        }
    }

    /// A TLS handshake failed for `reason`.
    pub(crate) fn handshake_failed(&self, reason: &'static str) {
        self.families
            .handshake_failures
            .get_or_create(&ReasonLabels {
                listener: self.listener.clone(),
                reason,
            })
            .inc();
    }

    /// A connection was closed before its handshake, for `reason`.
    pub(crate) fn connection_refused(&self, reason: &'static str) {
        self.families
            .connections_refused
            .get_or_create(&ReasonLabels {
                listener: self.listener.clone(),
                reason,
            })
            .inc();
    }

    /// A connection was closed to make room for a new one, for `reason`.
    pub(crate) fn connection_evicted(&self, reason: &'static str) {
        self.families
            .connections_evicted
            .get_or_create(&ReasonLabels {
                listener: self.listener.clone(),
                reason,
            })
            .inc();
    }

    /// The serving certificate in force expires at `not_after` (Unix seconds).
    pub fn certificate_expires(&self, not_after: i64) {
        self.families
            .certificate_expiry
            .get_or_create(&self.listener)
            .set(not_after);
    }

    /// The text exposition, with state gauges refreshed first.
    pub fn encode(&self, authn_entries: u64, authz_entries: u64) -> String {
        let set = |cache, n: u64| {
            self.families
                .cache_entries
                .get_or_create(&CacheLabels { cache })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        };
        set("authentication", authn_entries);
        set("authorization", authz_entries);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.families.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_and_labels() {
        let metrics = Metrics::new();
        metrics.request(200, 0.01);
        metrics.request(403, 0.002);
        metrics.authenticated("authenticated", Source::Cache);
        metrics.authorized("allowed", Source::Stale);
        metrics.review("tokenreview", 0.05, false);
        metrics.review_limited("subjectaccessreview", "peer");
        metrics.certificate_expires(1_900_000_000);
        metrics.file_loaded("--rbac-file", "/etc/rbac/a.yaml", true);
        metrics.file_loaded("--token-auth-file", "/etc/tokens.csv", false);
        let text = metrics.encode(3, 4);
        for needle in [
            "scrape_guard_requests_total{code=\"200\"} 1",
            "scrape_guard_requests_total{code=\"403\"} 1",
            "scrape_guard_authentication_total{result=\"authenticated\",source=\"cache\"} 1",
            "scrape_guard_authorization_total{result=\"allowed\",source=\"stale\"} 1",
            "scrape_guard_review_errors_total{review=\"tokenreview\"} 1",
            "scrape_guard_reviews_limited_total{review=\"subjectaccessreview\",reason=\"peer\"} 1",
            "scrape_guard_review_duration_seconds_count{review=\"tokenreview\"} 1",
            "scrape_guard_cache_entries{cache=\"authentication\"} 3",
            "scrape_guard_certificate_expiry_timestamp_seconds 1900000000",
            "scrape_guard_config_last_reload_successful{flag=\"--rbac-file\",file=\"/etc/rbac/a.yaml\"} 1",
            "scrape_guard_config_last_reload_successful{flag=\"--token-auth-file\",file=\"/etc/tokens.csv\"} 0",
            "scrape_guard_config_last_reload_success_timestamp_seconds{flag=\"--rbac-file\",file=\"/etc/rbac/a.yaml\"}",
            "scrape_guard_build_info{version=",
            "scrape_guard_request_duration_seconds_bucket",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }

    #[test]
    fn a_listener_view_labels_its_series_and_shares_the_registry() {
        let metrics = Metrics::new();
        let main = metrics.for_listener("main");
        let telemetry = metrics.for_listener("telemetry");
        main.request(200, 0.01);
        telemetry.request(200, 0.01);
        telemetry.request(200, 0.01);
        metrics.request(401, 0.01);
        main.authorized("allowed", Source::Local);
        telemetry.authenticated("authenticated", Source::Cache);
        main.certificate_expires(1_900_000_000);
        telemetry.file_loaded("--listeners-file", "/etc/l.yaml", false);
        telemetry.handshake_failed("client_certificate");
        main.review("tokenreview", 0.05, false);
        let text = metrics.encode(1, 2);
        for needle in [
            "scrape_guard_requests_total{listener=\"main\",code=\"200\"} 1",
            "scrape_guard_requests_total{listener=\"telemetry\",code=\"200\"} 2",
            "scrape_guard_requests_total{code=\"401\"} 1",
            "scrape_guard_request_duration_seconds_count{listener=\"telemetry\"} 2",
            "scrape_guard_authorization_total{listener=\"main\",result=\"allowed\",source=\"local\"} 1",
            "scrape_guard_authentication_total{listener=\"telemetry\",result=\"authenticated\",source=\"cache\"} 1",
            "scrape_guard_certificate_expiry_timestamp_seconds{listener=\"main\"} 1900000000",
            "scrape_guard_config_last_reload_successful{listener=\"telemetry\",flag=\"--listeners-file\",file=\"/etc/l.yaml\"} 0",
            "scrape_guard_tls_handshake_failures_total{listener=\"telemetry\",reason=\"client_certificate\"} 1",
            // Reviews and caches are shared: no listener.
            "scrape_guard_review_errors_total{review=\"tokenreview\"} 1",
            "scrape_guard_cache_entries{cache=\"authorization\"} 2",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert_eq!(main.unlabelled().encode(1, 2), text, "one registry");
    }

    #[test]
    fn a_serving_view_exports_its_latencies_before_the_first_request() {
        let metrics = Metrics::new();
        assert!(!metrics
            .encode(0, 0)
            .contains("request_duration_seconds_count"));
        metrics.serving();
        metrics.for_listener("main").serving();
        let text = metrics.encode(0, 0);
        for needle in [
            "scrape_guard_request_duration_seconds_count 0",
            "scrape_guard_upstream_duration_seconds_count 0",
            "scrape_guard_request_duration_seconds_count{listener=\"main\"} 0",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }
}
