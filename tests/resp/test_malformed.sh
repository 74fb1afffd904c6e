#!/usr/bin/env bash
# tests/resp/test_malformed.sh - malformed RESP against the gateway of a
# deploy/cluster.sh cluster (test_malformed.py): error replies or closed
# connections, the gateway alive, its memory bounded, the protocol errors
# counted in /metrics.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/resp/lib.sh
source "$here/lib.sh"

py=/usr/bin/python3
[ -x "$py" ] || py=python3

rt_up --memory 1 --disk 0
seed=${TRELLIS_SEED:-$$}
step "malformed input (TRELLIS_SEED=$seed repeats it)"
timeout 240 "$py" "$here/test_malformed.py" "$RT_PORT" "$(rt_route_pid)" "$seed" ||
    fail "test_malformed.py (seed $seed)"
errors=$(rt_metric trellis_resp_protocol_errors_total)
[ "$errors" -ge 16 ] 2>/dev/null || fail "trellis_resp_protocol_errors_total is [$errors]"
out=$(timeout 10 redis-cli -p "$RT_PORT" SET after-fuzz ok 2>&1)
[ "$out" = OK ] || fail "SET after the malformed input: [$out]"

# The same on a shard's Redis Cluster port (kvs/dp_resp.c), watching its
# node's memory.
[ -n "$RT_CLUSTER" ] || die "cluster.sh up printed no 'cluster HOST:PORT' line: $TS_CS_OUT"
kvs_pid=$(sed -n 's/^pid=//p' "$TRELLIS_HOME"/run/m*)
for _ in $(seq 1 100); do
    [[ $(timeout 5 redis-cli -p "$RT_CLUSTER" CLUSTER INFO 2>&1) == *cluster_state:ok* ]] && break
    sleep 0.1
done
step "malformed input on shard port $RT_CLUSTER (TRELLIS_SEED=$seed repeats it)"
timeout 240 "$py" "$here/test_malformed.py" "$RT_CLUSTER" "$kvs_pid" "$seed" cluster ||
    fail "test_malformed.py on a shard port (seed $seed)"
out=$(timeout 10 redis-cli -c -p "$RT_CLUSTER" SET after-fuzz ok 2>&1)
[ "$out" = OK ] || fail "SET on a shard after the malformed input: [$out]"
