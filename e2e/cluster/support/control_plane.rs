//! The control plane: a real etcd 3.4 and kube-apiserver v1.20.2 on free 127.0.0.1
//! ports in a temp dir, certificates from [`Ca`], RBAC from `deploy/` applied for real,
//! and [`Cluster`], the handle a test holds.
//!
//! ## Shared or private
//!
//! Starting etcd and the apiserver takes ~5 s, so tests that only add their own objects
//! share one control plane ([`Cluster::shared`]). It lives in a `static` as a `Weak`:
//! every test holds an `Arc`, and the test that drops the last one stops both processes
//! (statics are never dropped, so the static must not own them). It is therefore gone
//! before the test binary exits; if at some moment no test holds it, the next one simply
//! starts a new one.
//!
//! Tests that stop the apiserver, or that count the reviews it serves (its own
//! `apiserver_request_total`, which every other test's scrape-guard would move), get a
//! control plane of their own ([`Cluster::private`]): it costs one more start but no
//! lock can be forgotten and no other test can disturb the numbers. They live in the
//! `apiserver_*` modules, which sort first: libtest starts tests in name order, so the
//! sharing tests run together afterwards and the shared one is started once. (Only
//! speed depends on that order, never a result.)
//!
//! The `kube::Client` is made per test, on the test's runtime: a client's connections
//! belong to the runtime that opened them, and every `#[tokio::test]` has its own.
//!
//! Children are stopped by PID when their guard drops, and on SIGTERM or SIGINT of the
//! test binary (`process.rs`); a SIGKILL of the test binary leaves them behind (no
//! destructor runs, and `PR_SET_PDEATHSIG` would need `unsafe` and would fire when the
//! *thread* that started the child ends). Every child binds only free 127.0.0.1 ports
//! and writes only inside its temp dir, so such leftovers never clash with a next run.

pub(super) mod api;

pub(crate) use api::{deploy_files, file_name, parse_manifests, Reviews, Subject, METRICS_READER};

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError, Weak,
    },
    thread,
    time::Duration,
};

use rustls::ClientConfig;
use tempfile::TempDir;

use super::{
    free_port, http, keep_everything, pki,
    process::{Process, Tail},
    random_hex, remember_secret, Ca, Tool,
};

const ISSUER: &str = "https://kubernetes.default.svc";

static SHARED: tokio::sync::Mutex<Weak<ControlPlane>> = tokio::sync::Mutex::const_new(Weak::new());
/// Set when starting the shared control plane failed: the tests after it fail at once
/// instead of each waiting for the same broken start.
static SHARED_START_FAILED: AtomicBool = AtomicBool::new(false);
/// Set by the first failing test: control-plane logs are then kept too.
static A_TEST_FAILED: AtomicBool = AtomicBool::new(false);

/// What a test holds: a control plane (shared or its own), an admin `kube::Client`
/// made on the test's runtime, and the test's own temp dir for logs and files.
pub(crate) struct Cluster {
    plane: Arc<ControlPlane>,
    client: kube::Client,
    dir: TempDir,
    test: String,
}

struct ControlPlane {
    private: bool,
    dir: Option<TempDir>,
    ca: Ca,
    ca_path: PathBuf,
    /// The requestheader CA the apiserver publishes (front-proxy tests sign with it).
    front_proxy_ca: Ca,
    api_tls: Arc<ClientConfig>,
    api_port: u16,
    apiserver_args: Vec<String>,
    admin_token: String,
    admin_kubeconfig: PathBuf,
    proxy_kubeconfig: PathBuf,
    deploy_rbac: api::DeployRbac,
    // (stopped in this order by Drop)
    apiserver: Mutex<Option<Process>>,
    etcd: Mutex<Option<Process>>,
}

// === impl Cluster ===

impl Cluster {
    /// The control plane shared by every test running at the moment.
    pub(crate) async fn shared() -> Self {
        super::install_crypto();
        let plane = {
            let mut slot = SHARED.lock().await;
            match slot.upgrade() {
                Some(plane) => plane,
                None => {
                    assert!(
                        !SHARED_START_FAILED.load(Ordering::SeqCst),
                        "the shared control plane failed to start in an earlier test (see its output)"
                    );
                    let _attempt = StartAttempt;
                    let plane =
                        Arc::new(ControlPlane::start(false, "cluster", Issuer::Fixed).await);
                    *slot = Arc::downgrade(&plane);
                    plane
                }
            }
        };
        Self::attach(plane).await
    }

    /// A control plane for this test alone: it may stop the apiserver, and nothing else
    /// asks it for reviews.
    pub(crate) async fn private() -> Self {
        super::install_crypto();
        let label = format!("{}-cluster", test_name());
        Self::attach(Arc::new(
            ControlPlane::start(true, &label, Issuer::Fixed).await,
        ))
        .await
    }

    /// A private control plane whose service-account issuer is its own URL
    /// (`https://127.0.0.1:<port>`), so that it serves OIDC discovery for itself.
    pub(crate) async fn private_own_issuer() -> Self {
        super::install_crypto();
        let label = format!("{}-cluster", test_name());
        Self::attach(Arc::new(
            ControlPlane::start(true, &label, Issuer::Own).await,
        ))
        .await
    }

    /// The apiserver's URL, `https://127.0.0.1:<port>` (with `private_own_issuer`, also
    /// its service-account issuer).
    pub(crate) fn api_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.plane.api_port)
    }

    async fn attach(plane: Arc<ControlPlane>) -> Self {
        let test = test_name();
        let dir = temp_dir(&test);
        let client = api::client(&plane.admin_kubeconfig).await;
        Self {
            plane,
            client,
            dir,
            test,
        }
    }

    /// An admin client (system:masters), made on this test's runtime.
    pub(crate) fn client(&self) -> &kube::Client {
        &self.client
    }

    /// This test's temp dir: its logs, configs and token files.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA that signed the apiserver's certificate; tests sign theirs with it too.
    pub(crate) fn ca(&self) -> &Ca {
        &self.plane.ca
    }

    /// The front-proxy (requestheader) CA the apiserver publishes in
    /// kube-system/extension-apiserver-authentication; allowed CN `front-proxy-client`.
    pub(crate) fn front_proxy_ca(&self) -> &Ca {
        &self.plane.front_proxy_ca
    }

    /// The CA certificate as a PEM file.
    pub(crate) fn ca_path(&self) -> &Path {
        &self.plane.ca_path
    }

    /// A kubeconfig for scrape-guard: a token of its own service account
    /// (scrape-guard/scrape-guard, bound to system:auth-delegator by deploy/), never the
    /// admin's.
    pub(crate) fn proxy_kubeconfig(&self) -> &Path {
        &self.plane.proxy_kubeconfig
    }

    /// `kubectl` with the admin kubeconfig; its cache stays in the test's temp dir.
    pub(crate) fn kubectl(&self) -> Command {
        let mut kubectl = Command::new(Tool::Kubectl.path());
        kubectl
            .arg("--kubeconfig")
            .arg(&self.plane.admin_kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir().join("kube-cache"))
            .arg("--request-timeout=20s");
        kubectl
    }

    /// The deploy/ files applied at setup, and what they did not grant.
    pub(crate) fn deploy_rbac(&self) -> (&[String], &[String]) {
        let rbac = &self.plane.deploy_rbac;
        (&rbac.applied, &rbac.missing)
    }

    /// Stops the apiserver (SIGTERM by PID, bounded). Private control planes only.
    pub(crate) fn stop_apiserver(&self) {
        assert!(
            self.plane.private,
            "only a test with a private control plane may stop the apiserver"
        );
        let stopped = lock(&self.plane.apiserver).take();
        if let Some(mut apiserver) = stopped {
            apiserver.stop();
        }
    }

    /// Starts the apiserver again with the same flags and etcd data, and waits until it
    /// is ready.
    pub(crate) async fn start_apiserver(&self) {
        assert!(
            lock(&self.plane.apiserver).is_none(),
            "the apiserver is already running"
        );
        let apiserver = self.plane.launch_apiserver().await;
        *lock(&self.plane.apiserver) = Some(apiserver);
    }
}

/// The service-account issuer a control plane is started with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Issuer {
    /// [`ISSUER`], as in a cluster: what every test but the OIDC one uses.
    Fixed,
    /// The apiserver's own https URL, which it then serves discovery for.
    Own,
}

/// Marks the shared start as failed if it panics (dropped while unwinding).
struct StartAttempt;

impl Drop for StartAttempt {
    fn drop(&mut self) {
        if thread::panicking() {
            SHARED_START_FAILED.store(true, Ordering::SeqCst);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if thread::panicking() {
            A_TEST_FAILED.store(true, Ordering::SeqCst);
            eprintln!("{}", self.plane.report());
            eprintln!(
                "{}: logs and files kept in {}",
                self.test,
                self.dir.path().display()
            );
            self.dir.disable_cleanup(true);
        } else if keep_everything() {
            eprintln!("{}: kept {}", self.test, self.dir.path().display());
            self.dir.disable_cleanup(true);
        }
    }
}

// === impl ControlPlane ===

impl ControlPlane {
    async fn start(private: bool, label: &str, issuer: Issuer) -> Self {
        let started = std::time::Instant::now();
        let dir = temp_dir(label);
        let path = dir.path().to_owned();
        let ca = Ca::new("scrape-guard-e2e-ca");
        let ca_path = path.join("ca.crt");
        pki::write(&ca_path, ca.pem());
        let (cert, key) = ca.serving("kube-apiserver").write(&path, "apiserver");
        let (sa_key, sa_pub) = pki::signing_key_pair();
        pki::write(&path.join("sa.key"), &sa_key);
        pki::write(&path.join("sa.pub"), &sa_pub);
        let admin_token = random_hex(24);
        remember_secret("the admin token", &admin_token);
        // token,user,uid,"groups"
        let tokens = format!("{admin_token},e2e-admin,e2e-admin-uid,\"system:masters\"\n");
        pki::write(&path.join("tokens.csv"), &tokens);

        let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let etcd = start_etcd(&path, etcd_port, peer_port).await;
        let api_url = format!("https://127.0.0.1:{api_port}");
        let mut apiserver_args = vec![
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            format!("--tls-cert-file={}", cert.display()),
            format!("--tls-private-key-file={}", key.display()),
            format!("--client-ca-file={}", ca_path.display()),
            format!("--token-auth-file={}", path.join("tokens.csv").display()),
            "--authorization-mode=RBAC".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            format!("--cert-dir={}", path.join("apiserver-certs").display()),
            "--endpoint-reconciler-type=none".into(),
            "--profiling=false".into(),
            "--v=0".into(),
        ];
        apiserver_args.extend(service_account_args(&path));
        let front_proxy_ca = Ca::new("scrape-guard-e2e-front-proxy-ca");
        apiserver_args.extend(front_proxy_args(&path, &front_proxy_ca));
        if issuer == Issuer::Own {
            for arg in &mut apiserver_args {
                if arg.starts_with("--service-account-issuer=") {
                    *arg = format!("--service-account-issuer={api_url}");
                }
            }
        }
        let admin_kubeconfig = path.join("admin.kubeconfig");
        pki::write(
            &admin_kubeconfig,
            &kubeconfig(&api_url, &ca_path, "e2e-admin", &admin_token),
        );
        let mut plane = Self {
            private,
            proxy_kubeconfig: path.join("scrape-guard.kubeconfig"),
            dir: Some(dir),
            api_tls: http::tls_config(http::Trust::Ca(ca.der()), None),
            ca,
            ca_path,
            front_proxy_ca,
            api_port,
            apiserver_args,
            admin_token,
            admin_kubeconfig,
            deploy_rbac: api::DeployRbac::default(),
            apiserver: Mutex::new(None),
            etcd: Mutex::new(Some(etcd)),
        };
        let apiserver = plane.launch_apiserver().await;
        *lock(&plane.apiserver) = Some(apiserver);
        let client = api::client(&plane.admin_kubeconfig).await;
        plane.deploy_rbac = api::prepare(&client).await;
        let proxy_token = api::mint_token(&client, super::PROXY_SA, None).await;
        pki::write(
            &plane.proxy_kubeconfig,
            &kubeconfig(&api_url, &plane.ca_path, "scrape-guard", &proxy_token),
        );
        eprintln!(
            "control plane {} ready in {:?}: kube-apiserver on 127.0.0.1:{api_port}",
            plane.path().display(),
            started.elapsed()
        );
        plane
    }

    fn path(&self) -> &Path {
        self.dir
            .as_ref()
            .map(TempDir::path)
            .expect("the control plane's dir")
    }

    async fn launch_apiserver(&self) -> Process {
        let mut command = Command::new(Tool::KubeApiserver.path());
        command.args(&self.apiserver_args);
        let log = self.path().join("apiserver.log");
        let mut apiserver = Process::spawn("kube-apiserver", command, &log, Tail::KlogProblems(15))
            .quiet_on_failure();
        let addr = ([127, 0, 0, 1], self.api_port).into();
        let (tls, token) = (&self.api_tls, self.admin_token.as_str());
        apiserver
            .await_ready(
                Duration::from_secs(60),
                "kube-apiserver /readyz",
                || async move {
                    http::https_get(tls, addr, "/readyz", Some(token))
                        .await?
                        .status_is(200)
                },
            )
            .await;
        apiserver
    }

    /// The apiserver's warnings and errors, and etcd's tail if etcd is gone.
    fn report(&self) -> String {
        let mut out = String::new();
        if let Some(apiserver) = lock(&self.apiserver).as_ref() {
            out.push_str(&apiserver.tail());
        } else {
            out.push_str("(kube-apiserver is stopped)\n");
        }
        if let Some(etcd) = lock(&self.etcd).as_mut() {
            if let Some(status) = etcd.exited() {
                out.push_str(&format!("etcd exited: {status}\n{}", etcd.tail()));
            }
        }
        out.push_str(&format!("control plane files: {}", self.path().display()));
        out
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        drop(lock(&self.apiserver).take());
        drop(lock(&self.etcd).take());
        if let Some(dir) = self.dir.as_mut() {
            if keep_everything() || A_TEST_FAILED.load(Ordering::SeqCst) {
                dir.disable_cleanup(true);
            }
        }
    }
}

/// The apiserver's service-account flags: issuer and audience [`ISSUER`], the key pair
/// `sa.key`/`sa.pub` in `dir`.
pub(super) fn service_account_args(dir: &Path) -> Vec<String> {
    vec![
        format!("--service-account-issuer={ISSUER}"),
        format!(
            "--service-account-signing-key-file={}",
            dir.join("sa.key").display()
        ),
        format!(
            "--service-account-key-file={}",
            dir.join("sa.pub").display()
        ),
        format!("--api-audiences={ISSUER}"),
    ]
}

pub(super) async fn start_etcd(dir: &Path, port: u16, peer_port: u16) -> Process {
    let client_url = format!("http://127.0.0.1:{port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let mut command = Command::new(Tool::Etcd.path());
    command
        .args(["--name", "e2e", "--data-dir"])
        .arg(dir.join("etcd"))
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("e2e={peer_url}")])
        .args(["--initial-cluster-state", "new"]);
    let mut etcd =
        Process::spawn("etcd", command, &dir.join("etcd.log"), Tail::Lines(20)).quiet_on_failure();
    let addr = ([127, 0, 0, 1], port).into();
    etcd.await_ready(Duration::from_secs(20), "etcd /health", || async move {
        let reply = http::http_get(addr, "/health").await?;
        match reply.status.as_u16() {
            200 if reply.text().contains("true") => Ok(()),
            _ => Err(reply.describe()),
        }
    })
    .await;
    etcd
}

fn kubeconfig(server: &str, ca: &Path, user: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\n\
         clusters:\n- name: e2e\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
         users:\n- name: {user}\n  user:\n    token: {token}\n\
         contexts:\n- name: e2e\n  context: {{cluster: e2e, user: {user}}}\n\
         current-context: e2e\n",
        ca = ca.display()
    )
}

/// The running test's name (libtest names the thread after it), last path segment.
pub(super) fn test_name() -> String {
    thread::current()
        .name()
        .and_then(|n| n.rsplit("::").next())
        .filter(|n| !n.is_empty() && *n != "main")
        .unwrap_or("test")
        .to_owned()
}

pub(super) fn temp_dir(label: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("scrape-guard-e2e-{label}-"))
        .tempdir()
        .expect("creating a temp dir")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Front-proxy (requestheader) authentication, as kubeadm configures it: the apiserver
/// then publishes the requestheader settings in kube-system/extension-apiserver-authentication.
/// Harmless to every test that does not act as a front proxy.
fn front_proxy_args(dir: &Path, ca: &Ca) -> Vec<String> {
    let ca_path = dir.join("front-proxy-ca.crt");
    pki::write(&ca_path, ca.pem());
    let (cert, key) = ca
        .client("front-proxy-client", &[])
        .write(dir, "front-proxy-client");
    vec![
        format!("--requestheader-client-ca-file={}", ca_path.display()),
        "--requestheader-allowed-names=front-proxy-client".into(),
        "--requestheader-username-headers=X-Remote-User".into(),
        "--requestheader-group-headers=X-Remote-Group".into(),
        "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
        format!("--proxy-client-cert-file={}", cert.display()),
        format!("--proxy-client-key-file={}", key.display()),
    ]
}
