use super::*;

fn limits(max: usize, per_peer: usize) -> SlotLimits {
    SlotLimits {
        max,
        per_peer,
        protected_for: Duration::from_secs(60),
    }
}

fn admitted(admission: Admission) -> (Slot, Option<Eviction>) {
    match admission {
        Admission::Admitted(slot, eviction) => (slot, eviction),
        other => panic!("not admitted: {other:?}"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A slot whose connection served an authenticated request just now.
fn busy(admission: Admission) -> Slot {
    let (slot, _) = admitted(admission);
    slot.connection().established(Arc::new(Activity::new()));
    slot.connection().authenticated();
    slot
}

#[tokio::test(start_paused = true)]
async fn a_peer_gets_its_share_and_gives_it_back() {
    let slots = Slots::new(limits(100, 2));
    let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
    let first = busy(slots.take(a));
    let _second = busy(slots.take(a));
    assert!(
        matches!(slots.take(a), Admission::PeerFull),
        "past its share"
    );
    let _other = admitted(slots.take(b));
    assert!(
        matches!(slots.take(ip("::ffff:10.0.0.1")), Admission::PeerFull),
        "IPv4-mapped is the same peer"
    );
    let _v6 = [
        busy(slots.take(ip("2001:db8::1"))),
        busy(slots.take(ip("2001:db8::2"))),
    ];
    assert!(
        matches!(slots.take(ip("2001:db8::ffff:1")), Admission::PeerFull),
        "one /64 is one peer, whatever address in it a client picks"
    );
    let _next = admitted(slots.take(ip("2001:db8:0:1::1")));
    drop(first);
    let _again = admitted(slots.take(a));
    assert!(slots.lock().peers.len() <= 4);
}

#[test]
fn a_peer_at_its_share_replaces_its_own_useless_connection() {
    let slots = Slots::new(limits(100, 2));
    let a = ip("10.0.0.1");
    let useless = admitted(slots.take(a)).0;
    let _kept = busy(slots.take(a));
    let (_newcomer, eviction) = admitted(slots.take(a));
    assert_eq!(eviction, Some(Eviction::Handshake));
    assert!(useless.connection.evicted.load(Ordering::Relaxed));
    assert_eq!(slots.lock().count(&PeerKey::of(a)), 2, "still its share");
}

#[tokio::test(start_paused = true)]
async fn at_capacity_the_busiest_peers_useless_connection_makes_room() {
    let slots = Slots::new(limits(4, 4));
    let scraper = busy(slots.take(ip("10.0.0.9")));
    let mut flood = Vec::new();
    for _ in 0..3 {
        flood.push(admitted(slots.take(ip("10.0.0.1"))).0);
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    // Full: the newcomer (from a third address) takes the flood's oldest handshake.
    let (newcomer, eviction) = admitted(slots.take(ip("10.0.0.2")));
    assert_eq!(eviction, Some(Eviction::Handshake));
    assert!(flood[0].connection.evicted.load(Ordering::Relaxed));
    assert_eq!(slots.lock().live, 4);
    drop(flood.remove(0));
    assert_eq!(
        slots.lock().live,
        4,
        "an evicted slot is not given back twice"
    );
    // Only the scraper's authenticated connection left: nobody is closed for it.
    drop((flood, newcomer));
    let _more: Vec<Slot> = (0..3).map(|_| busy(slots.take(ip("10.0.0.1")))).collect();
    assert!(matches!(slots.take(ip("10.0.0.3")), Admission::Full));
    assert!(!scraper.connection.evicted.load(Ordering::Relaxed));
    // Past the protection window the least recently useful goes, as `idle`.
    tokio::time::advance(Duration::from_secs(61)).await;
    let (_late, eviction) = admitted(slots.take(ip("10.0.0.3")));
    assert_eq!(eviction, Some(Eviction::Idle));
}

#[tokio::test(start_paused = true)]
async fn a_flood_from_many_addresses_does_not_evict_a_scrapers_handshake() {
    let slots = Slots::new(limits(8, 8));
    // The scraper's connection is the newest handshake, but its peer has one.
    let flood: Vec<Slot> = (0..7)
        .map(|i| admitted(slots.take(ip(&format!("10.0.1.{}", i % 2)))).0)
        .collect();
    tokio::time::advance(Duration::from_millis(10)).await;
    let scraper = admitted(slots.take(ip("10.0.0.9"))).0;
    let mut kept = Vec::new();
    for i in 0..50 {
        let (slot, eviction) = admitted(slots.take(ip(&format!("10.0.1.{}", i % 2))));
        assert_eq!(eviction, Some(Eviction::Handshake));
        kept.push(slot);
    }
    assert!(!scraper.connection.evicted.load(Ordering::Relaxed));
    drop(flood);
}

#[tokio::test(start_paused = true)]
async fn a_busy_scraper_with_the_most_connections_keeps_them() {
    let slots = Slots::new(limits(128, 96));
    // Prometheus: the most connections of any address, all but one serving scrapes.
    let prometheus = ip("10.0.0.9");
    let scrapes: Vec<Slot> = (0..20).map(|_| busy(slots.take(prometheus))).collect();
    let opening = admitted(slots.take(prometheus)).0;
    // 16 addresses with fewer connections each that have done nothing for us.
    let mut flood = Vec::new();
    for i in 0..107 {
        flood.push(admitted(slots.take(ip(&format!("10.0.1.{}", i % 16)))).0);
    }
    tokio::time::advance(Duration::from_secs(5)).await;
    for i in 0..200 {
        let (slot, eviction) = admitted(slots.take(ip(&format!("10.0.2.{}", i % 200))));
        assert!(eviction.is_some());
        flood.push(slot);
    }
    assert!(scrapes
        .iter()
        .all(|s| !s.connection.evicted.load(Ordering::Relaxed)));
    assert!(
        !opening.connection.evicted.load(Ordering::Relaxed),
        "its one new connection is not the flood's victim either"
    );
}
