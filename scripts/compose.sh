#!/usr/bin/env bash
# `make compose-up` / `make compose-down`: compose.yaml with podman-compose (default, from the
# pinned venv) or docker compose (COMPOSE="docker compose").
#
# podman-compose with podman 4.3 cannot start a service whose dependency has already exited
# (`--requires` on a stopped container), so with podman the services are started in dependency
# order here, each after the previous one is ready; docker compose follows depends_on itself.
#   scripts/compose.sh up|down|logs [SERVICE]
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CONTAINERS_CONF:=$PWD/tests/e2e/containers.conf}"
export CONTAINERS_CONF
venv="${E2E_VENV:-build/venv-e2e}"

if [ -n "${COMPOSE:-}" ]; then
    read -r -a compose <<< "$COMPOSE"
else
    bash scripts/venv.sh "$venv" tests/e2e/requirements.txt
    compose=("$venv/bin/podman-compose")
fi
project=keyvault-agent-dev
podman_mode=false
[[ "${compose[*]}" == *podman-compose* ]] && podman_mode=true

wait_for() { # what, seconds, command...
    local what="$1" secs="$2"
    shift 2
    for _ in $(seq $((secs * 5))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    echo "compose: timed out after ${secs}s waiting for $what" >&2
    return 1
}

case "${1:-}" in
up)
    if ! $podman_mode; then
        "${compose[@]}" up -d
    else
        "${compose[@]}" up -d --no-deps emulator
        wait_for "the emulator's ready line" 60 \
            bash -c "'${compose[*]}' logs emulator 2>/dev/null | grep -q '\"vault_url\"'" || {
            "${compose[@]}" logs emulator >&2; exit 1; }
        "${compose[@]}" up -d --no-deps agent-init
        code="$(timeout 180 podman wait "${project}_agent-init_1" || echo "no exit within 180s")"
        if [ "$code" != 0 ]; then
            echo "compose: agent-init exited with $code:" >&2
            podman logs "${project}_agent-init_1" >&2
            exit 1
        fi
        "${compose[@]}" up -d --no-deps agent app
    fi
    echo "compose: up; the app's log so far:" >&2
    "${compose[@]}" logs app >&2 || true
    ;;
down)
    "${compose[@]}" down -v -t 2
    ;;
logs)
    shift
    "${compose[@]}" logs "$@"
    ;;
*)
    echo "usage: scripts/compose.sh up|down|logs [SERVICE]" >&2
    exit 2
    ;;
esac
