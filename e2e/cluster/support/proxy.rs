//! scrape-guard itself: the binary cargo built for this test target, one instance per
//! test with the flags that test is about, in a clean environment (no stray
//! SCRAPE_GUARD_*, KUBECONFIG or KUBERNETES_* variables), logging to the test's dir.
//!
//! Dropping the guard stops it by PID and then reads its whole log for every token the
//! suite has seen: tokens are secrets, and this holds for every instance of every test,
//! not only for the test that is about it.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    thread,
    time::Duration,
};

use rustls::ClientConfig;

use super::{
    free_port,
    http::{self, Trust},
    process::{Process, Tail},
    scrape_guard_bin, secrets_in, Cluster, KeyCert, Reply,
};

/// How scrape-guard is to be started; [`Launch::start`] starts it.
pub(crate) struct Launch {
    name: String,
    dir: PathBuf,
    port: u16,
    args: Vec<String>,
    env: Vec<(String, String)>,
    endpoints_port: Option<u16>,
}

pub(crate) struct ScrapeGuard {
    process: Process,
    addr: SocketAddr,
    endpoints: Option<SocketAddr>,
    tls: Arc<ClientConfig>,
}

impl ScrapeGuard {
    /// The usual flags: `--secure-listen-address=127.0.0.1:<free port>`,
    /// `--upstream=<upstream>` and `--kubeconfig=<scrape-guard's own>`.
    pub(crate) fn launch(cluster: &Cluster, name: &str, upstream: &str) -> Launch {
        let port = free_port();
        let args = vec![
            format!("--secure-listen-address=127.0.0.1:{port}"),
            format!("--upstream={upstream}"),
            format!("--kubeconfig={}", cluster.proxy_kubeconfig().display()),
        ];
        Launch::new(cluster, name, port, args)
    }

    /// Exactly `args`, nothing added; `port` is where they make it listen.
    pub(crate) fn exact(cluster: &Cluster, name: &str, port: u16, args: Vec<String>) -> Launch {
        Launch::new(cluster, name, port, args)
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// GET over TLS (server certificate not checked, as `curl -k`), with a bearer token
    /// if given. Panics if no HTTP answer comes back.
    pub(crate) async fn get(&self, path: &str, bearer: Option<&str>) -> Reply {
        self.try_get(path, bearer)
            .await
            .unwrap_or_else(|e| panic!("scrape-guard '{}': {e}", self.process.name()))
    }

    pub(crate) async fn try_get(&self, path: &str, bearer: Option<&str>) -> Result<Reply, String> {
        http::https_get(&self.tls, self.addr, path, bearer).await
    }

    /// GET presenting a client certificate instead of a token.
    pub(crate) async fn get_with_cert(&self, path: &str, cert: &KeyCert) -> Result<Reply, String> {
        let tls = http::tls_config(Trust::Anyone, Some(cert));
        http::https_get(&tls, self.addr, path, None).await
    }

    /// The `--proxy-endpoints-port` listener's address (own /metrics), if started
    /// `with_endpoints_port()`.
    pub(crate) fn endpoints_addr(&self) -> Option<SocketAddr> {
        self.endpoints
    }

    /// GET on the `--proxy-endpoints-port` listener (/healthz, /readyz, /metrics).
    pub(crate) async fn endpoints_get(
        &self,
        path: &str,
        bearer: Option<&str>,
    ) -> Result<Reply, String> {
        let addr = self
            .endpoints
            .expect("started without with_endpoints_port()");
        http::https_get(&self.tls, addr, path, bearer).await
    }

    /// Stops it (SIGTERM, bounded), so that its log is complete.
    pub(crate) fn stop(&mut self) {
        self.process.stop();
    }

    /// The whole log so far.
    pub(crate) fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// Stops it, then names every remembered secret its log contains.
    pub(crate) fn secrets_logged(&mut self) -> Vec<String> {
        self.stop();
        secrets_in(&self.log_text())
    }
}

impl Drop for ScrapeGuard {
    fn drop(&mut self) {
        let leaked = self.secrets_logged();
        if !leaked.is_empty() && !thread::panicking() {
            panic!(
                "scrape-guard '{}' logged secrets: {leaked:?} (log: {})",
                self.process.name(),
                self.process.log_path().unwrap_or(Path::new("-")).display()
            );
        }
    }
}

// === impl Launch ===

impl Launch {
    fn new(cluster: &Cluster, name: &str, port: u16, args: Vec<String>) -> Self {
        Self {
            name: name.to_owned(),
            dir: cluster.dir().to_owned(),
            port,
            args,
            env: Vec::new(),
            endpoints_port: None,
        }
    }

    pub(crate) fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub(crate) fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.push((name.to_owned(), value.into()));
        self
    }

    /// Adds `--proxy-endpoints-port=<free port>` (/healthz, /readyz, own /metrics).
    pub(crate) fn with_endpoints_port(mut self) -> Self {
        let port = free_port();
        self.args.push(format!("--proxy-endpoints-port={port}"));
        self.endpoints_port = Some(port);
        self
    }

    /// Starts it and waits (bounded) until its TLS listener answers with some HTTP
    /// status.
    pub(crate) async fn start(self) -> ScrapeGuard {
        let mut command = Command::new(scrape_guard_bin());
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.dir)
            .env("RUST_BACKTRACE", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(&self.args);
        let log = self.dir.join(format!("sg-{}.log", self.name));
        let name = format!("scrape-guard '{}'", self.name);
        let mut process = Process::spawn(&name, command, &log, Tail::Lines(25));
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let tls = http::tls_config(Trust::Anyone, None);
        let what = format!("{name} listening on {addr}");
        let probe_tls = &tls;
        process
            .await_ready(Duration::from_secs(20), &what, || async move {
                http::https_get(probe_tls, addr, "/metrics", None)
                    .await
                    .map(drop)
            })
            .await;
        ScrapeGuard {
            process,
            addr,
            endpoints: self
                .endpoints_port
                .map(|port| SocketAddr::from(([127, 0, 0, 1], port))),
            tls,
        }
    }
}
