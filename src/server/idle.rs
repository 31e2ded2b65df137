//! Closing connections that do nothing, so they cannot hold `--max-connections` slots.
//!
//! The TLS handshake is timed, and hyper times an HTTP/1.1 request head — but a client
//! that completes the handshake and then sends nothing sits in hyper-util's protocol
//! detection forever, and an HTTP/2 client that opens no streams but answers keep-alive
//! PINGs stays forever. A client that asks for a page and then stops reading it keeps
//! its request in flight forever too. `Tracked` notes whether the client has sent any
//! byte, and since when writes to it have been blocked; `Activity::begin` counts
//! requests from their start until their response body is done. `Activity::remaining`
//! then says when a connection has been silent since the handshake for too long, has
//! had no request in flight for too long, or has not taken a byte for too long.
//!
//! On HTTP/1.1 the wait for the next request and the time to send its head are two
//! limits: hyper's own header-read timeout runs from the end of the last response, so
//! it would close a kept-alive connection after `--header-read-timeout`, long before a
//! scraper's next scrape (Prometheus keeps idle connections for 5 minutes). So
//! `Tracked` notes when the bytes of a head start arriving (a byte read with no request
//! in flight), and the head must be complete `--header-read-timeout` after that; until
//! then an idle connection has `--idle-timeout`.
//!
//! A client that keeps reading, however slowly, is not cut off: there is no minimum
//! rate, only a limit on a complete stop. A request waiting on a slow exporter writes
//! nothing and is not blocked, so it is not cut off either.

use std::{
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use http_body::{Body, Frame, SizeHint};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Instant,
};

/// How long a connection may wait for what (`--tls-handshake-timeout`,
/// `--header-read-timeout`, `--idle-timeout`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// From the handshake to the client's first byte.
    pub(super) first_byte: Duration,
    /// HTTP/1.1: from a request head's first byte to its end.
    pub(super) head: Duration,
    /// With no request in flight, or without the client taking a byte.
    pub(super) idle: Duration,
}

/// When bytes last moved on a connection.
#[derive(Debug)]
pub(super) struct Activity {
    start: Instant,
    /// HTTP/1.1: a byte read with no request in flight is a request head arriving.
    http1: AtomicBool,
    /// Since when (ms since `start`, plus one; 0: none) an HTTP/1.1 request head has
    /// been arriving.
    head_ms: AtomicU64,
    /// When the last request ended (or the connection began), in ms since `start`.
    last_ms: AtomicU64,
    read_any: AtomicBool,
    in_flight: AtomicUsize,
    /// Since when (ms since `start`, plus one; 0: not blocked) the client has not
    /// taken the bytes we are writing.
    blocked_ms: AtomicU64,
}

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            start: Instant::now(),
            http1: AtomicBool::new(false),
            head_ms: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
            read_any: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            blocked_ms: AtomicU64::new(0),
        }
    }

    /// The connection speaks HTTP/1.1 (no ALPN `h2`): its request heads are timed
    /// from their first byte.
    pub(super) fn http1(&self) {
        self.http1.store(true, Ordering::Relaxed);
    }

    /// Records that the client sent bytes.
    fn read(&self) {
        if !self.read_any.load(Ordering::Relaxed) {
            self.read_any.store(true, Ordering::Relaxed);
        }
        if self.http1.load(Ordering::Relaxed)
            && self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_ms.load(Ordering::Relaxed) == 0
        {
            let since = self.elapsed_ms().saturating_add(1);
            self.head_ms.store(since, Ordering::Relaxed);
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Records whether a write to the client went through or had to wait.
    fn wrote<T>(&self, polled: &Poll<T>) {
        if polled.is_pending() {
            if self.blocked_ms.load(Ordering::Relaxed) == 0 {
                self.blocked_ms
                    .store(self.elapsed_ms().saturating_add(1), Ordering::Relaxed);
            }
        } else if self.blocked_ms.load(Ordering::Relaxed) != 0 {
            self.blocked_ms.store(0, Ordering::Relaxed);
        }
    }

    /// A request started; it counts as in flight until the guard is dropped (when its
    /// response body has been sent, or abandoned).
    pub(super) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_ms.store(0, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// How long it has gone without a request in flight (zero while one is): since the
    /// last request ended, or since the handshake.
    pub(super) fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        Instant::now().saturating_duration_since(self.start + last)
    }

    /// `None` once the connection should be closed; otherwise how long until it should
    /// be checked again. Until the client has sent a byte the limit is `first_byte`
    /// from the handshake; after that, `idle` with no request in flight (an HTTP/1.1
    /// head under way: `head` from its first byte), or `idle` without taking a byte of
    /// a response.
    pub(super) fn remaining(&self, limits: Limits) -> Option<Duration> {
        let Limits {
            first_byte,
            head,
            idle,
        } = limits;
        if !self.read_any.load(Ordering::Relaxed) {
            return (self.start + first_byte).checked_duration_since(Instant::now());
        }
        let head_ms = self.head_ms.load(Ordering::Relaxed);
        if head_ms != 0 && self.in_flight.load(Ordering::Relaxed) == 0 {
            let since = Duration::from_millis(head_ms - 1);
            return (self.start + since + head).checked_duration_since(Instant::now());
        }
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return match self.blocked_ms.load(Ordering::Relaxed) {
                0 => Some(idle),
                since => (self.start + Duration::from_millis(since - 1) + idle)
                    .checked_duration_since(Instant::now()),
            };
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        (self.start + last + idle).checked_duration_since(Instant::now())
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        activity
            .last_ms
            .store(activity.elapsed_ms(), Ordering::Relaxed);
        activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted as in flight until it is done.
#[derive(Debug)]
pub(super) struct Counted<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B> Counted<B> {
    pub(super) fn new(body: B, in_flight: InFlight) -> Self {
        Self {
            body,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body + Unpin> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// I/O that tells an `Activity` when the client first sends a byte.
pub(super) struct Tracked<T> {
    io: T,
    activity: Arc<Activity>,
}

impl<T> Tracked<T> {
    pub(super) fn new(io: T, activity: Arc<Activity>) -> Self {
        Self { io, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.activity.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.activity.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.activity.wrote(&polled);
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits(first_byte: u64, idle: u64) -> Limits {
        Limits {
            first_byte: Duration::from_secs(first_byte),
            head: Duration::from_secs(5),
            idle: Duration::from_secs(idle),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_http1_connection_waits_idle_for_its_next_request_but_not_for_a_head() {
        let (mut client, server) = tokio::io::duplex(64);
        let activity = Arc::new(Activity::new());
        activity.http1();
        let mut tracked = Tracked::new(server, Arc::clone(&activity));
        let limits = limits(10, 360);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        tracked.read_exact(&mut [0u8; 18]).await.unwrap();
        drop(activity.begin());
        // Kept alive far past the head limit while nothing arrives.
        tokio::time::advance(Duration::from_secs(300)).await;
        assert!(
            activity.remaining(limits).is_some(),
            "idle, not a slow head"
        );
        // A head starts arriving: it has `head` to finish, not what is left of `idle`.
        client.write_all(b"GET").await.unwrap();
        tracked.read_exact(&mut [0u8; 3]).await.unwrap();
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(activity.remaining(limits).is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(activity.remaining(limits).is_none(), "a head too slow");
        // Once the head is complete, the request is in flight and the head timer off.
        let request = activity.begin();
        assert!(activity.remaining(limits).is_some());
        drop(request);
    }

    #[tokio::test(start_paused = true)]
    async fn silence_then_idleness_expire_but_requests_in_flight_do_not() {
        let (mut client, server) = tokio::io::duplex(64);
        let activity = Arc::new(Activity::new());
        let mut tracked = Tracked::new(server, Arc::clone(&activity));
        let limits = limits(10, 60);
        assert!(activity.remaining(limits).is_some());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(
            activity.remaining(limits).is_none(),
            "silent past the first-byte limit"
        );

        client.write_all(b"GET").await.unwrap();
        let mut buf = [0u8; 3];
        tracked.read_exact(&mut buf).await.unwrap();
        let request = activity.begin();
        tokio::time::advance(Duration::from_secs(300)).await;
        assert!(
            activity.remaining(limits).is_some(),
            "a request in flight keeps it open"
        );
        drop(request);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(activity.remaining(limits).is_some());
        tracked.write_all(b"PING").await.unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            activity.remaining(limits).is_none(),
            "pings are not requests"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_expires_but_a_slow_exporter_does_not() {
        let (mut client, server) = tokio::io::duplex(64);
        let activity = Arc::new(Activity::new());
        let mut tracked = Tracked::new(server, Arc::clone(&activity));
        let limits = limits(10, 60);
        let idle = limits.idle;
        client.write_all(b"GET").await.unwrap();
        tracked.read_exact(&mut [0u8; 3]).await.unwrap();
        let request = activity.begin();

        // Waiting on the exporter: nothing written, nothing blocked.
        tokio::time::advance(Duration::from_secs(300)).await;
        assert_eq!(activity.remaining(limits), Some(idle));

        // The client reads what it is sent: never blocked for long.
        let page = [b'x'; 256];
        let (written, read) = tokio::join!(tracked.write_all(&page), async {
            client.read_exact(&mut [0u8; 256]).await
        });
        written.unwrap();
        read.unwrap();
        assert_eq!(activity.remaining(limits), Some(idle));

        // The client stops reading: the write waits, and after `idle` the connection
        // is due to be closed although its request is still in flight.
        let stuck = tokio::time::timeout(Duration::from_secs(1), tracked.write_all(&page)).await;
        assert!(stuck.is_err(), "the 64-byte pipe is full");
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(activity.remaining(limits).is_some());
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(
            activity.remaining(limits).is_none(),
            "blocked for longer than idle"
        );
        drop(request);
    }
}
