//! The request body sent on a client connection's own upstream connection: the
//! client's body, watched until its end is handed to the upstream connection, so that
//! a connection answered before it had the whole body is never reused (the upstream
//! may read the rest as a request of its own).

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// What requests on a client connection's own upstream connections carry: the
/// client's body, watched until its end is handed to the connection, or nothing (a
/// body known to be empty is not forwarded as a stream, so that the request can be
/// sent again).
pub(crate) struct WatchedBody(Option<Streamed>);

/// A client's request body on its way upstream, and whether its end was handed over.
struct Streamed {
    body: Incoming,
    /// Shared with the `Loan` (`BodyWatch`), which reads it when the response begins.
    whole: Arc<AtomicBool>,
}

/// Whether a request's body was handed to the connection whole (no body: it was).
pub(super) struct BodyWatch(Option<Arc<AtomicBool>>);

// === impl WatchedBody ===

impl WatchedBody {
    /// No body.
    pub(crate) fn empty() -> Self {
        Self(None)
    }

    /// The client's body, streamed.
    pub(crate) fn streamed(body: Incoming) -> Self {
        Self(Some(Streamed {
            body,
            whole: Arc::default(),
        }))
    }

    pub(super) fn watch(&self) -> BodyWatch {
        BodyWatch(self.0.as_ref().map(|s| Arc::clone(&s.whole)))
    }
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let Some(streamed) = self.get_mut().0.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = Pin::new(&mut streamed.body).poll_frame(cx);
        // hyper stops polling once `is_end_stream` says so: look after each frame.
        if matches!(frame, Poll::Ready(None)) || streamed.body.is_end_stream() {
            streamed.whole.store(true, Ordering::Release);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            None => true,
            Some(streamed) => {
                let end = streamed.body.is_end_stream();
                if end {
                    streamed.whole.store(true, Ordering::Release);
                }
                end
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            None => SizeHint::with_exact(0),
            Some(streamed) => streamed.body.size_hint(),
        }
    }
}

// === impl BodyWatch ===

impl BodyWatch {
    pub(super) fn whole(&self) -> bool {
        self.0
            .as_ref()
            .is_none_or(|whole| whole.load(Ordering::Acquire))
    }
}
