# Helpers and nginx configurations benches/load.sh and benches/callgrind.sh share, so
# that both measure against the same baseline. Sourced, not run: the script sets
# `set -euo pipefail` and `cd`s to the repository root first.

BENCH=${0##*/}

log() { printf '[%s %(%H:%M:%S)T] %s\n' "$BENCH" -1 "$*" >&2; }
die() {
    log "FAIL: $*"
    local f
    for f in "${WORK:-/nonexistent}"/logs/*; do
        [ -s "$f" ] && { echo "--- $f" >&2; tail -5 "$f" >&2; }
    done
    exit 1
}

# ------------------------------------------------------------------ tools
apt_install() {
    log "apt-get install $*"
    # Do not let the nginx package start a system nginx on :80.
    local made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null; then
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
    fi
    if [ $made_policy = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
}

# install_tools [MORE...]: nginx, openssl, curl, python3 and MORE from apt if missing,
# oha with cargo if missing; sets NGINX and OHA.
install_tools() {
    local missing=() tool
    for tool in "$@" openssl curl python3; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
    if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    export PATH="$HOME/.cargo/bin:$PATH"
    if ! command -v oha >/dev/null; then
        log "cargo install --locked oha (a few minutes, once)"
        cargo install --locked oha >/dev/null
    fi
    OHA=$(command -v oha)
}

# ------------------------------------------------------------------ processes
# start_work PREFIX: a temp dir WORK (/tmp/PREFIX.XXXXXX) and the list PIDS of the
# processes started in it; at exit each is sent SIGTERM, then SIGKILL after 5 s, and
# WORK is removed.
start_work() {
    WORK=$(mktemp -d "/tmp/$1.XXXXXX")
    PIDS=()
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}

forget_pid() { # stopped: not ours to signal again at exit
    local pid=$1 kept=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
    PIDS=("${kept[@]}")
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# ------------------------------------------------------------------ nginx
# nginx_upstream_conf WORKER_CONNECTIONS: the upstream (the exporter), nginx serving
# $WORK/www on plain HTTP at 127.0.0.1:$UP_PORT: /metrics and /ksm/metrics.
nginx_upstream_conf() {
    cat <<NGINX_UP
user root;
worker_processes 2;
daemon off;
pid $WORK/nginx-up/nginx.pid;
error_log $WORK/logs/nginx-up.err warn;
events { worker_connections $1; }
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
NGINX_UP
}

# nginx_tls_http: the http-level lines of the baseline, nginx as a TLS reverse proxy
# with no auth (the baseline people already trust): the certificate $WORK/tls.crt, the
# cipher choice, temp paths in $WORK/nginx-tls, a keep-alive pool to the upstream.
nginx_tls_http() {
    cat <<NGINX_TLS
    access_log off;
    tcp_nodelay on;
    keepalive_requests 1000000; keepalive_timeout 120s;
    default_type "text/plain; version=0.0.4; charset=utf-8";
    ssl_certificate $WORK/tls.crt;
    ssl_certificate_key $WORK/tls.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    # The suite Prometheus (Go) gets from either server: AES-128-GCM. oha (rustls) lists
    # AES-256-GCM first; scrape-guard, like Go's server, picks by its own order, so nginx
    # is told to do the same.
    ssl_prefer_server_ciphers on;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
    client_body_temp_path $WORK/nginx-tls/body; proxy_temp_path $WORK/nginx-tls/proxy;
    fastcgi_temp_path $WORK/nginx-tls/fcgi; uwsgi_temp_path $WORK/nginx-tls/uwsgi; scgi_temp_path $WORK/nginx-tls/scgi;
    upstream exporter {
        server 127.0.0.1:$UP_PORT;
        keepalive 128;
        keepalive_requests 1000000;
    }
NGINX_TLS
}

# nginx_proxy_location BUFFERING: the baseline's location, forwarding everything to the
# upstream with proxy_buffering BUFFERING (off: streamed, as scrape-guard does; on).
nginx_proxy_location() {
    local buffering
    if [ "$1" = on ]; then
        buffering="proxy_buffering on; proxy_buffer_size 16k; proxy_buffers 64 16k; proxy_busy_buffers_size 64k;"
    else
        buffering="proxy_buffering off; proxy_buffer_size 64k; proxy_buffers 4 64k; proxy_busy_buffers_size 128k;"
    fi
    cat <<NGINX_LOCATION
        location / {
            proxy_pass http://exporter;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            $buffering
        }
NGINX_LOCATION
}
