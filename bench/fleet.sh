#!/usr/bin/env bash
# Fleet simulation (`make fleet`): K sidecars against one throttling emulator, with and without
# list-based change detection. See bench/fleet.py for what is measured, bench/README.md for
# figures. Everything runs on loopback with port 0 and stops by itself.
#
# Usage: bench/fleet.sh [--no-build] [fleet.py options: --agents K --objects N --interval S ...]
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    *) args+=("$1") ;;
  esac
  shift
done

if [ "$build" = 1 ]; then
  bash scripts/build.sh release > /dev/null
fi
# The images' release build (scripts/build.sh): the figures are those of what ships.
bin="$(bash scripts/build.sh --dir release)"

# Each agent holds a few descriptors; 200 of them and the emulator's connections need more
# than the common soft limit of 1024 in this shell.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

exec python3 bench/fleet.py \
  --agent "$bin/keyvault-agent" \
  --emulator "$bin/keyvault-emulator" \
  "${args[@]+"${args[@]}"}"
