//! The scrape's timeout as the request's budget.
//!
//! Prometheus tells a target how long it will wait (`X-Prometheus-Scrape-Timeout-Seconds`)
//! and cancels the scrape at that moment; whatever we answered after it is lost, and the
//! target's `lastError` says only "context deadline exceeded". So the whole request —
//! authentication, authorization and the exporter — runs against one deadline, the
//! scraper's timeout less a margin and never beyond `--upstream-timeout`, and when it
//! runs out we answer first: 503 if the reviews took their share, 504 if the exporter
//! was slow. The reviews get at most half of the budget: past that, the exporter would
//! be left too little for a page, and a 503 then blames the apiserver rather than an
//! exporter that never had its chance. A review cut off never allows (the request is
//! not forwarded; the error is its answer).
//!
//! Without the header (or with one we cannot read, which is ignored) nothing changes:
//! the reviews have `--apiserver-timeout` and the exporter `--upstream-timeout` from
//! the moment it is asked. The header itself is forwarded unchanged: an exporter that
//! reads it (blackbox_exporter, snmp_exporter) applies its own offset.

use std::{
    future::Future,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use http::{HeaderMap, HeaderName};
use tokio::time::Instant;

use crate::{
    apiserver::QueueClock,
    error::{ProxyError, Spent},
    upstream::Deadline,
};

/// The header Prometheus sends with every scrape.
pub(crate) const SCRAPE_TIMEOUT: HeaderName =
    HeaderName::from_static("x-prometheus-scrape-timeout-seconds");

/// The most we answer ahead of the scraper's deadline: the answer has to travel back
/// (a TLS record over a loaded node's network), and the scraper's own clock started
/// before our first byte arrived.
const MARGIN: Duration = Duration::from_millis(250);

/// Longest scrape timeout taken from the header (a day); beyond it, ignored.
const LONGEST: Duration = Duration::from_secs(86_400);

/// One request's deadline, and where its time went.
#[derive(Debug)]
pub(crate) struct Budget {
    started: Instant,
    /// The scraper's timeout, when it sent one we could read.
    scrape_timeout: Option<Duration>,
    queued: QueueClock,
    /// Authentication and authorization, in microseconds (0 until they end).
    reviews_us: AtomicU64,
}

impl Budget {
    /// The budget a request's headers ask for, from now.
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        Self::starting(scrape_timeout(headers))
    }

    /// No scraper's timeout: `--apiserver-timeout` and `--upstream-timeout` alone.
    pub(crate) fn none() -> Self {
        Self::starting(None)
    }

    fn starting(scrape_timeout: Option<Duration>) -> Self {
        Self {
            started: Instant::now(),
            scrape_timeout,
            queued: QueueClock::default(),
            reviews_us: AtomicU64::new(0),
        }
    }

    /// The whole request's time: the scraper's timeout less the margin, bounded by the
    /// route's `--upstream-timeout`.
    fn total(&self, upstream_timeout: Duration) -> Option<Duration> {
        self.scrape_timeout
            .map(|timeout| (timeout - margin(timeout)).min(upstream_timeout))
    }

    /// Runs authentication and authorization within their share of the budget; when it
    /// runs out, `ReviewsTimedOut` (and the reviews are dropped: nothing is allowed).
    pub(crate) async fn reviews<T>(
        &self,
        upstream_timeout: Duration,
        reviews: impl Future<Output = Result<T, ProxyError>>,
    ) -> Result<T, ProxyError> {
        let reviews = self.queued.measure(reviews);
        let result = match self.total(upstream_timeout) {
            Some(total) => tokio::time::timeout_at(self.started + total / 2, reviews)
                .await
                .map_err(|_| ProxyError::ReviewsTimedOut(Spent::default())),
            None => Ok(reviews.await),
        };
        let micros = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.reviews_us.store(micros, Ordering::Relaxed);
        result
            .and_then(|r| r)
            .map_err(|e| self.explain(e, upstream_timeout))
    }

    /// When the exporter must have sent its response headers.
    pub(crate) fn exporter(&self, upstream_timeout: Duration) -> Deadline {
        match self.total(upstream_timeout) {
            Some(total) => Deadline {
                at: self.started + total,
                budget: total,
            },
            None => Deadline {
                at: Instant::now() + upstream_timeout,
                budget: upstream_timeout,
            },
        }
    }

    /// Fills in where the time went for an error that says the time ran out.
    pub(crate) fn explain(&self, error: ProxyError, upstream_timeout: Duration) -> ProxyError {
        let spent = || {
            let reviews = Duration::from_micros(self.reviews_us.load(Ordering::Relaxed));
            Spent {
                budget: self.exporter(upstream_timeout).budget,
                reviews,
                queued: self.queued.queued().min(reviews),
                exporter: self.started.elapsed().saturating_sub(reviews),
            }
        };
        match error {
            ProxyError::ReviewsTimedOut(_) => {
                let spent = spent();
                ProxyError::ReviewsTimedOut(Spent {
                    exporter: Duration::ZERO,
                    ..spent
                })
            }
            ProxyError::UpstreamTimeout(_) => ProxyError::UpstreamTimeout(spent()),
            other => other,
        }
    }
}

/// How far ahead of the scraper's deadline we answer: 250 ms, or a tenth of a timeout
/// shorter than 2.5 s.
fn margin(timeout: Duration) -> Duration {
    MARGIN.min(timeout / 10)
}

/// The scraper's timeout, if it sent exactly one that reads as a positive number of
/// seconds (Prometheus writes Go's `strconv.FormatFloat(s, 'f', -1, 64)`: "10",
/// "9.5"). Anything else is ignored, and the defaults stand.
fn scrape_timeout(headers: &HeaderMap) -> Option<Duration> {
    let mut values = headers.get_all(SCRAPE_TIMEOUT).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    let text = value.to_str().ok()?.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let seconds: f64 = text.parse().ok()?;
    let timeout = Duration::try_from_secs_f64(seconds).ok()?;
    (!timeout.is_zero() && timeout <= LONGEST).then_some(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(SCRAPE_TIMEOUT, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn the_header_is_read_defensively() {
        let table: &[(&[&str], Option<Duration>)] = &[
            (&["10"], Some(Duration::from_secs(10))),
            (&["9.5"], Some(Duration::from_millis(9500))),
            (&[" 2 "], Some(Duration::from_secs(2))),
            (&["0.001"], Some(Duration::from_millis(1))),
            (&[], None),
            (&[""], None),
            (&["0"], None),
            (&["-1"], None),
            (&["1e3"], None),
            (&["NaN"], None),
            (&["inf"], None),
            (&["10s"], None),
            (&["1.2.3"], None),
            (&["."], None),
            (&["86401"], None),
            (&["99999999999999999999999"], None),
            (&["10", "10"], None),
        ];
        for (values, want) in table {
            assert_eq!(scrape_timeout(&headers(values)), *want, "{values:?}");
        }
    }

    #[test]
    fn the_budget_ends_before_the_scraper_gives_up_and_within_the_upstream_timeout() {
        let thirty = Duration::from_secs(30);
        let table = [
            // (scraper's timeout, --upstream-timeout, budget)
            (10_000, 30_000, 9_750),
            (1_000, 30_000, 900),
            (2_500, 30_000, 2_250),
            (60_000, 30_000, 30_000),
            (10_000, 5_000, 5_000),
        ];
        for (scrape, upstream, want) in table {
            let budget = Budget::starting(Some(Duration::from_millis(scrape)));
            let total = budget.total(Duration::from_millis(upstream));
            assert_eq!(
                total,
                Some(Duration::from_millis(want)),
                "{scrape} {upstream}"
            );
        }
        assert_eq!(Budget::none().total(thirty), None);
        assert_eq!(Budget::none().exporter(thirty).budget, thirty);
    }

    #[tokio::test(start_paused = true)]
    async fn reviews_past_their_share_fail_closed_with_their_times() {
        let budget = Budget::starting(Some(Duration::from_secs(10)));
        let slow = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, ProxyError>("allowed")
        };
        let error = budget
            .reviews(Duration::from_secs(30), slow)
            .await
            .unwrap_err();
        let ProxyError::ReviewsTimedOut(spent) = error else {
            panic!("{error:?}");
        };
        assert_eq!(spent.reviews, Duration::from_millis(4875));
        assert_eq!(spent.budget, Duration::from_millis(9750));
        assert_eq!(spent.reviews_blame(), "apiserver slow");
    }
}
