#!/usr/bin/env bash
# Runs the Azure SDK for JavaScript conformance suite against a freshly built keyvault-emulator.
# Idempotent; works on a fresh machine with Node >= 20 and npm: installs the locked
# dependencies with `npm ci` (again only when package-lock.json changes), builds the emulator,
# then `node run.mjs` starts it and runs `node --test`. Exits with the test run's status.
# Extra arguments go to `node --test` (e.g. `bash tests/sdk-node/run.sh --test-name-pattern=pfx`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

command -v node >/dev/null || { echo "sdk-node: node is not installed (Node >= 20 is needed)" >&2; exit 2; }
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 20 ]; then
    echo "sdk-node: node $(node --version) is too old; install Node >= 20" >&2
    exit 2
fi

stamp="$here/node_modules/.package-lock.sha256"
want="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" > "$stamp"
fi

# The shared debug build (scripts/build.sh): the same artefacts as `make demo` and `cargo test`.
bin="$(bash "$repo/scripts/build.sh" debug --quiet)"
export KEYVAULT_EMULATOR_BIN="${KEYVAULT_EMULATOR_BIN:-$bin/keyvault-emulator}"

cd "$here"
exec node run.mjs "$@"
