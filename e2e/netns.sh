#!/usr/bin/env bash
# e2e/netns.sh CMD...: run CMD (the end-to-end suite) in a network and mount namespace
# of its own, and clean up after it.
#
# The network namespace has only `lo`, carrying 127.0.0.1 and the node's address
# 10.99.0.1/32 (the kubelet refuses a loopback node IP), and no route out: nothing the
# suite starts can reach another host. The mount namespace is a slave of the host's
# (host mounts show up inside; nothing mounted inside shows up outside), shared
# within itself for the kubelet's HostToContainer volumes, with tmpfs on /var/log/pods and /var/log/containers,
# where the kubelet writes container logs whatever its --root-dir. Both namespaces
# end with the last process in them.
#
# The kubelet also changes a few global sysctls (vm.overcommit_memory, kernel.panic,
# …) and makes cgroups under /sys/fs/cgroup/*/scrape-guard-e2e*: the node suite puts
# them back and removes them itself; this script does it again after CMD exits,
# whatever happened to CMD, and kills what is left in the namespace by PID.
set -euo pipefail

NODE_IP=10.99.0.1
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
         kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

if [[ ${SCRAPE_GUARD_E2E_NETNS:-} != 1 ]]; then
  [[ $(id -u) == 0 ]] || { echo "netns.sh: must run as root (unshare, mount)" >&2; exit 1; }
  export SCRAPE_GUARD_E2E_NETNS=1
  exec unshare --net --mount --propagation slave -- "$0" "$@"
fi

# The cleanup below must not die half-way because whoever reads our output went away.
trap '' PIPE
ip link set lo up
ip addr add "$NODE_IP/32" dev lo
# Shared within this namespace (still a slave of the host's, so nothing propagates
# out): runc wants the source of a HostToContainer (rslave) volume such as the host's
# /proc to be a shared or slave mount, and a private host mount stays private after
# unshare's --propagation slave.
mount --make-rshared /
for d in /var/log/pods /var/log/containers; do
  mkdir -p "$d"
  mount -t tmpfs -o mode=0755,size=256m e2e-logs "$d"
done
saved=()
for s in "${SYSCTLS[@]}"; do saved+=("$s=$(sysctl -n "$s")"); done

cleanup() {
  local pid ours
  ours=$(readlink /proc/self/ns/net)
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    [[ $(readlink "/proc/$pid/ns/net" 2>/dev/null) == "$ours" ]] || continue
    echo "netns.sh: killing leftover $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-120) (pid $pid)" >&2
    kill -KILL "$pid" 2>/dev/null || true
  done
  for s in "${saved[@]}"; do sysctl -q -w "$s" >/dev/null || true; done
  # cgroups the kubelet made (deepest first; a busy one stays and is reported)
  find /sys/fs/cgroup -mindepth 2 -depth -type d -path '*/scrape-guard-e2e*' -exec rmdir {} + 2>/dev/null || true
  if find /sys/fs/cgroup -mindepth 2 -type d -path '*/scrape-guard-e2e*' 2>/dev/null | grep -q .; then
    echo "netns.sh: WARNING: cgroups left under /sys/fs/cgroup/*/scrape-guard-e2e*" >&2
  fi
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

rc=0
"$@" || rc=$?
exit $rc
