//! The node suite's cluster: one real node, inside the network namespace `e2e/netns.sh`
//! made. etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd
//! (with runc, the overlayfs snapshotter and only the `loopback` CNI plugin) and a
//! kubelet, all built or installed by `e2e/provision.sh`; the images `e2e/images.sh`
//! packed, imported with `ctr`; deploy/ applied with `kubectl apply -k` through the
//! overlay in `e2e/cluster/node/overlay`; and a real Prometheus scraping what deploy/'s
//! ServiceMonitors describe (`scraping.rs`: Debian's Prometheus has no kubernetes_sd).
//!
//! ## Network
//! Pods use the host network (there is no pod network), and "the host" is the
//! namespace: `lo` carries 127.0.0.1 and [`NODE_IP`], and there is no route out. The
//! kubelet refuses a loopback node IP, hence the second address. The apiserver listens
//! on [`API_PORT`] in the namespace, its `kubernetes` Service has a ClusterIP nothing
//! routes (no kube-proxy; `--endpoint-reconciler-type=none`), so the overlay points
//! the pods' in-cluster config at `NODE_IP:API_PORT`. Fixed ports are fine: the
//! namespace is the suite's own, and nothing else in it binds them.
//!
//! ## Sharing
//! Starting all of it takes ~30-60 s, so the node tests share one cluster (the same
//! `Weak` scheme as the control plane's) and take turns ([`NodeTest::turn`]) for what
//! they do to it: a rollout must not count as a failed scrape in another test.
//!
//! ## Cleaning up
//! On drop, in order: Prometheus, the kubelet, every process in the kubelet's cgroups
//! and every containerd shim of our socket (SIGKILL by PID), containerd, the control
//! plane; then every mount under the cluster's dir (the kubelet's tmpfs volumes, the
//! containers' overlay roots), the kubelet's cgroups, and the sysctls the kubelet
//! changed (`host.rs`). `e2e/netns.sh` checks all of it again after the suite.

mod cluster;
mod exits;
mod host;
mod pods;
mod scraping;

pub(crate) use exits::TaskExits;
pub(crate) use pods::{container_ids, is_ready, pod_summary, restarts};

use self::{
    cluster::{lock, put_serving_secret, Node, StartTimes},
    pods::container_id,
};
pub(crate) use scraping::ScrapeLoop;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Weak,
    },
    thread,
    time::Duration,
};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use rustls::ClientConfig;
use tempfile::TempDir;

use super::{
    control_plane::{self, api},
    eventually, http, keep_everything,
    process::run_to_end,
    prometheus::PrometheusApi,
    KeyCert, Tool,
};

/// The node's address, on the namespace's `lo` (`e2e/netns.sh` adds it; the overlay's
/// network.yaml points the pods' in-cluster config at it).
pub(crate) const NODE_IP: &str = "10.99.0.1";
/// The node's name.
pub(crate) const NODE_NAME: &str = "sg-node";
/// The apiserver's port (the overlay's network.yaml has it too).
pub(super) const API_PORT: u16 = 6443;
/// A scraper with no RBAC at all.
pub(crate) const NO_RBAC_SA: (&str, &str) = (NAMESPACE, "no-rbac-scraper");
/// The namespace deploy/ puts everything in.
pub(crate) const NAMESPACE: &str = "scrape-guard";
/// The images `e2e/images.sh` builds.
pub(super) const IMAGES: [&str; 4] = [
    "pause",
    "scrape-guard",
    "node-exporter",
    "kube-state-metrics",
];

static SHARED: tokio::sync::Mutex<Weak<Node>> = tokio::sync::Mutex::const_new(Weak::new());
static SHARED_START_FAILED: AtomicBool = AtomicBool::new(false);
pub(super) static A_TEST_FAILED: AtomicBool = AtomicBool::new(false);
/// Held by a test while it does something to the cluster (or measures it).
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a node test holds: the shared cluster, an admin client on the test's runtime,
/// and the test's own temp dir.
pub(crate) struct NodeTest {
    node: Arc<Node>,
    client: kube::Client,
    pub(super) dir: TempDir,
    test: String,
}

// === impl NodeTest ===

impl NodeTest {
    pub(crate) async fn start() -> Self {
        super::install_crypto();
        let node = {
            let mut slot = SHARED.lock().await;
            match slot.upgrade() {
                Some(node) => node,
                None => {
                    assert!(
                        !SHARED_START_FAILED.load(Ordering::SeqCst),
                        "the node cluster failed to start in an earlier test (see its output)"
                    );
                    let _attempt = StartAttempt;
                    let node = Arc::new(Node::start().await);
                    *slot = Arc::downgrade(&node);
                    node
                }
            }
        };
        let test = control_plane::test_name();
        let dir = control_plane::temp_dir(&test);
        let client = api::client(&node.admin_kubeconfig).await;
        Self {
            node,
            client,
            dir,
            test,
        }
    }

    /// Waits for this test's turn to act on the cluster; the turn lasts while the
    /// guard lives.
    pub(crate) async fn turn(&self) -> tokio::sync::MutexGuard<'static, ()> {
        TURN.lock().await
    }

    /// Starts recording how containers end, as containerd reports it (`exits.rs`).
    pub(crate) fn task_exits(&self) -> TaskExits {
        TaskExits::watch(&self.node.socket)
    }

    pub(crate) fn client(&self) -> &kube::Client {
        &self.client
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn start_times(&self) -> StartTimes {
        self.node.times
    }

    /// The real Prometheus scraping deploy/'s ServiceMonitors.
    pub(crate) fn prometheus(&self) -> PrometheusApi {
        PrometheusApi::new(self.node.prometheus_addr)
    }

    /// `kubectl` (1.20) with the admin kubeconfig.
    pub(crate) fn kubectl(&self) -> Command {
        let mut kubectl = Command::new(Tool::Kubectl.path());
        kubectl
            .arg("--kubeconfig")
            .arg(&self.node.admin_kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir().join("kube-cache"))
            .arg("--request-timeout=20s");
        kubectl
    }

    /// Runs `kubectl ARGS` to the end; panics unless it exits 0. Returns its output.
    pub(crate) async fn kubectl_ok(&self, args: &[&str]) -> String {
        let mut kubectl = self.kubectl();
        kubectl.args(args);
        let what = format!("kubectl {}", args.join(" "));
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let run = RUNS.fetch_add(1, Ordering::SeqCst);
        let log = self.dir().join(format!("kubectl-{run}.log"));
        let (code, output) = run_to_end(&what, kubectl, None, &log, Duration::from_secs(60)).await;
        assert_eq!(code, Some(0), "{what} failed: {output}");
        output
    }

    /// A fresh token of `sa` (TokenRequest).
    pub(crate) async fn mint_token(&self, sa: (&str, &str)) -> String {
        api::mint_token(&self.client, sa, None).await
    }

    /// Waits until the app has exactly one pod, Ready, not being deleted: that pod.
    pub(crate) async fn ready_pod(&self, app: &str, timeout: Duration) -> Pod {
        let what = format!("one Ready {app} pod");
        eventually(timeout, &what, || self.try_ready_pod(app)).await
    }

    /// The app's one pod if it is Ready and not being deleted, else what there is.
    pub(crate) async fn try_ready_pod(&self, app: &str) -> Result<Pod, String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NAMESPACE);
        let params = ListParams::default().labels(&format!(
            "app.kubernetes.io/name={app},app.kubernetes.io/part-of=scrape-guard"
        ));
        let pods = pods.list(&params).await.map_err(|e| e.to_string())?.items;
        let live: Vec<_> = pods
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        match live.as_slice() {
            [pod] if is_ready(pod) => Ok(pod.clone()),
            [pod] => Err(format!("not Ready yet: {}", pod_summary(pod))),
            pods => Err(format!("{} pods", pods.len())),
        }
    }

    /// What a container of a pod wrote (the kubelet's log files, /var/log/pods).
    pub(crate) fn container_log(&self, pod: &Pod, container: &str) -> String {
        let meta = &pod.metadata;
        let dir = PathBuf::from("/var/log/pods")
            .join(format!(
                "{NAMESPACE}_{}_{}",
                meta.name.as_deref().unwrap_or_default(),
                meta.uid.as_deref().unwrap_or_default()
            ))
            .join(container);
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            files.sort();
            for file in files {
                out.push_str(&std::fs::read_to_string(&file).unwrap_or_default());
            }
        }
        out
    }

    /// The memory cgroup directory of a container of a pod (cgroup v1), where the
    /// kubelet's own accounting lives (`memory.max_usage_in_bytes`, `memory.limit_in_bytes`).
    pub(crate) fn container_memory_cgroup(&self, pod: &Pod, container: &str) -> PathBuf {
        let id = container_id(pod, container);
        self.node
            .host
            .find_memory_cgroup(&id)
            .unwrap_or_else(|| panic!("no memory cgroup for container {container} ({id})"))
    }

    /// Where the kubelet keeps a pod's volumes on the node.
    pub(crate) fn pod_volume_dir(&self, pod: &Pod) -> PathBuf {
        let uid = pod.metadata.uid.as_deref().expect("a pod uid");
        self.node
            .dir
            .path()
            .join("kubelet/pods")
            .join(uid)
            .join("volumes")
    }

    /// TLS to the node's proxies: their serving certificates are signed by the suite's
    /// CA (standing in for cert-manager's issuer).
    pub(crate) fn scrape_tls(&self) -> Arc<ClientConfig> {
        http::tls_config(http::Trust::Ca(self.node.ca.der()), None)
    }

    /// Creates or replaces the Secret `name` in scrape-guard with a new serving
    /// certificate for `dns_name`, as cert-manager would (tls.crt, tls.key, ca.crt).
    pub(crate) async fn put_serving_secret(&self, name: &str, dns_name: &str) -> KeyCert {
        put_serving_secret(&self.client, &self.node.ca, name, dns_name).await
    }

    /// Stops the apiserver (SIGTERM by PID); the rest of the cluster keeps running.
    pub(crate) fn stop_apiserver(&self) {
        if let Some(mut apiserver) = lock(&self.node.apiserver).take() {
            apiserver.stop();
        }
    }

    /// Starts the apiserver again (same flags, same etcd) and waits until it is ready.
    pub(crate) async fn start_apiserver(&self) {
        let apiserver = self.node.launch_apiserver().await;
        *lock(&self.node.apiserver) = Some(apiserver);
    }

    /// Restarts kube-controller-manager and kube-scheduler. After a long apiserver
    /// outage their watches come back only after client-go's backoff (a ReplicaSet
    /// took 74 s to replace a deleted pod): the tests after an outage must measure
    /// scrape-guard, not that.
    pub(crate) fn restart_controllers(&self) {
        for process in [&self.node.controller_manager, &self.node.scheduler] {
            if let Some(mut running) = lock(process).take() {
                running.stop();
            }
        }
        self.node.launch_controllers();
    }
}

impl Drop for NodeTest {
    fn drop(&mut self) {
        if thread::panicking() {
            A_TEST_FAILED.store(true, Ordering::SeqCst);
            eprintln!("{}", self.node.report());
            eprintln!("{}: files kept in {}", self.test, self.dir.path().display());
            self.dir.disable_cleanup(true);
        } else if keep_everything() {
            self.dir.disable_cleanup(true);
        }
    }
}

/// Marks the shared start as failed if it panics.
struct StartAttempt;

impl Drop for StartAttempt {
    fn drop(&mut self) {
        if thread::panicking() {
            SHARED_START_FAILED.store(true, Ordering::SeqCst);
        }
    }
}
