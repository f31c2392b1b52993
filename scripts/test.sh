#!/usr/bin/env bash
# Runs everything CI runs: builds both releases, clippy (native and wasm32), every test, and the build checks.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step prints how long the previous one took; the summary at the end lists them all.
timings=()
last=""
started=$SECONDS
mark=$SECONDS
finish_step() {
  [ -z "$last" ] && return
  timings+=("$(printf '%5d s  %s' $((SECONDS - mark)) "$last")")
  printf -- '-- %s: %d s\n' "$last" $((SECONDS - mark))
}
step() {
  finish_step
  last=$1
  mark=$SECONDS
  printf '\n== %s\n' "$*"
}
summary() {
  finish_step
  printf '\n== Done in %d s\n' $((SECONDS - started))
  printf '%s\n' "${timings[@]}"
}
trap 'status=$?; [ $status -eq 0 ] && summary || printf "\n== FAILED at: %s (after %d s)\n" "$last" $((SECONDS - started))' EXIT

step "Build the current release (wasm/), the next release (wasm/next/) and the test fixtures (wasm/fixtures/)"
scripts/build.sh
scripts/build.sh --next
scripts/build.sh --fixtures

step "Formatting (rustfmt.toml)"
cargo fmt --all --check

step "Clippy, warnings are errors (clippy.toml bans stable memory writes outside the MemoryManager)"
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo clippy --locked -p child -p parent --target wasm32-unknown-unknown -- -D warnings
scripts/check-clippy-bans.sh

step "Tests"
cargo test --locked --workspace
cargo test --locked -p child --features next

step "Reproducible build: a second clone in another directory gives byte-identical modules"
scripts/check-reproducible.sh

step "icp-cli reads icp.yaml and builds the same modules"
scripts/check-icp-build.sh

step "@dfinity/pic runs against the PocketIC-compatible server (tests/pocket-ic-server)"
# The server binary the tests above built (for the pocket-ic-server's own integration tests).
POCKET_IC_BIN=${CARGO_TARGET_DIR:-$PWD/target}/debug/pocket-ic-server scripts/check-pic-js.sh

step "icp-cli against the local network: deploy, create, upgrade, verify; the fleet scripts; another root key"
# The network binary the tests above built (a build of its own would compile its dependencies once more).
NETWORK_BIN=${CARGO_TARGET_DIR:-$PWD/target}/debug/network scripts/check-network.sh
