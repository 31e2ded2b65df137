#!/usr/bin/env bash
# Everything image/build.sh needs on a Debian bookworm machine (CI, or the release
# workflow's debian:bookworm container), idempotent and cached:
#   the Rust toolchain the Dockerfile pins (rustup, only where cargo is missing), the
#   arm64 cross toolchain and qemu (.ci/cross-deps.sh), cargo-auditable (image/tools.sh).
# The FIPS variant also needs cmake, perl and Go >= 1.24 (aws-lc-fips-sys): --fips.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
need=()
for p in ca-certificates gcc libc6-dev git python3 curl; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed' || need+=("$p")
done
[[ ${1:-} != --fips ]] || command -v cmake >/dev/null || need+=(cmake perl)
if ((${#need[@]})); then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  curl --proto '=https' -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain 1.95
  # shellcheck disable=SC1091
  source "$HOME/.cargo/env"
  [[ -z ${GITHUB_PATH:-} ]] || echo "$HOME/.cargo/bin" >>"$GITHUB_PATH"
fi
# In the workflow's container the checkout belongs to another uid: let git read it
# (the provenance records the commit).
[[ -z ${GITHUB_WORKSPACE:-} ]] || git config --global --add safe.directory "$GITHUB_WORKSPACE"
[[ ${1:-} != --fips ]] || .ci/install-go.sh
.ci/cross-deps.sh
image/tools.sh
