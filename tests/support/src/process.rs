//! One guard for child processes, shared by the integration tests and the end-to-end
//! suite: [`Process`], which stops its child by PID when dropped, in one of two ways
//! chosen by the constructor:
//! - [`Process::spawn`] (the end-to-end suite's daemons): output (stdout and stderr) to
//!   one log file, whose tail is printed when the test using the process fails; on drop
//!   SIGTERM, a bounded wait, then SIGKILL;
//! - [`Process::kill_on_drop`] (the integration tests' `scrape-guard` children, whose
//!   stdio the test wires itself, often a pipe nobody drains once the test failed): on
//!   drop SIGKILL at once if still running, and a reap.
//!
//! Also: the real `scrape-guard` binary as a child ([`spawn_binary`], stopped with
//! [`terminate`]), short-lived commands run to the end ([`run_to_end`]) and
//! [`free_port`].
//!
//! SIGTERM is sent with the `kill` program: std can only send SIGKILL, the lints forbid
//! `unsafe` (so no libc), and one short-lived process per stop is not worth a
//! dependency.
//!
//! Destructors do not run when the test binary is killed by a signal, so every child
//! started by [`Process::spawn`] or [`run_to_end`] is also registered here, and the
//! first one starts a watcher thread: on SIGTERM (a CI timeout) or SIGINT (Ctrl-C) it
//! sends SIGTERM to every registered child and exits 143 or 130. Only SIGKILL of the
//! test binary leaves children behind. `kill_on_drop` children are not registered, so
//! the integration tests' binary (which runs scrape-guard in-process too, with its own
//! signal handling) gets no watcher.

use std::{
    collections::{BTreeSet, HashSet},
    fs::OpenOptions,
    future::Future,
    ops::{Deref, DerefMut},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Mutex, Once, PoisonError},
    thread,
    time::{Duration, Instant},
};

use crate::{eventually, snippet, FakeApiserver, Pki};

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

/// How long a process may take to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Which part of the log explains a failure.
#[derive(Clone, Copy, Debug)]
pub enum Tail {
    /// The last lines as they are.
    Lines(usize),
    /// The last klog warning/error/fatal lines (`W1201 …`), for kube-apiserver whose
    /// info lines drown everything else.
    KlogProblems(usize),
}

/// A child process, stopped by PID when this is dropped (how: see the constructors), so
/// that a test which fails half-way does not leave it behind. Derefs to the [`Child`]
/// for the tests that read its pipes or wait for it themselves.
pub struct Process {
    name: String,
    child: Child,
    /// Where its output goes: `None` for a `kill_on_drop` child (stdio set by the caller).
    log: Option<PathBuf>,
    tail: Tail,
    /// How dropping the guard stops it.
    on_drop: OnDrop,
    /// Whether dropping the guard during a failing test prints the log tail (the
    /// control plane prints its own, once per failing test).
    report_on_failure: bool,
    exit: Option<ExitStatus>,
}

/// How dropping a [`Process`] stops a child that is still running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnDrop {
    /// [`Process::stop`]: SIGTERM, up to [`STOP_GRACE`], then SIGKILL; the log tail if
    /// the test is failing.
    Stop,
    /// SIGKILL at once, then reap.
    Kill,
}

impl Process {
    /// Starts `command` with stdin closed and stdout+stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path, tail: Tail) -> Self {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
        let stderr = file
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot dup {}: {e}", log.display()));
        command.stdin(Stdio::null()).stdout(file).stderr(stderr);
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {name} ({}): {e}; run e2e/provision.sh first",
                command.get_program().to_string_lossy()
            )
        });
        adopt(child.id());
        Self {
            name: name.to_owned(),
            child,
            log: Some(log.to_owned()),
            tail,
            on_drop: OnDrop::Stop,
            report_on_failure: true,
            exit: None,
        }
    }

    /// Takes charge of a child the caller started (and whose stdio it chose): killed
    /// (SIGKILL, by PID) and reaped if it is still running when this is dropped. Not
    /// registered with the signal watcher.
    pub fn kill_on_drop(child: Child) -> Self {
        Self {
            name: format!("pid {}", child.id()),
            child,
            log: None,
            tail: Tail::Lines(0),
            on_drop: OnDrop::Kill,
            report_on_failure: false,
            exit: None,
        }
    }

    /// Leaves printing the log tail on failure to the owner.
    pub fn quiet_on_failure(mut self) -> Self {
        self.report_on_failure = false;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The log file, if its output goes to one (`spawn`).
    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// The whole log so far.
    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|log| std::fs::read(log).ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
            if self.exit.is_some() {
                release(self.child.id());
            }
        }
        self.exit
    }

    /// Waits (at most `timeout`) until `probe` passes. Fails at once if the process
    /// exits meanwhile, and either way with the log tail in the message.
    pub async fn await_ready<F, Fut>(&mut self, timeout: Duration, what: &str, mut probe: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match probe().await {
                Ok(()) => return,
                Err(e) => e,
            };
            if let Some(status) = self.exited() {
                panic!(
                    "{} exited ({status}) while we waited for {what} (last: {last})\n{}",
                    self.name,
                    self.tail()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what} (last: {last})\n{}",
                    self.tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the process (SIGTERM, then SIGKILL after a bounded wait) and reaps it.
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(status) = self.exited() {
            return status;
        }
        let pid = self.child.id();
        sigterm(pid);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return status;
            }
            thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "{} (pid {pid}) still running {STOP_GRACE:?} after SIGTERM; sending SIGKILL",
            self.name
        );
        let _ = self.child.kill();
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("waiting for {pid}: {e}"));
        self.exit = Some(status);
        status
    }

    /// The part of the log that explains a failure, indented, with a header line.
    pub fn tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        let (picked, what): (Vec<&str>, _) = match self.tail {
            Tail::Lines(n) => (lines[lines.len().saturating_sub(n)..].to_vec(), "tail"),
            Tail::KlogProblems(n) => {
                let problems: Vec<&str> = lines
                    .into_iter()
                    .filter(|l| is_klog_problem(l) && !l.contains("Skipping API"))
                    .collect();
                let from = problems.len().saturating_sub(n);
                (problems[from..].to_vec(), "warnings and errors")
            }
        };
        let log = match &self.log {
            Some(log) => log.display().to_string(),
            None => "no log file".to_owned(),
        };
        let mut out = format!("--- {} {what} ({log}) ---\n", self.name);
        if picked.is_empty() {
            out.push_str("  (none)\n");
        }
        for line in picked {
            out.push_str("  | ");
            out.push_str(&snippet(line, 400));
            out.push('\n');
        }
        out
    }
}

/// Runs a short-lived command to the end (at most `timeout`, then SIGKILL and a
/// panic), `stdin` written to it, stdout and stderr into `log`: (exit code, output).
pub async fn run_to_end(
    name: &str,
    mut command: Command,
    stdin: Option<&str>,
    log: &Path,
    timeout: Duration,
) -> (Option<i32>, String) {
    use std::io::Write;
    if stdin.is_some() {
        command.stdin(Stdio::piped());
    }
    let file = std::fs::File::create(log)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
    let stderr = file
        .try_clone()
        .unwrap_or_else(|e| panic!("cannot dup {}: {e}", log.display()));
    command.stdout(file).stderr(stderr);
    if stdin.is_none() {
        command.stdin(Stdio::null());
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    adopt(child.id());
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("writing to {name}'s stdin: {e}"));
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().ok().flatten() {
            release(child.id());
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            release(child.id());
            panic!(
                "{name} did not finish within {timeout:?} (output: {})",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let output = std::fs::read(log)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    (status.code(), output)
}

// === children still running ===

static CHILDREN: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());
static WATCHER: Once = Once::new();

fn adopt(pid: u32) {
    WATCHER.call_once(watch_signals);
    CHILDREN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(pid);
}

fn release(pid: u32) {
    CHILDREN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&pid);
}

fn sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-s", "TERM", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// A thread with its own runtime that waits for SIGTERM or SIGINT, stops every child
/// still registered, and ends the test binary.
fn watch_signals() {
    use tokio::signal::unix::{signal, SignalKind};
    let watcher = move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the signal watcher");
        let code = runtime.block_on(async {
            let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
            let mut int = signal(SignalKind::interrupt()).expect("a SIGINT handler");
            tokio::select! {
                _ = term.recv() => 143,
                _ = int.recv() => 130,
            }
        });
        let children: Vec<u32> = CHILDREN
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect();
        eprintln!("tests: interrupted; sending SIGTERM to {children:?} and exiting (temp dirs are left behind)");
        for pid in children {
            sigterm(pid);
        }
        std::process::exit(code);
    };
    thread::Builder::new()
        .name("child-signal-watcher".into())
        .spawn(watcher)
        .expect("starting the signal watcher");
}

/// klog's `Lmmdd hh:mm:ss…` header with level W, E or F.
fn is_klog_problem(line: &str) -> bool {
    let bytes = line.as_bytes();
    bytes.len() > 5
        && matches!(bytes[0], b'W' | b'E' | b'F')
        && bytes[1..5].iter().all(u8::is_ascii_digit)
        && bytes[5] == b' '
}

impl Deref for Process {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.child
    }
}

impl DerefMut for Process {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.on_drop == OnDrop::Kill {
            // `Ok(None)`: still running. A process that exited is reaped by `try_wait`.
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
            return;
        }
        let status = self.stop();
        if thread::panicking() && self.report_on_failure {
            eprintln!("{} exited: {status}\n{}", self.name, self.tail());
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
) -> Process {
    let mut args = vec![
        format!("--secure-listen-address=[127.0.0.1]:{port}"),
        format!("--kubeconfig={}", api.kubeconfig.display()),
        format!("--upstream={upstream}"),
        format!("--tls-cert-file={}", pki.cert_path.display()),
        format!("--tls-private-key-file={}", pki.key_path.display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let child = Process::kill_on_drop(
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
pub async fn terminate(mut child: Process) -> (ExitStatus, String) {
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
