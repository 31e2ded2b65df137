#!/usr/bin/env bash
# Run cargo for one Linux architecture from this amd64 Debian bookworm machine.
#
#   image/cargo-arch.sh ARCH CARGO-ARGS...        ARCH: amd64 | arm64
#
# amd64: the toolchain on PATH (rustup's, as the Dockerfile's rust image), target dir
# ${CARGO_TARGET_DIR:-target}; the binary lands in <target-dir>/release/.
# arm64: Debian's own Rust (/usr/bin/cargo, /usr/bin/rustc from rustc-web/cargo-web,
# .ci/cross-deps.sh installs them) with Debian's arm64 standard library
# (libstd-rust-web-dev:arm64): rustup's toolchain has no arm64 std here and cannot
# fetch one. A different compiler means a separate target dir:
# ${SCRAPE_GUARD_CROSS_TARGET_DIR:-<target-dir>/cross}; the binary lands in
# <that>/aarch64-unknown-linux-gnu/release/. Test binaries run under
# qemu-aarch64-static — without -L: the multiarch libc6:arm64 provides the loader, and
# -L /usr/aarch64-linux-gnu mixes two glibc builds and hangs in pthread_create.
set -euo pipefail
arch=${1:?usage: image/cargo-arch.sh amd64|arm64 CARGO-ARGS...}
shift
case $arch in
  amd64) exec cargo "$@" ;;
  arm64)
    export CARGO_TARGET_DIR=${SCRAPE_GUARD_CROSS_TARGET_DIR:-${CARGO_TARGET_DIR:-target}/cross}
    export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
    export CARGO_BUILD_TARGET=aarch64-unknown-linux-gnu
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64-static
    export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
    export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
    [[ -x /usr/bin/cargo && -d /usr/lib/rustlib/aarch64-unknown-linux-gnu ]] ||
      { echo "cargo-arch: Debian's Rust for arm64 is missing: run .ci/cross-deps.sh (root)" >&2; exit 1; }
    # Debian's cargo finds `cargo auditable` on PATH like any subcommand.
    exec /usr/bin/cargo "$@"
    ;;
  *) echo "cargo-arch: unknown architecture $arch (amd64, arm64)" >&2; exit 2 ;;
esac
