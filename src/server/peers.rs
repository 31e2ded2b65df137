//! Connection slots: `--max-connections` in all, `--max-connections-per-peer` for one
//! client, and who makes room when every slot is held.
//!
//! A per-peer cap alone is sized for one hostile address: two addresses at half the
//! slots each (or sixteen at a sixteenth) hold them all, with half-open handshakes or
//! one request without credentials per idle period, and a real scraper waits in the
//! backlog until they leave. So at capacity a newcomer is not left waiting: the
//! connection that has done least for us is closed instead and counted
//! (`connections_evicted_total{reason}`), in this order:
//! - `handshake`: still in its TLS handshake, oldest first;
//! - `unauthenticated`: never sent an authenticated request, idle longest first;
//! - `idle`: authenticated, but not within the protection window, idle longest first.
//!
//! A connection that sent an authenticated request within the window (the listener's
//! `--idle-timeout`) is never closed to make room: a busy scraper keeps its
//! connections. When every slot is held by such connections, the newcomer waits for
//! one to close, as before.
//!
//! Fairness: the victim comes from the peer with the most connections that have done
//! nothing for us (on a tie, the fewest that have), so a flood from a few addresses
//! evicts its own connections, never the one or two a scraper at another address holds,
//! nor a busy scraper's new one. Finding it looks at the
//! `EXAMINED` peers with the most connections (kept sorted) that have one it may
//! close, walking past at most `WALKED`, and at `SAMPLED` connections of each (from
//! where the last search left off, so that every one is seen in turn): a bounded cost
//! per accept whatever the limits, and memory is one small record per live connection.
//!
//! Peers are told apart by `PeerKey`: an IPv4 address (behind a NAT, the NAT's) or an
//! IPv6 /64. A peer that holds its share makes room among its own connections the same
//! way; if all of them are worth keeping its newcomer is closed at once, before the TLS
//! handshake (at capacity it waits instead, as any newcomer would).

use std::{
    cmp::Reverse,
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, OnceLock, PoisonError,
    },
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

use super::idle::Activity;
use crate::identity::PeerKey;

/// How many of the peers with the most connections are weighed against each other
/// for a victim, and how many are walked past at most to find as many that have one.
const EXAMINED: usize = 4;
const WALKED: usize = 32;
/// How many connections of each peer are looked at: all of a scraper's, a sample of a
/// flood's (whose connections are all alike).
const SAMPLED: usize = 64;

/// How many connections in all and per peer, and how long an authenticated request
/// protects its connection.
#[derive(Debug, Clone, Copy)]
pub(super) struct SlotLimits {
    pub(super) max: usize,
    pub(super) per_peer: usize,
    pub(super) protected_for: Duration,
}

/// Live connections, by peer.
#[derive(Debug)]
pub(super) struct Slots {
    limits: SlotLimits,
    state: Mutex<State>,
    /// Told when a slot is given back (for a newcomer waiting, and for the drain).
    freed: Notify,
}

#[derive(Debug, Default)]
struct State {
    live: usize,
    peers: HashMap<PeerKey, Vec<Arc<Connection>>>,
    /// (connections, peer): the peers with the most connections last.
    by_count: BTreeSet<(usize, PeerKey)>,
    /// Searches for a victim so far: where in a peer's connections the next one starts.
    searches: usize,
}

/// What the slots know of one live connection.
#[derive(Debug)]
pub(crate) struct Connection {
    opened: Instant,
    /// When it last sent an authenticated request, in ms since `opened`, plus one
    /// (0: never).
    authenticated_ms: AtomicU64,
    /// Set once the handshake is done.
    activity: OnceLock<Arc<Activity>>,
    /// Set (under the state lock) when closed to make room.
    evicted: AtomicBool,
    close: Notify,
}

/// One live connection's slot; given back when dropped.
#[derive(Debug)]
pub(super) struct Slot {
    slots: Arc<Slots>,
    peer: PeerKey,
    connection: Arc<Connection>,
}

/// How little a connection has done for us: its class, then for how long (the greater,
/// the sooner it is closed to make room).
type Standing = (Eviction, Duration);

/// Which peer loses a connection (the greatest): the one with the most connections
/// that have done nothing for us lately, then the one with the fewest that have (a
/// busy scraper's one new connection is not a flood's), then the connection's own
/// standing.
type Rank = (usize, Reverse<usize>, Standing);

/// What `Slots::take` decided for a newcomer.
#[derive(Debug)]
pub(super) enum Admission {
    /// A slot, free or made free; `Some` names why a connection was closed for it.
    Admitted(Slot, Option<Eviction>),
    /// Its peer already holds its share, all of it worth keeping.
    PeerFull,
    /// Every slot is held by a connection worth keeping.
    Full,
}

/// Why a connection was closed to make room (the metric's `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Eviction {
    Idle,
    Unauthenticated,
    Handshake,
}

// === impl Slots ===

impl Slots {
    pub(super) fn new(limits: SlotLimits) -> Arc<Self> {
        Arc::new(Self {
            limits: SlotLimits {
                max: limits.max.max(1),
                per_peer: limits.per_peer.max(1),
                ..limits
            },
            state: Mutex::default(),
            freed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Short, panic-free sections only: a poisoned map is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a connection from `peer`: a free one, or one made free by closing the
    /// connection that has done least for us — its own peer's, if that holds its share.
    pub(super) fn take(self: &Arc<Self>, peer: IpAddr) -> Admission {
        let peer = PeerKey::of(peer);
        let protected_for = self.limits.protected_for;
        let mut state = self.lock();
        let full = state.live >= self.limits.max;
        let at_share = state.count(&peer) >= self.limits.per_peer;
        if full || at_share {
            state.searches = state.searches.wrapping_add(1);
        }
        let victim = if at_share {
            match state.worst_of(&peer, Instant::now(), protected_for) {
                Some(((_, _, (reason, _)), index)) => Some((peer, index, reason)),
                // Before the backlog is read again, wait as any newcomer at capacity.
                None if full => return Admission::Full,
                None => return Admission::PeerFull,
            }
        } else if full {
            match state.victim(protected_for) {
                Some(victim) => Some(victim),
                None => return Admission::Full,
            }
        } else {
            None
        };
        let eviction = victim.and_then(|(victim, index, reason)| {
            let closed = state.remove(&victim, index)?;
            closed.evicted.store(true, Ordering::Relaxed);
            closed.close.notify_one();
            Some(reason)
        });
        let connection = Arc::new(Connection::new());
        state.insert(peer, Arc::clone(&connection));
        Admission::Admitted(
            Slot {
                slots: Arc::clone(self),
                peer,
                connection,
            },
            eviction,
        )
    }

    /// Resolves when a slot may have been given back.
    pub(super) async fn freed(&self) {
        self.freed.notified().await;
    }

    /// Whether no connection holds a slot.
    pub(super) fn is_empty(&self) -> bool {
        self.lock().live == 0
    }
}

// === impl State ===

impl State {
    fn count(&self, peer: &PeerKey) -> usize {
        self.peers.get(peer).map_or(0, Vec::len)
    }

    fn insert(&mut self, peer: PeerKey, connection: Arc<Connection>) {
        let held = self.peers.entry(peer).or_default();
        let before = held.len();
        held.push(connection);
        self.by_count.remove(&(before, peer));
        self.by_count.insert((before + 1, peer));
        self.live += 1;
    }

    /// Takes `peer`'s connection at `index` (one `victim` or `worst_of` just found,
    /// under the same lock) out of the books.
    fn remove(&mut self, peer: &PeerKey, index: usize) -> Option<Arc<Connection>> {
        let held = self.peers.get_mut(peer).filter(|held| index < held.len())?;
        let before = held.len();
        let connection = held.swap_remove(index);
        self.by_count.remove(&(before, *peer));
        if held.is_empty() {
            self.peers.remove(peer);
        } else {
            self.by_count.insert((before - 1, *peer));
        }
        self.live -= 1;
        Some(connection)
    }

    /// The connection to close for a newcomer: (its peer, its index, why), or `None`
    /// if every connection looked at is worth keeping.
    fn victim(&self, protected_for: Duration) -> Option<(PeerKey, usize, Eviction)> {
        let now = Instant::now();
        let mut best: Option<(Rank, PeerKey, usize)> = None;
        let mut examined = 0;
        for (_, peer) in self.by_count.iter().rev().take(WALKED) {
            let Some((rank, index)) = self.worst_of(peer, now, protected_for) else {
                continue;
            };
            if best.is_none_or(|(b, _, _)| rank > b) {
                best = Some((rank, *peer, index));
            }
            examined += 1;
            if examined == EXAMINED {
                break;
            }
        }
        best.map(|((_, _, (reason, _)), peer, index)| (peer, index, reason))
    }

    /// Of `peer`'s connections (up to `SAMPLED` of them), the one that has done least
    /// for us, ranked against other peers' (`Rank`), and its index; `None` if all those
    /// looked at are worth keeping.
    fn worst_of(
        &self,
        peer: &PeerKey,
        now: Instant,
        protected_for: Duration,
    ) -> Option<(Rank, usize)> {
        let held = self.peers.get(peer)?;
        let sampled = held.len().min(SAMPLED);
        let first = self.searches % held.len();
        let mut useless = 0;
        let mut worst: Option<(Standing, usize)> = None;
        for index in (first..first + sampled).map(|i| i % held.len()) {
            if let Some(standing) = held[index].standing(now, protected_for) {
                useless += 1;
                if worst.is_none_or(|(w, _)| standing > w) {
                    worst = Some((standing, index));
                }
            }
        }
        let scale = |n: usize| n * held.len() / sampled;
        let useful = Reverse(scale(sampled - useless));
        worst.map(|(standing, index)| ((scale(useless), useful, standing), index))
    }
}

// === impl Connection ===

impl Connection {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            authenticated_ms: AtomicU64::new(0),
            activity: OnceLock::new(),
            evicted: AtomicBool::new(false),
            close: Notify::new(),
        }
    }

    /// The handshake is done; `activity` says from now on when it was last used.
    pub(super) fn established(&self, activity: Arc<Activity>) {
        let _ = self.activity.set(activity);
    }

    /// It just sent a request that authenticated: worth keeping for a while.
    pub(crate) fn authenticated(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.authenticated_ms.store(ms + 1, Ordering::Relaxed);
    }

    /// Resolves when it is closed to make room for another.
    pub(super) async fn evicted(&self) {
        self.close.notified().await;
    }

    /// `None` if it is worth keeping; otherwise how little it has done for us (the
    /// greater, the sooner it goes): its class, then how long it has been of no use.
    fn standing(&self, now: Instant, protected_for: Duration) -> Option<Standing> {
        let Some(activity) = self.activity.get() else {
            return Some((
                Eviction::Handshake,
                now.saturating_duration_since(self.opened),
            ));
        };
        let idle = activity.idle_for();
        match self.authenticated_ms.load(Ordering::Relaxed) {
            0 => Some((Eviction::Unauthenticated, idle)),
            ms => {
                let at = self.opened + Duration::from_millis(ms - 1);
                (now.saturating_duration_since(at) > protected_for)
                    .then_some((Eviction::Idle, idle))
            }
        }
    }
}

// === impl Slot ===

impl Slot {
    pub(super) fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.slots.lock();
        // Closed to make room: its slot went to the newcomer then.
        if self.connection.evicted.load(Ordering::Relaxed) {
            return;
        }
        let index = state
            .peers
            .get(&self.peer)
            .and_then(|held| held.iter().position(|c| Arc::ptr_eq(c, &self.connection)));
        if let Some(index) = index {
            state.remove(&self.peer, index);
        }
        drop(state);
        self.slots.freed.notify_one();
    }
}

// === impl Eviction ===

impl Eviction {
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Unauthenticated => "unauthenticated",
            Self::Handshake => "handshake",
        }
    }
}

#[cfg(test)]
mod tests;
