//! The wiring: a validated `Config` becomes a running proxy.
//!
//! Everything that starts the process happens here, in the order it must: certificates
//! and policy files are loaded before anything binds (a bad file is a startup error,
//! not a listener that fails every handshake), then the apiserver client, each
//! listener's pipeline and socket (`listeners.rs`: the flags' and `--listeners-file`'s,
//! on one apiserver client and one set of caches), the probe port, the startup line
//! (`startup.rs`), and on a signal the drain. `chain` builds the
//! authentication and authorization stages; `scrape-guard can-i` calls the same
//! function, so the doctor can never answer differently from the proxy.

mod listeners;
mod startup;

use std::{net::SocketAddr, sync::Arc};

use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tracing::Instrument;

use self::listeners::{Built, Plan};
use crate::{
    admin::Admin,
    apiserver::{Apiserver, ClientError},
    auth_endpoint::AuthEndpoint,
    authn::{Authenticator, AuthnError},
    authz::Authorizer,
    config::{listeners_unchanged, AuthSettings, Config, ListenAddress},
    metrics::Metrics,
    reload::Watched,
    server::{self, HttpSettings, Listener},
    tls::{self, Alpn, TlsError},
    upstream::UpstreamError,
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
    /// A listener of `--listeners-file` could not start; the message names its key.
    #[error("--listeners-file {file} line {line}: listener {name}: {message}")]
    Listener {
        file: String,
        line: u64,
        name: String,
        message: String,
    },
    #[error("no listener to serve: give --upstream, or --listeners-file with listeners")]
    NoListener,
}

/// A started proxy: its bound addresses and a handle to stop it.
pub struct Running {
    /// Where the proxy listens (useful with port 0).
    pub addr: SocketAddr,
    /// Where /healthz, /readyz and own /metrics listen, if enabled.
    pub admin_addr: Option<SocketAddr>,
    /// Where the auth endpoint listens, if enabled.
    pub auth_endpoint_addr: Option<SocketAddr>,
    /// Every listener with a name (with `--listeners-file`), in the order served: the
    /// flags' "default" first, if any, then the file's. `addr` is the first one's.
    pub listeners: Vec<(String, SocketAddr)>,
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
        .map_err(|e| RunError::Policy(e.to_string()))?;
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
    let plans = listeners::plans(&config, &metrics);
    // Every listener's certificates before anything else: a bad file is reported first.
    let tls = plans
        .iter()
        .map(Plan::load_tls)
        .collect::<Result<Vec<_>, _>>()?;
    // Beside --listeners-file the flags' policy files are the "default" listener's, loaded
    // as every listener's are (`Plan::build`); the chain holds what is shared.
    let shared = config.listeners_file.as_ref().map(|_| {
        let mut auth = config.auth.clone();
        auth.authz.config_file = None;
        auth.authz.rbac_files.clear();
        auth
    });
    let Chain {
        apiserver,
        authn,
        authz,
    } = chain(shared.as_ref().unwrap_or(&config.auth), &metrics).await?;
    if let Some(apiserver) = &apiserver {
        apiserver.spawn_probe();
    }
    let mut built = Vec::with_capacity(plans.len());
    for (plan, tls) in plans.into_iter().zip(tls) {
        built.push(plan.build(tls, &authn, &authz, config.access_log).await?);
    }
    // What --listeners-file says besides the authorization blocks is read once; a change
    // to it is reported (and flagged in the reload metrics) until the next start.
    let layout = match &config.listeners_file {
        Some(file) => {
            let shape = file.shape.clone();
            let layout = Watched::load(
                "--listeners-file",
                vec![file.path.clone()],
                move |files| listeners_unchanged(files, &shape),
                &metrics,
            )
            .map_err(|e| RunError::Policy(format!("--listeners-file {e}")))?;
            layout.spawn_reloader();
            Some(layout)
        }
        None => None,
    };
    // The probe port and the auth endpoint serve as the first listener does.
    let Some(primary) = built.first() else {
        return Err(RunError::NoListener);
    };
    let (addr, primary_guard) = (primary.addr, Arc::clone(&primary.guard));
    let primary_tls = (Arc::clone(&primary.tls.cert), primary.tls.client_ca.clone());
    let admin_listener = match config.proxy_endpoints_port {
        Some(port) => {
            let address = ListenAddress {
                host: primary.plan.listen.host.clone(),
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
    let mut servers: Vec<futures_util::future::BoxFuture<'static, ()>> = Vec::new();
    let mut certs = Vec::with_capacity(built.len());
    let mut serving = Vec::with_capacity(built.len());
    for listener in built {
        let Built {
            plan,
            tls,
            guard,
            socket,
            addr,
        } = listener;
        let acceptor = tls::acceptor(&tls.cert, &plan.tls.policy, alpn, tls.client_ca.as_ref())?;
        let proxy = server::serve(
            Listener {
                socket,
                acceptor,
                client_ca: tls.client_ca,
                settings: config.http,
            },
            guard,
            Arc::clone(&plan.metrics),
            stopped.clone(),
            grace,
        );
        servers.push(Box::pin(proxy.instrument(plan.span.clone())));
        certs.push((plan.name.clone(), tls.cert));
        serving.push(startup::Serving { plan, addr });
    }
    let (cert, client_ca) = primary_tls;
    if let Some((socket, _)) = admin_listener {
        let handler = Arc::new(Admin {
            certs,
            apiserver: apiserver.clone(),
            authz: primary_guard.authz.with_metrics(metrics.unlabelled()),
            authn,
            metrics: Arc::clone(&metrics),
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
            guard: primary_guard,
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
        // Watched until the listeners stop.
        drop(layout);
    });
    startup::log(&config, &serving, admin_addr, apiserver.is_some());
    Ok(Running {
        addr,
        admin_addr,
        auth_endpoint_addr,
        listeners: serving
            .iter()
            .filter_map(|s| s.plan.name.clone().map(|name| (name, s.addr)))
            .collect(),
        stop,
        task,
    })
}

/// The probe port's limits. The kubelet opens a new connection for every probe, sends
/// one request at once and gives up after a second or so: short timeouts, a small share
/// per peer, and at capacity the connection that has done least for us closed to make
/// room (as on every port), keep clients that connect and go silent, or ask for
/// `/healthz` over and over, from starving it (a failing liveness probe restarts the
/// container); measured in `benches/RESULTS.md` (connection slots).
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
