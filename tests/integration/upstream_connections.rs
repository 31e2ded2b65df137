//! The upstream connections behind each client connection: one HTTP/1.1 upstream
//! connection per client connection, kept across its requests, replaced when the
//! upstream closes it, never handed on while it could still carry a stale answer, and
//! no more than one kept per idle client connection (plus a few spares shared by all);
//! in use at once, one per client connection plus a bounded number shared by all.
//! The upstream here is a raw TCP server of the test's own, so that it can count
//! connections and close them when a real exporter would (idle timeouts,
//! `Connection: close`), or misbehave as a careless one would.

use scrape_guard_testkit as support;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use support::{
    eventually,
    http1::read_exchange,
    http2::{frame, DATA, END_STREAM, H2},
    https::tls,
    install_crypto, FakeApiserver, Pki, Proxy, SCRAPER,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const PAGE: &str = "# TYPE up gauge\nup 1\n";
/// The size of node-exporter's page in `benches/fixtures` (`/…/node`).
const NODE_PAGE: usize = 72_555;

/// How the test upstream treats a connection after each response.
#[derive(Clone, Copy, PartialEq)]
enum After {
    /// Keep it open (what node-exporter does).
    KeepAlive,
    /// Close it without saying so, as an idle timeout would between two requests.
    SilentClose,
    /// Answer with `Connection: close`, then close it.
    AnnouncedClose,
    /// Answer the first request; close the connection, unanswered, when the second
    /// arrives (an idle timeout firing just as the request comes).
    DropsSecond,
    /// Answer each request as soon as its head arrives, without reading its body,
    /// and read whatever follows (that body) as the next request.
    AnswersEarly,
}

/// The answer to a request the test hid in another request's body.
const HIDDEN: &str = "the answer to a hidden request";

/// A raw HTTP/1.1 upstream on 127.0.0.1 that counts connections and requests.
struct Upstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    /// Connections open now (accepted, not yet closed by the proxy).
    open: Arc<AtomicUsize>,
    /// The connection (by accept order) each request arrived on, and its target.
    requests: Arc<Mutex<Vec<(usize, String)>>>,
    in_use: Arc<InUse>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    async fn start(after: After) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let requests: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
        let in_use: Arc<InUse> = Arc::default();
        let task = {
            let (connections, open) = (Arc::clone(&connections), Arc::clone(&open));
            let (requests, in_use) = (Arc::clone(&requests), Arc::clone(&in_use));
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let id = connections.fetch_add(1, Ordering::SeqCst);
                    open.fetch_add(1, Ordering::SeqCst);
                    let (open, requests) = (Arc::clone(&open), Arc::clone(&requests));
                    let in_use = Arc::clone(&in_use);
                    tokio::spawn(async move {
                        serve(tcp, id, after, requests, &in_use).await;
                        open.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            })
        };
        Self {
            addr,
            connections,
            open,
            requests,
            in_use,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// The most connections that were ever busy with a request at once.
    fn most_in_use(&self) -> usize {
        self.in_use.most.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<(usize, String)> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests that arrived on the connection of a hidden request, after it.
    fn after_hidden(&self) -> Vec<(usize, String)> {
        let requests = self.requests();
        let Some(at) = requests.iter().position(|(_, t)| t == "/hidden") else {
            return Vec::new();
        };
        let connection = requests[at].0;
        requests[at + 1..]
            .iter()
            .filter(|(c, _)| *c == connection)
            .cloned()
            .collect()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connections busy with a request (its head read, its response not yet written).
#[derive(Default)]
struct InUse {
    now: AtomicUsize,
    most: AtomicUsize,
}

/// One connection's request, counted in `InUse` until dropped.
struct Busy<'a>(&'a InUse);

impl<'a> Busy<'a> {
    fn start(in_use: &'a InUse) -> Self {
        let now = in_use.now.fetch_add(1, Ordering::SeqCst) + 1;
        in_use.most.fetch_max(now, Ordering::SeqCst);
        Self(in_use)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve(
    mut tcp: TcpStream,
    id: usize,
    after: After,
    seen: Arc<Mutex<Vec<(usize, String)>>>,
    in_use: &InUse,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut served = 0;
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    continue;
                }
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let target = head.split(' ').nth(1).unwrap_or_default().to_owned();
        if after == After::DropsSecond && served == 1 {
            return;
        }
        served += 1;
        let _busy = Busy::start(in_use);
        seen.lock().unwrap().push((id, target.clone()));
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|l| l.parse::<usize>().ok());
        if let (Some(length), false) = (length, after == After::AnswersEarly) {
            while buf.len() < length {
                match tcp.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf.drain(..length);
        }
        if target.starts_with("/slow") {
            // Long enough that a client's streams are all in flight together.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        if target == "/hidden" {
            // Late enough that the proxy may have sent another request by then.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let body = if target.starts_with("/big") {
            "x".repeat(4 * 1024 * 1024)
        } else if target.ends_with("/node") {
            "x".repeat(NODE_PAGE)
        } else if target == "/hidden" {
            HIDDEN.to_owned()
        } else {
            PAGE.to_owned()
        };
        let close = if after == After::AnnouncedClose {
            "Connection: close\r\n"
        } else {
            ""
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{close}\r\n{body}",
            body.len()
        );
        if tcp.write_all(response.as_bytes()).await.is_err() {
            return;
        }
        if matches!(after, After::SilentClose | After::AnnouncedClose) {
            return;
        }
    }
}

struct Setup {
    pki: Pki,
    _api: Arc<FakeApiserver>,
    proxy: Proxy,
    upstream: Upstream,
}

async fn setup(after: After, extra: &[&str]) -> Setup {
    install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token("good", SCRAPER);
    api.allow(SCRAPER, "get", "/metrics");
    api.allow(SCRAPER, "get", "/big");
    api.allow(SCRAPER, "get", "/slow");
    api.allow(SCRAPER, "create", "/metrics");
    let upstream = Upstream::start(after).await;
    let proxy = Proxy::start(&pki, &api, &upstream.url(), extra).await;
    Setup {
        pki,
        _api: api,
        proxy,
        upstream,
    }
}

/// A kept-alive HTTP/1.1 client connection to the proxy.
struct Client(tokio_rustls::client::TlsStream<TcpStream>);

impl Client {
    async fn connect(s: &Setup) -> Self {
        Self(tls(&s.pki, s.proxy.addr, &[b"http/1.1"]).await)
    }

    /// One GET on this connection; the status and body length.
    async fn get(&mut self, path: &str) -> (u16, usize) {
        self.send(format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer good\r\n\r\n"
        ))
        .await
    }

    /// A POST with a body.
    async fn post(&mut self, path: &str, body: &str) -> (u16, usize) {
        self.send(format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer good\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ))
        .await
    }

    async fn send(&mut self, request: String) -> (u16, usize) {
        self.0.write_all(request.as_bytes()).await.unwrap();
        self.0.flush().await.unwrap();
        let exchange = read_exchange(&mut self.0, 1, Duration::from_secs(5)).await;
        let response = exchange
            .responses
            .first()
            .unwrap_or_else(|| panic!("no response to {request:?}: {:?}", exchange.text()));
        (response.status, response.body.len())
    }
}

#[tokio::test]
async fn one_upstream_connection_serves_all_of_a_clients_requests() {
    let s = setup(After::KeepAlive, &[]).await;
    let mut first = Client::connect(&s).await;
    for _ in 0..20 {
        assert_eq!(first.get("/metrics").await, (200, PAGE.len()));
    }
    assert_eq!(s.upstream.connections(), 1, "{:?}", s.upstream.requests());
    // A second client gets its own; the first keeps its.
    let mut second = Client::connect(&s).await;
    for _ in 0..5 {
        assert_eq!(second.get("/metrics").await, (200, PAGE.len()));
        assert_eq!(first.get("/metrics").await, (200, PAGE.len()));
    }
    assert_eq!(s.upstream.connections(), 2);
    let on = |connection| {
        s.upstream
            .requests()
            .iter()
            .filter(|(c, _)| *c == connection)
            .count()
    };
    assert_eq!((on(0), on(1)), (25, 5), "each client on its own connection");
    // The path is forwarded as it was authorized, in origin form.
    assert!(s.upstream.requests().iter().all(|(_, t)| t == "/metrics"));
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_is_replaced() {
    let s = setup(After::SilentClose, &[]).await;
    let mut client = Client::connect(&s).await;
    for i in 0..10 {
        assert_eq!(
            client.get("/metrics").await,
            (200, PAGE.len()),
            "request {i}"
        );
        if i % 2 == 0 {
            // Let the close arrive first (an idle timeout), or not (a race).
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(
        s.upstream.connections(),
        10,
        "a new connection for each request"
    );
    assert_eq!(s.upstream.requests().len(), 10, "each request sent once");
}

#[tokio::test]
async fn a_get_the_upstream_dropped_unanswered_is_sent_again_a_post_is_not() {
    let s = setup(After::DropsSecond, &[]).await;
    let mut client = Client::connect(&s).await;
    for i in 0..4 {
        assert_eq!(client.get("/metrics").await, (200, PAGE.len()), "GET {i}");
    }
    // Each GET after the first went out twice: dropped on the reused connection,
    // answered on a new one. The upstream saw each answered once.
    assert_eq!(s.upstream.connections(), 4);
    assert_eq!(s.upstream.requests().len(), 4);
    // A POST may have been acted on: it is not sent again, the client gets the error.
    assert_eq!(client.post("/metrics", "x=1").await.0, 502);
    assert_eq!(
        s.upstream.requests().len(),
        4,
        "the POST was not answered anywhere"
    );
    // A POST on a fresh connection is fine.
    assert_eq!(client.post("/metrics", "x=1").await, (200, PAGE.len()));
}

#[tokio::test]
async fn connection_close_from_the_upstream_is_honoured() {
    let s = setup(After::AnnouncedClose, &[]).await;
    let mut client = Client::connect(&s).await;
    for i in 0..5 {
        assert_eq!(
            client.get("/metrics").await,
            (200, PAGE.len()),
            "request {i}"
        );
    }
    assert_eq!(s.upstream.connections(), 5);
    assert_eq!(s.upstream.requests().len(), 5);
}

#[tokio::test]
async fn a_client_that_leaves_mid_body_does_not_spoil_the_next() {
    let s = setup(After::KeepAlive, &[]).await;
    {
        let mut leaver = Client::connect(&s).await;
        let request = "GET /big HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer good\r\n\r\n";
        leaver.0.write_all(request.as_bytes()).await.unwrap();
        let mut some = [0u8; 1024];
        let n = leaver.0.read(&mut some).await.unwrap();
        assert!(n > 0);
        // Dropped with most of the 4 MiB page unread.
    }
    let mut client = Client::connect(&s).await;
    for _ in 0..3 {
        assert_eq!(client.get("/big").await, (200, 4 * 1024 * 1024));
        assert_eq!(client.get("/metrics").await, (200, PAGE.len()));
    }
    // The leaver's upstream connection was closed with it, never reused half-read;
    // the second client used one of its own throughout.
    let requests = s.upstream.requests();
    let second: Vec<usize> = requests[1..].iter().map(|(c, _)| *c).collect();
    assert!(
        second
            .iter()
            .all(|c| *c == second[0] && *c != requests[0].0),
        "{requests:?}"
    );
}

#[tokio::test]
async fn http2_streams_in_flight_together_are_all_served() {
    let s = setup(After::KeepAlive, &[]).await;
    let client = support::client(&s.pki, true);
    let url = s.proxy.url("/metrics");
    let replies = futures_util::future::join_all(
        (0..16).map(|_| support::get(&client, &url, Some("good"), &[])),
    )
    .await;
    for reply in &replies {
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), PAGE);
    }
    assert_eq!(s.upstream.requests().len(), 16);
    // Up to `MAX_PER_CLIENT` streams at once have their own upstream connections; the
    // others wait for one of them.
    assert!(s.upstream.connections() <= 16);
}

/// What the README states: idle, a client connection keeps one upstream connection,
/// and the clients of one upstream share at most this many spare ones.
const SPARE_CONNECTIONS: usize = 16;

/// An HTTP/2 connection to the proxy with `streams` GETs of `path` in flight at once,
/// all answered 200 with `PAGE` (bounded wait).
async fn h2_burst(h2: &mut H2, path: &[u8], streams: usize) {
    h2_burst_of(h2, path, streams, PAGE.len()).await;
}

/// Like `h2_burst`, for a page of `size` bytes.
async fn h2_burst_of(h2: &mut H2, path: &[u8], streams: usize, size: usize) {
    let mut ids = Vec::new();
    for _ in 0..streams {
        ids.push(h2.get(b"GET", path, &[]).await);
    }
    h2.pump(Duration::from_secs(20), |h| {
        ids.iter().all(|id| h.streams[id].done())
    })
    .await;
    for id in ids {
        assert_eq!(h2.streams[&id].status, Some(200), "stream {id}");
        assert_eq!(h2.streams[&id].body.len(), size, "stream {id}");
    }
}

#[tokio::test]
async fn idle_http2_connections_keep_one_upstream_connection_each() {
    let s = setup(After::KeepAlive, &[]).await;
    let mut clients = Vec::new();
    for _ in 0..16 {
        clients.push(H2::connect_to(&s.pki, s.proxy.addr, "good").await);
    }
    // Each client has 8 slow streams in flight at once: 8 upstream connections each.
    for round in 0..2 {
        let bursts = clients.iter_mut().map(|h2| h2_burst(h2, b"/slow", 8));
        futures_util::future::join_all(bursts).await;
        assert_eq!(s.upstream.requests().len(), 128 * (round + 1));
    }
    assert!(
        s.upstream.connections() >= 16,
        "streams were in flight together"
    );
    // All quiet now: each client connection keeps one, the spares are bounded, the
    // rest were closed.
    let bound = clients.len() + SPARE_CONNECTIONS;
    eventually(Duration::from_secs(10), || async {
        match s.upstream.open() {
            open if open <= bound => Ok(()),
            open => Err(format!("{open} upstream connections open, bound {bound}")),
        }
    })
    .await;
    // The clients are still served, on what was kept.
    h2_burst(&mut clients[0], b"/metrics", 1).await;
    drop(clients);
    eventually(Duration::from_secs(10), || async {
        match s.upstream.open() {
            open if open <= SPARE_CONNECTIONS => Ok(()),
            open => Err(format!("{open} open after the clients left")),
        }
    })
    .await;
}

/// What the README states: upstream connections in use at once beyond each client
/// connection's first, shared by all clients (`MAX_EXTRAS`).
const EXTRA_CONNECTIONS: usize = 16;

#[tokio::test]
async fn connections_in_use_beyond_each_clients_first_are_bounded() {
    let s = setup(After::KeepAlive, &[]).await;
    let mut clients = Vec::new();
    for _ in 0..24 {
        clients.push(H2::connect_to(&s.pki, s.proxy.addr, "good").await);
    }
    // 192 slow streams at once: all are served, but no more than one upstream
    // connection per client plus the shared extras is ever busy at once.
    let bursts = clients.iter_mut().map(|h2| h2_burst(h2, b"/slow", 8));
    futures_util::future::join_all(bursts).await;
    assert_eq!(s.upstream.requests().len(), 24 * 8);
    let (most, bound) = (s.upstream.most_in_use(), clients.len() + EXTRA_CONNECTIONS);
    assert!(
        most <= bound,
        "{most} upstream connections in use at once, bound {bound}"
    );
    assert!(most > clients.len(), "streams had extras too: {most}");
}

/// A request the test hides in a POST's body: an upstream that answers before reading
/// the body reads it as a request of its own.
const HIDDEN_REQUEST: &str = "GET /hidden HTTP/1.1\r\nHost: localhost\r\n\r\n";

#[tokio::test]
async fn http2_an_upstream_that_answered_before_the_body_is_not_reused() {
    let s = setup(After::AnswersEarly, &[]).await;
    let mut h2 = H2::connect_to(&s.pki, s.proxy.addr, "good").await;
    let length = HIDDEN_REQUEST.len().to_string();
    let (post, bytes) = h2.request(
        &[
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", b"/metrics"),
            (b"authorization", b"Bearer good"),
            (b"content-length", length.as_bytes()),
        ],
        false,
    );
    h2.send(&bytes).await;
    // The upstream answers the headers alone; the body follows the whole answer.
    let answered = h2.wait_for(post, Duration::from_secs(10)).await;
    assert_eq!(answered.status, Some(200));
    h2.send(&frame(DATA, END_STREAM, post, HIDDEN_REQUEST.as_bytes()))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..3 {
        let next = h2.get(b"GET", b"/metrics", &[]).await;
        let next = h2.wait_for(next, Duration::from_secs(10)).await;
        assert_eq!(next.status, Some(200));
        assert_eq!(
            String::from_utf8_lossy(&next.body),
            PAGE,
            "the client's next stream got its own answer"
        );
    }
    assert_eq!(
        s.upstream.after_hidden(),
        Vec::new(),
        "nothing was sent on the connection that carried the early-answered request"
    );
}

#[tokio::test]
async fn http1_an_upstream_that_answered_before_the_body_is_not_reused() {
    let s = setup(After::AnswersEarly, &[]).await;
    let mut client = Client::connect(&s).await;
    let head = format!(
        "POST /metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer good\r\n\
         Content-Length: {}\r\n\r\n",
        HIDDEN_REQUEST.len()
    );
    client.0.write_all(head.as_bytes()).await.unwrap();
    client.0.flush().await.unwrap();
    let exchange = read_exchange(&mut client.0, 1, Duration::from_secs(5)).await;
    assert_eq!(exchange.responses.first().map(|r| r.status), Some(200));
    // The proxy may close the connection rather than read a body nobody wants.
    let _ = client.0.write_all(HIDDEN_REQUEST.as_bytes()).await;
    let _ = client.0.flush().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let next = "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer good\r\n\r\n";
    if client.0.write_all(next.as_bytes()).await.is_ok() {
        let exchange = read_exchange(&mut client.0, 1, Duration::from_secs(5)).await;
        if let Some(response) = exchange.responses.first() {
            assert_eq!(
                (response.status, String::from_utf8_lossy(&response.body)),
                (200, PAGE.into()),
                "the client's next request got its own answer"
            );
        }
    }
    let mut fresh = Client::connect(&s).await;
    assert_eq!(fresh.get("/metrics").await, (200, PAGE.len()));
    assert_eq!(s.upstream.after_hidden(), Vec::new());
}

#[tokio::test]
async fn http2_beyond_the_lane_an_upstream_that_answered_before_the_body_is_not_reused() {
    let s = setup(After::AnswersEarly, &[]).await;
    let mut h2 = H2::connect_to(&s.pki, s.proxy.addr, "good").await;
    h2_burst(&mut h2, b"/metrics", 1).await;
    // 8 slow streams hold every connection the lane may have: the POST waits for one
    // of them.
    let mut slow = Vec::new();
    for _ in 0..8 {
        slow.push(h2.get(b"GET", b"/slow", &[]).await);
    }
    h2.pump(Duration::from_millis(100), |_| false).await;
    let length = HIDDEN_REQUEST.len().to_string();
    let (post, bytes) = h2.request(
        &[
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", b"/metrics"),
            (b"authorization", b"Bearer good"),
            (b"content-length", length.as_bytes()),
        ],
        false,
    );
    h2.send(&bytes).await;
    assert_eq!(
        h2.wait_for(post, Duration::from_secs(10)).await.status,
        Some(200)
    );
    h2.send(&frame(DATA, END_STREAM, post, HIDDEN_REQUEST.as_bytes()))
        .await;
    h2.pump(Duration::from_secs(10), |h| {
        slow.iter().all(|id| h.streams[id].done())
    })
    .await;
    // Once more: the lane is full, and the GET waits for one of its connections.
    for _ in 0..8 {
        h2.get(b"GET", b"/slow", &[]).await;
    }
    h2.pump(Duration::from_millis(100), |_| false).await;
    let next = h2.get(b"GET", b"/metrics", &[]).await;
    let next = h2.wait_for(next, Duration::from_secs(10)).await;
    assert_eq!(next.status, Some(200));
    assert_eq!(String::from_utf8_lossy(&next.body), PAGE);
    assert_eq!(s.upstream.after_hidden(), Vec::new());
}

/// Resident and peak memory of process `pid`, in MiB (`/proc`, Linux).
fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or_default()
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A measurement, not a check: the memory of the binary `SCRAPE_GUARD_BIN` (build it
/// with `cargo build --release`) while 128 HTTP/2 connections that each had 8 streams
/// in flight (a 72,555-byte page, node-exporter's size; `MEASURE_AT_ONCE` of them at
/// once, 8 unless set) sit idle, and after they close; two rounds. Prints one line per moment;
/// figures in benches/RESULTS.md. Run with `SCRAPE_GUARD_BIN=target/release/scrape-guard
/// cargo test --test integration -- --ignored --nocapture measure_idle`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: needs SCRAPE_GUARD_BIN (a release build)"]
async fn measure_idle_http2_memory() {
    let binary = std::env::var("SCRAPE_GUARD_BIN").expect("SCRAPE_GUARD_BIN");
    // MEASURE_AT_ONCE=1: the 8 streams one after another (one upstream connection).
    let at_once: usize = std::env::var("MEASURE_AT_ONCE").map_or(8, |v| v.parse().unwrap());
    install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token("good", SCRAPER);
    api.allow(SCRAPER, "get", "/metrics");
    api.allow(SCRAPER, "get", "/slow/node");
    let upstream = Upstream::start(After::KeepAlive).await;
    let port = support::free_port();
    let flags = ["--kube-api-qps=-1", "--max-connections=4096"];
    let url = upstream.url();
    let child = support::spawn_binary(&binary, &pki, &api, &url, port, &flags, &[]).await;
    let (addr, pid) = (SocketAddr::from(([127, 0, 0, 1], port)), child.id());
    let report = |moment: &str| {
        let (rss, peak) = memory_mib(pid);
        let open = upstream.open();
        println!("{moment:<44} RSS {rss:5.1} MiB  peak {peak:5.1} MiB  upstream sockets {open}");
    };
    let mut warm = H2::connect_to(&pki, addr, "good").await;
    h2_burst(&mut warm, b"/metrics", 1).await;
    drop(warm);
    tokio::time::sleep(Duration::from_secs(1)).await;
    report("idle, after one scrape");
    for round in 1..=2 {
        let mut clients = Vec::new();
        for _ in 0..128 {
            clients.push(H2::connect_to(&pki, addr, "good").await);
        }
        let bursts = clients.iter_mut().map(|h2| async move {
            for _ in 0..8 / at_once {
                h2_burst_of(h2, b"/slow/node", at_once, NODE_PAGE).await;
            }
        });
        futures_util::future::join_all(bursts).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        report(&format!(
            "round {round}: 128 idle h2, {at_once} streams at once"
        ));
        drop(clients);
        tokio::time::sleep(Duration::from_secs(3)).await;
        report(&format!("round {round}: 3 s after they closed"));
    }
}
