//! The real `scrape-guard` binary as a child process, for what only a process shows:
//! signals, exit codes, logs on stderr. Listens on a free 127.0.0.1 port; stopped by
//! PID: SIGTERM from `terminate`, SIGKILL when a `KillOnDrop` goes out of scope with
//! the process still running (a failed assertion or a wait that ran out).

use std::{
    collections::HashSet,
    ops::{Deref, DerefMut},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Mutex, PoisonError},
    time::Duration,
};

use crate::{eventually, FakeApiserver, Pki};

/// A 127.0.0.1 port nothing listens on (bound, then released for the caller to use),
/// never handed out twice in one test binary: tests run on parallel threads, and the
/// kernel may give a just-released port again. Another program could still take it
/// before the process meant for it binds it; on a test machine that is very unlikely.
/// The one copy for every suite (the integration tests, the end-to-end suite).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(PoisonError::into_inner);
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("binding 127.0.0.1:0 for a free port")
            .port();
        if given.insert(port) {
            return port;
        }
    }
}

/// A child process that is killed (by PID) and reaped if it is still running when
/// this is dropped, so that a test which fails half-way does not leave it behind.
pub struct KillOnDrop(Child);

impl KillOnDrop {
    /// Takes charge of `child`.
    pub fn new(child: Child) -> Self {
        Self(child)
    }
}

impl Deref for KillOnDrop {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // `Ok(None)`: still running. A process that exited is reaped by `try_wait`.
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The real `scrape-guard` binary (`binary`: the test's
/// `env!("CARGO_BIN_EXE_scrape-guard")`, which Cargo sets only for the package's own
/// tests) on 127.0.0.1:`port` with the test certificate, the fake apiserver's
/// kubeconfig and `upstream`, plus `extra` flags and `env`. Returns once it accepts
/// connections (bounded wait); stderr is piped for `terminate`.
pub async fn spawn_binary(
    binary: &str,
    pki: &Pki,
    api: &FakeApiserver,
    upstream: &str,
    port: u16,
    extra: &[&str],
    env: &[(&str, &str)],
) -> KillOnDrop {
    let mut args = vec![
        format!("--secure-listen-address=[127.0.0.1]:{port}"),
        format!("--kubeconfig={}", api.kubeconfig.display()),
        format!("--upstream={upstream}"),
        format!("--tls-cert-file={}", pki.cert_path.display()),
        format!("--tls-private-key-file={}", pki.key_path.display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let child = KillOnDrop::new(
        Command::new(binary)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    eventually(Duration::from_secs(20), || async move {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("scrape-guard never listened on {port}")),
        }
    })
    .await;
    child
}

/// SIGTERM by PID, then wait (bounded) for the exit; returns the status and stderr.
pub async fn terminate(mut child: KillOnDrop) -> (ExitStatus, String) {
    use std::io::Read;
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = eventually(Duration::from_secs(20), || {
        let exited = child.try_wait().unwrap();
        std::future::ready(exited.ok_or("scrape-guard did not exit within 20 s of SIGTERM"))
    })
    .await;
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    (status, logs)
}
