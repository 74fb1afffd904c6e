#!/usr/bin/env bash
# tests/resp/bench_compare.sh - redis-benchmark against the trellis gateway
# and against redis-server in the same run, for docs/redis.md. Not part of
# the test suite (it takes minutes and measures the machine as much as the
# code).
#
#   tests/resp/bench_compare.sh [RUNS] [REQUESTS]     (default 3 and 100000)
#
# Both servers get CPU 0 (taskset), redis-benchmark CPU 1 (set
# BENCH_SERVER_CPUS and BENCH_CLIENT_CPUS, taskset lists, to place them
# otherwise, e.g. both 0,1 for no pinning); the trellis
# cluster is deploy/cluster.sh's default (1 router with the gateway, 2
# memory nodes, 1 disk node, 2 shard threads each); redis-server runs
# without persistence. Each workload runs RUNS times, alternating the two
# servers; the table shows the medians (requests per second, and p50
# latency in ms).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
runs=${1:-3}
n=${2:-100000}
# shellcheck source=tests/resp/lib.sh
source "$here/lib.sh"
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    echo "needs redis-server and redis-benchmark (redis-server, redis-tools)" >&2
    exit 1
fi
server_cpu=${BENCH_SERVER_CPUS:-0}
client_cpu=${BENCH_CLIENT_CPUS:-1}
[ "$(nproc)" -ge 2 ] || client_cpu=0
echo "placement: servers on CPUs $server_cpu, redis-benchmark on CPUs $client_cpu ($(nproc) CPUs)"

# The cluster, pinned to the server CPU (its processes inherit the mask).
TS_CS_PREFIX=(taskset -c "$server_cpu")
rt_up --routers 1 --memory 2 --disk 1
redis_port=$((TRELLIS_PORT_BASE + 990)) # of the cluster's range, which it does not use
ts_spawn redis taskset -c "$server_cpu" redis-server --port "$redis_port" --save "" \
    --appendonly no --daemonize no --logfile "$TS_DIR/redis.log"
for _ in $(seq 50); do
    if redis-cli -p "$redis_port" PING >/dev/null 2>&1; then break; fi
    sleep 0.1
done
redis-cli -p "$redis_port" PING >/dev/null 2>&1 || {
    echo "redis-server did not start on port $redis_port" >&2
    exit 1
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# bench NAME PORT ARGS...: appends "NAME TEST rps p50" lines to $TS_DIR/results.
bench() {
    local name=$1 port=$2
    shift 2
    if ! taskset -c "$client_cpu" redis-benchmark -p "$port" -n "$n" --csv "$@" \
        2>"$TS_DIR/bench.err" >"$TS_DIR/bench.out"; then
        echo "redis-benchmark against $name failed: $(tail -n 3 "$TS_DIR/bench.err")" >&2
    fi
    awk -F'"' -v name="$name" 'NR > 1 { print name, $2, $4, $10 }' "$TS_DIR/bench.out" \
        >>"$TS_DIR/results"
}

workloads=("-t set,get,incr,sadd" "-t set,get,incr,sadd -P 16"
    "-t set,get,incr -r 100000 -d 100" "-t set,get,incr -r 100000 -d 100 -P 16")
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for w in "${workloads[@]}"; do
    : >"$TS_DIR/results"
    for ((i = 0; i < runs; i++)); do
        # shellcheck disable=SC2086
        bench redis "$redis_port" $w
        # shellcheck disable=SC2086
        bench trellis "$RT_PORT" $w
    done
    echo
    echo "redis-benchmark $w -n $n (50 clients), medians of $runs runs"
    echo
    echo "| test | redis-server rps | p50 ms | trellis gateway rps | p50 ms |"
    echo "|---|---|---|---|---|"
    awk '{ print $2 }' "$TS_DIR/results" | awk '!seen[$0]++' >"$TS_DIR/tests"
    while read -r t; do
        r=$(awk -v t="$t" '$1 == "redis" && $2 == t { print $3 }' "$TS_DIR/results" | median)
        rl=$(awk -v t="$t" '$1 == "redis" && $2 == t { print $4 }' "$TS_DIR/results" | median)
        g=$(awk -v t="$t" '$1 == "trellis" && $2 == t { print $3 }' "$TS_DIR/results" | median)
        gl=$(awk -v t="$t" '$1 == "trellis" && $2 == t { print $4 }' "$TS_DIR/results" | median)
        printf '| %s | %.0f | %s | %.0f | %s |\n' "$t" "$r" "$rl" "$g" "$gl"
    done <"$TS_DIR/tests"
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "gateway errors: $(rt_metric trellis_resp_errors_total)"
