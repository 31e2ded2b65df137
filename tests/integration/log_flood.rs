//! The log as an attack surface: floods an unauthenticated client can send (TLS
//! handshakes with a long bad SNI, requests with 60 KiB paths that end in a 401, a
//! 400 or a 404) against the real binary at its default log level, measuring the bytes
//! it writes to stderr. The budget is asserted in bytes and lines, never in time.

use std::{
    io::Read,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use scrape_guard_testkit as support;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const BIN: &str = env!("CARGO_BIN_EXE_scrape-guard");

/// Connections, and requests of each kind, in one flood.
const FLOOD: usize = 200;
/// The longest line written (1 KiB, plus the note saying a line was cut).
const LONGEST_LINE: usize = 1100;
/// All of stderr over a flood: the startup lines, the budget's 10 lines and a summary.
const MOST_BYTES: usize = 24 * 1024;

/// A TLS ClientHello whose server_name is `name` (not a valid DNS name: rustls warns
/// about it, quoting it, before it gives up on the rest of this minimal hello).
fn client_hello(name: &[u8]) -> Vec<u8> {
    let len16 = |n: usize| u16::try_from(n).unwrap().to_be_bytes();
    let mut sni = vec![0];
    sni.extend(len16(name.len()));
    sni.extend(name);
    let mut extensions = vec![0, 0];
    extensions.extend(len16(sni.len() + 2));
    extensions.extend(len16(sni.len()));
    extensions.extend(sni);
    let mut hello = vec![3, 3];
    hello.extend([7; 32]); // random
    hello.push(0); // no session id
    hello.extend([0, 2, 0x13, 0x01]); // TLS_AES_128_GCM_SHA256
    hello.extend([1, 0]); // no compression
    hello.extend(len16(extensions.len()));
    hello.extend(extensions);
    let mut handshake = vec![1];
    handshake.extend(&u32::try_from(hello.len()).unwrap().to_be_bytes()[1..]);
    handshake.extend(hello);
    let mut record = vec![0x16, 3, 1];
    record.extend(len16(handshake.len()));
    record.extend(handshake);
    record
}

/// How long a flood lasts: `FLOOD` events, or, for a measurement,
/// `SCRAPE_GUARD_FLOOD_SECS` seconds of them (`benches/RESULTS.md`).
#[derive(Debug, Clone, Copy)]
enum Length {
    Events(usize),
    For(Duration),
}

impl Length {
    fn from_env() -> Self {
        std::env::var("SCRAPE_GUARD_FLOOD_SECS")
            .ok()
            .and_then(|secs| secs.parse().ok())
            .map_or(Self::Events(FLOOD), |secs| {
                Self::For(Duration::from_secs(secs))
            })
    }

    /// Whether event `n` (from 0), sent `since` the start, is still part of the flood.
    fn goes_on(self, n: usize, since: Instant) -> bool {
        match self {
            Self::Events(count) => n < count,
            Self::For(time) => since.elapsed() < time,
        }
    }

    /// The most bytes of log allowed: `MOST_BYTES` per started minute.
    fn most_bytes(self) -> usize {
        match self {
            Self::Events(_) => MOST_BYTES,
            Self::For(time) => MOST_BYTES * (1 + time.as_secs() as usize / 60),
        }
    }
}

/// One hello per connection, each read until the server closes (bounded).
async fn bad_sni_flood(port: u16, length: Length) {
    let hello = client_hello(&b"bad_name!".repeat(1_700));
    let started = Instant::now();
    for _ in (0..).take_while(|n| length.goes_on(*n, started)) {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        tcp.write_all(&hello).await.unwrap();
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut sink)).await;
    }
}

/// Requests with a 60 KiB path and no valid credentials, on keep-alive connections.
async fn request_flood(pki: &support::Pki, port: u16, length: Length) {
    let client = support::client(pki, false);
    let long = "a".repeat(60 * 1024);
    let cases = [
        (format!("/metrics/{long}"), None, 401),
        (format!("/metrics/{long}"), Some("junk-token"), 401),
        (format!("/metrics/../{long}"), Some("junk-token"), 400),
        (format!("/elsewhere/{long}"), None, 404),
    ];
    let started = Instant::now();
    for n in (0..).take_while(|n| length.goes_on(*n, started)) {
        let (path, token, want) = &cases[n % cases.len()];
        let url = format!("https://localhost:{port}{path}");
        let reply = support::get(&client, &url, *token, &[]).await;
        assert_eq!(reply.status.as_u16(), *want, "{}", &path[..20]);
    }
}

/// Starts the binary, collects everything it writes to stderr while `flood` runs, and
/// returns it with the flood's duration.
async fn logs_of_a_flood(format: &str, flood: &str, length: Length) -> (String, Duration) {
    support::install_crypto();
    let pki = Arc::new(support::Pki::new());
    let api = support::FakeApiserver::start(&pki).await;
    let echo = support::Echo::start().await;
    let port = support::free_port();
    let log_format = format!("--log-format={format}");
    let args = [log_format.as_str(), "--allow-paths=/metrics/*"];
    let mut child = support::spawn_binary(BIN, &pki, &api, &echo.url(), port, &args, &[]).await;
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stderr.read_to_end(&mut all);
        all
    });
    let started = Instant::now();
    match flood {
        "sni" => bad_sni_flood(port, length).await,
        _ => request_flood(&pki, port, length).await,
    }
    let took = started.elapsed();
    // Let the last lines out, then stop it (by PID) so that stderr ends.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    support::eventually(Duration::from_secs(20), || {
        std::future::ready(child.try_wait().unwrap().ok_or("still running"))
    })
    .await;
    let logs = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    (logs, took)
}

fn assert_bounded(format: &str, flood: &str, logs: &str, took: Duration, length: Length) {
    let longest = logs.lines().map(str::len).max().unwrap_or(0);
    let rate = logs.len() as f64 / took.as_secs_f64() / 1e6;
    eprintln!(
        "{format} {flood} flood: {} bytes of log in {} lines over {took:?} ({rate:.4} MB/s), \
         longest line {longest} bytes",
        logs.len(),
        logs.lines().count(),
    );
    assert!(
        longest <= LONGEST_LINE,
        "{format} {flood}: a line of {longest} bytes:\n{}",
        &logs[..logs.len().min(4000)]
    );
    assert!(
        logs.len() <= length.most_bytes(),
        "{format} {flood}: {} bytes of log for {length:?}:\n{}",
        logs.len(),
        &logs[..logs.len().min(4000)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_sni_flood_writes_a_few_short_lines() {
    for format in ["text", "json"] {
        let length = Length::from_env();
        let (logs, took) = logs_of_a_flood(format, "sni", length).await;
        assert_bounded(format, "sni", &logs, took, length);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_requests_with_long_paths_writes_a_few_short_lines() {
    for format in ["text", "json"] {
        let length = Length::from_env();
        let (logs, took) = logs_of_a_flood(format, "requests", length).await;
        assert_bounded(format, "requests", &logs, took, length);
        // Some of them are logged, cut, with their length.
        assert!(
            logs.contains("61449 bytes"),
            "{}",
            &logs[..logs.len().min(4000)]
        );
    }
}
