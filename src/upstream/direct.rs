//! HTTP/1.1 to a plain-TCP or Unix-socket upstream on the client connection's own
//! upstream connections (`crate::lane`): one per client connection, polled in its
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
    lane::{Connection, Extras, Lent, Loan, OwnConnections, SendError, Spares, WatchedBody},
};

/// How an own connection is opened.
pub(super) enum Dial {
    Tcp(HttpConnector),
    Unix(UnixConnector),
}

/// Opens the client connections' own connections to one upstream and sends requests on
/// them.
pub(super) struct Direct {
    dial: Dial,
    builder: http1::Builder,
    /// Where to connect (`--upstream`'s scheme and authority).
    uri: Uri,
    /// Idle connections the clients gave back, for any client's next request.
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

    /// Lends one of `own`'s connections (or a spare, or room for a new one) to one
    /// request, or room to go through the pool when `own` has all it may; waits while
    /// its first and the extras are all in use (the caller bounds the wait).
    pub(super) async fn lend(&self, own: &OwnConnections) -> Lent {
        own.lend(&self.spares, &self.extras).await
    }

    /// Sends `request` (origin-form target) on the loan's connection, opening one if
    /// there is none or it closed. A request the upstream could not have acted on (not
    /// sent; or a bodiless GET or HEAD it dropped unanswered) on a reused connection
    /// goes once more on a new one.
    pub(super) async fn send(
        &self,
        loan: &mut Loan,
        request: Request<Incoming>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let reused = loan.has_ready_connection().await;
        if !reused {
            loan.install(self.open().await?);
        }
        let (parts, body) = request.into_parts();
        let empty = body.is_end_stream();
        let replay = (reused && empty && matches!(parts.method, Method::GET | Method::HEAD))
            .then(|| bodiless(&parts));
        let body = if empty {
            WatchedBody::empty()
        } else {
            WatchedBody::streamed(body)
        };
        let request = match loan.send(Request::from_parts(parts, body), replay).await {
            Ok(response) => return Ok(response),
            Err(SendError::Failed(error)) => return Err(unavailable(&error)),
            Err(SendError::Connect(request)) if reused => request,
            Err(SendError::Connect(_)) => return Err(closed_at_once()),
        };
        tracing::debug!("upstream connection closed while idle; sending on a new one");

        loan.install(self.open().await?);
        match loan.send(*request, None).await {
            Ok(response) => Ok(response),
            Err(SendError::Failed(error)) => Err(unavailable(&error)),
            Err(SendError::Connect(_)) => Err(closed_at_once()),
        }
    }

    async fn open(&self) -> Result<Connection, ProxyError> {
        match &self.dial {
            Dial::Tcp(connector) => self.open_with(connector.clone()).await,
            Dial::Unix(connector) => self.open_with(connector.clone()).await,
        }
    }

    /// Connects with `connector` and completes the HTTP/1.1 handshake.
    async fn open_with<C>(&self, mut connector: C) -> Result<Connection, ProxyError>
    where
        C: tower_service::Service<Uri>,
        C::Response: Read + Write + Unpin + Send + 'static,
        C::Error: std::error::Error + 'static,
    {
        let io = connector
            .call(self.uri.clone())
            .await
            .map_err(|e| unavailable(&e))?;
        Connection::open(io, &self.builder)
            .await
            .map_err(|e| unavailable(&e))
    }
}

/// The request again without a body, for a second try.
fn bodiless(parts: &http::request::Parts) -> Request<WatchedBody> {
    let mut request = Request::new(WatchedBody::empty());
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
