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

# Every alert has its runbook: a "## <alert>" section in docs/runbooks.md, and the
# runbook_url's anchor is that section's. Every scrape_guard_* series the rules and the
# dashboard read is one src/metrics.rs declares (counters end in _total, histograms in
# _bucket/_sum/_count), so a renamed metric cannot silently empty an alert.
python3 - "$here" <<'PY'
import json, pathlib, re, sys
here = pathlib.Path(sys.argv[1])
repo = here.parent.parent
rules = (here / "prometheusrule.yaml").read_text()
runbooks = (repo / "docs" / "runbooks.md").read_text()
sections = set(re.findall(r"^## (\S+)$", runbooks, re.M))
problems = []
for alert in sorted(set(re.findall(r"- alert: (\S+)", rules))):
    if alert not in sections:
        problems.append(f"{alert}: no '## {alert}' section in docs/runbooks.md")
for url in re.findall(r"runbook_url: (\S+)", rules):
    anchor = url.rsplit("#", 1)[-1]
    if anchor not in {s.lower() for s in sections}:
        problems.append(f"runbook_url {url}: no such section")
# Families in src/metrics.rs' table: `field: Type, "name", "help"`, and build_info.
metrics_rs = (repo / "src" / "metrics.rs").read_text()
declared = set(re.findall(r'^\s+\w+: [\w<>, ]+, "([a-z_]+)",', metrics_rs, re.M)) | {"build_info"}
# Collected outside the table: src/metrics/process.rs registers these under our prefix.
process_rs = (repo / "src" / "metrics" / "process.rs").read_text()
pending = {n for n in ["memory_limit_bytes"] if f"scrape_guard_{n}" in process_rs}
dashboard = json.loads((here / "dashboard.json").read_text())
exprs = rules + "\n".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
for name in sorted(set(re.findall(r"scrape_guard_([a-z_]+)", exprs))):
    family = re.sub(r"_(total|bucket|sum|count)$", "", name)
    if family not in declared and name not in declared and family not in pending:
        problems.append(f"scrape_guard_{name}: src/metrics.rs declares no such family")
if problems:
    sys.exit("mixin: " + "\n  ".join(problems))
print(f"runbooks: {len(sections)} sections; metric names: checked against {len(declared)} families")
PY
