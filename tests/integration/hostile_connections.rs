//! Hostile connections: clients that dribble a request, say nothing, stop reading a
//! response, or speak plain text to the TLS port. None may delay other scrapers or
//! hold a `--max-connections` slot for good. Over raw TLS sockets
//! (`support::http1`, `support::http2`), as such a client would be.

use scrape_guard_testkit as support;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use support::{
    http1::{get_request, read_exchange},
    http2::H2,
    https::tls,
    World,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

const SA: &str = support::SCRAPER;
/// Distinctive, so a response body that echoes it is easy to spot.
const TOKEN: &str = "tok-5ecret-9f3a1c";

/// `TOKEN` authenticates as `SA`, which may `get /metrics` (tests allow more paths).
async fn world(extra: &[&str]) -> World {
    let world = World::start(TOKEN, extra).await;
    world
}

// ---------------------------------------------------------------------------------
// Slowloris
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_clients_do_not_block_others() {
    let w = world(&[]).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut held = Vec::new();
    // 20 that dribble a request head one byte every 200 ms.
    for _ in 0..20 {
        let mut io = tls(&w.pki, w.proxy.addr, &[b"http/1.1"]).await;
        let stop = Arc::clone(&stop);
        held.push(tokio::spawn(async move {
            for byte in b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
                .iter()
                .cycle()
            {
                if stop.load(std::sync::atomic::Ordering::Relaxed)
                    || io.write_all(&[*byte]).await.is_err()
                {
                    return;
                }
                let _ = io.flush().await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }
    // 50 that finish the handshake and say nothing; 20 that never start TLS.
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(tls(&w.pki, w.proxy.addr, &[b"http/1.1"]).await);
    }
    let mut tcp_only = Vec::new();
    for _ in 0..20 {
        tcp_only.push(TcpStream::connect(w.proxy.addr).await.unwrap());
    }
    // Meanwhile, ordinary scrapes over new connections are answered promptly.
    for _ in 0..5 {
        let start = Instant::now();
        w.healthy_scrape().await;
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "scrape took {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut h2 = H2::connect(&w).await;
    let id = h2.get(b"GET", b"/metrics", &[]).await;
    assert_eq!(
        h2.wait_for(id, Duration::from_secs(5)).await.status,
        Some(200)
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in held {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    assert!(
        w.echo.seen().len() >= 6,
        "only the ordinary scrapes were forwarded"
    );
    assert_eq!(w.echo.seen().len(), 6);
    drop((silent, tcp_only));
}

// ---------------------------------------------------------------------------------
// Garbage on the TLS port
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn plain_text_and_garbage_on_the_tls_port_are_dropped() {
    let w = world(&[]).await;
    for garbage in [
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        vec![0x16, 0x03, 0x01, 0xff, 0xff],
        vec![0u8; 4096],
    ] {
        let mut tcp = TcpStream::connect(w.proxy.addr).await.unwrap();
        let _ = tcp.write_all(&garbage).await;
        let mut buf = vec![0u8; 4096];
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "connection still open after garbage {garbage:?}"
        );
    }
    assert!(w.echo.seen().is_empty());
    w.healthy_scrape().await;
}

// ---------------------------------------------------------------------------------
// Connection slots: silent, idle and stalled clients
// ---------------------------------------------------------------------------------

/// A scrape over a new connection, which may first wait in the listen backlog for a
/// `--max-connections` slot: its statuses, or `None` if not answered within `max`.
async fn scrape_on_a_new_connection(w: &World, max: Duration) -> Option<Vec<u16>> {
    let config = Arc::new(w.pki.client_config(&[b"http/1.1"]));
    let addr = w.proxy.addr;
    tokio::time::timeout(max, async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut io = TlsConnector::from(config).connect(name, tcp).await.unwrap();
        io.write_all(&get_request("GET", b"/metrics", TOKEN, ""))
            .await
            .unwrap();
        read_exchange(&mut io, 1, Duration::from_secs(10))
            .await
            .statuses()
    })
    .await
    .ok()
}

/// A client that completes the TLS handshake and then sends nothing is never closed:
/// hyper-util's auto builder waits for the first bytes (to tell HTTP/1.1 from HTTP/2)
/// with no timeout, the 60 s header-read timeout only starts after that, and
/// `server::serve` only times the TLS handshake. Each such connection holds one
/// `--max-connections` slot for good, so 4096 (the default) idle sockets lock every
/// scraper out of the proxy. Measured: a partial request head is closed at 60 s; a
/// silent connection (ALPN http/1.1 or h2) was still open at 75 s.
///
/// When fixed this test takes up to the header-read timeout (60 s) unless silent
/// connections get a shorter first-byte timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_cannot_hold_every_connection_slot() {
    let w = world(&["--max-connections=2"]).await;
    let start = Instant::now();
    let mut silent = vec![
        tls(&w.pki, w.proxy.addr, &[b"http/1.1"]).await,
        tls(&w.pki, w.proxy.addr, &[b"h2"]).await,
    ];
    // Every slot is held. A scraper arriving now waits in the backlog, and must be
    // served once the silent connections are reaped (within the 60 s header timeout).
    let statuses = scrape_on_a_new_connection(&w, Duration::from_secs(70))
        .await
        .unwrap_or_else(|| panic!("a scraper was locked out for 70 s by 2 silent connections"));
    assert_eq!(statuses, [200], "after {:?}", start.elapsed());
    // The scraper no longer waits for them: one was closed to make room for it, the
    // other goes at the first-byte timeout.
    for io in &mut silent {
        let mut buf = [0u8; 64];
        let left = Duration::from_secs(71).saturating_sub(start.elapsed());
        let read = tokio::time::timeout(left, io.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0) | Err(_))),
            "a silent connection is still open after {:?}",
            start.elapsed()
        );
    }
}

/// An HTTP/2 connection with no streams, whose client answers the proxy's keep-alive
/// PINGs, must be closed after `--idle-timeout` like an idle HTTP/1.1 keep-alive, or
/// such clients could hold every `--max-connections` slot. (Before the fix: still open
/// after 100 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_h2_connections_are_closed_like_idle_http1_ones() {
    let w = world(&["--idle-timeout=3s"]).await;
    let start = Instant::now();
    let mut idle = H2::connect(&w).await;
    // pump() answers SETTINGS and PINGs, and opens no stream.
    idle.pump(Duration::from_secs(20), |h| h.closed || h.goaway.is_some())
        .await;
    assert!(
        idle.closed || idle.goaway.is_some(),
        "an idle HTTP/2 connection is still open after {:?}",
        start.elapsed()
    );
}

/// A client that asks for a big page and then stops reading keeps its request in
/// flight, which the idle timeout used to spare: it held its `--max-connections` slot
/// until the TCP connection died (before the fix: a scraper was still locked out after
/// 40 s). A complete stop in taking bytes for `--idle-timeout` now closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_cannot_hold_a_slot() {
    let w = world(&["--max-connections=1", "--idle-timeout=2s"]).await;
    w.api.allow(SA, "get", "/big");
    let start = Instant::now();
    let mut stalled = tls(&w.pki, w.proxy.addr, &[b"http/1.1"]).await;
    stalled
        .write_all(&get_request("GET", b"/big?bytes=2000000000", TOKEN, ""))
        .await
        .unwrap();
    // Read the start of the response (so it is being sent), then nothing more.
    let mut head = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(10), stalled.read(&mut head)).await;
    assert!(matches!(read, Ok(Ok(n)) if n > 0), "the page started");
    let statuses = scrape_on_a_new_connection(&w, Duration::from_secs(40))
        .await
        .unwrap_or_else(|| {
            panic!("a scraper was locked out for 40 s by a client that stopped reading")
        });
    assert_eq!(statuses, [200], "after {:?}", start.elapsed());
    drop(stalled);
}

// ---------------------------------------------------------------------------------
// Per-peer shares: one client cannot starve the others or the probes
// ---------------------------------------------------------------------------------

/// `n` TCP connections to `addr` from `source` (another loopback address, so the proxy
/// sees another peer) that send one byte of a TLS ClientHello and go silent.
async fn silent_connections_from(
    source: &str,
    addr: std::net::SocketAddr,
    n: usize,
) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..n {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        let Ok(Ok(mut tcp)) =
            tokio::time::timeout(Duration::from_secs(2), socket.connect(addr)).await
        else {
            continue; // refused or left in the backlog: either way, it holds nothing
        };
        let _ = tcp.write_all(&[0x16]).await;
        held.push(tcp);
    }
    held
}

/// Before the fix: 200 silent connections kept the kubelet's /healthz unanswered for
/// 8 s (64 slots, a 10 s handshake timeout), so the liveness probe failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_cannot_starve_the_probe_port() {
    let port = support::free_port();
    let w = world(&[&format!("--proxy-endpoints-port={port}")]).await;
    let admin = w.proxy.admin_addr.expect("probe port");
    let _held = silent_connections_from("127.0.0.2", admin, 200).await;
    let probe = async {
        let mut io = tls(&w.pki, admin, &[b"http/1.1"]).await;
        io.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        read_exchange(&mut io, 1, Duration::from_secs(5))
            .await
            .statuses()
    };
    // The kubelet gives a probe one second by default.
    let statuses = tokio::time::timeout(Duration::from_secs(3), probe)
        .await
        .expect("/healthz unanswered for 3 s behind 200 silent connections");
    assert_eq!(statuses, [200]);
}

/// Before the fix, one peer holding every `--max-connections` slot with silent
/// handshakes locked every other scraper out until its connections timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_cannot_hold_every_connection_slot() {
    let w = world(&["--max-connections=8", "--tls-handshake-timeout=30s"]).await;
    let _held = silent_connections_from("127.0.0.2", w.proxy.addr, 8).await;
    let statuses = scrape_on_a_new_connection(&w, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("a scraper was locked out for 5 s by another peer"));
    assert_eq!(statuses, [200]);
}

// ---------------------------------------------------------------------------------
// Several addresses: at capacity the proxy makes room instead of locking scrapers out
// ---------------------------------------------------------------------------------

/// A TCP connection to `addr` from `source`, another loopback address, so the proxy
/// sees another peer; `None` if not accepted within 2 s.
async fn connect_from(source: &str, addr: std::net::SocketAddr) -> Option<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let tcp = tokio::time::timeout(Duration::from_secs(2), socket.connect(addr))
        .await
        .ok()?
        .ok()?;
    tcp.set_nodelay(true).unwrap();
    Some(tcp)
}

/// `n` connections from `source` that finish the handshake, send `request` (answered
/// at once: a 401, a /healthz) and stay open, as a client that sends one such request
/// per idle period does. Each is echoed `request` again every `every`, until dropped.
async fn idle_connections_from(
    w: &World,
    source: &str,
    addr: std::net::SocketAddr,
    n: usize,
    request: &'static [u8],
    every: Duration,
) -> Vec<tokio::task::JoinHandle<()>> {
    let config = Arc::new(w.pki.client_config(&[b"http/1.1"]));
    let mut held = Vec::new();
    for _ in 0..n {
        let tcp = connect_from(source, addr).await.expect("accepted");
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let connect = TlsConnector::from(Arc::clone(&config)).connect(name, tcp);
        let mut io = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .expect("handshake in time")
            .expect("handshake");
        io.write_all(request).await.unwrap();
        let first = read_exchange(&mut io, 1, Duration::from_secs(5)).await;
        assert_eq!(first.responses.len(), 1, "answered: {:?}", first.statuses());
        held.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if io.write_all(request).await.is_err() {
                    return;
                }
                let answer = read_exchange(&mut io, 1, Duration::from_secs(5)).await;
                if answer.closed || answer.responses.is_empty() {
                    return;
                }
            }
        }));
    }
    held
}

/// Three scrapes in a row, each on a new connection from 127.0.0.1, each answered
/// within a generous 10 s (the target is 3 s; the figure is in the report).
async fn three_scrapes_from_another_address(w: &World, what: &str) {
    for attempt in 1..=3 {
        let start = Instant::now();
        let statuses = scrape_on_a_new_connection(w, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("scrape {attempt} locked out for 10 s by {what}"));
        assert_eq!(statuses, [200], "scrape {attempt} behind {what}");
        eprintln!("scrape {attempt} behind {what}: {:?}", start.elapsed());
    }
}

const NO_CREDENTIALS: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// Before the fix: with `--max-connections=128` as `deploy/` sets it, two addresses at
/// 64 connections each, one request without credentials per idle period, held every
/// slot, and a scraper at a third address waited in the backlog until they left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_addresses_cannot_hold_every_connection_slot() {
    let port = support::free_port();
    let w = world(&[
        "--max-connections=128",
        &format!("--proxy-endpoints-port={port}"),
    ])
    .await;
    let mut held = Vec::new();
    for source in ["127.0.0.2", "127.0.0.3"] {
        let every = Duration::from_secs(20);
        held.extend(
            idle_connections_from(&w, source, w.proxy.addr, 64, NO_CREDENTIALS, every).await,
        );
    }
    three_scrapes_from_another_address(&w, "2 addresses x 64 idle connections").await;
    // Room was made by closing one of theirs (the first scrape's connection, once
    // closed, may leave room for the next), and counted.
    assert!(evicted(&w, port, "unauthenticated").await >= 1);
    for task in held {
        task.abort();
    }
}

/// Connections closed to make room, for `reason`: scrape-guard's own metric, read
/// from the probe port as `SA`.
async fn evicted(w: &World, port: u16, reason: &str) -> u64 {
    let url = format!("https://localhost:{port}/metrics");
    let client = support::https::client(&w.pki, false);
    let reply = support::https::get(&client, &url, Some(TOKEN), &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let text = reply.text();
    let series = format!("scrape_guard_connections_evicted_total{{reason=\"{reason}\"}} ");
    let count = text.lines().find_map(|line| line.strip_prefix(&series));
    count.map_or(0, |n| n.parse().unwrap())
}

/// Before the fix: 16 addresses at 8 half-open handshakes each held every slot for the
/// handshake timeout, again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_addresses_cannot_hold_every_connection_slot() {
    let port = support::free_port();
    let w = world(&[
        "--max-connections=128",
        "--tls-handshake-timeout=30s",
        &format!("--proxy-endpoints-port={port}"),
    ])
    .await;
    let mut held = Vec::new();
    for i in 0..16 {
        held.extend(silent_connections_from(&format!("127.0.0.{}", i + 2), w.proxy.addr, 8).await);
    }
    three_scrapes_from_another_address(&w, "16 addresses x 8 half-open handshakes").await;
    assert!(evicted(&w, port, "handshake").await >= 1);
    drop(held);
}

/// A probe from the kubelet's address over a new connection: answered, and how fast.
async fn probe(w: &World, admin: std::net::SocketAddr) -> Option<(Vec<u16>, Duration)> {
    let start = Instant::now();
    let config = Arc::new(w.pki.client_config(&[b"http/1.1"]));
    tokio::time::timeout(Duration::from_secs(10), async move {
        let tcp = TcpStream::connect(admin).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut io = TlsConnector::from(config).connect(name, tcp).await.ok()?;
        io.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let statuses = read_exchange(&mut io, 1, Duration::from_secs(5))
            .await
            .statuses();
        Some((statuses, start.elapsed()))
    })
    .await
    .ok()
    .flatten()
}

/// Before the fix: 16 addresses holding the probe port's 64 slots with a /healthz every
/// second kept the kubelet's probe out for as long as they liked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_addresses_cannot_hold_the_probe_port() {
    let port = support::free_port();
    let w = world(&[&format!("--proxy-endpoints-port={port}")]).await;
    let admin = w.proxy.admin_addr.expect("probe port");
    const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut held = Vec::new();
    for i in 0..16 {
        let source = format!("127.0.0.{}", i + 2);
        let every = Duration::from_secs(1);
        held.extend(idle_connections_from(&w, &source, admin, 4, HEALTHZ, every).await);
    }
    for attempt in 1..=3 {
        let (statuses, took) = probe(&w, admin)
            .await
            .unwrap_or_else(|| panic!("probe {attempt} unanswered for 10 s"));
        assert_eq!(statuses, [200]);
        eprintln!("probe {attempt} behind 16 addresses x 4 idle connections: {took:?}");
    }
    for task in held {
        task.abort();
    }
}

/// 16 addresses keeping 32 half-open connections each on the way to the probe port,
/// each replaced as soon as it is closed (the review's finding, 256 of them, kept
/// /healthz unanswered for 4 s; these kept it out for longer), do not keep the
/// kubelet's probe out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_addresses_of_half_open_connections_do_not_starve_the_probe_port() {
    let port = support::free_port();
    let w = world(&[&format!("--proxy-endpoints-port={port}")]).await;
    let admin = w.proxy.admin_addr.expect("probe port");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = reconnecting_flood(admin, 16, 32, &stop);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for attempt in 1..=3 {
        let (statuses, took) = probe(&w, admin)
            .await
            .unwrap_or_else(|| panic!("probe {attempt} unanswered for 10 s"));
        assert_eq!(statuses, [200]);
        eprintln!("probe {attempt} behind 16 addresses x 32 reconnecting half-open: {took:?}");
    }
    // Room is made by closing their handshakes, not by their 2 s timeout running out
    // (which answered the probe too, but only after 4-6 s, past the kubelet's 1 s).
    assert!(evicted(&w, port, "handshake").await >= 1);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in flood {
        task.abort();
    }
}

/// `per_address` half-open connections to `addr` on the way from each of `addresses`
/// loopback addresses (127.0.0.2 on), each replaced as soon as the proxy closes it,
/// until `stop`.
fn reconnecting_flood(
    addr: std::net::SocketAddr,
    addresses: usize,
    per_address: usize,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut flood = Vec::new();
    for i in 0..addresses {
        for _ in 0..per_address {
            let source = format!("127.0.0.{}", i + 2);
            let stop = Arc::clone(stop);
            flood.push(tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let Some(mut tcp) = connect_from(&source, addr).await else {
                        continue;
                    };
                    let _ = tcp.write_all(&[0x16]).await;
                    // Held until the proxy closes it (or the test ends).
                    let mut buf = [0u8; 16];
                    let _ = tokio::time::timeout(Duration::from_secs(30), tcp.read(&mut buf)).await;
                }
            }));
        }
    }
    flood
}

/// 16 addresses that keep 12 half-open connections each on the way, opening a new one
/// as soon as one of theirs is closed: 192 for 128 slots, so the proxy is always full
/// and evicting. A scraper at another address is still answered, because its address
/// holds one connection and theirs hold about 8 each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_that_reconnects_when_evicted_does_not_lock_out_a_scraper() {
    let port = support::free_port();
    let w = world(&[
        "--max-connections=128",
        "--tls-handshake-timeout=30s",
        &format!("--proxy-endpoints-port={port}"),
    ])
    .await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = reconnecting_flood(w.proxy.addr, 16, 12, &stop);
    tokio::time::sleep(Duration::from_millis(500)).await;
    three_scrapes_from_another_address(&w, "16 addresses x 12 reconnecting half-open").await;
    let closed = evicted(&w, port, "handshake").await;
    eprintln!("evicted while the scrapes ran: {closed}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in flood {
        task.abort();
    }
}
