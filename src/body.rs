//! The one response body type the proxy produces.
//!
//! Forwarded responses stream the upstream's `Incoming` body through (no buffering of
//! the page, `Content-Encoding` kept); everything the proxy answers itself is a small
//! `Full` buffer. `Either` keeps that choice free of a per-response allocation.
//!
//! A forwarded body is [`Coalesced`]: an exporter that compresses (Go's `promhttp`,
//! nginx's gzip) answers `Transfer-Encoding: chunked` in pieces of ~4 KiB, and each
//! piece hyper is handed becomes a write of its own to the client: an HTTP/2 DATA frame
//! (plus an empty one for the end), a TLS record and a syscall each. Pieces that are
//! already read are joined, up to [`COALESCE_BYTES`], and what is there goes out as
//! soon as the upstream has nothing more ready: nothing waits for bytes that have not
//! arrived, and no response holds more than one such buffer.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};

use crate::lane::{OwnBody, Pooled};

/// A streamed upstream body (from the pool, or from the client connection's own
/// upstream connection) or a small body written by the proxy itself.
pub(crate) type ProxyBody = Either<Coalesced<Either<Pooled, OwnBody>>, Full<Bytes>>;

/// A body the proxy writes itself.
pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Either::Right(Full::new(bytes.into()))
}

/// A streamed upstream body, as forwarded.
pub(crate) fn streamed(body: Either<Pooled, OwnBody>) -> ProxyBody {
    Either::Left(Coalesced::new(body))
}

/// At most this many bytes of pieces already read are joined into one frame: one TLS
/// record's worth of plaintext, and the HTTP/2 frame size every client accepts. A
/// piece this large or larger passes through as it came, uncopied.
pub(crate) const COALESCE_BYTES: usize = 16 * 1024;

/// A body whose data frames, as far as they are ready one after another, are joined
/// into frames of up to [`COALESCE_BYTES`]. A frame polled past the joined data (the
/// next piece that did not fit, trailers, an error, the end) is held for the next poll.
pub(crate) struct Coalesced<B: Body> {
    inner: B,
    held: Option<Held<B::Error>>,
}

/// What was polled from the inner body after the data already joined.
enum Held<E> {
    Frame(Frame<Bytes>),
    Error(E),
    End,
}

// === impl Coalesced ===

impl<B: Body> Coalesced<B> {
    pub(crate) fn new(inner: B) -> Self {
        Self { inner, held: None }
    }
}

impl<B> Coalesced<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Unpin,
{
    /// The next frame: the held one, or the inner body's.
    fn next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.held.take() {
            Some(Held::Frame(frame)) => Poll::Ready(Some(Ok(frame))),
            Some(Held::Error(error)) => Poll::Ready(Some(Err(error))),
            Some(Held::End) => Poll::Ready(None),
            None => Pin::new(&mut self.inner).poll_frame(cx),
        }
    }

    /// Joins to `first` the data frames the inner body has ready, up to
    /// `COALESCE_BYTES`; holds whatever else it polls.
    fn join(&mut self, first: Bytes, cx: &mut Context<'_>) -> Bytes {
        let mut joined: Option<BytesMut> = None;
        let mut len = first.len();
        while len < COALESCE_BYTES && !self.inner.is_end_stream() {
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => break,
                Poll::Ready(None) => {
                    self.held = Some(Held::End);
                    break;
                }
                Poll::Ready(Some(Err(error))) => {
                    self.held = Some(Held::Error(error));
                    break;
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if len + data.len() <= COALESCE_BYTES => {
                        let buffer = joined.get_or_insert_with(|| {
                            let mut buffer = BytesMut::with_capacity(COALESCE_BYTES);
                            buffer.extend_from_slice(&first);
                            buffer
                        });
                        buffer.extend_from_slice(&data);
                        len += data.len();
                    }
                    Ok(data) => {
                        self.held = Some(Held::Frame(Frame::data(data)));
                        break;
                    }
                    Err(frame) => {
                        self.held = Some(Held::Frame(frame));
                        break;
                    }
                },
            }
        }
        joined.map_or(first, BytesMut::freeze)
    }
}

impl<B> Body for Coalesced<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        match this.next(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) if data.len() < COALESCE_BYTES => {
                    Poll::Ready(Some(Ok(Frame::data(this.join(data, cx)))))
                }
                Ok(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.held {
            None => self.inner.is_end_stream(),
            Some(Held::End) => true,
            Some(Held::Frame(_) | Held::Error(_)) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.held {
            None | Some(Held::Error(_)) => self.inner.size_hint(),
            Some(Held::End) => SizeHint::with_exact(0),
            Some(Held::Frame(frame)) => {
                let held = frame.data_ref().map_or(0, |data| data.len() as u64);
                let inner = self.inner.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + held);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + held);
                }
                hint
            }
        }
    }
}

#[cfg(test)]
mod tests;
