# Sourced by deploy.sh and upgrade-fleet.sh: the few canister commands they need, over icp-cli or dfx.
#
# icp-cli is the default (the `icp` on PATH, else icp-cli 1.5.0 installed from npm into a cache directory; $ICP
# names another binary). dfx is used with --dfx, or when icp-cli cannot be found or installed. ENV (-e) is an
# icp-cli environment (`local`: the network of scripts/network.sh; `ic`: mainnet) or, with dfx, a dfx network name.
#
# With dfx the same steps run as `dfx deploy parent --network ENV [--with-cycles N]`, `dfx canister stop|start --network ENV parent`,
# `dfx canister install --network ENV parent --mode upgrade --wasm wasm/parent.wasm.gz --yes`, and
# `dfx canister call --network ENV [--query] parent METHOD ARGS` (dfx cannot be installed here, so only the icp-cli
# path is tested).
# shellcheck shell=bash

source "$(dirname "${BASH_SOURCE[0]}")/icp-cli.sh"

environment=${ICP_ENVIRONMENT:-local}
use_dfx=0

# Parses the options shared by the fleet scripts; the others are left in the array `rest`.
fleet_options() {
  rest=()
  while [ $# -gt 0 ]; do
    case $1 in
      -e | --environment) environment=$2; shift 2 ;;
      --dfx) use_dfx=1; shift ;;
      *) rest+=("$1"); shift ;;
    esac
  done
  if [ $use_dfx = 0 ] && any_icp 2>/dev/null; then
    cli=icp
  elif command -v dfx >/dev/null; then
    cli=dfx
  else
    echo "Neither icp-cli nor dfx is available (npm installs icp-cli: npm i -g @icp-sdk/icp-cli)." >&2
    exit 1
  fi
}

# The canister commands, in the chosen CLI's words.
run() {
  if [ $cli = icp ]; then
    "$icp" "$@" -e "$environment"
  else
    dfx "$@" --network "$environment"
  fi
}

canister_exists() { # <name>
  if [ $cli = icp ]; then
    "$icp" canister status "$1" -e "$environment" --id-only >/dev/null 2>&1
  else
    dfx canister status "$1" --network "$environment" >/dev/null 2>&1
  fi
}

module_hash() { # <name or principal>: the module hash in lower-case hex, empty for an empty canister
  run canister status "$1" | sed -n -E 's/^ *Module hash: *(0x)?([0-9a-fA-F]{64}).*/\2/p' | tr 'A-F' 'a-f'
}

update() { # <name> <method> <candid args>
  run canister call "$1" "$2" "$3"
}

query() { # <name> <method> <candid args>
  run canister call --query "$1" "$2" "$3"
}

deploy() { # <name> [cycles]: creates the canister (with these cycles, if given) and installs it with `(null)`
  local cycles=()
  if [ $cli = icp ]; then
    [ -n "${2:-}" ] && cycles=(--cycles "$2")
    "$icp" deploy "$1" --yes --args '(null)' "${cycles[@]}" -e "$environment"
  else
    [ -n "${2:-}" ] && cycles=(--with-cycles "$2")
    dfx deploy "$1" --argument '(null)' "${cycles[@]}" --network "$environment"
  fi
}

# Upgrades a canister the careful way: stop (in-flight calls finish first), install in upgrade mode, start.
# The canister is started again whatever happened to the install.
upgrade_stopped() { # <name> <wasm>
  local status=0
  run canister stop "$1"
  if [ $cli = icp ]; then
    "$icp" canister install "$1" --mode upgrade --wasm "$2" --yes --args '(null)' -e "$environment" || status=$?
  else
    dfx canister install "$1" --mode upgrade --wasm "$2" --yes --argument '(null)' --network "$environment" || status=$?
  fi
  run canister start "$1"
  return $status
}

# `field = 12 : nat64` (or `field = opt (12 : nat64)`) in Candid text on stdin: prints 12 (empty if absent/null).
candid_number() { # <field>
  { grep -oE "(^|[ {;])$1 = (opt \()?[0-9_]+" || true; } | head -1 | sed -E 's/.*= (opt \()?//; s/_//g'
}

sha256_hex() { # <file>
  sha256sum "$1" | cut -d' ' -f1
}
