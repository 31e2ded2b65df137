//! A plain-HTTP exporter on 127.0.0.1 that records every request it receives (method,
//! target, headers). Tests check what reached the exporter on this record, not only on
//! the status code the client saw: a 403 that still forwarded the request is a failure.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::net::TcpListener;

/// What the echo exporter saw for one request.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request method.
    pub method: String,
    /// The request target, as received (path and query).
    pub uri: String,
    /// The request headers, as received.
    pub headers: http::HeaderMap,
}

/// A plain-HTTP exporter. `/metrics` answers a small page; `/big?bytes=N` streams N
/// bytes; `/slow?ms=N` waits first; `/gzip` answers pre-compressed bytes; `/echo` answers
/// the request body. Every request is recorded.
pub struct Echo {
    /// Where it listens (127.0.0.1, a free port).
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

/// The page `/metrics` (and every path not listed on `Echo`) answers.
pub const METRICS_PAGE: &str = "# HELP up test\n# TYPE up gauge\nup 1\n";

type EchoBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

impl Echo {
    /// Listens on 127.0.0.1:0 (HTTP/1.1 and h2c).
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let recorded = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let recorded = Arc::clone(&recorded);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let recorded = Arc::clone(&recorded);
                        async move { Ok::<_, Infallible>(Echo::answer(req, &recorded).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Self { addr, seen, task }
    }

    /// Its base URL, for `--upstream`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Every request received so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Stops accepting (open connections stay): the exporter is down.
    pub fn stop(&self) {
        self.task.abort();
    }

    async fn answer(req: Request<Incoming>, recorded: &Mutex<Vec<Seen>>) -> Response<EchoBody> {
        recorded.lock().unwrap().push(Seen {
            method: req.method().to_string(),
            uri: req.uri().to_string(),
            headers: req.headers().clone(),
        });
        let query: HashMap<String, String> = req
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let number = |key: &str| query.get(key).and_then(|v| v.parse::<u64>().ok());
        match req.uri().path() {
            "/big" => {
                let total = number("bytes").unwrap_or(0);
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                let chunks = (0..total.div_ceil(chunk.len() as u64)).map(move |i| {
                    let len = (total - i * chunk.len() as u64).min(chunk.len() as u64);
                    Ok::<_, Infallible>(Frame::data(chunk.slice(..len as usize)))
                });
                let body = StreamBody::new(futures_util::stream::iter(chunks));
                Response::new(BodyExt::boxed(body))
            }
            "/slow" => {
                tokio::time::sleep(Duration::from_millis(number("ms").unwrap_or(0))).await;
                Response::new(full(METRICS_PAGE))
            }
            "/gzip" => Response::builder()
                .header("content-encoding", "gzip")
                .header("content-type", "text/plain")
                .body(full(&b"\x1f\x8b\x08\x00fake-gzip-bytes"[..]))
                .unwrap(),
            "/echo" => {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                Response::new(BodyExt::boxed(Full::new(body)))
            }
            _ => Response::builder()
                .header("content-type", "text/plain; version=0.0.4")
                .body(full(METRICS_PAGE))
                .unwrap(),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn full(bytes: impl Into<Bytes>) -> EchoBody {
    BodyExt::boxed(Full::new(bytes.into()))
}
