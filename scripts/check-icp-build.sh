#!/usr/bin/env bash
# Checks icp.yaml with the real icp-cli: `icp build` must produce exactly the modules in wasm/.
# icp-cli's Linux binary comes from the npm package below; it is installed once into a cache directory.
set -euo pipefail
cd "$(dirname "$0")/.."

version=1.5.0
cache=${XDG_CACHE_HOME:-$HOME/.cache}/canister-fleet/icp-cli-$version
icp=$cache/node_modules/@icp-sdk/icp-cli-linux-x64/bin/icp
if [ ! -x "$icp" ]; then
  echo "Installing @icp-sdk/icp-cli-linux-x64@$version from npm into $cache..."
  mkdir -p "$cache"
  npm install --prefix "$cache" --no-save --no-audit --no-fund --loglevel=error "@icp-sdk/icp-cli-linux-x64@$version"
fi

DO_NOT_TRACK=1 "$icp" build
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
