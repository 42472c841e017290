#!/usr/bin/env bash
# `make compose-test ENGINE=podman|docker`: compose.yaml end to end with one engine, from a clean
# state: the images (scripts/build-images.sh, from the release artefacts in $CARGO_TARGET_DIR),
# then tests/e2e/test_compose.py (compose down, up, the app's first listing has every secret, a
# rotation through the emulator's admin API reaches the app via the sidecar, down).
# With ENGINE=docker it starts a private dockerd when no daemon answers and stops it (by PID) on
# exit: scripts/docker-engine.sh.
#   tests/e2e/compose-test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/../.."
export ENGINE="${ENGINE:-podman}"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/tests/e2e/containers.conf}"
venv="${E2E_VENV:-build/venv-e2e}"
start=$SECONDS
bash scripts/venv.sh "$venv" tests/e2e/requirements.txt

case "$ENGINE" in
docker)
    trap 'bash scripts/docker-engine.sh stop' EXIT
    eval "$(bash scripts/docker-engine.sh start)"
    read -r -a compose <<< "${COMPOSE:-docker compose}"
    echo "compose-test: Docker $(docker version --format '{{.Server.Version}}'), ${compose[*]} $("${compose[@]}" version --short)" >&2
    ;;
podman) echo "compose-test: $(podman --version)" >&2 ;;
*) echo "compose-test: ENGINE=$ENGINE: expected podman or docker" >&2; exit 2 ;;
esac

bash scripts/build-images.sh "${IMAGE_TAG:-dev}"
echo "compose-test: engine and images ready after $((SECONDS - start))s" >&2
export PATH="$PWD/$venv/bin:$PATH"
"$venv/bin/python" -m pytest -p no:cacheprovider -v tests/e2e/test_compose.py "$@"
echo "compose-test: ENGINE=$ENGINE passed in $((SECONDS - start))s" >&2
