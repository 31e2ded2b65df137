//! A flood of junk bearer tokens, each a cache miss that needs a TokenReview, must not
//! cost the scrapers that come after it or beside it.
//!
//! With the default `--kube-api-qps`/`--kube-api-burst` (5/10) the limiter used to
//! charge every review it was asked for, sent or not: reviews abandoned by impatient
//! clients left a debt that later callers paid off at 5 a second, so a brand-new
//! valid token got 503 for minutes after a few seconds of flood. Here the flood comes
//! from many connections whose clients give up quickly, over raw TLS so that giving
//! up really closes the connection; then a scraper with a new token must be answered
//! 200 within a few seconds (a bounded wait, not a claim about speed). A second test
//! floods from one address and scrapes from another at the same time.

use scrape_guard_testkit as support;

use std::{
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use rustls_pki_types::ServerName;
use support::{
    eventually,
    http1::{get_request, read_exchange},
    Pki, World, SCRAPER,
};
use tokio::{io::AsyncWriteExt, net::TcpSocket, time::Instant};
use tokio_rustls::TlsConnector;

const TOKEN: &str = "good-token";
const FLOODER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Another address on the loopback interface: a scraper in another pod.
const NEIGHBOUR: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// The test kit's world with the review rate limit at its defaults (`0`: client-go's
/// 5 QPS, burst 10; the kit turns it off otherwise) and every other limit as shipped.
async fn world() -> World {
    World::start(TOKEN, &["--kube-api-qps=0"]).await
}

/// One GET /metrics per TLS connection, from a chosen local address, answered by its
/// status code. Dropping the future closes the connection, as a client that gives up.
#[derive(Clone)]
struct Wire {
    connector: TlsConnector,
    proxy: SocketAddr,
}

impl Wire {
    fn new(pki: &Pki, proxy: SocketAddr) -> Self {
        let config = pki.client_config(&[b"http/1.1"]);
        Self {
            connector: TlsConnector::from(Arc::new(config)),
            proxy,
        }
    }

    async fn status(&self, from: IpAddr, token: &str) -> io::Result<u16> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(from, 0))?;
        let tcp = socket.connect(self.proxy).await?;
        let name = ServerName::try_from("localhost").expect("a DNS name");
        let mut tls = self.connector.connect(name, tcp).await?;
        tls.write_all(&get_request("GET", b"/metrics", token, ""))
            .await?;
        let exchange = read_exchange(&mut tls, 1, Duration::from_secs(10)).await;
        exchange
            .statuses()
            .first()
            .copied()
            .ok_or_else(|| io::Error::other(format!("no response: {:?}", exchange.text())))
    }
}

/// `clients` connections from `from`, each sending a never-seen junk token, waiting at
/// most `patience` for the answer, then `pause` before the next, until `stop`. Returns
/// how many requests were sent.
fn flood(
    wire: &Wire,
    from: IpAddr,
    clients: usize,
    patience: Duration,
    pause: Duration,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinSet<usize> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (wire, stop, next) = (wire.clone(), Arc::clone(stop), Arc::clone(&next));
        set.spawn(async move {
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) {
                let token = format!("junk-{}", next.fetch_add(1, Ordering::Relaxed));
                let _ = tokio::time::timeout(patience, wire.status(from, &token)).await;
                sent += 1;
                tokio::time::sleep(pause).await;
            }
            sent
        });
    }
    set
}

async fn sent(mut flood: tokio::task::JoinSet<usize>) -> usize {
    let mut total = 0;
    while let Some(sent) = flood.join_next().await {
        total += sent.expect("a flood client panicked");
    }
    total
}

/// The security review's case, with the default limits: 64 impatient clients for 3 s,
/// then one new valid token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_flood_of_abandoned_reviews_a_new_token_is_served_within_seconds() {
    let w = world().await;
    let wire = Wire::new(&w.pki, w.proxy.addr);
    let stop = Arc::new(AtomicBool::new(false));
    let clients = flood(
        &wire,
        FLOODER,
        64,
        Duration::from_millis(100),
        Duration::from_millis(250),
        &stop,
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let sent = sent(clients).await;
    assert!(sent > 100, "the flood was a flood: {sent} requests");

    w.api.add_token("fresh-after-flood", SCRAPER);
    let flood_ended = Instant::now();
    eventually(Duration::from_secs(5), || async {
        match wire.status(FLOODER, "fresh-after-flood").await {
            Ok(200) => Ok(()),
            other => Err(format!(
                "a new valid token still not served {:?} after a flood of {sent} junk \
                 requests: {other:?}",
                flood_ended.elapsed()
            )),
        }
    })
    .await;
    eprintln!(
        "served {:?} after a flood of {sent} junk requests",
        flood_ended.elapsed()
    );
}

/// Many connections from one address keep junk reviews waiting and in flight against
/// a slow apiserver; a scraper from another address with a new token still gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_flooding_cannot_starve_a_scraper_at_another() {
    let w = world().await;
    w.api.set_delay(Duration::from_millis(200));
    let wire = Wire::new(&w.pki, w.proxy.addr);
    let stop = Arc::new(AtomicBool::new(false));
    // Patient: each waits for its answer, so its review holds its place to the end.
    let clients = flood(
        &wire,
        FLOODER,
        32,
        Duration::from_secs(10),
        Duration::from_millis(200),
        &stop,
    );
    // Long enough for the flood to have filled whatever it can.
    tokio::time::sleep(Duration::from_secs(1)).await;

    w.api.add_token("fresh-during-flood", SCRAPER);
    let started = Instant::now();
    eventually(Duration::from_secs(15), || async {
        match wire.status(NEIGHBOUR, "fresh-during-flood").await {
            Ok(200) => Ok(()),
            other => Err(format!(
                "the scraper at {NEIGHBOUR} still not served after {:?} of flood from \
                 {FLOODER}: {other:?}",
                started.elapsed()
            )),
        }
    })
    .await;
    eprintln!("served during the flood after {:?}", started.elapsed());
    stop.store(true, Ordering::Relaxed);
    sent(clients).await;
}
