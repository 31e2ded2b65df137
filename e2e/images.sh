#!/usr/bin/env bash
# The images the node suite (e2e/cluster/node.rs) runs, as OCI archives, built
# without a daemon or a registry from local files (image/oci.py):
#
#   scrape-guard          image/build.sh: the release binary, as the Dockerfile builds it
#   node-exporter         Debian's prometheus-node-exporter 1.5 and its libraries
#   kube-state-metrics    a stand-in (e2e/fixtures/ksm-standin; the real one is not in
#                         Debian and cannot be built offline)
#   pause                 build/pause/linux/pause.c from the kubernetes source (provision.sh)
#
# Into ${E2E_IMAGES:-target/e2e-images}/*.oci.tar. The names are what the suite's
# kustomize overlay (e2e/cluster/node/overlay) maps deploy/'s images to.
set -euo pipefail
cd "$(dirname "$0")/.."
source image/lib.sh
E2E_CACHE="${E2E_CACHE:-/var/cache/scrape-guard-e2e}"
OUT="${E2E_IMAGES:-target/e2e-images}"
mkdir -p "$OUT"
log() { printf 'images: %s\n' "$*" >&2; }

log "scrape-guard (image/build.sh)"
# This machine's platform only: containerd here imports one.
SCRAPE_GUARD_PLATFORMS=linux/amd64 image/build.sh "$OUT/scrape-guard.oci.tar" e2e.local/scrape-guard:dev >&2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log "node-exporter ($(prometheus-node-exporter --version 2>&1 | head -n1))"
mkdir -p "$work/ne"
stage_base "$work/ne"
stage_binary "$work/ne" "$(command -v prometheus-node-exporter)" /bin/node_exporter
python3 image/oci.py "$work/ne" "$OUT/node-exporter.oci.tar" --name e2e.local/node-exporter:debian \
  --user 65534:65534 --entrypoint /bin/node_exporter --port 9100 >&2

log "kube-state-metrics stand-in (go build e2e/fixtures/ksm-standin)"
mkdir -p "$work/ksm" "$work/gocache"
GO111MODULE=off CGO_ENABLED=0 GOCACHE="$work/gocache" GOFLAGS= \
  go build -ldflags "-s -w" -o "$work/kube-state-metrics" e2e/fixtures/ksm-standin/main.go
stage_base "$work/ksm"
stage_binary "$work/ksm" "$work/kube-state-metrics" /kube-state-metrics
python3 image/oci.py "$work/ksm" "$OUT/kube-state-metrics.oci.tar" --name e2e.local/kube-state-metrics:standin \
  --user 65534:65534 --entrypoint /kube-state-metrics --port 8081 >&2

log "pause ($E2E_CACHE/bin/pause)"
[[ -x $E2E_CACHE/bin/pause ]] || { echo "images: $E2E_CACHE/bin/pause missing: run e2e/provision.sh" >&2; exit 1; }
mkdir -p "$work/pause"
stage_binary "$work/pause" "$E2E_CACHE/bin/pause" /pause
python3 image/oci.py "$work/pause" "$OUT/pause.oci.tar" --name registry.k8s.io/pause:3.2 \
  --entrypoint /pause >&2
ls -l "$OUT"
