//! What the checks stand on: the real processes (control plane, scrape-guard, exporters,
//! Prometheus), each behind a guard that stops it by PID when dropped, plus the small
//! helpers every check needs (free ports, an HTTPS client, bounded waits, the register
//! of secrets that must never show up in a log). Free ports, the test PKI, the crypto
//! provider and the bounded wait are the testkit's (`tests/support`), shared with the
//! integration tests, and so are the one child-process guard (`Process`) and the one
//! response type (`Reply`).

mod control_plane;
mod exporter;
mod http;
mod node;
mod prometheus;
mod proxy;

pub(crate) use control_plane::{
    deploy_files, file_name, parse_manifests, Cluster, Reviews, Subject, METRICS_READER,
};
pub(crate) use exporter::{NodeExporter, RecordingUpstream};
pub(crate) use http::{
    http_get_bearer, https_get_named, https_get_with_headers, keep_alive_gets, peer_certificate,
    tls_config, Trust,
};
pub(crate) use node::{
    container_ids, is_ready, pod_summary, restarts, NodeTest, ScrapeLoop, NAMESPACE, NODE_IP,
    NO_RBAC_SA,
};
pub(crate) use prometheus::{Job, Prometheus, ScrapeTls};
pub(crate) use proxy::ScrapeGuard;
// The fixtures every suite shares, from the testkit.
pub(crate) use scrape_guard_testkit::{
    eventually::awaiting as eventually,
    free_port, install_crypto, pki,
    pki::{write as write_file, Ca, KeyCert},
    process, run_to_end, snippet, Process, Reply, Tail,
};

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, OnceLock, PoisonError},
};

/// The service account scrape-guard talks to the apiserver as (bound by deploy/).
pub(crate) const PROXY_SA: (&str, &str) = ("scrape-guard", "scrape-guard");
/// The scraper account deploy/rbac-scraper.yaml creates and lets in (the
/// ServiceMonitors hand Prometheus its token).
pub(crate) const PROMETHEUS_SA: (&str, &str) = ("scrape-guard", "scraper");
/// A service account with no binding at all.
pub(crate) const UNBOUND_SA: (&str, &str) = ("e2e", "unbound-scraper");

/// The user name the apiserver gives a service account.
pub(crate) fn sa_user((namespace, name): (&str, &str)) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The body scrape-guard must send when `user` may not `get /metrics`: the apiserver's
/// own wording.
pub(crate) fn forbidden_message(user: &str) -> String {
    format!("forbidden: User \"{user}\" cannot get path \"/metrics\"")
}

/// The scrape-guard binary the checks run: `$SCRAPE_GUARD_BIN` if set, else the
/// workspace's own, built once per run with `cargo build --bin scrape-guard`. This suite
/// is a package of its own, so Cargo sets no `CARGO_BIN_EXE_scrape-guard` for it and
/// builds no binary of another package; Cargo holds no lock while tests run, so a test
/// may build. An up-to-date binary costs that build under a second.
pub(crate) fn scrape_guard_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("SCRAPE_GUARD_BIN") {
            return bin.into();
        }
        // This test binary is <target dir>/<profile>/deps/cluster-<hash>.
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary lives in <target dir>/<profile>/deps");
        let mut cargo = Command::new(env!("CARGO"));
        cargo.current_dir(repo_path("")).args([
            "build",
            "--locked",
            "--offline",
            "--quiet",
            "--bin",
            "scrape-guard",
        ]);
        if profile_dir.ends_with("release") {
            cargo.arg("--release");
        }
        if let Some(target_dir) = profile_dir.parent() {
            cargo.env("CARGO_TARGET_DIR", target_dir);
        }
        let status = cargo.status().expect("running cargo build");
        assert!(status.success(), "cargo build --bin scrape-guard: {status}");
        profile_dir.join("scrape-guard")
    })
}

/// The repository root (deploy/ and e2e/fixtures/ are read from there).
pub(crate) fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ is inside the repository")
        .join(relative)
}

// === secrets ===

static SECRETS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// Remembers a token (with a label to name it by): no scrape-guard log may contain it.
pub(crate) fn remember_secret(label: impl Into<String>, secret: &str) {
    SECRETS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((label.into(), secret.to_owned()));
}

/// The labels of every remembered secret that occurs in `text` (never the secrets).
pub(crate) fn secrets_in(text: &str) -> Vec<String> {
    SECRETS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|(_, secret)| text.contains(secret.as_str()))
        .map(|(label, _)| label.clone())
        .collect()
}

/// How many secrets are remembered so far.
pub(crate) fn secret_count() -> usize {
    SECRETS.lock().unwrap_or_else(PoisonError::into_inner).len()
}

/// A random token-like string (hex), for the admin token and bogus bearer tokens.
pub(crate) fn random_hex(bytes: usize) -> String {
    use aws_lc_rs::rand::SecureRandom;
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut buf)
        .expect("the system RNG");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether to keep every temp dir even when all went well (`E2E_KEEP=1`).
pub(crate) fn keep_everything() -> bool {
    std::env::var_os("E2E_KEEP").is_some_and(|v| v == "1")
}

// === tools ===

/// The real programs the suite runs. provision.sh puts kube-apiserver and kubectl in
/// `$E2E_CACHE/bin` (default /var/cache/scrape-guard-e2e); the rest come from apt. Each
/// can be overridden by an environment variable of the same name in capitals.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Tool {
    KubeApiserver,
    KubeControllerManager,
    KubeScheduler,
    Kubelet,
    Kubectl,
    Kustomize,
    Etcd,
    Prometheus,
    NodeExporter,
}

impl Tool {
    pub(crate) fn path(self) -> PathBuf {
        let cache = || {
            std::env::var_os("E2E_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/var/cache/scrape-guard-e2e"))
                .join("bin")
        };
        let (var, default) = match self {
            Self::KubeApiserver => ("KUBE_APISERVER", cache().join("kube-apiserver")),
            Self::KubeControllerManager => (
                "KUBE_CONTROLLER_MANAGER",
                cache().join("kube-controller-manager"),
            ),
            Self::KubeScheduler => ("KUBE_SCHEDULER", cache().join("kube-scheduler")),
            Self::Kubelet => ("KUBELET", cache().join("kubelet")),
            Self::Kubectl => ("KUBECTL", cache().join("kubectl")),
            Self::Kustomize => ("KUSTOMIZE", cache().join("kustomize")),
            Self::Etcd => ("ETCD", "etcd".into()),
            Self::Prometheus => ("PROMETHEUS", "prometheus".into()),
            Self::NodeExporter => ("NODE_EXPORTER", "prometheus-node-exporter".into()),
        };
        std::env::var_os(var).map(PathBuf::from).unwrap_or(default)
    }
}
