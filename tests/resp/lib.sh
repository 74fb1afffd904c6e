# shellcheck shell=bash
# tests/resp/lib.sh - sourced by the Redis gateway's tests: a local cluster
# started with deploy/cluster.sh in a temporary TRELLIS_HOME, on a port base
# derived from the test's pid (the next base when a port is taken), stopped
# however the test ends: by the EXIT trap, or by a watchdog in its own
# session when the test is killed.
#
#   rt_up [UP-ARGS...]   start (cluster.sh up ARGS); sets RT_PORT (the
#                        gateway's port, from the 'resp HOST:PORT' line),
#                        RT_ROUTER (router URL), RT_METRICS (router 0's
#                        metrics port)
#   rt_metric NAME       a metric of router 0 (0 when absent)
#   rt_route_pid         router 0's pid
#   fail MSG             count a failure and say so
#   rt_finish            summary line; exit status 1 after failures
#
# Needs TRELLIS_BIN (the built binaries) and TRELLIS_SRC (the source tree).

RT_SRC=${TRELLIS_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export TRELLIS_BIN=${TRELLIS_BIN:-$RT_SRC/build/bin}
RT_CS=$RT_SRC/deploy/cluster.sh
RT_TMP=$(mktemp -d "${TMPDIR:-/tmp}/trellis-resp.XXXXXX")
export TRELLIS_HOME=$RT_TMP/home
RT_NAME=$(basename "$0" .sh)
RT_START=$SECONDS
RT_FAILURES=0
RT_PORT=
RT_ROUTER=
RT_METRICS=
RT_WATCHDOG=

fail() {
    echo "FAIL: $*" >&2
    RT_FAILURES=$((RT_FAILURES + 1))
}

step() {
    echo "== [$((SECONDS - RT_START)) s] $*"
}

rt_cleanup() {
    local rc=$?
    if [ -d "$TRELLIS_HOME" ]; then
        if [ $rc -ne 0 ] || [ "$RT_FAILURES" -ne 0 ]; then
            echo "---- logs ($TRELLIS_HOME/logs) ----" >&2
            tail -n 25 "$TRELLIS_HOME"/logs/*.log >&2 2>/dev/null || true
        fi
        TRELLIS_STOP_TIMEOUT=10 "$RT_CS" down >/dev/null 2>&1 || true
        local pid
        for pid in $(pgrep -f -- "$TRELLIS_HOME/" 2>/dev/null || true); do
            echo "leftover process $pid" >&2
            kill -KILL "$pid" 2>/dev/null || true
        done
    fi
    if [ -n "$RT_WATCHDOG" ]; then kill "$RT_WATCHDOG" 2>/dev/null || true; fi
    rm -rf "$RT_TMP"
    exit $rc
}
trap rt_cleanup EXIT

# The watchdog: when this shell is gone (killed at a timeout), stop the cluster.
rt_watchdog() {
    # shellcheck disable=SC2016 # expanded by the inner shell
    setsid bash -c '
        while kill -0 "$1" 2>/dev/null; do sleep 1; done
        if [ -d "$2" ]; then
            TRELLIS_HOME=$2 TRELLIS_STOP_TIMEOUT=5 "$3" down >/dev/null 2>&1
            pkill -KILL -f -- "$2/" 2>/dev/null
            rm -rf "$4"
        fi' _ $$ "$TRELLIS_HOME" "$RT_CS" "$RT_TMP" </dev/null >/dev/null 2>&1 &
    RT_WATCHDOG=$!
}

rt_up() {
    local attempt out rc
    [ -x "$TRELLIS_BIN/trellis-route" ] || {
        echo "no trellis-route in $TRELLIS_BIN" >&2
        exit 1
    }
    rt_watchdog
    for attempt in 0 1 2 3 4 5; do
        # Bases 20000..30000: apart from the client tests' 14000-19999 and
        # below the kernel's ephemeral ports.
        export TRELLIS_PORT_BASE=$((20000 + (($$ + 3 * attempt) % 11) * 1000))
        rc=0
        out=$("$RT_CS" up "$@" 2>"$RT_TMP/up.err") || rc=$?
        if [ $rc -eq 0 ]; then
            RT_ROUTER=$(sed -n 's/^router //p' <<<"$out")
            RT_PORT=$(sed -n 's/^resp 127\.0\.0\.1:\([0-9]*\)$/\1/p' <<<"$out")
            RT_METRICS=$((TRELLIS_PORT_BASE + 30))
            if [ -z "$RT_PORT" ]; then
                echo "cluster.sh up printed no 'resp HOST:PORT' line:" >&2
                echo "$out" >&2
                exit 1
            fi
            step "cluster up: router $RT_ROUTER, gateway port $RT_PORT"
            return 0
        fi
        # A port taken by another test, before or while starting: next base.
        if grep -qE "already in use|exited while starting" "$RT_TMP/up.err"; then
            "$RT_CS" down >/dev/null 2>&1 || true
            continue
        fi
        cat "$RT_TMP/up.err" >&2
        exit 1
    done
    echo "no free port base found" >&2
    exit 1
}

rt_metric() {
    curl -s -m 5 "http://127.0.0.1:$RT_METRICS/metrics" 2>/dev/null |
        awk -v m="$1" '$1 == m { print $2; found = 1 } END { if (!found) print 0 }'
}

rt_route_pid() {
    sed -n 's/^pid=//p' "$TRELLIS_HOME/run/r$TRELLIS_PORT_BASE"
}

rt_finish() {
    echo "$RT_NAME: $RT_FAILURES failures in $((SECONDS - RT_START)) s"
    [ "$RT_FAILURES" -eq 0 ]
}
