#!/usr/bin/env bash
# The main job on a fresh clone: installs and builds the workspace if needed, then runs `diad demo`
# (generate the embedded synthetic dataset, fit the tiny preset, test, write the report).
# Extra arguments go to `diad demo` (see `pnpm diad demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version)" != "10.34.9" ]; then
  npm install -g pnpm@10.34.9 >/dev/null
fi
[ -d node_modules ] || pnpm install --frozen-lockfile
pnpm run build >/dev/null
exec node apps/demo/dist/cli.js demo "$@"
