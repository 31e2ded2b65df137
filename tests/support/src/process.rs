//! The real `scrape-guard` binary as a child process, for what only a process shows:
//! signals, exit codes, logs on stderr. Listens on a free 127.0.0.1 port; stopped by
//! PID (SIGTERM, SIGKILL only if a bounded wait runs out).

use std::time::Duration;

use crate::{FakeApiserver, Pki};

/// A free 127.0.0.1 port (bound, then released for the caller to use).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real `scrape-guard` binary (`binary`: the test's
/// `env!("CARGO_BIN_EXE_scrape-guard")`, which Cargo sets only for the package's own
/// tests) on 127.0.0.1:`port` with the test certificate, the fake apiserver's
/// kubeconfig and `upstream`, plus `extra` flags and `env`. Returns once it accepts
/// connections (bounded wait); stderr is piped for `terminate`.
pub fn spawn_binary(
    binary: &str,
    pki: &Pki,
    api: &FakeApiserver,
    upstream: &str,
    port: u16,
    extra: &[&str],
    env: &[(&str, &str)],
) -> std::process::Child {
    let mut args = vec![
        format!("--secure-listen-address=[127.0.0.1]:{port}"),
        format!("--kubeconfig={}", api.kubeconfig.display()),
        format!("--upstream={upstream}"),
        format!("--tls-cert-file={}", pki.cert_path.display()),
        format!("--tls-private-key-file={}", pki.key_path.display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut child = std::process::Command::new(binary)
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("scrape-guard never listened on {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// SIGTERM by PID, then wait (bounded) for the exit; returns the status and stderr.
pub fn terminate(mut child: std::process::Child) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("scrape-guard did not exit within 20 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    (status, logs)
}
