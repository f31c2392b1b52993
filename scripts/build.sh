#!/usr/bin/env bash
# Builds the release modules, reproducibly: the same sources give byte-identical .wasm.gz files.
#
#   scripts/build.sh          -> wasm/child.wasm.gz, wasm/parent.wasm.gz (the parent embeds that child)
#   scripts/build.sh --next   -> wasm/next/...: the "next" release, the child built with cargo feature `next`
#
# Each output is printed with its size and SHA-256 (the value the IC reports as module_hash).
# Environment: CARGO_TARGET_DIR (default ./target) is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

out=wasm features=() target_dir=${CARGO_TARGET_DIR:-$root/target}
case "${1:-}" in
  "") ;;
  --next) out=wasm/next features=(--features next) target_dir=$target_dir/next ;;
  *) echo "usage: scripts/build.sh [--next]" >&2; exit 2 ;;
esac
mkdir -p "$out"

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  echo "Installing the wasm32-unknown-unknown target..."
  rustup target add wasm32-unknown-unknown
fi

# Reproducibility: no machine paths in the module. Cargo passes workspace sources as relative paths; dependency
# sources live under CARGO_HOME, which differs between machines, so map it to a fixed prefix.
cargo_home=${CARGO_HOME:-$HOME/.cargo}
export RUSTFLAGS="--remap-path-prefix=$root=/canister-fleet --remap-path-prefix=$cargo_home=/cargo"
export CARGO_TARGET_DIR=$target_dir

# The tool that adds candid metadata, strips custom sections and gzips; a native build, kept apart from RUSTFLAGS.
RUSTFLAGS= CARGO_TARGET_DIR=${CARGO_TARGET_DIR_TOOLS:-$root/target} \
  cargo build --quiet --locked -p wasm-finish
finish=${CARGO_TARGET_DIR_TOOLS:-$root/target}/debug/wasm-finish

build() { # <package> [cargo args...]
  echo "Building $1 for wasm32 (release)..."
  cargo build --quiet --locked --release --target wasm32-unknown-unknown -p "$@"
}

build child "${features[@]}"
child_version=$(cargo pkgid --quiet -p child | sed 's/.*[#@]//')
[ ${#features[@]} -eq 0 ] || child_version="$child_version-next"
"$finish" "$target_dir/wasm32-unknown-unknown/release/child.wasm" --candid child/child.did --out "$out/child.wasm.gz"
printf '%s\n' "$child_version" >"$out/child.version"

# The parent embeds exactly these bytes (parent/build.rs hashes them at compile time).
CHILD_WASM_GZ=$root/$out/child.wasm.gz CHILD_VERSION=$child_version build parent
"$finish" "$target_dir/wasm32-unknown-unknown/release/parent.wasm" --candid parent/parent.did --out "$out/parent.wasm.gz"

