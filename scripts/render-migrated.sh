#!/usr/bin/env bash
# Runs `keyvault-agent migrate` on every fixture of agent/tests/fixtures/migrate (the reference
# repositories' example manifests, placeholders filled from substitutions.env) in each --mode,
# into OUT/<fixture>.<mode>.yaml, for `make validate-manifests` to check against the schemas.
# Usage: scripts/render-migrated.sh OUT
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-build/manifests-migrated}"
fixtures=agent/tests/fixtures/migrate
bin="${KEYVAULT_AGENT_BIN:-$(bash scripts/build.sh debug --quiet)/keyvault-agent}"
mkdir -p "$out"
rm -f "$out"/*.yaml
# $NAME and ${NAME} -> value, as envsubst does in the reference repositories' test runs.
sed_args=()
while IFS='=' read -r name value; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    sed_args+=(-e "s|\\\$\\{$name\\}|$value|g" -e "s|\\\$$name\\b|$value|g")
done < "$fixtures/substitutions.env"
for f in "$fixtures"/*.yaml; do
    name="$(basename "$f" .yaml)"
    for mode in init native-sidecar sidecar; do
        sed -E "${sed_args[@]}" "$f" |
            "$bin" migrate --mode "$mode" - > "$out/$name.$mode.yaml" 2>/dev/null
    done
    echo "render-migrated: $out/$name.{init,native-sidecar,sidecar}.yaml" >&2
done
