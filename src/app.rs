//! The wiring: a validated `Config` becomes a running proxy, in three steps (as
//! kubert's `ServerArgs::bind` then `Bound::spawn`):
//!
//! 1. [`load`]: everything that can fail before a socket is bound — every listener's
//!    certificates (first, so a bad file is reported before anything else), the
//!    apiserver client, every listener's policy and upstream client, the probe port's
//!    and auth endpoint's TLS. A bad file is a startup error, not a listener that fails
//!    every handshake.
//! 2. [`Ready::bind`]: every socket.
//! 3. [`Bound::spawn`]: the startup line (`startup.rs`), then serving until a signal,
//!    and the drain.
//!
//! `listeners.rs` is where a listener is loaded and bound: the flags' and
//! `--listeners-file`'s alike, on one [`Chain`]. `chain` builds what they share;
//! `scrape-guard can-i` calls the same function and `Chain::authorizer` for the flags'
//! listener's policy, so the doctor can never answer differently from the proxy.

mod listeners;
mod startup;

use std::{future::Future, net::SocketAddr, sync::Arc};

use futures_util::future::{BoxFuture, FutureExt as _};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tokio_rustls::TlsAcceptor;

use self::listeners::{Loaded, Scoped};
use crate::{
    admin::Admin,
    apiserver::{Apiserver, ClientError},
    audit::{Audit, AuditSettings, Destination},
    auth_endpoint::AuthEndpoint,
    authn::{
        lookup::{self, ClusterTrust, LookupError},
        Authenticator, AuthnError,
    },
    authz::{Authorizer, PolicySettings},
    config::{listeners_unchanged, AuthSettings, Config, ListenAddress},
    metrics::Metrics,
    reload::Watched,
    server::{self, Handler, HttpSettings},
    tls::{self, Alpn, CaBundle, ClientCa, TlsError},
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
    /// The cluster lookup (`--authentication-skip-lookup`), or `--requestheader-client-ca-file`.
    #[error(transparent)]
    Lookup(#[from] LookupError),
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
    /// `--audit-log-path` could not be opened, or its writer not started.
    #[error("--audit-log-path {path}: {message}")]
    Audit { path: String, message: String },
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

/// What every listener shares: the apiserver, the authenticator, the SubjectAccessReview
/// cache (`authz`, with no local policy: each listener has its own, `authorizer`).
/// `apiserver` is `None` in standalone mode.
pub(crate) struct Chain {
    pub(crate) apiserver: Option<Arc<Apiserver>>,
    pub(crate) authn: Authenticator,
    authz: Authorizer,
    /// The cluster's client CA and front-proxy authentication (flags or lookup).
    trust: ClusterTrust,
}

/// Builds the shared chain from its settings: the proxy's and `can-i`'s only way to do it.
pub(crate) async fn chain(
    settings: &AuthSettings,
    metrics: &Arc<Metrics>,
) -> Result<Chain, RunError> {
    let apiserver = Apiserver::connect(&settings.apiserver, Arc::clone(metrics))
        .await?
        .map(Arc::new);
    let trust = lookup::trust(&settings.front_proxy, apiserver.as_ref(), metrics).await?;
    let authn = Authenticator::new(&settings.authn, apiserver.clone(), Arc::clone(metrics))?
        .with_front_proxy(trust.front_proxy.clone());
    let authz = Authorizer::new(&settings.authz, apiserver.clone(), Arc::clone(metrics));
    Ok(Chain {
        apiserver,
        authn,
        authz,
        trust,
    })
}

impl Chain {
    /// The client certificates a listener accepts: its own client CA (else the
    /// cluster's, when looked up) and the requestheader CA.
    pub(crate) fn client_ca(&self, own: Option<Arc<CaBundle>>) -> Option<Arc<ClientCa>> {
        let front_proxy = self.trust.front_proxy.as_ref().map(|f| Arc::clone(f.ca()));
        ClientCa::new(own.or_else(|| self.trust.client_ca.clone()), front_proxy)
    }

    /// A listener's authorizer: its local policy (loaded now, then kept fresh) on the
    /// shared reviews, recording in `metrics`. Every listener's, and `can-i`'s.
    pub(crate) fn authorizer(
        &self,
        policy: &PolicySettings,
        metrics: Arc<Metrics>,
    ) -> Result<Authorizer, RunError> {
        self.authz
            .for_listener(policy, metrics)
            .map_err(|e| RunError::Policy(e.to_string()))
    }
}

/// Loads certificates and policy, builds the clients, binds the listeners and starts
/// serving: `load`, `Ready::bind`, `Bound::spawn`.
pub async fn start(config: Config) -> Result<Running, RunError> {
    let ready = load(config).await?;
    let bound = ready.bind().await?;
    Ok(bound.spawn())
}

/// What every step hands on: the settings, the metrics registry, the apiserver client
/// (`None` standalone) and the `--listeners-file` watch (kept until the listeners stop).
struct Shared {
    config: Config,
    metrics: Arc<Metrics>,
    apiserver: Option<Arc<Apiserver>>,
    layout: Option<Arc<Watched<()>>>,
    /// Written out after the drain.
    audit: Audit,
}

/// Everything that can fail before a socket is bound has: files read, certificates
/// parsed, policies loaded, the apiserver client made.
struct Ready {
    shared: Shared,
    listeners: Vec<Loaded>,
    admin: Option<Port<Admin>>,
    auth_endpoint: Option<Port<AuthEndpoint>>,
}

/// Every socket bound; nothing is served yet.
struct Bound {
    shared: Shared,
    /// The first listener's address.
    addr: SocketAddr,
    listeners: Vec<listeners::Bound>,
    admin: Option<BoundPort<Admin>>,
    auth_endpoint: Option<BoundPort<AuthEndpoint>>,
}

/// The probe port or the auth endpoint: a handler and its TLS, to be bound at `address`.
struct Port<H> {
    flag: &'static str,
    address: ListenAddress,
    acceptor: TlsAcceptor,
    client_ca: Option<Arc<ClientCa>>,
    settings: HttpSettings,
    handler: Arc<H>,
}

/// A [`Port`] bound.
struct BoundPort<H> {
    port: Port<H>,
    socket: TcpListener,
    addr: SocketAddr,
}

/// Step one: loads every listener's certificates (first: a bad file is reported before
/// anything else), connects the chain, loads every listener's policy and upstream
/// client, and builds the probe port's and the auth endpoint's handlers.
async fn load(config: Config) -> Result<Ready, RunError> {
    let metrics = Arc::new(Metrics::new());
    let scoped: Vec<Scoped> = config
        .listeners
        .iter()
        .map(|listener| Scoped::new(listener.clone(), &metrics))
        .collect();
    let tls = scoped
        .iter()
        .map(Scoped::load_tls)
        .collect::<Result<Vec<_>, _>>()?;
    let audit = start_audit(&config.audit, &metrics)?;
    let chain = chain(&config.auth, &metrics).await?;
    if let Some(apiserver) = &chain.apiserver {
        apiserver.spawn_probe();
    }
    let alpn = match config.http.http2 {
        true => Alpn::Http2AndHttp11,
        false => Alpn::Http11,
    };
    let logs = Logs {
        access: config.access_log,
        audit: &audit,
    };
    let mut listeners = Vec::with_capacity(scoped.len());
    for (scoped, tls) in scoped.into_iter().zip(tls) {
        listeners.push(scoped.load(tls, &chain, &logs, alpn)?);
    }
    let layout = watch_layout(&config, &metrics)?;
    // The probe port and the auth endpoint serve as the first listener does.
    let Some(primary) = listeners.first() else {
        return Err(RunError::NoListener);
    };
    let auth_endpoint = match &config.auth_endpoint {
        Some((address, settings)) => {
            let handler = AuthEndpoint {
                guard: Arc::clone(&primary.guard),
                settings: settings.clone(),
            };
            let http = (alpn, config.http);
            let flag = "--auth-endpoint-address";
            Some(Port::new(flag, address.clone(), primary, http, handler)?)
        }
        None => None,
    };
    let apiserver = chain.apiserver.clone();
    let admin = match config.proxy_endpoints_port {
        Some(port) => Some(admin(
            port,
            primary,
            &listeners,
            chain,
            &metrics,
            &config.http,
        )?),
        None => None,
    };
    let shared = Shared {
        config,
        metrics,
        apiserver,
        layout,
        audit,
    };
    Ok(Ready {
        shared,
        listeners,
        admin,
        auth_endpoint,
    })
}

/// The request logs every listener writes: `--access-log`, and the audit log.
struct Logs<'a> {
    access: bool,
    audit: &'a Audit,
}

/// The audit log's destination opened and its writer started (or the log that is off).
fn start_audit(settings: &AuditSettings, metrics: &Metrics) -> Result<Audit, RunError> {
    Audit::start(settings, metrics.audit_events_dropped()).map_err(|error| RunError::Audit {
        path: match &settings.destination {
            Destination::Stdout => "-".into(),
            Destination::File(path) => path.display().to_string(),
        },
        message: error.to_string(),
    })
}

/// The probe port, on the first listener's host: its `/metrics` is authenticated and
/// authorized as that listener's scrapes are, counted unlabelled.
fn admin(
    port: u16,
    primary: &Loaded,
    listeners: &[Loaded],
    chain: Chain,
    metrics: &Arc<Metrics>,
    http: &HttpSettings,
) -> Result<Port<Admin>, RunError> {
    let address = ListenAddress {
        host: primary.scoped.config.listen.host.clone(),
        port,
    };
    let handler = Admin {
        certs: listeners
            .iter()
            .map(|l| (l.scoped.config.name.clone(), Arc::clone(&l.tls.cert)))
            .collect(),
        apiserver: chain.apiserver,
        authz: primary
            .guard
            .metrics_authorizer()
            .with_metrics(metrics.unlabelled()),
        authn: chain.authn,
        metrics: Arc::clone(metrics),
    };
    let http = (Alpn::Http11, admin_http(http));
    Port::new("--proxy-endpoints-port", address, primary, http, handler)
}

/// What `--listeners-file` says besides the authorization blocks is read once; a change
/// to it is reported (and flagged in the reload metrics) until the next start.
fn watch_layout(
    config: &Config,
    metrics: &Arc<Metrics>,
) -> Result<Option<Arc<Watched<()>>>, RunError> {
    let Some(file) = &config.listeners_file else {
        return Ok(None);
    };
    let shape = file.shape.clone();
    let layout = Watched::load(
        "--listeners-file",
        vec![file.path.clone()],
        move |files| listeners_unchanged(files, &shape),
        metrics,
    )
    .map_err(|e| RunError::Policy(format!("--listeners-file {e}")))?;
    layout.spawn_reloader();
    Ok(Some(layout))
}

impl Ready {
    /// Step two: binds every socket: the listeners', the probe port's, the auth
    /// endpoint's.
    async fn bind(self) -> Result<Bound, RunError> {
        let Ready {
            shared,
            listeners: loaded,
            admin,
            auth_endpoint,
        } = self;
        let mut listeners = Vec::with_capacity(loaded.len());
        for listener in loaded {
            listeners.push(listener.bind().await?);
        }
        let admin = match admin {
            Some(port) => Some(port.bind().await?),
            None => None,
        };
        let auth_endpoint = match auth_endpoint {
            Some(port) => Some(port.bind().await?),
            None => None,
        };
        let addr = listeners.first().ok_or(RunError::NoListener)?.addr;
        Ok(Bound {
            shared,
            addr,
            listeners,
            admin,
            auth_endpoint,
        })
    }
}

impl<H: Handler> Port<H> {
    /// A port served as `primary` is (its certificate, client CA and TLS policy), with
    /// its own ALPN and HTTP limits.
    fn new(
        flag: &'static str,
        address: ListenAddress,
        primary: &Loaded,
        (alpn, settings): (Alpn, HttpSettings),
        handler: H,
    ) -> Result<Self, RunError> {
        let tls = &primary.tls;
        let policy = &primary.scoped.config.tls.policy;
        Ok(Self {
            flag,
            address,
            acceptor: tls::acceptor(&tls.cert, policy, alpn, tls.client_ca.as_ref())?,
            client_ca: tls.client_ca.clone(),
            settings,
            handler: Arc::new(handler),
        })
    }

    async fn bind(self) -> Result<BoundPort<H>, RunError> {
        let (socket, addr) = bind(self.flag, &self.address).await?;
        Ok(BoundPort {
            port: self,
            socket,
            addr,
        })
    }
}

impl<H: Handler> BoundPort<H> {
    /// Serves until `stopped`, then drains for up to `grace`.
    fn serve(
        self,
        metrics: Arc<Metrics>,
        stopped: impl Future<Output = ()> + Send + 'static,
        grace: std::time::Duration,
    ) -> BoxFuture<'static, ()> {
        let BoundPort { port, socket, .. } = self;
        let listener = server::Listener {
            socket,
            acceptor: port.acceptor,
            client_ca: port.client_ca,
            settings: port.settings,
        };
        server::serve(listener, port.handler, metrics, stopped, grace).boxed()
    }
}

impl Bound {
    /// Step three: logs the startup line and serves every socket until stopped.
    fn spawn(self) -> Running {
        let Bound {
            shared,
            addr,
            listeners,
            admin,
            auth_endpoint,
        } = self;
        let Shared {
            config,
            metrics,
            apiserver,
            layout,
            audit,
        } = shared;
        let admin_addr = admin.as_ref().map(|port| port.addr);
        startup::log(&config, &listeners, admin_addr, apiserver.is_some());
        let auth_endpoint_addr = auth_endpoint.as_ref().map(|port| port.addr);
        let named = listeners
            .iter()
            .filter_map(listeners::Bound::named)
            .collect();
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = async {
            let _ = stopped.await;
        }
        .shared();
        let grace = config.shutdown_grace;
        let mut servers: Vec<BoxFuture<'static, ()>> = listeners
            .into_iter()
            .map(|l| l.serve(config.http, stopped.clone(), grace).boxed())
            .collect();
        if let Some(port) = admin {
            servers.push(port.serve(Arc::clone(&metrics), stopped.clone(), grace));
        }
        if let Some(port) = auth_endpoint {
            servers.push(port.serve(metrics, stopped, grace));
        }
        let task = tokio::spawn(async move {
            futures_util::future::join_all(servers).await;
            // Watched until the listeners stop.
            drop(layout);
            // What the last requests queued, written before the process ends.
            let _ = tokio::task::spawn_blocking(move || audit.close(grace)).await;
        });
        Running {
            addr,
            admin_addr,
            auth_endpoint_addr,
            listeners: named,
            stop,
            task,
        }
    }
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
/// (IPv6 dual-stack where available), a name is resolved. Returns the socket and the
/// address it is bound to.
async fn bind(
    flag: &'static str,
    address: &ListenAddress,
) -> Result<(TcpListener, SocketAddr), RunError> {
    let error = |address: String, message: String| RunError::Bind {
        flag,
        address,
        message,
    };
    let socket = bind_socket(address)
        .await
        .map_err(|message| error(address.to_string(), message))?;
    let addr = socket
        .local_addr()
        .map_err(|e| error("?".into(), e.to_string()))?;
    Ok((socket, addr))
}

async fn bind_socket(address: &ListenAddress) -> Result<TcpListener, String> {
    if address.host.is_empty() {
        if let Ok(listener) = TcpListener::bind(("::", address.port)).await {
            return Ok(listener);
        }
        return TcpListener::bind(("0.0.0.0", address.port))
            .await
            .map_err(|e| e.to_string());
    }
    let host = address.host.split('%').next().unwrap_or_default();
    let mut candidates = tokio::net::lookup_host((host, address.port))
        .await
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?;
    let first = candidates
        .next()
        .ok_or_else(|| format!("{host:?} resolves to no address"))?;
    TcpListener::bind(first).await.map_err(|e| e.to_string())
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
