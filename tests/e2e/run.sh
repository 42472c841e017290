#!/usr/bin/env bash
# The end-to-end suite: images and pods (podman kube play), against the emulator on
# loopback. Called by `make e2e` / `make test`; expects `make deps` to have run (podman, venv).
#   tests/e2e/run.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/../.."
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/tests/e2e/containers.conf}"
venv="${E2E_VENV:-build/venv-e2e}"
bash scripts/venv.sh "$venv" tests/e2e/requirements.txt

# The emulator runs on the host (debug build); the pods use the images.
bash scripts/build.sh debug > /dev/null
bash scripts/build-images.sh "${IMAGE_TAG:-dev}"

export PATH="$PWD/$venv/bin:$PATH"
# compose.yaml runs per engine in `make compose-test ENGINE=...` (tests/e2e/compose-test.sh).
exec "$venv/bin/python" -m pytest -p no:cacheprovider -v tests/e2e --ignore tests/e2e/test_compose.py "$@"
