#!/usr/bin/env bash
# scrape-guard in standalone mode, in front of a local exporter — no cluster needed.
# Tokens come from tokens.csv, authorization from rbac.yaml (both beside this script,
# both reloaded when you edit them). Ctrl-C stops everything this script started.
#
#   deploy/examples/standalone/demo.sh
#   curl -sk -H 'Authorization: Bearer prometheus-demo-token' https://127.0.0.1:8443/metrics | head   # 200
#   curl -sk -H 'Authorization: Bearer intruder-demo-token'   https://127.0.0.1:8443/metrics         # 403
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
PORT=${PORT:-8443}
EXPORTER_PORT=${EXPORTER_PORT:-9100}
EXPORTER_PID=

cleanup() { [[ -n $EXPORTER_PID ]] && kill "$EXPORTER_PID" 2>/dev/null || true; }
trap cleanup EXIT

exporter_up() { python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$EXPORTER_PORT/metrics', timeout=1)" 2>/dev/null; }

if exporter_up; then
  echo "demo: using the exporter already on 127.0.0.1:$EXPORTER_PORT"
elif command -v prometheus-node-exporter >/dev/null; then
  echo "demo: starting prometheus-node-exporter on 127.0.0.1:$EXPORTER_PORT"
  prometheus-node-exporter --web.listen-address="127.0.0.1:$EXPORTER_PORT" >/dev/null 2>&1 &
  EXPORTER_PID=$!
else
  echo "demo: no exporter found; serving a small static /metrics page on 127.0.0.1:$EXPORTER_PORT"
  python3 - "$EXPORTER_PORT" >/dev/null 2>&1 <<'PY' &
import http.server, sys
PAGE = b"# HELP demo_up A stand-in exporter.\n# TYPE demo_up gauge\ndemo_up 1\n"
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(PAGE))); self.end_headers(); self.wfile.write(PAGE)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
  EXPORTER_PID=$!
fi
for _ in $(seq 50); do exporter_up && break; sleep 0.1; done
exporter_up || { echo "demo: the exporter did not come up on 127.0.0.1:$EXPORTER_PORT" >&2; exit 1; }

echo "demo: building scrape-guard (the first time: a few minutes)…"
cargo build --quiet --manifest-path "$REPO/Cargo.toml" --bin scrape-guard
cat <<MSG

demo: scrape-guard on https://127.0.0.1:$PORT (self-signed certificate, standalone mode). Try:
  curl -sk -H 'Authorization: Bearer prometheus-demo-token' https://127.0.0.1:$PORT/metrics | head   # 200
  curl -sk -H 'Authorization: Bearer intruder-demo-token'   https://127.0.0.1:$PORT/metrics         # 403
  $REPO/target/debug/scrape-guard can-i --token-file <(echo intruder-demo-token) \\
      --token-auth-file $HERE/tokens.csv --rbac-file $HERE/rbac.yaml                              # why, and the fix

MSG
"$REPO/target/debug/scrape-guard" \
  --secure-listen-address="127.0.0.1:$PORT" \
  --upstream="http://127.0.0.1:$EXPORTER_PORT/" \
  --token-auth-file="$HERE/tokens.csv" \
  --rbac-file="$HERE/rbac.yaml"
