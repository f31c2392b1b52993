#!/usr/bin/env bash
# Checks icp.yaml with the real icp-cli: `icp build` must produce exactly the modules in wasm/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/icp-cli.sh
pinned_icp || { echo "check-icp-build.sh: npm is needed to install icp-cli" >&2; exit 1; }

"$icp" build
status=0
for name in child parent; do
  if cmp -s ".icp/cache/artifacts/$name" "wasm/$name.wasm.gz"; then
    echo "icp build: $name is identical to wasm/$name.wasm.gz"
  else
    echo "icp build: $name DIFFERS from wasm/$name.wasm.gz"
    status=1
  fi
done
exit $status
