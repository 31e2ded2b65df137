#!/usr/bin/env bash
# Load benchmark: scrape-guard against the bare upstream and nginx, same machine, same run.
# See benches/README.md for what each case means and how the numbers are computed.
#
#   benches/load.sh                 # ~6-8 minutes, report in target/bench-load/report.md
#   SECS=5 REPEATS=1 benches/load.sh   # quicker, noisier
#
# Environment: SECS (seconds per measured case, default 10), REPEATS (interleaved
# nginx vs scrape-guard h1 rounds, default 3), QUIET_WAIT (max seconds to wait for the
# 1-minute load average to drop below QUIET_LOAD before measuring; default 180, 1.0),
# OUT (report directory, default target/bench-load), SKIP_BUILD=1 (use existing binaries).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${SECS:-10}
REPEATS=${REPEATS:-3}
QUIET_WAIT=${QUIET_WAIT:-180}
QUIET_LOAD=${QUIET_LOAD:-1.0}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$TARGET_DIR/bench-load}
CONNS=64

log() { printf '[load.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "FAIL: $*"
    local f
    for f in "${WORK:-/nonexistent}"/logs/*; do
        [ -s "$f" ] && { echo "--- $f" >&2; tail -5 "$f" >&2; }
    done
    exit 1
}

# ------------------------------------------------------------------ tools
install_tools() {
    local missing=()
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
    command -v openssl >/dev/null || missing+=(openssl)
    command -v curl >/dev/null || missing+=(curl)
    command -v python3 >/dev/null || missing+=(python3)
    if [ ${#missing[@]} -gt 0 ]; then
        log "apt-get install ${missing[*]}"
        # Do not let the package start a system nginx on :80.
        local made_policy=0
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod +x /usr/sbin/policy-rc.d
            made_policy=1
        fi
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
        [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
    fi
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    export PATH="$HOME/.cargo/bin:$PATH"
    if ! command -v oha >/dev/null; then
        log "cargo install --locked oha (a few minutes, once)"
        cargo install --locked oha >/dev/null
    fi
    OHA=$(command -v oha)
}

# ------------------------------------------------------------------ processes
WORK=$(mktemp -d /tmp/sg-bench.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_http URL [curl args]: until it answers (any status), at most 20 s.
wait_http() {
    local url=$1; shift
    for _ in $(seq 200); do
        if curl -sk -o /dev/null --max-time 1 "$@" "$url"; then return 0; fi
        sleep 0.1
    done
    die "$url did not come up"
}

# /proc helpers: CPU seconds (utime+stime) and memory (kB) of a set of PIDs.
cpu_ticks() {
    local total=0 pid fields
    for pid in "$@"; do
        fields=$(sed 's/^.*) //' "/proc/$pid/stat")
        set -- $fields
        total=$((total + ${12} + ${13}))
    done
    echo $total
}
mem_kb() { # mem_kb FIELD PIDS...
    local field=$1 total=0 pid v; shift
    for pid in "$@"; do
        v=$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$pid/status")
        total=$((total + v))
    done
    echo $total
}
reset_peak() { local pid; for pid in "$@"; do echo 5 >"/proc/$pid/clear_refs"; done; }
CLK_TCK=$(getconf CLK_TCK)

nginx_workers() { ps -o pid= --ppid "$1" | tr -d ' ' | tr '\n' ' '; }

counts() { curl -s "http://$(cat "$WORK/api/control")/counts"; }

# ------------------------------------------------------------------ measurement
RESULTS=$OUT/results.jsonl

# record NAME KIND EXTRA_JSON: append one line to results.jsonl
record() {
    printf '{"case":"%s","kind":"%s",%s}\n' "$1" "$2" "$3" >>"$RESULTS"
}

# run_oha CASE TARGET "PIDS" URL OHA_ARGS... : one measured oha run with CPU/RSS/reviews.
run_oha() {
    local case=$1 target=$2 pids=$3 url=$4; shift 4
    local raw=$OUT/raw/$case.$target.json
    # shellcheck disable=SC2086
    reset_peak $pids
    local before after reviews_before reviews_after
    before=$(cpu_ticks $pids)
    reviews_before=$(counts)
    "$OHA" --no-tui --output-format json --insecure -z "${SECS}s" "$@" "$url" >"$raw" 2>"$raw.err" || true
    after=$(cpu_ticks $pids)
    reviews_after=$(counts)
    local hwm rss
    hwm=$(mem_kb VmHWM $pids)
    rss=$(mem_kb VmRSS $pids)
    record "$case" oha "\"target\":\"$target\",\"raw\":\"$raw\",\"cpu_ticks\":$((after - before)),\"clk_tck\":$CLK_TCK,\"hwm_kb\":$hwm,\"rss_kb\":$rss,\"reviews_before\":$reviews_before,\"reviews_after\":$reviews_after"
    log "$case $target: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); s=d["summary"]; print("%.0f rps, success %.3f" % (s["requestsPerSec"], s["successRate"]))' "$raw" 2>/dev/null || echo 'no result')"
}

# warm URL OHA_ARGS...: 1 s unmeasured, to open connections and pools.
warm() {
    local url=$1; shift
    "$OHA" --no-tui --insecure -z 1s "$@" "$url" >/dev/null 2>&1 || true
}

wait_quiet() {
    local waited=0 load
    while :; do
        load=$(cut -d' ' -f1 /proc/loadavg)
        if python3 -c "import sys; sys.exit(0 if $load < $QUIET_LOAD else 1)" || [ "$waited" -ge "$QUIET_WAIT" ]; then
            break
        fi
        log "load average $load >= $QUIET_LOAD, waiting (${waited}s of ${QUIET_WAIT}s)"
        sleep 10
        waited=$((waited + 10))
    done
}

# ------------------------------------------------------------------ main
main() {
    install_tools
    mkdir -p "$OUT/raw"
    rm -f "$RESULTS" "$OUT"/raw/*
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true  # 1,000-connection burst needs ~3,000 fds

    if [ "${SKIP_BUILD:-0}" != 1 ]; then
        log "cargo build --release --bin scrape-guard --example bench_kit"
        cargo build --release --bin scrape-guard --example bench_kit 2>&1 | tail -1 >&2
    fi
    local SG=$TARGET_DIR/release/scrape-guard KIT=$TARGET_DIR/release/examples/bench_kit
    [ -x "$SG" ] && [ -x "$KIT" ] || die "binaries missing"

    # --- payloads: the recorded node-exporter page and a 5 MB kube-state-metrics-like page
    mkdir -p "$WORK/www/ksm" "$WORK/nginx-up" "$WORK/nginx-tls" "$WORK/api" "$WORK/logs"
    cp benches/fixtures/node-exporter.prom "$WORK/www/metrics"
    benches/fixtures/gen-ksm.sh 5000000 >"$WORK/www/ksm/metrics"

    # --- one ECDSA P-256 certificate for nginx and scrape-guard alike
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null

    local UP_PORT NGX_PORT HIT_PORT MISS_PORT MEM_PORT
    UP_PORT=$(free_port); NGX_PORT=$(free_port); HIT_PORT=$(free_port)
    MISS_PORT=$(free_port); MEM_PORT=$(free_port)

    # --- upstream: nginx serving the static pages on plain HTTP
    cat >"$WORK/nginx-up/nginx.conf" <<EOF
user root;
worker_processes 2;
daemon off;
pid $WORK/nginx-up/nginx.pid;
error_log $WORK/logs/nginx-up.err warn;
events { worker_connections 8192; }
http {
    access_log off;
    sendfile on; tcp_nopush on; tcp_nodelay on;
    keepalive_requests 1000000; keepalive_timeout 120s;
    open_file_cache max=16; open_file_cache_valid 600s;
    default_type "text/plain; version=0.0.4; charset=utf-8";
    client_body_temp_path $WORK/nginx-up/body; proxy_temp_path $WORK/nginx-up/proxy;
    fastcgi_temp_path $WORK/nginx-up/fcgi; uwsgi_temp_path $WORK/nginx-up/uwsgi; scgi_temp_path $WORK/nginx-up/scgi;
    server {
        listen 127.0.0.1:$UP_PORT;
        root $WORK/www;
        location = /metrics { }
        location = /ksm/metrics { }
    }
}
EOF
    # --- nginx as a TLS reverse proxy, no auth: the baseline people already trust
    cat >"$WORK/nginx-tls/nginx.conf" <<EOF
user root;
worker_processes 2;
daemon off;
pid $WORK/nginx-tls/nginx.pid;
error_log $WORK/logs/nginx-tls.err warn;
events { worker_connections 8192; }
http {
    access_log off;
    tcp_nodelay on;
    keepalive_requests 1000000; keepalive_timeout 120s;
    client_body_temp_path $WORK/nginx-tls/body; proxy_temp_path $WORK/nginx-tls/proxy;
    fastcgi_temp_path $WORK/nginx-tls/fcgi; uwsgi_temp_path $WORK/nginx-tls/uwsgi; scgi_temp_path $WORK/nginx-tls/scgi;
    upstream exporter {
        server 127.0.0.1:$UP_PORT;
        keepalive 128;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NGX_PORT ssl http2;
        ssl_certificate $WORK/tls.crt;
        ssl_certificate_key $WORK/tls.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://exporter;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # Stream instead of spooling big pages to temp files (what scrape-guard does).
            proxy_buffering off;
            proxy_buffer_size 64k;
            proxy_buffers 4 64k;
            proxy_busy_buffers_size 128k;
        }
    }
}
EOF
    "$NGINX" -p "$WORK/nginx-up" -c "$WORK/nginx-up/nginx.conf" >"$WORK/logs/nginx-up.out" 2>&1 &
    PIDS+=($!); local UP_MASTER=$!
    "$NGINX" -p "$WORK/nginx-tls" -c "$WORK/nginx-tls/nginx.conf" >"$WORK/logs/nginx-tls.out" 2>&1 &
    PIDS+=($!); local NGX_MASTER=$!

    # --- fake apiserver
    "$KIT" apiserver --dir "$WORK/api" >"$WORK/logs/api.out" 2>&1 &
    PIDS+=($!); local API_PID=$!
    for _ in $(seq 100); do [ -s "$WORK/api/control" ] && break; sleep 0.1; done
    [ -s "$WORK/api/control" ] || die "fake apiserver did not start"

    # --- scrape-guard: cache-hit, cache-miss (TTL 0) and a fresh one for memory
    local common=(--tls-cert-file="$WORK/tls.crt" --tls-private-key-file="$WORK/tls.key"
        --kubeconfig="$WORK/api/kubeconfig" --upstream="http://127.0.0.1:$UP_PORT/")
    "$SG" --secure-listen-address="127.0.0.1:$HIT_PORT" "${common[@]}" \
        --auth-cache-ttl=1h --authz-allow-ttl=1h >"$WORK/logs/sg-hit.log" 2>&1 &
    PIDS+=($!); local HIT_PID=$!
    "$SG" --secure-listen-address="127.0.0.1:$MISS_PORT" "${common[@]}" \
        --auth-cache-ttl=0s --authz-allow-ttl=0s --kube-api-qps=-1 >"$WORK/logs/sg-miss.log" 2>&1 &
    PIDS+=($!); local MISS_PID=$!
    "$SG" --secure-listen-address="127.0.0.1:$MEM_PORT" "${common[@]}" \
        --kube-api-qps=-1 >"$WORK/logs/sg-mem.log" 2>&1 &
    PIDS+=($!); local MEM_PID=$!

    wait_http "http://127.0.0.1:$UP_PORT/metrics"
    wait_http "https://127.0.0.1:$NGX_PORT/metrics"
    for port in $HIT_PORT $MISS_PORT $MEM_PORT; do wait_http "https://127.0.0.1:$port/metrics"; done
    local UP_PIDS NGX_PIDS
    UP_PIDS=$(nginx_workers "$UP_MASTER"); NGX_PIDS=$(nginx_workers "$NGX_MASTER")
    [ -n "$UP_PIDS" ] && [ -n "$NGX_PIDS" ] || die "nginx workers not found"

    local auth=(-H "Authorization: Bearer bench-prometheus")
    local U_DIRECT="http://127.0.0.1:$UP_PORT" U_NGX="https://127.0.0.1:$NGX_PORT"
    local U_HIT="https://127.0.0.1:$HIT_PORT" U_MISS="https://127.0.0.1:$MISS_PORT"
    local U_MEM="https://127.0.0.1:$MEM_PORT"

    # Sanity: the proxies serve the same bytes as the upstream; unauthenticated is 401.
    local want got
    want=$(curl -s "$U_DIRECT/metrics" | sha256sum)
    got=$(curl -sk "$U_NGX/metrics" | sha256sum); [ "$got" = "$want" ] || die "nginx body differs"
    got=$(curl -sk "${auth[@]}" "$U_HIT/metrics" | sha256sum); [ "$got" = "$want" ] || die "scrape-guard body differs"
    [ "$(curl -sk -o /dev/null -w '%{http_code}' "$U_HIT/metrics")" = 401 ] || die "no 401 without a token"

    # Idle memory, before any load (scrape-guard has served the two requests above).
    sleep 2
    record idle mem "\"sg_rss_kb\":$(mem_kb VmRSS "$MEM_PID"),\"sg_hit_rss_kb\":$(mem_kb VmRSS "$HIT_PID"),\"nginx_workers_rss_kb\":$(mem_kb VmRSS $NGX_PIDS),\"nginx_master_rss_kb\":$(mem_kb VmRSS "$NGX_MASTER")"

    wait_quiet
    record env machine "\"loadavg_start\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"date\":\"$(date -u +%FT%TZ)\",\"nproc\":$(nproc),\"cpu\":\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')\",\"kernel\":\"$(uname -r)\",\"nginx\":\"$("$NGINX" -v 2>&1 | cut -d/ -f2)\",\"oha\":\"$("$OHA" --version | cut -d' ' -f2)\",\"secs\":$SECS,\"repeats\":$REPEATS,\"commit\":\"$(git rev-parse --short HEAD)\""

    # --- (a) HTTP/1.1 keep-alive, 64 connections, 100 KB-class page
    log "case h1: HTTP/1.1 keep-alive, $CONNS connections"
    warm "$U_DIRECT/metrics" -c $CONNS
    warm "$U_NGX/metrics" -c $CONNS
    warm "$U_HIT/metrics" -c $CONNS "${auth[@]}"
    run_oha h1 direct "$UP_PIDS" "$U_DIRECT/metrics" -c $CONNS
    local r
    for r in $(seq "$REPEATS"); do
        if [ $((r % 2)) = 1 ]; then
            run_oha "h1" nginx "$NGX_PIDS" "$U_NGX/metrics" -c $CONNS
            run_oha "h1" sg-hit "$HIT_PID" "$U_HIT/metrics" -c $CONNS "${auth[@]}"
        else
            run_oha "h1" sg-hit "$HIT_PID" "$U_HIT/metrics" -c $CONNS "${auth[@]}"
            run_oha "h1" nginx "$NGX_PIDS" "$U_NGX/metrics" -c $CONNS
        fi
    done
    # Cache-miss path, with oha: TTL 0 makes every request a review, but concurrent
    # requests with the one token oha sends share a review (coalescing); counted below.
    warm "$U_MISS/metrics" -c $CONNS "${auth[@]}"
    run_oha h1 sg-miss-ttl0 "$MISS_PID $API_PID" "$U_MISS/metrics" -c $CONNS "${auth[@]}"
    # Cache-miss path, a distinct token (and user) per request: one TokenReview and one
    # SubjectAccessReview each. bench_kit is the client here (oha sends one header).
    local before after rb ra
    reset_peak "$MISS_PID"
    before=$(cpu_ticks "$MISS_PID"); local api_before; api_before=$(cpu_ticks "$API_PID"); rb=$(counts)
    "$KIT" scrape --url "$U_MISS/metrics" --prefix bench-miss- --seconds "$SECS" --concurrency $CONNS \
        >"$OUT/raw/h1.sg-miss-distinct.json"
    after=$(cpu_ticks "$MISS_PID"); ra=$(counts)
    record h1 kit "\"target\":\"sg-miss-distinct\",\"raw\":\"$OUT/raw/h1.sg-miss-distinct.json\",\"cpu_ticks\":$((after - before)),\"api_cpu_ticks\":$(($(cpu_ticks "$API_PID") - api_before)),\"clk_tck\":$CLK_TCK,\"hwm_kb\":$(mem_kb VmHWM "$MISS_PID"),\"rss_kb\":$(mem_kb VmRSS "$MISS_PID"),\"reviews_before\":$rb,\"reviews_after\":$ra"
    log "h1 sg-miss-distinct: $(cat "$OUT/raw/h1.sg-miss-distinct.json")"

    # --- (b) HTTP/2: 8 connections x 8 concurrent streams = 64 in flight
    log "case h2: HTTP/2, 8 connections x 8 streams"
    warm "$U_NGX/metrics" --http2 -c 8 -p 8
    warm "$U_HIT/metrics" --http2 -c 8 -p 8 "${auth[@]}"
    run_oha h2 nginx "$NGX_PIDS" "$U_NGX/metrics" --http2 -c 8 -p 8
    run_oha h2 sg-hit "$HIT_PID" "$U_HIT/metrics" --http2 -c 8 -p 8 "${auth[@]}"

    # --- (c) a new TLS connection per request (full handshake unless resumed), 64 at a time
    log "case newconn: a new connection per request, $CONNS concurrent"
    run_oha newconn direct "$UP_PIDS" "$U_DIRECT/metrics" -c $CONNS --disable-keepalive
    run_oha newconn nginx "$NGX_PIDS" "$U_NGX/metrics" -c $CONNS --disable-keepalive
    run_oha newconn sg-hit "$HIT_PID" "$U_HIT/metrics" -c $CONNS --disable-keepalive "${auth[@]}"

    # --- (d) streaming the 5 MB page: time to last byte at 1 connection, RSS at 64
    log "case big: 5 MB page"
    local half=$(( (SECS + 1) / 2 ))
    local SECS_SAVED=$SECS; SECS=$half
    run_oha ttlb direct "$UP_PIDS" "$U_DIRECT/ksm/metrics" -c 1
    run_oha ttlb nginx "$NGX_PIDS" "$U_NGX/ksm/metrics" -c 1
    run_oha ttlb sg-hit "$HIT_PID" "$U_HIT/ksm/metrics" -c 1 "${auth[@]}"
    run_oha big64 nginx "$NGX_PIDS" "$U_NGX/ksm/metrics" -c $CONNS
    run_oha big64 sg-hit "$HIT_PID" "$U_HIT/ksm/metrics" -c $CONNS "${auth[@]}"
    SECS=$SECS_SAVED

    # --- (e) 1,000 concurrent first scrapes with one new token; reviews made slow (1 s)
    # so that every request is waiting while the first review is in flight.
    log "case burst: 1000 concurrent first scrapes, one token"
    curl -s "http://$(cat "$WORK/api/control")/delay?ms=1000" >/dev/null
    rb=$(counts)
    "$KIT" burst --url "$U_HIT/metrics" --token bench-burst --connections 1000 >"$OUT/raw/burst.json"
    ra=$(counts)
    curl -s "http://$(cat "$WORK/api/control")/delay?ms=0" >/dev/null
    record burst kit "\"raw\":\"$OUT/raw/burst.json\",\"reviews_before\":$rb,\"reviews_after\":$ra"
    log "burst: $(cat "$OUT/raw/burst.json") reviews $rb -> $ra"

    # --- (f) memory versus cached identities (distinct token = distinct user = 1 TR + 1 SAR)
    log "case cache: RSS with 0, 10k, 65,536 and 131,072 distinct identities"
    local filled=0 n rss
    record cache mem "\"identities\":0,\"rss_kb\":$(mem_kb VmRSS "$MEM_PID"),\"hwm_kb\":$(mem_kb VmHWM "$MEM_PID")"
    for n in 10000 65536 131072; do
        "$KIT" scrape --url "$U_MEM/metrics" --prefix bench-id- --start $filled --count $((n - filled)) \
            --concurrency 32 --seconds 120 >"$OUT/raw/cache.$n.json"
        filled=$n
        sleep 2
        record cache mem "\"identities\":$n,\"rss_kb\":$(mem_kb VmRSS "$MEM_PID"),\"hwm_kb\":$(mem_kb VmHWM "$MEM_PID"),\"raw\":\"$OUT/raw/cache.$n.json\""
        log "cache $n identities: RSS $(mem_kb VmRSS "$MEM_PID") kB ($(cat "$OUT/raw/cache.$n.json"))"
    done

    record env machine_end "\"loadavg_end\":\"$(cut -d' ' -f1-3 /proc/loadavg)\""
    python3 benches/fixtures/report.py "$RESULTS" >"$OUT/report.md"
    log "report: $OUT/report.md"
    cat "$OUT/report.md"
}

main "$@"
