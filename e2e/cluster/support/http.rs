//! A small HTTP/1.1 client: one fresh connection per request (as curl in a shell
//! script would), plain for Prometheus' API and the exporters, TLS for scrape-guard
//! and the apiserver, optionally with a client certificate. Every request is bounded;
//! each answer is collected into the testkit's `Reply`, the one every suite uses.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{header, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::{
    pki_types::{CertificateDer, ServerName},
    ClientConfig, RootCertStore,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

use super::{KeyCert, Reply};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Which servers a TLS client believes.
pub(crate) enum Trust<'a> {
    /// Certificates signed by this CA.
    Ca(&'a CertificateDer<'static>),
    /// Anything (`curl -k`): scrape-guard's self-signed in-memory certificate.
    Anyone,
}

/// A TLS client configuration: whom to trust, which certificate (if any) to present.
pub(crate) fn tls_config(trust: Trust<'_>, identity: Option<&KeyCert>) -> Arc<ClientConfig> {
    let builder = match trust {
        Trust::Ca(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.clone()).expect("adding the test CA");
            ClientConfig::builder().with_root_certificates(roots)
        }
        Trust::Anyone => ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(
                scrape_guard_testkit::https::AcceptAnyServer::default(),
            )),
    };
    let config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain(), id.private_key())
            .expect("a client certificate rustls accepts"),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// GET `https://{addr}{path}`, with `Authorization: Bearer {bearer}` if given.
pub(crate) async fn https_get(
    tls: &Arc<ClientConfig>,
    addr: SocketAddr,
    path: &str,
    bearer: Option<&str>,
) -> Result<Reply, String> {
    https_get_named(tls, addr, ServerName::from(addr.ip()), path, bearer).await
}

/// [`https_get`], checking the certificate against `server_name` (SNI too).
pub(crate) async fn https_get_named(
    tls: &Arc<ClientConfig>,
    addr: SocketAddr,
    server_name: ServerName<'static>,
    path: &str,
    bearer: Option<&str>,
) -> Result<Reply, String> {
    let exchange = async {
        let tcp = connect(addr).await?;
        let stream = TlsConnector::from(Arc::clone(tls))
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {addr}: {}", causes(&e)))?;
        exchange(stream, addr, path, bearer, &[]).await
    };
    bounded(addr, path, exchange).await
}

/// GET `https://{addr}{path}` with these request headers (a front proxy's), no token.
pub(crate) async fn https_get_with_headers(
    tls: &Arc<ClientConfig>,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    let exchange = async {
        let tcp = connect(addr).await?;
        let stream = TlsConnector::from(Arc::clone(tls))
            .connect(ServerName::from(addr.ip()), tcp)
            .await
            .map_err(|e| format!("TLS handshake with {addr}: {}", causes(&e)))?;
        exchange(stream, addr, path, None, headers).await
    };
    bounded(addr, path, exchange).await
}

/// GET `path` once per token, in order, on one keep-alive TLS connection (a new one
/// after an error), each request bounded by `timeout`: each answer's status, 0 where
/// there was none.
pub(crate) async fn keep_alive_gets(
    tls: &Arc<ClientConfig>,
    addr: SocketAddr,
    server_name: &str,
    path: &str,
    tokens: &[String],
    timeout: Duration,
) -> Vec<u16> {
    let name = ServerName::try_from(server_name.to_owned()).expect("a server name");
    let mut statuses = Vec::with_capacity(tokens.len());
    let mut sender = None;
    for token in tokens {
        let attempt = async {
            if sender.is_none() {
                let tcp = connect(addr).await?;
                let stream = TlsConnector::from(Arc::clone(tls))
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS handshake with {addr}: {}", causes(&e)))?;
                let (s, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| format!("HTTP/1.1 handshake: {}", causes(&e)))?;
                tokio::spawn(connection);
                sender = Some(s);
            }
            let s = sender.as_mut().expect("a connection");
            let request = Request::get(path)
                .header(header::HOST, server_name)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Empty::<Bytes>::new())
                .map_err(|e| e.to_string())?;
            let response = s.send_request(request).await.map_err(|e| causes(&e))?;
            let status = response.status().as_u16();
            response
                .into_body()
                .collect()
                .await
                .map_err(|e| causes(&e))?;
            Ok::<u16, String>(status)
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(status)) => statuses.push(status),
            _ => {
                sender = None;
                statuses.push(0);
            }
        }
    }
    statuses
}

/// The certificate the server at `addr` presents to a new, full handshake (DER): no
/// session is resumed (a resumed session reports the certificate it began with).
pub(crate) async fn peer_certificate(
    tls: &Arc<ClientConfig>,
    addr: SocketAddr,
    server_name: ServerName<'static>,
) -> Result<Vec<u8>, String> {
    let mut config = ClientConfig::clone(tls);
    config.resumption = rustls::client::Resumption::disabled();
    let handshake = async {
        let tcp = connect(addr).await?;
        let stream = TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {addr}: {}", causes(&e)))?;
        let (_, connection) = stream.get_ref();
        connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|cert| cert.as_ref().to_vec())
            .ok_or_else(|| format!("{addr} presented no certificate"))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, handshake)
        .await
        .map_err(|_| format!("TLS handshake with {addr}: timed out after {REQUEST_TIMEOUT:?}"))?
}

/// GET `http://{addr}{path}` with `Authorization: Bearer {bearer}` if given.
pub(crate) async fn http_get_bearer(
    addr: SocketAddr,
    path: &str,
    bearer: Option<&str>,
) -> Result<Reply, String> {
    let exchange = async {
        let tcp = connect(addr).await?;
        exchange(tcp, addr, path, bearer, &[]).await
    };
    bounded(addr, path, exchange).await
}

/// GET `http://{addr}{path_and_query}`.
pub(crate) async fn http_get(addr: SocketAddr, path_and_query: &str) -> Result<Reply, String> {
    let exchange = async {
        let tcp = connect(addr).await?;
        exchange(tcp, addr, path_and_query, None, &[]).await
    };
    bounded(addr, path_and_query, exchange).await
}

async fn bounded(
    addr: SocketAddr,
    path: &str,
    exchange: impl std::future::Future<Output = Result<Reply, String>>,
) -> Result<Reply, String> {
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "GET {addr}{path}: no answer within {REQUEST_TIMEOUT:?}"
            ))
        })
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))
}

async fn exchange<S>(
    stream: S,
    addr: SocketAddr,
    path: &str,
    bearer: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<Reply, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP/1.1 handshake with {addr}: {}", causes(&e)))?;
    let connection = tokio::spawn(connection);
    let mut request = Request::get(path).header(header::HOST, addr.to_string());
    if let Some(token) = bearer {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("building GET {path}: {e}"))?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("GET {addr}{path}: {}", causes(&e)))?;
        let status = response.status();
        let version = response.version();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the body of GET {addr}{path}: {}", causes(&e)))?
            .to_bytes();
        Ok(Reply {
            status,
            version,
            headers,
            body,
        })
    }
    .await;
    connection.abort();
    result
}

/// An error and its sources, "outer: inner: innermost" (hyper's own message alone is
/// often just "connection error").
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

// === impl AcceptAnyServer ===
