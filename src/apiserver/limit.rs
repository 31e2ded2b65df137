//! What a review may cost before it is sent: a token from the rate limit, and a place
//! in its client's share of reviews waiting or in flight.
//!
//! Both follow one rule: **a review that is not sent costs nothing.** The token bucket
//! refuses at once, taking nothing, a caller whose token would not be due within its
//! remaining time budget, and takes the token back from a caller dropped while it
//! waits (its client went away, or `--apiserver-timeout` ran out). Without that, every
//! abandoned review of a flood of junk tokens left a debt that later callers paid off
//! at `--kube-api-qps`, long after the flood had stopped (client-go's limiter never
//! charges a wait it will not complete, and gives the token back on cancel).
//!
//! The per-client cap keeps one address holding many connections from queueing up the
//! whole budget in front of everybody else: a review over the cap is refused at once,
//! before it waits for anything, so a scraper from another address waits behind at
//! most the cap's worth of reviews per busy address.

use std::{
    collections::HashMap,
    fmt,
    net::IpAddr,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use crate::identity::PeerKey;
use tokio::time::Instant;

/// Every section under these locks is short and cannot panic halfway, so a poisoned
/// lock still holds consistent numbers.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

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

/// Why a review was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Its client already has `--max-reviews-per-peer` reviews waiting or in flight.
    Peer,
    /// No token from `--kube-api-qps`/`--kube-api-burst` would be due within what is
    /// left of `--apiserver-timeout`.
    Rate,
}

impl Limit {
    /// The `reason` label of `scrape_guard_reviews_limited_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Peer => "peer",
            Self::Rate => "rate",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Peer => "this client already has --max-reviews-per-peer reviews under way",
            Self::Rate => "--kube-api-qps has no room for it within --apiserver-timeout",
        })
    }
}

/// Whose request a review is for, for the per-client cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requester {
    /// A client of the proxy, by address: at most `--max-reviews-per-peer` at once.
    Peer(IpAddr),
    /// This process itself (`scrape-guard can-i`, benches): not capped.
    Process,
    /// This process renewing an answer it holds for an identity that authenticated,
    /// before the answer expires (refresh-ahead): not capped per client, and queued
    /// apart from new reviews, with half the turns (`fair.rs`). Junk cannot cause one.
    Renewal,
}

// === impl TokenBucket ===

/// client-go's token bucket: `qps` tokens a second, up to `burst` saved up. A caller
/// reserves a token and sleeps until it is due, so waiting is first come, first served.
pub(super) struct TokenBucket {
    qps: f64,
    burst: f64,
    state: Mutex<Level>,
}

/// Tokens in the bucket at `at`; below zero, tokens promised to waiting callers.
struct Level {
    tokens: f64,
    at: Instant,
}

/// A token reserved by a caller that is still waiting for it: given back if the
/// caller is dropped before it is due.
struct Reservation<'a> {
    bucket: &'a TokenBucket,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.bucket.give_back();
    }
}

impl TokenBucket {
    pub(super) fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            qps,
            burst,
            state: Mutex::new(Level {
                tokens: burst,
                at: Instant::now(),
            }),
        }
    }

    /// Takes a token, waiting until it is due if that is no later than `deadline`; else
    /// `Err` at once, with nothing taken. Dropped while waiting, it gives the token back.
    pub(super) async fn acquire(&self, deadline: Instant) -> Result<(), Limit> {
        let due = self.reserve(deadline).ok_or(Limit::Rate)?;
        if due <= Instant::now() {
            return Ok(());
        }
        let reservation = Reservation { bucket: self };
        tokio::time::sleep_until(due).await;
        // Due and about to be spent: the caller sends its review now.
        std::mem::forget(reservation);
        Ok(())
    }

    /// Takes a token if one is there now; else takes nothing.
    pub(super) fn take_now(&self) -> bool {
        let mut level = lock(&self.state);
        let now = Instant::now();
        let tokens = self.refilled(&level, now);
        if tokens < 1.0 {
            return false;
        }
        *level = Level {
            tokens: tokens - 1.0,
            at: now,
        };
        true
    }

    /// Tokens in the bucket now; below zero while one is reserved.
    pub(super) fn level(&self) -> f64 {
        self.refilled(&lock(&self.state), Instant::now())
    }

    /// When a token taken now is due, if that is by `deadline`; the bucket is only
    /// charged if so.
    fn reserve(&self, deadline: Instant) -> Option<Instant> {
        let mut level = lock(&self.state);
        let now = Instant::now();
        let left = self.refilled(&level, now) - 1.0;
        let due = if left >= 0.0 {
            now
        } else {
            // A wait too long to represent is past any deadline.
            now.checked_add(Duration::try_from_secs_f64(-left / self.qps).ok()?)?
        };
        if due > deadline {
            return None;
        }
        *level = Level {
            tokens: left,
            at: now,
        };
        Some(due)
    }

    /// Undoes a reservation that will not be spent. While callers wait the bucket is
    /// below zero, so adding the token back is exactly as if it had never been taken;
    /// callers already waiting keep their turn, and the next caller gets this one's.
    pub(super) fn give_back(&self) {
        let mut level = lock(&self.state);
        let now = Instant::now();
        let tokens = (self.refilled(&level, now) + 1.0).min(self.burst);
        *level = Level { tokens, at: now };
    }

    fn refilled(&self, level: &Level, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(level.at).as_secs_f64();
        (level.tokens + elapsed * self.qps).min(self.burst)
    }
}

// === impl PeerLimit ===

/// Reviews waiting or in flight, per client address, at most `cap` each. Only
/// addresses with a review under way have an entry, so memory follows the load.
pub(super) struct PeerLimit {
    cap: usize,
    active: Mutex<HashMap<PeerKey, usize>>,
}

/// One review's place in its client's share, held until the review ends or is dropped.
pub(super) struct PeerSlot<'a> {
    limit: &'a PeerLimit,
    peer: Option<PeerKey>,
}

impl Drop for PeerSlot<'_> {
    fn drop(&mut self) {
        let Some(peer) = self.peer else { return };
        let mut active = lock(&self.limit.active);
        if let Some(count) = active.get_mut(&peer) {
            *count -= 1;
            if *count == 0 {
                active.remove(&peer);
            }
        }
    }
}

impl PeerLimit {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            active: Mutex::default(),
        }
    }

    /// A place for one more review from `requester`, or `None` if its address is at
    /// the cap. `Requester::Process` is never capped.
    pub(super) fn admit(&self, requester: Requester) -> Option<PeerSlot<'_>> {
        let Requester::Peer(addr) = requester else {
            return Some(PeerSlot {
                limit: self,
                peer: None,
            });
        };
        // ::ffff:10.0.0.1 from a dual-stack listener is the same client as 10.0.0.1, and
        // an IPv6 client is its /64.
        let peer = PeerKey::of(addr);
        let mut active = lock(&self.active);
        let count = active.entry(peer).or_default();
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            limit: self,
            peer: Some(peer),
        })
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        lock(&self.active).len()
    }
}

// === impl LimitLog ===

/// How often, at most, limiting is logged; the metric counts every case.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// Logs the first limited review at once, then at most one line per `LOG_EVERY`, with
/// how many were limited in between: a flood must not become a flood of log lines.
#[derive(Default)]
pub(super) struct LimitLog {
    state: Mutex<Option<(Instant, u64)>>,
}

impl LimitLog {
    /// Records one limited review; true if it is to be logged, with the number of
    /// limited reviews not logged before it.
    pub(super) fn record(&self) -> Option<u64> {
        let mut state = lock(&self.state);
        let now = Instant::now();
        if let Some((last, unlogged)) = state.as_mut() {
            if now.duration_since(*last) < LOG_EVERY {
                *unlogged += 1;
                return None;
            }
        }
        let unlogged = state.map_or(0, |(_, unlogged)| unlogged);
        *state = Some((now, 0));
        Some(unlogged)
    }
}

#[cfg(test)]
mod tests;
