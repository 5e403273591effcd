#!/usr/bin/env bash
# Installs the workspace (only the npm registry needed) and runs every package's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version)" != "10.34.9" ]; then
  npm install -g pnpm@10.34.9 >/dev/null
fi
pnpm install --frozen-lockfile
pnpm run build
pnpm run typecheck
# The linter and the formatter check (Biome): a lint error or an unformatted file fails the run.
pnpm run lint
log=$(mktemp)
set +e
pnpm run test 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# One closing line over all packages' vitest summaries.
count() { sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E ':test: +Tests ' | grep -oE "[0-9]+ $1" | awk '{s+=$1} END {print s+0}'; }
echo "$(count passed) passed, $(count failed) failed, $(count skipped) skipped"
rm -f "$log"
exit "$rc"
