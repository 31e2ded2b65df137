//! A client connection's own upstream connections, driven in that connection's task.
//!
//! The pooled client (hyper-util's legacy `Client`) runs every upstream connection as
//! a task of its own: a scrape's response crosses from that task to the client
//! connection's task chunk by chunk, often from one thread to another, and each
//! request pays for the pool's lock, a oneshot and the connection's trip back to the
//! pool. Here one HTTP/1.1 upstream connection belongs to one downstream connection
//! (its `OwnConnections`) and is polled only by the futures serving it: the request's
//! own future until the response headers arrive, then the response body as hyper
//! writes it to the client. Nothing is spawned; the bytes go from one socket to the other in one
//! task, and the upstream is read only as fast as the client takes the page.
//!
//! A connection with several requests in flight (HTTP/2 streams) holds up to
//! `MAX_PER_CLIENT` upstream connections, each driven by its stream's task; more
//! requests at once use the pool. A connection is lent to one request (a `Loan`) and
//! given back when its response has been read to the end, and is checked before
//! reuse: a connection the upstream closed while it sat idle is replaced, and a request
//! that could not be sent on it (or a GET or HEAD without a body that the upstream
//! dropped unanswered) is sent once more on a new connection, as the pool does.
//!
//! Idle, a client connection keeps one upstream connection, never more: an HTTP/2
//! client that once had 8 streams in flight would otherwise hold 8 exporter sockets
//! and their buffers (~60 KiB each) for as long as it stays open. The others go to
//! `Spares`, a small set shared by the clients of one upstream, and are closed when it
//! is full. So idle upstream connections are at most one per client connection plus
//! `MAX_SPARES` per upstream, whatever the clients did before.
//!
//! In use, a client connection always has its first upstream connection to itself, so
//! that no client can be starved by others: it can always make progress one request at
//! a time. Its others (the 2nd to the `MAX_PER_CLIENT`th, and what it sends through
//! the pool beyond them) come from `Extras`, one budget of `MAX_EXTRAS` connections in
//! use at once, shared by the clients of one upstream. A request that finds neither
//! waits for whichever comes back first, within the request's upstream timeout (the
//! caller's). Without this bound, 128 HTTP/2 clients with 8 streams each in flight
//! held 1,024 exporter connections at once (~36 KiB each), memory that the allocator
//! kept after the burst; with it, at most 128 + `MAX_EXTRAS`. The price: a client with
//! many streams in flight while others burst too waits longer for its answers.
//!
//! A connection is given back only when the upstream can have nothing more to say on
//! it: its response was read to the end, and the request's body had been handed over
//! whole before the response began. An upstream that answers before it has read a
//! body may read that body later as a request of its own, and answer it to whoever
//! sends the next request on the connection; such a connection is closed.

use std::{
    future::{poll_fn, Future},
    pin::Pin,
    sync::{Arc, Mutex, OnceLock, PoisonError, Weak},
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::{
    body::Incoming,
    client::conn::{http1, TrySendError},
    rt::{Read, Write},
};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

pub(crate) use self::body::WatchedBody;

mod body;

/// The future that runs one upstream connection (hyper's `Connection`), type-erased
/// so that TCP and Unix sockets share one type.
type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// One upstream HTTP/1.1 connection: where requests are sent and what runs it.
pub(crate) struct Connection {
    sender: http1::SendRequest<WatchedBody>,
    driver: Driver,
    /// The driver returned: the connection is closed.
    ended: bool,
}

impl Connection {
    /// Completes the HTTP/1.1 handshake on a connected socket.
    pub(crate) async fn open<T>(io: T, builder: &http1::Builder) -> hyper::Result<Self>
    where
        T: Read + Write + Unpin + Send + 'static,
    {
        let (sender, connection) = builder.handshake(io).await?;
        Ok(Self {
            sender,
            driver: Box::pin(connection),
            ended: false,
        })
    }

    /// Lets the connection make progress: write the request, read the response, or
    /// notice that the upstream closed it.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if !self.ended && self.driver.as_mut().poll(cx).is_ready() {
            self.ended = true;
        }
    }

    /// Whether a request can be sent at once (not closed, not busy).
    fn ready_now(&mut self, cx: &mut Context<'_>) -> bool {
        self.drive(cx);
        !self.ended && matches!(self.sender.poll_ready(cx), Poll::Ready(Ok(())))
    }

    /// Sends `request` and drives the connection until the response headers arrive.
    async fn exchange(
        &mut self,
        request: Request<WatchedBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<WatchedBody>>> {
        let mut sent = std::pin::pin!(self.sender.try_send_request(request));
        poll_fn(|cx| {
            // Drive first: it writes the request and hands over the response.
            if !self.ended && self.driver.as_mut().poll(cx).is_ready() {
                self.ended = true;
            }
            sent.as_mut().poll(cx)
        })
        .await
    }
}

/// How many upstream connections one client connection may hold: HTTP/2 streams in
/// flight together each get their own, up to this; more go through the pool.
pub(crate) const MAX_PER_CLIENT: usize = 8;

/// How many upstream connections may be in use at once, for the clients of one
/// upstream, beyond each client connection's first (`Extras`). 16 lets two HTTP/2
/// clients have all their 8 streams in flight together; Prometheus sends one scrape at
/// a time per target, so extras are rare. The memory a burst leaves behind follows
/// this: 128 HTTP/2 clients idle after 8 streams each at once, 64 → 41-43 MiB, 32 →
/// 40-42, 16 → 39, 0 → 37 (benches/RESULTS.md).
pub(crate) const MAX_EXTRAS: usize = 16;

/// How many idle upstream connections `Spares` keeps for the clients of one upstream:
/// enough that HTTP/2 clients with several streams in flight rarely open a new one
/// (a client connection gives back all but one at the end of each response), few
/// enough to cost under 1 MiB.
pub(crate) const MAX_SPARES: usize = 16;

/// The upstream connections of one client connection: one for HTTP/1.1, up to
/// `MAX_PER_CLIENT` for HTTP/2 streams in flight together; one kept while idle.
///
/// Per upstream: a listener with several (Deckhouse's `upstreams:` routes) gives each
/// upstream its own set, keyed by that upstream's `Spares`, so that a connection to one
/// exporter never carries a request meant for another. Idle, that is one connection
/// per upstream the client has used.
#[derive(Clone, Default)]
pub(crate) struct OwnConnections(Arc<Shared>);

#[derive(Default)]
struct Shared {
    slot: Mutex<Slot>,
    /// Wakes the client connection's waiting requests when one of its loans ends.
    freed: Notify,
    /// The upstream these are connections to: the first to lend claims them.
    upstream: OnceLock<Weak<Spares>>,
    /// This client connection's sets for other upstreams of its listener.
    others: Mutex<Vec<OwnConnections>>,
}

#[derive(Default)]
struct Slot {
    /// The upstream connection waiting for this client's next request (at most one).
    idle: Option<Connection>,
    /// The client's first connection is lent (it needs no room in `Extras`).
    first_lent: bool,
    /// Lent to requests whose responses are still being read.
    busy: usize,
}

/// Room for the upstream connections in use beyond each client connection's first,
/// shared by the clients of one upstream: `MAX_EXTRAS` at once.
pub(crate) struct Extras(Arc<Semaphore>);

/// Room for one upstream connection in use beyond its client's first (`Extras`), held
/// until the response has been read.
pub(crate) struct Room {
    /// Held, never read: dropping it frees the room.
    _permit: OwnedSemaphorePermit,
}

/// What `OwnConnections::lend` gives a request.
pub(crate) enum Lent {
    /// One of the client connection's own connections.
    Connection(Loan),
    /// The client connection has `MAX_PER_CLIENT` lent: room for the request to go
    /// through the pool.
    Pool(Room),
}

/// What `OwnConnections::take` lends: the client's first connection, or an extra with
/// its room in `Extras` (and the idle connection, if there was one); or room for the
/// pool.
enum Taken {
    First(Option<Connection>),
    Extra(Option<Connection>, OwnedSemaphorePermit),
    Pool(OwnedSemaphorePermit),
}

/// Idle upstream connections shared by the clients of one upstream: what clients give
/// back beyond their one, taken before a new connection is opened. At most
/// `MAX_SPARES`; a connection given back to a full set is closed.
#[derive(Default)]
pub(crate) struct Spares(Mutex<Vec<Connection>>);

// === impl OwnConnections ===

impl std::fmt::Debug for OwnConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnConnections")
    }
}

impl OwnConnections {
    /// Lends a connection (the idle one, else a spare, else room for a new one) to one
    /// request: as the client's first if that is free, else as an extra if `extras`
    /// has room; an extra beyond `MAX_PER_CLIENT` goes through the pool. Otherwise
    /// waits for either; the caller bounds the wait (the upstream timeout).
    /// Cancel-safe: nothing is held until it returns.
    pub(crate) async fn lend(&self, spares: &Arc<Spares>, extras: &Extras) -> Lent {
        self.to(spares).lend_own(spares, extras).await
    }

    /// This client connection's set for the upstream `spares` belongs to.
    fn to(&self, spares: &Arc<Spares>) -> OwnConnections {
        let ours = |own: &OwnConnections| {
            let claimed = own.0.upstream.get_or_init(|| Arc::downgrade(spares));
            std::ptr::eq(claimed.as_ptr(), Arc::as_ptr(spares))
        };
        if ours(self) {
            return self.clone();
        }
        let mut others = self.0.others.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(own) = others.iter().find(|own| ours(own)) {
            return own.clone();
        }
        let own = OwnConnections::default();
        // A fresh set: claimed by `spares` here.
        ours(&own);
        others.push(own.clone());
        own
    }

    async fn lend_own(&self, spares: &Arc<Spares>, extras: &Extras) -> Lent {
        let mut permit = None;
        let taken = loop {
            // Registered before looking, so that a loan ending meanwhile wakes us.
            let freed = self.0.freed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            if let Some(taken) = self.take(extras, permit.take()) {
                break taken;
            }
            tokio::select! {
                () = &mut freed => {}
                got = extras.acquire() => permit = Some(got),
            }
        };
        let (connection, permit) = match taken {
            Taken::First(connection) => (connection, None),
            Taken::Extra(connection, permit) => (connection, Some(permit)),
            Taken::Pool(permit) => return Lent::Pool(Room { _permit: permit }),
        };
        Lent::Connection(Loan {
            owner: self.clone(),
            spares: Arc::clone(spares),
            connection: connection.or_else(|| spares.take()),
            extra: permit,
            answered_early: false,
            reusable: false,
        })
    }

    /// Takes the first connection if it is free, else an extra (or room for the pool)
    /// with `permit`, or with room in `extras` now. `None`: nothing to take.
    fn take(&self, extras: &Extras, permit: Option<OwnedSemaphorePermit>) -> Option<Taken> {
        let mut slot = self.0.slot.lock().unwrap_or_else(PoisonError::into_inner);
        if !slot.first_lent {
            slot.first_lent = true;
            slot.busy += 1;
            return Some(Taken::First(slot.idle.take()));
        }
        let permit = permit.or_else(|| extras.try_acquire())?;
        if slot.busy >= MAX_PER_CLIENT {
            return Some(Taken::Pool(permit));
        }
        slot.busy += 1;
        Some(Taken::Extra(slot.idle.take(), permit))
    }

    /// Takes back a lent connection: kept if none is idle here, else spare. The
    /// loan's room (its first, or its `extra`) is free again.
    fn give_back(
        &self,
        connection: Option<Connection>,
        extra: Option<OwnedSemaphorePermit>,
        spares: &Spares,
    ) {
        let spare = {
            let mut slot = self.0.slot.lock().unwrap_or_else(PoisonError::into_inner);
            slot.busy -= 1;
            if extra.is_none() {
                slot.first_lent = false;
            }
            match connection {
                Some(connection) if slot.idle.is_none() => {
                    slot.idle = Some(connection);
                    None
                }
                connection => connection,
            }
        };
        drop(extra);
        if let Some(connection) = spare {
            spares.put(connection);
        }
        self.0.freed.notify_waiters();
    }

    /// Whether an upstream connection waits idle here (tests).
    #[cfg(test)]
    fn has_idle(&self) -> bool {
        self.0
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .idle
            .is_some()
    }
}

// === impl Extras ===

impl Default for Extras {
    fn default() -> Self {
        Self::new(MAX_EXTRAS)
    }
}

impl Extras {
    /// Room for `extra` connections in use at once.
    pub(crate) fn new(extra: usize) -> Self {
        Self(Arc::new(Semaphore::new(extra)))
    }

    fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.0).try_acquire_owned().ok()
    }

    /// Waits for room. The semaphore is never closed, so this never fails; a closed
    /// one would wait forever here, within the caller's timeout.
    async fn acquire(&self) -> OwnedSemaphorePermit {
        match Arc::clone(&self.0).acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => std::future::pending().await,
        }
    }
}

// === impl Spares ===

impl Spares {
    fn take(&self) -> Option<Connection> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).pop()
    }

    /// Keeps `connection` if there is room; closes it (outside the lock) otherwise.
    fn put(&self, connection: Connection) {
        let closed = {
            let mut idle = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < MAX_SPARES {
                idle.push(connection);
                None
            } else {
                Some(connection)
            }
        };
        drop(closed);
    }

    /// How many connections are spare (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// A client connection's own upstream connection lent to one request: it goes back
/// when the response was read to the end (and the request's body was handed over
/// before the response began), and is closed otherwise.
pub(crate) struct Loan {
    /// Whose connection it is.
    owner: OwnConnections,
    spares: Arc<Spares>,
    connection: Option<Connection>,
    /// Room in `Extras`, unless this is the client's first connection.
    extra: Option<OwnedSemaphorePermit>,
    /// The response began before the request's body was handed over whole.
    answered_early: bool,
    reusable: bool,
}

/// Why a loan could not give a response.
pub(crate) enum SendError {
    /// The request needs a new connection (none yet, or the one there is closed).
    Connect(Box<Request<WatchedBody>>),
    /// The upstream failed; the request cannot be sent again.
    Failed(hyper::Error),
}

// === impl Loan ===

impl Loan {
    /// Whether an open connection is there, checked without waiting; a closed one is
    /// dropped.
    pub(crate) async fn has_ready_connection(&mut self) -> bool {
        let ready = match self.connection.as_mut() {
            Some(connection) => poll_fn(|cx| Poll::Ready(connection.ready_now(cx))).await,
            None => false,
        };
        if !ready {
            self.connection = None;
        }
        ready
    }

    /// Gives the loan a new connection, in place of any it had.
    pub(crate) fn install(&mut self, connection: Connection) {
        self.connection = Some(connection);
    }

    /// Sends the request on the lent connection. `replay` is the request again,
    /// bodiless, for when the upstream drops an idempotent one unanswered.
    pub(crate) async fn send(
        &mut self,
        request: Request<WatchedBody>,
        replay: Option<Request<WatchedBody>>,
    ) -> Result<Response<Incoming>, SendError> {
        let Some(connection) = self.connection.as_mut() else {
            return Err(SendError::Connect(Box::new(request)));
        };
        let body = request.body().watch();
        match connection.exchange(request).await {
            Ok(response) => {
                // Read as the response begins: a body still arriving now is one the
                // upstream answered without reading (see the module's header).
                self.answered_early = !body.whole();
                Ok(response)
            }
            Err(mut error) => {
                self.connection = None;
                match (error.take_message(), replay) {
                    (Some(request), _) => Err(SendError::Connect(Box::new(request))),
                    (None, Some(replay)) if error.error().is_incomplete_message() => {
                        Err(SendError::Connect(Box::new(replay)))
                    }
                    (None, _) => Err(SendError::Failed(error.into_error())),
                }
            }
        }
    }

    /// The response body, which drives the connection while it is read.
    pub(crate) fn body(self, body: Incoming) -> OwnBody {
        OwnBody { body, loan: self }
    }

    /// The response was read to the end: the connection may serve another request,
    /// unless the request's body was still on its way when the response began.
    fn response_ended(&mut self) {
        self.reusable = !self.answered_early;
    }
}

impl Drop for Loan {
    fn drop(&mut self) {
        // Closed (or half-read, and so unusable): dropped here.
        let connection = self
            .connection
            .take()
            .filter(|connection| self.reusable && !connection.ended);
        self.owner
            .give_back(connection, self.extra.take(), &self.spares);
    }
}

/// An upstream response body read from a client connection's own upstream
/// connection: each poll drives the connection first, and the end of the body gives
/// the connection back.
pub(crate) struct OwnBody {
    body: Incoming,
    loan: Loan,
}

impl Body for OwnBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(connection) = this.loan.connection.as_mut() {
            connection.drive(cx);
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => this.loan.response_ended(),
            Poll::Ready(Some(Err(_))) => this.loan.connection = None,
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for OwnBody {
    fn drop(&mut self) {
        // An empty body (HEAD, 204, 304) is never polled: it ended all the same.
        if self.body.is_end_stream() {
            self.loan.response_ended();
        }
    }
}

/// A response body from the pool, holding its request's `Room` (if it needed one)
/// until it is dropped.
pub(crate) struct Pooled {
    body: Incoming,
    room: Option<Room>,
}

impl Pooled {
    pub(crate) fn new(body: Incoming, room: Option<Room>) -> Self {
        Self { body, room }
    }
}

impl Body for Pooled {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if matches!(frame, Poll::Ready(None | Some(Err(_)))) {
            // Read to the end (or failed): the connection is no longer in use.
            this.room = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests;
