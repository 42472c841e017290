#!/usr/bin/env bash
# `make compose-up` / `make compose-down` / `make compose-test`: compose.yaml with either engine.
#
#   [ENGINE=podman|docker] [COMPOSE="..."] scripts/compose.sh up|down|logs [SERVICE]|container SERVICE
#
# ENGINE=podman (default): podman-compose from the pinned venv. podman-compose with podman 4.3
# neither waits on health checks nor starts a service whose dependency has exited, so the
# services are started here in dependency order, each once the previous one is ready: the
# emulator once it printed its ready line, the app once `podman healthcheck run` passes on the
# sidecar (the same `keyvault-agent probe` Docker runs).
# ENGINE=docker: Compose v2 (`docker compose`, see scripts/docker-engine.sh for where it comes
# from), which follows depends_on and the sidecar's health check itself; DOCKER_HOST must reach
# a daemon (`make compose-up ENGINE=docker` starts one). COMPOSE overrides the command, e.g.
# COMPOSE=docker-compose for Debian's 1.29, which also honours `condition: service_healthy`.
#
# The project is always `keyvault-agent-dev` (-p): compose.yaml has no top-level `name:`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh # wait_until
: "${CONTAINERS_CONF:=$PWD/tests/e2e/containers.conf}"
export CONTAINERS_CONF
engine="${ENGINE:-podman}"
project="${COMPOSE_PROJECT:-keyvault-agent-dev}"

case "$engine" in
podman)
    if [ -n "${COMPOSE:-}" ]; then
        read -r -a compose <<< "$COMPOSE"
    else
        venv="${E2E_VENV:-build/venv-e2e}"
        bash scripts/venv.sh "$venv" tests/e2e/requirements.txt
        compose=("$venv/bin/podman-compose")
    fi
    ;;
docker)
    read -r -a compose <<< "${COMPOSE:-docker compose}"
    ;;
*)
    echo "compose: ENGINE=$engine: expected podman or docker" >&2
    exit 2
    ;;
esac
compose+=(-p "$project" -f compose.yaml)

# The container of SERVICE in this project (by the labels every compose implementation sets).
container() {
    "$engine" ps -a --filter "label=com.docker.compose.project=$project" \
        --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -n 1
}

case "${1:-}" in
up)
    if [ "$engine" = docker ]; then
        # Returns once the app is started, which is after the sidecar reported healthy.
        if ! "${compose[@]}" up -d; then
            echo "compose: up failed; the sidecar's log:" >&2
            "${compose[@]}" logs agent >&2 || true
            exit 1
        fi
    else
        "${compose[@]}" up -d --no-deps emulator
        wait_until 60 "the emulator's ready line" \
            bash -c "'$engine' logs '$(container emulator)' 2>/dev/null | grep -q '\"vault_url\"'" || {
            "${compose[@]}" logs emulator >&2; exit 1; }
        # Without systemd, podman logs "unable to get systemd connection to add healthchecks"
        # (it cannot schedule the check) and carries on; the check itself runs below.
        "${compose[@]}" up -d --no-deps agent
        agent="$(container agent)"
        wait_until 180 "the sidecar's first sync (podman healthcheck run $agent)" \
            podman healthcheck run "$agent" || {
            echo "compose: the sidecar's log:" >&2
            podman logs "$agent" >&2
            exit 1
        }
        "${compose[@]}" up -d --no-deps app
    fi
    echo "compose: up; the app's log so far:" >&2
    "$engine" logs "$(container app)" >&2 || true
    ;;
down)
    "${compose[@]}" down -v -t 2
    ;;
logs)
    shift
    "${compose[@]}" logs "$@"
    ;;
container)
    container "$2"
    ;;
*)
    echo "usage: scripts/compose.sh up|down|logs [SERVICE]|container SERVICE" >&2
    exit 2
    ;;
esac
