#!/usr/bin/env bash
# Builds the three images without pulling anything: static release binaries of keyvault-agent and
# keyvault-emulator on the host (glibc, +crt-static), staged with what each image needs under
# build/image/<name>, then `podman build` of the *.prebuilt Containerfiles (FROM scratch).
#
# Usage: scripts/build-images.sh [TAG]      (default TAG: dev; images are localhost/<name>:TAG)
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-${IMAGE_TAG:-dev}}"
: "${CONTAINERS_CONF:=$PWD/tests/e2e/containers.conf}"
export CONTAINERS_CONF

triple="$(rustc -vV | sed -n 's/^host: //p')"
echo "build-images: static release binaries for $triple" >&2
# Naming --target keeps RUSTFLAGS off build scripts and proc-macros (they must stay dynamic).
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target "$triple" -p keyvault-agent -p keyvault-emulator
bin="target/$triple/release"
for b in keyvault-agent keyvault-emulator; do
    desc="$(file -b "$bin/$b")"
    case "$desc" in
        *"static-pie linked"* | *"statically linked"*) ;;
        *) echo "build-images: $bin/$b is not statically linked ($desc)" >&2; exit 1 ;;
    esac
done

ca=/etc/ssl/certs/ca-certificates.crt
[ -s "$ca" ] || { echo "build-images: $ca missing: apt-get install ca-certificates" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "build-images: /bin/busybox missing: apt-get install busybox-static" >&2; exit 1; }
case "$(file -b /bin/busybox)" in
    *static*) ;;
    *) echo "build-images: /bin/busybox is not static: apt-get install busybox-static" >&2; exit 1 ;;
esac

stage=build/image
rm -rf "$stage"
mkdir -p "$stage/agent" "$stage/emulator" "$stage/demo"
install -m 0755 "$bin/keyvault-agent" "$stage/agent/keyvault-agent"
install -m 0644 "$ca" "$stage/agent/ca-certificates.crt"
install -m 0755 "$bin/keyvault-emulator" "$stage/emulator/keyvault-emulator"
install -m 0644 "${SEED:-emulator/examples/seed.yaml}" "$stage/emulator/seed.yaml"
install -m 0755 /bin/busybox "$stage/demo/busybox"
install -m 0755 demo/demo-app "$stage/demo/demo-app"

podman build --quiet -t "localhost/keyvault-agent:$tag" -f Containerfile.prebuilt "$stage/agent"
podman build --quiet -t "localhost/keyvault-emulator:$tag" -f emulator/Containerfile.prebuilt "$stage/emulator"
podman build --quiet -t "localhost/keyvault-demo-app:$tag" -f demo/Containerfile "$stage/demo"
podman image ls --filter "reference=localhost/keyvault-*:$tag" \
    --format '{{.Repository}}:{{.Tag}} {{.Size}}' >&2
