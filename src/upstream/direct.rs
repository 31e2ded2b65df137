//! HTTP/1.1 to a plain-TCP or Unix-socket upstream on the client connection's own
//! lane (`crate::lane`): one upstream connection per client connection, polled in its
//! task, and a few spare ones shared by every client (`Spares`). Connections in use
//! beyond each client's first share one budget (`Extras`). An https or h2c upstream
//! (ALPN may pick HTTP/2, which multiplexes) uses the pool instead.

use std::sync::Arc;

use http::{Method, Request, Response, Uri};
use http_body::Body as _;
use hyper::{
    body::Incoming,
    client::conn::http1,
    rt::{Read, Write},
};
use hyper_util::client::legacy::connect::HttpConnector;

use super::{error_chain, unix::UnixConnector, UPSTREAM_READ_BUFFER};
use crate::{
    error::ProxyError,
    lane::{Extras, Lane, LaneBody, Lease, Lent, Line, SendError, Spares},
};

/// How a lane's connection is opened.
pub(super) enum Dial {
    Tcp(HttpConnector),
    Unix(UnixConnector),
}

/// Opens lane connections to one upstream and sends requests on them.
pub(super) struct Direct {
    dial: Dial,
    builder: http1::Builder,
    /// Where to connect (`--upstream`'s scheme and authority).
    uri: Uri,
    /// Idle connections the lanes gave back, for any client's next request.
    spares: Arc<Spares>,
    /// Room for the connections in use beyond each client connection's first.
    extras: Extras,
}

impl Direct {
    pub(super) fn new(dial: Dial, uri: Uri) -> Self {
        let mut builder = http1::Builder::new();
        builder.max_buf_size(UPSTREAM_READ_BUFFER);
        Self {
            dial,
            builder,
            uri,
            spares: Arc::default(),
            extras: Extras::default(),
        }
    }

    /// Lends `lane`'s connection (or a spare, or room for a new one) to one request, or
    /// room to go through the pool when the lane has all it may; waits while the
    /// lane's first and the extras are all in use (the caller bounds the wait).
    pub(super) async fn lease(&self, lane: &Lane) -> Lent {
        lane.lease(&self.spares, &self.extras).await
    }

    /// Sends `request` (origin-form target) on the lease's connection, opening one if
    /// there is none or it closed. A request the upstream could not have acted on (not
    /// sent; or a bodiless GET or HEAD it dropped unanswered) on a reused connection
    /// goes once more on a new one.
    pub(super) async fn send(
        &self,
        lease: &mut Lease,
        request: Request<Incoming>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let reused = lease.has_ready_line().await;
        if !reused {
            lease.install(self.open().await?);
        }
        let (parts, body) = request.into_parts();
        let empty = body.is_end_stream();
        let replay = (reused && empty && matches!(parts.method, Method::GET | Method::HEAD))
            .then(|| bodiless(&parts));
        let body = if empty {
            LaneBody::empty()
        } else {
            LaneBody::streamed(body)
        };
        let request = match lease.send(Request::from_parts(parts, body), replay).await {
            Ok(response) => return Ok(response),
            Err(SendError::Failed(error)) => return Err(unavailable(&error)),
            Err(SendError::Connect(request)) if reused => request,
            Err(SendError::Connect(_)) => return Err(closed_at_once()),
        };
        tracing::debug!("upstream connection closed while idle; sending on a new one");

        lease.install(self.open().await?);
        match lease.send(*request, None).await {
            Ok(response) => Ok(response),
            Err(SendError::Failed(error)) => Err(unavailable(&error)),
            Err(SendError::Connect(_)) => Err(closed_at_once()),
        }
    }

    async fn open(&self) -> Result<Line, ProxyError> {
        match &self.dial {
            Dial::Tcp(connector) => self.open_with(connector.clone()).await,
            Dial::Unix(connector) => self.open_with(connector.clone()).await,
        }
    }

    /// Connects with `connector` and completes the HTTP/1.1 handshake.
    async fn open_with<C>(&self, mut connector: C) -> Result<Line, ProxyError>
    where
        C: tower_service::Service<Uri>,
        C::Response: Read + Write + Unpin + Send + 'static,
        C::Error: std::error::Error + 'static,
    {
        let io = connector
            .call(self.uri.clone())
            .await
            .map_err(|e| unavailable(&e))?;
        Line::open(io, &self.builder)
            .await
            .map_err(|e| unavailable(&e))
    }
}

/// The request again without a body, for a second try.
fn bodiless(parts: &http::request::Parts) -> Request<LaneBody> {
    let mut request = Request::new(LaneBody::empty());
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request
}

fn unavailable(error: &(dyn std::error::Error + 'static)) -> ProxyError {
    ProxyError::UpstreamUnavailable(error_chain(error))
}

fn closed_at_once() -> ProxyError {
    ProxyError::UpstreamUnavailable(
        "the upstream closed a new connection before the request could be sent".into(),
    )
}
