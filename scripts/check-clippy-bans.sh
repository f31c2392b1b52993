#!/usr/bin/env bash
# Proves that clippy.toml's stable-memory bans hold: runs clippy (for wasm32, as the canisters are built) on
# tests/clippy_probe with its `probe` feature, which calls every banned path once per line marked `// banned:`, and
# fails unless clippy rejects every marked line with `disallowed_methods`. A ban whose path is misspelt, or a path
# clippy cannot resolve, shows up here as a line clippy let through.
set -euo pipefail
cd "$(dirname "$0")/.."

probe=tests/clippy_probe/src/probe.rs
diagnostics=$(mktemp)
trap 'rm -f "$diagnostics"' EXIT
# Clippy exits non-zero on the probe by design; its JSON diagnostics are what count.
cargo clippy --quiet --locked -p clippy-probe --features probe --target wasm32-unknown-unknown \
  --message-format=json -- -W clippy::disallowed_methods >"$diagnostics" 2>/dev/null || true

python3 - "$probe" "$diagnostics" <<'PY'
import json, re, sys
probe, diagnostics = sys.argv[1], sys.argv[2]
marked = {i + 1: m.group(1) for i, line in enumerate(open(probe)) if (m := re.search(r"// banned: (.*)$", line))}
flagged, errors = set(), []
for line in open(diagnostics):
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") != "compiler-message":
        continue
    m = msg["message"]
    if (m.get("code") or {}).get("code") == "clippy::disallowed_methods":
        flagged |= {s["line_start"] for s in m["spans"] if s["file_name"].endswith("probe.rs")}
    elif m.get("level") == "error":
        errors.append(m.get("rendered") or m.get("message"))
if errors:
    sys.exit("the probe does not compile, so nothing was checked:\n" + "\n".join(errors))
missed = sorted(set(marked) - flagged)
for n in sorted(marked):
    print(("rejected" if n in flagged else "ALLOWED ") + f"  {probe}:{n}  {marked[n]}")
if not marked:
    sys.exit("no banned call is marked in the probe")
if missed:
    sys.exit(f"{len(missed)} banned call(s) got past clippy: fix clippy.toml")
print(f"clippy rejects all {len(marked)} banned stable-memory write paths")
PY
