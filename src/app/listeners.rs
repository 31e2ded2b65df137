//! The listeners: the one the flags define and those of `--listeners-file`, each
//! loaded, built and bound the same way, with what they share (the apiserver client,
//! its rate limit, the review caches, the metrics registry) handed in.
//!
//! A listener of the file has a name: its series carry it as the `listener` label (its
//! own view of the metrics) and everything it logs — at startup, on each request and
//! when one of its files is reloaded — runs in a `listener` span that carries it. The
//! flags' listener has no name while it is the only one, so a process without
//! `--listeners-file` logs and counts exactly as before; beside a file it is "default".

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use tokio::net::TcpListener;

use super::{bind, local_addr, RunError};
use crate::{
    authn::Authenticator,
    authz::{Authorizer, ConfigSource, PolicySettings},
    config::{in_listener_keys, Config, ListenAddress, FLAGS_LISTENER},
    guard::Guard,
    metrics::Metrics,
    paths::PathPolicy,
    tls::{ClientCa, ServingCert, TlsSettings},
    upstream::{Upstream, UpstreamSettings},
};

/// A listener to serve, from the flags or from `--listeners-file`.
pub(super) struct Plan {
    /// `None`: the flags' listener, the only one.
    pub(super) name: Option<String>,
    /// The file and line declaring it; `None` for the flags'.
    pub(super) declared: Option<(PathBuf, u64)>,
    pub(super) listen: ListenAddress,
    pub(super) tls: TlsSettings,
    pub(super) paths: PathPolicy,
    pub(super) upstream: UpstreamSettings,
    /// Its own local policy; `None` for the flags' only listener, whose policy the
    /// chain's authorizer holds.
    pub(super) policy: Option<PolicySettings>,
    /// Its view of the metrics: labelled with its name, if it has one.
    pub(super) metrics: Arc<Metrics>,
    /// What its logs run in: a `listener` span with its name, if it has one.
    pub(super) span: tracing::Span,
}

/// Every listener to serve, the flags' first.
pub(super) fn plans(config: &Config, metrics: &Arc<Metrics>) -> Vec<Plan> {
    let file = config.listeners_file.as_ref();
    let mut plans = Vec::new();
    if file.is_none_or(|file| file.flags_listener) {
        // Alone, its policy is the chain's; beside the file's listeners, its own.
        let policy = file.map(|_| PolicySettings {
            config: config
                .auth
                .authz
                .config_file
                .clone()
                .map(ConfigSource::File),
            rbac_files: config.auth.authz.rbac_files.clone(),
            condition: None,
        });
        plans.push(Plan::new(
            file.map(|_| FLAGS_LISTENER.to_owned()),
            None,
            config.listen.clone(),
            config.tls.clone(),
            config.paths.clone(),
            config.upstream.clone(),
            policy,
            metrics,
        ));
    }
    if let Some(file) = file {
        for listener in &file.listeners {
            plans.push(Plan::new(
                Some(listener.name.clone()),
                Some((file.path.clone(), listener.line)),
                listener.listen.clone(),
                listener.tls.clone(),
                listener.paths.clone(),
                listener.upstream.clone(),
                Some(listener.policy.clone()),
                metrics,
            ));
        }
    }
    plans
}

/// A listener's TLS files, loaded (and kept fresh from then on).
pub(super) struct Tls {
    pub(super) cert: Arc<ServingCert>,
    pub(super) client_ca: Option<Arc<ClientCa>>,
}

/// A listener built and bound, ready to serve.
pub(super) struct Built {
    pub(super) plan: Plan,
    pub(super) tls: Tls,
    pub(super) guard: Arc<Guard>,
    pub(super) socket: TcpListener,
    pub(super) addr: SocketAddr,
}

impl Plan {
    #[allow(clippy::too_many_arguments)] // one per part of a listener, each named here
    fn new(
        name: Option<String>,
        declared: Option<(PathBuf, u64)>,
        listen: ListenAddress,
        tls: TlsSettings,
        paths: PathPolicy,
        upstream: UpstreamSettings,
        policy: Option<PolicySettings>,
        metrics: &Arc<Metrics>,
    ) -> Self {
        let (metrics, span) = match &name {
            // An error-level span, so that it is kept whatever SCRAPE_GUARD_LOG says.
            Some(name) => (
                metrics.for_listener(name),
                tracing::error_span!("listener", listener = %name),
            ),
            None => (Arc::clone(metrics), tracing::Span::none()),
        };
        Self {
            name,
            declared,
            listen,
            tls,
            paths,
            upstream,
            policy,
            metrics,
            span,
        }
    }

    /// `error` as this listener's: for one of the file, with the file, line and name
    /// and in its keys; the flags' listener's errors name the flags already.
    fn error(&self, error: RunError) -> RunError {
        match (&self.declared, &self.name) {
            (Some((file, line)), Some(name)) => {
                let file = file.display().to_string();
                let message = error.to_string();
                // Its authorization block's errors name the file again.
                let own = format!("--listeners-file {file}: ");
                let message = message.strip_prefix(&own).unwrap_or(&message);
                RunError::Listener {
                    message: in_listener_keys(message),
                    file,
                    line: *line,
                    name: name.clone(),
                }
            }
            _ => error,
        }
    }

    /// Loads the serving pair and the client CA.
    pub(super) fn load_tls(&self) -> Result<Tls, RunError> {
        self.span
            .in_scope(|| {
                let cert = ServingCert::load(&self.tls.source, &self.metrics)?;
                let client_ca = self
                    .tls
                    .client_ca_file
                    .as_deref()
                    .map(|path| ClientCa::load(path, &self.metrics))
                    .transpose()?;
                Ok(Tls { cert, client_ca })
            })
            .map_err(|error| self.error(error))
    }

    /// The pipeline, on the shared caches: `authn` and `authz` are the chain's, each
    /// listener seeing them through its own metrics, with its own local policy (loaded
    /// now) where it has one; the flags' only listener takes the chain's. Then its
    /// socket.
    pub(super) async fn build(
        self,
        tls: Tls,
        authn: &Authenticator,
        authz: &Authorizer,
        access_log: bool,
    ) -> Result<Built, RunError> {
        let guard = self
            .span
            .in_scope(|| -> Result<Guard, RunError> {
                let authz = match &self.policy {
                    Some(policy) => authz
                        .for_listener(policy, Arc::clone(&self.metrics))
                        .map_err(|e| RunError::Policy(e.to_string()))?,
                    None => authz.with_metrics(Arc::clone(&self.metrics)),
                };
                if authz.denies_everything() {
                    tracing::warn!(
                        "{}: every authenticated request will be denied",
                        match self.declared {
                            Some(_) => "standalone mode without rbacFile or static rules in its authorization",
                            None => "standalone mode without --rbac-file or static rules in --config-file",
                        }
                    );
                }
                self.metrics.serving();
                Ok(Guard {
                    metrics: Arc::clone(&self.metrics),
                    access_log,
                    paths: self.paths.clone(),
                    authn: authn.with_metrics(Arc::clone(&self.metrics)),
                    authz,
                    upstream: Upstream::new(&self.upstream, &self.metrics)?,
                })
            })
            .map_err(|error| self.error(error))?;
        let socket = match bind("--secure-listen-address", &self.listen).await {
            Ok(socket) => socket,
            Err(error) => return Err(self.error(error)),
        };
        let addr = local_addr("--secure-listen-address", &socket).map_err(|e| self.error(e))?;
        Ok(Built {
            plan: self,
            tls,
            guard: Arc::new(guard),
            socket,
            addr,
        })
    }
}
