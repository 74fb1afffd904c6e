# shellcheck shell=bash
# tests/resp/lib.sh - sourced by the Redis gateway's tests:
# tests/support/lib.sh (the test's directory TS_DIR, failures, the clean
# stop and log scan at exit) and a local cluster of deploy/cluster.sh.
#
#   rt_up [UP-ARGS...]   start it (ts_cs_up); sets RT_PORT (the gateway's
#                        port, from the 'resp HOST:PORT' line), RT_CLUSTER
#                        (a shard's Redis Cluster port, from the 'cluster
#                        HOST:PORT' line; empty without one), RT_ROUTER
#                        (router URL), RT_METRICS (router 0's metrics port)
#   rt_metric NAME       a metric of router 0 (0 when absent)
#   rt_route_pid         router 0's pid

# shellcheck source=tests/support/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/lib.sh"
RT_PORT=
RT_CLUSTER=
RT_ROUTER=
RT_METRICS=

rt_up() {
    [ -x "$TRELLIS_BIN/trellis-route" ] || die "no trellis-route in $TRELLIS_BIN"
    ts_cs_up "$@"
    RT_ROUTER=$(sed -n 's/^router //p' <<<"$TS_CS_OUT")
    RT_PORT=$(sed -n 's/^resp 127\.0\.0\.1:\([0-9]*\)$/\1/p' <<<"$TS_CS_OUT")
    # shellcheck disable=SC2034 # for the tests that source this file
    RT_CLUSTER=$(sed -n 's/^cluster 127\.0\.0\.1:\([0-9]*\)$/\1/p' <<<"$TS_CS_OUT")
    RT_METRICS=$((TRELLIS_PORT_BASE + 30))
    [ -n "$RT_PORT" ] || die "cluster.sh up printed no 'resp HOST:PORT' line: $TS_CS_OUT"
    step "cluster up: router $RT_ROUTER, gateway port $RT_PORT"
}

rt_metric() {
    curl -s -m 5 "http://127.0.0.1:$RT_METRICS/metrics" 2>/dev/null |
        awk -v m="$1" '$1 == m { print $2; found = 1 } END { if (!found) print 0 }'
}

rt_route_pid() {
    sed -n 's/^pid=//p' "$TRELLIS_HOME/run/r$TRELLIS_PORT_BASE"
}
