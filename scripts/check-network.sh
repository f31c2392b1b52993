#!/usr/bin/env bash
# icp-cli 1.5.0, a client nobody here wrote, against the local network (tests/network), as CI runs it:
#   1. `icp deploy` the parent, `create_children` 5, fill each child with data;
#   2. build the next release, `icp canister install parent --mode upgrade`, poll `rollout_status` to its end;
#   3. every child runs the next child (module hash from `icp canister status`) and kept its data (calls);
#   4. icp-cli with another root key in icp.yaml refuses the network;
#   5. the fleet scripts on a fresh network: deploy.sh builds a fleet; upgrade-fleet.sh rolls the next release out
#      while one child genuinely cannot be upgraded (its controllers no longer include the parent) and exits 1
#      naming it; once fixed and retried it exits 0; an unchanged redeploy says so and touches no child.
# It uses a state folder, an icp-cli home and a port of its own, and puts icp.yaml and the `local` canister ids
# back as they were when it ends. NETWORK_BIN (see network.sh) reuses a built network binary.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/icp-cli.sh
pinned_icp || { echo "check-network.sh: npm is needed to install icp-cli" >&2; exit 1; }
export ICP=$icp

work=$(mktemp -d)
export ICP_HOME=$work/icp-home NETWORK_DIR=$work/network
port=${CHECK_NETWORK_PORT:-4960}
mappings=.icp/data/mappings/local.ids.json
cp icp.yaml "$work/icp.yaml"
[ -f $mappings ] && cp $mappings "$work/local.ids.json"
restore() {
  scripts/network.sh stop >/dev/null || true
  cp "$work/icp.yaml" icp.yaml
  rm -f $mappings
  [ -f "$work/local.ids.json" ] && cp "$work/local.ids.json" $mappings
  rm -rf "$work"
}
trap restore EXIT

step() { printf '\n-- %s\n' "$*"; }
fail() { echo "check-network.sh: FAILED: $*" >&2; exit 1; }
icp_() { "$icp" "$@" -e local; }
expect() { # <pattern> <command...>: runs the command, which must succeed and print the pattern
  local pattern=$1 out
  shift
  out=$("$@") || fail "$*"
  grep -q -- "$pattern" <<<"$out" || fail "$*: $out"
}
children() { icp_ canister call parent list_children '(record { limit = 100 : nat32 })' --query |
  grep -oE 'canister_id = principal "[^"]+"' | sed -E 's/.*"(.*)"/\1/'; }
checksum() { icp_ canister call "$1" data_checksum '()' --query | tr -d '\n '; }
audit_length() { icp_ canister call "$1" health '()' --query | grep -oE 'audit_log_length = [0-9_]+' | tr -d '_'; }
module_of() { icp_ canister status "$1" | sed -n -E 's/^ *Module hash: 0x([0-9a-f]{64})$/\1/p'; }
fill='(record { prefix = "member-"; count = 200 : nat32; value_size = 256 : nat32 })'

"$icp" identity new fleet-test --storage plaintext --output-seed /dev/null >/dev/null 2>&1
"$icp" identity default fleet-test >/dev/null
me=$("$icp" identity principal)

step "1. icp deploy, create_children 5, fill every child"
scripts/network.sh start --port "$port"
scripts/build.sh >/dev/null
icp_ deploy parent --yes --args '(null)' --cycles 100t >/dev/null
icp_ canister call parent set_extra_controllers "(vec { principal \"$me\" })" >/dev/null
expect 'error = null' icp_ canister call parent create_children '(5 : nat32, null)'
mapfile -t fleet < <(children)
[ ${#fleet[@]} = 5 ] || fail "expected 5 children, found ${#fleet[@]}"
declare -A before
for child in "${fleet[@]}"; do
  expect 'Ok = 200' icp_ canister call "$child" admin_fill "$fill"
  before[$child]=$(checksum "$child")
done
echo "5 children, 200 members each"

step "2. the next release: icp canister install parent --mode upgrade, then rollout_status until it ends"
scripts/build.sh --next >/dev/null
next_child=$(sha256sum wasm/next/child.wasm.gz | cut -d' ' -f1)
icp_ canister install parent --mode upgrade --wasm wasm/next/parent.wasm.gz --yes --args '(null)'
for _ in $(seq 120); do
  status=$(icp_ canister call parent rollout_status '()' --query)
  grep -q 'finished_at = opt' <<<"$status" && grep -q "version = \"$(cat wasm/next/child.version)\"" <<<"$status" && break
  sleep 1
done
grep -q 'finished_at = opt' <<<"$status" || fail "the rollout did not end: $status"
grep -qE 'failed = 0 :' <<<"$status" && grep -qE 'upgraded = 5 :' <<<"$status" || fail "rollout: $status"
echo "rollout finished: 5 upgraded, 0 failed"

step "3. every child runs the next child and kept its data"
for child in "${fleet[@]}"; do
  [ "$(module_of "$child")" = "$next_child" ] || fail "$child runs $(module_of "$child"), not $next_child"
  [ "$(checksum "$child")" = "${before[$child]}" ] || fail "$child data changed"
  expect '-next"' icp_ canister call "$child" version '()' --query
done
echo "5 children on $next_child with their data checksums unchanged"

step "4. icp-cli with another root key in icp.yaml refuses the network"
other=$work/other-network
"${NETWORK_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/debug/network}" --state-dir "$other" --port 0 >/dev/null 2>&1 &
other_pid=$!
for _ in $(seq 50); do [ -s "$other/root_key" ] && break; sleep 0.1; done
kill $other_pid
wrong=$(cat "$other/root_key")
[ "$wrong" != "$(cat "$NETWORK_DIR/root_key")" ] || fail "the two networks have the same key"
mkdir "$work/wrong-key"
sed -E "s|^(    root-key: ).*|\\1$wrong|" icp.yaml >"$work/wrong-key/icp.yaml"
if out=$(cd "$work/wrong-key" && "$icp" canister call "${fleet[0]}" version '()' -e local 2>&1); then
  fail "icp-cli accepted the network under another root key: $out"
fi
grep -q 'Certificate verification failed' <<<"$out" || fail "unexpected error: $out"
(cd "$work/wrong-key" && sed -i -E "s|^(    root-key: ).*|\\1$(cat "$NETWORK_DIR/root_key")|" icp.yaml &&
  "$icp" canister call "${fleet[0]}" version '()' -e local >/dev/null) || fail "the right key in the same file"
echo "refused: Certificate verification failed (and accepted with the network's own key)"

step "5. the fleet scripts on a fresh network"
scripts/network.sh stop
scripts/network.sh start --port "$port"
scripts/deploy.sh >/dev/null
icp_ canister call parent set_extra_controllers "(vec { principal \"$me\" })" >/dev/null
scripts/deploy.sh --children 5 | tail -1
mapfile -t fleet < <(children)
[ ${#fleet[@]} = 5 ] || fail "deploy.sh: expected 5 children, found ${#fleet[@]}"
parent=$(icp_ canister status parent --id-only)
broken=${fleet[2]}
icp_ canister settings update "$broken" --remove-controller "$parent" --force >/dev/null
echo "$broken no longer lists the parent among its controllers"
if out=$(scripts/upgrade-fleet.sh --next 2>&1); then
  fail "upgrade-fleet.sh exited 0 with a child it cannot upgrade: $out"
fi
echo "$out" | tail -3
grep -q "1 failed children" <<<"$out" && grep -q "  $broken " <<<"$out" || fail "the failure is not listed: $out"
[ "$(module_of "$broken")" != "$next_child" ] || fail "$broken was upgraded"

icp_ canister settings update "$broken" --add-controller "$parent" --force >/dev/null
icp_ canister call parent retry_failed '()' >/dev/null
scripts/upgrade-fleet.sh --next | tail -2 || fail "upgrade-fleet.sh after the retry"
declare -A audit
for child in "${fleet[@]}"; do
  [ "$(module_of "$child")" = "$next_child" ] || fail "$child is not on $next_child"
  audit[$child]=$(audit_length "$child")
done
rollout=$(icp_ canister call parent rollout_status '()' --query | grep -oE 'rollout_id = [0-9_]+')

out=$(scripts/upgrade-fleet.sh --next) || fail "the unchanged redeploy: $out"
echo "$out" | tail -3
grep -q "Unchanged: the parent already runs this release" <<<"$out" || fail "not reported unchanged: $out"
for child in "${fleet[@]}"; do
  [ "$(audit_length "$child")" = "${audit[$child]}" ] || fail "$child was touched by the unchanged redeploy"
done
[ "$(icp_ canister call parent rollout_status '()' --query | grep -oE 'rollout_id = [0-9_]+')" = "$rollout" ] ||
  fail "the unchanged redeploy started a rollout"
echo "no child touched"

printf '\ncheck-network.sh: PASS\n'
