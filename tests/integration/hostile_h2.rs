//! HTTP/2 abuse: streams beyond the concurrency limit, rapid reset, CONTINUATION,
//! PING and SETTINGS floods. Each is refused or cut off, and other clients keep being
//! served meanwhile. Frames are written by hand (`support::http2`): a client library
//! would not send them.

use scrape_guard_testkit as support;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use support::{
    client, get,
    http2::{
        frame, header_block, CANCEL, CONTINUATION, END_STREAM, H2, HEADERS, PING, REFUSED_STREAM,
        RST_STREAM, SETTINGS,
    },
    World,
};

const SA: &str = support::SCRAPER;
/// Distinctive, so a response body that echoes it is easy to spot.
const TOKEN: &str = "tok-5ecret-9f3a1c";

/// `TOKEN` authenticates as `SA`, which may `get /metrics` (tests allow more paths).
async fn world(extra: &[&str]) -> World {
    let world = World::start(TOKEN, extra).await;
    world
}

// ---------------------------------------------------------------------------------
// HTTP/2 limits and rapid reset
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn h2_streams_beyond_the_limit_are_refused() {
    let w = world(&["--http2-max-concurrent-streams=8"]).await;
    w.api.allow(SA, "get", "/slow");
    // Warm the caches so every stream goes straight to the exporter.
    w.healthy_scrape().await;
    let before = w.echo.seen().len();
    let mut h2 = H2::connect(&w).await;
    let auth = format!("Bearer {TOKEN}");
    let mut ids = Vec::new();
    let mut bytes = Vec::new();
    for _ in 0..30 {
        let (id, b) = h2.request(
            &[
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", b"localhost"),
                (b":path", b"/slow?ms=1500"),
                (b"authorization", auth.as_bytes()),
            ],
            true,
        );
        ids.push(id);
        bytes.extend(b);
    }
    h2.send(&bytes).await;
    h2.pump(Duration::from_millis(700), |_| false).await;
    let in_flight = w.echo.seen().len() - before;
    assert!(
        in_flight <= 8,
        "{in_flight} streams reached the exporter at once (limit 8)"
    );
    h2.pump(Duration::from_secs(10), |h| {
        ids.iter().all(|id| h.streams[id].done())
    })
    .await;
    let ok = ids
        .iter()
        .filter(|id| h2.streams[id].status == Some(200))
        .count();
    let refused = ids
        .iter()
        .filter(|id| h2.streams[id].reset == Some(REFUSED_STREAM))
        .count();
    assert!(ok <= 8, "{ok} answered (limit 8)");
    assert!(ok >= 1, "the first streams are served");
    assert_eq!(ok + refused, 30, "each stream is answered or refused");
    w.healthy_scrape().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_rapid_reset_does_not_starve_other_clients() {
    let w = world(&[]).await;
    w.healthy_scrape().await;
    let auth = format!("Bearer {TOKEN}");
    let mut h2 = H2::connect(&w).await;
    let attack = Instant::now();
    let mut sent = 0;
    // Open-and-cancel in batches while a normal client scrapes alongside.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bystander = {
        let c = client(&w.pki, false);
        let url = w.proxy.url("/metrics");
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let (mut worst, mut scrapes) = (Duration::ZERO, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let start = Instant::now();
                let reply =
                    tokio::time::timeout(Duration::from_secs(10), get(&c, &url, Some(TOKEN), &[]))
                        .await
                        .expect("a bystander scrape took over 10 s");
                assert_eq!(reply.status, 200);
                worst = worst.max(start.elapsed());
                scrapes += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (worst, scrapes)
        })
    };
    // Keep attacking for 3 s; when the proxy sends GOAWAY, reconnect and go on, as a
    // real attacker would.
    let mut connections = 1;
    let mut goaways = HashMap::<u32, usize>::new();
    while attack.elapsed() < Duration::from_secs(3) {
        if h2.closed || h2.goaway.is_some() {
            if let Some(code) = h2.goaway {
                *goaways.entry(code).or_default() += 1;
            }
            h2 = H2::connect(&w).await;
            connections += 1;
        }
        let mut batch = Vec::new();
        for _ in 0..200 {
            let (id, bytes) = h2.request(
                &[
                    (b":method", b"GET"),
                    (b":scheme", b"https"),
                    (b":authority", b"localhost"),
                    (b":path", b"/metrics"),
                    (b"authorization", auth.as_bytes()),
                ],
                true,
            );
            batch.extend(bytes);
            batch.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
            h2.streams.remove(&id);
        }
        sent += 200;
        h2.send(&batch).await;
        h2.pump(Duration::from_millis(1), |_| false).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (worst, scrapes) = bystander.await.unwrap();
    eprintln!(
        "rapid reset: {sent} streams opened+cancelled over {connections} connections in \
         {:?}; GOAWAY codes {goaways:?}; bystander: {scrapes} scrapes, worst {worst:?}; exporter saw {} \
         requests",
        attack.elapsed(),
        w.echo.seen().len()
    );
    assert!(worst < Duration::from_secs(5), "bystander waited {worst:?}");
    assert!(scrapes >= 10, "only {scrapes} bystander scrapes in 3 s");
    w.healthy_scrape().await;
}

// ---------------------------------------------------------------------------------
// More HTTP/2 abuse: the default stream limit, CONTINUATION and PING floods.
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_default_stream_limit_is_100() {
    let w = world(&[]).await;
    w.api.allow(SA, "get", "/slow");
    w.healthy_scrape().await;
    let before = w.echo.seen().len();
    let mut h2 = H2::connect(&w).await;
    let auth = format!("Bearer {TOKEN}");
    let mut ids = Vec::new();
    let mut bytes = Vec::new();
    for _ in 0..130 {
        let (id, b) = h2.request(
            &[
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", b"localhost"),
                (b":path", b"/slow?ms=1500"),
                (b"authorization", auth.as_bytes()),
            ],
            true,
        );
        ids.push(id);
        bytes.extend(b);
    }
    h2.send(&bytes).await;
    h2.pump(Duration::from_millis(1000), |_| false).await;
    let in_flight = w.echo.seen().len() - before;
    assert!(
        in_flight <= 100,
        "{in_flight} streams at the exporter at once"
    );
    h2.pump(Duration::from_secs(15), |h| {
        ids.iter().all(|id| h.streams[id].done())
    })
    .await;
    let ok = ids
        .iter()
        .filter(|id| h2.streams[id].status == Some(200))
        .count();
    let refused = ids
        .iter()
        .filter(|id| h2.streams[id].reset == Some(REFUSED_STREAM))
        .count();
    eprintln!("default limit: {in_flight} in flight, {ok} answered, {refused} refused");
    assert_eq!(ok, 100, "exactly the first 100 streams are served");
    assert_eq!(refused, 30);
    w.healthy_scrape().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_continuation_flood_is_cut_off() {
    let w = world(&[]).await;
    let mut h2 = H2::connect(&w).await;
    let auth = format!("Bearer {TOKEN}");
    let mut block = header_block(&[
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"localhost"),
        (b":path", b"/metrics"),
        (b"authorization", auth.as_bytes()),
    ]);
    // HEADERS without END_HEADERS, then up to 4 MiB of CONTINUATION frames that never
    // end the header block.
    let mut out = frame(HEADERS, END_STREAM, 1, &block);
    h2.send(&out).await;
    block.clear();
    let pad = vec![b'a'; 1000];
    for i in 0..15 {
        block.extend(header_block(&[(format!("x-pad-{i}").as_bytes(), &pad)]));
    }
    let start = Instant::now();
    let mut sent = 0usize;
    while sent < 4 << 20 && !h2.closed && h2.goaway.is_none() {
        out = Vec::new();
        for _ in 0..16 {
            out.extend(frame(CONTINUATION, 0, 1, &block));
        }
        sent += out.len();
        h2.send(&out).await;
        h2.pump(Duration::from_millis(1), |_| false).await;
    }
    h2.pump(Duration::from_secs(5), |h| h.closed || h.goaway.is_some())
        .await;
    eprintln!(
        "CONTINUATION flood: {} KiB sent in {:?}; goaway {:?}, closed {}",
        sent / 1024,
        start.elapsed(),
        h2.goaway,
        h2.closed
    );
    assert!(
        h2.closed || h2.goaway.is_some(),
        "the connection survived 4 MiB of one header block"
    );
    assert!(w.echo.seen().is_empty());
    assert_eq!(w.api.token_reviews(), 0);
    w.healthy_scrape().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_ping_and_settings_floods_do_not_starve_others() {
    let w = world(&[]).await;
    w.healthy_scrape().await;
    for (label, unit) in [
        ("PING", frame(PING, 0, 0, &[7; 8])),
        ("SETTINGS", frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100])),
    ] {
        let mut h2 = H2::connect(&w).await;
        let batch: Vec<u8> = unit.repeat(10_000);
        let start = Instant::now();
        // Send without reading the answers: 20 × 10,000 frames.
        for _ in 0..20 {
            if h2.closed {
                break;
            }
            h2.send(&batch).await;
        }
        let took = start.elapsed();
        let scrape = Instant::now();
        w.healthy_scrape().await;
        eprintln!(
            "{label} flood: 200,000 frames in {took:?} (closed {}); a scrape meanwhile took {:?}",
            h2.closed,
            scrape.elapsed()
        );
        assert!(scrape.elapsed() < Duration::from_secs(3));
    }
    w.healthy_scrape().await;
}

/// hyper's default connection window is 1 MiB on top of the streams' windows: what a
/// client may make the proxy buffer per connection. It is one stream's worth
/// (`--http2-max-size`, 256 KiB by default), not hyper's 1 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_connection_window_is_one_streams_worth() {
    let w = world(&[]).await;
    let mut h2 = H2::connect(&w).await;
    // The server's SETTINGS and WINDOW_UPDATE follow the preface at once.
    h2.pump(Duration::from_secs(2), |_| false).await;
    assert!(!h2.closed, "the connection stays open");
    assert_eq!(h2.connection_window, 262_144);
}

#[tokio::test]
async fn h2_a_host_header_that_differs_from_authority_is_refused() {
    let w = world(&[]).await;
    let mut h2 = H2::connect(&w).await;
    // The same name in another case is the same host: served, and forwarded.
    let same = h2
        .get(b"GET", b"/metrics", &[(b"host", b"LocalHost")])
        .await;
    assert_eq!(
        h2.wait_for(same, Duration::from_secs(10)).await.status,
        Some(200)
    );
    let before = w.echo.seen().len();
    for extra in [
        &[(&b"host"[..], &b"admin.internal"[..])][..],
        &[(b"host", b"localhost"), (b"host", b"admin.internal")],
    ] {
        let id = h2.get(b"GET", b"/metrics", extra).await;
        let stream = h2.wait_for(id, Duration::from_secs(10)).await;
        assert_eq!(stream.status, Some(400), "{extra:?}");
    }
    assert_eq!(w.echo.seen().len(), before, "nothing was forwarded");
    w.healthy_scrape().await;
}
