//! Starting and stopping the node cluster: PKI, the control plane, containerd and
//! the images, the kubelet, deploy/ through the overlay, Prometheus.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::{atomic::Ordering, Arc, Mutex, PoisonError},
    thread,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::{Node as NodeObject, Pod, Secret};
use kube::api::{Api, ListParams, PostParams};
use rustls::ClientConfig;
use serde_json::json;
use tempfile::TempDir;

use super::{
    super::{
        control_plane::{self, api},
        eventually, free_port, http, keep_everything, pki,
        process::{run_to_end, Process, Tail},
        prometheus::PrometheusApi,
        repo_path, Ca, KeyCert, Tool, PROMETHEUS_SA,
    },
    host,
    pods::{is_ready, pod_summary},
    scraping, API_PORT, A_TEST_FAILED, IMAGES, NAMESPACE, NODE_IP, NODE_NAME, NO_RBAC_SA,
};

/// How long each stage of the start took (reported by the Ready test).
#[derive(Clone, Copy, Debug)]
pub(crate) struct StartTimes {
    pub(crate) apiserver_ready: Duration,
    pub(crate) node_ready: Duration,
    pub(crate) pods_ready: Duration,
    pub(crate) first_scrape: Duration,
}

/// The cluster, started once for every node test that runs at the same time.
pub(crate) struct Node {
    pub(super) dir: TempDir,
    pub(super) ca: Ca,
    pub(super) admin_kubeconfig: PathBuf,
    api_tls: Arc<ClientConfig>,
    pub(super) socket: PathBuf,
    pub(super) times: StartTimes,
    pub(super) prometheus_addr: SocketAddr,
    pub(super) host: host::Host,
    // (stopped in this order by Drop)
    scraping: Mutex<Option<scraping::Scraping>>,
    kubelet: Mutex<Option<Process>>,
    containerd: Mutex<Option<Process>>,
    pub(super) scheduler: Mutex<Option<Process>>,
    pub(super) controller_manager: Mutex<Option<Process>>,
    pub(super) apiserver: Mutex<Option<Process>>,
    apiserver_args: Vec<String>,
    etcd: Mutex<Option<Process>>,
}

// === impl Node ===

impl Node {
    pub(super) async fn start() -> Self {
        let started = Instant::now();
        host::check_namespace(NODE_IP);
        let images = images_dir();
        for image in IMAGES {
            let archive = images.join(format!("{image}.oci.tar"));
            assert!(
                archive.is_file(),
                "{} is missing: run e2e/images.sh (after e2e/provision.sh)",
                archive.display()
            );
        }
        // Short: the containerd socket path must fit in sun_path.
        let dir = tempfile::Builder::new()
            .prefix("sg-node-")
            .tempdir()
            .expect("creating the node's temp dir");
        let path = dir.path().to_owned();
        let ca = Ca::new("scrape-guard-e2e-node-ca");
        let ca_path = path.join("ca.crt");
        pki::write(&ca_path, ca.pem());
        let sans = [
            "127.0.0.1",
            NODE_IP,
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
        ];
        let (cert, key) = ca
            .serving_for("kube-apiserver", &sans)
            .write(&path, "apiserver");
        let admin = ca.client("e2e-admin", &["system:masters"]);
        admin.write(&path, "admin");
        let kubelet_client = ca.client(&format!("system:node:{NODE_NAME}"), &["system:nodes"]);
        kubelet_client.write(&path, "kubelet-client");
        ca.serving_for(NODE_NAME, &[NODE_IP, NODE_NAME])
            .write(&path, "kubelet");
        let (sa_key, sa_pub) = pki::signing_key_pair();
        pki::write(&path.join("sa.key"), &sa_key);
        pki::write(&path.join("sa.pub"), &sa_pub);
        // The kube-controller-manager signs nothing here, but the token controller
        // needs the key to fill in service-account-token Secrets.
        let api_url = format!("https://127.0.0.1:{API_PORT}");
        let admin_kubeconfig = path.join("admin.kubeconfig");
        pki::write(
            &admin_kubeconfig,
            &cert_kubeconfig(&api_url, &path, "admin"),
        );
        let kubelet_kubeconfig = path.join("kubelet.kubeconfig");
        pki::write(
            &kubelet_kubeconfig,
            &cert_kubeconfig(&api_url, &path, "kubelet-client"),
        );

        let (etcd_port, peer_port) = (free_port(), free_port());
        let etcd = control_plane::start_etcd(&path, etcd_port, peer_port).await;
        let mut apiserver_args = vec![
            "--bind-address=0.0.0.0".into(),
            format!("--advertise-address={NODE_IP}"),
            format!("--secure-port={API_PORT}"),
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            format!("--tls-cert-file={}", cert.display()),
            format!("--tls-private-key-file={}", key.display()),
            format!("--client-ca-file={}", ca_path.display()),
            format!(
                "--kubelet-client-certificate={}",
                path.join("admin.crt").display()
            ),
            format!("--kubelet-client-key={}", path.join("admin.key").display()),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            format!("--cert-dir={}", path.join("apiserver-certs").display()),
            "--endpoint-reconciler-type=none".into(),
            "--profiling=false".into(),
            "--v=0".into(),
        ];
        apiserver_args.extend(control_plane::service_account_args(&path));
        let api_tls = http::tls_config(http::Trust::Ca(ca.der()), Some(&admin));
        let host = host::Host::prepare(&path);
        let mut node = Self {
            ca,
            admin_kubeconfig,
            api_tls,
            socket: path.join("c.sock"),
            times: StartTimes {
                apiserver_ready: Duration::ZERO,
                node_ready: Duration::ZERO,
                pods_ready: Duration::ZERO,
                first_scrape: Duration::ZERO,
            },
            prometheus_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            host,
            scraping: Mutex::new(None),
            kubelet: Mutex::new(None),
            containerd: Mutex::new(None),
            scheduler: Mutex::new(None),
            controller_manager: Mutex::new(None),
            apiserver: Mutex::new(None),
            apiserver_args,
            etcd: Mutex::new(Some(etcd)),
            dir,
        };
        let apiserver = node.launch_apiserver().await;
        *lock(&node.apiserver) = Some(apiserver);
        node.times.apiserver_ready = started.elapsed();

        node.launch_controllers();

        let containerd = node.start_containerd().await;
        *lock(&node.containerd) = Some(containerd);
        node.import_images(&images).await;

        let kubelet = node.start_kubelet(&kubelet_kubeconfig);
        *lock(&node.kubelet) = Some(kubelet);
        let client = api::client(&node.admin_kubeconfig).await;
        node.await_node_ready(&client).await;
        node.times.node_ready = started.elapsed();

        node.apply_deploy(&client).await;
        for app in ["node-exporter", "kube-state-metrics"] {
            node.await_app_ready(&client, app).await;
        }
        node.times.pods_ready = started.elapsed();

        let scraping =
            scraping::Scraping::start(&client, node.dir.path(), &node.admin_kubeconfig).await;
        node.prometheus_addr = scraping.prometheus_addr();
        *lock(&node.scraping) = Some(scraping);
        let prometheus = PrometheusApi::new(node.prometheus_addr);
        eventually(
            Duration::from_secs(60),
            "up == 1 for scrape-guard-node-exporter",
            || async {
                match prometheus.up("scrape-guard-node-exporter").await?.as_str() {
                    "1" => Ok(()),
                    other => Err(format!(
                        "up = {other}: {}",
                        prometheus.last_error("scrape-guard-node-exporter").await
                    )),
                }
            },
        )
        .await;
        node.times.first_scrape = started.elapsed();
        eprintln!(
            "node cluster {} ready: {:?} (apiserver, node Ready, pods Ready, first scrape)",
            node.dir.path().display(),
            node.times
        );
        node
    }

    /// Starts kube-controller-manager and kube-scheduler (again).
    pub(super) fn launch_controllers(&self) {
        let dir = self.dir.path();
        let kubeconfig = self.admin_kubeconfig.display().to_string();
        let controller_manager = self.spawn(
            "kube-controller-manager",
            Tool::KubeControllerManager,
            vec![
                format!("--kubeconfig={kubeconfig}"),
                "--leader-elect=false".into(),
                "--port=0".into(),
                "--secure-port=0".into(),
                format!(
                    "--service-account-private-key-file={}",
                    dir.join("sa.key").display()
                ),
                format!("--root-ca-file={}", dir.join("ca.crt").display()),
                "--use-service-account-credentials=false".into(),
                "--controllers=*".into(),
                "--v=0".into(),
            ],
        );
        let scheduler = self.spawn(
            "kube-scheduler",
            Tool::KubeScheduler,
            vec![
                format!("--kubeconfig={kubeconfig}"),
                "--leader-elect=false".into(),
                "--port=0".into(),
                "--secure-port=0".into(),
                "--v=0".into(),
            ],
        );
        drop(lock(&self.controller_manager).replace(controller_manager));
        drop(lock(&self.scheduler).replace(scheduler));
    }

    fn spawn(&self, name: &str, tool: Tool, args: Vec<String>) -> Process {
        let mut command = Command::new(tool.path());
        command.args(args);
        let log = self.dir.path().join(format!("{name}.log"));
        Process::spawn(name, command, &log, Tail::KlogProblems(15)).quiet_on_failure()
    }

    pub(super) async fn launch_apiserver(&self) -> Process {
        let mut command = Command::new(Tool::KubeApiserver.path());
        command.args(&self.apiserver_args);
        let log = self.dir.path().join("apiserver.log");
        let mut apiserver = Process::spawn("kube-apiserver", command, &log, Tail::KlogProblems(15))
            .quiet_on_failure();
        let addr = SocketAddr::from(([127, 0, 0, 1], API_PORT));
        let tls = &self.api_tls;
        apiserver
            .await_ready(
                Duration::from_secs(60),
                "kube-apiserver /readyz",
                || async move {
                    http::https_get(tls, addr, "/readyz", None)
                        .await?
                        .status_is(200)
                },
            )
            .await;
        apiserver
    }

    async fn start_containerd(&self) -> Process {
        let dir = self.dir.path();
        let cni = dir.join("cni");
        std::fs::create_dir_all(&cni).expect("creating the CNI config dir");
        // Only the loopback plugin: host-network pods need no more, and the node is
        // Ready once the runtime reports a network config.
        pki::write(
            &cni.join("10-loopback.conf"),
            r#"{"cniVersion": "0.3.1", "name": "lo", "type": "loopback"}"#,
        );
        let config = format!(
            r#"version = 2
root = "{dir}/containerd/root"
state = "{dir}/containerd/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.2"
  # Without CAP_SYS_RESOURCE, runc cannot lower a child's oom_score_adj below its
  # own: every sandbox fails with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{dir}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"#,
            dir = dir.display(),
            socket = self.socket.display(),
            cni = cni.display(),
        );
        let config_path = dir.join("containerd.toml");
        pki::write(&config_path, &config);
        let mut command = Command::new("containerd");
        command.arg("--config").arg(&config_path);
        let log = dir.join("containerd.log");
        let mut containerd =
            Process::spawn("containerd", command, &log, Tail::Lines(20)).quiet_on_failure();
        let socket = self.socket.clone();
        containerd
            .await_ready(Duration::from_secs(30), "containerd's socket", || {
                let socket = socket.clone();
                async move {
                    tokio::net::UnixStream::connect(&socket)
                        .await
                        .map(drop)
                        .map_err(|e| format!("{}: {e}", socket.display()))
                }
            })
            .await;
        containerd
    }

    async fn import_images(&self, images: &Path) {
        for image in IMAGES {
            let archive = images.join(format!("{image}.oci.tar"));
            let mut ctr = Command::new("ctr");
            ctr.arg("--address")
                .arg(&self.socket)
                .args(["--namespace", "k8s.io", "images", "import"])
                .arg(&archive);
            let log = self.dir.path().join(format!("ctr-import-{image}.log"));
            let what = format!("ctr images import {}", archive.display());
            let (code, output) = run_to_end(&what, ctr, None, &log, Duration::from_secs(120)).await;
            assert_eq!(code, Some(0), "{what}: {output}");
        }
    }

    fn start_kubelet(&self, kubeconfig: &Path) -> Process {
        let dir = self.dir.path();
        let config = format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {NODE_IP}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication: {{anonymous: {{enabled: false}}, webhook: {{enabled: false}}, x509: {{clientCAFile: {dir}/ca.crt}}}}
authorization: {{mode: AlwaysAllow}}
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup_root}
failSwapOn: false
makeIPTablesUtilChains: false
# Secret and projected volumes are re-synced at least this often.
syncFrequency: 10s
evictionHard: {{memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
tlsCertFile: {dir}/kubelet.crt
tlsPrivateKeyFile: {dir}/kubelet.key
",
            dir = dir.display(),
            cgroup_root = self.host.cgroup_root(),
        );
        let config_path = dir.join("kubelet.yaml");
        pki::write(&config_path, &config);
        self.spawn(
            "kubelet",
            Tool::Kubelet,
            vec![
                format!("--config={}", config_path.display()),
                format!("--kubeconfig={}", kubeconfig.display()),
                "--container-runtime=remote".into(),
                format!(
                    "--container-runtime-endpoint=unix://{}",
                    self.socket.display()
                ),
                format!("--root-dir={}", dir.join("kubelet").display()),
                format!("--cert-dir={}", dir.join("kubelet-certs").display()),
                format!("--node-ip={NODE_IP}"),
                format!("--hostname-override={NODE_NAME}"),
                "--v=1".into(),
            ],
        )
    }

    async fn await_node_ready(&self, client: &kube::Client) {
        let nodes: Api<NodeObject> = Api::all(client.clone());
        let kubelet = &self.kubelet;
        eventually(Duration::from_secs(90), "the node to be Ready", || async {
            if let Some(status) = lock(kubelet).as_mut().and_then(Process::exited) {
                panic!("the kubelet exited ({status})\n{}", self.report());
            }
            let node = nodes
                .get_opt(NODE_NAME)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("not registered yet")?;
            let ready = node
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_ == "Ready");
            match ready {
                Some(c) if c.status == "True" => Ok(()),
                Some(c) => Err(format!(
                    "Ready={}: {}",
                    c.status,
                    c.message.unwrap_or_default()
                )),
                None => Err("no Ready condition".into()),
            }
        })
        .await;
    }

    /// What a cluster operator has before `kubectl apply -k deploy/` (see
    /// deploy/kustomization.yaml): the ServiceMonitor CRD (the suite's minimal
    /// fixture), the scraper's account, the serving certificates (made with the
    /// suite's CA, as cert-manager would); and an account with no RBAC at all.
    async fn apply_deploy(&self, client: &kube::Client) {
        api::ensure_namespace(client, NAMESPACE).await;
        let crd = repo_path("e2e/fixtures/servicemonitor-crd.yaml");
        api::apply_file(client, &crd)
            .await
            .unwrap_or_else(|e| panic!("the ServiceMonitor CRD fixture: {e}"));
        api::ensure_service_account(client, PROMETHEUS_SA).await;
        api::ensure_service_account(client, NO_RBAC_SA).await;
        put_serving_secret(
            client,
            &self.ca,
            "scrape-guard-node-exporter-tls",
            "scrape-guard-node-exporter.scrape-guard.svc",
        )
        .await;
        put_serving_secret(
            client,
            &self.ca,
            "scrape-guard-kube-state-metrics-tls",
            "scrape-guard-kube-state-metrics.scrape-guard.svc",
        )
        .await;
        // (the CRD must be served before the ServiceMonitors in deploy/ apply)
        let kubectl = |args: Vec<String>| {
            let mut kubectl = Command::new(Tool::Kubectl.path());
            kubectl
                .arg("--kubeconfig")
                .arg(&self.admin_kubeconfig)
                .arg("--cache-dir")
                .arg(self.dir.path().join("kube-cache"))
                .args(args);
            kubectl
        };
        let overlay = repo_path("e2e/cluster/node/overlay").display().to_string();
        let log = self.dir.path().join("kubectl-apply-k.log");
        let what = format!("kubectl apply -k {overlay}");
        eventually(Duration::from_secs(60), &what, || async {
            let (code, output) = run_to_end(
                &what,
                kubectl(vec!["apply".into(), "-k".into(), overlay.clone()]),
                None,
                &log,
                Duration::from_secs(60),
            )
            .await;
            match code {
                Some(0) => Ok(()),
                _ => Err(output),
            }
        })
        .await;
    }

    async fn await_app_ready(&self, client: &kube::Client, app: &str) {
        let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
        let params = ListParams::default().labels(&format!(
            "app.kubernetes.io/name={app},app.kubernetes.io/part-of=scrape-guard"
        ));
        let what = format!("the {app} pod to be Ready (through the kubelet's probes)");
        eventually(Duration::from_secs(180), &what, || async {
            let list = pods.list(&params).await.map_err(|e| e.to_string())?;
            match list.items.as_slice() {
                [pod] if is_ready(pod) => Ok(()),
                [pod] => Err(pod_summary(pod)),
                other => Err(format!("{} pods", other.len())),
            }
        })
        .await;
    }

    pub(super) fn report(&self) -> String {
        let mut out = String::new();
        for process in [
            &self.kubelet,
            &self.containerd,
            &self.apiserver,
            &self.controller_manager,
            &self.scheduler,
        ] {
            if let Some(process) = lock(process).as_ref() {
                out.push_str(&process.tail());
            }
        }
        out.push_str(&format!(
            "node cluster files (kubelet, containerd, control plane logs): {}",
            self.dir.path().display()
        ));
        out
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        drop(lock(&self.scraping).take());
        drop(lock(&self.kubelet).take());
        self.host.kill_containers(&self.socket);
        for process in [
            &self.containerd,
            &self.scheduler,
            &self.controller_manager,
            &self.apiserver,
            &self.etcd,
        ] {
            drop(lock(process).take());
        }
        self.host.clean_up();
        if keep_everything() || thread::panicking() || A_TEST_FAILED.load(Ordering::SeqCst) {
            eprintln!("node cluster files kept in {}", self.dir.path().display());
            self.dir.disable_cleanup(true);
        }
    }
}

// === helpers ===

fn images_dir() -> PathBuf {
    std::env::var_os("E2E_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_path("target/e2e-images"))
}

fn cert_kubeconfig(server: &str, dir: &Path, name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\n\
         clusters:\n- name: e2e\n  cluster:\n    server: {server}\n    certificate-authority: {dir}/ca.crt\n\
         users:\n- name: {name}\n  user:\n    client-certificate: {dir}/{name}.crt\n    client-key: {dir}/{name}.key\n\
         contexts:\n- name: e2e\n  context: {{cluster: e2e, user: {name}}}\n\
         current-context: e2e\n",
        dir = dir.display()
    )
}

pub(super) async fn put_serving_secret(
    client: &kube::Client,
    ca: &Ca,
    name: &str,
    dns_name: &str,
) -> KeyCert {
    let pair = ca.serving_for(dns_name, &[dns_name, NODE_IP]);
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem, "ca.crt": ca.pem()},
    }))
    .expect("a Secret");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    match secrets.get_opt(name).await.expect("reading a Secret") {
        None => secrets
            .create(&PostParams::default(), &secret)
            .await
            .map(drop),
        Some(_) => secrets
            .replace(name, &PostParams::default(), &secret)
            .await
            .map(drop),
    }
    .unwrap_or_else(|e| panic!("writing Secret {NAMESPACE}/{name}: {e}"));
    pair
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
