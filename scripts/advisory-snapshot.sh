#!/usr/bin/env bash
# Packs the RustSec advisory database at a git checkout or bare git directory into the
# snapshot `make deny` reads (CONTRIBUTING.md, "Dependency policy"): the `crates/` advisories
# of HEAD and a SNAPSHOT file naming the commit and its date. Data only; nothing is built.
#   usage: scripts/advisory-snapshot.sh ADVISORY_DB_GIT_DIR OUT.tar.gz
set -euo pipefail
src=${1:?usage: $0 ADVISORY_DB_GIT_DIR OUT.tar.gz}
out=${2:?usage: $0 ADVISORY_DB_GIT_DIR OUT.tar.gz}
gitdir=$(git -C "$src" rev-parse --absolute-git-dir)
commit=$(git --git-dir="$gitdir" rev-parse HEAD)
date=$(git --git-dir="$gitdir" show -s --format=%cI "$commit")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git --git-dir="$gitdir" archive "$commit" crates | tar -x -C "$work"
[ -d "$work/crates" ] || { echo "advisory-snapshot: $src has no crates/ at $commit" >&2; exit 1; }
printf 'commit %s\ndate %s\nsource rustsec/advisory-db (crates/ only)\n' "$commit" "$date" >"$work/SNAPSHOT"
# Reproducible archive: sorted names, fixed owner and mtime (the commit date).
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="$date" -C "$work" -cf - SNAPSHOT crates \
    | gzip -n -9 >"$out"
echo "advisory-snapshot: $out: $(find "$work/crates" -name '*.md' | wc -l) advisories, commit $commit ($date), $(wc -c <"$out") bytes"
