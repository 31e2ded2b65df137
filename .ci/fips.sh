#!/usr/bin/env bash
# CI: the FIPS build (docs/fips.md). Builds scrape-guard with `--features fips` (aws-lc-rs
# on the AWS-LC FIPS module, whose build needs cmake, Go and perl) and runs the tests
# that matter for it, and only those: the tests named `...tls::...` (the TLS policy's
# unit tests, including the check that our approved lists agree with rustls on the
# module, and the upstream client's TLS tests) and the `fips` integration module (what a client can negotiate, what is refused at startup, the
# startup line and the metric). The rest of the suite is the default build's, which
# .ci/run tests already.
#
# The FIPS module is compiled once into a target dir of its own, kept between runs
# (SCRAPE_GUARD_FIPS_TARGET, default /var/cache/scrape-guard-build/fips), so a warm run
# only rebuilds scrape-guard itself. Idempotent; installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
export CARGO_TARGET_DIR="${SCRAPE_GUARD_FIPS_TARGET:-/var/cache/scrape-guard-build/fips}"

step() { printf '\n=== fips: %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

step "build tools for aws-lc-fips-sys: cmake, perl, Go"
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v perl >/dev/null || missing+=(perl)
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Go that .ci/run installs for tls_curves (bookworm's own 1.19 also builds the
# module; one Go toolchain is enough).
.ci/install-go.sh >/dev/null
export PATH="/usr/lib/go-1.24/bin:$PATH"
cmake --version | head -n1
go version

mkdir -p "$CARGO_TARGET_DIR"
step "cargo test --features fips: tls:: (unit) and fips:: (integration) into $CARGO_TARGET_DIR"
# One cargo invocation, so the library, the binary and both test binaries build in
# parallel; the filters pick `…tls::…` and `fips::…` in both binaries.
cargo test --locked -p scrape-guard --features fips --lib --test integration -- tls:: fips::
step "done"
