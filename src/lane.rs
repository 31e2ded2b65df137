//! A downstream connection's own upstream connection, driven in that connection's task.
//!
//! The pooled client (hyper-util's legacy `Client`) runs every upstream connection as
//! a task of its own: a scrape's response crosses from that task to the client
//! connection's task chunk by chunk, often from one thread to another, and each
//! request pays for the pool's lock, a oneshot and the connection's trip back to the
//! pool. Here one HTTP/1.1 upstream connection belongs to one downstream connection
//! (a `Lane`) and is polled only by the futures serving it: the request's own future
//! until the response headers arrive, then the response body as hyper writes it to
//! the client. Nothing is spawned; the bytes go from one socket to the other in one
//! task, and the upstream is read only as fast as the client takes the page.
//!
//! A connection with several requests in flight (HTTP/2 streams) holds up to
//! `MAX_LINES` upstream connections, each driven by its stream's task; more requests at
//! once use the pool. A connection is given back when its response has been
//! read to the end, and is checked before reuse: a connection the upstream closed
//! while it sat idle is replaced, and a request that could not be sent on it (or a GET
//! or HEAD without a body that the upstream dropped unanswered) is sent once more on a
//! new connection, as the pool does.

use std::{
    future::{poll_fn, Future},
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Empty};
use hyper::{
    body::Incoming,
    client::conn::{http1, TrySendError},
    rt::{Read, Write},
};

/// What a lane's requests carry: the client's body, or nothing (a body known to be
/// empty is not forwarded as a stream, so that the request can be sent again).
pub(crate) type LaneBody = Either<Incoming, Empty<Bytes>>;

/// The future that runs one upstream connection (hyper's `Connection`), type-erased
/// so that TCP and Unix sockets share a lane.
type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// One upstream HTTP/1.1 connection: where requests are sent and what runs it.
pub(crate) struct Line {
    sender: http1::SendRequest<LaneBody>,
    driver: Driver,
    /// The driver returned: the connection is closed.
    ended: bool,
}

impl Line {
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
        request: Request<LaneBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<LaneBody>>> {
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
pub(crate) const MAX_LINES: usize = 8;

/// The upstream connections of one client connection: one for HTTP/1.1, up to
/// `MAX_LINES` for HTTP/2 streams in flight together.
#[derive(Clone, Default)]
pub(crate) struct Lane(Arc<Mutex<Slot>>);

#[derive(Default)]
struct Slot {
    /// Upstream connections waiting for this client's next request.
    idle: Vec<Line>,
    /// Lent to requests whose responses are still being read.
    busy: usize,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lane")
    }
}

impl Lane {
    /// Lends a connection of the lane (or room for a new one) to one request, or `None`
    /// when `MAX_LINES` are lent already (use the pool).
    pub(crate) fn lease(&self) -> Option<Lease> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let line = match slot.idle.pop() {
            Some(line) => Some(line),
            None if slot.busy < MAX_LINES => None,
            None => return None,
        };
        slot.busy += 1;
        Some(Lease {
            lane: self.clone(),
            line,
            reusable: false,
        })
    }

    /// How many upstream connections wait in the lane (tests).
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .idle
            .len()
    }
}

/// A lane lent to one request: its connection goes back when the response was read to
/// the end, and is closed otherwise.
pub(crate) struct Lease {
    lane: Lane,
    line: Option<Line>,
    reusable: bool,
}

/// Why a lease could not give a response.
pub(crate) enum SendError {
    /// The request needs a new connection (none yet, or the one there is closed).
    Connect(Box<Request<LaneBody>>),
    /// The upstream failed; the request cannot be sent again.
    Failed(hyper::Error),
}

impl Lease {
    /// Whether an open connection is there, checked without waiting; a closed one is
    /// dropped.
    pub(crate) async fn has_ready_line(&mut self) -> bool {
        let ready = match self.line.as_mut() {
            Some(line) => poll_fn(|cx| Poll::Ready(line.ready_now(cx))).await,
            None => false,
        };
        if !ready {
            self.line = None;
        }
        ready
    }

    /// Gives the lease a new connection, in place of any it had.
    pub(crate) fn install(&mut self, line: Line) {
        self.line = Some(line);
    }

    /// Sends the request on the lane's connection. `replay` is the request again,
    /// bodiless, for when the upstream drops an idempotent one unanswered.
    pub(crate) async fn send(
        &mut self,
        request: Request<LaneBody>,
        replay: Option<Request<LaneBody>>,
    ) -> Result<Response<Incoming>, SendError> {
        let Some(line) = self.line.as_mut() else {
            return Err(SendError::Connect(Box::new(request)));
        };
        match line.exchange(request).await {
            Ok(response) => Ok(response),
            Err(mut error) => {
                self.line = None;
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
    pub(crate) fn body(self, body: Incoming) -> Driven {
        Driven { body, lease: self }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut slot = self.lane.0.lock().unwrap_or_else(PoisonError::into_inner);
        slot.busy -= 1;
        match self.line.take() {
            Some(line) if self.reusable && !line.ended => slot.idle.push(line),
            // Closed (or half-read, and so unusable): dropped here.
            _ => {}
        }
    }
}

/// An upstream response body read from a lane: each poll drives the connection first,
/// and the end of the body gives the connection back.
pub(crate) struct Driven {
    body: Incoming,
    lease: Lease,
}

impl Body for Driven {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(line) = this.lease.line.as_mut() {
            line.drive(cx);
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => this.lease.reusable = true,
            Poll::Ready(Some(Err(_))) => this.lease.line = None,
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

impl Drop for Driven {
    fn drop(&mut self) {
        // An empty body (HEAD, 204, 304) is never polled: it ended all the same.
        if self.body.is_end_stream() {
            self.lease.reusable = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_lends_up_to_max_lines_at_once() {
        let lane = Lane::default();
        let lent: Vec<Lease> = (0..MAX_LINES)
            .map(|_| lane.lease().expect("room for another"))
            .collect();
        assert!(lane.lease().is_none(), "the pool takes the rest");
        drop(lent);
        assert!(lane.lease().is_some(), "returned leases make room again");
        assert_eq!(lane.idle(), 0, "no connection was ever put in it");
    }
}
