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
//!
//! The third security review floods from several addresses, each at its share
//! (`--max-reviews-per-peer`): from 4 they used to hold the whole budget, so new valid
//! tokens got 503 and so did a cached scraper once its entry expired; and with
//! `--stale-if-error` the reviews the proxy refused itself stood in as apiserver errors,
//! so a revoked token or grant was still served. The tests below run those floods with
//! the default limits and short cache TTLs, so that entries expire during the flood.

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
use tokio::{io::AsyncWriteExt, net::TcpSocket, task::JoinSet, time::Instant};
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
                let token = format!("junk-{from}-{}", next.fetch_add(1, Ordering::Relaxed));
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

/// The `i`-th address of a /24 on the loopback interface (`127.0.<net>.<i+1>`).
fn loopback(net: u8, i: usize) -> IpAddr {
    let host = u8::try_from(i + 1).expect("a host number");
    IpAddr::V4(Ipv4Addr::new(127, 0, net, host))
}

/// The scraper whose identity is cached when the flood starts.
const CACHED_SCRAPER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Every cache entry expires during the flood: a cached scraper has to be renewed.
const SHORT_TTLS: [&str; 3] = [
    "--kube-api-qps=0",
    "--auth-cache-ttl=3s",
    "--authz-allow-ttl=3s",
];

/// Junk from `addresses` addresses (127.0.1.x), 8 patient connections each (the
/// per-peer cap), while the cached scraper scrapes every 300 ms and a new scraper
/// (a new pod: its own address in 127.0.2.x, its own identity) arrives every 700 ms.
/// Returns what the cached scraper got that was not 200, and how many new scrapers
/// were served out of how many.
async fn junk_beside_scrapers(addresses: usize) -> (Vec<String>, usize, usize) {
    let w = World::start(TOKEN, &SHORT_TTLS).await;
    let wire = Wire::new(&w.pki, w.proxy.addr);
    assert_eq!(wire.status(CACHED_SCRAPER, TOKEN).await.unwrap(), 200);
    let stop = Arc::new(AtomicBool::new(false));
    let mut floods = Vec::new();
    for a in 0..addresses {
        let from = loopback(1, a);
        let patience = Duration::from_secs(10);
        let pause = Duration::from_millis(50);
        floods.push(flood(&wire, from, 8, patience, pause, &stop));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let cached = {
        let (wire, stop) = (wire.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut failures = Vec::new();
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                match wire.status(CACHED_SCRAPER, TOKEN).await {
                    Ok(200) => {}
                    other => failures.push(format!("{:?}: {other:?}", started.elapsed())),
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            failures
        })
    };
    let mut newcomers = JoinSet::new();
    const NEWCOMERS: usize = 14;
    for i in 0..NEWCOMERS {
        let (token, user) = (
            format!("new-token-{i}"),
            format!("system:serviceaccount:new:{i}"),
        );
        w.api.add_token(&token, &user);
        w.api.allow(&user, "get", "/metrics");
        let wire = wire.clone();
        newcomers.spawn(async move { wire.status(loopback(2, i), &token).await });
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let mut served = 0;
    while let Some(status) = newcomers.join_next().await {
        let status = status.expect("a newcomer panicked");
        eprintln!("newcomer: {status:?}");
        served += usize::from(matches!(status, Ok(200)));
    }
    stop.store(true, Ordering::Relaxed);
    let cached = cached.await.expect("the cached scraper panicked");
    let mut junk = 0;
    for flood in floods {
        junk += sent(flood).await;
    }
    eprintln!(
        "{addresses} junk addresses ({junk} junk requests): {served}/{NEWCOMERS} new \
         scrapers served, cached scraper failures: {cached:?}"
    );
    assert!(junk > 100, "the flood was a flood: {junk} requests");
    (cached, served, NEWCOMERS)
}

/// Target: with junk from 4 addresses, at least 80 % of new valid tokens served, and
/// the cached scraper renewed every time (never a 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_from_four_addresses_starves_neither_new_nor_cached_scrapers() {
    let (cached, served, total) = junk_beside_scrapers(4).await;
    assert!(
        cached.is_empty(),
        "the cached scraper was not renewed: {cached:?}"
    );
    assert!(
        served * 100 >= total * 80,
        "only {served} of {total} new scrapers were served"
    );
}

/// Target: with junk from 12 addresses, at least half of the new valid tokens served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_from_twelve_addresses_still_serves_most_new_scrapers() {
    let (cached, served, total) = junk_beside_scrapers(12).await;
    assert!(
        served * 100 >= total * 50,
        "only {served} of {total} new scrapers were served"
    );
    assert!(
        cached.is_empty(),
        "the cached scraper was not renewed: {cached:?}"
    );
}

/// A revoked token and a revoked grant, each cached before the flood: once their
/// entries expire, reviews refused for lack of budget are not apiserver errors, so
/// `--stale-if-error` must not stand in for them. Never a 200 after the TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_reviews_never_revive_a_revoked_token_or_grant() {
    let flags = [
        "--kube-api-qps=0",
        "--auth-cache-ttl=2s",
        "--authz-allow-ttl=2s",
        "--stale-if-error=5m",
    ];
    let w = World::start(TOKEN, &flags).await;
    let wire = Wire::new(&w.pki, w.proxy.addr);
    const REVOKED_GRANT: &str = "system:serviceaccount:old:grant";
    w.api.add_token("revoked-token", SCRAPER);
    w.api.add_token("revoked-grant", REVOKED_GRANT);
    w.api.allow(REVOKED_GRANT, "get", "/metrics");
    for token in ["revoked-token", "revoked-grant"] {
        assert_eq!(wire.status(CACHED_SCRAPER, token).await.unwrap(), 200);
    }
    w.api.remove_token("revoked-token");
    w.api.disallow(REVOKED_GRANT, "get", "/metrics");
    let revoked = Instant::now();

    let stop = Arc::new(AtomicBool::new(false));
    let floods: Vec<_> = (0..4)
        .map(|a| {
            let (patience, pause) = (Duration::from_secs(10), Duration::from_millis(50));
            flood(&wire, loopback(1, a), 8, patience, pause, &stop)
        })
        .collect();
    // Past both TTLs, with a margin for a scrape that was under way.
    tokio::time::sleep_until(revoked + Duration::from_secs(3)).await;
    let mut answers = Vec::new();
    for _ in 0..8 {
        for token in ["revoked-token", "revoked-grant"] {
            let status = wire.status(CACHED_SCRAPER, token).await;
            answers.push(format!("{token}: {status:?}"));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for flood in floods {
        sent(flood).await;
    }
    eprintln!("after revocation, during the flood: {answers:?}");
    assert!(
        !answers.iter().any(|a| a.ends_with("Ok(200)")),
        "a revoked token or grant was served past its TTL: {answers:?}"
    );
}
