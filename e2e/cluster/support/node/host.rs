//! What the node cluster does to the machine, and undoing it: the network namespace
//! check, the kubelet's cgroup root, the global sysctls the kubelet sets, the mounts
//! under the cluster's dir, and container processes that outlive the kubelet.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// Global sysctls the kubelet 1.20 sets (`setupKernelTunables`); put back on drop.
const KUBELET_SYSCTLS: [&str; 6] = [
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
];
/// The cgroup v1 controllers the kubelet makes its hierarchy in, and the unified
/// (v2) tree beside them where runc mirrors it.
const CONTROLLERS: [&str; 10] = [
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd",
    "unified",
];

pub(super) struct Host {
    dir: PathBuf,
    cgroup_root: String,
    sysctls: Vec<(PathBuf, String)>,
}

/// Panics unless this process runs where `e2e/netns.sh` put it: its own network
/// namespace, whose `lo` carries `node_ip`. (Binding the address proves the second.)
pub(super) fn check_namespace(node_ip: &str) {
    let hint = "the node suite runs in a network namespace of its own: \
                e2e/netns.sh cargo test -p scrape-guard-e2e --test cluster -- --ignored node_ (as root; `make e2e` does it)";
    assert_eq!(
        std::env::var("SCRAPE_GUARD_E2E_NETNS").as_deref(),
        Ok("1"),
        "{hint}"
    );
    if let Err(e) = std::net::TcpListener::bind((node_ip, 0)) {
        panic!("cannot bind {node_ip}: {e}; {hint}");
    }
}

impl Host {
    /// Records the sysctls and makes the (empty) cgroup root for the kubelet.
    pub(super) fn prepare(dir: &Path) -> Self {
        let sysctls = KUBELET_SYSCTLS
            .iter()
            .filter_map(|name| {
                let path = Path::new("/proc/sys").join(name);
                let value = std::fs::read_to_string(&path).ok()?;
                Some((path, value.trim().to_owned()))
            })
            .collect();
        let cgroup_root = format!("scrape-guard-e2e-{}", std::process::id());
        for controller in CONTROLLERS {
            let base = Path::new("/sys/fs/cgroup").join(controller);
            if base.is_dir() {
                let _ = std::fs::create_dir_all(base.join(&cgroup_root));
            }
        }
        Self {
            dir: dir.to_owned(),
            cgroup_root,
            sysctls,
        }
    }

    pub(super) fn cgroup_root(&self) -> &str {
        &self.cgroup_root
    }

    /// The memory cgroup of a container (cgroup v1, named by its id).
    pub(super) fn find_memory_cgroup(&self, container_id: &str) -> Option<PathBuf> {
        find_dir(
            &Path::new("/sys/fs/cgroup/memory").join(&self.cgroup_root),
            container_id,
        )
    }

    /// SIGKILL, by PID, to every process in the kubelet's cgroups (the containers) and
    /// to every containerd shim serving `socket`: they outlive the kubelet and
    /// containerd by design.
    pub(super) fn kill_containers(&self, socket: &Path) {
        let mut pids = Vec::new();
        collect_procs(
            &Path::new("/sys/fs/cgroup/pids").join(&self.cgroup_root),
            &mut pids,
        );
        let socket = socket.display().to_string();
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline);
                if cmdline.contains("containerd-shim") && cmdline.contains(&socket) {
                    pids.push(pid);
                }
            }
        }
        if !pids.is_empty() {
            eprintln!(
                "node cluster: SIGKILL to {} container processes and shims",
                pids.len()
            );
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(pids.iter().map(u32::to_string))
                .status();
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    }

    /// Unmounts everything under the cluster's dir, removes the kubelet's cgroups
    /// and puts the sysctls back.
    pub(super) fn clean_up(&self) {
        let prefix = self.dir.display().to_string();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .filter(|point| point.starts_with(&prefix))
            .collect();
        mounts.sort_by_key(|point| std::cmp::Reverse(point.len()));
        for point in mounts {
            let _ = Command::new("umount").arg("-l").arg(point).status();
        }
        for controller in CONTROLLERS {
            let root = Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(&self.cgroup_root);
            remove_cgroup(&root);
        }
        for (path, value) in &self.sysctls {
            if let Err(e) = std::fs::write(path, value) {
                eprintln!("could not restore {} to {value}: {e}", path.display());
            }
        }
    }
}

fn find_dir(root: &Path, name: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir(root).ok()?;
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if entry.file_name() == name {
            return Some(path);
        }
        if let Some(found) = find_dir(&path, name) {
            return Some(found);
        }
    }
    None
}

fn collect_procs(dir: &Path, pids: &mut Vec<u32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                collect_procs(&entry.path(), pids);
            }
        }
    }
}

/// rmdir, deepest first (a cgroup directory is removed with rmdir, not unlink).
fn remove_cgroup(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                remove_cgroup(&entry.path());
            }
        }
    }
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir(dir) {
            eprintln!("could not remove cgroup {}: {e}", dir.display());
        }
    }
}
