# Shell helpers shared by the scripts (sourced: `. scripts/lib.sh`), so that each is written once.

# wait_until SECONDS WHAT COMMAND...: runs COMMAND (output discarded) every 0.2 s until it
# succeeds; after SECONDS, says on stderr what it waited for, prefixed with the calling
# script's name, and returns 1.
wait_until() {
    local secs="$1" what="$2" me="${0##*/}"
    shift 2
    for _ in $(seq $((secs * 5))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    echo "${me%.sh}: timed out after ${secs}s waiting for $what" >&2
    return 1
}
