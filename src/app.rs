//! The wiring: a validated `Config` becomes a running proxy.
//!
//! Everything that starts the process happens here, in the order it must: certificates
//! and policy files are loaded before anything binds (a bad file is a startup error,
//! not a listener that fails every handshake), then the apiserver client, the pipeline,
//! the listeners, the startup line, and on a signal the drain. `chain` builds the
//! authentication and authorization stages; `scrape-guard can-i` calls the same
//! function, so the doctor can never answer differently from the proxy.

use std::{net::SocketAddr, sync::Arc};

use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use crate::{
    admin::Admin,
    apiserver::{Apiserver, ClientError, RateLimit},
    auth_endpoint::AuthEndpoint,
    authn::{Authenticator, AuthnError},
    authz::Authorizer,
    config::{AuthSettings, Config, ListenAddress},
    guard::Guard,
    metrics::Metrics,
    server::{self, HttpSettings, Listener},
    tls::{self, Alpn, ClientCa, ServingCert, TlsError, TlsSource},
    upstream::{Upstream, UpstreamError},
};

/// Why scrape-guard could not start. Each names the flag, file or address at fault.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Apiserver(#[from] ClientError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Authn(#[from] AuthnError),
    /// A policy file (`--config-file`, `--rbac-file`); the message names file and line.
    #[error("{0}")]
    Policy(String),
    #[error("{flag} {address}: {message}")]
    Bind {
        flag: &'static str,
        address: String,
        message: String,
    },
}

/// A started proxy: its bound addresses and a handle to stop it.
pub struct Running {
    /// Where the proxy listens (useful with port 0).
    pub addr: SocketAddr,
    /// Where /healthz, /readyz and own /metrics listen, if enabled.
    pub admin_addr: Option<SocketAddr>,
    /// Where the auth endpoint listens, if enabled.
    pub auth_endpoint_addr: Option<SocketAddr>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (up to the grace period), and
    /// returns when done.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Runs until SIGTERM or SIGINT, then drains and returns.
pub async fn run(config: Config) -> Result<(), RunError> {
    let running = start(config).await?;
    shutdown_signal().await;
    tracing::info!("shutting down: draining in-flight requests");
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// The authentication and authorization stages, and the apiserver they share (`None`
/// in standalone mode).
pub(crate) struct Chain {
    pub(crate) apiserver: Option<Arc<Apiserver>>,
    pub(crate) authn: Authenticator,
    pub(crate) authz: Authorizer,
}

/// Builds the chain from its settings: the proxy's and `can-i`'s only way to do it.
pub(crate) async fn chain(
    settings: &AuthSettings,
    metrics: &Arc<Metrics>,
) -> Result<Chain, RunError> {
    let apiserver = Apiserver::connect(&settings.apiserver, Arc::clone(metrics))
        .await?
        .map(Arc::new);
    let authn = Authenticator::new(&settings.authn, apiserver.clone(), Arc::clone(metrics))?;
    let authz = Authorizer::new(&settings.authz, apiserver.clone(), Arc::clone(metrics))
        .map_err(RunError::Policy)?;
    Ok(Chain {
        apiserver,
        authn,
        authz,
    })
}

/// Loads certificates and policy, builds the clients, binds the listeners and starts
/// serving.
pub async fn start(config: Config) -> Result<Running, RunError> {
    let metrics = Arc::new(Metrics::new());
    let cert = ServingCert::load(&config.tls.source, &metrics)?;
    let client_ca = config
        .tls
        .client_ca_file
        .as_deref()
        .map(|path| ClientCa::load(path, &metrics))
        .transpose()?;
    let Chain {
        apiserver,
        authn,
        authz,
    } = chain(&config.auth, &metrics).await?;
    if let Some(apiserver) = &apiserver {
        apiserver.spawn_probe();
    }
    let guard = Arc::new(Guard {
        metrics: Arc::clone(&metrics),
        access_log: config.access_log,
        paths: config.paths.clone(),
        authn,
        authz,
        upstream: Upstream::new(&config.upstream, &metrics)?,
    });

    let listener = bind("--secure-listen-address", &config.listen).await?;
    let addr = local_addr("--secure-listen-address", &listener)?;
    let admin_listener = match config.proxy_endpoints_port {
        Some(port) => {
            let address = ListenAddress {
                host: config.listen.host.clone(),
                port,
            };
            let listener = bind("--proxy-endpoints-port", &address).await?;
            let addr = local_addr("--proxy-endpoints-port", &listener)?;
            Some((listener, addr))
        }
        None => None,
    };
    let admin_addr = admin_listener.as_ref().map(|(_, addr)| *addr);
    let endpoint_listener = match &config.auth_endpoint {
        Some((address, settings)) => {
            let listener = bind("--auth-endpoint-address", address).await?;
            let addr = local_addr("--auth-endpoint-address", &listener)?;
            Some((listener, addr, settings.clone()))
        }
        None => None,
    };
    let auth_endpoint_addr = endpoint_listener.as_ref().map(|(_, addr, _)| *addr);

    let alpn = if config.http.http2 {
        Alpn::Http2AndHttp11
    } else {
        Alpn::Http11
    };
    let policy = &config.tls.policy;
    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = futures_util::FutureExt::shared(async {
        let _ = stopped.await;
    });
    let grace = config.shutdown_grace;
    let proxy = server::serve(
        Listener {
            socket: listener,
            acceptor: tls::acceptor(&cert, policy, alpn, client_ca.as_ref())?,
            client_ca: client_ca.clone(),
            settings: config.http,
        },
        Arc::clone(&guard),
        Arc::clone(&metrics),
        stopped.clone(),
        grace,
    );
    let mut servers: Vec<futures_util::future::BoxFuture<'static, ()>> = vec![Box::pin(proxy)];
    if let Some((socket, _)) = admin_listener {
        let handler = Arc::new(Admin {
            cert: Arc::clone(&cert),
            apiserver: apiserver.clone(),
            guard: Arc::clone(&guard),
        });
        let listener = Listener {
            socket,
            acceptor: tls::acceptor(&cert, policy, Alpn::Http11, client_ca.as_ref())?,
            client_ca: client_ca.clone(),
            settings: admin_http(&config.http),
        };
        let metrics = Arc::clone(&metrics);
        servers.push(Box::pin(server::serve(
            listener,
            handler,
            metrics,
            stopped.clone(),
            grace,
        )));
    }
    if let Some((socket, _, settings)) = endpoint_listener {
        let handler = Arc::new(AuthEndpoint {
            guard: Arc::clone(&guard),
            settings,
        });
        let listener = Listener {
            socket,
            acceptor: tls::acceptor(&cert, policy, alpn, client_ca.as_ref())?,
            client_ca,
            settings: config.http,
        };
        servers.push(Box::pin(server::serve(
            listener, handler, metrics, stopped, grace,
        )));
    }
    let task = tokio::spawn(async move {
        futures_util::future::join_all(servers).await;
    });
    log_startup(&config, addr, admin_addr, apiserver.is_some());
    Ok(Running {
        addr,
        admin_addr,
        auth_endpoint_addr,
        stop,
        task,
    })
}

/// The probe port's limits. The kubelet opens a new connection for every probe, sends
/// one request at once and gives up after a second or so: short timeouts and a small
/// share per peer keep clients that connect and go silent from starving it (a failing
/// liveness probe restarts the container).
fn admin_http(proxy: &HttpSettings) -> HttpSettings {
    let short = std::time::Duration::from_secs(2);
    HttpSettings {
        http2: false,
        max_concurrent_streams: 1,
        max_connections: 64,
        max_connections_per_peer: 16,
        handshake_timeout: proxy.handshake_timeout.min(short),
        header_read_timeout: proxy.header_read_timeout.min(short),
        idle_timeout: proxy.idle_timeout.min(std::time::Duration::from_secs(5)),
        ..*proxy
    }
}

/// Binds like Go's `net.Listen("tcp", addr)`: an empty host is every interface
/// (IPv6 dual-stack where available), a name is resolved.
async fn bind(flag: &'static str, address: &ListenAddress) -> Result<TcpListener, RunError> {
    let error = |message: String| RunError::Bind {
        flag,
        address: address.to_string(),
        message,
    };
    if address.host.is_empty() {
        if let Ok(listener) = TcpListener::bind(("::", address.port)).await {
            return Ok(listener);
        }
        return TcpListener::bind(("0.0.0.0", address.port))
            .await
            .map_err(|e| error(e.to_string()));
    }
    let host = address.host.split('%').next().unwrap_or_default();
    let mut candidates = tokio::net::lookup_host((host, address.port))
        .await
        .map_err(|e| error(format!("cannot resolve {host:?}: {e}")))?;
    let first = candidates
        .next()
        .ok_or_else(|| error(format!("{host:?} resolves to no address")))?;
    TcpListener::bind(first)
        .await
        .map_err(|e| error(e.to_string()))
}

fn local_addr(flag: &'static str, listener: &TcpListener) -> Result<SocketAddr, RunError> {
    listener.local_addr().map_err(|e| RunError::Bind {
        flag,
        address: "?".into(),
        message: e.to_string(),
    })
}

/// One line a person can read at a glance: where it listens, where it forwards, how it
/// decides, from which files, for how long answers are kept.
fn log_startup(config: &Config, addr: SocketAddr, admin_addr: Option<SocketAddr>, apiserver: bool) {
    let duration = |d| humantime::format_duration(d).to_string();
    let files = |files: &[&std::path::Path]| {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        if names.is_empty() {
            "-".to_owned()
        } else {
            names.join(",")
        }
    };
    let auth = &config.auth;
    let upstream = match &config.upstream.options.unix_socket {
        Some(socket) => format!("unix://{}", socket.display()),
        None => config.upstream.url.to_string(),
    };
    let tls = match &config.tls.source {
        TlsSource::Files { cert, .. } => cert.display().to_string(),
        TlsSource::SelfSigned => "self-signed (in memory)".into(),
    };
    let client_ca = files(
        &config
            .tls
            .client_ca_file
            .iter()
            .map(|p| p.as_path())
            .collect::<Vec<_>>(),
    );
    let mut policy: Vec<&std::path::Path> =
        auth.authz.config_file.iter().map(|p| p.as_path()).collect();
    policy.extend(auth.authz.rbac_files.iter().map(|p| p.as_path()));
    let token_file = files(
        &auth
            .authn
            .token_file
            .iter()
            .map(|p| p.as_path())
            .collect::<Vec<_>>(),
    );
    let kube_api = match auth.apiserver.rate_limit {
        RateLimit::Unlimited => "unlimited".to_owned(),
        RateLimit::TokenBucket { qps, burst } => format!("{qps} qps, burst {burst}"),
    };
    let (authn, authz) = (auth.authn.cache, auth.authz.cache);
    let caches = format!(
        "authn {}/{} (ok/rejected), authz {}/{} (allow/deny), {} entries, stale-if-error {}",
        duration(authn.positive),
        duration(authn.negative),
        duration(authz.positive),
        duration(authz.negative),
        authn.capacity,
        duration(authn.stale),
    );
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %addr,
        proxy_endpoints = %admin_addr.map_or("off".to_owned(), |a| a.to_string()),
        auth_endpoint = %config.auth_endpoint.as_ref().map_or("off".to_owned(), |(address, settings)| {
            format!("{address} ({:?})", settings.style)
        }),
        upstream,
        mode = if apiserver { "apiserver" } else { "standalone (offline)" },
        tls,
        curves = config.tls.policy.curves().names().collect::<Vec<_>>().join(","),
        client_ca,
        http2 = config.http.http2,
        paths = %config.paths,
        audiences = if auth.authn.audiences.is_empty() { "-".to_owned() } else { auth.authn.audiences.join(",") },
        policy = files(&policy),
        token_auth_file = token_file,
        caches,
        kube_api,
        apiserver_timeout = duration(auth.apiserver.timeout),
        upstream_timeout = duration(config.upstream.timeout),
        access_log = config.access_log,
        "scrape-guard serving"
    );
    let curves = config.tls.policy.curves();
    if !curves.unavailable().is_empty() {
        tracing::warn!(
            unavailable = curves.unavailable().join(","),
            using = curves.names().collect::<Vec<_>>().join(","),
            "--tls-curve-preferences names key exchanges this build does not implement; \
             they are not offered"
        );
    }
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    if matches!(config.tls.source, TlsSource::SelfSigned) {
        tracing::warn!(
            "no --tls-cert-file/--tls-private-key-file: serving a self-signed certificate \
             generated at startup; clients cannot verify it"
        );
    }
}

/// Resolves on SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
