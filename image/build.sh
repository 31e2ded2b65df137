#!/usr/bin/env bash
# The scrape-guard image without a Docker daemon or a registry: the recipe of the
# Dockerfile, from local files.
#
#   image/build.sh [OUT.tar] [NAME]     (default target/image/scrape-guard.oci.tar,
#                                        ghcr.io/scrape-guard/scrape-guard:0.1.0)
#
# Same binary as the Dockerfile and the benchmarks: `cargo build --release --locked
# --bin scrape-guard` for x86_64-unknown-linux-gnu (glibc, fat LTO, stripped). Same
# root filesystem as gcr.io/distroless/cc-debian12:nonroot as far as scrape-guard uses
# it: glibc and libgcc from this Debian bookworm machine, the CA bundle, passwd/group
# with nonroot (65532), /tmp. No shell. Runs as 65532:65532; works with a read-only
# root filesystem (it writes nothing). The result is an OCI archive:
#   ctr -n k8s.io images import target/image/scrape-guard.oci.tar
#   skopeo copy oci-archive:target/image/scrape-guard.oci.tar docker://REGISTRY/…
set -euo pipefail
cd "$(dirname "$0")/.."
source image/lib.sh

OUT=${1:-target/image/scrape-guard.oci.tar}
NAME=${2:-ghcr.io/scrape-guard/scrape-guard:0.1.0}
TARGET_DIR=${CARGO_TARGET_DIR:-target}

cargo build --release --locked --bin scrape-guard
BIN="$TARGET_DIR/release/scrape-guard"

ROOTFS=$(mktemp -d)
trap 'rm -rf "$ROOTFS"' EXIT
stage_base "$ROOTFS"
stage_binary "$ROOTFS" "$BIN" /scrape-guard
[[ ! -e $ROOTFS/bin/sh && ! -e $ROOTFS/usr/bin/sh ]] || { echo "image: a shell got into the image" >&2; exit 1; }

python3 image/oci.py "$ROOTFS" "$OUT" --name "$NAME" \
  --user 65532:65532 --entrypoint /scrape-guard --port 8443 \
  --owner /home/nonroot=65532:65532
