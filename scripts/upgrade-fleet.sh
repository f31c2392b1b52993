#!/usr/bin/env bash
# Rolls a release out to the whole fleet and follows it to the end.
#
#   scripts/upgrade-fleet.sh [-e ENV] [--next] [--dfx]
#
#   1. builds the release (--next: the next release, into wasm/next/) and prints the child hash it rolls out;
#   2. stops the parent, upgrades it (--mode upgrade) and starts it; its post_upgrade starts the rollout;
#   3. follows rollout_status with a progress bar (upgraded, in flight, failed, rate and ETA);
#   4. exits 0 only when every child runs the release, otherwise 1 with the failures listed.
# A release the parent already runs is not deployed again: the script says so and touches no child.
#
#   -e ENV   the icp-cli environment (default local: the network of scripts/network.sh; ic: mainnet)
#   --dfx    use dfx instead of icp-cli (see scripts/fleet-cli.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/fleet-cli.sh

dir=wasm
build=(scripts/build.sh)
fleet_options "$@"
set -- "${rest[@]+"${rest[@]}"}"
while [ $# -gt 0 ]; do
  case $1 in
    --next) dir=wasm/next; build=(scripts/build.sh --next); shift ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "upgrade-fleet.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

"${build[@]}"
parent_hash=$(sha256_hex $dir/parent.wasm.gz)
child_hash=$(sha256_hex $dir/child.wasm.gz)
echo "Release: child $(cat $dir/child.version), module hash $child_hash (parent $parent_hash)"

if ! canister_exists parent; then
  echo "upgrade-fleet.sh: no parent in $environment; deploy one first (scripts/deploy.sh -e $environment)" >&2
  exit 1
fi
started=$(date +%s.%N)
if [ "$(module_hash parent)" = "$parent_hash" ]; then
  unchanged=1
  echo "Unchanged: the parent already runs this release. Nothing deployed, no child touched."
else
  unchanged=0
  echo "Upgrading the parent in $environment with $cli: stop, install --mode upgrade, start..."
  upgrade_stopped parent $dir/parent.wasm.gz
fi

# Follows the rollout until the parent reports it finished.
field() { candid_number "$1" <<<"$status"; }
last=""
baseline=""
while :; do
  status=$(query parent rollout_status '()')
  total=$(field total_children) upgraded=$(field upgraded) in_flight=$(field in_flight) failed=$(field failed)
  up_to_date=$(field up_to_date) finished=$(field finished_at)
  # The rate counts upgrades seen by this run (an unchanged release may show an earlier rollout's count).
  [ -z "$baseline" ] && baseline=$((unchanged ? upgraded : 0))
  done_count=${up_to_date:-0}
  left=$((total - done_count - failed))
  read -r rate eta < <(awk -v n="$((upgraded - baseline))" -v s="$started" -v now="$(date +%s.%N)" -v l="$left" 'BEGIN {
    r = (now > s ? n / (now - s) : 0); printf "%.1f %s\n", r, (r > 0 ? sprintf("%ds", l / r) : "?") }')
  width=30
  filled=$((total > 0 ? done_count * width / total : width))
  bar=$(printf '%*s' "$filled" '' | tr ' ' '#')$(printf '%*s' $((width - filled)) '' | tr ' ' '-')
  line=$(printf '[%s] %d/%d on the release, %d upgraded, %d in flight, %d failed, %s/s, ETA %s' \
    "$bar" "$done_count" "$total" "$upgraded" "$in_flight" "$failed" "$rate" "$eta")
  if [ -t 1 ]; then
    printf '\r%s ' "$line"
  elif [ "$line" != "$last" ]; then
    echo "$line"
  fi
  last=$line
  [ -n "$finished" ] && break
  sleep 1
done
[ -t 1 ] && echo

if [ "$failed" = 0 ] && [ "$done_count" = "$total" ]; then
  echo "Every child ($total) runs the release $child_hash."
  exit 0
fi
echo "The rollout ended with $failed failed children ($done_count of $total on the release):" >&2
paste -d' ' \
  <(grep -oE 'canister_id = principal "[^"]+"' <<<"$status" | sed -E 's/.*"(.*)"/\1/') \
  <(grep -oE 'error = "([^"\\]|\\.)*"' <<<"$status" | sed -E 's/^error = //') | sed 's/^/  /' >&2
echo "Retry them with: $cli canister call parent retry_failed '()'" >&2
exit 1
