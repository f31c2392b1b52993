#!/usr/bin/env bash
# A local IC network (tests/network) in the background, for icp-cli, dfx and ic-agent:
#   scripts/network.sh start [--port PORT]   builds it if needed, starts it, waits until /api/v2/status answers,
#                                            prints its URL and root key and writes them into icp.yaml's `local`
#   scripts/network.sh stop                  ends the process that `start` began (its pid file)
#   scripts/network.sh status                says whether it runs, and where
# The state folder (default .network/, or $NETWORK_DIR) keeps the root key (made once, so icp.yaml stays valid
# across restarts), the pid file, url, root_key and the log. Canisters live in memory: a restart starts empty,
# so `start` forgets icp-cli's canister ids of the `local` environment (.icp/data/mappings/local.ids.json).
# NETWORK_BIN names an already built `network` binary to run instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."

state=${NETWORK_DIR:-.network}
port=4943
pid_file=$state/pid

usage() {
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

command=${1:-}
[ $# -gt 0 ] && shift
while [ $# -gt 0 ]; do
  case $1 in
    --port) port=$2; shift 2 ;;
    -h | --help) usage ;;
    *) echo "network.sh: unknown option $1" >&2; usage 2 ;;
  esac
done

running_pid() {
  [ -f "$pid_file" ] || return 1
  local pid
  pid=$(cat "$pid_file")
  # The process must still be ours: a pid file left behind may name a reused pid.
  if [ "$(ps -p "$pid" -o comm= 2>/dev/null)" = network ]; then echo "$pid"; else return 1; fi
}

# Writes the network's URL and root key into icp.yaml's `local` network (the lines after `- name: local`).
fill_icp_yaml() {
  local url=$1 key=$2
  sed -i -E "/^  - name: local\$/,/^  - /{s|^(    api-url: ).*|\\1$url|; s|^(    root-key: ).*|\\1$key|}" icp.yaml
  grep -q "root-key: $key" icp.yaml || { echo "network.sh: could not write the root key into icp.yaml" >&2; exit 1; }
}

case $command in
  start)
    if pid=$(running_pid); then
      echo "The local network already runs (pid $pid) on $(cat "$state/url")."
      exit 0
    fi
    bin=${NETWORK_BIN:-}
    if [ -z "$bin" ]; then
      cargo build --quiet --locked -p network --bin network
      bin=${CARGO_TARGET_DIR:-$PWD/target}/debug/network
    fi
    mkdir -p "$state"
    rm -f "$state/url" "$state/root_key" .icp/data/mappings/local.ids.json
    "$bin" --state-dir "$state" --port "$port" >"$state/network.log" 2>&1 &
    echo $! >"$pid_file"
    url=http://127.0.0.1:$port
    for _ in $(seq 100); do
      if curl -sf -o /dev/null "$url/api/v2/status"; then
        key=$(cat "$state/root_key")
        fill_icp_yaml "$url" "$key"
        echo "Local IC network on $url (pid $(cat "$pid_file"), state in $state/)"
        echo "Root key: $key"
        exit 0
      fi
      if ! running_pid >/dev/null; then
        echo "network.sh: the network exited; its log ($state/network.log):" >&2
        cat "$state/network.log" >&2
        rm -f "$pid_file"
        exit 1
      fi
      sleep 0.1
    done
    echo "network.sh: no answer from $url/api/v2/status after 10 s (log: $state/network.log)" >&2
    exit 1
    ;;
  stop)
    if ! pid=$(running_pid); then
      echo "The local network is not running."
      rm -f "$pid_file"
      exit 0
    fi
    kill "$pid"
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    rm -f "$pid_file"
    echo "Stopped the local network (pid $pid)."
    ;;
  status)
    if pid=$(running_pid); then
      echo "The local network runs (pid $pid) on $(cat "$state/url")."
    else
      echo "The local network is not running."
      exit 1
    fi
    ;;
  *) usage 2 ;;
esac
