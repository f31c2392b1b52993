#!/usr/bin/env bash
# Builds canister modules, reproducibly: the same sources give byte-identical .wasm.gz files.
#
#   scripts/build.sh             wasm/child.wasm.gz and wasm/parent.wasm.gz (the parent embeds that child)
#   scripts/build.sh --next      wasm/next/...: the "next" release, the child built with cargo feature `next`
#   scripts/build.sh --fixtures  wasm/fixtures/...: test-only canisters (tests/fixtures) and test-only releases, never
#                                shipped: corrupt/ (a child whose upgrade corrupts a member), big/ (a child over 2 MiB)
#
# Each output is printed with its size and SHA-256, the value the IC reports as module_hash.
# CARGO_TARGET_DIR (default ./target) is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target_dir=${CARGO_TARGET_DIR:-$root/target}

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  echo "Installing the wasm32-unknown-unknown target..."
  rustup target add wasm32-unknown-unknown
fi

# The tool that adds candid metadata, strips custom sections and gzips (scripts/wasm-finish): a native build.
CARGO_TARGET_DIR=$target_dir cargo build --quiet --locked -p wasm-finish
finish=$target_dir/debug/wasm-finish

# Reproducibility: no machine paths in a module. Cargo passes workspace sources as relative paths; dependency
# sources live under CARGO_HOME, which differs between machines, so both are mapped to fixed prefixes.
export RUSTFLAGS="--remap-path-prefix=$root=/canister-fleet --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"

build() { # <out dir> <package> [cargo args...]: builds for wasm32 and writes <out dir>/<crate>.wasm.gz
  local out=$1 package=$2 crate=${2//-/_}
  shift 2
  echo "Building $package for wasm32 (release)..."
  cargo build --quiet --locked --release --target wasm32-unknown-unknown -p "$package" "$@"
  local did=() && [ -f "$package/$package.did" ] && did=(--candid "$package/$package.did")
  mkdir -p "$out"
  "$finish" "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/$crate.wasm" "${did[@]}" --out "$out/$crate.wasm.gz"
}

release() { # <out dir> <version suffix, as child/build.rs gives it> [child cargo args...]
  local out=$1 suffix=$2 version
  shift 2
  build "$out" child "$@"
  version=$(cargo pkgid --quiet -p child | sed 's/.*[#@]//')$suffix
  printf '%s\n' "$version" >"$out/child.version"
  # The parent embeds exactly these bytes and that version; parent/build.rs hashes the bytes at compile time.
  CHILD_WASM_GZ=$root/$out/child.wasm.gz build "$out" parent
}

case "${1:-}" in
  "") CARGO_TARGET_DIR=$target_dir release wasm "" ;;
  # A target dir of its own, so that switching the feature on and off does not rebuild the child every time.
  --next) CARGO_TARGET_DIR=$target_dir/next release wasm/next -next --features next ;;
  --fixtures)
    CARGO_TARGET_DIR=$target_dir build wasm/fixtures seed-bug
    CARGO_TARGET_DIR=$target_dir build wasm/fixtures heap-baseline
    CARGO_TARGET_DIR=$target_dir/fixtures release wasm/fixtures/corrupt -corrupt --features corrupt
    CARGO_TARGET_DIR=$target_dir/fixtures release wasm/fixtures/big -big --features ballast ;;
  *) echo "usage: scripts/build.sh [--next | --fixtures]" >&2; exit 2 ;;
esac
