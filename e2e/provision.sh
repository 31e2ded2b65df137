#!/usr/bin/env bash
# Provision everything the end-to-end suite (cargo test -p scrape-guard-e2e --test cluster, e2e/cluster.rs)
# needs, from Debian's package sources only. Idempotent: a second run installs nothing
# and builds nothing.
#
#   - apt packages: etcd 3.4, Prometheus 2.42, node-exporter 1.5, nginx 1.22 (in front of
#     the auth endpoint), Go 1.19, procps
#     (their services are never started: policy-rc.d denies it during the install)
#   - kube-apiserver v1.20.2 built from Debian bookworm's `kubernetes` source package
#   - kubectl v1.20.2 from Debian's kubernetes-client package, unpacked into the cache
#     (not installed: /usr/bin/kubectl may belong to another package on a dev machine)
#   - kustomize 5 from Debian trixie's package, unpacked into the cache likewise
#     (kubectl 1.20's own kustomize has no components: deploy/kube-prometheus/)
#
# Results land in ${E2E_CACHE:-/var/cache/scrape-guard-e2e}/bin/{kube-apiserver,kubectl},
# keyed by the source package version so reruns skip the build.
set -euo pipefail

E2E_CACHE="${E2E_CACHE:-/var/cache/scrape-guard-e2e}"
export DEBIAN_FRONTEND=noninteractive

log() { printf 'provision: %s\n' "$*" >&2; }
die() { printf 'provision: ERROR: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "must run as root (apt-get install, ${E2E_CACHE})"

mkdir -p "$E2E_CACHE/bin"

# ---------------------------------------------------------------- apt packages
PACKAGES=(
  etcd-server prometheus prometheus-node-exporter nginx
  golang-go golang-github-modern-go-reflect2-dev dpkg-dev gcc libc6-dev
  ca-certificates procps
  containerd runc containernetworking-plugins iproute2 util-linux mount
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

# Keep daemons from being started by maintainer scripts (no systemd here anyway, but
# invoke-rc.d would try sysvinit scripts): a policy-rc.d that says 101 ("action
# forbidden") for the duration of the install. An existing policy file is put back after.
POLICY=/usr/sbin/policy-rc.d
policy_backup=""
policy_installed=0
restore_policy() {
  if [[ $policy_installed == 1 ]]; then
    rm -f "$POLICY"
    if [[ -n $policy_backup ]]; then mv -f "$policy_backup" "$POLICY"; fi
  fi
}
trap restore_policy EXIT

apt_updated=0
apt_update() {
  if [[ $apt_updated == 0 ]]; then
    log "apt-get update"
    apt-get update -qq
    apt_updated=1
  fi
}

if ((${#missing[@]})); then
  if [[ -e $POLICY ]]; then
    policy_backup="$POLICY.scrape-guard-e2e.bak"
    cp -p "$POLICY" "$policy_backup"
  fi
  log "installing $POLICY (exit 101) so no service starts during install"
  printf '#!/bin/sh\nexit 101\n' >"$POLICY.tmp"
  chmod 755 "$POLICY.tmp"
  mv -f "$POLICY.tmp" "$POLICY"
  policy_installed=1
  apt_update
  log "apt-get install ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "apt packages already installed: ${PACKAGES[*]}"
fi

# (the suite sends SIGTERM with /usr/bin/kill from procps, not the shell builtin)
type -P kill >/dev/null || die "kill (procps) not found after install"
for b in etcd prometheus prometheus-node-exporter nginx go dpkg-source; do
  command -v "$b" >/dev/null || die "$b not found after install"
done

# policy-rc.d kept the packages' init scripts from starting anything; say so if a
# packaged daemon is running anyway (we don't kill processes we didn't start).
for u in etcd prometheus; do
  if pgrep -u "$u" >/dev/null 2>&1; then
    log "WARNING: a process of user $u is running (not started by this script); the suite uses its own ports and data dirs"
  fi
done

# -------------------------------------------------------------- kubectl (1.20)
# Debian's kubernetes-client is built from the same source package as our apiserver.
# We unpack it into the cache instead of installing it, so it can't clash with a
# /usr/bin/kubectl owned by another package.
KUBECTL="$E2E_CACHE/bin/kubectl"
if [[ -x $KUBECTL ]] && "$KUBECTL" version --client --short 2>/dev/null | grep -q 'v1\.20\.'; then
  log "kubectl cached: $KUBECTL ($("$KUBECTL" version --client --short 2>/dev/null))"
else
  apt_update
  tmp=$(mktemp -d)
  log "apt-get download kubernetes-client, unpacking kubectl into $E2E_CACHE/bin"
  (cd "$tmp" && apt-get download -qq kubernetes-client >/dev/null 2>&1) ||
    (apt-get update -qq && cd "$tmp" && apt-get download -qq kubernetes-client)
  dpkg-deb -x "$tmp"/kubernetes-client_*.deb "$tmp/x"
  install -m 755 "$tmp/x/usr/bin/kubectl" "$KUBECTL"
  rm -rf "$tmp"
  "$KUBECTL" version --client --short
fi

# ------------------------------------------------------------------ kustomize
# kubectl 1.20's embedded kustomize (v2.0.3) predates components (kustomize 3.7), which
# deploy/kube-prometheus/ is: the node suite renders it with a standalone kustomize,
# Debian trixie's package (bookworm has none), unpacked into the cache like kubectl.
# Trixie's apt source is the one .ci/install-go.sh adds (pinned: nothing else comes
# from it); without it, this step says so and the suite's kube-prometheus test fails.
KUSTOMIZE="$E2E_CACHE/bin/kustomize"
if [[ -x $KUSTOMIZE ]] && "$KUSTOMIZE" version >/dev/null 2>&1; then
  log "kustomize cached: $KUSTOMIZE ($("$KUSTOMIZE" version 2>/dev/null))"
elif [[ $(apt-cache policy kustomize 2>/dev/null) == *"Candidate: "[0-9]* ]]; then
  tmp=$(mktemp -d)
  log "apt-get download kustomize, unpacking it into $E2E_CACHE/bin"
  (cd "$tmp" && apt-get download -qq kustomize/trixie >/dev/null 2>&1 || apt-get download -qq kustomize)
  dpkg-deb -x "$tmp"/kustomize_*.deb "$tmp/x"
  install -m 755 "$tmp/x/usr/bin/kustomize" "$KUSTOMIZE"
  rm -rf "$tmp"
  "$KUSTOMIZE" version
else
  log "WARNING: no kustomize package in the apt sources (it is in Debian trixie: run .ci/install-go.sh, which adds trixie pinned, then this again)"
fi

# ------------------------------------------------------ kube-apiserver (1.20.2)
# deb-src entry for bookworm main, on the same mirror as the machine's deb entries.
SRC_LIST=/etc/apt/sources.list.d/scrape-guard-e2e-src.sources
mirror=""
if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
  # the URI of the first deb822 stanza whose Suites include plain "bookworm"
  mirror=$(awk '
    function flush() { if (!found && suites ~ /(^| )bookworm( |$)/ && uris != "") { split(uris, u, " "); print u[1]; found = 1 } suites = uris = "" }
    /^[[:space:]]*$/ { flush(); next }
    /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
    /^URIs:/ { sub(/^URIs:[[:space:]]*/, ""); uris = $0 }
    END { flush() }' /etc/apt/sources.list.d/debian.sources)
fi
if [[ -z $mirror && -f /etc/apt/sources.list ]]; then
  mirror=$(awk '$1=="deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list)
fi
mirror="${mirror:-http://deb.debian.org/debian}"
if [[ ! -f $SRC_LIST ]]; then
  log "adding deb-src entry for bookworm main ($mirror) in $SRC_LIST"
  cat >"$SRC_LIST" <<EOF
Types: deb-src
URIs: $mirror
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  apt_updated=0
  apt_update
fi

src_version() { apt-cache showsrc kubernetes 2>/dev/null | awk '/^Version:/{print $2; exit}'; }
VERSION=$(src_version)
if [[ -z $VERSION ]]; then
  apt_updated=0
  apt_update
  VERSION=$(src_version)
fi
[[ -n $VERSION ]] || die "apt-cache showsrc kubernetes found nothing (deb-src entry: $SRC_LIST)"

# The Kubernetes programs, all from that one source tree: the apiserver for every suite,
# the rest for the node suite (e2e/node.rs): a kubelet, the controller manager (DaemonSet,
# Deployment, token and endpoint controllers), the scheduler, and the pause binary the
# pod sandboxes run. Each is cached as $E2E_CACHE/<name>-<source version>.
PROGRAMS=(kube-apiserver kube-controller-manager kube-scheduler kubelet pause)
wanted=()
for prog in "${PROGRAMS[@]}"; do
  if [[ -x $E2E_CACHE/$prog-$VERSION ]]; then
    log "$prog cached for source version $VERSION: $E2E_CACHE/$prog-$VERSION"
  else
    wanted+=("$prog")
  fi
done

if ((${#wanted[@]})); then
  log "building ${wanted[*]} from source package kubernetes $VERSION (about 3 minutes and 1.3 GB RAM per program, less with the shared Go cache)"
  start=$(date +%s)
  BUILD="$E2E_CACHE/build"
  rm -rf "$BUILD"
  mkdir -p "$BUILD"
  log "apt-get source kubernetes (into $BUILD)"
  (cd "$BUILD" && apt-get source -qq kubernetes >/dev/null 2>"$BUILD/apt-source.log") ||
    { cat "$BUILD/apt-source.log" >&2; die "apt-get source kubernetes failed"; }
  SRC=$(find "$BUILD" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -n1)
  [[ -d $SRC/cmd/kube-apiserver ]] || die "unexpected source tree layout in $BUILD"

  # (1) GOPATH mode, the tree linked at $GOPATH/src/k8s.io/kubernetes (as upstream's
  #     hack/lib/golang.sh and Debian's rules do for 1.20).
  export GOPATH="$BUILD/gopath" GO111MODULE=off CGO_ENABLED=0 GOFLAGS=
  export GOCACHE="$BUILD/gocache"
  mkdir -p "$GOPATH/src/k8s.io"
  ln -sfn "$SRC" "$GOPATH/src/k8s.io/kubernetes"
  K="$GOPATH/src/k8s.io/kubernetes"

  # (3) vendored modern-go/reflect2 v1.0.1 breaks (TokenReview panics) under Go >= 1.18:
  #     replace it with Debian's 1.0.2.
  R2=/usr/share/gocode/src/github.com/modern-go/reflect2
  [[ -f $R2/go_above_118.go ]] || die "$R2 is not reflect2 >= 1.0.2"
  log "replacing vendor/github.com/modern-go/reflect2 (v1.0.1) with Debian's ($R2)"
  rm -rf "$SRC/vendor/github.com/modern-go/reflect2"
  cp -r "$R2" "$SRC/vendor/github.com/modern-go/reflect2"
  rm -f "$SRC/vendor/github.com/modern-go/reflect2/go.mod"

  # (2) pkg/generated/openapi/zz_generated.openapi.go is not in the tarball: generate
  #     it as build/root/Makefile.generated_files' gen_openapi target does (KUBE target).
  cd "$K"
  log "go build vendor/k8s.io/kube-openapi/cmd/openapi-gen"
  go build -o "$BUILD/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
  # All Go dirs outside ./vendor, ./_*, ./.*, with ./staging/src named as vendor/,
  # whose files carry a '// +k8s:' tag; keep those mentioning +k8s:openapi-gen=,
  # minus code-generator and sample-apiserver (KUBE_OPENAPI_TAG_FILES).
  pkgs=$(find -H . \( -path ./_\* -o -path ./.\* -o -path ./vendor \) -prune -o \
           -type f -name '*.go' -print |
         sed 's|^\./staging/src|vendor|; s|^\./||' |
         xargs grep --color=never -l '^// *+k8s:' |
         xargs grep --color=never -l '+k8s:openapi-gen=' |
         grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' |
         xargs -n1 dirname | LC_ALL=C sort -u |
         sed 's|^|k8s.io/kubernetes/|' | paste -sd, -)
  [[ -n $pkgs ]] || die "found no +k8s:openapi-gen packages"
  log "openapi-gen for $(tr ',' '\n' <<<"$pkgs" | wc -l) packages -> pkg/generated/openapi/zz_generated.openapi.go"
  "$BUILD/openapi-gen" --logtostderr --v 0 \
    -i "$pkgs" \
    -p k8s.io/kubernetes/pkg/generated/openapi \
    -O zz_generated.openapi \
    -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
    -r "$BUILD/openapi-violations.report" \
    --output-base "$GOPATH/src" 2>"$BUILD/openapi-gen.log" ||
    { tail -n 30 "$BUILD/openapi-gen.log" >&2; die "openapi-gen failed"; }
  [[ -s pkg/generated/openapi/zz_generated.openapi.go ]] || die "openapi-gen produced nothing"

  # Version stamps, as hack/lib/version.sh would set them (kubectl warns on skew otherwise).
  upstream=${VERSION#*really}; upstream=v${upstream%%-*}   # v1.20.2
  major=${upstream#v}; major=${major%%.*}
  minor=${upstream#v*.}; minor=${minor%%.*}
  vpkg=k8s.io/kubernetes/vendor/k8s.io/component-base/version
  ldflags="-s -w -X $vpkg.gitVersion=$upstream -X $vpkg.gitMajor=$major -X $vpkg.gitMinor=$minor"
  ldflags+=" -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  for prog in "${wanted[@]}"; do
    if [[ $prog == pause ]]; then
      # build/pause/Makefile: a static C program, VERSION stamped in.
      log "gcc -static build/pause/linux/pause.c"
      gcc -Os -Wall -Werror -static -DVERSION="$upstream" -o "$BUILD/pause" build/pause/linux/pause.c
    else
      log "go build ./cmd/$prog ($upstream, GO111MODULE=off, $(go version | awk '{print $3}'))"
      go build -ldflags "$ldflags" -o "$BUILD/$prog" "./cmd/$prog"
      "$BUILD/$prog" --version
    fi
    install -m 755 "$BUILD/$prog" "$E2E_CACHE/$prog-$VERSION"
  done
  cd /
  log "cached ${wanted[*]}; removing build tree"
  rm -rf "$BUILD"
  log "Kubernetes build took $(( $(date +%s) - start ))s"
fi
for prog in "${PROGRAMS[@]}"; do
  ln -sfn "$E2E_CACHE/$prog-$VERSION" "$E2E_CACHE/bin/$prog"
done
log "ready: $("$E2E_CACHE/bin/kube-apiserver" --version), $("$KUBECTL" version --client --short 2>/dev/null), etcd $(etcd --version | awk '/etcd Version/{print $3}'), $(prometheus --version 2>&1 | head -n1)"
