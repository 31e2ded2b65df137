//! The one response body type the proxy produces.
//!
//! Forwarded responses stream the upstream's `Incoming` body through untouched (no
//! buffering, `Content-Encoding` kept); everything the proxy answers itself is a small
//! `Full` buffer. `Either` keeps that choice free of a per-response allocation.

use bytes::Bytes;
use http_body_util::{Either, Full};

use crate::lane::{OwnBody, Pooled};

/// A streamed upstream body (from the pool, or from the client connection's own
/// upstream connection) or a small body written by the proxy itself.
pub(crate) type ProxyBody = Either<Either<Pooled, OwnBody>, Full<Bytes>>;

/// A body the proxy writes itself.
pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Either::Right(Full::new(bytes.into()))
}
