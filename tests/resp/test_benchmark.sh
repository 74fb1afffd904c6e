#!/usr/bin/env bash
# tests/resp/test_benchmark.sh - redis-benchmark -t set,get,incr,sadd
# against the gateway of a deploy/cluster.sh cluster completes, one request
# at a time per client and pipelined (-P 16), with no error replies. The
# figures are printed for the record; docs/redis.md has measured ones.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/resp/lib.sh
source "$here/lib.sh"

command -v redis-benchmark >/dev/null ||
    ts_skip "redis-benchmark is not installed (deploy/install-deps.sh installs redis-tools)"

rt_up --memory 2 --disk 1
errors0=$(rt_metric trellis_resp_errors_total)
for pipeline in 1 16; do
    n=$((pipeline == 1 ? 20000 : 100000))
    step "redis-benchmark -t set,get,incr,sadd -n $n -P $pipeline"
    out=$(timeout 150 redis-benchmark -p "$RT_PORT" -t set,get,incr,sadd -n "$n" \
        -P "$pipeline" --csv 2>"$TS_DIR/bench.err") || fail "redis-benchmark -P $pipeline failed"
    echo "$out"
    for t in SET GET INCR SADD; do
        grep -q "^\"$t\",\"[0-9.]*\"" <<<"$out" || fail "no $t result with -P $pipeline"
    done
    if grep -qi "error" "$TS_DIR/bench.err"; then
        cat "$TS_DIR/bench.err" >&2
        fail "redis-benchmark reported errors"
    fi
done
errors1=$(rt_metric trellis_resp_errors_total)
[ "$errors1" = "$errors0" ] || fail "the gateway answered $((errors1 - errors0)) errors"
out=$(timeout 10 redis-cli -p "$RT_PORT" SMEMBERS myset 2>&1)
[ "$out" = "element:__rand_int__" ] || fail "SMEMBERS myset after the benchmark: [$out]"
out=$(timeout 10 redis-cli -p "$RT_PORT" GET counter:__rand_int__ 2>&1)
[ "$out" -ge $((20000 + 100000)) ] 2>/dev/null || fail "the benchmark's counter: [$out]"
