#!/usr/bin/env bash
# End-to-end suite: real etcd 3.4 + kube-apiserver v1.20.2, real Prometheus 2.42 and
# node-exporter 1.5, and scrape-guard between them, all on 127.0.0.1 in a temp dir.
# Run e2e/provision.sh first (installs and builds what this needs). See e2e/README.md.
#
# Output: one `PASS name` / `FAIL name: reason` line per check, then
#   e2e: N passed, N failed
# and a non-zero exit status if anything failed.
#
# Environment:
#   SCRAPE_GUARD_BIN  scrape-guard binary (default: $REPO/target/debug/scrape-guard,
#                     built with `cargo build --bin scrape-guard` if missing)
#   E2E_CACHE         where provision.sh put kube-apiserver and kubectl
#                     (default /var/cache/scrape-guard-e2e)
#   E2E_KEEP=1        keep the temp dir (logs, configs) even when everything passed
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
E2E="$REPO/e2e"
FIX="$E2E/fixtures"
E2E_CACHE="${E2E_CACHE:-/var/cache/scrape-guard-e2e}"
KUBE_APISERVER="${KUBE_APISERVER:-$E2E_CACHE/bin/kube-apiserver}"
KUBECTL="${KUBECTL:-$E2E_CACHE/bin/kubectl}"
ETCD="${ETCD:-etcd}"
PROMETHEUS="${PROMETHEUS:-prometheus}"
NODE_EXPORTER="${NODE_EXPORTER:-prometheus-node-exporter}"

SUITE_START=$(date +%s)
PASSED=0
FAILED=0
FAILED_NAMES=()
SUMMARY_PRINTED=0

log() { printf '[%4ds] %s\n' "$(( $(date +%s) - SUITE_START ))" "$*"; }

# ------------------------------------------------------------------ work dir, cleanup
WORK=$(mktemp -d /tmp/scrape-guard-e2e.XXXXXX)
mkdir -p "$WORK/logs"
declare -A PIDS=()      # name -> pid of every background process we started
PID_ORDER=()            # start order, stopped in reverse

stop_proc() { # name [signal]: stop one of our processes by its PID, bounded
  local name=$1 sig=${2:-TERM} pid=${PIDS[$1]:-}
  [[ -n $pid ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill "-$sig" "$pid" 2>/dev/null
    kill -CONT "$pid" 2>/dev/null   # in case it was paused (SIGSTOP) by a check
    local i
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) still running 10s after SIG$sig; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null
    fi
  fi
  wait "$pid" 2>/dev/null
  unset "PIDS[$name]"
  return 0
}

cleanup() {
  local rc=$? i name
  trap - EXIT INT TERM
  for ((i = ${#PID_ORDER[@]} - 1; i >= 0; i--)); do
    name=${PID_ORDER[$i]}
    [[ -n ${PIDS[$name]:-} ]] && stop_proc "$name"
  done
  if [[ ${E2E_KEEP:-0} == 1 || $FAILED -gt 0 || $rc -ne 0 ]]; then
    # (after a complete run this was already said before the summary line)
    ((SUMMARY_PRINTED)) || echo "e2e: logs and configs kept in $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_bg() { # name cmd...: start in the background, log to $WORK/logs/name.log, record PID
  local name=$1; shift
  "$@" >>"$WORK/logs/$name.log" 2>&1 &
  PIDS[$name]=$!
  local seen=0 n
  for n in "${PID_ORDER[@]}"; do [[ $n == "$name" ]] && seen=1; done
  ((seen)) || PID_ORDER+=("$name")
}

alive() { [[ -n ${PIDS[$1]:-} ]] && kill -0 "${PIDS[$1]}" 2>/dev/null; }

# wait_for TIMEOUT_S DESCRIPTION CMD...: poll CMD every 0.2 s until it succeeds.
wait_for() {
  local timeout=$1 desc=$2; shift 2
  local deadline=$(( $(date +%s%N) + timeout * 1000000000 ))
  while :; do
    "$@" >/dev/null 2>&1 && return 0
    if (( $(date +%s%N) > deadline )); then
      WAIT_ERR="timed out after ${timeout}s waiting for $desc"
      return 1
    fi
    sleep 0.2
  done
}

# wait_alive NAME TIMEOUT_S DESCRIPTION CMD...: like wait_for, but gives up at once if
# our process NAME has exited.
wait_alive() {
  local name=$1 timeout=$2 desc=$3; shift 3
  local deadline=$(( $(date +%s%N) + timeout * 1000000000 ))
  while :; do
    "$@" >/dev/null 2>&1 && return 0
    if ! alive "$name"; then
      WAIT_ERR="$name exited while waiting for $desc"
      return 1
    fi
    if (( $(date +%s%N) > deadline )); then
      WAIT_ERR="timed out after ${timeout}s waiting for $desc"
      return 1
    fi
    sleep 0.2
  done
}

setup_fail() { # reason [log names...]: infrastructure broke; every check counts as failed
  local reason=$1; shift
  echo "FAIL setup: $reason"
  local l
  for l in "$@"; do show_log "$l"; done
  echo "logs and configs kept in $WORK"
  echo "e2e: 0 passed, ${#CHECKS[@]} failed"
  SUMMARY_PRINTED=1
  exit 1
}

show_log() { # name [lines]   (for the apiserver: its warnings and errors only)
  local f="$WORK/logs/$1.log"
  [[ -f $f ]] || return 0
  if [[ $1 == apiserver ]]; then
    echo "  --- tail of apiserver.log (W/E lines; whole log in $f) ---"
    grep -E '^[WEF][0-9]{4} ' "$f" | grep -v 'Skipping API' | tail -n "${2:-15}" | sed 's/^/  | /'
  else
    echo "  --- tail of $1.log ---"
    tail -n "${2:-25}" "$f" | sed 's/^/  | /'
  fi
}

# ------------------------------------------------------------------ checks bookkeeping
CHECKS=(
  deploy_manifests_dry_run        # 11
  deploy_rbac_sufficient          # (setup) RBAC from deploy/ alone is enough
  prometheus_scrape_allowed       # 1
  prometheus_scrape_forbidden     # 2
  dropin_kube_prometheus_args     # 10
  unauthenticated_401             # 3
  token_audiences                 # 4
  cache_one_review_per_token      # 5
  rbac_change_respects_ttls       # 6
  doctor_can_i_fixes_a_deny       # (doctor) can-i's printed RBAC, applied, fixes the deny
  local_rbac_skips_reviews        # (policy) --rbac-file allows without a SubjectAccessReview
  client_certificate_identity     # (flag) --client-ca-file: CN/O as user/groups, real SAR
  own_metrics_are_guarded         # (operating) own /metrics behind authn + authz
  token_not_forwarded_upstream    # (design: tokens never forwarded)
  exporter_outage                 # 8
  apiserver_outage                # 7
  stale_if_error_rides_out_an_outage  # (flag) --stale-if-error, in apiserver_outage's window
  health_endpoints                # 9
  json_log_format                 # (flag contract) --log-format=json
  tokens_never_logged             # (design) tokens are secrets
)

REASON=""
CHECK_LOGS=()
run_check() { # name: runs check_<name>; it returns 0 (pass) or sets REASON and returns 1
  local name=$1
  REASON="" CHECK_LOGS=()
  local t0=$SECONDS
  if "check_$name"; then
    PASSED=$((PASSED + 1))
    echo "PASS $name ($((SECONDS - t0))s)"
  else
    FAILED=$((FAILED + 1))
    FAILED_NAMES+=("$name")
    echo "FAIL $name: ${REASON:-no reason given}"
    local l
    local shown=" " l
    for l in "${CHECK_LOGS[@]}"; do
      [[ $shown == *" $l "* ]] && continue
      shown+="$l "
      show_log "$l"
    done
  fi
}

# ------------------------------------------------------------------ prerequisites
for tool in "$KUBE_APISERVER" "$KUBECTL"; do
  [[ -x $tool ]] || setup_fail "$tool not found: run e2e/provision.sh first"
done
for tool in "$ETCD" "$PROMETHEUS" "$NODE_EXPORTER" curl jq openssl python3; do
  command -v "$tool" >/dev/null || setup_fail "$tool not found: run e2e/provision.sh first"
done

SG_BIN="${SCRAPE_GUARD_BIN:-$REPO/target/debug/scrape-guard}"
if [[ ! -x $SG_BIN ]]; then
  if [[ -n ${SCRAPE_GUARD_BIN:-} ]]; then
    setup_fail "SCRAPE_GUARD_BIN=$SCRAPE_GUARD_BIN is not an executable"
  fi
  log "building scrape-guard: cargo build --bin scrape-guard"
  if ! (cd "$REPO" && cargo build --bin scrape-guard) >"$WORK/logs/cargo-build.log" 2>&1; then
    log "cargo build failed; the scrape-guard checks will fail"
    show_log cargo-build 30
  fi
fi
log "work dir $WORK; scrape-guard binary $SG_BIN"

# ------------------------------------------------------------------ ports
# All ports at once, from one process holding every socket until it has them all, so
# no two are the same. (Another program could still grab one before we bind it; on a
# CI machine that is very unlikely.)
read -r P_ETCD P_ETCD_PEER P_API P_NE P_UP P_PROM \
        P_SG_MAIN P_SG_AUD P_SG_CACHE P_SG_RBAC P_SG_OUT P_SG_OUT_ADMIN P_SG_DROPIN \
        P_SG_LOCAL P_SG_STALE P_SG_STALE_ADMIN P_SG_CERT \
  < <(python3 -c '
import socket
socks = []
for _ in range(17):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))')
[[ -n ${P_SG_CERT:-} ]] || setup_fail "could not pick free ports"

# ------------------------------------------------------------------ certificates, keys
PKI="$WORK/pki"
mkdir -p "$PKI"
(
  set -e
  cd "$PKI"
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 -keyout ca.key -out ca.crt \
    -subj "/CN=scrape-guard-e2e-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  for name in apiserver scrape-guard; do
    openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$name.key" -out "$name.csr" -subj "/CN=$name"
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc" \
      "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" >"$name.ext"
    openssl x509 -req -sha256 -days 2 -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
      -extfile "$name.ext" -out "$name.crt"
  done
  # service-account token signing key pair
  openssl genrsa -out sa.key 2048
  openssl rsa -in sa.key -pubout -out sa.pub
  # client certificates (check client_certificate_identity): one from the suite's CA and
  # the same subject from a second, unrelated CA that scrape-guard must not trust
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=clientAuth" >client.ext
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -days 2 \
    -keyout rogue-ca.key -out rogue-ca.crt -subj "/CN=scrape-guard-e2e-rogue-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  for ca in ca rogue-ca; do
    out=cert-scraper; [[ $ca == ca ]] || out=rogue-scraper
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -keyout "$out.key" \
      -out "$out.csr" -subj "/O=e2e-cert-group/CN=e2e-cert-scraper"
    openssl x509 -req -sha256 -days 2 -in "$out.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial \
      -extfile client.ext -out "$out.crt"
  done
) >"$WORK/logs/openssl.log" 2>&1 || setup_fail "openssl failed" openssl

# ------------------------------------------------------------------ etcd
log "starting etcd on 127.0.0.1:$P_ETCD"
start_bg etcd "$ETCD" --name e2e --data-dir "$WORK/etcd" \
  --listen-client-urls "http://127.0.0.1:$P_ETCD" --advertise-client-urls "http://127.0.0.1:$P_ETCD" \
  --listen-peer-urls "http://127.0.0.1:$P_ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$P_ETCD_PEER" \
  --initial-cluster "e2e=http://127.0.0.1:$P_ETCD_PEER" --initial-cluster-state new
wait_alive etcd 20 "etcd /health" curl -sf "http://127.0.0.1:$P_ETCD/health" || setup_fail "$WAIT_ERR" etcd

# ------------------------------------------------------------------ kube-apiserver
ADMIN_TOKEN=$(openssl rand -hex 24)
# static admin user in system:masters (token,user,uid,"group1,group2")
printf '%s,e2e-admin,e2e-admin-uid,"system:masters"\n' "$ADMIN_TOKEN" >"$PKI/tokens.csv"
SA_ISSUER="https://kubernetes.default.svc"
APISERVER_ARGS=(
  --bind-address=127.0.0.1
  --advertise-address=127.0.0.1
  --secure-port="$P_API"
  --etcd-servers="http://127.0.0.1:$P_ETCD"
  --tls-cert-file="$PKI/apiserver.crt"
  --tls-private-key-file="$PKI/apiserver.key"
  --client-ca-file="$PKI/ca.crt"
  --token-auth-file="$PKI/tokens.csv"
  --authorization-mode=RBAC
  --service-account-issuer="$SA_ISSUER"
  --service-account-signing-key-file="$PKI/sa.key"
  --service-account-key-file="$PKI/sa.pub"
  --api-audiences="$SA_ISSUER"
  --service-cluster-ip-range=10.0.0.0/24
  --cert-dir="$WORK/apiserver-certs"
  --endpoint-reconciler-type=none
  --profiling=false
  --v=0
)
start_apiserver() {
  start_bg apiserver "$KUBE_APISERVER" "${APISERVER_ARGS[@]}"
  wait_alive apiserver 60 "kube-apiserver /readyz" \
    curl -sf --cacert "$PKI/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" "https://127.0.0.1:$P_API/readyz"
}
log "starting kube-apiserver on 127.0.0.1:$P_API"
start_apiserver || setup_fail "$WAIT_ERR" apiserver
log "kube-apiserver ready"

cat >"$WORK/admin.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://127.0.0.1:$P_API
    certificate-authority: $PKI/ca.crt
users:
- name: e2e-admin
  user:
    token: $ADMIN_TOKEN
contexts:
- name: e2e
  context: {cluster: e2e, user: e2e-admin}
current-context: e2e
EOF
k() { "$KUBECTL" --kubeconfig "$WORK/admin.kubeconfig" --cache-dir "$WORK/kube-cache" --request-timeout=20s "$@"; }

# mint_token NS SA [AUDIENCE]: a service-account token from the TokenRequest API
# (kubectl 1.20 has no `kubectl create token`). Without AUDIENCE it gets the
# apiserver's default audience (--api-audiences).
# Two TokenRequests for the same SA within one second give byte-identical JWTs in 1.20
# (no jti claim), so each token gets a distinct lifetime: every minted token is fresh.
echo 0 >"$WORK/token-seq"
SECRETS="$WORK/secrets.txt"   # every token used in the suite, one a line
echo "$ADMIN_TOKEN" >"$SECRETS"
mint_token() {
  local ns=$1 sa=$2 aud=${3:-} seq
  seq=$(( $(cat "$WORK/token-seq") + 1 ))
  echo "$seq" >"$WORK/token-seq"
  local spec="\"expirationSeconds\":$((7200 + seq))"
  [[ -n $aud ]] && spec+=",\"audiences\":[\"$aud\"]"
  printf '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{%s}}' "$spec" >"$WORK/tokenrequest.json"
  local tok
  tok=$(k create --raw "/api/v1/namespaces/$ns/serviceaccounts/$sa/token" -f "$WORK/tokenrequest.json" |
    jq -er .status.token) || return 1
  echo "$tok" >>"$SECRETS"   # for check tokens_never_logged
  echo "$tok"
}

# ------------------------------------------------------------------ RBAC and accounts
DEPLOY="$REPO/deploy"
mapfile -t DEPLOY_FILES < <(find "$DEPLOY" -maxdepth 1 -type f \( -name '*.yaml' -o -name '*.yml' -o -name '*.json' \) 2>/dev/null | LC_ALL=C sort)

k get namespace monitoring >/dev/null 2>&1 || k create namespace monitoring >"$WORK/logs/kubectl.log" 2>&1 ||
  setup_fail "kubectl create namespace monitoring failed" kubectl

# Apply (for real) every deploy/ file made only of RBAC objects, service accounts and
# namespaces: the suite's accounts get exactly the RBAC the project tells users to grant.
RBAC_KINDS='^(Namespace|ServiceAccount|ClusterRole|ClusterRoleBinding|Role|RoleBinding)$'
DEPLOY_RBAC_APPLIED=()
for f in "${DEPLOY_FILES[@]}"; do
  kinds=$(grep -E '^kind:' "$f" | awk '{print $2}' | sort -u)
  [[ -n $kinds ]] || continue
  if ! grep -qvE "$RBAC_KINDS" <<<"$kinds"; then
    log "applying $(basename "$f") (RBAC/accounts from deploy/)"
    if k apply -f "$f" >>"$WORK/logs/kubectl.log" 2>&1; then
      DEPLOY_RBAC_APPLIED+=("$(basename "$f")")
    else
      log "kubectl apply -f $f failed (see check deploy_manifests_dry_run)"
    fi
  fi
done
# The scraper SA may come from the Prometheus side of a real cluster, not from deploy/.
k -n monitoring get serviceaccount prometheus-k8s >/dev/null 2>&1 ||
  k -n monitoring create serviceaccount prometheus-k8s >>"$WORK/logs/kubectl.log" 2>&1

can_i() { # user verb what
  k auth can-i "$2" "$3" --as="$1" >/dev/null 2>&1
}
SG_USER=system:serviceaccount:monitoring:scrape-guard
PROM_USER=system:serviceaccount:monitoring:prometheus-k8s
rbac_state() {
  local missing=()
  k -n monitoring get serviceaccount scrape-guard >/dev/null 2>&1 || missing+=("SA monitoring/scrape-guard")
  can_i "$SG_USER" create tokenreviews.authentication.k8s.io || missing+=("$SG_USER cannot create tokenreviews")
  can_i "$SG_USER" create subjectaccessreviews.authorization.k8s.io || missing+=("$SG_USER cannot create subjectaccessreviews")
  k get clusterrole scrape-guard-metrics-reader >/dev/null 2>&1 || missing+=("ClusterRole scrape-guard-metrics-reader")
  can_i "$PROM_USER" get /metrics || missing+=("$PROM_USER cannot get /metrics")
  (IFS=';'; echo "${missing[*]}")
}
DEPLOY_RBAC_MISSING=$(rbac_state)
if [[ -n $DEPLOY_RBAC_MISSING ]]; then
  log "NOTE: deploy/ RBAC (${DEPLOY_RBAC_APPLIED[*]:-none applied}) is not enough: $DEPLOY_RBAC_MISSING"
  log "NOTE: falling back to e2e/fixtures/fallback-rbac-*.yaml so the other checks can run"
  k apply -f "$FIX/fallback-rbac-proxy.yaml" -f "$FIX/fallback-rbac-scraper.yaml" >>"$WORK/logs/kubectl.log" 2>&1 ||
    setup_fail "applying fallback RBAC failed" kubectl
  still=$(rbac_state)
  [[ -z $still ]] || setup_fail "RBAC still incomplete after fallback: $still" kubectl
fi
k apply -f "$FIX/e2e-objects.yaml" -f "$FIX/rbac-flip-binding.yaml" >>"$WORK/logs/kubectl.log" 2>&1 ||
  setup_fail "applying e2e fixtures failed" kubectl
can_i system:serviceaccount:e2e:unbound-scraper get /metrics &&
  setup_fail "e2e/unbound-scraper can get /metrics: the cluster grants it to every SA?"
can_i system:serviceaccount:e2e:doctor-scraper get /metrics &&
  setup_fail "e2e/doctor-scraper can get /metrics before the doctor check applied anything"

# Tokens. scrape-guard talks to the apiserver as ITS OWN service account (bound to
# system:auth-delegator by deploy/), never as the admin.
SG_TOKEN=$(mint_token monitoring scrape-guard) || setup_fail "TokenRequest for monitoring/scrape-guard failed" apiserver
PROM_TOKEN=$(mint_token monitoring prometheus-k8s) || setup_fail "TokenRequest for monitoring/prometheus-k8s failed"
UNBOUND_TOKEN=$(mint_token e2e unbound-scraper) || setup_fail "TokenRequest for e2e/unbound-scraper failed"
printf '%s' "$PROM_TOKEN" >"$WORK/token-prometheus"
printf '%s' "$UNBOUND_TOKEN" >"$WORK/token-unbound"
cat >"$WORK/scrape-guard.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://127.0.0.1:$P_API
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: scrape-guard
  user:
    token: $SG_TOKEN
contexts:
- name: e2e
  context: {cluster: e2e, user: scrape-guard}
current-context: e2e
EOF
log "RBAC, service accounts and tokens ready"

# ------------------------------------------------------------------ exporters
NE_ARGS=(--web.listen-address="127.0.0.1:$P_NE" --collector.disable-defaults
         --collector.cpu --collector.meminfo --collector.loadavg --collector.stat --collector.uname)
start_node_exporter() {
  start_bg node-exporter "$NODE_EXPORTER" "${NE_ARGS[@]}"
  wait_alive node-exporter 20 "node-exporter /metrics" curl -sf -o /dev/null "http://127.0.0.1:$P_NE/metrics"
}
start_node_exporter || setup_fail "$WAIT_ERR" node-exporter
UPSTREAM_LOG="$WORK/upstream-requests.jsonl"
: >"$UPSTREAM_LOG"
start_bg upstream python3 "$FIX/upstream.py" "$P_UP" "$UPSTREAM_LOG"
wait_alive upstream 20 "python upstream" curl -sf -o /dev/null "http://127.0.0.1:$P_UP/metrics" ||
  setup_fail "$WAIT_ERR" upstream
: >"$UPSTREAM_LOG"   # forget our own readiness probe
log "node-exporter on :$P_NE, logging upstream on :$P_UP"

# ------------------------------------------------------------------ scrape-guard instances
declare -A SG_PORT=() SG_ERR=()
start_sg() { # name port [env...] -- args...
  local name=$1 port=$2; shift 2
  local envs=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done
  shift
  SG_PORT[$name]=$port
  # env -i keeps stray SCRAPE_GUARD_*/KUBECONFIG/KUBERNETES_* variables out.
  start_bg "sg-$name" env -i PATH="$PATH" HOME="$WORK" RUST_BACKTRACE=1 "${envs[@]}" "$SG_BIN" "$@"
}
COMMON=(--kubeconfig="$WORK/scrape-guard.kubeconfig")
NE_UPSTREAM="http://127.0.0.1:$P_NE/"
# main: Prometheus' jobs `guarded` and `unbound`; long TTLs so its scrapes cause no reviews
start_sg main "$P_SG_MAIN" -- --secure-listen-address="127.0.0.1:$P_SG_MAIN" --upstream="$NE_UPSTREAM" \
  "${COMMON[@]}" --tls-cert-file="$PKI/scrape-guard.crt" --tls-private-key-file="$PKI/scrape-guard.key" \
  --auth-cache-ttl=10m --authz-allow-ttl=10m --authz-deny-ttl=10m
# aud: token audiences
start_sg aud "$P_SG_AUD" -- --secure-listen-address="127.0.0.1:$P_SG_AUD" --upstream="$NE_UPSTREAM" \
  "${COMMON[@]}" --auth-token-audiences=scrape-guard
# cache: only the caching check talks to it; the default TTLs, spelled out; JSON logs.
# (SCRAPE_GUARD_LOG=debug on this one and on `out`: the most verbose logs, for
# check tokens_never_logged.)
start_sg cache "$P_SG_CACHE" SCRAPE_GUARD_LOG=debug -- --secure-listen-address="127.0.0.1:$P_SG_CACHE" --upstream="$NE_UPSTREAM" \
  "${COMMON[@]}" --auth-cache-ttl=2m --auth-negative-cache-ttl=10s --authz-allow-ttl=5m --authz-deny-ttl=30s \
  --log-format=json
# rbac: short authorization TTLs for the RBAC-change check
start_sg rbac "$P_SG_RBAC" -- --secure-listen-address="127.0.0.1:$P_SG_RBAC" --upstream="$NE_UPSTREAM" \
  "${COMMON[@]}" --authz-allow-ttl=3s --authz-deny-ttl=3s
# out: in front of the logging upstream, with the health endpoints port
start_sg out "$P_SG_OUT" SCRAPE_GUARD_LOG=debug -- --secure-listen-address="127.0.0.1:$P_SG_OUT" --upstream="http://127.0.0.1:$P_UP/" \
  "${COMMON[@]}" --proxy-endpoints-port="$P_SG_OUT_ADMIN"
# dropin: exactly kube-prometheus' node-exporter sidecar args; the kubeconfig comes from
# the environment (KUBECONFIG), as in-cluster config would in a pod.
DROPIN_ARGS=(
  --logtostderr
  "--secure-listen-address=[127.0.0.1]:$P_SG_DROPIN"
  --tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305
  "--upstream=http://127.0.0.1:$P_NE/"
)
start_sg dropin "$P_SG_DROPIN" KUBECONFIG="$WORK/scrape-guard.kubeconfig" -- "${DROPIN_ARGS[@]}"
# local: deploy/rbac-scraper.yaml evaluated locally (--rbac-file); default TTLs
start_sg local "$P_SG_LOCAL" -- --secure-listen-address="127.0.0.1:$P_SG_LOCAL" --upstream="$NE_UPSTREAM" \
  "${COMMON[@]}" --rbac-file="$DEPLOY/rbac-scraper.yaml"
# stale: 1s positive TTLs and --stale-if-error=5m; endpoints port for its own metrics
start_sg stale "$P_SG_STALE" -- --secure-listen-address="127.0.0.1:$P_SG_STALE" --upstream="$NE_UPSTREAM" \
  "${COMMON[@]}" --auth-cache-ttl=1s --authz-allow-ttl=1s --stale-if-error=5m \
  --proxy-endpoints-port="$P_SG_STALE_ADMIN"
# cert: client certificates from the suite's CA authenticate; 1s deny TTL
start_sg cert "$P_SG_CERT" -- --secure-listen-address="127.0.0.1:$P_SG_CERT" --upstream="$NE_UPSTREAM" \
  "${COMMON[@]}" --tls-cert-file="$PKI/scrape-guard.crt" --tls-private-key-file="$PKI/scrape-guard.key" \
  --client-ca-file="$PKI/ca.crt" --authz-deny-ttl=1s

sg_listening() { # port: a TLS listener answers with some HTTP status
  local code
  code=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 2 "https://127.0.0.1:$1/metrics")
  [[ $code != 000 ]]
}
for name in main aud cache rbac out dropin local stale cert; do
  deadline=$((SECONDS + 20))
  while :; do
    if ! alive "sg-$name"; then
      wait "${PIDS[sg-$name]}" 2>/dev/null
      SG_ERR[$name]="scrape-guard instance '$name' exited at startup with status $? (see sg-$name.log)"
      break
    fi
    sg_listening "${SG_PORT[$name]}" && break
    if ((SECONDS > deadline)); then
      SG_ERR[$name]="scrape-guard instance '$name' not listening on 127.0.0.1:${SG_PORT[$name]} after 20s"
      break
    fi
    sleep 0.2
  done
  if [[ -n ${SG_ERR[$name]:-} ]]; then log "${SG_ERR[$name]}"; show_log "sg-$name" 10; fi
done
log "scrape-guard instances started: main :$P_SG_MAIN, aud :$P_SG_AUD, cache :$P_SG_CACHE, rbac :$P_SG_RBAC, out :$P_SG_OUT (endpoints :$P_SG_OUT_ADMIN), dropin :$P_SG_DROPIN, local :$P_SG_LOCAL, stale :$P_SG_STALE (endpoints :$P_SG_STALE_ADMIN), cert :$P_SG_CERT"

need_sg() { # name: fail the current check if that instance is not running
  CHECK_LOGS+=("sg-$1")
  if [[ -n ${SG_ERR[$1]:-} ]]; then REASON=${SG_ERR[$1]}; return 1; fi
  if ! alive "sg-$1"; then REASON="scrape-guard instance '$1' is no longer running (crashed?)"; return 1; fi
  CHECK_LOGS+=(apiserver)
}

# ------------------------------------------------------------------ Prometheus
cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  # SA monitoring/prometheus-k8s, bound to the metrics ClusterRole
  - job_name: guarded
    scheme: https
    tls_config: {ca_file: $PKI/ca.crt}
    authorization: {credentials_file: $WORK/token-prometheus}
    static_configs: [{targets: ['127.0.0.1:$P_SG_MAIN']}]
  # SA e2e/unbound-scraper, no binding: must be refused (403)
  - job_name: unbound
    scheme: https
    tls_config: {ca_file: $PKI/ca.crt}
    authorization: {credentials_file: $WORK/token-unbound}
    static_configs: [{targets: ['127.0.0.1:$P_SG_MAIN']}]
  # the drop-in instance (self-signed cert, as kube-prometheus' insecureSkipVerify)
  - job_name: dropin
    scheme: https
    tls_config: {insecure_skip_verify: true}
    authorization: {credentials_file: $WORK/token-prometheus}
    static_configs: [{targets: ['127.0.0.1:$P_SG_DROPIN']}]
EOF
start_bg prometheus "$PROMETHEUS" --config.file="$WORK/prometheus.yml" \
  --web.listen-address="127.0.0.1:$P_PROM" --storage.tsdb.path="$WORK/prometheus-data"
wait_alive prometheus 30 "Prometheus /-/ready" curl -sf "http://127.0.0.1:$P_PROM/-/ready" || setup_fail "$WAIT_ERR" prometheus
log "Prometheus ready on :$P_PROM; setup took $((SECONDS))s"

# ------------------------------------------------------------------ helpers for checks
# get PORT TOKEN [PATH]: HTTPS GET through scrape-guard; sets CODE, body in $BODY,
# headers in $HDRS. TOKEN "" sends no Authorization header.
# Extra curl arguments come from CURL_EXTRA (a check sets `local CURL_EXTRA=(...)`).
BODY="$WORK/resp.body"
HDRS="$WORK/resp.headers"
CURL_EXTRA=()
get() {
  local port=$1 token=$2 path=${3:-/metrics} auth=()
  [[ -n $token ]] && auth=(-H "Authorization: Bearer $token")
  : >"$BODY"; : >"$HDRS"
  CODE=$(curl -sk -o "$BODY" -D "$HDRS" -w '%{http_code}' --max-time 15 "${CURL_EXTRA[@]}" "${auth[@]}" "https://127.0.0.1:$port$path")
}
code_is() { get "$1" "$2" "${4:-/metrics}"; [[ $CODE == "$3" ]]; }
body_snippet() { head -c 300 "$BODY" | tr '\n' ' '; }

promql() { # query -> JSON result array
  curl -sf --max-time 5 "http://127.0.0.1:$P_PROM/api/v1/query" --data-urlencode "query=$1" | jq -c '.data.result'
}
prom_value() { promql "$1" | jq -r '.[0].value[1] // empty'; }
prom_up_is() { [[ $(prom_value "up{job=\"$1\"}") == "$2" ]]; }
prom_has_series() { [[ $(promql "count($1)" | jq -r '.[0].value[1] // "0"') -gt 0 ]]; }
unbound_has_error() { prom_target unbound | jq -e 'select(.lastError != "")' >/dev/null; }
prom_target() { # job -> JSON of its active target
  curl -sf --max-time 5 "http://127.0.0.1:$P_PROM/api/v1/targets?state=active" |
    jq -c --arg job "$1" '.data.activeTargets[] | select(.labels.job == $job)'
}

# review_counts: "TOKENREVIEWS SARS" from the apiserver's own apiserver_request_total
# (summed over verb, code, etc.), read with the admin token.
review_counts() {
  curl -sf --max-time 10 --cacert "$PKI/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" \
    "https://127.0.0.1:$P_API/metrics" |
    awk '/^apiserver_request_total\{/ {
           if ($0 ~ /resource="tokenreviews"/) tr += $NF
           if ($0 ~ /resource="subjectaccessreviews"/) sar += $NF
         } END { printf "%d %d\n", tr, sar }'
}

status_json_is() { # code [message]: the body is a k8s Status with that code (and message)
  jq -e --argjson code "$1" --arg msg "${2:-}" \
    '.kind == "Status" and .apiVersion == "v1" and .code == $code and ($msg == "" or .message == $msg)' \
    "$BODY" >/dev/null 2>&1
}
header_has() { grep -qi "^$1:.*$2" "$HDRS"; }

# ------------------------------------------------------------------ the checks

# 11. every manifest in deploy/ passes `kubectl apply --dry-run=server`.
check_deploy_manifests_dry_run() {
  CHECK_LOGS+=(kubectl apiserver)
  if ((${#DEPLOY_FILES[@]} == 0)); then REASON="no manifests found in deploy/"; return 1; fi
  # deploy/servicemonitor.yaml needs the ServiceMonitor kind: install a minimal CRD
  # fixture (schema preserves unknown fields: kind/group/version and envelope are
  # validated, the spec fields are not).
  k apply -f "$FIX/servicemonitor-crd.yaml" >>"$WORK/logs/kubectl.log" 2>&1 &&
    k wait --for=condition=Established --timeout=30s crd/servicemonitors.monitoring.coreos.com >>"$WORK/logs/kubectl.log" 2>&1 ||
    { REASON="could not install the ServiceMonitor CRD fixture"; return 1; }
  local f bad=() out
  for f in "${DEPLOY_FILES[@]}"; do
    if out=$(k apply --dry-run=server -f "$f" 2>&1); then
      echo "  ok   deploy/$(basename "$f"): $(tr '\n' ';' <<<"$out")"
    else
      echo "  FAIL deploy/$(basename "$f"): $out"
      bad+=("deploy/$(basename "$f")")
    fi
  done
  ((${#bad[@]} == 0)) || { REASON="dry-run failed for: ${bad[*]}"; return 1; }
}

# (setup) the RBAC in deploy/ alone lets scrape-guard review tokens/access and lets
# prometheus-k8s get /metrics (otherwise the suite used its fallback fixtures).
check_deploy_rbac_sufficient() {
  if [[ -n $DEPLOY_RBAC_MISSING ]]; then
    REASON="deploy/ RBAC (${DEPLOY_RBAC_APPLIED[*]:-no RBAC files}) is missing: $DEPLOY_RBAC_MISSING (suite used e2e/fixtures/fallback-rbac-*.yaml)"
    return 1
  fi
  echo "  applied from deploy/: ${DEPLOY_RBAC_APPLIED[*]}"
}

# 1. Prometheus scrapes node-exporter through scrape-guard with an SA token that has
#    the metrics ClusterRole: up == 1 and node-exporter series present.
check_prometheus_scrape_allowed() {
  need_sg main || return 1
  CHECK_LOGS+=(prometheus)
  if ! wait_for 30 'up{job="guarded"} == 1' prom_up_is guarded 1; then
    REASON="$WAIT_ERR; target: $(prom_target guarded)"; return 1
  fi
  wait_for 10 'node_cpu_seconds_total{job="guarded"}' prom_has_series 'node_cpu_seconds_total{job="guarded"}' ||
    { REASON="up==1 but no node_cpu_seconds_total{job=\"guarded\"} series: $WAIT_ERR"; return 1; }
}

# 2. A scrape job with an SA lacking the binding: up == 0, lastError shows 403, and the
#    body is the apiserver-style Status naming the service account.
check_prometheus_scrape_forbidden() {
  need_sg main || return 1
  CHECK_LOGS+=(prometheus)
  wait_for 30 'unbound target scraped with an error' unbound_has_error ||
    { REASON="$WAIT_ERR; target: $(prom_target unbound)"; return 1; }
  wait_for 10 'up{job="unbound"} == 0' prom_up_is unbound 0 ||
    { REASON="$WAIT_ERR: up{job=\"unbound\"} = '$(prom_value 'up{job="unbound"}')'"; return 1; }
  local lasterr
  lasterr=$(prom_target unbound | jq -r .lastError)
  [[ $lasterr == *403* ]] || { REASON="lastError '$lasterr' does not mention 403"; return 1; }
  local want='forbidden: User "system:serviceaccount:e2e:unbound-scraper" cannot get path "/metrics"'
  get "$P_SG_MAIN" "$UNBOUND_TOKEN"
  [[ $CODE == 403 ]] || { REASON="direct GET with the unbound token: HTTP $CODE, want 403"; return 1; }
  status_json_is 403 "$want" ||
    { REASON="403 body is not Status{code:403, message:'$want'}: $(body_snippet)"; return 1; }
  echo "  lastError: $lasterr"
}

# 10. Drop-in: started with exactly kube-prometheus' node-exporter sidecar arguments,
#     it serves Prometheus correctly.
check_dropin_kube_prometheus_args() {
  need_sg dropin || return 1
  CHECK_LOGS+=(prometheus)
  wait_for 30 'up{job="dropin"} == 1' prom_up_is dropin 1 ||
    { REASON="$WAIT_ERR; target: $(prom_target dropin)"; return 1; }
  wait_for 10 'node_cpu_seconds_total{job="dropin"}' prom_has_series 'node_cpu_seconds_total{job="dropin"}' ||
    { REASON="up==1 but no node-exporter series for job dropin"; return 1; }
  echo "  args: ${DROPIN_ARGS[*]}"
}

# 3. A bogus token → 401; no token → 401 (with WWW-Authenticate: Bearer and a Status body).
check_unauthenticated_401() {
  need_sg main || return 1
  local label token
  for label in bogus none; do
    token=""
    if [[ $label == bogus ]]; then
      token="not-a-real-token-$(openssl rand -hex 8)"
      echo "$token" >>"$SECRETS"
    fi
    get "$P_SG_MAIN" "$token"
    [[ $CODE == 401 ]] || { REASON="$label token: HTTP $CODE, want 401"; return 1; }
    header_has WWW-Authenticate Bearer || { REASON="$label token: 401 without 'WWW-Authenticate: Bearer'"; return 1; }
    status_json_is 401 || { REASON="$label token: 401 body is not a Status with code 401: $(body_snippet)"; return 1; }
  done
}

# 4. --auth-token-audiences=scrape-guard: a token minted for audience scrape-guard is
#    accepted, a default-audience token is not.
check_token_audiences() {
  need_sg aud || return 1
  local aud_tok def_tok
  aud_tok=$(mint_token monitoring prometheus-k8s scrape-guard) || { REASON="TokenRequest with audience failed"; return 1; }
  def_tok=$(mint_token monitoring prometheus-k8s) || { REASON="TokenRequest failed"; return 1; }
  get "$P_SG_AUD" "$aud_tok"
  [[ $CODE == 200 ]] || { REASON="audience=scrape-guard token: HTTP $CODE, want 200: $(body_snippet)"; return 1; }
  get "$P_SG_AUD" "$def_tok"
  [[ $CODE == 401 ]] || { REASON="default-audience token: HTTP $CODE, want 401: $(body_snippet)"; return 1; }
}

# 5. N scrapes with one fresh token cause exactly one TokenReview and one SAR, counted
#    by the apiserver itself. A dedicated instance gets only these requests, and
#    Prometheus is paused (SIGSTOP) meanwhile so nothing else can touch the counters.
check_cache_one_review_per_token() {
  need_sg cache || return 1
  local n=20 tok before after i bad=0
  tok=$(mint_token monitoring prometheus-k8s) || { REASON="TokenRequest failed"; return 1; }
  kill -STOP "${PIDS[prometheus]}"
  sleep 0.3   # let in-flight scrapes settle
  before=$(review_counts)
  for ((i = 0; i < n; i++)); do
    get "$P_SG_CACHE" "$tok"
    [[ $CODE == 200 ]] || bad=$((bad + 1))
  done
  after=$(review_counts)
  kill -CONT "${PIDS[prometheus]}"
  [[ -n $before && -n $after ]] || { REASON="could not read apiserver_request_total"; return 1; }
  local dtr=$(( ${after% *} - ${before% *} )) dsar=$(( ${after#* } - ${before#* } ))
  echo "  $n scrapes: +$dtr tokenreviews, +$dsar subjectaccessreviews ($bad non-200)"
  ((bad == 0)) || { REASON="$bad of $n scrapes were not 200 (last: $CODE $(body_snippet))"; return 1; }
  ((dtr == 1 && dsar == 1)) || { REASON="want exactly +1 tokenreviews and +1 subjectaccessreviews, got +$dtr and +$dsar"; return 1; }
}

# 6. RBAC change with allow/deny TTLs of 3s: delete the binding → denied once the cached
#    allow expires; recreate it → allowed once the cached deny expires.
check_rbac_change_respects_ttls() {
  need_sg rbac || return 1
  CHECK_LOGS+=(kubectl)
  local tok t0 t
  tok=$(mint_token e2e rbac-flip) || { REASON="TokenRequest failed"; return 1; }
  get "$P_SG_RBAC" "$tok"
  [[ $CODE == 200 ]] || { REASON="with the binding: HTTP $CODE, want 200: $(body_snippet)"; return 1; }
  t0=$(date +%s%N)
  k delete clusterrolebinding e2e-rbac-flip >>"$WORK/logs/kubectl.log" 2>&1 || { REASON="kubectl delete failed"; return 1; }
  get "$P_SG_RBAC" "$tok"
  t=$(( ($(date +%s%N) - t0) / 1000000 ))
  if ((t < 2000)) && [[ $CODE != 200 ]]; then
    REASON="right after deleting the binding (${t}ms, within the 3s allow TTL) got $CODE, want the cached 200"; return 1
  fi
  wait_for 15 "403 after deleting the binding" code_is "$P_SG_RBAC" "$tok" 403 ||
    { REASON="$WAIT_ERR (last HTTP $CODE)"; return 1; }
  echo "  denied $(( ($(date +%s%N) - t0) / 1000000 ))ms after the binding was deleted (allow TTL 3s)"
  t0=$(date +%s%N)
  k apply -f "$FIX/rbac-flip-binding.yaml" >>"$WORK/logs/kubectl.log" 2>&1 || { REASON="kubectl apply failed"; return 1; }
  get "$P_SG_RBAC" "$tok"
  t=$(( ($(date +%s%N) - t0) / 1000000 ))
  if ((t < 1500)) && [[ $CODE != 403 ]]; then
    REASON="right after recreating the binding (${t}ms, within the 3s deny TTL) got $CODE, want the cached 403"; return 1
  fi
  wait_for 15 "200 after recreating the binding" code_is "$P_SG_RBAC" "$tok" 200 ||
    { REASON="$WAIT_ERR (last HTTP $CODE)"; return 1; }
  echo "  allowed again $(( ($(date +%s%N) - t0) / 1000000 ))ms after the binding was recreated (deny TTL 3s)"
}

# (doctor) `scrape-guard can-i` with scrape-guard's own kubeconfig and a fresh token of an
# unbound SA: exit 1, `decision:  denied` and RBAC YAML for that SA; applying exactly that
# YAML makes the next can-i exit 0 with the real apiserver's RBAC reason. Objects it
# created are deleted again; a ClusterRole that existed before (deploy/'s) is restored.
# kube_objects FILE: the objects in a manifest file as one JSON array, parsed by kubectl
# (client side; kubectl 1.20 prints several objects as a stream, not a List).
kube_objects() {
  local out
  out=$(k create --dry-run=client -o json -f "$1" 2>&1) || { echo "$out" >>"$WORK/logs/kubectl.log"; return 1; }
  jq -cs '[.[] | if .kind == "List" then .items[] else . end]' <<<"$out"
}
DOCTOR_MARK='To allow it, apply this (kubectl apply -f -):'
can_i_doctor() { # token-file: runs can-i, sets DOC_OUT and DOC_RC; output to sg-doctor.log
  DOC_OUT=$(timeout 30 env -i PATH="$PATH" HOME="$WORK" "$SG_BIN" can-i \
    --kubeconfig "$WORK/scrape-guard.kubeconfig" --token-file "$1" 2>&1)
  DOC_RC=$?
  printf '$ scrape-guard can-i ... (exit %s)\n%s\n' "$DOC_RC" "$DOC_OUT" >>"$WORK/logs/sg-doctor.log"
}
check_doctor_can_i_fixes_a_deny() {
  CHECK_LOGS+=(sg-doctor kubectl apiserver)
  local ns=e2e sa=doctor-scraper tok tf="$WORK/token-doctor" objs
  tok=$(mint_token "$ns" "$sa") || { REASON="TokenRequest failed"; return 1; }
  (umask 077; printf '%s' "$tok" >"$tf")
  can_i_doctor "$tf"
  [[ $DOC_RC == 1 ]] || { REASON="can-i before any binding: exit $DOC_RC, want 1: $(head -c 300 <<<"$DOC_OUT" | tr '\n' ' ')"; return 1; }
  grep -qx 'decision:  denied' <<<"$DOC_OUT" || { REASON="can-i exit 1 but no 'decision:  denied' line"; return 1; }
  grep -q "^user:      system:serviceaccount:$ns:$sa\( \|\$\)" <<<"$DOC_OUT" ||
    { REASON="can-i does not name user system:serviceaccount:$ns:$sa"; return 1; }
  grep -qxF "$DOCTOR_MARK" <<<"$DOC_OUT" || { REASON="can-i printed no '$DOCTOR_MARK' line"; return 1; }
  # exactly what follows that line is what the user is told to pipe into kubectl
  awk -v mark="$DOCTOR_MARK" 'found { print } $0 == mark { found = 1 }' <<<"$DOC_OUT" >"$WORK/doctor-rbac.yaml"
  # parse it with kubectl (client side) and look at what it grants to whom
  objs=$(kube_objects "$WORK/doctor-rbac.yaml") ||
    { REASON="kubectl cannot parse the YAML can-i printed (in $WORK/doctor-rbac.yaml)"; return 1; }
  local role binding
  role=$(jq -r '[.[] | select(.kind == "ClusterRole")] | if length == 1 then .[0].metadata.name else empty end' <<<"$objs")
  binding=$(jq -r --arg ns "$ns" --arg sa "$sa" --arg role "$role" '[.[] | select(.kind == "ClusterRoleBinding"
      and .roleRef.kind == "ClusterRole" and .roleRef.name == $role
      and any(.subjects[]; .kind == "ServiceAccount" and .name == $sa and .namespace == $ns))]
      | if length == 1 then .[0].metadata.name else empty end' <<<"$objs")
  [[ -n $role && -n $binding ]] ||
    { REASON="the YAML is not one ClusterRole + one ClusterRoleBinding of it to ServiceAccount $ns/$sa: $(jq -c '[.[] | {kind, name: .metadata.name}]' <<<"$objs")"; return 1; }
  local role_existed=0 binding_existed=0
  k get clusterrole "$role" >/dev/null 2>&1 && role_existed=1
  k get clusterrolebinding "$binding" >/dev/null 2>&1 && binding_existed=1
  echo "  printed ClusterRole $role$( ((role_existed)) && echo ' (exists already)'), ClusterRoleBinding $binding"
  k apply -f - <"$WORK/doctor-rbac.yaml" >>"$WORK/logs/kubectl.log" 2>&1 ||
    { REASON="kubectl apply -f - of the printed YAML failed"; return 1; }
  can_i_doctor "$tf"
  local rc=$DOC_RC out=$DOC_OUT
  # undo: delete what did not exist before; put deploy/'s ClusterRole back as deploy/ has it
  ((binding_existed)) || k delete clusterrolebinding "$binding" >>"$WORK/logs/kubectl.log" 2>&1
  if ((role_existed)); then
    [[ $role == scrape-guard-metrics-reader ]] && k apply -f "$DEPLOY/rbac-scraper.yaml" >>"$WORK/logs/kubectl.log" 2>&1
  else
    k delete clusterrole "$role" >>"$WORK/logs/kubectl.log" 2>&1
  fi
  [[ $rc == 0 ]] || { REASON="can-i after applying its YAML: exit $rc, want 0: $(head -c 400 <<<"$out" | tr '\n' ' ')"; return 1; }
  grep -qx 'decision:  allowed' <<<"$out" || { REASON="can-i exit 0 but no 'decision:  allowed' line"; return 1; }
  local by want
  by=$(grep '^by:' <<<"$out")
  want="by:        apiserver: RBAC: allowed by ClusterRoleBinding \"$binding\" of ClusterRole \"$role\" to ServiceAccount \"$sa/$ns\""
  [[ $by == "$want" ]] || { REASON="by: line is '$by', want '$want'"; return 1; }
  echo "  $by"
}

# (policy) --rbac-file=deploy/rbac-scraper.yaml: the SA it binds is allowed locally, so N
# scrapes with one fresh token cost +1 TokenReview and +0 SubjectAccessReviews (counted by
# the apiserver, Prometheus paused); an SA not bound there falls through to a real SAR
# (+1) and gets 403.
check_local_rbac_skips_reviews() {
  need_sg local || return 1
  local n=10 tok utok before after i bad=0
  local bound_ns bound_sa
  # the ServiceAccount that deploy/rbac-scraper.yaml binds
  local objs
  objs=$(kube_objects "$DEPLOY/rbac-scraper.yaml") || { REASON="kubectl cannot parse deploy/rbac-scraper.yaml"; return 1; }
  read -r bound_ns bound_sa < <(jq -r '[.[] | select(.kind == "ClusterRoleBinding") | .subjects[] | select(.kind == "ServiceAccount")][0] | "\(.namespace) \(.name)"' <<<"$objs")
  [[ -n $bound_sa && $bound_sa != null ]] || { REASON="no ServiceAccount subject in deploy/rbac-scraper.yaml: $(head -c 300 <<<"$objs")"; return 1; }
  tok=$(mint_token "$bound_ns" "$bound_sa") || { REASON="TokenRequest failed"; return 1; }
  utok=$(mint_token e2e unbound-scraper) || { REASON="TokenRequest failed"; return 1; }
  kill -STOP "${PIDS[prometheus]}"
  sleep 0.3
  before=$(review_counts)
  for ((i = 0; i < n; i++)); do
    get "$P_SG_LOCAL" "$tok"
    [[ $CODE == 200 ]] || bad=$((bad + 1))
  done
  local last="$CODE $(body_snippet)"
  after=$(review_counts)
  get "$P_SG_LOCAL" "$utok"
  local ucode=$CODE ustatus=0 after2
  status_json_is 403 "forbidden: User \"system:serviceaccount:e2e:unbound-scraper\" cannot get path \"/metrics\"" && ustatus=1
  after2=$(review_counts)
  kill -CONT "${PIDS[prometheus]}"
  [[ -n $before && -n $after && -n $after2 ]] || { REASON="could not read apiserver_request_total"; return 1; }
  local dtr=$(( ${after% *} - ${before% *} )) dsar=$(( ${after#* } - ${before#* } ))
  local utr=$(( ${after2% *} - ${after% *} )) usar=$(( ${after2#* } - ${after#* } ))
  echo "  $bound_ns/$bound_sa, $n scrapes: +$dtr tokenreviews, +$dsar subjectaccessreviews ($bad non-200)"
  echo "  e2e/unbound-scraper: HTTP $ucode, +$utr tokenreviews, +$usar subjectaccessreviews"
  ((bad == 0)) || { REASON="$bad of $n scrapes by $bound_ns/$bound_sa were not 200 (last: $last)"; return 1; }
  ((dtr == 1 && dsar == 0)) || { REASON="$bound_ns/$bound_sa allowed by --rbac-file: want +1 tokenreviews and +0 subjectaccessreviews, got +$dtr and +$dsar"; return 1; }
  [[ $ucode == 403 ]] || { REASON="SA not in --rbac-file: HTTP $ucode, want 403: $(body_snippet)"; return 1; }
  ((ustatus)) || { REASON="SA not in --rbac-file: 403 body is not the forbidden Status: $(body_snippet)"; return 1; }
  ((utr == 1 && usar == 1)) || { REASON="SA not in --rbac-file: want the fall-through +1 tokenreviews and +1 subjectaccessreviews, got +$utr and +$usar"; return 1; }
}

# (flag) --client-ca-file: a certificate from the suite's CA (CN=e2e-cert-scraper,
# O=e2e-cert-group), no token: 403 for User "e2e-cert-scraper" from a real SAR (no
# TokenReview); binding the metrics ClusterRole to Group e2e-cert-group → 200 once the 1s
# deny TTL ran out; the same subject from an untrusted CA → handshake failure or 401.
check_client_certificate_identity() {
  need_sg cert || return 1
  CHECK_LOGS+=(kubectl)
  local CURL_EXTRA=(--cert "$PKI/cert-scraper.crt" --key "$PKI/cert-scraper.key")
  local before after
  kill -STOP "${PIDS[prometheus]}"
  sleep 0.3
  before=$(review_counts)
  get "$P_SG_CERT" ""
  after=$(review_counts)
  kill -CONT "${PIDS[prometheus]}"
  local want='forbidden: User "e2e-cert-scraper" cannot get path "/metrics"'
  [[ $CODE == 403 ]] || { REASON="client certificate, no binding: HTTP $CODE, want 403: $(body_snippet)"; return 1; }
  status_json_is 403 "$want" || { REASON="403 body is not Status{code:403, message:'$want'}: $(body_snippet)"; return 1; }
  local dtr=$(( ${after% *} - ${before% *} )) dsar=$(( ${after#* } - ${before#* } ))
  echo "  certificate, no binding: 403 '$want' (+$dtr tokenreviews, +$dsar subjectaccessreviews)"
  ((dtr == 0 && dsar == 1)) || { REASON="want +0 tokenreviews and +1 subjectaccessreviews for the certificate's first request, got +$dtr and +$dsar"; return 1; }
  local t0=$(date +%s%N) ok=1
  k apply -f "$FIX/cert-group-binding.yaml" >>"$WORK/logs/kubectl.log" 2>&1 || { REASON="kubectl apply of the group binding failed"; return 1; }
  wait_for 15 "200 for the certificate once Group e2e-cert-group is bound" code_is "$P_SG_CERT" "" 200 ||
    { ok=0; REASON="$WAIT_ERR (last HTTP $CODE: $(body_snippet))"; }
  local t=$(( ($(date +%s%N) - t0) / 1000000 ))
  k delete -f "$FIX/cert-group-binding.yaml" >>"$WORK/logs/kubectl.log" 2>&1
  ((ok)) || return 1
  echo "  allowed ${t}ms after binding Group e2e-cert-group (deny TTL 1s)"
  # the same subject, signed by a CA scrape-guard does not trust
  CURL_EXTRA=(--cert "$PKI/rogue-scraper.crt" --key "$PKI/rogue-scraper.key")
  get "$P_SG_CERT" ""
  local err
  err=$(curl -sSk -o /dev/null --max-time 10 "${CURL_EXTRA[@]}" "https://127.0.0.1:$P_SG_CERT/metrics" 2>&1)
  [[ $CODE == 000 || $CODE == 401 ]] ||
    { REASON="certificate from an untrusted CA: HTTP $CODE, want a failed handshake or 401: $(body_snippet)"; return 1; }
  echo "  untrusted CA: HTTP $CODE${err:+ (curl: $err)}"
}

# (operating) scrape-guard's own /metrics on --proxy-endpoints-port is guarded like a
# scrape: no token → 401; an SA with `get /metrics` → 200 with scrape-guard's series; the
# unbound SA → 403.
check_own_metrics_are_guarded() {
  need_sg out || return 1
  local port=$P_SG_OUT_ADMIN
  get "$port" ""
  [[ $CODE == 401 ]] || { REASON="own /metrics without a token: HTTP $CODE, want 401: $(body_snippet)"; return 1; }
  get "$port" "$PROM_TOKEN"
  [[ $CODE == 200 ]] || { REASON="own /metrics with the prometheus-k8s token: HTTP $CODE, want 200: $(body_snippet)"; return 1; }
  local m
  for m in scrape_guard_requests_total scrape_guard_build_info; do
    grep -q "^$m[{ ]" "$BODY" || { REASON="own /metrics (200) has no $m series"; return 1; }
  done
  echo "  $(grep -c '^scrape_guard_' "$BODY") scrape_guard_* samples; $(grep '^scrape_guard_build_info' "$BODY" | head -n 1)"
  get "$port" "$UNBOUND_TOKEN"
  [[ $CODE == 403 ]] || { REASON="own /metrics with the unbound token: HTTP $CODE, want 403: $(body_snippet)"; return 1; }
  status_json_is 403 'forbidden: User "system:serviceaccount:e2e:unbound-scraper" cannot get path "/metrics"' ||
    { REASON="own /metrics, unbound token: 403 body is not the forbidden Status: $(body_snippet)"; return 1; }
}

# (design) the bearer token is not forwarded to the upstream.
check_token_not_forwarded_upstream() {
  need_sg out || return 1
  local tok before
  tok=$(mint_token monitoring prometheus-k8s) || { REASON="TokenRequest failed"; return 1; }
  before=$(wc -l <"$UPSTREAM_LOG")
  get "$P_SG_OUT" "$tok"
  [[ $CODE == 200 ]] || { REASON="HTTP $CODE, want 200: $(body_snippet)"; return 1; }
  (( $(wc -l <"$UPSTREAM_LOG") == before + 1 )) || { REASON="upstream saw $(( $(wc -l <"$UPSTREAM_LOG") - before )) requests, want 1"; return 1; }
  local last
  last=$(tail -n 1 "$UPSTREAM_LOG")
  jq -e '.authorization == false' <<<"$last" >/dev/null || { REASON="upstream received an Authorization header: $last"; return 1; }
  echo "  upstream saw headers: $(jq -c .headers <<<"$last")"
}

# 8. Exporter outage: stop node-exporter → 502; start it again → 200.
check_exporter_outage() {
  need_sg main || return 1
  CHECK_LOGS+=(node-exporter)
  get "$P_SG_MAIN" "$PROM_TOKEN"
  [[ $CODE == 200 ]] || { REASON="before the outage: HTTP $CODE, want 200"; return 1; }
  stop_proc node-exporter
  get "$P_SG_MAIN" "$PROM_TOKEN"
  local down=$CODE
  start_node_exporter || { REASON="could not restart node-exporter: $WAIT_ERR"; return 1; }
  [[ $down == 502 ]] || { REASON="with node-exporter stopped: HTTP $down, want 502"; return 1; }
  wait_for 15 "200 after node-exporter restarted" code_is "$P_SG_MAIN" "$PROM_TOKEN" 200 ||
    { REASON="$WAIT_ERR (last HTTP $CODE)"; return 1; }
}

# 7. Apiserver outage: stop it (SIGTERM by PID); a token with no cached decision gets
#    503 and the (logging) upstream receives nothing; restart it with the same flags and
#    data → scrapes recover without restarting scrape-guard.
#    The same outage window serves check stale_if_error_rides_out_an_outage (stale_*
#    below), so that the apiserver is stopped once for both.
check_apiserver_outage() {
  need_sg out || return 1
  local fresh before
  fresh=$(mint_token monitoring prometheus-k8s) || { REASON="TokenRequest failed"; return 1; }
  stale_before_outage
  before=$(wc -l <"$UPSTREAM_LOG")
  stop_proc apiserver
  get "$P_SG_OUT" "$fresh"
  local down=$CODE downbody
  downbody=$(body_snippet)
  local downstatus=0
  status_json_is 503 && downstatus=1
  local leaked=$(( $(wc -l <"$UPSTREAM_LOG") - before ))
  stale_during_outage
  local t0=$SECONDS
  start_apiserver || { REASON="could not restart kube-apiserver: $WAIT_ERR"; return 1; }
  echo "  apiserver restarted in $((SECONDS - t0))s"
  [[ $down == 503 ]] || { REASON="apiserver down, fresh token: HTTP $down, want 503: $downbody"; return 1; }
  [[ $downstatus == 1 ]] || { REASON="apiserver down: 503 body is not a Status with code 503: $downbody"; return 1; }
  ((leaked == 0)) || { REASON="apiserver down: 503 returned but the upstream received $leaked request(s)"; return 1; }
  wait_for 30 "200 after the apiserver came back" code_is "$P_SG_OUT" "$fresh" 200 ||
    { REASON="$WAIT_ERR (last HTTP $CODE: $(body_snippet))"; return 1; }
  (( $(wc -l <"$UPSTREAM_LOG") > before )) || { REASON="200 after recovery, but the upstream saw no request"; return 1; }
}

# (flag) --stale-if-error=5m with 1s TTLs (instance `stale`). Before apiserver_outage
# stops the apiserver, token A is allowed (200); during the outage, more than the TTLs
# later, A is still 200 (stale authentication and allow) while a never-seen token B of
# the same SA gets 503; after the restart both get 200 and scrape-guard's own metrics
# count scrape_guard_authorization_total{result="allowed",source="stale"} >= 1.
STALE_STATE="apiserver_outage did not reach its outage window"
stale_before_outage() { # (called by check_apiserver_outage, apiserver up)
  STALE_STATE="" STALE_A="" STALE_B=""
  if [[ -n ${SG_ERR[stale]:-} ]] || ! alive sg-stale; then STALE_STATE="instance 'stale' is not running"; return; fi
  STALE_A=$(mint_token monitoring prometheus-k8s) && STALE_B=$(mint_token monitoring prometheus-k8s) ||
    { STALE_STATE="TokenRequest failed"; return; }
  get "$P_SG_STALE" "$STALE_A"
  STALE_PRE="$CODE $(body_snippet | head -c 120)"
  STALE_T_A=$(date +%s%N)
}
stale_during_outage() { # (called by check_apiserver_outage, apiserver stopped)
  [[ -z $STALE_STATE ]] || return 0
  # past both 1s TTLs since A's review
  local left=$(( 1500 - ($(date +%s%N) - STALE_T_A) / 1000000 ))
  ((left > 0)) && sleep "$((left / 1000)).$(printf '%03d' $((left % 1000)))"
  STALE_AGE_MS=$(( ($(date +%s%N) - STALE_T_A) / 1000000 ))
  get "$P_SG_STALE" "$STALE_A"
  STALE_DOWN_A=$CODE STALE_DOWN_A_SERIES=0
  grep -q '^node_cpu_seconds_total' "$BODY" && STALE_DOWN_A_SERIES=1
  STALE_DOWN_A_BODY=$(body_snippet)
  get "$P_SG_STALE" "$STALE_B"
  STALE_DOWN_B=$CODE STALE_DOWN_B_STATUS=0
  status_json_is 503 && STALE_DOWN_B_STATUS=1
  STALE_DOWN_B_BODY=$(body_snippet)
  STALE_STATE=done
}
check_stale_if_error_rides_out_an_outage() {
  need_sg stale || return 1
  [[ $STALE_STATE == done ]] || { REASON="no outage observations: $STALE_STATE"; return 1; }
  [[ ${STALE_PRE%% *} == 200 ]] || { REASON="token A before the outage: HTTP $STALE_PRE, want 200"; return 1; }
  echo "  apiserver down, ${STALE_AGE_MS}ms after A's review (TTLs 1s): A → $STALE_DOWN_A, never-seen B → $STALE_DOWN_B"
  [[ $STALE_DOWN_A == 200 ]] || { REASON="apiserver down, token A (allowed ${STALE_AGE_MS}ms earlier, TTLs 1s, --stale-if-error=5m): HTTP $STALE_DOWN_A, want the stale 200: $STALE_DOWN_A_BODY"; return 1; }
  ((STALE_DOWN_A_SERIES)) || { REASON="apiserver down, token A: 200 without node-exporter series: $STALE_DOWN_A_BODY"; return 1; }
  [[ $STALE_DOWN_B == 503 ]] || { REASON="apiserver down, never-seen token B: HTTP $STALE_DOWN_B, want 503: $STALE_DOWN_B_BODY"; return 1; }
  ((STALE_DOWN_B_STATUS)) || { REASON="apiserver down, token B: 503 body is not a Status with code 503: $STALE_DOWN_B_BODY"; return 1; }
  # apiserver_outage restarted the apiserver and waited for it
  wait_for 20 "token B allowed after the apiserver came back" code_is "$P_SG_STALE" "$STALE_B" 200 ||
    { REASON="$WAIT_ERR (last HTTP $CODE: $(body_snippet))"; return 1; }
  get "$P_SG_STALE" "$STALE_A"
  [[ $CODE == 200 ]] || { REASON="token A after recovery: HTTP $CODE, want 200: $(body_snippet)"; return 1; }
  get "$P_SG_STALE_ADMIN" "$PROM_TOKEN"
  [[ $CODE == 200 ]] || { REASON="stale instance's own /metrics: HTTP $CODE, want 200: $(body_snippet)"; return 1; }
  local n
  n=$(awk '/^scrape_guard_authorization_total\{/ && /result="allowed"/ && /source="stale"/ { s += $NF } END { print s + 0 }' "$BODY")
  echo "  scrape_guard_authorization_total{result=\"allowed\",source=\"stale\"} = $n; $(grep '^scrape_guard_authentication_total{.*source="stale"' "$BODY" | tr '\n' ' ')"
  awk -v n="$n" 'BEGIN { exit !(n >= 1) }' ||
    { REASON="scrape_guard_authorization_total{result=\"allowed\",source=\"stale\"} = $n, want >= 1: $(grep '^scrape_guard_authorization_total' "$BODY" | tr '\n' ' ')"; return 1; }
  n=$(awk '/^scrape_guard_authentication_total\{/ && /source="stale"/ { s += $NF } END { print s + 0 }' "$BODY")
  awk -v n="$n" 'BEGIN { exit !(n >= 1) }' ||
    { REASON="A's TokenReview had expired too (1s), but scrape_guard_authentication_total{source=\"stale\"} = $n, want >= 1: $(grep '^scrape_guard_authentication_total' "$BODY" | tr '\n' ' ')"; return 1; }
}

# 9. /healthz and /readyz on --proxy-endpoints-port reflect reality: readyz 503 while
#    the apiserver is down, 200 once it is back.
check_health_endpoints() {
  need_sg out || return 1
  local admin=$P_SG_OUT_ADMIN
  wait_for 10 "readyz 200 (apiserver up)" code_is "$admin" "" 200 /readyz ||
    { REASON="$WAIT_ERR (last HTTP $CODE)"; return 1; }
  code_is "$admin" "" 200 /healthz || { REASON="healthz: HTTP $CODE, want 200"; return 1; }
  stop_proc apiserver
  local t0=$SECONDS ok=1
  wait_for 15 "readyz 503 with the apiserver down" code_is "$admin" "" 503 /readyz || { ok=0; REASON="$WAIT_ERR (last HTTP $CODE)"; }
  local t_down=$((SECONDS - t0))
  local hz_ok=1
  code_is "$admin" "" 200 /healthz || hz_ok=0
  local hz_code=$CODE
  start_apiserver || { REASON="could not restart kube-apiserver: $WAIT_ERR"; return 1; }
  ((ok)) || return 1
  ((hz_ok)) || { REASON="healthz with the apiserver down: HTTP $hz_code, want 200 (liveness must not depend on the apiserver)"; return 1; }
  t0=$SECONDS
  wait_for 20 "readyz 200 after the apiserver came back" code_is "$admin" "" 200 /readyz ||
    { REASON="$WAIT_ERR (last HTTP $CODE)"; return 1; }
  echo "  readyz went 503 within ${t_down}s of the outage, back to 200 within $((SECONDS - t0))s"
}

# (flag contract) --log-format=json: every line the `cache` instance wrote is a JSON object.
check_json_log_format() {
  CHECK_LOGS+=(sg-cache)
  local f="$WORK/logs/sg-cache.log" n bad
  [[ -s $f ]] || { REASON="sg-cache.log is empty"; return 1; }
  n=$(wc -l <"$f")
  bad=$(python3 -c '
import json, sys
bad = 0
for line in open(sys.argv[1]):
    try:
        bad += not isinstance(json.loads(line), dict)
    except ValueError:
        bad += 1
print(bad)' "$f")
  ((bad == 0)) || { REASON="$bad of $n lines of sg-cache.log are not JSON objects"; return 1; }
  echo "  $n JSON lines"
}

# (design) no token used in the suite (the proxy's own, scrapers', bogus, admin) appears
# in any scrape-guard log, two of which ran at debug level.
check_tokens_never_logged() {
  local f tok hits=()
  while IFS= read -r tok; do
    [[ -n $tok ]] || continue
    for f in "$WORK"/logs/sg-*.log; do
      if grep -qF -- "$tok" "$f"; then hits+=("$(basename "$f")"); fi
    done
  done <"$SECRETS"
  if ((${#hits[@]})); then
    REASON="a bearer token appears in: $(printf '%s\n' "${hits[@]}" | sort -u | tr '\n' ' ')"
    return 1
  fi
  echo "  $(grep -c . "$SECRETS") tokens, $(cat "$WORK"/logs/sg-*.log | wc -l) log lines"
}

# ------------------------------------------------------------------ run
for c in "${CHECKS[@]}"; do
  run_check "$c"
done

log "suite took $((SECONDS))s"
if ((FAILED)); then echo "failed checks: ${FAILED_NAMES[*]}"; fi
if [[ ${E2E_KEEP:-0} == 1 ]] || ((FAILED)); then echo "logs and configs kept in $WORK"; fi
# the summary is the last line of the output
echo "e2e: $PASSED passed, $FAILED failed"
SUMMARY_PRINTED=1
((FAILED == 0))
