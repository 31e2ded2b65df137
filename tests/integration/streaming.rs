//! A page as a compressing exporter sends it: `Transfer-Encoding: chunked` in small
//! pieces. The proxy joins pieces that are already read into one write (one HTTP/2
//! DATA frame, one TLS record), and never waits for a piece that has not arrived: each
//! test's upstream sends the next piece only once the client has seen the last one, so
//! a proxy that held bytes back would stall here, not pass slowly.

use scrape_guard_testkit as support;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use support::{http2::H2, https::tls, install_crypto, FakeApiserver, Pki, Proxy, SCRAPER};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};

/// A bound on each wait: reached only if the proxy held bytes back.
const WAIT: Duration = Duration::from_secs(10);

const HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                    Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n";

fn chunk(piece: &[u8]) -> Vec<u8> {
    let mut wire = format!("{:x}\r\n", piece.len()).into_bytes();
    wire.extend_from_slice(piece);
    wire.extend_from_slice(b"\r\n");
    wire
}

const END: &[u8] = b"0\r\n\r\n";

/// A raw upstream that, once a request's head has arrived, writes what the test hands
/// it, one write per hand-over.
struct Upstream {
    addr: SocketAddr,
    writes: mpsc::UnboundedSender<Vec<u8>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (writes, rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let rx = Arc::new(Mutex::new(Some(rx)));
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                // The first connection gets the test's writes; the proxy opens no other.
                if let Some(rx) = rx.lock().unwrap().take() {
                    tokio::spawn(serve(tcp, rx));
                }
            }
        });
        Self { addr, writes, task }
    }

    fn send(&self, bytes: &[u8]) {
        self.writes.send(bytes.to_vec()).unwrap();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut tcp: TcpStream, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut byte).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&byte[..n]),
        }
    }
    while let Some(bytes) = rx.recv().await {
        if tcp.write_all(&bytes).await.is_err() {
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

async fn setup() -> Setup {
    install_crypto();
    let pki = Pki::new();
    let api = FakeApiserver::start(&pki).await;
    api.add_token("good", SCRAPER);
    api.allow(SCRAPER, "get", "/metrics");
    let upstream = Upstream::start().await;
    let url = format!("http://{}/", upstream.addr);
    let proxy = Proxy::start(&pki, &api, &url, &[]).await;
    Setup {
        pki,
        _api: api,
        proxy,
        upstream,
    }
}

async fn h2_get(s: &Setup) -> (H2, u32) {
    let mut h2 = H2::connect_to(&s.pki, s.proxy.addr, "good").await;
    let id = h2
        .get(b"GET", b"/metrics", &[(b"accept-encoding", b"gzip")])
        .await;
    (h2, id)
}

#[tokio::test]
async fn a_trickling_exporters_pieces_reach_an_http2_client_one_by_one() {
    let s = setup().await;
    let (mut h2, id) = h2_get(&s).await;
    let mut first = HEAD.as_bytes().to_vec();
    first.extend(chunk(b"piece-1"));
    s.upstream.send(&first);
    h2.pump(WAIT, |h| h.streams[&id].body.ends_with(b"piece-1"))
        .await;
    assert_eq!(h2.streams[&id].body, b"piece-1");
    assert!(!h2.streams[&id].ended);

    s.upstream.send(&chunk(b"piece-2"));
    h2.pump(WAIT, |h| h.streams[&id].body.ends_with(b"piece-2"))
        .await;
    assert_eq!(h2.streams[&id].body, b"piece-1piece-2");
    assert!(!h2.streams[&id].ended);

    s.upstream.send(END);
    let stream = h2.wait_for(id, WAIT).await;
    assert!(stream.ended, "{stream:?}");
    assert_eq!(stream.status, Some(200));
    assert_eq!(stream.body, b"piece-1piece-2");
}

#[tokio::test]
async fn a_trickling_exporters_pieces_reach_an_http1_client_one_by_one() {
    let s = setup().await;
    let mut io = tls(&s.pki, s.proxy.addr, &[b"http/1.1"]).await;
    io.write_all(
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer good\r\n\
          Accept-Encoding: gzip\r\n\r\n",
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut first = HEAD.as_bytes().to_vec();
    first.extend(chunk(b"piece-1"));
    s.upstream.send(&first);
    read_until(&mut io, &mut seen, b"piece-1").await;
    assert!(!seen.windows(7).any(|w| w == b"piece-2"));

    s.upstream.send(&chunk(b"piece-2"));
    read_until(&mut io, &mut seen, b"piece-2").await;

    s.upstream.send(END);
    read_until(&mut io, &mut seen, b"\r\n0\r\n\r\n").await;
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("content-encoding: gzip"), "{text}");
}

/// Reads from `io` into `seen` until `want` is in it.
async fn read_until<S: AsyncReadExt + Unpin>(io: &mut S, seen: &mut Vec<u8>, want: &[u8]) {
    let mut buf = [0u8; 4096];
    let found = tokio::time::timeout(WAIT, async {
        while !seen.windows(want.len()).any(|w| w == want) {
            let n = io.read(&mut buf).await.unwrap();
            assert_ne!(n, 0, "closed: {:?}", String::from_utf8_lossy(seen));
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "held back: {:?}",
        String::from_utf8_lossy(seen)
    );
}

#[tokio::test]
async fn pieces_that_arrive_together_leave_in_one_data_frame_that_ends_the_stream() {
    let s = setup().await;
    let (mut h2, id) = h2_get(&s).await;
    // What Go's promhttp sends for a small gzipped page: pieces of its 4 KiB buffer,
    // here all in one write, so that the proxy reads them at once.
    let piece = vec![b'g'; 1000];
    let mut all = HEAD.as_bytes().to_vec();
    for _ in 0..4 {
        all.extend(chunk(&piece));
    }
    all.extend_from_slice(END);
    s.upstream.send(&all);
    let stream = h2.wait_for(id, WAIT).await;
    assert!(stream.ended, "{stream:?}");
    assert_eq!(stream.body, piece.repeat(4));
    assert_eq!(stream.data_frames, 1, "one DATA frame, with END_STREAM");
}
