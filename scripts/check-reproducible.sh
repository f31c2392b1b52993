#!/usr/bin/env bash
# Builds the sources again as another machine would: in a fresh directory, with a fresh target dir and a
# CARGO_HOME at another path, then checks that every .wasm.gz is byte-identical to the one in wasm/.
# Run scripts/build.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
other=$(mktemp -d /tmp/canister-fleet-repro.XXXXXX)
trap 'rm -rf "$other"' EXIT

# The working tree as git sees it (tracked and new files, minus ignored ones), so uncommitted edits count too.
git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
  xargs -0 cp --parents -t "$other"
# Another CARGO_HOME path, holding the same registry (hard links, so no download and no copy).
cargo_home=${CARGO_HOME:-$HOME/.cargo}
mkdir -p "$other/cargo-home"
cp -al "$cargo_home/registry" "$other/cargo-home/registry"
(cd "$other" && CARGO_HOME="$other/cargo-home" CARGO_TARGET_DIR="$other/target" scripts/build.sh >/dev/null)

status=0
for f in wasm/child.wasm.gz wasm/parent.wasm.gz; do
  if cmp -s "$root/$f" "$other/$f"; then
    echo "identical: $f $(sha256sum "$f" | cut -c1-16)…"
  else
    echo "DIFFERENT: $f ($(sha256sum "$root/$f" | cut -c1-16)… here, $(sha256sum "$other/$f" | cut -c1-16)… in $other)"
    status=1
  fi
done
exit $status
