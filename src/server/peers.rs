//! Connections per peer address: one client must not hold every `--max-connections`
//! slot (half-open handshakes, silent connections), locking every other scraper out.
//!
//! Past its share a peer's new connections are closed at once, before the TLS
//! handshake, and counted; the others' slots stay free. Peers are told apart by
//! `PeerKey`: an IPv4 address (behind a NAT, the NAT's) or an IPv6 /64.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
};

use crate::identity::PeerKey;

/// Live connections by peer, up to `max` each.
#[derive(Debug)]
pub(super) struct PeerSlots {
    max: usize,
    live: Mutex<HashMap<PeerKey, usize>>,
}

/// One live connection of a peer; gives its slot back when dropped.
#[derive(Debug)]
pub(super) struct PeerSlot {
    slots: Arc<PeerSlots>,
    peer: PeerKey,
}

impl PeerSlots {
    pub(super) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            live: Mutex::default(),
        })
    }

    /// A slot for `peer`, or `None` if it already has its share.
    pub(super) fn take(self: &Arc<Self>, peer: IpAddr) -> Option<PeerSlot> {
        // Short, panic-free sections only: a poisoned map is still consistent.
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let peer = PeerKey::of(peer);
        let count = live.entry(peer).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            slots: Arc::clone(self),
            peer,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut live = self
            .slots
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = live.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                live.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_its_share_and_gives_it_back() {
        let slots = PeerSlots::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = slots.take(a).unwrap();
        let _second = slots.take(a).unwrap();
        assert!(slots.take(a).is_none(), "past its share");
        assert!(slots.take(b).is_some(), "another peer is not affected");
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert!(slots.take(mapped).is_none(), "IPv4-mapped is the same peer");
        let six = |s: &str| s.parse::<IpAddr>().unwrap();
        let _v6 = [
            slots.take(six("2001:db8::1")),
            slots.take(six("2001:db8::2")),
        ];
        assert!(
            slots.take(six("2001:db8::ffff:1")).is_none(),
            "one /64 is one peer, whatever address in it a client picks"
        );
        assert!(
            slots.take(six("2001:db8:0:1::1")).is_some(),
            "the next /64 is another"
        );
        drop(first);
        assert!(slots.take(a).is_some(), "a closed connection frees a slot");
        assert!(slots.live.lock().unwrap().len() <= 2);
    }
}
