#!/usr/bin/env bash
# Runs tests/pocket-ic-server/js/child-upgrade.cjs: @dfinity/pic against our PocketIC-compatible server. The npm
# packages come from the package-lock.json there and are installed once into a cache directory, with install
# scripts off (@dfinity/pic's postinstall would download the PocketIC server).
set -euo pipefail
cd "$(dirname "$0")/.."

js=tests/pocket-ic-server/js
cache=${XDG_CACHE_HOME:-$HOME/.cache}/canister-fleet/pic-js-$(sha256sum "$js/package-lock.json" | cut -c1-16)
if [ ! -d "$cache/node_modules/@dfinity/pic" ]; then
  echo "Installing @dfinity/pic from $js/package-lock.json into $cache..."
  mkdir -p "$cache"
  cp "$js/package.json" "$js/package-lock.json" "$cache/"
  npm ci --prefix "$cache" --ignore-scripts --no-audit --no-fund --loglevel=error
fi

# POCKET_IC_BIN reuses a built server (scripts/test.sh passes the one its tests built: a build of its own would
# compile its dependencies once more, with another feature set).
if [ -z "${POCKET_IC_BIN:-}" ]; then
  cargo build --locked -p pocket-ic-server
  target_dir=$(cargo metadata --locked --format-version 1 --no-deps |
    node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s).target_directory))')
  POCKET_IC_BIN="$target_dir/debug/pocket-ic-server"
fi
POCKET_IC_BIN="$POCKET_IC_BIN" NODE_PATH="$cache/node_modules" node "$js/child-upgrade.cjs"
