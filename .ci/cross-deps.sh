#!/usr/bin/env bash
# The Debian packages the arm64 build needs, installed once and kept:
#   rustc-web, cargo-web     Debian's Rust (bookworm-security; 1.96 today), whose
#                            libstd-rust-web-dev exists for arm64 — rustup's toolchain
#                            here has no arm64 std and cannot download one
#   libstd-rust-web-dev:arm64, libc6-dev:arm64, gcc-aarch64-linux-gnu
#                            the arm64 standard library, glibc and a linker/C compiler
#                            (aws-lc-sys compiles C)
#   libgcc-s1:arm64          the runtime's libgcc_s (the image ships it, as distroless/cc does)
#   qemu-user-static         runs arm64 test binaries and the smoke test on this amd64 host
# The .debs are kept in /var/cache/scrape-guard-build/apt, so a machine that lost its
# installed packages reinstalls without downloading; one that has them skips everything.
set -euo pipefail
CACHE=${SCRAPE_GUARD_BUILD_CACHE:-/var/cache/scrape-guard-build}
PKGS=(rustc-web cargo-web libstd-rust-web-dev:arm64 libc6-dev:arm64 libgcc-s1:arm64
      gcc-aarch64-linux-gnu qemu-user-static binutils-aarch64-linux-gnu)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "cross-deps: all installed ($(/usr/bin/rustc --version))"
  exit 0
fi
echo "cross-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$CACHE/apt/partial"
dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
apt_opts=(-o "Dir::Cache::archives=$CACHE/apt" -o APT::Keep-Downloaded-Packages=true)
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${apt_opts[@]}" "${missing[@]}" >/dev/null
/usr/bin/rustc --version
