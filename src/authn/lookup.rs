//! The cluster's authentication settings, read as k8s.io/apiserver's delegating
//! authentication reads them: the ConfigMap `kube-system/extension-apiserver-authentication`,
//! which kube-apiserver publishes, holds its client CA (`client-ca-file`) and its
//! front-proxy configuration (`requestheader-client-ca-file`, `requestheader-allowed-names`,
//! `requestheader-username-headers`, `-uid-headers`, `-group-headers`,
//! `-extra-headers-prefix`, the lists as JSON arrays).
//!
//! Precedence is k8s.io/apiserver's (`DelegatingAuthenticationOptions.ApplyTo`): a flag
//! wins over the lookup wholesale, not key by key.
//! - `--client-ca-file` given: the cluster's client CA is not used (for a listener of
//!   `--listeners-file`: its own `clientCAFile`). Without it, the cluster's is.
//! - `--requestheader-client-ca-file` given: the whole front-proxy configuration is the
//!   flags' (with their defaults); otherwise the whole of it is the cluster's, and the
//!   other `--requestheader-*` flags do nothing (config warns).
//!
//! Failures are k8s.io/apiserver's too: an absent ConfigMap is no error (nothing is
//! trusted from it); any other failure to read it at startup (forbidden: the
//! `extension-apiserver-authentication-reader` Role is not bound; unreachable) is fatal
//! when the front-proxy configuration was to come from it, unless
//! `--authentication-tolerate-lookup-failure`; when only the client CA was, it is a
//! warning (its controller's `RunOnce` ignores errors).
//!
//! It is kept current by reading it again every [`REFRESH`] (k8s.io/apiserver watches it
//! and re-reads it every minute; a poll is one GET, costs the apiserver nothing to keep
//! open and is bounded by `--apiserver-timeout`). A failed read, a deleted ConfigMap or a
//! key gone bad leaves the last good values in force, as there.
//!
//! Whether it happens at all is decided in config (`Lookup`): kube-rbac-proxy v0.x never
//! looks anything up, so an invocation in its flags does not either (see
//! docs/front-proxy.md).

use std::{
    path::PathBuf,
    sync::{Arc, Weak},
    time::Duration,
};

use k8s_openapi::api::core::v1::ConfigMap;

use super::front_proxy::{FrontProxy, RequestHeaders};
use crate::{
    apiserver::Apiserver,
    metrics::Metrics,
    tls::{CaBundle, TlsError},
};

/// Where kube-apiserver publishes its authentication settings.
pub(crate) const NAMESPACE: &str = "kube-system";
pub(crate) const NAME: &str = "extension-apiserver-authentication";
/// How often the ConfigMap is read again.
pub(crate) const REFRESH: Duration = Duration::from_secs(30);

/// Front-proxy authentication and the cluster lookup, as configured.
#[derive(Debug, Clone, Default)]
pub struct FrontProxySettings {
    /// `--requestheader-client-ca-file` and the header flags: the whole front-proxy
    /// configuration. `None`: the lookup's, if there is one.
    pub flags: Option<RequestHeaderFlags>,
    pub lookup: Lookup,
}

/// `--requestheader-client-ca-file` and the header names it vouches for.
#[derive(Debug, Clone)]
pub struct RequestHeaderFlags {
    pub ca_file: PathBuf,
    pub headers: RequestHeaders,
}

/// Whether the cluster's settings are looked up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Lookup {
    /// Not looked up: kube-rbac-proxy v0.x's flags, or `--authentication-skip-lookup`.
    #[default]
    Off,
    /// Looked up; what a failed first read does.
    On(OnFailure),
}

/// What a failure to read the ConfigMap at startup does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Startup fails (k8s.io/apiserver's default).
    Fatal,
    /// `--authentication-tolerate-lookup-failure`: a warning; nothing is trusted from
    /// the cluster until a read succeeds.
    Tolerate,
}

/// Why the cluster lookup stopped startup.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(
        "reading configmap {NAMESPACE}/{NAME} for the front-proxy (requestheader) \
         configuration: {0} (bind the Role {NAMESPACE}/extension-apiserver-authentication-reader \
         to the proxy's service account, or pass --authentication-skip-lookup, or \
         --authentication-tolerate-lookup-failure to start without it)"
    )]
    Read(String),
}

/// What the flags and the lookup trust, shared by every listener.
#[derive(Debug, Default)]
pub(crate) struct ClusterTrust {
    /// The cluster's client CA, for listeners without a client CA of their own.
    pub(crate) client_ca: Option<Arc<CaBundle>>,
    /// Front-proxy authentication, from the flags or the cluster.
    pub(crate) front_proxy: Option<Arc<FrontProxy>>,
}

/// What is filled in from the ConfigMap.
struct Targets {
    client_ca: Option<Weak<CaBundle>>,
    front_proxy: Option<Weak<FrontProxy>>,
}

/// Loads `--requestheader-client-ca-file`, reads the ConfigMap once if the lookup is on,
/// and keeps what it read current.
pub(crate) async fn trust(
    settings: &FrontProxySettings,
    apiserver: Option<&Arc<Apiserver>>,
    metrics: &Arc<Metrics>,
) -> Result<ClusterTrust, LookupError> {
    let flags = match &settings.flags {
        Some(flags) => Some(FrontProxy::new(
            CaBundle::load("--requestheader-client-ca-file", &flags.ca_file, metrics)?,
            flags.headers.clone(),
        )),
        None => None,
    };
    let (Lookup::On(on_failure), Some(apiserver)) = (settings.lookup, apiserver) else {
        match (&flags, settings.lookup) {
            (_, Lookup::On(_)) => tracing::warn!(
                "no kubeconfig to look up configmap {NAMESPACE}/{NAME} with (standalone): \
                 nothing is trusted from the cluster"
            ),
            (Some(_), Lookup::Off) => tracing::info!(
                "front proxies: certificates of --requestheader-client-ca-file; cluster lookup: off"
            ),
            (None, Lookup::Off) => {}
        }
        return Ok(ClusterTrust {
            client_ca: None,
            front_proxy: flags,
        });
    };
    let client_ca = CaBundle::published();
    let from_cluster = flags.is_none();
    let front_proxy =
        flags.unwrap_or_else(|| FrontProxy::new(CaBundle::published(), RequestHeaders::default()));
    let targets = Targets {
        client_ca: Some(Arc::downgrade(&client_ca)),
        front_proxy: from_cluster.then(|| Arc::downgrade(&front_proxy)),
    };
    match apiserver.config_map(NAMESPACE, NAME).await {
        Ok(Some(map)) => targets.apply(&map),
        Ok(None) => tracing::warn!(
            "configmap {NAMESPACE}/{NAME} not found: nothing is trusted from the cluster until it appears"
        ),
        Err(error) if from_cluster && on_failure == OnFailure::Fatal => {
            return Err(LookupError::Read(error.to_string()));
        }
        Err(error) => tracing::warn!(
            %error,
            "could not read configmap {NAMESPACE}/{NAME}; continuing without the cluster's \
             authentication settings until a read succeeds (bind the Role \
             {NAMESPACE}/extension-apiserver-authentication-reader to the proxy's service account)"
        ),
    }
    tracing::info!("{}", summary(&client_ca, &front_proxy, from_cluster));
    spawn_refresh(Arc::clone(apiserver), targets);
    Ok(ClusterTrust {
        client_ca: Some(client_ca),
        front_proxy: Some(front_proxy),
    })
}

/// The startup line's words: what was looked up, and what is trusted.
fn summary(client_ca: &CaBundle, front_proxy: &FrontProxy, from_cluster: bool) -> String {
    let client = match client_ca.is_set() {
        true => "the cluster's client CA (for listeners without --client-ca-file)",
        false => "no cluster client CA",
    };
    let headers = front_proxy.headers();
    let proxies = match (from_cluster, front_proxy.ca().is_set()) {
        (false, _) => "front proxies: --requestheader-client-ca-file".to_owned(),
        (true, true) => format!(
            "front proxies: the cluster's requestheader CA, CNs {}, user headers {}",
            match headers.allowed_names.is_empty() {
                true => "any".to_owned(),
                false => headers.allowed_names.join(","),
            },
            headers.username.join(",")
        ),
        (true, false) => "no front proxies".to_owned(),
    };
    format!("cluster lookup: configmap {NAMESPACE}/{NAME}, refreshed every {}s; trusted: {client}; {proxies}", REFRESH.as_secs())
}

/// Reads the ConfigMap every [`REFRESH`] while anything it fills is in use.
fn spawn_refresh(apiserver: Arc<Apiserver>, targets: Targets) {
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            tokio::time::sleep(REFRESH).await;
            if !targets.alive() {
                return;
            }
            match apiserver.config_map(NAMESPACE, NAME).await {
                Ok(Some(map)) => {
                    if failing {
                        tracing::info!("configmap {NAMESPACE}/{NAME} read again");
                    }
                    failing = false;
                    targets.apply(&map);
                }
                Ok(None) if !failing => {
                    failing = true;
                    tracing::warn!(
                        "configmap {NAMESPACE}/{NAME} is gone; keeping what it said last"
                    );
                }
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "could not read configmap {NAMESPACE}/{NAME}; keeping what it said last");
                }
                _ => {}
            }
        }
    });
}

// === impl Targets ===

impl Targets {
    fn alive(&self) -> bool {
        let client = self
            .client_ca
            .as_ref()
            .is_some_and(|w| w.strong_count() > 0);
        let proxy = self
            .front_proxy
            .as_ref()
            .is_some_and(|w| w.strong_count() > 0);
        client || proxy
    }

    /// Puts what `map` says in force; a key that is missing or bad leaves the last good
    /// value (and is logged).
    fn apply(&self, map: &ConfigMap) {
        let data = map.data.clone().unwrap_or_default();
        let what = |key: &str| format!("configmap {NAMESPACE}/{NAME} key {key}");
        if let Some(client_ca) = self.client_ca.as_ref().and_then(Weak::upgrade) {
            publish(
                &client_ca,
                &what("client-ca-file"),
                data.get("client-ca-file"),
            );
        }
        let Some(front_proxy) = self.front_proxy.as_ref().and_then(Weak::upgrade) else {
            return;
        };
        let key = "requestheader-client-ca-file";
        publish(front_proxy.ca(), &what(key), data.get(key));
        match request_headers(&data) {
            Ok(headers) => {
                if *front_proxy.headers() != headers.clone().normalized() {
                    tracing::info!(
                        usernames = ?headers.username,
                        allowed_names = ?headers.allowed_names,
                        "front-proxy headers from configmap {NAMESPACE}/{NAME}"
                    );
                    front_proxy.set_headers(headers);
                }
            }
            Err(error) => tracing::warn!("{error}; keeping the front-proxy headers in force"),
        }
    }
}

fn publish(bundle: &CaBundle, what: &str, pem: Option<&String>) {
    match pem.filter(|pem| !pem.is_empty()) {
        Some(pem) => {
            if let Err(error) = bundle.publish(what, pem.as_bytes()) {
                tracing::warn!("{error}; keeping the bundle in force");
            }
        }
        None if bundle.is_set() => tracing::warn!("{what} is empty; keeping the bundle in force"),
        None => {}
    }
}

/// The front-proxy header settings the ConfigMap holds (JSON arrays; a missing key is
/// an empty list, as k8s.io/apiserver reads it).
pub(crate) fn request_headers(
    data: &std::collections::BTreeMap<String, String>,
) -> Result<RequestHeaders, String> {
    let list = |key: &str| -> Result<Vec<String>, String> {
        match data.get(key).map(String::as_str) {
            None | Some("") => Ok(Vec::new()),
            Some(json) => serde_json::from_str(json).map_err(|e| {
                format!("configmap {NAMESPACE}/{NAME} key {key}: not a JSON list of strings: {e}")
            }),
        }
    };
    Ok(RequestHeaders {
        username: list("requestheader-username-headers")?,
        uid: list("requestheader-uid-headers")?,
        group: list("requestheader-group-headers")?,
        extra_prefixes: list("requestheader-extra-headers-prefix")?,
        allowed_names: list("requestheader-allowed-names")?,
    })
}
