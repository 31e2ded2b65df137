//! A child process that is stopped by its PID when its guard is dropped: SIGTERM, a
//! bounded wait, then SIGKILL. Output (stdout and stderr) goes to one log file, whose
//! tail is printed when the test using the process fails.
//!
//! SIGTERM is sent with the `kill` program: std can only send SIGKILL, the lints forbid
//! `unsafe` (so no libc), and one short-lived process per stop is not worth a
//! dependency.
//!
//! Destructors do not run when the test binary is killed by a signal, so every live
//! child is also registered here, and the first child starts a watcher thread: on
//! SIGTERM (a CI timeout) or SIGINT (Ctrl-C) it sends SIGTERM to every registered child
//! and exits 143 or 130. Only SIGKILL of the test binary leaves children behind.

use std::{
    collections::BTreeSet,
    fs::OpenOptions,
    future::Future,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Mutex, Once, PoisonError},
    thread,
    time::{Duration, Instant},
};

use super::snippet;

/// How long a process may take to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Which part of the log explains a failure.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Tail {
    /// The last lines as they are.
    Lines(usize),
    /// The last klog warning/error/fatal lines (`W1201 …`), for kube-apiserver whose
    /// info lines drown everything else.
    KlogProblems(usize),
}

pub(crate) struct Process {
    name: String,
    child: Child,
    log: PathBuf,
    tail: Tail,
    /// Whether dropping the guard during a failing test prints the log tail (the
    /// control plane prints its own, once per failing test).
    report_on_failure: bool,
    exit: Option<ExitStatus>,
}

impl Process {
    /// Starts `command` with stdin closed and stdout+stderr appended to `log`.
    pub(crate) fn spawn(name: &str, mut command: Command, log: &Path, tail: Tail) -> Self {
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
            log: log.to_owned(),
            tail,
            report_on_failure: true,
            exit: None,
        }
    }

    /// Leaves printing the log tail on failure to the owner.
    pub(crate) fn quiet_on_failure(mut self) -> Self {
        self.report_on_failure = false;
        self
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole log so far.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// `Some(status)` once the process has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
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
    pub(crate) async fn await_ready<F, Fut>(&mut self, timeout: Duration, what: &str, mut probe: F)
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
    pub(crate) fn stop(&mut self) -> ExitStatus {
        if let Some(status) = self.exited() {
            return status;
        }
        let pid = self.child.id();
        terminate(pid);
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
    pub(crate) fn tail(&self) -> String {
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
        let mut out = format!("--- {} {what} ({}) ---\n", self.name, self.log.display());
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
pub(crate) async fn run_to_end(
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

fn terminate(pid: u32) {
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
        eprintln!("e2e: interrupted; sending SIGTERM to {children:?} and exiting (temp dirs are left behind)");
        for pid in children {
            terminate(pid);
        }
        std::process::exit(code);
    };
    thread::Builder::new()
        .name("e2e-signal-watcher".into())
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

impl Drop for Process {
    fn drop(&mut self) {
        let status = self.stop();
        if thread::panicking() && self.report_on_failure {
            eprintln!("{} exited: {status}\n{}", self.name, self.tail());
        }
    }
}
