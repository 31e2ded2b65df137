#!/usr/bin/env bash
# The scrape Prometheus makes, scrape-guard against nginx in the same rounds: HTTP/2 with
# `Accept-Encoding: gzip` against an exporter that answers as Go's do (gzip,
# `Transfer-Encoding: chunked` in 4 KiB writes), 1 and 8 connections each scraping one
# page at a time (Prometheus replicas), HTTP/2 uncompressed, HTTP/1.1 compressed, and a
# kube-state-metrics-sized page. See benches/README.md ("benches/scrape.sh").
#
#   benches/scrape.sh                       # builds first; report in target/bench-scrape/report.md
#   SG=/path/scrape-guard BENCH_KIT=/path/bench_kit benches/scrape.sh      # no build
#   SG_B=/path/other-scrape-guard benches/scrape.sh                        # A/B in the same rounds
#   COUNT=1 ...                             # also: syscalls, TLS records, DATA frames per scrape
#
# Environment: SECS (seconds per run, default 8), REPEATS (rounds, alternating the order
# of the targets, default 3), CASES (subset of "gz-h2-c1 gz-h2-c8 plain-h2 gz-h1 big-h2
# big-h1"), BIG_BYTES (the big page, default 30000000), COUNT (1: the counts, default 0),
# COUNT_N (requests counted, default 500), CALLGRIND (cases whose instructions per
# scrape to count under valgrind, e.g. "gz-h2-c1 plain-h2"; CG_N1, CG_N2 scrapes, default
# 200 and 1200), OUT (default target/bench-scrape), SG_ENV, REPEATS=0 (no CPU rounds: only the counts).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$TARGET_DIR/bench-scrape}
SECS=${SECS:-8}
REPEATS=${REPEATS:-3}
CASES=${CASES:-gz-h2-c1 gz-h2-c8 plain-h2 gz-h1 big-h2 big-h1}
BIG_BYTES=${BIG_BYTES:-30000000}
COUNT=${COUNT:-0}
COUNT_N=${COUNT_N:-500}
CALLGRIND=${CALLGRIND:-}
CG_N1=${CG_N1:-200}
CG_N2=${CG_N2:-1200}
# As benches/callgrind.sh: large copies off `rep movsb`, which valgrind counts per byte.
CG_ENV=${CG_ENV-GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=0xffffffffffff:glibc.cpu.x86_rep_stosb_threshold=0xffffffffffff}
SG_ENV=${SG_ENV:-}

# shellcheck source=benches/lib.sh
. benches/lib.sh
start_work sg-scrape

RESULTS=$OUT/results.jsonl
record() { printf '%s\n' "$1" >>"$RESULTS"; }

cpu_ticks() {
    local total=0 pid fields
    for pid in "$@"; do
        fields=$(sed 's/^.*) //' "/proc/$pid/stat")
        set -- $fields
        total=$((total + ${12} + ${13}))
    done
    echo $total
}
mem_kb() {
    local field=$1 total=0 pid v; shift
    for pid in "$@"; do
        v=$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$pid/status")
        total=$((total + v))
    done
    echo $total
}
reset_peak() { local pid; for pid in "$@"; do echo 5 >"/proc/$pid/clear_refs"; done; }
nginx_workers() { ps -o pid= --ppid "$1" | tr -d ' ' | tr '\n' ' '; }

wait_http() {
    local url=$1; shift
    for _ in $(seq 200); do
        if curl -sk -o /dev/null --max-time 1 "$@" "$url"; then return 0; fi
        sleep 0.1
    done
    die "$url did not come up"
}

# ------------------------------------------------------------------ cases
# case_args CASE: the h2load flags and the path of CASE. Every case names its
# Accept-Encoding: gzip, as Prometheus sends it, or identity.
case_args() {
    case $1 in
    gz-h2-c1) echo "-c 1 -m 1 -H accept-encoding:gzip /metrics" ;;
    gz-h2-c8) echo "-c 8 -m 1 -H accept-encoding:gzip /metrics" ;;
    plain-h2) echo "-c 8 -m 1 -H accept-encoding:identity /metrics" ;;
    gz-h1) echo "--h1 -c 8 -H accept-encoding:gzip /metrics" ;;
    big-h2) echo "-c 2 -m 1 -H accept-encoding:identity /ksm/metrics" ;;
    big-h1) echo "--h1 -c 2 -H accept-encoding:identity /ksm/metrics" ;;
    *) die "unknown case $1" ;;
    esac
}

# run CASE ROUND TARGET: one measured h2load run of SECS seconds.
run() {
    local case=$1 round=$2 target=$3 args path base pids auth=()
    args=$(case_args "$case"); path=${args##* }; args=${args% *}
    case $target in
    nginx) base=$U_NGX; pids=$NGX_PIDS ;;
    sg) base=$U_SG; pids=$SG_PID; auth=(-H "authorization: Bearer bench-prometheus") ;;
    sg-b) base=$U_SGB; pids=$SGB_PID; auth=(-H "authorization: Bearer bench-prometheus") ;;
    esac
    local raw=$OUT/raw/$case.$target.$round.txt cpu0 cpu1 up0 up1
    # shellcheck disable=SC2086
    reset_peak $pids
    # shellcheck disable=SC2086
    cpu0=$(cpu_ticks $pids); up0=$(cpu_ticks "$EXP_PID")
    # shellcheck disable=SC2086
    h2load -D "$SECS" $args "${auth[@]}" "$base$path" >"$raw" 2>&1 || true
    # shellcheck disable=SC2086
    cpu1=$(cpu_ticks $pids); up1=$(cpu_ticks "$EXP_PID")
    local done ok
    done=$(awk '/^requests:/ {print $8; exit}' "$raw")
    ok=$(awk '/^status codes:/ {print $3; exit}' "$raw")
    # shellcheck disable=SC2086
    record "{\"case\":\"$case\",\"round\":$round,\"target\":\"$target\",\"done\":${done:-0},\"ok\":${ok:-0},\"cpu_ticks\":$((cpu1 - cpu0)),\"up_ticks\":$((up1 - up0)),\"clk_tck\":$CLK_TCK,\"secs\":$SECS,\"hwm_kb\":$(mem_kb VmHWM $pids),\"raw\":\"$raw\"}"
    log "$case $target round $round: ${done:-0} scrapes (${ok:-0} 2xx), $((cpu1 - cpu0)) ticks"
}

# ------------------------------------------------------------------ counts
# count_target CASE TARGET: syscalls (strace -c) over COUNT_N scrapes on one connection,
# TLS records the target sends (a relay that reads the record headers) and, for HTTP/2,
# the DATA frames of one scrape (nghttp -v).
count_target() {
    local case=$1 target=$2 args path base pids auth=()
    args=$(case_args "$case"); path=${args##* }; args=${args% *}
    args=${args/-c 8/-c 1}; args=${args/-c 2/-c 1}
    case $target in
    nginx) base=$U_NGX; pids=$NGX_PIDS ;;
    sg) base=$U_SG; pids=$SG_PID; auth=(-H "authorization: Bearer bench-prometheus") ;;
    sg-b) base=$U_SGB; pids=$SGB_PID; auth=(-H "authorization: Bearer bench-prometheus") ;;
    esac
    local n=$COUNT_N
    [[ $case == big-* ]] && n=10
    local st=$OUT/raw/strace.$case.$target.txt plist=() pid
    for pid in $pids; do plist+=(-p "$pid"); done
    strace -f -c -o "$st" "${plist[@]}" &
    local strace_pid=$!
    sleep 1
    # shellcheck disable=SC2086
    h2load -n "$n" $args "${auth[@]}" "$base$path" >/dev/null 2>&1 || true
    kill -INT "$strace_pid"; wait "$strace_pid" || true
    # TLS records: through the relay.
    local relay_port relay_pid rec=$OUT/raw/records.$case.$target.json
    relay_port=$(free_port)
    python3 benches/fixtures/tls_records.py "127.0.0.1:$relay_port" "${base#https://}" "$rec" &
    relay_pid=$!
    for _ in $(seq 50); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $relay_port)).close()" 2>/dev/null && break; sleep 0.1; done
    # shellcheck disable=SC2086
    h2load -n "$n" $args "${auth[@]}" "https://127.0.0.1:$relay_port$path" >/dev/null 2>&1 || true
    kill -TERM "$relay_pid"; wait "$relay_pid" || true
    local frames=null
    if [[ $args != *--h1* ]]; then
        local h=(-H "$(echo "$args" | grep -o 'accept-encoding:[a-z]*')")
        nghttp -nv "${h[@]}" "${auth[@]}" "$base$path" >"$OUT/raw/nghttp.$case.$target.txt" 2>&1 || true
        frames=$(grep -c 'recv DATA frame' "$OUT/raw/nghttp.$case.$target.txt" || true)
    fi
    record "{\"kind\":\"count\",\"case\":\"$case\",\"target\":\"$target\",\"n\":$n,\"strace\":\"$st\",\"records\":\"$rec\",\"data_frames\":$frames}"
    log "counted $case $target"
}

# ------------------------------------------------------------------ callgrind
# cg_case CASE NAME BINARY: user-space instructions per scrape of BINARY in CASE, as
# benches/callgrind.sh computes them: a fresh process under callgrind for CG_N1 and for
# CG_N2 scrapes on one connection (after one unmeasured scrape that fills the caches),
# (Ir(N2) - Ir(N1)) / (N2 - N1).
cg_case() {
    local case=$1 name=$2 bin=$3 args path n port pid out total=()
    args=$(case_args "$case"); path=${args##* }; args=${args% *}
    args=${args/-c 8/-c 1}; args=${args/-c 2/-c 1}
    for n in $CG_N1 $CG_N2; do
        port=$(free_port)
        out=$OUT/raw/callgrind.$case.$name.$n.out
        # shellcheck disable=SC2086
        env $CG_ENV valgrind --tool=callgrind --cache-sim=no --branch-sim=no --dump-instr=no \
            --collect-atstart=yes --separate-threads=no --callgrind-out-file="$out" \
            "$bin" --secure-listen-address="127.0.0.1:$port" "${SG_COMMON[@]}" >"$WORK/logs/cg.log" 2>&1 &
        pid=$!
        PIDS+=($pid)
        for _ in $(seq 900); do
            curl -sk -o /dev/null --max-time 5 -H "authorization: Bearer bench-prometheus" "https://127.0.0.1:$port$path" && break
            sleep 0.2
        done
        # shellcheck disable=SC2086
        h2load -n "$n" $args -H "authorization: Bearer bench-prometheus" "https://127.0.0.1:$port$path" >"$out.h2load" 2>&1 || true
        grep -q "$n succeeded" "$out.h2load" || die "callgrind $case $name: not $n successes"
        kill -TERM "$pid"
        for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        wait "$pid" 2>/dev/null || true
        forget_pid "$pid"
        total+=("$(awk '/^(summary|totals):/ {print $2; exit}' "$out")")
    done
    record "{\"kind\":\"callgrind\",\"case\":\"$case\",\"target\":\"$name\",\"n1\":$CG_N1,\"n2\":$CG_N2,\"ir1\":${total[0]:-0},\"ir2\":${total[1]:-0}}"
    log "callgrind $case $name: $(( (${total[1]:-0} - ${total[0]:-0}) / (CG_N2 - CG_N1) )) Ir/scrape"
}

# ------------------------------------------------------------------ setup
setup() {
    mkdir -p "$WORK/nginx-tls" "$WORK/api" "$WORK/logs" "$WORK/pages"
    # ~100 KB: the recorded node-exporter page and 27 KB more of its series, renamed (a
    # node with more CPUs, disks and interfaces); gzip as Go's promhttp (level 6).
    local fixture=benches/fixtures/node-exporter.prom
    { cat "$fixture"; awk '{ sub(/node_/, "node_extra_"); print; n += length($0) + 1; if (n > 27000) exit }' "$fixture"; } >"$WORK/pages/metrics"
    gzip -6 -n -c "$WORK/pages/metrics" >"$WORK/pages/metrics.gz"
    if [[ " $CASES " == *" big-"* ]]; then
        benches/fixtures/gen-ksm.sh "$BIG_BYTES" >"$WORK/pages/ksm"
    else
        printf 'up 1\n' >"$WORK/pages/ksm"
    fi
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null

    "$KIT" exporter --page "$WORK/pages/metrics" --gzip "$WORK/pages/metrics.gz" \
        --big "$WORK/pages/ksm" --port-file "$WORK/exporter.port" >"$WORK/logs/exporter.out" 2>&1 &
    PIDS+=($!); EXP_PID=$!
    for _ in $(seq 100); do [ -s "$WORK/exporter.port" ] && break; sleep 0.1; done
    UP_PORT=$(cat "$WORK/exporter.port")
    NGX_PORT=$(free_port); SG_PORT=$(free_port); SGB_PORT=$(free_port)
    cat >"$WORK/nginx-tls/nginx.conf" <<NGINX_TLS
user root;
worker_processes 2;
daemon off;
pid $WORK/nginx-tls/nginx.pid;
error_log $WORK/logs/nginx-tls.err warn;
events { worker_connections 1024; }
http {
$(nginx_tls_http)
    server {
        listen 127.0.0.1:$NGX_PORT ssl http2;
$(nginx_proxy_location off)
    }
}
NGINX_TLS
    "$NGINX" -p "$WORK/nginx-tls" -c "$WORK/nginx-tls/nginx.conf" >"$WORK/logs/nginx-tls.out" 2>&1 &
    PIDS+=($!); NGX_MASTER=$!

    "$KIT" apiserver --dir "$WORK/api" >"$WORK/logs/api.out" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do [ -s "$WORK/api/control" ] && break; sleep 0.1; done
    [ -s "$WORK/api/control" ] || die "fake apiserver did not start"

    SG_COMMON=(--tls-cert-file="$WORK/tls.crt" --tls-private-key-file="$WORK/tls.key"
        --kubeconfig="$WORK/api/kubeconfig" --upstream="http://127.0.0.1:$UP_PORT/"
        --auth-cache-ttl=1h --authz-allow-ttl=1h)
    local common=("${SG_COMMON[@]}")
    # shellcheck disable=SC2086
    env $SG_ENV "$SG" --secure-listen-address="127.0.0.1:$SG_PORT" "${common[@]}" >"$WORK/logs/sg.log" 2>&1 &
    PIDS+=($!); SG_PID=$!
    TARGETS="nginx sg"
    if [ -n "${SG_B:-}" ]; then
        # shellcheck disable=SC2086
        env $SG_ENV "$SG_B" --secure-listen-address="127.0.0.1:$SGB_PORT" "${common[@]}" >"$WORK/logs/sg-b.log" 2>&1 &
        PIDS+=($!); SGB_PID=$!
        TARGETS="nginx sg sg-b"
    fi
    U_NGX="https://127.0.0.1:$NGX_PORT"; U_SG="https://127.0.0.1:$SG_PORT"; U_SGB="https://127.0.0.1:$SGB_PORT"
    wait_http "$U_NGX/metrics"
    wait_http "$U_SG/metrics"
    [ -z "${SG_B:-}" ] || wait_http "$U_SGB/metrics"
    NGX_PIDS=$(nginx_workers "$NGX_MASTER")

    # Every target serves the exporter's bytes: gzip as it was made, identity, big.
    local auth=(-H "Authorization: Bearer bench-prometheus") u want got
    for u in "$U_NGX" "$U_SG" ${SG_B:+"$U_SGB"}; do
        want=$(sha256sum <"$WORK/pages/metrics.gz")
        got=$(curl -sk --http2 "${auth[@]}" -H 'Accept-Encoding: gzip' "$u/metrics" | sha256sum)
        [ "$got" = "$want" ] || die "$u/metrics (gzip) differs"
        want=$(sha256sum <"$WORK/pages/metrics")
        got=$(curl -sk --http2 "${auth[@]}" -H 'Accept-Encoding: identity' "$u/metrics" | sha256sum)
        [ "$got" = "$want" ] || die "$u/metrics differs"
        want=$(sha256sum <"$WORK/pages/ksm")
        got=$(curl -sk --http1.1 "${auth[@]}" "$u/ksm/metrics" | sha256sum)
        [ "$got" = "$want" ] || die "$u/ksm/metrics differs"
    done
    record "{\"kind\":\"env\",\"date\":\"$(date -u +%FT%TZ)\",\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"commit\":\"$(git rev-parse --short HEAD)\",\"sg\":\"$SG\",\"sg_b\":\"${SG_B:-}\",\"secs\":$SECS,\"repeats\":$REPEATS,\"page_bytes\":$(stat -c %s "$WORK/pages/metrics"),\"gzip_bytes\":$(stat -c %s "$WORK/pages/metrics.gz"),\"big_bytes\":$(stat -c %s "$WORK/pages/ksm"),\"h2load\":\"$(h2load --version | head -1)\",\"nginx\":\"$("$NGINX" -v 2>&1 | cut -d/ -f2)\"}"
    # shellcheck disable=SC2086
    record "{\"kind\":\"idle\",\"sg_rss_kb\":$(mem_kb VmRSS "$SG_PID"),\"nginx_rss_kb\":$(mem_kb VmRSS $NGX_PIDS)}"
}

# ------------------------------------------------------------------ main
main() {
    command -v h2load >/dev/null && command -v nghttp >/dev/null || apt_install nghttp2-client
    command -v strace >/dev/null || apt_install strace
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_install nginx
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    CLK_TCK=$(getconf CLK_TCK)
    mkdir -p "$OUT/raw"
    rm -f "$RESULTS" "$OUT"/raw/*
    if [ -z "${SG:-}" ] || [ -z "${BENCH_KIT:-}" ]; then
        log "cargo build --release --bin scrape-guard --example bench_kit"
        cargo build --release --locked --bin scrape-guard --example bench_kit 2>&1 | tail -1 >&2
    fi
    SG=${SG:-$TARGET_DIR/release/scrape-guard}
    KIT=${BENCH_KIT:-$TARGET_DIR/release/examples/bench_kit}
    [ -x "$SG" ] && [ -x "$KIT" ] || die "binaries missing"
    setup
    local c r t order
    for c in $CASES; do
        [ "$REPEATS" = 0 ] && break
        # Unmeasured: open connections, fill caches.
        for t in $TARGETS; do SECS=1 run "$c" 0 "$t"; done
        for r in $(seq "$REPEATS"); do
            order=$TARGETS
            [ $((r % 2)) = 0 ] && order=$(echo "$TARGETS" | tr ' ' '\n' | tac | tr '\n' ' ')
            for t in $order; do run "$c" "$r" "$t"; done
        done
    done
    if [ -n "$CALLGRIND" ]; then
        command -v valgrind >/dev/null || apt_install valgrind
        for c in $CALLGRIND; do
            cg_case "$c" sg "$SG"
            [ -z "${SG_B:-}" ] || cg_case "$c" sg-b "$SG_B"
        done
    fi
    if [ "$COUNT" = 1 ]; then
        command -v strace >/dev/null || die "strace missing"
        for c in $CASES; do
            for t in $TARGETS; do count_target "$c" "$t"; done
        done
    fi
    python3 benches/fixtures/scrape_report.py "$RESULTS" >"$OUT/report.md"
    log "report: $OUT/report.md"
    cat "$OUT/report.md"
}

main "$@"
