#!/usr/bin/env bash
# Rehearses a fleet rollout on the in-process replica with the real modules: installs the parent of release A,
# creates children full of data, upgrades the parent to release B as `dfx canister install --mode upgrade` does,
# drives the rollout to its end and verifies every child (running, on B's child, data unchanged).
#
#   scripts/rehearse.sh                       builds wasm/ and wasm/next/, then rehearses wasm/parent.wasm.gz ->
#                                             wasm/next/parent.wasm.gz with 100 children, K = 10
#   scripts/rehearse.sh --from A.wasm.gz --to B.wasm.gz [--children N --members M --concurrency K]
#   scripts/rehearse.sh --fail-post-upgrade 10 --seed 7    injected faults; `--help` lists every option
#   scripts/rehearse.sh --rollback                          then back to the old release, data checked
#   scripts/rehearse.sh --snapshot all                      snapshots, a bad release, a restore, data checked
#
# Exit code 0 on PASS, 1 on FAIL, 2 on bad arguments. Relative paths are taken from the directory you run it in.
set -euo pipefail
caller=$PWD
cd "$(dirname "$0")/.."
root=$PWD

scripts/build.sh
scripts/build.sh --next
# The bad release `--snapshot all` rolls out (and restores from) is a test fixture.
case " $* " in *" --snapshot all "* | *" --snapshot=all "*) scripts/build.sh --fixtures ;; esac

cd "$caller"
exec cargo run --quiet --locked --release --manifest-path "$root/Cargo.toml" -p fleet --bin rehearse -- "$@"
