#!/usr/bin/env bash
# Builds the release, deploys the parent, and creates children until the parent has N.
#
#   scripts/deploy.sh [-e ENV] [--children N] [--cycles N] [--dfx]
#
#   -e ENV        the icp-cli environment (default local: the network of scripts/network.sh; ic: mainnet)
#   --children N  the fleet size to reach (default 0); children are created by the parent (`create_children`)
#   --cycles N    cycles for a new parent (default 100t on `local`, whose cycles are free; else icp-cli's 2t).
#                 Each child costs the parent its creation fee plus `cycles_per_child`
#   --dfx         use dfx instead of icp-cli (see scripts/fleet-cli.sh)
#
# A parent that already runs this release is left alone; one that runs another release is upgraded the careful
# way (stop, upgrade, start) and rolls the new child out: follow it with scripts/upgrade-fleet.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/fleet-cli.sh

children=0
cycles=""
fleet_options "$@"
set -- "${rest[@]+"${rest[@]}"}"
while [ $# -gt 0 ]; do
  case $1 in
    --children) children=$2; shift 2 ;;
    --cycles) cycles=$2; shift 2 ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "deploy.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -z "$cycles" ] && [ "$environment" = local ] && cycles=100t
[[ $children =~ ^[0-9]+$ ]] || { echo "deploy.sh: --children takes a number" >&2; exit 2; }

scripts/build.sh
wasm=wasm/parent.wasm.gz
echo "Deploying the parent to $environment with $cli..."
if ! canister_exists parent; then
  deploy parent "$cycles"
elif [ "$(module_hash parent)" = "$(sha256_hex $wasm)" ]; then
  echo "The parent already runs this release ($(sha256_hex $wasm))."
else
  upgrade_stopped parent $wasm
fi

have=$(query parent rollout_status '()' | candid_number total_children)
if [ "$have" -lt "$children" ]; then
  echo "The parent has $have children; creating $((children - have))..."
  created=$(update parent create_children "($((children - have)) : nat32, null)")
  if ! grep -q 'Ok' <<<"$created" || grep -q 'error = opt' <<<"$created"; then
    echo "$created" >&2
    echo "deploy.sh: create_children failed" >&2
    exit 1
  fi
fi
have=$(query parent rollout_status '()' | candid_number total_children)
echo "Deployed: the parent has $have children."
