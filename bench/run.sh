#!/usr/bin/env bash
# Sidecar figures against the bundled emulator (`make bench`):
#   - resident memory (VmRSS) of the agent after its first sync of 50 objects;
#   - CPU time (utime+stime) the agent uses during a 60 s idle window between refreshes;
#   - the writer's publish path (agent/examples/publish_bench.rs): 1,000 and 5,000 files on a
#     disk-backed dir (PUBLISH_BENCH_DIR, default /var/tmp) and on tmpfs (/dev/shm), an
#     unchanged refresh of 2,000 files, and one changed file in 2,000;
#   - requests per unchanged refresh, get against list detection, for N in {50, 500, 2,000}
#     latest secrets in a vault of 3N (agent/examples/request_budget.rs);
#   - peak RSS of the agent at 5,000 secrets, --once and sidecar, allocator defaults and
#     MALLOC_ARENA_MAX=2 (bench/rss.py; the emulator runs with --throttle off).
# Targets: < 10 MiB RSS, < 20 ms CPU; disk within 1.5x of tmpfs at 1,000 files; one changed
# object rewrites one file. Everything runs on loopback with port 0.
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
  bash scripts/build.sh release --example publish_bench --example request_budget > /dev/null
fi
# The images' release build (scripts/build.sh): the figures are those of what ships.
bin="$(bash scripts/build.sh --dir release)"

echo "== publish path (agent/examples/publish_bench.rs)"
timeout 300 "$bin"/examples/publish_bench "${PUBLISH_BENCH_DIR:-/var/tmp}"
echo
echo "== requests per unchanged refresh (agent/examples/request_budget.rs)"
timeout 240 "$bin"/examples/request_budget 50 500 2000
echo
echo "== peak RSS at 5,000 objects (bench/rss.py)"
rss=0
timeout 300 python3 bench/rss.py \
  --agent "$bin"/keyvault-agent \
  --emulator "$bin"/keyvault-emulator || rss=$?
echo
echo "== sidecar idle figures (bench/sidecar.py)"
side=0

python3 bench/sidecar.py \
  --agent "$bin"/keyvault-agent \
  --emulator "$bin"/keyvault-emulator \
  "${args[@]+"${args[@]}"}" || side=$?
# A missed target fails the run, after every figure is printed.
exit $(( rss != 0 || side != 0 ))
