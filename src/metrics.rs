//! scrape-guard's own metrics at `/metrics` on `--proxy-endpoints-port` (behind the
//! same authentication and authorization as scrapes: these numbers say who is calling
//! and who is denied), in the format the scraper's `Accept` asks for: OpenMetrics or
//! the Prometheus text format 0.0.4 (`exposition.rs`). Label sets and the enums of
//! label values are in `labels.rs`.
//!
//! Counters are updated on the request path with relaxed atomics (prometheus-client);
//! gauges that describe state (cache sizes, certificate expiry) are read at scrape time,
//! and so are the `process_*` metrics and the cgroup's memory limit (`process.rs`,
//! `cgroup.rs`).
//!
//! With `--listeners-file` the series about one listener (its requests, decisions,
//! handshakes, certificate and files) carry a `listener` label: each listener's stages
//! record through their own [`Metrics::for_listener`] view of the one registry. What
//! the listeners share (reviews, caches, the build) has no such label, and neither has
//! anything while the flags define the only listener: those series look as they always
//! have.

use std::{hash::Hash, sync::Arc};

use prometheus_client::{
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

use crate::identity::Source;

mod cgroup;
mod exposition;
mod labels;
mod process;

pub(crate) use exposition::Format;
pub(crate) use labels::{
    Alpn, Authn, Authz, Cache, Eviction, HandshakeFailure, KeySet, Limited, Refusal, Review,
};
use labels::{
    AlpnLabels, BuildLabels, CacheLabels, CodeLabels, FileLabels, KeySetLabels, LimitedLabels,
    ListenerLabel, OutcomeLabels, ReasonLabels, ReviewLabels,
};

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric scrape-guard exports about itself, as seen by one listener (or by
/// none: the process, and the only listener of a process without `--listeners-file`).
/// Clones share the registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    families: Arc<Families>,
    listener: ListenerLabel,
}

/// `Families`, the registry and its metric families shared by every view, from a table:
/// each family's field and type, then its name (after `scrape_guard_`) and help text.
/// They are registered, so exported, in the table's order.
macro_rules! families {
    ($($field:ident: $family:ty, $name:literal, $help:literal;)+) => {
        #[derive(Debug)]
        struct Families {
            /// The `process_*` metrics, and ours in a sub-registry prefixed `scrape_guard`.
            root: Registry,
            $($field: $family,)+
        }

        impl Families {
            fn new() -> Self {
                let mut root = Registry::default();
                root.register_collector(Box::new(process::ProcessCollector));
                let registry = root.sub_registry_with_prefix("scrape_guard");
                $(
                    let $field = <$family>::fresh();
                    registry.register($name, $help, $field.clone());
                )+
                let build_info = Family::<BuildLabels, Gauge>::default();
                let version = env!("CARGO_PKG_VERSION");
                build_info.get_or_create(&BuildLabels { version }).set(1);
                registry.register("build_info", "scrape-guard's version", build_info);
                registry.register_collector(Box::new(process::MemoryLimitCollector));
                let fips = Gauge::<i64>::default();
                fips.set(i64::from(cfg!(feature = "fips")));
                registry.register("fips_mode", "1 in the FIPS build (docs/fips.md), else 0", fips);
                Self { root, $($field,)+ }
            }
        }
    };
}

families! {
    requests: Family<CodeLabels, Counter>, "requests", "Requests answered, by status code";
    request_duration: HistogramFamily<ListenerLabel>, "request_duration_seconds",
        "Time from request to response headers, including reviews and the upstream";
    upstream_duration: HistogramFamily<ListenerLabel>, "upstream_duration_seconds",
        "Time for the upstream to send response headers";
    authentication: Family<OutcomeLabels<Authn>, Counter>, "authentication",
        "Authentication outcomes (result: authenticated, rejected, error) by source";
    authorization: Family<OutcomeLabels<Authz>, Counter>, "authorization",
        "Authorization outcomes (result: allowed, denied, error) by source";
    review_duration: HistogramFamily<ReviewLabels>, "review_duration_seconds",
        "TokenReview and SubjectAccessReview latency, including retries";
    review_errors: Family<ReviewLabels, Counter>, "review_errors",
        "Reviews that got no answer (timeout, connection error, 5xx after retries)";
    reviews_limited: Family<LimitedLabels, Counter>, "reviews_limited",
        "Reviews not sent, answered 503 at once (reason: peer, the client's \
         --max-reviews-per-peer is taken; rate, --kube-api-qps has no room within \
         --apiserver-timeout)";
    cache_entries: Family<CacheLabels, Gauge>, "cache_entries", "Entries in each review cache";
    certificate_expiry: Family<ListenerLabel, Gauge>, "certificate_expiry_timestamp_seconds",
        "When the serving certificate expires (Unix time)";
    file_ok: Family<FileLabels, Gauge>, "config_last_reload_successful",
        "Whether a watched file (certificate, key, CA, token, RBAC or config file) as it is \
         now on disk is the version in force (0: missing or rejected; the last good one \
         is used)";
    file_loaded_at: Family<FileLabels, Gauge>, "config_last_reload_success_timestamp_seconds",
        "When a watched file was last loaded successfully (Unix time)";
    rbac_file_warnings: Family<FileLabels, Gauge>, "rbac_file_warnings",
        "Warnings about the --rbac-file version in force (unknown keys, a binding to a role \
         no file defines, a subject nothing matches), each logged with its file and line";
    handshake_failures: Family<ReasonLabels<HandshakeFailure>, Counter>, "tls_handshake_failures",
        "TLS handshakes that failed, by reason (client_certificate, client_alert, \
         incompatible, not_tls, closed, timeout, other)";
    connections_refused: Family<ReasonLabels<Refusal>, Counter>, "connections_refused",
        "Connections closed at once, by reason (per_peer_limit)";
    tls_connections: Family<AlpnLabels, Counter>, "tls_connections",
        "TLS connections established, by the protocol agreed with ALPN (h2, http/1.1, \
         none)";
    connections_evicted: Family<ReasonLabels<Eviction>, Counter>, "connections_evicted",
        "Connections closed to make room for a new one at --max-connections, by reason \
         (handshake, unauthenticated, idle)";
    key_set_loaded: Family<KeySetLabels, Gauge>, "key_set_loaded",
        "Whether a JWT key set (key_set: oidc, the --oidc-issuer's) has loaded; while 0, \
         tokens it would verify are answered 503";
    key_set_fetch_failures: Family<KeySetLabels, Counter>, "key_set_fetch_failures",
        "Failed fetches of a JWT key set (discovery or JWKS: unreachable, not 200, invalid)";
    audit_events_dropped: Family<ListenerLabel, Counter>, "audit_events_dropped",
        "Audit events lost: the queue to the writer was full, or the write failed (each \
         hole is also written to the audit log as a gap event)";
}

/// A new, empty family: counters and gauges start at zero, latency histograms get
/// their buckets.
trait Fresh {
    fn fresh() -> Self;
}

impl<L: Clone + Hash + Eq> Fresh for Family<L, Counter> {
    fn fresh() -> Self {
        Self::default()
    }
}

impl<L: Clone + Hash + Eq> Fresh for Family<L, Gauge> {
    fn fresh() -> Self {
        Self::default()
    }
}

impl<L: Clone + Hash + Eq> Fresh for HistogramFamily<L> {
    fn fresh() -> Self {
        // 250µs .. ~16s
        Self::new_with_constructor(|| Histogram::new(exponential_buckets(0.00025, 2.0, 17)))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A new registry with every family of the table above; this view is unlabelled.
    pub fn new() -> Self {
        Self {
            families: Arc::new(Families::new()),
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

    pub(crate) fn authenticated(&self, result: Authn, source: Source) {
        self.families
            .authentication
            .get_or_create(&OutcomeLabels {
                listener: self.listener.clone(),
                result,
                source,
            })
            .inc();
    }

    pub(crate) fn authorized(&self, result: Authz, source: Source) {
        self.families
            .authorization
            .get_or_create(&OutcomeLabels {
                listener: self.listener.clone(),
                result,
                source,
            })
            .inc();
    }

    pub(crate) fn review(&self, review: Review, seconds: f64, ok: bool) {
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

    /// A review that was not sent, and why.
    pub(crate) fn review_limited(&self, review: Review, reason: Limited) {
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

    /// The `--rbac-file` version in force (`files`, comma-separated as in
    /// `file_loaded`) has `count` warnings.
    pub(crate) fn rbac_file_warnings(&self, files: &str, count: usize) {
        let labels = FileLabels {
            listener: self.listener.clone(),
            flag: "--rbac-file",
            file: files.to_owned(),
        };
        self.families
            .rbac_file_warnings
            .get_or_create(&labels)
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// A TLS handshake failed for `reason`.
    pub(crate) fn handshake_failed(&self, reason: HandshakeFailure) {
        self.families
            .handshake_failures
            .get_or_create(&ReasonLabels {
                listener: self.listener.clone(),
                reason,
            })
            .inc();
    }

    /// A connection was closed before its handshake, for `reason`.
    pub(crate) fn connection_refused(&self, reason: Refusal) {
        self.families
            .connections_refused
            .get_or_create(&ReasonLabels {
                listener: self.listener.clone(),
                reason,
            })
            .inc();
    }

    /// A TLS handshake succeeded, agreeing on `alpn`.
    pub(crate) fn tls_connection(&self, alpn: Alpn) {
        self.families
            .tls_connections
            .get_or_create(&AlpnLabels {
                listener: self.listener.clone(),
                alpn,
            })
            .inc();
    }

    /// A connection was closed to make room for a new one, for `reason`.
    pub(crate) fn connection_evicted(&self, reason: Eviction) {
        self.families
            .connections_evicted
            .get_or_create(&ReasonLabels {
                listener: self.listener.clone(),
                reason,
            })
            .inc();
    }

    /// A key set is in use: its series exist from now on, not loaded, no failures.
    pub(crate) fn key_set_expected(&self, key_set: KeySet) {
        let labels = KeySetLabels { key_set };
        // The handles are dropped: creating the series is the point.
        let _ = self.families.key_set_loaded.get_or_create(&labels);
        let _ = self.families.key_set_fetch_failures.get_or_create(&labels);
    }

    /// A key set was fetched (`ok`), or failed to be. A loaded set stays loaded when a
    /// later fetch fails: the last good one is still used.
    pub(crate) fn key_set_fetched(&self, key_set: KeySet, ok: bool) {
        let labels = KeySetLabels { key_set };
        if ok {
            self.families.key_set_loaded.get_or_create(&labels).set(1);
        } else {
            self.families
                .key_set_fetch_failures
                .get_or_create(&labels)
                .inc();
        }
    }

    /// The process's count of lost audit events, at zero from the start.
    pub(crate) fn audit_events_dropped(&self) -> Counter {
        let families = &self.families;
        families
            .audit_events_dropped
            .get_or_create(&ListenerLabel::default())
            .clone()
    }

    /// The serving certificate in force expires at `not_after` (Unix seconds).
    pub fn certificate_expires(&self, not_after: i64) {
        self.families
            .certificate_expiry
            .get_or_create(&self.listener)
            .set(not_after);
    }

    /// The OpenMetrics exposition, with state gauges refreshed first.
    pub fn encode(&self, authn_entries: u64, authz_entries: u64) -> String {
        self.encode_as(Format::OPEN_METRICS, authn_entries, authz_entries)
    }

    /// The exposition in `format`, with state gauges refreshed first; `process_*` and
    /// the memory limit are read now.
    pub(crate) fn encode_as(
        &self,
        format: Format,
        authn_entries: u64,
        authz_entries: u64,
    ) -> String {
        let set = |cache, n: u64| {
            self.families
                .cache_entries
                .get_or_create(&CacheLabels { cache })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        };
        set(Cache::Authentication, authn_entries);
        set(Cache::Authorization, authz_entries);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.families.root);
        match format {
            Format::OpenMetrics { .. } => out,
            Format::Text => exposition::to_text(&out),
        }
    }
}

#[cfg(test)]
mod tests;
