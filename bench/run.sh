#!/usr/bin/env bash
# Sidecar figures against the bundled emulator (`make bench`):
#   - resident memory (VmRSS) of the agent after its first sync of 50 objects;
#   - CPU time (utime+stime) the agent uses during a 60 s idle window between refreshes.
# Targets: < 10 MiB RSS, < 20 ms CPU. Everything runs on loopback with port 0.
#
# Usage: bench/run.sh [--no-build] [--idle SECONDS]
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
  cargo build --release -p keyvault-agent -p keyvault-emulator --locked
fi

exec python3 bench/sidecar.py \
  --agent target/release/keyvault-agent \
  --emulator target/release/keyvault-emulator \
  "${args[@]+"${args[@]}"}"
