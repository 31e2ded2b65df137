use super::*;
use hyper_util::rt::TokioIo;
use std::time::Duration;

use futures_util::FutureExt as _;

impl Lent {
    fn connection(self) -> Loan {
        match self {
            Lent::Connection(loan) => loan,
            Lent::Pool(_) => panic!("a own connection"),
        }
    }
}

/// Lends one of `own` now, or `None` if that would wait.
fn lend_now(own: &OwnConnections, spares: &Arc<Spares>, extras: &Extras) -> Option<Lent> {
    own.lend(spares, extras).now_or_never()
}

#[test]
fn a_client_connection_lends_up_to_max_per_client_at_once() {
    let (own, spares, extras) = (
        OwnConnections::default(),
        Arc::default(),
        Extras::new(MAX_PER_CLIENT),
    );
    let mut lent: Vec<Loan> = (0..MAX_PER_CLIENT)
        .map(|_| lend_now(&own, &spares, &extras).expect("room").connection())
        .collect();
    let pooled = lend_now(&own, &spares, &extras);
    assert!(
        matches!(pooled, Some(Lent::Pool(_))),
        "the pool takes the rest"
    );
    assert!(lend_now(&own, &spares, &extras).is_none(), "no extra left");
    drop(pooled);
    lent.pop();
    assert!(
        matches!(lend_now(&own, &spares, &extras), Some(Lent::Connection(_))),
        "a returned loan makes room again"
    );
    drop(lent);
    assert!(!own.has_idle(), "no connection was ever put in it");
    assert_eq!(spares.len(), 0);
}

#[tokio::test]
async fn extras_are_shared_but_each_client_keeps_its_first() {
    let (spares, extras) = (Arc::default(), Extras::new(2));
    let (a, b) = (OwnConnections::default(), OwnConnections::default());
    let mut lent: Vec<Loan> = (0..3)
        .map(|_| {
            lend_now(&a, &spares, &extras)
                .expect("first, extras")
                .connection()
        })
        .collect();
    assert!(lend_now(&a, &spares, &extras).is_none(), "no extra left");
    let b_first = lend_now(&b, &spares, &extras)
        .expect("b's first is its own")
        .connection();
    let mut b_extra = std::pin::pin!(b.lend(&spares, &extras));
    assert!(futures_util::poll!(b_extra.as_mut()).is_pending());
    // One of a's extras comes back: b's waiting request takes its room.
    lent.pop();
    let b_extra = tokio::time::timeout(Duration::from_secs(5), b_extra)
        .await
        .expect("woken when room came back")
        .connection();
    assert!(b_extra.extra.is_some() && b_first.extra.is_none());
    // a's first comes back: a request of a's waits for nothing more.
    let a_first = lent.remove(0);
    let mut a_next = std::pin::pin!(a.lend(&spares, &extras));
    assert!(futures_util::poll!(a_next.as_mut()).is_pending());
    drop(a_first);
    let a_next = tokio::time::timeout(Duration::from_secs(5), a_next)
        .await
        .expect("woken when its first came back")
        .connection();
    assert!(a_next.extra.is_none());
}

/// A connection over an in-memory pipe (its other end dropped: never used).
async fn connection() -> Connection {
    let (io, _) = tokio::io::duplex(64);
    Connection::open(TokioIo::new(io), &http1::Builder::new())
        .await
        .expect("handshake")
}

/// Lends `MAX_PER_CLIENT` connections of each client at once, then gives them all back,
/// read to the end.
async fn busy_moment(clients: &[OwnConnections], spares: &Arc<Spares>) {
    let extras = Extras::new(clients.len() * MAX_PER_CLIENT);
    let mut lent = Vec::new();
    for own in clients {
        for _ in 0..MAX_PER_CLIENT {
            let mut loan = own.lend(spares, &extras).await.connection();
            if loan.connection.is_none() {
                loan.install(connection().await);
            }
            lent.push(loan);
        }
    }
    for mut loan in lent {
        loan.response_ended();
    }
}

#[tokio::test]
async fn an_idle_client_connection_keeps_one_connection_and_spares_are_bounded() {
    let spares = Arc::default();
    let clients: Vec<OwnConnections> = (0..3).map(|_| OwnConnections::default()).collect();
    busy_moment(&clients[..1], &spares).await;
    assert!(clients[0].has_idle());
    assert_eq!(spares.len(), MAX_PER_CLIENT - 1, "all but one given back");
    // The next busy moment takes the spares before opening new connections.
    busy_moment(&clients, &spares).await;
    assert!(clients.iter().all(OwnConnections::has_idle));
    assert_eq!(spares.len(), MAX_SPARES, "the rest were closed");
}

#[tokio::test]
async fn a_connection_answered_before_its_body_was_sent_is_closed() {
    let (own, spares) = (OwnConnections::default(), Arc::default());
    let mut loan = own.lend(&spares, &Extras::default()).await.connection();
    loan.install(connection().await);
    loan.answered_early = true;
    loan.response_ended();
    drop(loan);
    assert!(!own.has_idle() && spares.len() == 0, "closed, not kept");
}

/// A listener with several upstreams (Deckhouse's routes): a client connection's
/// connections to one are never lent for another.
#[test]
fn a_client_connection_has_one_set_per_upstream() {
    let (a, b) = (Arc::new(Spares::default()), Arc::new(Spares::default()));
    let own = OwnConnections::default();
    let same = |x: &OwnConnections, y: &OwnConnections| Arc::ptr_eq(&x.0, &y.0);
    let to_a = own.to(&a);
    assert!(
        same(&to_a, &own),
        "the first upstream claims the client's own set"
    );
    let to_b = own.to(&b);
    assert!(!same(&to_b, &to_a));
    assert!(same(&own.to(&b), &to_b), "and keeps it");
    assert!(same(&own.to(&a), &to_a));
}
