#!/usr/bin/env bash
# Builds the three images without pulling anything: static release binaries of keyvault-agent and
# keyvault-emulator on the host (glibc, +crt-static), staged with what each image needs under
# build/image/<name>, then `podman build` or `docker build` of the *.prebuilt Containerfiles
# (FROM scratch: no base image is pulled by either engine).
#
# Usage: [ENGINE=podman|docker] scripts/build-images.sh [TAG]
#   TAG defaults to $IMAGE_TAG, else dev; images are localhost/<name>:TAG.
#   ENGINE defaults to podman. With docker, DOCKER_HOST must reach a daemon (make image
#   ENGINE=docker starts one: scripts/docker-engine.sh).
#   The binaries come from scripts/build.sh release ($CARGO_TARGET_DIR honoured): the same
#   artefacts `make bench` and `make fleet` measure.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-${IMAGE_TAG:-dev}}"
engine="${ENGINE:-podman}"
case "$engine" in
    podman | docker) ;;
    *) echo "build-images: ENGINE=$engine: expected podman or docker" >&2; exit 2 ;;
esac
: "${CONTAINERS_CONF:=$PWD/tests/e2e/containers.conf}"
export CONTAINERS_CONF

echo "build-images: static release binaries (scripts/build.sh release)" >&2
bin="$(bash scripts/build.sh release)"
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

if [ "$engine" = docker ] && ! docker buildx version >/dev/null 2>&1; then
    # Debian's docker.io has no buildx: the classic builder (it runs the demo image's RUN
    # with the image's own busybox); it prints a deprecation notice per image.
    export DOCKER_BUILDKIT=0
fi
echo "build-images: $engine build of localhost/keyvault-{agent,emulator,demo-app}:$tag" >&2
build() { # tag containerfile context
    "$engine" build --quiet -t "$1" -f "$2" "$3"
}
build "localhost/keyvault-agent:$tag" Containerfile.prebuilt "$stage/agent"
build "localhost/keyvault-emulator:$tag" emulator/Containerfile.prebuilt "$stage/emulator"
build "localhost/keyvault-demo-app:$tag" demo/Containerfile "$stage/demo"
"$engine" image ls --filter "reference=localhost/keyvault-*:$tag" \
    --format '{{.Repository}}:{{.Tag}} {{.Size}}' >&2
