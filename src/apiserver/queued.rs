//! How long a request's reviews waited for their turn, so that a request that ran out
//! of time can say whether the apiserver was slow or its reviews were queued behind
//! others (the rate limit, fair turns, the cap on reviews in flight).
//!
//! A task-local rather than a return value: the wait happens deep inside a review that
//! may be shared (`cache::Pending`) or cancelled at the request's deadline, and a
//! cancelled wait must still count, so each wait is recorded when it ends or is
//! dropped. Reviews made outside a request (renewals) have no clock and record nothing.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::time::Instant;

tokio::task_local! {
    static QUEUED: Arc<AtomicU64>;
}

/// The time one request's reviews spent queued, in microseconds.
#[derive(Debug, Default)]
pub(crate) struct QueueClock(Arc<AtomicU64>);

impl QueueClock {
    /// Runs `reviews` with this clock counting their waits.
    pub(crate) fn measure<F: Future>(&self, reviews: F) -> impl Future<Output = F::Output> {
        QUEUED.scope(Arc::clone(&self.0), reviews)
    }

    /// What has been counted so far.
    pub(crate) fn queued(&self) -> Duration {
        Duration::from_micros(self.0.load(Ordering::Relaxed))
    }
}

/// One wait for a turn; counted on drop, so a wait cut short counts too.
pub(super) struct Waiting(Instant);

impl Waiting {
    pub(super) fn start() -> Self {
        Self(Instant::now())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let micros = u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX);
        // Outside a request's clock (renewals, the doctor): nothing to record.
        let _ = QUEUED.try_with(|queued| queued.fetch_add(micros, Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_wait_counts_even_when_cut_short() {
        let clock = QueueClock::default();
        let waited = clock.measure(async {
            let _waiting = Waiting::start();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let cut = tokio::time::timeout(Duration::from_secs(2), waited).await;
        assert!(cut.is_err());
        assert_eq!(clock.queued(), Duration::from_secs(2));
        // Without a clock, a wait is simply not recorded.
        drop(Waiting::start());
    }
}
