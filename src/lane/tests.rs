use super::*;
use hyper_util::rt::TokioIo;
use std::time::Duration;

use futures_util::FutureExt as _;

impl Lent {
    fn line(self) -> Lease {
        match self {
            Lent::Line(lease) => lease,
            Lent::Pool(_) => panic!("a lane connection"),
        }
    }
}

/// Leases `lane` now, or `None` if that would wait.
fn lease_now(lane: &Lane, spares: &Arc<Spares>, extras: &Extras) -> Option<Lent> {
    lane.lease(spares, extras).now_or_never()
}

#[test]
fn a_lane_lends_up_to_max_lines_at_once() {
    let (lane, spares, extras) = (Lane::default(), Arc::default(), Extras::new(MAX_LINES));
    let mut lent: Vec<Lease> = (0..MAX_LINES)
        .map(|_| lease_now(&lane, &spares, &extras).expect("room").line())
        .collect();
    let pooled = lease_now(&lane, &spares, &extras);
    assert!(
        matches!(pooled, Some(Lent::Pool(_))),
        "the pool takes the rest"
    );
    assert!(
        lease_now(&lane, &spares, &extras).is_none(),
        "no extra left"
    );
    drop(pooled);
    lent.pop();
    assert!(
        matches!(lease_now(&lane, &spares, &extras), Some(Lent::Line(_))),
        "a returned lease makes room again"
    );
    drop(lent);
    assert!(!lane.has_idle(), "no connection was ever put in it");
    assert_eq!(spares.len(), 0);
}

#[tokio::test]
async fn extras_are_shared_but_each_client_keeps_its_first() {
    let (spares, extras) = (Arc::default(), Extras::new(2));
    let (a, b) = (Lane::default(), Lane::default());
    let mut lent: Vec<Lease> = (0..3)
        .map(|_| {
            lease_now(&a, &spares, &extras)
                .expect("first, extras")
                .line()
        })
        .collect();
    assert!(lease_now(&a, &spares, &extras).is_none(), "no extra left");
    let b_first = lease_now(&b, &spares, &extras)
        .expect("b's first is its own")
        .line();
    let mut b_extra = std::pin::pin!(b.lease(&spares, &extras));
    assert!(futures_util::poll!(b_extra.as_mut()).is_pending());
    // One of a's extras comes back: b's waiting request takes its room.
    lent.pop();
    let b_extra = tokio::time::timeout(Duration::from_secs(5), b_extra)
        .await
        .expect("woken when room came back")
        .line();
    assert!(b_extra.extra.is_some() && b_first.extra.is_none());
    // a's first comes back: a request of a's waits for nothing more.
    let a_first = lent.remove(0);
    let mut a_next = std::pin::pin!(a.lease(&spares, &extras));
    assert!(futures_util::poll!(a_next.as_mut()).is_pending());
    drop(a_first);
    let a_next = tokio::time::timeout(Duration::from_secs(5), a_next)
        .await
        .expect("woken when its first came back")
        .line();
    assert!(a_next.extra.is_none());
}

/// A connection over an in-memory pipe (its other end dropped: never used).
async fn line() -> Line {
    let (io, _) = tokio::io::duplex(64);
    Line::open(TokioIo::new(io), &http1::Builder::new())
        .await
        .expect("handshake")
}

/// Lends `MAX_LINES` connections of each lane at once, then gives them all back,
/// read to the end.
async fn busy_moment(lanes: &[Lane], spares: &Arc<Spares>) {
    let extras = Extras::new(lanes.len() * MAX_LINES);
    let mut lent = Vec::new();
    for lane in lanes {
        for _ in 0..MAX_LINES {
            let mut lease = lane.lease(spares, &extras).await.line();
            if lease.line.is_none() {
                lease.install(line().await);
            }
            lent.push(lease);
        }
    }
    for mut lease in lent {
        lease.response_ended();
    }
}

#[tokio::test]
async fn an_idle_lane_keeps_one_connection_and_spares_are_bounded() {
    let spares = Arc::default();
    let lanes: Vec<Lane> = (0..3).map(|_| Lane::default()).collect();
    busy_moment(&lanes[..1], &spares).await;
    assert!(lanes[0].has_idle());
    assert_eq!(spares.len(), MAX_LINES - 1, "all but one given back");
    // The next busy moment takes the spares before opening new connections.
    busy_moment(&lanes, &spares).await;
    assert!(lanes.iter().all(Lane::has_idle));
    assert_eq!(spares.len(), SPARE_LINES, "the rest were closed");
}

#[tokio::test]
async fn a_connection_answered_before_its_body_was_sent_is_closed() {
    let (lane, spares) = (Lane::default(), Arc::default());
    let mut lease = lane.lease(&spares, &Extras::default()).await.line();
    lease.install(line().await);
    lease.answered_early = true;
    lease.response_ended();
    drop(lease);
    assert!(!lane.has_idle() && spares.len() == 0, "closed, not kept");
}
