#!/usr/bin/env bash
# Latency of a scrape (main port) and of /healthz (probe port) on a new connection from
# 127.0.0.1 while hostile clients at other loopback addresses hold or flood the
# connection slots: the tests in tests/integration/hostile_connections.rs print one line per
# scrape or probe; this runs them ROUNDS times (default 5) and reports the median and
# the worst per scenario. A debug build, in-process proxy: an upper bound for release.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for _ in $(seq "$rounds"); do
    cargo test --test integration -- hostile_connections::two_addresses \
        hostile_connections::sixteen_addresses hostile_connections::a_flood_that_reconnects \
        --nocapture --test-threads=1 \
        2>&1 | grep -oE '(scrape|probe) [0-9]+ behind .*' >>"$out"
done
python3 - "$out" <<'PY'
import re, statistics, sys
by = {}
for line in open(sys.argv[1]):
    m = re.match(r'(scrape|probe) \d+ behind (.*): ([0-9.]+)(ms|s|µs)$', line.strip())
    if not m:
        continue
    value = float(m[3]) * {'ms': 1, 's': 1000, 'µs': 0.001}[m[4]]
    by.setdefault(f'{m[1]} behind {m[2]}', []).append(value)
for name, values in sorted(by.items()):
    print(f'{name}: median {statistics.median(values):.1f} ms, '
          f'worst {max(values):.1f} ms ({len(values)} samples)')
PY
