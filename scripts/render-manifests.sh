#!/usr/bin/env bash
# Renders every overlay under manifests/overlays with kustomize into OUT/<overlay>.yaml.
# Usage: scripts/render-manifests.sh OUT
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-build/manifests}"
mkdir -p "$out"
rm -f "$out"/*.yaml
if command -v kubectl >/dev/null; then
    kustomize=(kubectl kustomize)
else
    kustomize=(kustomize build)
fi
for overlay in manifests/overlays/*/; do
    name="$(basename "$overlay")"
    "${kustomize[@]}" "$overlay" > "$out/$name.yaml"
    echo "render-manifests: $out/$name.yaml" >&2
done
