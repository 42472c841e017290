#!/usr/bin/env bash
# Creates (or reuses) a Python venv with exactly the pinned requirements.
# Usage: scripts/venv.sh DIR REQUIREMENTS.txt
# The venv is rebuilt only when the requirements file changed (its sha256 is stamped in DIR).
set -euo pipefail
dir="$1"
req="$2"
python="${PYTHON:-python3}"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.requirements.sha256" 2>/dev/null)" = "$want" ]; then
    exit 0
fi
echo "venv: creating $dir from $req" >&2
rm -rf "$dir"
"$python" -m venv "$dir"
"$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$req"
echo "$want" > "$dir/.requirements.sha256"
