//! scrape-guard: a kube-rbac-proxy compatible auth proxy for Prometheus exporters.
//!
//! ```text
//! TCP accept ─► TLS (rustls, reloadable cert, ALPN h2/http1.1, handshake timeout)   server.rs, tls.rs
//!           ─► HTTP (hyper-util auto: h1 + h2, header-read timeout, stream limits)  server.rs
//!           ─► path policy   --allow-paths → 404 · --ignore-paths → forward         paths.rs
//!           ─► authenticate  Bearer → TokenReview                          [cache]  authn.rs
//!           ─► authorize     SubjectAccessReview on (verb, path)           [cache]  authz.rs
//!           ─► forward       strip credentials + hop-by-hop, stream to --upstream   upstream.rs
//! ```
//!
//! `guard.rs` is that pipeline as one function; `error.rs` is the one place a failure
//! becomes a status code. `run` wires the pieces from a validated `Config`.

pub mod admin;
pub mod apiserver;
pub mod authn;
pub mod authz;
pub mod body;
pub mod cache;
pub mod config;
pub mod doctor;
pub mod error;
pub mod guard;
pub mod identity;
pub mod metrics;
pub mod paths;
pub mod reload;
pub mod server;
pub mod tls;
pub mod upstream;

use std::{net::SocketAddr, sync::Arc};

use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use crate::{
    admin::Admin,
    apiserver::Apiserver,
    authn::Authenticator,
    authz::{Authorizer, LocalPolicy},
    config::{Config, ListenAddress},
    guard::Guard,
    metrics::Metrics,
    server::HttpSettings,
    tls::ServingCert,
    upstream::Upstream,
};

/// Why scrape-guard could not start. Each names the flag, file or address at fault.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Apiserver(#[from] apiserver::ClientError),
    #[error(transparent)]
    Upstream(#[from] upstream::UpstreamError),
    #[error("{flag} {address}: {message}")]
    Bind {
        flag: &'static str,
        address: String,
        message: String,
    },
    #[error("no randomness for the token cache key")]
    Random,
    #[error("{0}")]
    Policy(String),
}

/// A started proxy: its bound addresses and a handle to stop it.
pub struct Running {
    /// Where the proxy listens (useful with port 0).
    pub addr: SocketAddr,
    /// Where /healthz and /readyz listen, if enabled.
    pub admin_addr: Option<SocketAddr>,
    /// The pipeline, for inspection (cache sizes) in tests and benches.
    pub guard: Arc<Guard>,
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

/// Loads certificates, builds the clients, binds the listeners and starts serving.
pub async fn start(config: Config) -> Result<Running, RunError> {
    let metrics = Arc::new(Metrics::new());
    let expiry = Arc::clone(&metrics);
    let cert = ServingCert::load(&config.tls, move |t| expiry.certificate_expires(t))?;
    cert.spawn_reloader();
    let apiserver = Apiserver::connect(
        config.kubeconfig.as_deref(),
        config.token_auth_file.is_some(),
        config.rate_limit,
        config.apiserver_timeout,
    )
    .await?
    .map(|apiserver| {
        Arc::new(
            apiserver
                .with_max_inflight(config.max_inflight_reviews)
                .with_metrics(Arc::clone(&metrics)),
        )
    });
    if let Some(apiserver) = &apiserver {
        apiserver.spawn_probe();
    }
    let guard = Arc::new(build_guard(&config, apiserver.as_ref(), &metrics)?);

    let listener = bind("--secure-listen-address", &config.listen).await?;
    let addr = local_addr("--secure-listen-address", &listener)?;
    let admin_listener = match config.proxy_endpoints_port {
        Some(port) => {
            let address = ListenAddress {
                host: config.listen.host.clone(),
                port,
            };
            Some(bind("--proxy-endpoints-port", &address).await?)
        }
        None => None,
    };
    let admin_addr = match &admin_listener {
        Some(listener) => Some(local_addr("--proxy-endpoints-port", listener)?),
        None => None,
    };

    let settings = HttpSettings {
        http2: config.http2,
        max_concurrent_streams: config.http2_max_concurrent_streams,
        http2_max_size: config.http2_max_size,
        max_header_bytes: config.max_request_header_bytes,
        max_connections: config.max_connections,
        handshake_timeout: config.tls_handshake_timeout,
        header_read_timeout: config.header_read_timeout,
        idle_timeout: config.idle_timeout,
    };
    let client_ca = config
        .client_ca_file
        .as_deref()
        .map(tls::ClientCa::load)
        .transpose()?;
    let acceptor = tls::acceptor(
        &cert,
        &config.tls_policy,
        if config.http2 {
            tls::Alpn::Http2AndHttp11
        } else {
            tls::Alpn::Http11
        },
        client_ca.as_ref(),
    )?;
    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = futures_util::FutureExt::shared(async {
        let _ = stopped.await;
    });
    let grace = config.shutdown_grace;
    let proxy = server::serve(
        listener,
        acceptor.clone(),
        Arc::clone(&guard),
        settings,
        stopped.clone(),
        grace,
    );
    let admin = admin_listener.map(|listener| {
        let admin = Arc::new(Admin {
            cert: Arc::clone(&cert),
            apiserver: apiserver.clone(),
            guard: Arc::clone(&guard),
        });
        let admin_acceptor = tls::acceptor(
            &cert,
            &config.tls_policy,
            tls::Alpn::Http11,
            client_ca.as_ref(),
        );
        (listener, admin, admin_acceptor)
    });
    let admin = match admin {
        Some((listener, handler, acceptor)) => Some(server::serve(
            listener,
            acceptor?,
            handler,
            HttpSettings {
                http2: false,
                max_concurrent_streams: 1,
                max_connections: 64,
                ..settings
            },
            stopped,
            grace,
        )),
        None => None,
    };
    let task = tokio::spawn(async move {
        match admin {
            Some(admin) => {
                tokio::join!(proxy, admin);
            }
            None => proxy.await,
        }
    });
    log_startup(&config, addr, admin_addr, apiserver.is_some());
    Ok(Running {
        addr,
        admin_addr,
        guard,
        stop,
        task,
    })
}

/// The authentication chain (token file, then TokenReview) for a config.
pub fn build_authenticator(
    config: &Config,
    apiserver: Option<&Arc<Apiserver>>,
    metrics: &Arc<Metrics>,
) -> Result<Authenticator, RunError> {
    let ttls = config.ttls;
    let authn = Authenticator::new(
        apiserver.cloned(),
        config.audiences.clone(),
        config.cache_max_entries,
        ttls.authn_ok,
        ttls.authn_rejected,
    )
    .map_err(|_| RunError::Random)?
    .with_stale_window(config.stale_if_error)
    .with_metrics(Arc::clone(metrics));
    match &config.token_auth_file {
        Some(path) => authn.with_token_file(path).map_err(RunError::Policy),
        None => Ok(authn),
    }
}

/// The authorization chain (local policy, then SubjectAccessReview) for a config.
pub fn build_authorizer(
    config: &Config,
    apiserver: Option<&Arc<Apiserver>>,
    metrics: &Arc<Metrics>,
) -> Result<Authorizer, RunError> {
    let local = LocalPolicy::load(config.config_file.as_deref(), &config.rbac_files)
        .map_err(RunError::Policy)?;
    local.spawn_reloaders();
    if apiserver.is_none() && local.is_empty() {
        tracing::warn!(
            "standalone mode without --rbac-file or static rules in --config-file: \
             every authenticated request will be denied"
        );
    }
    Ok(Authorizer::new(
        apiserver.cloned(),
        local,
        config.cache_max_entries,
        config.ttls.authz_allow,
        config.ttls.authz_deny,
    )
    .with_stale_window(config.stale_if_error)
    .with_metrics(Arc::clone(metrics)))
}

fn build_guard(
    config: &Config,
    apiserver: Option<&Arc<Apiserver>>,
    metrics: &Arc<Metrics>,
) -> Result<Guard, RunError> {
    Ok(Guard {
        metrics: Arc::clone(metrics),
        access_log: config.access_log,
        paths: config.paths.clone(),
        authn: build_authenticator(config, apiserver, metrics)?,
        authz: build_authorizer(config, apiserver, metrics)?,
        upstream: Upstream::new(&upstream::UpstreamSettings {
            url: config.upstream.clone(),
            options: config.upstream_options.clone(),
            timeout: config.upstream_timeout,
            identity: config.identity_headers.clone(),
        })?,
    })
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

fn log_startup(config: &Config, addr: SocketAddr, admin_addr: Option<SocketAddr>, apiserver: bool) {
    let tls = match &config.tls {
        tls::TlsSource::Files { cert, .. } => cert.display().to_string(),
        tls::TlsSource::SelfSigned => "self-signed (in memory)".into(),
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %addr,
        proxy_endpoints = ?admin_addr,
        upstream = %config.upstream,
        upstream_options = ?config.upstream_options,
        tls,
        tls_policy = ?config.tls_policy,
        http2 = config.http2,
        paths = ?config.paths,
        audiences = ?config.audiences,
        ttls = ?config.ttls,
        cache_max_entries = config.cache_max_entries,
        rate_limit = ?config.rate_limit,
        apiserver_timeout = ?config.apiserver_timeout,
        upstream_timeout = ?config.upstream_timeout,
        stale_if_error = ?config.stale_if_error,
        max_inflight_reviews = config.max_inflight_reviews,
        access_log = config.access_log,
        identity_headers = config.identity_headers.enabled,
        config_file = ?config.config_file,
        rbac_files = ?config.rbac_files,
        token_auth_file = ?config.token_auth_file,
        mode = if apiserver { "apiserver" } else { "standalone (offline)" },
        "scrape-guard serving"
    );
    if matches!(config.tls, tls::TlsSource::SelfSigned) {
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
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
