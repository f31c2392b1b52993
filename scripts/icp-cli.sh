# Sourced by the scripts that run icp-cli. Keeps it offline and quiet (no telemetry, no update check).
#   pinned_icp: sets $icp to icp-cli 1.5.0, the Linux binary of the npm package below, installed once into a cache
#               directory (what CI uses); fails if it is missing and npm is not there to install it.
#   any_icp:    sets $icp to $ICP if set, else the `icp` on PATH, else the pinned one.
export DO_NOT_TRACK=1

pinned_icp() {
  local version=1.5.0
  local cache=${XDG_CACHE_HOME:-$HOME/.cache}/canister-fleet/icp-cli-$version
  icp=$cache/node_modules/@icp-sdk/icp-cli-linux-x64/bin/icp
  [ -x "$icp" ] && return 0
  command -v npm >/dev/null || return 1
  echo "Installing @icp-sdk/icp-cli-linux-x64@$version from npm into $cache..." >&2
  mkdir -p "$cache"
  npm install --prefix "$cache" --no-save --no-audit --no-fund --loglevel=error \
    "@icp-sdk/icp-cli-linux-x64@$version" >&2
}

any_icp() {
  if [ -n "${ICP:-}" ]; then
    icp=$ICP
  elif command -v icp >/dev/null; then
    icp=$(command -v icp)
  else
    pinned_icp
  fi
}
