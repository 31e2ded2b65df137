//! The memory limit of the process's cgroup, for `scrape_guard_memory_limit_bytes`.
//!
//! The cgroup is found as runc, cAdvisor and Go's automaxprocs find it: the process's
//! own path from `/proc/self/cgroup`, the hierarchy's mount from `/proc/self/mountinfo`
//! (a container sees its own cgroup mounted at the root of the hierarchy, with or
//! without a cgroup namespace). The limit in force is the lowest on the way from that
//! cgroup to the mount's root: a pod's limit sits on the container's cgroup, a node's
//! on a parent. cgroup v1's memory controller is used when the process has one (hybrid
//! hosts mount v2 without it); v2 otherwise.

use std::{fs, path::Path};

/// v1 writes "no limit" as the largest page-aligned `i64` (0x7FFFFFFFFFFFF000 with 4 KiB
/// pages); anything from 2^62 bytes (4 EiB) up is taken as that.
const V1_UNLIMITED: u64 = 1 << 62;

/// The limit in bytes, or `None` when there is none (or no cgroup to read).
pub(super) fn memory_limit() -> Option<u64> {
    let cgroup = fs::read_to_string("/proc/self/cgroup").ok()?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    limit(&cgroup, &mountinfo)
}

/// Which hierarchy, and the file that holds its limit.
#[derive(Clone, Copy)]
enum Version {
    V1,
    V2,
}

impl Version {
    fn limit_file(self) -> &'static str {
        match self {
            Self::V1 => "memory.limit_in_bytes",
            Self::V2 => "memory.max",
        }
    }

    /// A limit file's contents: `None` when it says "unlimited".
    fn parse(self, text: &str) -> Option<u64> {
        let text = text.trim();
        match self {
            Self::V2 if text == "max" => None,
            Self::V1 => text.parse().ok().filter(|&v| v < V1_UNLIMITED),
            Self::V2 => text.parse().ok(),
        }
    }
}

fn limit(cgroup: &str, mountinfo: &str) -> Option<u64> {
    let (version, own) = own_cgroup(cgroup)?;
    let (root, mount_point) = mount(mountinfo, version)?;
    let relative = match own.strip_prefix(root) {
        Some(rest) => rest.trim_start_matches('/'),
        // Not below the mount's root: only the mount itself is ours to read.
        None => "",
    };
    let mount_point = Path::new(mount_point);
    let mut dir = mount_point.join(relative);
    let mut lowest: Option<u64> = None;
    loop {
        let found = fs::read_to_string(dir.join(version.limit_file()))
            .ok()
            .and_then(|text| version.parse(&text));
        lowest = match (lowest, found) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if dir == mount_point || !dir.pop() || !dir.starts_with(mount_point) {
            return lowest;
        }
    }
}

/// The process's memory cgroup: v1's `memory` controller line if there is one, else
/// v2's `0::` line.
fn own_cgroup(cgroup: &str) -> Option<(Version, &str)> {
    let mut v2 = None;
    for line in cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "memory") {
            return Some((Version::V1, path));
        }
        if id == "0" && controllers.is_empty() {
            v2 = Some((Version::V2, path));
        }
    }
    v2
}

/// The hierarchy's mount: (its root within the hierarchy, where it is mounted).
fn mount(mountinfo: &str, version: Version) -> Option<(&str, &str)> {
    mountinfo.lines().find_map(|line| {
        // "id parent major:minor root mount-point options [optional…] - type source super"
        let (mount, filesystem) = line.split_once(" - ")?;
        let mut mount = mount.split(' ');
        let root = mount.nth(3)?;
        let mount_point = mount.next()?;
        let mut filesystem = filesystem.split(' ');
        let fs_type = filesystem.next()?;
        let options = filesystem.nth(1).unwrap_or_default();
        let ours = match version {
            Version::V2 => fs_type == "cgroup2",
            Version::V1 => fs_type == "cgroup" && options.split(',').any(|o| o == "memory"),
        };
        ours.then_some((root, mount_point))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, text: &str) {
        fs::create_dir_all(dir).expect("a test dir");
        fs::write(dir.join(file), text).expect("a test file");
    }

    #[test]
    fn v2_takes_the_lowest_limit_on_the_way_up() {
        let tmp = tempfile::tempdir().expect("a temp dir");
        let mount = tmp.path().join("cgroup");
        let pod = mount.join("kubepods/pod1");
        write(&mount.join("kubepods"), "memory.max", "1073741824\n");
        write(&pod, "memory.max", "max\n");
        write(&pod.join("sidecar"), "memory.max", "41943040\n");
        let mountinfo = format!(
            "25 1 0:22 / /proc rw - proc proc rw\n\
             30 25 0:26 / {} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
            mount.display()
        );
        let in_sidecar = "0::/kubepods/pod1/sidecar\n";
        assert_eq!(limit(in_sidecar, &mountinfo), Some(41_943_040));
        // Unlimited itself: the parent's limit applies.
        assert_eq!(
            limit("0::/kubepods/pod1\n", &mountinfo),
            Some(1_073_741_824)
        );
        // Nothing limited anywhere (the root has no memory.max at all).
        assert_eq!(limit("0::/\n", &mountinfo), None);
    }

    #[test]
    fn v2_in_a_container_sees_its_cgroup_at_the_mount() {
        // A cgroup namespace: the path is "/", the mount is the container's cgroup.
        let tmp = tempfile::tempdir().expect("a temp dir");
        write(tmp.path(), "memory.max", "41943040\n");
        let mountinfo = format!(
            "30 25 0:26 / {} ro - cgroup2 cgroup rw\n",
            tmp.path().display()
        );
        assert_eq!(limit("0::/\n", &mountinfo), Some(41_943_040));
        // No namespace, the container's cgroup bind-mounted: its root is the path.
        let mountinfo = format!(
            "30 25 0:26 /kubepods/pod1/c1 {} ro - cgroup2 cgroup rw\n",
            tmp.path().display()
        );
        assert_eq!(
            limit("0::/kubepods/pod1/c1\n", &mountinfo),
            Some(41_943_040)
        );
    }

    #[test]
    fn v1_uses_the_memory_controller_and_knows_its_unlimited() {
        let tmp = tempfile::tempdir().expect("a temp dir");
        let memory = tmp.path().join("memory");
        write(&memory, "memory.limit_in_bytes", "9223372036854771712\n");
        write(
            &memory.join("job"),
            "memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        write(
            &memory.join("limited"),
            "memory.limit_in_bytes",
            "268435456\n",
        );
        // A hybrid host: v2 is mounted too, without the memory controller.
        let mountinfo = format!(
            "32 31 0:29 / {}/cpu rw - cgroup cgroup rw,cpu\n\
             35 31 0:32 / {} rw,relatime - cgroup cgroup rw,memory\n\
             41 31 0:38 / {}/unified rw - cgroup2 cgroup2 rw\n",
            tmp.path().display(),
            memory.display(),
            tmp.path().display(),
        );
        let cgroup = |path: &str| format!("5:cpu:/\n4:memory:{path}\n0::/\n");
        assert_eq!(limit(&cgroup("/job"), &mountinfo), None);
        assert_eq!(limit(&cgroup("/limited"), &mountinfo), Some(268_435_456));
    }

    #[test]
    fn no_cgroup_no_limit() {
        assert_eq!(limit("", ""), None);
        assert_eq!(
            limit("0::/\n", "25 1 0:22 / /proc rw - proc proc rw\n"),
            None
        );
    }
}
