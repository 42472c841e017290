#!/usr/bin/env bash
# Runs the Azure SDK conformance suite against a freshly built keyvault-emulator.
# Idempotent; works on a fresh machine: creates build/venv-sdk, installs the pinned
# requirements, builds the emulator, runs pytest and exits with pytest's status.
# Extra arguments go to pytest (e.g. `bash tests/sdk/run.sh -k secrets`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="$repo/build/venv-sdk"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    rm -rf "$venv"
    if ! "$python" -m venv "$venv" 2>/dev/null; then
        # Debian/Ubuntu ship venv's ensurepip separately.
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        fi
        rm -rf "$venv"
        "$python" -m venv "$venv"
    fi
fi
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    echo "$want" > "$stamp"
fi

# The shared debug build (scripts/build.sh): the same artefacts as `make demo` and `cargo test`.
bin="$(bash "$repo/scripts/build.sh" debug --quiet)"
export KEYVAULT_EMULATOR_BIN="${KEYVAULT_EMULATOR_BIN:-$bin/keyvault-emulator}"

cd "$here"
set +e
"$venv/bin/python" -m pytest -q "$@"
status=$?
set -e
exit "$status"
