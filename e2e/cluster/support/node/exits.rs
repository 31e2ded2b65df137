//! Containers' exit codes as containerd saw them: `ctr events`, read from before a
//! test acts until it drops the watch.
//!
//! The pod's status is the kubelet's word, and the kubelet may never send the last one
//! (seen in CI right after an apiserver restart: a rolled-out pod was deleted with no
//! terminated state for any of its containers). containerd publishes a `/tasks/exit`
//! event for every task that ends, whatever the kubelet does next, so a test that must
//! know how a container ended asks here as well.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

/// The `ctr events` child and what it has reported so far: container ID → exit status.
pub(crate) struct TaskExits {
    child: Child,
    seen: Arc<Mutex<HashMap<String, i32>>>,
}

// === impl TaskExits ===

impl TaskExits {
    /// Starts `ctr events` on containerd's `socket`.
    pub(super) fn watch(socket: &Path) -> Self {
        let mut child = Command::new("ctr")
            .arg("--address")
            .arg(socket)
            .arg("events")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting ctr events");
        let stdout = child.stdout.take().expect("ctr's stdout");
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let record = seen.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some((container, status)) = task_exit(&line) {
                    record.lock().expect("the exits").insert(container, status);
                }
            }
        });
        Self { child, seen }
    }

    /// How `container` (a containerd ID, as in a pod's `containerID` without the
    /// `containerd://`) ended, waiting up to `timeout` for containerd to say.
    pub(crate) fn of(&self, container: &str, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.seen.lock().expect("the exits").get(container) {
                return Some(*status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for TaskExits {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A container's main task exit in one line of `ctr events`:
/// `<date> <time> +0000 UTC k8s.io /tasks/exit {"container_id":"…","id":"…",…}`.
/// `exit_status` is left out when it is 0; an exec's exit (`id` ≠ `container_id`) is
/// not the container's.
fn task_exit(line: &str) -> Option<(String, i32)> {
    let (_, event) = line.split_once(" /tasks/exit ")?;
    let event: serde_json::Value = serde_json::from_str(event.trim()).ok()?;
    let container = event.get("container_id")?.as_str()?;
    if event.get("id").and_then(|id| id.as_str()) != Some(container) {
        return None;
    }
    let status = event
        .get("exit_status")
        .and_then(|s| s.as_i64())
        .unwrap_or(0);
    Some((container.to_owned(), i32::try_from(status).ok()?))
}

#[cfg(test)]
mod tests {
    use super::task_exit;

    #[test]
    fn reads_containerds_task_exit_lines() {
        // As containerd 1.6's `ctr events` prints them (a SIGTERM'd pause, a SIGKILL'd one).
        let clean = r#"2026-12-03 15:23:58.799775783 +0000 UTC k8s.io /tasks/exit {"container_id":"t1","id":"t1","pid":21788,"exited_at":"2026-12-03T15:23:58.799686946Z"}"#;
        let killed = r#"2026-12-03 15:24:01.950266641 +0000 UTC k8s.io /tasks/exit {"container_id":"t2","id":"t2","pid":21851,"exit_status":137,"exited_at":"2026-12-03T15:24:01.950229321Z"}"#;
        let exec = r#"2026-12-03 15:24:01.950266641 +0000 UTC k8s.io /tasks/exit {"container_id":"t2","id":"probe","pid":9,"exit_status":1}"#;
        let start = r#"2026-12-03 15:23:56.763232063 +0000 UTC k8s.io /tasks/start {"container_id":"t1","pid":21788}"#;
        assert_eq!(task_exit(clean), Some(("t1".to_owned(), 0)));
        assert_eq!(task_exit(killed), Some(("t2".to_owned(), 137)));
        assert_eq!(task_exit(exec), None);
        assert_eq!(task_exit(start), None);
    }
}
