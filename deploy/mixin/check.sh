#!/usr/bin/env bash
# The mixin's checks: `promtool check rules` on the PrometheusRule's rule groups and
# `promtool test rules` on deploy/mixin/tests.yaml; the dashboard is valid JSON.
# promtool comes with Debian's `prometheus` package (e2e/provision.sh installs it).
#
# The rule file promtool reads is generated from prometheusrule.yaml (its `spec:`,
# dedented) into a temporary directory: the PrometheusRule is the only copy.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
PROMTOOL="${PROMTOOL:-promtool}"
command -v "$PROMTOOL" >/dev/null || { echo "mixin: $PROMTOOL not found (apt-get install prometheus)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Everything after the top-level `spec:` line, two spaces of indentation removed.
sed -n '/^spec:/,$p' "$here/prometheusrule.yaml" | tail -n +2 | sed 's/^  //' >"$tmp/rules.yaml"
cp "$here/tests.yaml" "$tmp/tests.yaml"

"$PROMTOOL" check rules "$tmp/rules.yaml"
(cd "$tmp" && "$PROMTOOL" test rules tests.yaml)
# The dashboard: valid JSON, and every panel's query valid PromQL (Grafana's
# variables replaced by what they mean when "All" is chosen), checked by promtool as
# recording rules.
python3 - "$here/dashboard.json" "$tmp/dashboard-rules.yaml" <<'PY'
import json, re, sys
dashboard = json.load(open(sys.argv[1]))
exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
with open(sys.argv[2], "w") as out:
    out.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, expr in enumerate(exprs):
        expr = expr.replace("$__rate_interval", "5m")
        expr = re.sub(r"\$[a-z_]+", ".*", expr)
        out.write(f"      - record: dashboard:panel_{i}\n        expr: {json.dumps(expr)}\n")
print(f"dashboard: {dashboard['title']}, {len(exprs)} queries")
PY
"$PROMTOOL" check rules "$tmp/dashboard-rules.yaml"
