//! Clients that trust the test CA: hyper's (ordinary requests over HTTP/1.1 or HTTP/2,
//! each response collected into a `Reply`), and a bare TLS stream for tests that write
//! their own bytes (`http1`, `http2`). Every wait is bounded, so a hung proxy fails a
//! test instead of hanging it.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::{client::TlsStream, TlsConnector};

use crate::Pki;

/// What `client` returns: hyper's pooling client over rustls.
pub type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// An HTTPS client trusting the test CA. `h2` chooses HTTP/2 (ALPN h2 only).
pub fn client(pki: &Pki, h2: bool) -> HttpsClient {
    client_with(pki, h2, None)
}

/// Like `client`, presenting a client certificate (cert PEM, key PEM).
pub fn client_with(pki: &Pki, h2: bool, identity: Option<&(String, String)>) -> HttpsClient {
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(pki.client_config_with(&[], identity))
        .https_only();
    // The builder sets ALPN: "h2" alone, or "http/1.1" alone.
    let connector = if h2 {
        builder.enable_http2().build()
    } else {
        builder.enable_http1().build()
    };
    Client::builder(TokioExecutor::new())
        .http2_only(h2)
        .build(connector)
}

/// A response, collected: the one response type of every suite (the integration tests'
/// hyper client here, the end-to-end suite's one-connection-per-request client).
#[derive(Debug)]
pub struct Reply {
    /// The response status (compares with a `u16`: `reply.status == 200`).
    pub status: StatusCode,
    /// The HTTP version it came over.
    pub version: http::Version,
    /// The response headers.
    pub headers: http::HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Reply {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The body as JSON, if it is.
    pub fn try_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// Whether the body is a Kubernetes `Status` with this code (and, if given, exactly
    /// this message).
    pub fn is_status(&self, code: u16, message: Option<&str>) -> bool {
        let Some(status) = self.try_json() else {
            return false;
        };
        status["kind"] == "Status"
            && status["apiVersion"] == "v1"
            && status["code"] == code
            && message.is_none_or(|m| status["message"] == m)
    }

    /// `Ok` if the status is `code`, else what came instead (for a bounded wait).
    pub fn status_is(&self, code: u16) -> Result<(), String> {
        if self.status == code {
            Ok(())
        } else {
            Err(self.describe())
        }
    }

    /// The header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// "HTTP 403: {body…}", for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "HTTP {}: {}",
            self.status.as_u16(),
            crate::snippet(&self.text(), 300)
        )
    }
}

/// GET `url` with an optional bearer token and extra headers.
pub async fn get(
    client: &HttpsClient,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> Reply {
    send(client, "GET", url, token, headers, Bytes::new()).await
}

/// `method` `url` with an optional bearer token, extra headers and a body; the
/// response collected. Panics if there is no response within 30 s.
pub async fn send(
    client: &HttpsClient,
    method: &str,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Reply {
    let mut request = Request::builder().method(method).uri(url);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = tokio::time::timeout(
        Duration::from_secs(30),
        client.request(request.body(Full::new(body)).unwrap()),
    )
    .await
    .expect("request timed out")
    .expect("request failed");
    let status = response.status();
    let version = response.version();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        version,
        headers,
        body,
    }
}

/// A TLS connection to `addr` trusting the test CA (server name localhost), offering
/// `alpn`; connect and handshake bounded by 5 s each.
pub async fn tls(pki: &Pki, addr: SocketAddr, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let connector = TlsConnector::from(Arc::new(pki.client_config(alpn)));
    let tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect failed");
    tcp.set_nodelay(true).unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .expect("TLS handshake timed out")
        .expect("TLS handshake failed")
}

/// Accepts any server certificate but still checks the handshake signatures: for
/// loopback clients of a proxy with a self-signed certificate (benches, the cluster
/// suite).
#[derive(Debug)]
pub struct AcceptAnyServer(Arc<rustls::crypto::CryptoProvider>);

impl Default for AcceptAnyServer {
    fn default() -> Self {
        Self(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
    }
}

impl rustls::client::danger::ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
