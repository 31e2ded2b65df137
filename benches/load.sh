#!/usr/bin/env bash
# Load benchmark: scrape-guard against the bare upstream and nginx, same machine, same run.
# See benches/README.md for what each case means and how the numbers are computed.
#
#   benches/load.sh                 # ~4 min of measuring; report in target/bench-load/report.md
#   SECS=5 REPEATS=1 benches/load.sh   # quicker, noisier
#
# Environment: SECS (seconds per measured case, default 10), REPEATS (interleaved
# nginx vs scrape-guard h1 rounds, default 3), QUIET_WAIT (max seconds to wait for the
# 1-minute load average to drop below QUIET_LOAD before measuring; default 180, 1.0),
# OUT (report directory, default target/bench-load), SKIP_BUILD=1 (use existing binaries),
# CASES (subset of "h1 miss h2 newconn big burst cache", or "ab" / "listeners" / "hold"), SG (another
# scrape-guard binary, e.g. another release profile), SG_ENV (its environment), SG_B and
# SG_B_ENV (the second binary/environment for CASES=ab), NGINX_BUFFERING (off|on).
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
CASES=${CASES:-h1 miss h2 newconn big burst cache}
NGINX_BUFFERING=${NGINX_BUFFERING:-off}
SG_ENV=${SG_ENV:-}

# shellcheck source=benches/lib.sh
. benches/lib.sh
start_work sg-bench

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

# record CASE KIND EXTRA_JSON: append one line to results.jsonl
record() {
    printf '{"case":"%s","kind":"%s",%s}\n' "$1" "$2" "$3" >>"$RESULTS"
}

# Busy jiffies of the whole machine (user+nice+system+irq+softirq), all CPUs.
busy_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8; exit}' /proc/stat; }

# measure CASE TARGET KIND "PIDS" RAW COMMAND...: runs COMMAND (stdout to RAW) and
# records, for PIDS, CPU ticks and peak/current RSS; plus the upstream's CPU, the fake
# apiserver's CPU, the whole machine's busy ticks and the review counters.
measure() {
    local case=$1 target=$2 kind=$3 pids=$4 raw=$5; shift 5
    # shellcheck disable=SC2086
    reset_peak $pids
    local cpu0 up0 api0 sys0 rev0 cpu1 up1 api1 sys1 rev1
    # shellcheck disable=SC2086
    cpu0=$(cpu_ticks $pids); up0=$(cpu_ticks $UP_PIDS); api0=$(cpu_ticks "$API_PID")
    sys0=$(busy_ticks); rev0=$(counts)
    "$@" >"$raw" 2>"$raw.err" || true
    # shellcheck disable=SC2086
    cpu1=$(cpu_ticks $pids); up1=$(cpu_ticks $UP_PIDS); api1=$(cpu_ticks "$API_PID")
    sys1=$(busy_ticks); rev1=$(counts)
    # shellcheck disable=SC2086
    record "$case" "$kind" "\"target\":\"$target\",\"raw\":\"$raw\",\"cpu_ticks\":$((cpu1 - cpu0)),\"up_cpu_ticks\":$((up1 - up0)),\"api_cpu_ticks\":$((api1 - api0)),\"sys_busy_ticks\":$((sys1 - sys0)),\"clk_tck\":$CLK_TCK,\"hwm_kb\":$(mem_kb VmHWM $pids),\"rss_kb\":$(mem_kb VmRSS $pids),\"reviews_before\":$rev0,\"reviews_after\":$rev1"
}

# run_oha CASE TARGET "PIDS" URL OHA_ARGS...: one measured oha run of $SECS seconds.
run_oha() {
    local case=$1 target=$2 pids=$3 url=$4; shift 4
    local raw
    raw=$OUT/raw/$case.$target.$(date +%s%N).json
    measure "$case" "$target" oha "$pids" "$raw" \
        "$OHA" --no-tui --output-format json --insecure -z "${SECS}s" "$@" "$url"
    log "$case $target: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); s=d["summary"]; l=d["latencyPercentiles"]; print("%.0f rps, p99 %.2f ms, success %.3f" % (s["requestsPerSec"], l["p99"]*1000, s["successRate"]))' "$raw" 2>/dev/null || echo "no result: $(head -c 300 "$raw.err")")"
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

# ------------------------------------------------------------------ setup
write_nginx_configs() {
    # Upstream: nginx serving the static pages on plain HTTP (the exporter).
    nginx_upstream_conf 8192 >"$WORK/nginx-up/nginx.conf"
    # nginx as a TLS reverse proxy with no auth: the baseline people already trust. The
    # same nginx also serves the files itself over TLS (STATIC_PORT): the TLS floor.
    cat >"$WORK/nginx-tls/nginx.conf" <<NGINX_TLS
user root;
worker_processes 2;
daemon off;
pid $WORK/nginx-tls/nginx.pid;
error_log $WORK/logs/nginx-tls.err warn;
events { worker_connections 8192; }
http {
$(nginx_tls_http)
    server {
        listen 127.0.0.1:$NGX_PORT ssl http2;
$(nginx_proxy_location "$NGINX_BUFFERING")
    }
    server {
        listen 127.0.0.1:$STATIC_PORT ssl http2;
        sendfile on;
        root $WORK/www;
    }
}
NGINX_TLS
}

setup() {
    mkdir -p "$WORK/www/ksm" "$WORK/nginx-up" "$WORK/nginx-tls" "$WORK/api" "$WORK/logs"
    # The recorded node-exporter page and a 5 MB kube-state-metrics-like page.
    cp benches/fixtures/node-exporter.prom "$WORK/www/metrics"
    benches/fixtures/gen-ksm.sh 5000000 >"$WORK/www/ksm/metrics"

    # One ECDSA P-256 certificate for nginx and scrape-guard alike.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null

    UP_PORT=$(free_port); NGX_PORT=$(free_port); STATIC_PORT=$(free_port)
    HIT_PORT=$(free_port); MISS_PORT=$(free_port); MEM_PORT=$(free_port)
    write_nginx_configs
    "$NGINX" -p "$WORK/nginx-up" -c "$WORK/nginx-up/nginx.conf" >"$WORK/logs/nginx-up.out" 2>&1 &
    PIDS+=($!); UP_MASTER=$!
    "$NGINX" -p "$WORK/nginx-tls" -c "$WORK/nginx-tls/nginx.conf" >"$WORK/logs/nginx-tls.out" 2>&1 &
    PIDS+=($!); NGX_MASTER=$!

    "$KIT" apiserver --dir "$WORK/api" >"$WORK/logs/api.out" 2>&1 &
    PIDS+=($!); API_PID=$!
    for _ in $(seq 100); do [ -s "$WORK/api/control" ] && break; sleep 0.1; done
    [ -s "$WORK/api/control" ] || die "fake apiserver did not start"

    # scrape-guard three times: cache-hit (long TTLs), cache-miss (TTL 0, no client-side
    # rate limit) and a fresh default one for memory versus cache size. The last two are
    # fed distinct tokens from one address standing in for many scrapers, so the
    # per-client review cap is lifted too.
    local common=(--tls-cert-file="$WORK/tls.crt" --tls-private-key-file="$WORK/tls.key"
        --kubeconfig="$WORK/api/kubeconfig" --upstream="http://127.0.0.1:$UP_PORT/")
    # shellcheck disable=SC2086
    env $SG_ENV "$SG" --secure-listen-address="127.0.0.1:$HIT_PORT" "${common[@]}" \
        --auth-cache-ttl=1h --authz-allow-ttl=1h >"$WORK/logs/sg-hit.log" 2>&1 &
    PIDS+=($!); HIT_PID=$!
    # shellcheck disable=SC2086
    env $SG_ENV "$SG" --secure-listen-address="127.0.0.1:$MISS_PORT" "${common[@]}" \
        --auth-cache-ttl=0s --authz-allow-ttl=0s --kube-api-qps=-1 --max-reviews-per-peer=1024 \
        >"$WORK/logs/sg-miss.log" 2>&1 &
    PIDS+=($!); MISS_PID=$!
    # shellcheck disable=SC2086
    env $SG_ENV "$SG" --secure-listen-address="127.0.0.1:$MEM_PORT" "${common[@]}" \
        --kube-api-qps=-1 --max-reviews-per-peer=1024 >"$WORK/logs/sg-mem.log" 2>&1 &
    PIDS+=($!); MEM_PID=$!

    wait_http "http://127.0.0.1:$UP_PORT/metrics"
    wait_http "https://127.0.0.1:$NGX_PORT/metrics"
    local port
    for port in $HIT_PORT $MISS_PORT $MEM_PORT; do wait_http "https://127.0.0.1:$port/metrics"; done
    UP_PIDS=$(nginx_workers "$UP_MASTER"); NGX_PIDS=$(nginx_workers "$NGX_MASTER")
    [ -n "$UP_PIDS" ] && [ -n "$NGX_PIDS" ] || die "nginx workers not found"

    AUTH=(-H "Authorization: Bearer bench-prometheus")
    U_DIRECT="http://127.0.0.1:$UP_PORT"; U_NGX="https://127.0.0.1:$NGX_PORT"
    U_STATIC="https://127.0.0.1:$STATIC_PORT"
    U_HIT="https://127.0.0.1:$HIT_PORT"; U_MISS="https://127.0.0.1:$MISS_PORT"
    U_MEM="https://127.0.0.1:$MEM_PORT"

    # Sanity: every target serves the upstream's bytes; no token is a 401. These are also
    # the first (cache-filling) requests for both paths on the cache-hit instance.
    local path want got
    for path in /metrics /ksm/metrics; do
        want=$(curl -s "$U_DIRECT$path" | sha256sum)
        got=$(curl -sk "$U_NGX$path" | sha256sum); [ "$got" = "$want" ] || die "nginx $path differs"
        got=$(curl -sk "$U_STATIC$path" | sha256sum); [ "$got" = "$want" ] || die "nginx static $path differs"
        got=$(curl -sk "${AUTH[@]}" "$U_HIT$path" | sha256sum); [ "$got" = "$want" ] || die "scrape-guard $path differs"
    done
    [ "$(curl -sk -o /dev/null -w '%{http_code}' "$U_HIT/metrics")" = 401 ] || die "no 401 without a token"
    sleep 2
    # shellcheck disable=SC2086
    record idle mem "\"sg_rss_kb\":$(mem_kb VmRSS "$MEM_PID"),\"sg_hit_rss_kb\":$(mem_kb VmRSS "$HIT_PID"),\"nginx_workers_rss_kb\":$(mem_kb VmRSS $NGX_PIDS),\"nginx_master_rss_kb\":$(mem_kb VmRSS "$NGX_MASTER")"
}

# ------------------------------------------------------------------ cases
# (a) HTTP/1.1 keep-alive, 64 connections, the node-exporter page.
case_h1() {
    log "case h1: HTTP/1.1 keep-alive, $CONNS connections"
    warm "$U_DIRECT/metrics" -c $CONNS
    warm "$U_NGX/metrics" -c $CONNS
    warm "$U_HIT/metrics" -c $CONNS "${AUTH[@]}"
    run_oha h1 direct "$UP_PIDS" "$U_DIRECT/metrics" -c $CONNS
    local r
    for r in $(seq "$REPEATS"); do # interleaved, alternating who goes first
        if [ $((r % 2)) = 1 ]; then
            run_oha h1 nginx "$NGX_PIDS" "$U_NGX/metrics" -c $CONNS
            run_oha h1 sg-hit "$HIT_PID" "$U_HIT/metrics" -c $CONNS "${AUTH[@]}"
        else
            run_oha h1 sg-hit "$HIT_PID" "$U_HIT/metrics" -c $CONNS "${AUTH[@]}"
            run_oha h1 nginx "$NGX_PIDS" "$U_NGX/metrics" -c $CONNS
        fi
    done
}

# (a') the cache-miss path, two ways.
case_miss() {
    log "case miss: every request reviewed"
    # oha sends one token; with TTL 0 nothing stays cached, but requests that arrive while
    # a review for that token is in flight share it (coalescing): reviews are counted.
    warm "$U_MISS/metrics" -c $CONNS "${AUTH[@]}"
    run_oha h1 sg-miss-ttl0 "$MISS_PID" "$U_MISS/metrics" -c $CONNS "${AUTH[@]}"
    # A distinct token (so a distinct user) per request: exactly one TokenReview and one
    # SubjectAccessReview each. bench_kit is the client (oha cannot vary a header).
    measure h1 sg-miss-distinct kit "$MISS_PID" "$OUT/raw/h1.sg-miss-distinct.json" \
        "$KIT" scrape --url "$U_MISS/metrics" --prefix bench-miss- --seconds "$SECS" --concurrency $CONNS
    log "h1 sg-miss-distinct: $(cat "$OUT/raw/h1.sg-miss-distinct.json")"
}

# (b) HTTP/2: 8 connections x 8 concurrent streams = 64 requests in flight.
case_h2() {
    log "case h2: HTTP/2, 8 connections x 8 streams"
    warm "$U_NGX/metrics" --http2 -c 8 -p 8
    warm "$U_HIT/metrics" --http2 -c 8 -p 8 "${AUTH[@]}"
    run_oha h2 nginx "$NGX_PIDS" "$U_NGX/metrics" --http2 -c 8 -p 8
    run_oha h2 sg-hit "$HIT_PID" "$U_HIT/metrics" --http2 -c 8 -p 8 "${AUTH[@]}"
}

# (c) a new connection (TLS handshake) per request, 64 at a time.
case_newconn() {
    log "case newconn: a new connection per request, $CONNS concurrent"
    run_oha newconn direct "$UP_PIDS" "$U_DIRECT/metrics" -c $CONNS --disable-keepalive
    run_oha newconn nginx "$NGX_PIDS" "$U_NGX/metrics" -c $CONNS --disable-keepalive
    run_oha newconn sg-hit "$HIT_PID" "$U_HIT/metrics" -c $CONNS --disable-keepalive "${AUTH[@]}"
}

# (d) the 5 MB page: time to last byte on one connection; memory with 64 in flight.
case_big() {
    log "case big: 5 MB page"
    local saved=$SECS
    SECS=$(((saved + 1) / 2))
    warm "$U_DIRECT/ksm/metrics" -c 1
    warm "$U_STATIC/ksm/metrics" -c 1
    warm "$U_NGX/ksm/metrics" -c 1
    warm "$U_HIT/ksm/metrics" -c 1 "${AUTH[@]}"
    run_oha ttlb direct "$UP_PIDS" "$U_DIRECT/ksm/metrics" -c 1
    run_oha ttlb direct-tls "$NGX_PIDS" "$U_STATIC/ksm/metrics" -c 1
    run_oha ttlb nginx "$NGX_PIDS" "$U_NGX/ksm/metrics" -c 1
    run_oha ttlb sg-hit "$HIT_PID" "$U_HIT/ksm/metrics" -c 1 "${AUTH[@]}"
    run_oha big64 nginx "$NGX_PIDS" "$U_NGX/ksm/metrics" -c $CONNS
    run_oha big64 sg-hit "$HIT_PID" "$U_HIT/ksm/metrics" -c $CONNS "${AUTH[@]}"
    SECS=$saved
}

# (e) 1,000 concurrent first scrapes with one new token. Reviews are made slow (1 s) so
# that every request is waiting while the first review is still in flight.
case_burst() {
    log "case burst: 1000 concurrent first scrapes, one token"
    local control rb ra
    control=$(cat "$WORK/api/control")
    curl -s "http://$control/delay?ms=1000" >/dev/null
    rb=$(counts)
    "$KIT" burst --url "$U_HIT/metrics" --token bench-burst --connections 1000 >"$OUT/raw/burst.json"
    ra=$(counts)
    curl -s "http://$control/delay?ms=0" >/dev/null
    record burst kit "\"raw\":\"$OUT/raw/burst.json\",\"reviews_before\":$rb,\"reviews_after\":$ra"
    log "burst: $(cat "$OUT/raw/burst.json"); reviews $rb -> $ra"
}

# (f) memory versus cached identities (a distinct token is a distinct user: one
# TokenReview and one SubjectAccessReview entry each), on a fresh default instance.
case_cache() {
    log "case cache: RSS with 0, 10k, 65,536 and 131,072 distinct identities"
    local filled=0 n
    record cache mem "\"identities\":0,\"rss_kb\":$(mem_kb VmRSS "$MEM_PID"),\"hwm_kb\":$(mem_kb VmHWM "$MEM_PID")"
    for n in 10000 65536 131072; do
        "$KIT" scrape --url "$U_MEM/metrics" --prefix bench-id- --start $filled --count $((n - filled)) \
            --concurrency 32 --seconds 120 >"$OUT/raw/cache.$n.json"
        filled=$n
        sleep 2
        record cache mem "\"identities\":$n,\"rss_kb\":$(mem_kb VmRSS "$MEM_PID"),\"hwm_kb\":$(mem_kb VmHWM "$MEM_PID"),\"raw\":\"$OUT/raw/cache.$n.json\""
        log "cache $n identities: RSS $(mem_kb VmRSS "$MEM_PID") kB; fill $(cat "$OUT/raw/cache.$n.json")"
    done
}

# CASES=ab: a second cache-hit scrape-guard, binary SG_B (default: the same) with
# environment SG_B_ENV, against nginx and sg-hit in the same rounds: h1 (REPEATS
# interleaved rounds), a new connection per request, and the 5 MB page at 64 connections.
case_ab() {
    log "case ab: sg-b = ${SG_B:-$SG} ${SG_B_ENV:-}"
    local port pid
    port=$(free_port)
    # shellcheck disable=SC2086
    env ${SG_B_ENV:-} "${SG_B:-$SG}" --secure-listen-address="127.0.0.1:$port" \
        --tls-cert-file="$WORK/tls.crt" --tls-private-key-file="$WORK/tls.key" \
        --kubeconfig="$WORK/api/kubeconfig" --upstream="http://127.0.0.1:$UP_PORT/" \
        --auth-cache-ttl=1h --authz-allow-ttl=1h >"$WORK/logs/sg-b.log" 2>&1 &
    PIDS+=($!); pid=$!
    local u="https://127.0.0.1:$port"
    wait_http "$u/metrics"
    curl -sk -o /dev/null "${AUTH[@]}" "$u/ksm/metrics"
    record ab mem "\"target\":\"sg-b\",\"idle_rss_kb\":$(mem_kb VmRSS "$pid"),\"sg_b\":\"${SG_B:-$SG}\",\"sg_b_env\":\"${SG_B_ENV:-}\",\"sg_b_bytes\":$(stat -c %s "${SG_B:-$SG}")"
    warm "$U_NGX/metrics" -c $CONNS
    warm "$U_HIT/metrics" -c $CONNS "${AUTH[@]}"
    warm "$u/metrics" -c $CONNS "${AUTH[@]}"
    local r
    for r in $(seq "$REPEATS"); do
        run_oha ab-h1 nginx "$NGX_PIDS" "$U_NGX/metrics" -c $CONNS
        run_oha ab-h1 sg-hit "$HIT_PID" "$U_HIT/metrics" -c $CONNS "${AUTH[@]}"
        run_oha ab-h1 sg-b "$pid" "$u/metrics" -c $CONNS "${AUTH[@]}"
    done
    run_oha ab-newconn nginx "$NGX_PIDS" "$U_NGX/metrics" -c $CONNS --disable-keepalive
    run_oha ab-newconn sg-hit "$HIT_PID" "$U_HIT/metrics" -c $CONNS --disable-keepalive "${AUTH[@]}"
    run_oha ab-newconn sg-b "$pid" "$u/metrics" -c $CONNS --disable-keepalive "${AUTH[@]}"
    local saved=$SECS
    SECS=$(((saved + 1) / 2))
    run_oha ab-big64 nginx "$NGX_PIDS" "$U_NGX/ksm/metrics" -c $CONNS
    run_oha ab-big64 sg-hit "$HIT_PID" "$U_HIT/ksm/metrics" -c $CONNS "${AUTH[@]}"
    run_oha ab-big64 sg-b "$pid" "$u/ksm/metrics" -c $CONNS "${AUTH[@]}"
    local h2
    for h2 in $(seq 2); do
        run_oha ab-h2 nginx "$NGX_PIDS" "$U_NGX/metrics" --http2 -c 8 -p 8
        run_oha ab-h2 sg-hit "$HIT_PID" "$U_HIT/metrics" --http2 -c 8 -p 8 "${AUTH[@]}"
        run_oha ab-h2 sg-b "$pid" "$u/metrics" --http2 -c 8 -p 8 "${AUTH[@]}"
    done
    SECS=$saved
}

# CASES=listeners: the RSS of one scrape-guard serving N listeners (--listeners-file)
# against N scrape-guards serving one each (the kube-rbac-proxy way: a sidecar per port),
# under the same load on every listener: LISTENERS_CONNS keep-alive connections (default
# 16) for SECS seconds on each listener at once, cache hits; with LISTENERS_LOAD=split,
# LISTENERS_CONNS in all, divided among the N listeners (what one listener costs beside
# its connections). N in LISTENERS_COUNTS (default "1 2 4"); LISTENERS_ROUNDS rounds
# (default 5), the two layouts' order alternating; a fresh set of processes for every
# measurement. Table: $OUT/listeners.md (benches/fixtures/listeners_report.py).
case_listeners() {
    local rounds=${LISTENERS_ROUNDS:-5} counts=${LISTENERS_COUNTS:-1 2 4} conns=${LISTENERS_CONNS:-16}
    local load=${LISTENERS_LOAD:-each}
    log "case listeners: $counts listeners, one process vs one each, $rounds rounds, $conns connections ($load)"
    local r n order layout each
    for r in $(seq "$rounds"); do
        for n in $counts; do
            each=$conns
            [ "$load" = split ] && each=$(((conns + n - 1) / n))
            order="process processes"
            [ $((r % 2)) = 0 ] && order="processes process"
            for layout in $order; do
                listeners_run "$r" "$n" "$layout" "$each"
            done
        done
    done
}

# listeners_run ROUND N LAYOUT CONNS: N listeners as LAYOUT ("process": one scrape-guard
# with an N-listener --listeners-file; "processes": N scrape-guards with the flags of one
# listener), every one loaded at once; records idle RSS, peak RSS under the load and the
# 200s, then stops them (by PID).
listeners_run() {
    local round=$1 n=$2 layout=$3 conns=$4
    local ports=() pids=() oha_pids=() raws=() i port raw
    local file=$WORK/listeners-$n.yaml
    local common=(--kubeconfig="$WORK/api/kubeconfig" --auth-cache-ttl=1h --authz-allow-ttl=1h)
    local tls=(--tls-cert-file="$WORK/tls.crt" --tls-private-key-file="$WORK/tls.key")
    for i in $(seq "$n"); do ports+=("$(free_port)"); done
    if [ "$layout" = process ]; then
        echo "listeners:" >"$file"
        for i in $(seq "$n"); do
            printf -- '- name: l%s\n  secureListenAddress: 127.0.0.1:%s\n  upstream: http://127.0.0.1:%s/\n  tlsCertFile: %s\n  tlsPrivateKeyFile: %s\n' \
                "$i" "${ports[$((i - 1))]}" "$UP_PORT" "$WORK/tls.crt" "$WORK/tls.key" >>"$file"
        done
        # shellcheck disable=SC2086
        env $SG_ENV "$SG" --listeners-file="$file" "${common[@]}" >"$WORK/logs/listeners-$n.log" 2>&1 &
        PIDS+=($!); pids+=($!)
    else
        for port in "${ports[@]}"; do
            # shellcheck disable=SC2086
            env $SG_ENV "$SG" --secure-listen-address="127.0.0.1:$port" --upstream="http://127.0.0.1:$UP_PORT/" \
                "${tls[@]}" "${common[@]}" >"$WORK/logs/single-$port.log" 2>&1 &
            PIDS+=($!); pids+=($!)
        done
    fi
    for port in "${ports[@]}"; do
        wait_http "https://127.0.0.1:$port/metrics"
        curl -sk -o /dev/null "${AUTH[@]}" "https://127.0.0.1:$port/metrics"
    done
    sleep 2
    local idle
    idle=$(mem_kb VmRSS "${pids[@]}")
    reset_peak "${pids[@]}"
    for port in "${ports[@]}"; do
        raw=$OUT/raw/listeners.$layout.$n.$round.$port.json
        raws+=("\"$raw\"")
        "$OHA" --no-tui --output-format json --insecure -z "${SECS}s" -c "$conns" "${AUTH[@]}" \
            "https://127.0.0.1:$port/metrics" >"$raw" 2>"$raw.err" &
        oha_pids+=($!)
    done
    wait "${oha_pids[@]}" || true
    local joined
    joined=$(IFS=,; echo "${raws[*]}")
    record listeners mem "\"layout\":\"$layout\",\"load\":\"${LISTENERS_LOAD:-each}\",\"listeners\":$n,\"round\":$round,\"conns\":$conns,\"secs\":$SECS,\"idle_rss_kb\":$idle,\"hwm_kb\":$(mem_kb VmHWM "${pids[@]}"),\"rss_kb\":$(mem_kb VmRSS "${pids[@]}"),\"raws\":[$joined]"
    log "listeners round $round: $n as $layout: idle $idle kB, peak $(mem_kb VmHWM "${pids[@]}") kB"
    local pid kept=()
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    # Stopped: not ours to signal again at exit (the PID may be someone else's by then).
    for pid in "${PIDS[@]}"; do
        case " ${pids[*]} " in *" $pid "*) ;; *) kept+=("$pid") ;; esac
    done
    PIDS=("${kept[@]}")
}

# CASES=hold: keep everything running for HOLD_SECS (default 600) to profile by hand,
# e.g. perf record -g -p <sg-hit pid> while oha runs against its URL.
case_hold() {
    log "holding for ${HOLD_SECS:-600}s: upstream $U_DIRECT (workers $UP_PIDS), nginx $U_NGX (workers $NGX_PIDS)," \
        "static $U_STATIC, sg-hit $U_HIT (pid $HIT_PID), sg-miss $U_MISS (pid $MISS_PID), sg-mem $U_MEM (pid $MEM_PID)," \
        "fake apiserver control http://$(cat "$WORK/api/control") (pid $API_PID); token: Bearer bench-<anything>"
    env | grep -E '^(U_|OHA|SG|KIT)' >"$OUT/hold.env" || true
    printf 'HIT_PID=%s\nMISS_PID=%s\nMEM_PID=%s\nNGX_PIDS="%s"\nUP_PIDS="%s"\nU_DIRECT=%s\nU_NGX=%s\nU_STATIC=%s\nU_HIT=%s\nU_MISS=%s\nU_MEM=%s\n' \
        "$HIT_PID" "$MISS_PID" "$MEM_PID" "$NGX_PIDS" "$UP_PIDS" "$U_DIRECT" "$U_NGX" "$U_STATIC" "$U_HIT" "$U_MISS" "$U_MEM" >"$OUT/hold.env"
    sleep "${HOLD_SECS:-600}"
}

# ------------------------------------------------------------------ main
main() {
    install_tools
    mkdir -p "$OUT/raw"
    rm -f "$RESULTS" "$OUT"/raw/*
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true # the 1,000-connection burst needs ~3,000 fds

    if [ "${SKIP_BUILD:-0}" != 1 ]; then
        log "cargo build --release --bin scrape-guard --example bench_kit"
        cargo build --release --bin scrape-guard --example bench_kit 2>&1 | tail -1 >&2
    fi
    SG=${SG:-$TARGET_DIR/release/scrape-guard}
    KIT=$TARGET_DIR/release/examples/bench_kit
    [ -x "$SG" ] && [ -x "$KIT" ] || die "binaries missing"

    setup
    wait_quiet
    record env machine "\"loadavg_start\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"date\":\"$(date -u +%FT%TZ)\",\"nproc\":$(nproc),\"cpu\":\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')\",\"kernel\":\"$(uname -r)\",\"nginx\":\"$("$NGINX" -v 2>&1 | cut -d/ -f2)\",\"nginx_buffering\":\"$NGINX_BUFFERING\",\"oha\":\"$("$OHA" --version | cut -d' ' -f2)\",\"secs\":$SECS,\"repeats\":$REPEATS,\"commit\":\"$(git rev-parse --short HEAD)\",\"sg\":\"$SG\",\"sg_bytes\":$(stat -c %s "$SG"),\"cases\":\"$CASES\",\"src_dirty\":$(git status --porcelain -- src | wc -l),\"sg_env\":\"$SG_ENV\""
    local c
    for c in $CASES; do "case_$c"; done
    [ "$CASES" = hold ] && return 0
    record env machine_end "\"loadavg_end\":\"$(cut -d' ' -f1-3 /proc/loadavg)\""
    if [[ " $CASES " == *" listeners "* ]]; then
        python3 benches/fixtures/listeners_report.py "$RESULTS" >"$OUT/listeners.md"
        log "listeners: $OUT/listeners.md"
        cat "$OUT/listeners.md"
        [ "$CASES" = listeners ] && return 0
    fi
    python3 benches/fixtures/report.py "$RESULTS" >"$OUT/report.md"
    log "report: $OUT/report.md"
    cat "$OUT/report.md"
}

main "$@"
