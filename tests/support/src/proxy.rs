//! scrape-guard itself, started in-process through the library from the same
//! command-line flags a user would pass: the flag parsing and validation are part of
//! what is tested, and a test reads like the manifest it stands for. On 127.0.0.1:0,
//! with the test serving certificate.

use std::net::SocketAddr;

use crate::{FakeApiserver, Pki};

/// scrape-guard, started in-process from command-line flags.
pub struct Proxy {
    /// The running proxy; `None` once shut down.
    pub running: Option<scrape_guard::Running>,
    /// The TLS listener's address.
    pub addr: SocketAddr,
    /// The probe listener's address, if there is one.
    pub admin_addr: Option<SocketAddr>,
    pub auth_endpoint_addr: Option<SocketAddr>,
    /// Every listener with a name (`--listeners-file`), in the order served.
    pub listeners: Vec<(String, SocketAddr)>,
}

impl Proxy {
    /// Starts scrape-guard on 127.0.0.1:0 with the test certificate, the fake
    /// apiserver's kubeconfig, `upstream`, and any extra flags.
    pub async fn start(pki: &Pki, api: &FakeApiserver, upstream: &str, extra: &[&str]) -> Self {
        let kubeconfig = format!("--kubeconfig={}", api.kubeconfig.display());
        let mut args = vec![kubeconfig.as_str()];
        args.extend_from_slice(extra);
        Self::start_with(pki, upstream, &args).await
    }

    /// Starts scrape-guard with no apiserver unless `extra` names one. The review rate
    /// limit is off (`--kube-api-qps=-1`) unless `extra` sets `--kube-api-qps` itself.
    pub async fn start_with(pki: &Pki, upstream: &str, extra: &[&str]) -> Self {
        let mut argv = vec![
            "scrape-guard".to_owned(),
            "--secure-listen-address=127.0.0.1:0".into(),
            format!("--tls-cert-file={}", pki.cert_path.display()),
            format!("--tls-private-key-file={}", pki.key_path.display()),
            format!("--upstream={upstream}"),
        ];
        if !extra.iter().any(|arg| arg.starts_with("--kube-api-qps")) {
            argv.push("--kube-api-qps=-1".into());
        }
        argv.extend(extra.iter().map(|s| s.to_string()));
        Self::start_argv(argv).await
    }

    /// Starts scrape-guard with the fake apiserver's kubeconfig and the listeners of
    /// `listeners_file` only (no `--upstream`), plus `extra` flags. The review rate
    /// limit is off unless `extra` sets `--kube-api-qps`.
    pub async fn start_listeners(
        api: &FakeApiserver,
        listeners_file: &std::path::Path,
        extra: &[&str],
    ) -> Self {
        let mut argv = vec![
            "scrape-guard".to_owned(),
            format!("--kubeconfig={}", api.kubeconfig.display()),
            format!("--listeners-file={}", listeners_file.display()),
        ];
        if !extra.iter().any(|arg| arg.starts_with("--kube-api-qps")) {
            argv.push("--kube-api-qps=-1".into());
        }
        argv.extend(extra.iter().map(|s| s.to_string()));
        Self::start_argv(argv).await
    }

    async fn start_argv(argv: Vec<String>) -> Self {
        let args = <scrape_guard::Args as clap::Parser>::try_parse_from(argv).unwrap();
        let config = scrape_guard::Config::try_from(args).unwrap();
        let running = scrape_guard::start(config).await.unwrap();
        Self {
            addr: running.addr,
            admin_addr: running.admin_addr,
            auth_endpoint_addr: running.auth_endpoint_addr,
            listeners: running.listeners.clone(),
            running: Some(running),
        }
    }

    /// `https://localhost:<port><path>` of the listener called `name`.
    pub fn listener_url(&self, name: &str, path: &str) -> String {
        let (_, addr) = self
            .listeners
            .iter()
            .find(|(listener, _)| listener == name)
            .unwrap_or_else(|| panic!("no listener {name} in {:?}", self.listeners));
        format!("https://localhost:{}{path}", addr.port())
    }

    /// `https://localhost:<port><path>` (the name the serving certificate holds).
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// Stops accepting, lets in-flight requests finish (up to `--shutdown-grace`), and
    /// returns when done, as on SIGTERM.
    pub async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}
