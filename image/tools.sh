#!/usr/bin/env bash
# cargo-auditable, from crates.io, built once into ${SCRAPE_GUARD_BUILD_CACHE}/tools/bin
# (default /var/cache/scrape-guard-build) and kept: image/build.sh builds through it so
# every binary carries its dependency list. A pinned version, so the provenance names it.
set -euo pipefail
CACHE=${SCRAPE_GUARD_BUILD_CACHE:-/var/cache/scrape-guard-build}
VERSION=0.7.7
bin="$CACHE/tools/bin/cargo-auditable"
if [[ -x $bin ]] && "$bin" --version 2>/dev/null | grep -q "$VERSION"; then
  exit 0
fi
mkdir -p "$CACHE/tools"
# A throw-away target dir: never the project's, whose CARGO_TARGET_DIR may be set.
env -u CARGO_TARGET_DIR cargo install --quiet --locked --root "$CACHE/tools" cargo-auditable --version "$VERSION"
