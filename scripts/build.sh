#!/usr/bin/env bash
# The one build of keyvault-agent and keyvault-emulator that every make target shares
# (issue 12 item 1): `make demo`, `make emulator`, the SDK suites, e2e and the manifests check
# take the debug binaries from here; images, `make bench` and `make fleet` the release ones.
#
#   scripts/build.sh debug   [cargo args...]   both binaries, dev profile
#   scripts/build.sh release [cargo args...]   static (+crt-static) release binaries for the host
#                                              triple: what the images ship and the benches time
#   scripts/build.sh --dir debug|release       only print the directory (no build)
#
# Prints the directory holding both binaries on stdout; cargo's progress goes to stderr.
# Honours CARGO and CARGO_TARGET_DIR.
#
# Why one script: cargo keys every compiled crate by its feature set. `cargo build -p
# keyvault-emulator` alone resolves other features than `cargo test --workspace` and compiles
# ~100 crates again. The debug build here names the whole workspace, and tokio's `test-util`
# is a normal feature (Cargo.toml), so `cargo test --workspace` reuses every dependency this
# build compiled; the release build is the images' build, so the benches time what ships.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO="${CARGO:-cargo}"

dir_only=0
if [ "${1:-}" = --dir ]; then dir_only=1; shift; fi
profile="${1:-debug}"
[ $# -gt 0 ] && shift
target_dir="$("$CARGO" metadata --format-version 1 --no-deps --locked |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
[ -n "$target_dir" ] || { echo "build: cargo metadata named no target directory" >&2; exit 1; }

triple="$(rustc -vV | sed -n 's/^host: //p')"
if [ "$dir_only" = 1 ]; then
    case "$profile" in
        debug) echo "$target_dir/debug" ;;
        release) echo "$target_dir/$triple/release" ;;
        *) echo "build: unknown profile \"$profile\": expected debug or release" >&2; exit 2 ;;
    esac
    exit 0
fi
case "$profile" in
    debug)
        "$CARGO" build --locked --workspace --bins "$@" >&2
        echo "$target_dir/debug"
        ;;
    release)
        # Naming --target keeps RUSTFLAGS off build scripts and proc-macros (they must stay
        # dynamic); the binaries link glibc statically, for the FROM-scratch images.
        RUSTFLAGS="-C target-feature=+crt-static" \
            "$CARGO" build --release --locked --target "$triple" --workspace --bins "$@" >&2
        echo "$target_dir/$triple/release"
        ;;
    *)
        echo "build: unknown profile \"$profile\": expected debug or release" >&2
        exit 2
        ;;
esac
