//! What scrape-guard guards: the real node-exporter 1.5, and a recording upstream for
//! the checks that must prove what did (or did not) reach the exporter, which
//! node-exporter cannot tell (it keeps no request log).

use std::{
    convert::Infallible,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, task::JoinHandle};

use super::{
    free_port, http as client,
    process::{Process, Tail},
    Tool,
};

// === NodeExporter ===

/// node-exporter on a free 127.0.0.1 port, with a few cheap collectors.
pub(crate) struct NodeExporter {
    process: Option<Process>,
    port: u16,
    log: PathBuf,
}

impl NodeExporter {
    pub(crate) async fn start(dir: &Path) -> Self {
        let mut exporter = Self {
            process: None,
            port: free_port(),
            log: dir.join("node-exporter.log"),
        };
        exporter.restart().await;
        exporter
    }

    /// `http://127.0.0.1:<port>/`, for `--upstream`.
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Stops it (by PID, bounded).
    pub(crate) fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }

    /// Starts it (again) on the same port and waits until it serves /metrics.
    pub(crate) async fn restart(&mut self) {
        self.stop();
        let mut command = Command::new(Tool::NodeExporter.path());
        command.arg(format!("--web.listen-address=127.0.0.1:{}", self.port));
        command.args([
            "--collector.disable-defaults",
            "--collector.cpu",
            "--collector.meminfo",
            "--collector.loadavg",
            "--collector.stat",
            "--collector.uname",
        ]);
        let mut process = Process::spawn("node-exporter", command, &self.log, Tail::Lines(15));
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        process
            .await_ready(
                Duration::from_secs(20),
                "node-exporter /metrics",
                || async move { client::http_get(addr, "/metrics").await?.status_is(200) },
            )
            .await;
        self.process = Some(process);
    }
}

// === RecordingUpstream ===

/// What the recording upstream saw of one request.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) path: String,
    /// Header names, lower case, sorted.
    pub(crate) headers: Vec<String>,
}

impl Seen {
    pub(crate) fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|h| h.eq_ignore_ascii_case(name))
    }
}

/// A tiny exporter on a free 127.0.0.1 port, in this process, that records every
/// request it receives before answering with one gauge.
pub(crate) struct RecordingUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl RecordingUpstream {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("binding the recording upstream");
        let addr = listener.local_addr().expect("its address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(serve(listener, Arc::clone(&seen)));
        Self { addr, seen, task }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Every request received so far.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for RecordingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, seen: Arc<Mutex<Vec<Seen>>>) {
    while let Ok((tcp, _)) = listener.accept().await {
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let seen = Arc::clone(&seen);
                async move { Ok::<_, Infallible>(record(&seen, request)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn record(seen: &Mutex<Vec<Seen>>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let mut headers: Vec<String> = request
        .headers()
        .keys()
        .map(|name| name.as_str().to_ascii_lowercase())
        .collect();
    headers.sort();
    seen.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Seen {
            path: request.uri().path().to_owned(),
            headers,
        });
    let body =
        "# HELP e2e_upstream_up Always 1.\n# TYPE e2e_upstream_up gauge\ne2e_upstream_up 1\n";
    Response::builder()
        .header("content-type", "text/plain; version=0.0.4")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("a static response")
}
