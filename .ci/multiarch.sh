#!/usr/bin/env bash
# CI: the arm64 build and the release images, on this amd64 machine.
#   1. Debian's cross toolchain and qemu (.ci/cross-deps.sh) and cargo-auditable
#      (image/tools.sh), both kept in /var/cache/scrape-guard-build
#   2. the unit tests cross-built for arm64 and run under qemu-aarch64-static; in the
#      release profile, so their dependencies are the image build's (built once)
#   3. image/build.sh: one archive, linux/amd64 + linux/arm64, with SBOMs and provenance
#   4. .ci/image-check.py: the index, both platforms, digests, config architectures,
#      the embedded dependency list against the SBOM, the provenance subjects
#   5. the arm64 binary taken out of the image, smoke-tested under qemu (200/403/401)
#   6. the release workflow: actionlint, and its push step in dry-run mode
# The arm64 target dir lives in the cache too: a warm run rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${SCRAPE_GUARD_BUILD_CACHE:-/var/cache/scrape-guard-build}
export SCRAPE_GUARD_CROSS_TARGET_DIR=${SCRAPE_GUARD_CROSS_TARGET_DIR:-$CACHE/target}
export PATH="$CACHE/tools/bin:$PATH"
t0=$SECONDS
lap() { printf 'multiarch: %-44s %4ds (total %ds)\n' "$1" $((SECONDS - t1)) $((SECONDS - t0)); t1=$SECONDS; }
t1=$SECONDS

.ci/release-setup.sh
lap "toolchains (apt, cargo-auditable)"

# One unit test is skipped under qemu: it reads this process's /proc/self/stat, whose
# memory and CPU fields qemu-user's emulation writes as 0 (vsize, rss, utime); the
# parser it checks is tested on fixed text in the same module, and natively in `cargo test`.
image/cargo-arch.sh arm64 test --release --locked --lib -- \
  --skip metrics::process::tests::this_process_reads_as_client_golang_would_report_it
lap "arm64 unit tests under qemu"

image/build.sh
lap "image/build.sh (amd64 + arm64)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 .ci/image-check.py target/image/scrape-guard.oci.tar --extract "arm64=$work/scrape-guard"
python3 .ci/smoke-standalone.py "$work/scrape-guard" qemu-aarch64-static
lap "index check, arm64 smoke test under qemu"

.ci/actionlint.sh
.ci/release-push.sh --dry-run target/image/scrape-guard.oci.tar ghcr.io/scrape-guard/scrape-guard:0.1.0
lap "release workflow: actionlint, push dry run"
ls -l target/image/
