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
pnpm run test
