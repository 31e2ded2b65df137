# Shared by image/build.sh and e2e/images.sh: stage a root filesystem from local files.
# (sourced; needs bash, ldd, install)

# stage_binary ROOTFS SRC DEST [ARCH]: SRC installed as ROOTFS/DEST (0755), plus every
# shared library the dynamic loader lists for it, at the same path as on this machine
# (a static binary brings none). The build machine is Debian bookworm, like the
# distroless base the Dockerfile uses, so these are the same glibc and libgcc. ARCH
# (default amd64) arm64: the libraries of Debian's multiarch libc6:arm64 and
# libgcc-s1:arm64, listed by the arm64 loader under qemu-aarch64-static
# (.ci/cross-deps.sh installs them).
stage_binary() {
  local rootfs=$1 src=$2 dest=$3 arch=${4:-amd64} lib
  install -D -m 0755 "$src" "$rootfs$dest"
  while read -r lib; do
    [[ -n $lib ]] || continue
    install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
  done < <(list_libraries "$src" "$arch" | awk '/=> \// {print $3} /^[[:space:]]*\/[^ ]+ \(/ {print $1}')
}

# list_libraries SRC ARCH: ldd's output for SRC, a binary for ARCH.
list_libraries() {
  case $2 in
    amd64) ldd "$1" 2>/dev/null || true ;;
    arm64) qemu-aarch64-static /lib/ld-linux-aarch64.so.1 --list "$1" ;;
    *) echo "image: no library lister for $2" >&2; return 1 ;;
  esac
}

# stage_base ROOTFS: what distroless' base gives every image: /etc/passwd and
# /etc/group with root and nonroot (65532), /etc/nsswitch.conf, the CA bundle,
# /tmp (1777) and /home/nonroot (0700, owned by 65532: pass --owner to oci.py).
stage_base() {
  local rootfs=$1
  install -d -m 0755 "$rootfs/etc/ssl/certs" "$rootfs/home"
  install -d -m 1777 "$rootfs/tmp"
  install -d -m 0700 "$rootfs/home/nonroot"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
  printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
  [[ -s /etc/ssl/certs/ca-certificates.crt ]] ||
    { echo "image: /etc/ssl/certs/ca-certificates.crt missing (apt-get install ca-certificates)" >&2; return 1; }
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
}
