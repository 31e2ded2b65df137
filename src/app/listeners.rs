//! The listeners: the one the flags define and those of `--listeners-file`, each
//! loaded, built and bound the same way, with what they share (the apiserver client,
//! its rate limit, the review caches, the metrics registry) handed in.
//!
//! A listener of the file has a name: its series carry it as the `listener` label (its
//! own view of the metrics) and everything it logs — at startup, on each request and
//! when one of its files is reloaded — runs in a `listener` span that carries it. The
//! flags' listener has no name while it is the only one, so a process without
//! `--listeners-file` logs and counts exactly as before; beside a file it is "default".

use std::{net::SocketAddr, sync::Arc};

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::{bind, Chain, Logs, RunError};
use crate::{
    config::{in_listener_keys, ListenerConfig, Origin},
    guard::{Guard, Target},
    metrics::Metrics,
    routes::Routes,
    server::{self, HttpSettings},
    tls::{self, Alpn, CaBundle, ClientCa, ServingCert},
    upstream::Upstream,
};

/// A listener's settings, and where it records: its view of the metrics (labelled
/// with its name, if it has one) and the span its logs run in.
pub(super) struct Scoped {
    pub(super) config: ListenerConfig,
    pub(super) metrics: Arc<Metrics>,
    pub(super) span: tracing::Span,
}

/// A listener's TLS files, loaded (and kept fresh from then on).
pub(super) struct TlsFiles {
    pub(super) cert: Arc<ServingCert>,
    /// Its own client CA (`--client-ca-file`, `clientCAFile`).
    pub(super) own_ca: Option<Arc<CaBundle>>,
    /// The client certificates it accepts: its own CA or the cluster's, and the
    /// requestheader CA (`Chain::client_ca`, once the chain is built).
    pub(super) client_ca: Option<Arc<ClientCa>>,
}

/// A listener with everything that can fail loaded: certificates, policy, upstream
/// client; not yet bound.
pub(super) struct Loaded {
    pub(super) scoped: Scoped,
    pub(super) tls: TlsFiles,
    pub(super) acceptor: TlsAcceptor,
    pub(super) guard: Arc<Guard>,
}

/// A listener bound to its socket, ready to serve.
pub(super) struct Bound {
    pub(super) loaded: Loaded,
    pub(super) socket: TcpListener,
    pub(super) addr: SocketAddr,
}

impl Scoped {
    pub(super) fn new(config: ListenerConfig, metrics: &Arc<Metrics>) -> Self {
        let (metrics, span) = match &config.name {
            // An error-level span, so that it is kept whatever SCRAPE_GUARD_LOG says.
            Some(name) => (
                metrics.for_listener(name),
                tracing::error_span!("listener", listener = %name),
            ),
            None => (Arc::clone(metrics), tracing::Span::none()),
        };
        Self {
            config,
            metrics,
            span,
        }
    }

    /// `error` as this listener's: for one of the file, with the file, line and name
    /// and in its keys; the flags' listener's errors name the flags already.
    fn error(&self, error: RunError) -> RunError {
        match &self.config.origin {
            Origin::File { path, line } => {
                let file = path.display().to_string();
                let message = error.to_string();
                // Its authorization block's errors name the file again.
                let own = format!("--listeners-file {file}: ");
                let message = message.strip_prefix(&own).unwrap_or(&message);
                RunError::Listener {
                    message: in_listener_keys(message),
                    file,
                    line: *line,
                    name: self.config.name.clone().unwrap_or_default(),
                }
            }
            Origin::Flags => error,
        }
    }

    /// Loads the serving pair and the client CA.
    pub(super) fn load_tls(&self) -> Result<TlsFiles, RunError> {
        let tls = &self.config.tls;
        self.span
            .in_scope(|| {
                let cert = ServingCert::load(tls, &self.metrics)?;
                let own_ca = tls
                    .client_ca_file
                    .as_deref()
                    .map(|path| CaBundle::load("--client-ca-file", path, &self.metrics))
                    .transpose()?;
                Ok(TlsFiles {
                    cert,
                    own_ca,
                    client_ca: None,
                })
            })
            .map_err(|error| self.error(error))
    }

    /// The pipeline, on the chain's shared caches, each listener seeing them through
    /// its own metrics, with its own local policy (loaded now); and its TLS acceptor.
    pub(super) fn load(
        self,
        mut tls: TlsFiles,
        chain: &Chain,
        logs: &Logs<'_>,
        alpn: Alpn,
    ) -> Result<Loaded, RunError> {
        let guard = self
            .span
            .in_scope(|| -> Result<Guard, RunError> {
                let metrics = &self.metrics;
                metrics.serving();
                Ok(Guard {
                    metrics: Arc::clone(metrics),
                    access_log: logs.access,
                    audit: logs
                        .audit
                        .for_listener(self.config.name.as_deref(), &self.config.upstream.url),
                    paths: self.config.paths.clone(),
                    authn: chain.authn.with_metrics(Arc::clone(metrics)),
                    routes: self.routes(chain)?,
                })
            })
            .map_err(|error| self.error(error))?;
        tls.client_ca = chain.client_ca(tls.own_ca.clone());
        let acceptor = tls::acceptor(
            &tls.cert,
            &self.config.tls.policy,
            alpn,
            tls.client_ca.as_ref(),
        )?;
        Ok(Loaded {
            scoped: self,
            tls,
            acceptor,
            guard: Arc::new(guard),
        })
    }
}

impl Scoped {
    /// Its routes: `upstreams:`, or its one upstream for every path; each with its own
    /// authorizer (`Chain::authorizer`, as every listener's) and upstream client.
    fn routes(&self, chain: &Chain) -> Result<Routes<Target>, RunError> {
        let metrics = &self.metrics;
        let target = |policy, upstream, whose: &str| -> Result<Target, RunError> {
            let authz = chain.authorizer(policy, Arc::clone(metrics))?;
            if authz.denies_everything() {
                tracing::warn!(
                    "{whose}: standalone mode without an RBAC file or static rules: every \
                     authenticated request will be denied"
                );
            }
            let upstream = Upstream::new(upstream, metrics)?;
            Ok(Target { authz, upstream })
        };
        let config = &self.config;
        let livez = config.livez.clone();
        if config.routes.is_empty() {
            let whose = match config.origin {
                Origin::File { .. } => "its authorization and rbacFile",
                Origin::Flags => "--config-file and --rbac-file",
            };
            let only = target(&config.policy, &config.upstream, whose)?;
            return Ok(Routes::single(only, livez));
        }
        let mut routes = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            let whose = format!("the route of upstreams: for {}", route.pattern);
            let routed = target(&route.policy, &route.upstream, &whose)?;
            routes.push((route.pattern.clone(), routed));
        }
        Ok(Routes::mux(routes, livez))
    }
}

impl Loaded {
    /// Its socket.
    pub(super) async fn bind(self) -> Result<Bound, RunError> {
        match bind("--secure-listen-address", &self.scoped.config.listen).await {
            Ok((socket, addr)) => Ok(Bound {
                loaded: self,
                socket,
                addr,
            }),
            Err(error) => Err(self.scoped.error(error)),
        }
    }
}

impl Bound {
    /// Its name and address, if it has a name.
    pub(super) fn named(&self) -> Option<(String, SocketAddr)> {
        let name = self.loaded.scoped.config.name.clone();
        name.map(|name| (name, self.addr))
    }

    /// Serves until `stopped`, then drains for up to `grace`.
    pub(super) fn serve(
        self,
        http: HttpSettings,
        stopped: impl std::future::Future<Output = ()> + Send + 'static,
        grace: std::time::Duration,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        use tracing::Instrument;
        let Bound {
            loaded,
            socket,
            addr: _,
        } = self;
        let Loaded {
            scoped,
            tls,
            acceptor,
            guard,
        } = loaded;
        server::serve(
            server::Listener {
                socket,
                acceptor,
                client_ca: tls.client_ca,
                settings: http,
            },
            guard,
            scoped.metrics,
            stopped,
            grace,
        )
        .instrument(scoped.span)
    }
}
