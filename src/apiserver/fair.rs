//! Who gets the next review token when several reviews wait for one: fair queuing
//! across client addresses, with half the turns kept for renewals of known identities.
//!
//! First come, first served let a few busy addresses take the whole budget: 4
//! addresses at `--max-reviews-per-peer` each had 32 reviews waiting, more than
//! `--kube-api-qps` gives within `--apiserver-timeout`, so every other client's review
//! was refused, new valid tokens and expired cached scrapers alike. Here each client
//! address (a `PeerKey`) waits in a lane of its own and the lanes take turns, one token
//! each: a review from a quiet address waits behind at most one review per busy
//! address, however many each has queued. Renewals of answers the proxy already holds
//! (refresh-ahead, `Requester::Renewal`; only an authenticated identity has them, so
//! junk cannot make one) have a lane that gets every other turn while it has waiters,
//! so a cached scraper is renewed before its entry expires, whatever else waits.
//!
//! The rule of `limit.rs` still holds: a review that is not sent costs nothing. A
//! review whose turn would come after its budget is refused at once (an estimate from
//! the lanes ahead of it); one still waiting when its budget runs out, or dropped while
//! waiting, leaves the queue, and a token granted to it but not used goes back into the
//! bucket. A token is only reserved from the bucket while somebody waits for it.
//!
//! Memory: a waiting review is one queue entry (about 40 bytes) and its lane exists
//! only while it has waiters, so the queue is bounded by the reviews under way, that is
//! by `--max-reviews-per-peer` per address and by the connections served.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::oneshot, time::Instant};

use super::limit::{lock, Limit, Requester, TokenBucket};
use crate::identity::PeerKey;

/// Whose turn a waiting review takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Lane {
    /// Renewals of answers already held: every other turn while any wait.
    Known,
    /// A client address (an IPv6 /64): one turn per round.
    Peer(PeerKey),
    /// This process (`scrape-guard can-i`, benches): one turn per round.
    Process,
}

impl Lane {
    pub(super) fn of(requester: Requester) -> Self {
        match requester {
            Requester::Peer(addr) => Self::Peer(PeerKey::of(addr)),
            Requester::Renewal => Self::Known,
            Requester::Process => Self::Process,
        }
    }
}

/// The token bucket, handed out by turns.
pub(super) struct FairBucket {
    bucket: TokenBucket,
    qps: f64,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    lanes: HashMap<Lane, VecDeque<Waiter>>,
    /// Lanes other than `Known` with waiters, in turn order.
    turns: VecDeque<Lane>,
    /// Whether `Known` has the next turn (when it has waiters).
    known_next: bool,
    /// Waiters in every lane.
    len: usize,
    /// Whether a pump task is handing out tokens.
    pumping: bool,
    next_id: u64,
}

struct Waiter {
    id: u64,
    grant: oneshot::Sender<()>,
}

/// A place in the queue: leaves it when dropped, and gives back a token granted to it
/// that it did not use.
struct Place<'a> {
    fair: &'a FairBucket,
    lane: Lane,
    id: u64,
    used: bool,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if self.used {
            return;
        }
        let mut queue = lock(&self.fair.queue);
        if !queue.remove(self.lane, self.id) {
            // Granted (it is no longer queued) but never used.
            self.fair.bucket.give_back();
        }
    }
}

impl FairBucket {
    pub(super) fn new(qps: f64, burst: u32) -> Arc<Self> {
        Arc::new(Self {
            bucket: TokenBucket::new(qps, burst),
            qps,
            queue: Mutex::default(),
        })
    }

    /// Takes a token for a review from `lane`: at once if nobody waits and the bucket
    /// has one, else at the lane's turn if that comes by `deadline`. `Limit::Rate` if
    /// it would not (refused at once when that is foreseeable), with nothing taken.
    pub(super) async fn acquire(
        self: &Arc<Self>,
        lane: Lane,
        deadline: Instant,
    ) -> Result<(), Limit> {
        let (mut granted, id) = {
            let mut queue = lock(&self.queue);
            if queue.len == 0 && self.bucket.take_now() {
                return Ok(());
            }
            let ahead = queue.ahead(lane) as f64 + 1.0 - self.bucket.level().max(0.0);
            let wait = Duration::try_from_secs_f64(ahead.max(0.0) / self.qps).ok();
            if wait
                .and_then(|wait| Instant::now().checked_add(wait))
                .is_none_or(|due| due > deadline)
            {
                return Err(Limit::Rate);
            }
            let (grant, granted) = oneshot::channel();
            let id = queue.push(lane, grant);
            if !queue.pumping {
                queue.pumping = true;
                tokio::spawn(Arc::clone(self).pump());
            }
            (granted, id)
        };
        let mut place = Place {
            fair: self,
            lane,
            id,
            used: false,
        };
        let outcome = tokio::time::timeout_at(deadline, &mut granted).await;
        if matches!(outcome, Ok(Ok(()))) {
            place.used = true;
            return Ok(());
        }
        // Out of time (or the pump is gone): leave the queue, unless the token was
        // granted in the meantime; then it is ours to use.
        let queued = lock(&self.queue).remove(lane, id);
        place.used = true;
        if !queued && granted.try_recv().is_ok() {
            return Ok(());
        }
        if !queued {
            self.bucket.give_back();
        }
        Err(Limit::Rate)
    }

    /// Hands out tokens as they fall due, by turns, while anybody waits.
    async fn pump(self: Arc<Self>) {
        loop {
            // A bucket so slow that no token is due within an hour has nobody waiting
            // for it long: everybody is refused by the estimate.
            let far = Instant::now() + Duration::from_secs(3600);
            if self.bucket.acquire(far).await.is_err() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let mut queue = lock(&self.queue);
            let handed = std::iter::from_fn(|| queue.pop()).any(|w| w.grant.send(()).is_ok());
            if !handed {
                self.bucket.give_back();
            }
            if queue.len == 0 {
                queue.pumping = false;
                return;
            }
        }
    }
}

// === impl Queue ===

impl Queue {
    fn push(&mut self, lane: Lane, grant: oneshot::Sender<()>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let waiters = self.lanes.entry(lane).or_default();
        if waiters.is_empty() && lane != Lane::Known {
            self.turns.push_back(lane);
        }
        waiters.push_back(Waiter { id, grant });
        self.len += 1;
        id
    }

    /// The next waiter whose turn it is, out of the queue.
    fn pop(&mut self) -> Option<Waiter> {
        let known_waits = self.lanes.get(&Lane::Known).is_some_and(|w| !w.is_empty());
        let lane = if known_waits && (self.known_next || self.turns.is_empty()) {
            self.known_next = false;
            Lane::Known
        } else {
            let lane = self.turns.pop_front()?;
            self.known_next = true;
            lane
        };
        let waiters = self.lanes.get_mut(&lane)?;
        let waiter = waiters.pop_front();
        if waiters.is_empty() {
            self.lanes.remove(&lane);
        } else if lane != Lane::Known {
            self.turns.push_back(lane);
        }
        self.len -= usize::from(waiter.is_some());
        waiter
    }

    /// Takes waiter `id` out of `lane`; false if it is not queued (it was granted).
    fn remove(&mut self, lane: Lane, id: u64) -> bool {
        let Some(waiters) = self.lanes.get_mut(&lane) else {
            return false;
        };
        let Some(at) = waiters.iter().position(|w| w.id == id) else {
            return false;
        };
        waiters.remove(at);
        self.len -= 1;
        if waiters.is_empty() {
            self.lanes.remove(&lane);
            self.turns.retain(|l| *l != lane);
        }
        true
    }

    /// About how many tokens are handed out before a review joining `lane` now gets
    /// one: a round of turns for each waiter already in its lane.
    fn ahead(&self, lane: Lane) -> usize {
        let waiting = |lane: &Lane| self.lanes.get(lane).map_or(0, VecDeque::len);
        let known = waiting(&Lane::Known);
        let rounds = waiting(&lane) + 1;
        if lane == Lane::Known {
            return known + (self.len - known).min(rounds);
        }
        let others: usize = self
            .turns
            .iter()
            .filter(|l| **l != lane)
            .map(|l| waiting(l).min(rounds))
            .sum();
        let new = others + rounds - 1;
        new + known.min(new + 1)
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    const BUDGET: Duration = Duration::from_secs(5);

    fn peer(last: u8) -> Lane {
        Lane::of(Requester::Peer(IpAddr::from([10, 0, 0, last])))
    }

    /// Waits in `lane` from now on; returns when its token came.
    fn waiter(
        fair: &Arc<FairBucket>,
        lane: Lane,
    ) -> tokio::task::JoinHandle<Result<Instant, Limit>> {
        let fair = Arc::clone(fair);
        tokio::spawn(async move {
            let deadline = Instant::now() + BUDGET;
            fair.acquire(lane, deadline).await.map(|()| Instant::now())
        })
    }

    /// Four busy addresses with eight reviews queued each, then a fifth address: it
    /// is served within one round (4 tokens at 5/s), not after the 32.
    #[tokio::test(start_paused = true)]
    async fn a_quiet_address_waits_one_round_not_behind_every_busy_one() {
        let fair = FairBucket::new(5.0, 1);
        let start = Instant::now();
        let busy: Vec<_> = (1..=4)
            .flat_map(|p| (0..8).map(move |_| p))
            .map(|p| waiter(&fair, peer(p)))
            .collect();
        tokio::task::yield_now().await;
        let quiet = waiter(&fair, peer(9)).await.unwrap().expect("served");
        let waited = quiet - start;
        assert!(waited <= Duration::from_secs(1), "waited {waited:?}");
        let refused = futures_util::future::join_all(busy)
            .await
            .into_iter()
            .filter(|r| matches!(r, Ok(Err(Limit::Rate))))
            .count();
        assert!(refused > 0, "the busy addresses cannot all fit the budget");
    }

    /// Renewals of known identities get every other turn, whatever else waits.
    #[tokio::test(start_paused = true)]
    async fn renewals_get_every_other_turn() {
        let fair = FairBucket::new(5.0, 1);
        let start = Instant::now();
        let busy: Vec<_> = (0..20).map(|i| waiter(&fair, peer(i % 10))).collect();
        tokio::task::yield_now().await;
        let renewals: Vec<_> = (0..3).map(|_| waiter(&fair, Lane::Known)).collect();
        for (n, renewal) in renewals.into_iter().enumerate() {
            let at = renewal.await.unwrap().expect("renewed") - start;
            let bound = Duration::from_millis(400 * (n as u64 + 1));
            assert!(at <= bound, "renewal {n} at {at:?}");
        }
        drop(busy);
    }

    /// What nobody waits for is not taken: waiters that give up leave the bucket as
    /// they found it, and a lone caller then gets its token at once.
    #[tokio::test(start_paused = true)]
    async fn abandoned_waits_leave_the_bucket_whole() {
        let fair = FairBucket::new(1.0, 1);
        fair.acquire(peer(1), Instant::now() + BUDGET)
            .await
            .unwrap();
        for i in 0..50 {
            let wait = fair.acquire(peer(i), Instant::now() + BUDGET);
            assert!(tokio::time::timeout(Duration::from_millis(10), wait)
                .await
                .is_err());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let start = Instant::now();
        fair.acquire(peer(1), Instant::now() + BUDGET)
            .await
            .unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO, "the token was still there");
        assert_eq!(lock(&fair.queue).len, 0);
        assert!(
            lock(&fair.queue).lanes.is_empty(),
            "no lane outlives its waiters"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_past_the_budget_is_refused_at_once() {
        let fair = FairBucket::new(1.0, 1);
        let start = Instant::now();
        let first = waiter(&fair, peer(1));
        tokio::task::yield_now().await;
        let queued: Vec<_> = (0..4).map(|_| waiter(&fair, peer(1))).collect();
        tokio::task::yield_now().await;
        // Four ahead of it in its own lane at 1/s: its turn is at 5 s, past 4.5 s.
        let short = Instant::now() + Duration::from_millis(4500);
        let late = fair.acquire(peer(1), short).await;
        assert_eq!(late, Err(Limit::Rate));
        assert_eq!(start.elapsed(), Duration::ZERO, "refused at once");
        first.await.unwrap().unwrap();
        for q in queued {
            q.await.unwrap().unwrap();
        }
    }
}
