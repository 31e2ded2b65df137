//! The connection layer: accept, TLS handshake, HTTP/1.1 or HTTP/2, graceful drain.
//!
//! Plain async functions rather than a tower stack: accept → `timeout(handshake)` →
//! hyper-util's auto builder (h1 and h2 on one port, chosen by ALPN / preface) →
//! a graceful close, which lets in-flight requests finish when we are told to stop. Live
//! connections hold a `--max-connections` slot; at capacity the connection that has done
//! least for us is closed to make room for a newcomer (`peers.rs`), so a few addresses
//! cannot lock scrapers out. Draining waits for every slot back.

mod handshake;
mod idle;
mod peers;

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use http::{Request, Response};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::{
    body::ProxyBody,
    lane::OwnConnections,
    metrics::{self, Metrics},
    tls::{ClientCa, PeerCertificate},
};

/// How long a connection told to close may take to finish before it is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is on the other end of a connection.
#[derive(Debug)]
pub(crate) struct Peer {
    pub addr: SocketAddr,
    /// What its client certificate says: the user the client CA vouches for, or a
    /// front proxy the requestheader CA vouches for.
    pub certificate: PeerCertificate,
    /// This connection's own upstream connections (plain HTTP/1.1 upstreams).
    pub upstreams: OwnConnections,
    /// What the connection slots know of it (see `Peer::authenticated`).
    pub connection: Arc<peers::Connection>,
}

// === impl Peer ===

impl Peer {
    /// Its request authenticated: a connection that serves authenticated requests is
    /// not closed to make room for another at `--max-connections`.
    pub(crate) fn authenticated(&self) {
        self.connection.authenticated();
    }
}

/// Something that answers requests on a listener.
pub(crate) trait Handler: Send + Sync + 'static {
    fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: Arc<Peer>,
    ) -> impl Future<Output = Response<ProxyBody>> + Send;
}

/// Per-connection HTTP settings.
#[derive(Debug, Clone, Copy)]
pub struct HttpSettings {
    pub http2: bool,
    pub max_concurrent_streams: u32,
    /// `--http2-max-size`: HTTP/2 frame size and per-stream receive window.
    pub http2_max_size: u32,
    /// `--max-request-header-bytes`: request line + headers (h1), header list (h2).
    pub max_header_bytes: u32,
    /// `--max-connections`: connections served at once. At the limit a newcomer takes
    /// the slot of the connection that has done least for us (still in its handshake,
    /// or idle longest without an authenticated request); it waits in the backlog only
    /// while every slot serves authenticated requests.
    pub max_connections: usize,
    /// `--max-connections-per-peer`: of those, how many one client address may hold;
    /// past it, its own least useful connection makes room, or the new one is closed.
    pub max_connections_per_peer: usize,
    /// `--tls-handshake-timeout`: prevents port scanners, half-open clients and the like
    /// from holding a task and a socket before they have even finished the handshake;
    /// also how soon after it a client must send its first byte.
    pub handshake_timeout: Duration,
    /// `--header-read-timeout`: how long a client may take to send a request's headers,
    /// from their first byte (a kept-alive connection waits for that byte up to
    /// `idle_timeout`).
    pub header_read_timeout: Duration,
    /// `--idle-timeout`: a connection with no request in flight for this long is closed
    /// gracefully (GOAWAY for HTTP/2; PINGs do not count). Longer than a scraper keeps
    /// an idle connection (Prometheus: 5 minutes), so that it is the scraper that closes.
    pub idle_timeout: Duration,
}

/// A bound listener and how its connections are served.
pub(crate) struct Listener {
    pub(crate) socket: TcpListener,
    pub(crate) acceptor: TlsAcceptor,
    /// `--client-ca-file`, to name the user of a client certificate.
    pub(crate) client_ca: Option<Arc<ClientCa>>,
    pub(crate) settings: HttpSettings,
}

/// What every connection of one listener shares.
struct Shared<H> {
    acceptor: TlsAcceptor,
    client_ca: Option<Arc<ClientCa>>,
    settings: HttpSettings,
    handler: Arc<H>,
    builder: auto::Builder<InCurrentSpan>,
    metrics: Arc<Metrics>,
    handshakes: handshake::Reporter,
    /// Bound the log lines about connections refused, and closed to make room.
    refusals: handshake::LogBudget,
    evictions: handshake::LogBudget,
}

/// What becomes of a connection just accepted.
enum Admitted {
    Served(peers::Slot),
    /// Its peer holds its share: closed at once.
    Refused,
    /// The listener is shutting down.
    Stopping,
}

/// Serves `listener` until `shutdown` resolves, then drains connections for at most
/// `grace`. Returns once every connection is closed or the grace period is over.
pub(crate) async fn serve<H: Handler>(
    listener: Listener,
    handler: Arc<H>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let Listener {
        socket: listener,
        acceptor,
        client_ca,
        settings,
    } = listener;
    let shared = Arc::new(Shared {
        acceptor,
        client_ca,
        settings,
        handler,
        builder: http_builder(settings),
        metrics,
        handshakes: handshake::Reporter::new(),
        refusals: handshake::LogBudget::new(),
        evictions: handshake::LogBudget::new(),
    });
    let slots = peers::Slots::new(peers::SlotLimits {
        max: settings.max_connections,
        per_peer: settings.max_connections_per_peer,
        protected_for: settings.idle_timeout,
    });
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match admit(&slots, peer, &shared, &mut shutdown).await {
            Admitted::Served(slot) => slot,
            Admitted::Refused => continue,
            Admitted::Stopping => break,
        };
        let _ = tcp.set_nodelay(true);
        let connection = serve_connection(tcp, peer, slot, Arc::clone(&shared), stopping.clone());
        tokio::spawn(connection.in_current_span());
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = async {
        while !slots.is_empty() {
            slots.freed().await;
        }
    };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            ?grace,
            "shutdown grace period over; closing remaining connections"
        );
    }
}

/// The metric's name for why a connection was closed to make room.
fn evicted(eviction: peers::Eviction) -> metrics::Eviction {
    match eviction {
        peers::Eviction::Idle => metrics::Eviction::Idle,
        peers::Eviction::Unauthenticated => metrics::Eviction::Unauthenticated,
        peers::Eviction::Handshake => metrics::Eviction::Handshake,
    }
}

/// A slot for a new connection from `peer`: a free one, or one made free by closing
/// the connection that has done least for us. While every slot is held by a connection
/// worth keeping, it waits for one (the next clients wait in the kernel's backlog,
/// costing us nothing).
async fn admit<H: Handler>(
    slots: &Arc<peers::Slots>,
    peer: SocketAddr,
    shared: &Shared<H>,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Admitted {
    loop {
        match slots.take(peer.ip()) {
            peers::Admission::Admitted(slot, eviction) => {
                if let Some(eviction) = eviction {
                    shared.metrics.connection_evicted(evicted(eviction));
                    if shared.evictions.allow("connections closed to make room") {
                        tracing::info!(
                            reason = eviction.label(),
                            %peer,
                            "no slot free for a new connection (--max-connections, or its \
                             client's --max-connections-per-peer); closed the one that did \
                             least for us to make room"
                        );
                    }
                }
                return Admitted::Served(slot);
            }
            peers::Admission::PeerFull => {
                shared
                    .metrics
                    .connection_refused(metrics::Refusal::PerPeerLimit);
                if shared
                    .refusals
                    .allow("connections refused by --max-connections-per-peer")
                {
                    tracing::warn!(
                        %peer,
                        max = shared.settings.max_connections_per_peer,
                        "a client holds its share of connections (--max-connections-per-peer); \
                         closing its new one"
                    );
                }
                return Admitted::Refused;
            }
            peers::Admission::Full => tokio::select! {
                () = slots.freed() => {}
                () = shutdown.as_mut() => return Admitted::Stopping,
            },
        }
    }
}

/// One connection: handshake (timed), identity from a client certificate, then HTTP
/// until the client leaves, goes quiet, or the server drains.
async fn serve_connection<H: Handler>(
    tcp: TcpStream,
    peer: SocketAddr,
    slot: peers::Slot,
    shared: Arc<Shared<H>>,
    mut stopping: watch::Receiver<bool>,
) {
    let settings = shared.settings;
    let handshake = shared.acceptor.accept(tcp);
    let failure = tokio::select! {
        done = tokio::time::timeout(settings.handshake_timeout, handshake) => match done {
            Ok(Ok(tls)) => Ok(tls),
            Ok(Err(error)) => Err(handshake::Failure::of(&error)),
            Err(_) => Err(handshake::Failure::timeout()),
        },
        // Closed to make room: counted as an eviction, not as a failed handshake.
        () = slot.connection().evicted() => return,
    };
    let tls = match failure {
        Ok(tls) => tls,
        Err(failure) => {
            shared.handshakes.report(&failure, peer, &shared.metrics);
            return;
        }
    };
    let session = tls.get_ref().1;
    shared
        .metrics
        .tls_connection(match session.alpn_protocol() {
            Some(b"h2") => metrics::Alpn::H2,
            Some(_) => metrics::Alpn::Http11,
            None => metrics::Alpn::None,
        });
    let certificate = match (&shared.client_ca, session.peer_certificates()) {
        (Some(client_ca), Some(chain)) => client_ca.identify(chain),
        _ => PeerCertificate::default(),
    };
    // Counted from here: the handshake's bytes are not the client talking.
    let activity = Arc::new(idle::Activity::new());
    if session.alpn_protocol() != Some(b"h2".as_slice()) {
        activity.http1();
    }
    slot.connection().established(Arc::clone(&activity));
    let peer = Arc::new(Peer {
        addr: peer,
        certificate,
        upstreams: OwnConnections::default(),
        connection: Arc::clone(slot.connection()),
    });
    let io = TokioIo::new(idle::Tracked::new(tls, Arc::clone(&activity)));
    let requests = Arc::clone(&activity);
    let handler = Arc::clone(&shared.handler);
    let service = service_fn(move |request| {
        let handler = Arc::clone(&handler);
        let peer = Arc::clone(&peer);
        let in_flight = requests.begin();
        async move {
            let response = handler.handle(request, peer).await;
            Ok::<_, Infallible>(response.map(|body| idle::Counted::new(body, in_flight)))
        }
    });
    let connection = shared.builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut closing: Option<tokio::time::Instant> = None;
    let limits = idle::Limits {
        first_byte: settings.handshake_timeout,
        head: settings.header_read_timeout,
        idle: settings.idle_timeout,
    };
    loop {
        let wait = match closing {
            Some(deadline) => deadline.saturating_duration_since(tokio::time::Instant::now()),
            None => match activity.remaining(limits) {
                Some(wait) => wait,
                None => {
                    tracing::debug!("closing a quiet connection");
                    connection.as_mut().graceful_shutdown();
                    closing = Some(tokio::time::Instant::now() + CLOSE_TIMEOUT);
                    continue;
                }
            },
        };
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(error) = ended {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            // Closed to make room: it had done least for us of all the connections.
            () = slot.connection().evicted() => return,
            _ = stopping.changed(), if closing.is_none() => {
                // Finish what is in flight (HTTP/2: GOAWAY), take nothing new.
                connection.as_mut().graceful_shutdown();
                closing = Some(tokio::time::Instant::now() + Duration::MAX / 4);
            }
            () = tokio::time::sleep(wait) => {
                if closing.is_some_and(|deadline| deadline <= tokio::time::Instant::now()) {
                    return;
                }
            }
        }
    }
}

/// Spawns what hyper hands over (HTTP/2 streams) in the span of the connection that
/// does: a listener's, which names it in every line its requests log.
#[derive(Debug, Clone, Copy)]
struct InCurrentSpan;

impl<F> hyper::rt::Executor<F> for InCurrentSpan
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(future.in_current_span());
    }
}

fn http_builder(settings: HttpSettings) -> auto::Builder<InCurrentSpan> {
    let mut builder = auto::Builder::new(InCurrentSpan);
    builder
        .http1()
        .timer(TokioTimer::new())
        // hyper's timer runs from the end of the previous response, so it would close a
        // kept-alive connection long before a scraper's next scrape; `idle` times a head
        // from its first byte instead, and this is only the backstop.
        .header_read_timeout(settings.header_read_timeout.max(settings.idle_timeout))
        // hyper's floor for the read buffer is 8 KiB.
        .max_buf_size((settings.max_header_bytes as usize).max(8192));
    // RFC 9113 bounds the frame size to 16 KiB ..= 16 MiB - 1.
    let frame = settings.http2_max_size.clamp(16_384, 16_777_215);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(settings.max_concurrent_streams)
        .max_header_list_size(settings.max_header_bytes)
        .max_frame_size(frame)
        .initial_stream_window_size(settings.http2_max_size.max(65_535))
        // hyper's default is 1 MiB a connection on top of the streams' own windows; one
        // stream's worth bounds what a client can make us buffer, and a scrape's GET
        // sends no body to need more.
        .initial_connection_window_size(settings.http2_max_size.max(65_535))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    if settings.http2 {
        builder
    } else {
        builder.http1_only()
    }
}
