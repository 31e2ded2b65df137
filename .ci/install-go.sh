#!/usr/bin/env bash
# Go >= 1.24 for tests/integration/tls_curves.rs: a real crypto/tls client that offers the
# post-quantum X25519MLKEM768 by default. Bookworm has Go 1.19 (and backports 1.23), so
# this takes Debian trixie's golang-1.24-go, pinned so that nothing else comes from
# trixie (the package needs nothing newer than bookworm's libc). Idempotent.
set -euo pipefail

GO=/usr/lib/go-1.24/bin/go
if "$GO" version 2>/dev/null; then
  exit 0
fi
mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror="${mirror:-http://deb.debian.org/debian}"
cat >/etc/apt/sources.list.d/scrape-guard-trixie.sources <<EOF
Types: deb
URIs: $mirror
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
cat >/etc/apt/preferences.d/scrape-guard-trixie <<'EOF'
# Nothing comes from trixie unless asked for by name (golang-1.24-go/trixie).
Package: *
Pin: release n=trixie
Pin-Priority: 1
EOF
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  golang-1.24-go/trixie golang-1.24-src/trixie >/dev/null
"$GO" version
