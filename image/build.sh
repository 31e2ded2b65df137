#!/usr/bin/env bash
# The scrape-guard image without a Docker daemon or a registry: the recipe of the
# Dockerfile, from local files, for linux/amd64 and linux/arm64 in one archive.
#
#   image/build.sh [--fips] [OUT.tar] [NAME]
#       default OUT  target/image/scrape-guard.oci.tar        (--fips: scrape-guard-fips.oci.tar)
#       default NAME ghcr.io/scrape-guard/scrape-guard:0.1.0  (--fips: tag suffix -fips)
#       SCRAPE_GUARD_PLATFORMS="linux/amd64 linux/arm64" (the default) picks the platforms
#
# Per platform the same binary as the Dockerfile and the benchmarks: `cargo build
# --release --locked --bin scrape-guard` (glibc, fat LTO, stripped), through `cargo
# auditable` so the binary carries its dependency list (trivy, grype and syft read it).
# amd64 with the toolchain on PATH; arm64 cross-compiled with Debian's Rust
# (image/cargo-arch.sh says why and how). --fips adds `--features fips` (the FIPS
# module, see docs/releases.md). Same root filesystem as gcr.io/distroless/cc-debian12:nonroot as
# far as scrape-guard uses it: glibc and libgcc of the platform from this Debian
# bookworm machine (multiarch packages for arm64), the CA bundle, passwd/group with
# nonroot (65532), /tmp. No shell. Runs as 65532:65532; works with a read-only root
# filesystem (it writes nothing). Beside OUT:
#   <base>.summary.json            digests and sizes (index, manifests, layers)
#   <base>.linux-ARCH.cdx.json     CycloneDX SBOM per platform (image/sbom.py)
#   <base>.provenance.json         in-toto statement, SLSA provenance v1 (image/provenance.py)
# The archive imports and pushes as one multi-arch tag:
#   ctr -n k8s.io images import --all-platforms target/image/scrape-guard.oci.tar
#   skopeo copy --all oci-archive:target/image/scrape-guard.oci.tar docker://REGISTRY/…
set -euo pipefail
cd "$(dirname "$0")/.."
source image/lib.sh

variant=default features=()
if [[ ${1:-} == --fips ]]; then
  variant=fips features=(--features fips)
  shift
fi
suffix=${features:+-$variant}
OUT=${1:-target/image/scrape-guard$suffix.oci.tar}
NAME=${2:-ghcr.io/scrape-guard/scrape-guard:0.1.0$suffix}
PLATFORMS=${SCRAPE_GUARD_PLATFORMS:-linux/amd64 linux/arm64}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
base=${OUT%.oci.tar}
base=${base%.tar}

image/tools.sh # cargo-auditable
export PATH="${SCRAPE_GUARD_BUILD_CACHE:-/var/cache/scrape-guard-build}/tools/bin:$PATH"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
platform_args=() sbom_args=()
for platform in $PLATFORMS; do
  arch=${platform#linux/}
  case $arch in
    amd64) bin="$TARGET_DIR/release/scrape-guard" triple=x86_64-unknown-linux-gnu ;;
    arm64)
      bin="${SCRAPE_GUARD_CROSS_TARGET_DIR:-$TARGET_DIR/cross}/aarch64-unknown-linux-gnu/release/scrape-guard"
      triple=aarch64-unknown-linux-gnu ;;
    *) echo "image: $platform is not built here (linux/amd64, linux/arm64; see docs/releases.md)" >&2; exit 2 ;;
  esac
  echo "image: $platform ($variant)" >&2
  image/cargo-arch.sh "$arch" auditable build --release --locked --bin scrape-guard "${features[@]}"

  rootfs="$WORK/$arch"
  stage_base "$rootfs"
  stage_binary "$rootfs" "$bin" /scrape-guard "$arch"
  [[ ! -e $rootfs/bin/sh && ! -e $rootfs/usr/bin/sh ]] || { echo "image: a shell got into the image" >&2; exit 1; }
  platform_args+=(--platform "$platform=$rootfs")
  mkdir -p "$(dirname "$OUT")"
  python3 image/sbom.py --target "$triple" "${features[@]}" --rootfs "$rootfs" \
    --name "$NAME" --out "$base.linux-$arch.cdx.json"
  sbom_args+=(--sbom "$base.linux-$arch.cdx.json" --rootfs "$platform=$rootfs")
done

python3 image/oci.py "$OUT" "${platform_args[@]}" --name "$NAME" \
  --user 65532:65532 --entrypoint /scrape-guard --port 8443 \
  --owner /home/nonroot=65532:65532 \
  --annotation "org.opencontainers.image.source=https://github.com/scrape-guard/scrape-guard" \
  --annotation "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  --summary "$base.summary.json"
python3 image/provenance.py --summary "$base.summary.json" --variant "$variant" \
  "${features[@]}" "${sbom_args[@]}" --out "$base.provenance.json"
