#!/usr/bin/env bash
# Instructions per scrape under valgrind's callgrind: scrape-guard (cache hits) against
# nginx (the TLS reverse-proxy baseline), same page, certificate and clients as
# benches/load.sh. A count of instructions, not a time: neither the machine's load nor
# its other work changes it, so two commits can be compared without noise (SG_B).
# See benches/README.md ("benches/callgrind.sh") for what it does and does not count.
#
#   benches/callgrind.sh                       # builds first, then ~7 min; report in target/bench-callgrind/report.md
#   SG=/path/scrape-guard BENCH_KIT=/path/bench_kit benches/callgrind.sh   # no build
#   SG_B=/path/other-scrape-guard benches/callgrind.sh                     # A/B, third column
#
# Environment:
#   SG, BENCH_KIT   the binaries (default: cargo build --release --locked, target/release/...)
#   SG_B            a second scrape-guard, measured in the same cases (A/B)
#   SG_ARGS         extra flags for both scrape-guards (e.g. "--tls-curve-preferences=X25519")
#   SG_THREADS      scrape-guard's --worker-threads (default: not passed, i.e. its default)
#   TARGET_ENV      environment of the measured processes (default: glibc tunables that keep
#                   memcpy/memset off `rep movsb`/`rep stosb`, see below; empty: glibc's own)
#   CASES           subset of "h1 h2 newconn h1-curl newconn-curl" (default all five)
#   TARGETS         subset of "sg sg-b nginx" (default sg and nginx, plus sg-b with SG_B)
#   N1, N2          requests in the short and the long run (default 200 and 1200)
#   CONNS           connections for h1 and newconn (default 8)
#   H2_CONNS, H2_STREAMS   HTTP/2 connections and streams per connection (default 2, 4)
#   REPEATS         rounds of the h1 case (default 3: the spread, and a median in the table)
#   TOP             1 (default): profiles of the h1 runs (callgrind_annotate) in OUT; 0: no
#   OUT             report directory (default target/bench-callgrind)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$TARGET_DIR/bench-callgrind}
N1=${N1:-200}
N2=${N2:-1200}
CONNS=${CONNS:-8}
H2_CONNS=${H2_CONNS:-2}
H2_STREAMS=${H2_STREAMS:-4}
CASES=${CASES:-h1 h2 newconn h1-curl newconn-curl}
REPEATS=${REPEATS:-3}
TOP=${TOP:-1}
SG_ARGS=${SG_ARGS:-}
SG_THREADS=${SG_THREADS:-}
# glibc's memcpy/memset use `rep movsb`/`rep stosb` from 8 KiB/2 KiB on; valgrind counts
# every iteration of those, one Ir per byte, where the CPU moves 32-64 bytes a cycle. With
# the thresholds out of reach, large copies take glibc's AVX2 loop, whose count is in line
# with its cost. TARGET_ENV= (empty) measures glibc's default choice instead.
NO_REP_STRINGS=GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=0xffffffffffff:glibc.cpu.x86_rep_stosb_threshold=0xffffffffffff
TARGET_ENV=${TARGET_ENV-$NO_REP_STRINGS}
# Bounds (seconds) on every wait.
START_WAIT=${START_WAIT:-180} # a process under valgrind answering its first request
STOP_WAIT=${STOP_WAIT:-120}   # a process under valgrind exiting and writing its totals
OHA_WAIT=${OHA_WAIT:-900}     # one measured oha run

VG_ARGS=(--tool=callgrind --cache-sim=no --branch-sim=no --dump-instr=no --dump-line=no
    --collect-atstart=yes --collect-systime=no --separate-threads=no --trace-children=no)

START_TIME=$(date +%s)
# shellcheck source=benches/lib.sh
. benches/lib.sh
start_work sg-callgrind

# wait_http PID SECONDS URL [curl args]: until URL answers (any status), at most SECONDS,
# failing early if PID exits.
wait_http() {
    local pid=$1 secs=$2 url=$3; shift 3
    local deadline=$(($(date +%s) + secs))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if curl -sk -o /dev/null --max-time 5 "$@" "$url"; then return 0; fi
        kill -0 "$pid" 2>/dev/null || die "$url: process $pid exited"
        sleep 0.2
    done
    die "$url did not come up in ${secs}s"
}

# stop PID SIGNAL: signal it and wait (bounded) for it to exit.
stop() {
    local pid=$1 sig=$2
    kill "-$sig" "$pid" 2>/dev/null || true
    local deadline=$(($(date +%s) + STOP_WAIT))
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            kill -9 "$pid" 2>/dev/null || true
            die "process $pid did not exit within ${STOP_WAIT}s of SIG$sig"
        fi
        sleep 0.2
    done
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

RESULTS=$OUT/results.jsonl
record() { printf '%s\n' "$1" >>"$RESULTS"; }
json_str() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }

# ------------------------------------------------------------------ setup
setup() {
    mkdir -p "$WORK/www" "$WORK/nginx-up" "$WORK/nginx-tls" "$WORK/api" "$WORK/logs"
    cp benches/fixtures/node-exporter.prom "$WORK/www/metrics"
    # One ECDSA P-256 certificate for nginx and scrape-guard alike (as load.sh).
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null

    UP_PORT=$(free_port)
    # The upstream: nginx serving the page as a static file on plain HTTP (as load.sh);
    # not measured, not under valgrind.
    nginx_upstream_conf 1024 >"$WORK/nginx-up/nginx.conf"
    "$NGINX" -p "$WORK/nginx-up" -c "$WORK/nginx-up/nginx.conf" >"$WORK/logs/nginx-up.out" 2>&1 &
    PIDS+=($!)
    local up_pid=$!

    "$KIT" apiserver --dir "$WORK/api" >"$WORK/logs/api.out" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do [ -s "$WORK/api/control" ] && break; sleep 0.1; done
    [ -s "$WORK/api/control" ] || die "fake apiserver did not start"
    wait_http "$up_pid" 20 "http://127.0.0.1:$UP_PORT/metrics"
    WANT_SHA=$(sha256sum <benches/fixtures/node-exporter.prom | cut -d' ' -f1)
    PAGE_BYTES=$(stat -c %s benches/fixtures/node-exporter.prom)
    [ "$(curl -s "http://127.0.0.1:$UP_PORT/metrics" | sha256sum | cut -d' ' -f1)" = "$WANT_SHA" ] ||
        die "the upstream does not serve benches/fixtures/node-exporter.prom"
    AUTH=(-H "Authorization: Bearer bench-prometheus")
}

# nginx_conf PORT FILE: the baseline of load.sh (TLS reverse proxy, no auth, upstream
# keep-alive pool, proxy_buffering off), as one process: master_process off, so the
# process callgrind runs is the one that serves.
nginx_conf() {
    cat >"$2" <<NGINX_TLS
worker_processes 1;
master_process off;
daemon off;
pid $WORK/nginx-tls/nginx.$1.pid;
error_log $WORK/logs/nginx-tls.err warn;
events { worker_connections 1024; }
http {
$(nginx_tls_http)
    server {
        listen 127.0.0.1:$1 ssl http2;
$(nginx_proxy_location off)
    }
}
NGINX_TLS
}

# start_target TARGET PORT [WRAPPER...]: starts TARGET (sg, sg-b, nginx) on PORT, under
# WRAPPER (valgrind ...) if given; sets TPID, TURL, TLOG (its output) and TSTOP (the
# signal that stops it gracefully).
start_target() {
    local target=$1 port=$2; shift 2
    TURL="https://127.0.0.1:$port"
    case $target in
        nginx)
            nginx_conf "$port" "$WORK/nginx-tls/nginx.$port.conf"
            TLOG=$WORK/logs/nginx.$port.out
            # shellcheck disable=SC2086
            env $TARGET_ENV "$@" "$NGINX" -p "$WORK/nginx-tls" -c "$WORK/nginx-tls/nginx.$port.conf" \
                >"$TLOG" 2>&1 &
            TSTOP=QUIT # graceful: finish in-flight requests, exit
            ;;
        sg | sg-b)
            local bin=$SG
            [ "$target" = sg-b ] && bin=$SG_B
            TLOG=$WORK/logs/$target.$port.log
            # shellcheck disable=SC2086
            env $TARGET_ENV "$@" "$bin" --secure-listen-address="127.0.0.1:$port" \
                --tls-cert-file="$WORK/tls.crt" --tls-private-key-file="$WORK/tls.key" \
                --kubeconfig="$WORK/api/kubeconfig" --upstream="http://127.0.0.1:$UP_PORT/" \
                --auth-cache-ttl=1h --authz-allow-ttl=1h ${SG_THREADS:+--worker-threads=$SG_THREADS} $SG_ARGS \
                >"$TLOG" 2>&1 &
            TSTOP=TERM # drains, then exits
            ;;
    esac
    TPID=$!
    PIDS+=("$TPID")
    wait_http "$TPID" "$START_WAIT" "$TURL/metrics"
    # The first (cache-filling for scrape-guard) request, checked: the upstream's bytes.
    local got
    got=$(curl -sk --max-time 60 "${AUTH[@]}" "$TURL/metrics" | sha256sum | cut -d' ' -f1)
    [ "$got" = "$WANT_SHA" ] || die "$target does not serve the upstream's page"
}

# The clients. oha (rustls) as load.sh, and curl (OpenSSL) for what oha cannot offer:
# Go's cipher choice (AES-128-GCM, which Go prefers on AES hardware; oha prefers
# AES-256-GCM) and a full handshake on every new connection (Go's default client has no
# session cache; oha resumes).
CURL_TLS=(--tls13-ciphers TLS_AES_128_GCM_SHA256 --ciphers ECDHE-ECDSA-AES128-GCM-SHA256)
client_desc() {
    case $1 in
        h1) echo "oha, HTTP/1.1 keep-alive, $CONNS connections" ;;
        h2) echo "oha --http2, $H2_CONNS connections x $H2_STREAMS streams" ;;
        newconn) echo "oha --disable-keepalive: a new TLS connection per request (resumed), $CONNS at a time" ;;
        h1-curl) echo "curl, HTTP/1.1 keep-alive, $CONNS connections, AES-128-GCM" ;;
        newconn-curl) echo "curl, a new connection and full handshake per request, $CONNS at a time, AES-128-GCM" ;;
        *) die "unknown case $1 (h1 h2 newconn h1-curl newconn-curl)" ;;
    esac
}

# client CASE N URL RAW [AUTH...]: N requests as CASE, output in RAW; fails unless every
# one was a 200 (and, for curl, unless the connections were the expected ones).
client() {
    local case=$1 n=$2 url=$3 raw=$4; shift 4
    case $case in
        h1 | h2 | newconn)
            local args=(-c "$CONNS")
            [ "$case" = h2 ] && args=(--http2 -c "$H2_CONNS" -p "$H2_STREAMS")
            [ "$case" = newconn ] && args+=(--disable-keepalive)
            timeout "$OHA_WAIT" "$OHA" --no-tui --output-format json --insecure -n "$n" "${args[@]}" \
                "$@" "$url" >"$raw" 2>"$raw.err" || die "oha $raw failed: $(head -c 300 "$raw.err")"
            python3 benches/fixtures/callgrind_report.py oha-check "$raw" "$n" "$PAGE_BYTES" ||
                die "oha $raw: not all 200s of the page"
            ;;
        h1-curl | newconn-curl)
            local cfg=$WORK/curl.$n.cfg args=() want=$CONNS
            for _ in $(seq "$n"); do printf 'url = "%s"\noutput = "/dev/null"\n' "$url"; done >"$cfg"
            [ "$case" = newconn-curl ] && { args=(--no-sessionid -H "Connection: close"); want=$n; }
            timeout "$OHA_WAIT" curl -sk --http1.1 -Z --parallel-max "$CONNS" --parallel-immediate --max-time 600 \
                "${CURL_TLS[@]}" "${args[@]}" "$@" -w '%{http_code} %{num_connects} %{size_download}\n' -K "$cfg" \
                >"$raw" 2>"$raw.err" || die "curl $raw failed: $(head -c 300 "$raw.err")"
            awk -v n="$n" -v want="$want" -v size="$PAGE_BYTES" -v f="$raw" '
                { codes[$1]++; conns += $2; if ($3 != size) short++ }
                END { if (NR != n || codes[200] != n || conns != want || short) {
                        printf "%s: expected %d x 200 of %d bytes on %d connections, got %d responses (%d x 200, %d of another size) on %d\n",
                            f, n, size, want, NR, codes[200], short, conns > "/dev/stderr"; exit 1 } }' "$raw" ||
                die "curl $raw: not all 200s of the page, or not the expected connections"
            ;;
        *) die "unknown case $case" ;;
    esac
}

# run_one CASE TARGET ROUND N: one process under callgrind, N requests, stopped; records Ir.
run_one() {
    local case=$1 target=$2 round=$3 n=$4
    local tag=$case.$target.r$round.n$n
    local file=$OUT/raw/callgrind.$tag.out raw=$OUT/raw/client.$tag.txt
    rm -f "$file"
    local t0 port auth=()
    t0=$(date +%s)
    port=$(free_port)
    start_target "$target" "$port" valgrind "${VG_ARGS[@]}" --callgrind-out-file="$file"
    [ "$target" = nginx ] || auth=("${AUTH[@]}")
    client "$case" "$n" "$TURL/metrics" "$raw" "${auth[@]}"
    stop "$TPID" "$TSTOP"
    cp "$TLOG" "$OUT/raw/log.$tag.txt"
    [ -s "$file" ] || die "$tag: callgrind wrote no $file"
    local ir
    ir=$(python3 benches/fixtures/callgrind_report.py total "$file")
    record "{\"kind\":\"run\",\"case\":\"$case\",\"target\":\"$target\",\"round\":$round,\"n\":$n,\"ir\":$ir,\"ok\":$n,\"file\":\"raw/callgrind.$tag.out\",\"secs\":$(($(date +%s) - t0))}"
    log "$tag: Ir $ir ($(($(date +%s) - t0)) s)"
}

# run_pair CASE TARGET ROUND: N1 and N2; logs Ir/scrape.
run_pair() {
    local case=$1 target=$2 round=$3
    run_one "$case" "$target" "$round" "$N1"
    run_one "$case" "$target" "$round" "$N2"
    python3 - "$RESULTS" "$case" "$target" "$round" "$N1" "$N2" <<'PY' >&2
import json, sys
path, case, target, rnd, n1, n2 = sys.argv[1:]
rows = [json.loads(l) for l in open(path) if '"run"' in l]
t = {r["n"]: r["ir"] for r in rows if (r["case"], r["target"], str(r["round"])) == (case, target, rnd)}
print(f"  {case} {target} round {rnd}: {(t[int(n2)] - t[int(n1)]) / (int(n2) - int(n1)):,.0f} Ir/scrape")
PY
}

# probe TARGET: what the clients negotiate with TARGET (run natively, not under
# valgrind): oha's first HTTP/1.1 connection, its second (is the session resumed, as in
# newconn?), oha --http2, and curl as in the *-curl cases.
probe() {
    local target=$1 port pport plog ppid auth=()
    port=$(free_port); pport=$(free_port); plog=$WORK/probe.$target.jsonl
    rm -f "$plog" "$plog.ready"
    start_target "$target" "$port"
    python3 benches/fixtures/callgrind_report.py probe "$pport" "$port" "$plog" &
    PIDS+=($!); ppid=$!
    for _ in $(seq 100); do [ -e "$plog.ready" ] && break; sleep 0.1; done
    [ -e "$plog.ready" ] || die "TLS probe did not start"
    [ "$target" = nginx ] || auth=("${AUTH[@]}")
    timeout 60 "$OHA" --no-tui --insecure -n 2 -c 1 --disable-keepalive "${auth[@]}" \
        "https://127.0.0.1:$pport/metrics" >/dev/null 2>&1 || die "probe oha failed"
    timeout 60 "$OHA" --no-tui --insecure -n 1 -c 1 --http2 "${auth[@]}" \
        "https://127.0.0.1:$pport/metrics" >/dev/null 2>&1 || die "probe oha --http2 failed"
    timeout 60 curl -sk --http1.1 "${CURL_TLS[@]}" "${auth[@]}" -o /dev/null \
        "https://127.0.0.1:$pport/metrics" || die "probe curl failed"
    sleep 0.5
    stop "$ppid" TERM
    stop "$TPID" "$TSTOP"
    # oha exits 0 even when its requests fail: the relay must have seen all four.
    [ "$(grep -c '"server"' "$plog")" = 4 ] || die "TLS probe of $target: expected 4 handshakes, got: $(cat "$plog")"
    record "{\"kind\":\"probe\",\"target\":\"$target\",\"labels\":[\"oha, 1st connection\",\"oha, 2nd connection\",\"oha --http2\",\"curl\"],\"conns\":[$(paste -sd, "$plog")]}"
}

# top_profiles "TARGETS": callgrind_annotate of the h1 runs (round 1) in OUT:
#   top-sg-h1-self.txt, top-sg-h1-inclusive.txt   scrape-guard's N2 run as callgrind saw
#                                                 it (start-up included), top 30 functions
#   top-TARGET-h1-per-scrape-self.txt             per function, (Ir(N2) - Ir(N1)) / (N2 - N1):
#   top-sg-h1-per-scrape-inclusive.txt            the profile of one scrape, top 30
top_profiles() {
    local t f1 f2 a rep=benches/fixtures/callgrind_report.py
    for t in $1; do
        f1=$OUT/raw/callgrind.h1.$t.r1.n$N1.out
        f2=$OUT/raw/callgrind.h1.$t.r1.n$N2.out
        a=$OUT/raw/annotate.h1.$t.r1
        callgrind_annotate --threshold=100 "$f1" >"$a.n$N1.self.txt" 2>/dev/null || die "callgrind_annotate $f1"
        callgrind_annotate --threshold=100 "$f2" >"$a.n$N2.self.txt" 2>/dev/null || die "callgrind_annotate $f2"
        python3 "$rep" top-diff "$a.n$N1.self.txt" "$a.n$N2.self.txt" $((N2 - N1)) 30 \
            >"$OUT/top-$t-h1-per-scrape-self.txt"
        [ "$t" = sg ] || continue
        python3 "$rep" top "$a.n$N2.self.txt" 30 >"$OUT/top-sg-h1-self.txt"
        callgrind_annotate --threshold=100 --inclusive=yes "$f1" >"$a.n$N1.incl.txt" 2>/dev/null || die "callgrind_annotate $f1"
        callgrind_annotate --threshold=100 --inclusive=yes "$f2" >"$a.n$N2.incl.txt" 2>/dev/null || die "callgrind_annotate $f2"
        python3 "$rep" top "$a.n$N2.incl.txt" 30 >"$OUT/top-sg-h1-inclusive.txt"
        python3 "$rep" top-diff "$a.n$N1.incl.txt" "$a.n$N2.incl.txt" $((N2 - N1)) 30 \
            >"$OUT/top-sg-h1-per-scrape-inclusive.txt"
    done
    log "profiles: $OUT/top-*.txt"
}

# ------------------------------------------------------------------ main
main() {
    install_tools valgrind
    if [ -z "${SG:-}" ] || [ -z "${BENCH_KIT:-}" ]; then
        log "cargo build --release --locked --bin scrape-guard --example bench_kit"
        cargo build --release --locked --bin scrape-guard --example bench_kit 2>&1 | tail -1 >&2 ||
            die "cargo build failed"
    fi
    SG=${SG:-$TARGET_DIR/release/scrape-guard}
    KIT=${BENCH_KIT:-$TARGET_DIR/release/examples/bench_kit}
    if [ ! -x "$SG" ] || [ ! -x "$KIT" ]; then die "binaries missing: $SG $KIT"; fi
    [ -z "${SG_B:-}" ] || [ -x "$SG_B" ] || die "SG_B=$SG_B is not executable"
    mkdir -p "$OUT/raw"
    rm -f "$RESULTS" "$OUT"/raw/* "$OUT"/top-*.txt
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

    setup
    local targets=${TARGETS:-sg nginx} c t
    [ -n "${SG_B:-}" ] && [ -z "${TARGETS:-}" ] && targets="sg sg-b nginx"
    for t in $targets; do
        case $t in sg | sg-b | nginx) ;; *) die "TARGETS: unknown target $t" ;; esac
        [ "$t" != sg-b ] || [ -n "${SG_B:-}" ] || die "TARGETS has sg-b but SG_B is not set"
    done
    [ "$(echo "$targets" | tr ' ' '\n' | sort | uniq -d)" = "" ] || die "TARGETS: a target twice"
    local clients="{" sep=""
    for c in $CASES; do clients+="$sep\"$c\":$(json_str "$(client_desc "$c")")"; sep=,; done
    clients+="}"
    record "{\"kind\":\"env\",\"date\":\"$(date -u +%FT%TZ)\",\"commit\":\"$(git rev-parse --short HEAD)\",\"src_dirty\":$(git status --porcelain -- src | wc -l),\"sg\":$(json_str "$SG"),\"sg_sha256\":\"$(sha256sum "$SG" | cut -c1-16)\",\"sg_b\":$(json_str "${SG_B:-}"),\"sg_b_sha256\":\"$([ -n "${SG_B:-}" ] && sha256sum "$SG_B" | cut -c1-16)\",\"sg_args\":$(json_str "${SG_THREADS:+--worker-threads=$SG_THREADS }$SG_ARGS"),\"target_env\":$(json_str "$TARGET_ENV"),\"valgrind\":\"$(valgrind --version)\",\"valgrind_args\":$(json_str "${VG_ARGS[*]}"),\"nginx\":\"$("$NGINX" -v 2>&1 | cut -d/ -f2)\",\"openssl\":\"$(openssl version | cut -d' ' -f2)\",\"oha\":\"$("$OHA" --version | cut -d' ' -f2)\",\"n1\":$N1,\"n2\":$N2,\"cases\":\"$CASES\",\"clients\":$clients,\"kernel\":\"$(uname -r)\",\"cpu\":$(json_str "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"),\"nproc\":$(nproc)}"

    for t in $targets; do probe "$t"; done
    log "TLS as negotiated: $(grep '"probe"' "$RESULTS" | python3 -c 'import json,sys; print("; ".join(r["target"]+": "+", ".join("%s %s %s%s" % (s.get("version"), s.get("suite"), s.get("group"), " resumed" if s.get("resumed_psk") else "") for s in (c.get("server", {}) for c in r["conns"])) for r in map(json.loads, sys.stdin)))')"

    local r
    for c in $CASES; do
        for t in $targets; do
            run_pair "$c" "$t" 1
        done
    done
    if [[ " $CASES " == *" h1 "* ]]; then
        for r in $(seq 2 "$REPEATS"); do
            for t in $targets; do run_pair h1 "$t" "$r"; done
        done
    fi

    if [ "$TOP" = 1 ] && [[ " $CASES " == *" h1 "* ]]; then top_profiles "$targets"; fi

    record "{\"kind\":\"end\",\"elapsed_s\":$(($(date +%s) - START_TIME))}"
    python3 benches/fixtures/callgrind_report.py report "$RESULTS" >"$OUT/report.md"
    log "report: $OUT/report.md ($(($(date +%s) - START_TIME)) s)"
    cat "$OUT/report.md"
}

main "$@"
