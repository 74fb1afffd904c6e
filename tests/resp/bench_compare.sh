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
rt_up_pinned() {
    taskset -c "$server_cpu" true || exit 1
    local attempt out
    rt_watchdog
    for attempt in 0 1 2 3; do
        export TRELLIS_PORT_BASE=$((20000 + (($$ + 3 * attempt) % 11) * 1000))
        if out=$(taskset -c "$server_cpu" "$RT_CS" up 2>"$RT_TMP/up.err"); then
            RT_PORT=$(sed -n 's/^resp 127\.0\.0\.1:\([0-9]*\)$/\1/p' <<<"$out")
            RT_METRICS=$((TRELLIS_PORT_BASE + 30))
            return 0
        fi
        "$RT_CS" down >/dev/null 2>&1 || true
    done
    cat "$RT_TMP/up.err" >&2
    exit 1
}
rt_up_pinned
redis_port=$((TRELLIS_PORT_BASE + 990))
while (exec 3<>"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null; do redis_port=$((redis_port + 1)); done
taskset -c "$server_cpu" redis-server --port "$redis_port" --save "" --appendonly no \
    --daemonize no --logfile "$RT_TMP/redis.log" &
redis_pid=$!
trap 'kill $redis_pid 2>/dev/null; rt_cleanup' EXIT
for _ in $(seq 50); do
    if redis-cli -p "$redis_port" PING >/dev/null 2>&1; then break; fi
    sleep 0.1
done
redis-cli -p "$redis_port" PING >/dev/null 2>&1 || {
    echo "redis-server did not start on port $redis_port" >&2
    exit 1
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# bench NAME PORT ARGS...: appends "NAME TEST rps p50" lines to $RT_TMP/results.
bench() {
    local name=$1 port=$2
    shift 2
    if ! taskset -c "$client_cpu" redis-benchmark -p "$port" -n "$n" --csv "$@" \
        2>"$RT_TMP/bench.err" >"$RT_TMP/bench.out"; then
        echo "redis-benchmark against $name failed: $(tail -n 3 "$RT_TMP/bench.err")" >&2
    fi
    awk -F'"' -v name="$name" 'NR > 1 { print name, $2, $4, $10 }' "$RT_TMP/bench.out" \
        >>"$RT_TMP/results"
}

workloads=("-t set,get,incr,sadd" "-t set,get,incr,sadd -P 16"
    "-t set,get,incr -r 100000 -d 100" "-t set,get,incr -r 100000 -d 100 -P 16")
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for w in "${workloads[@]}"; do
    : >"$RT_TMP/results"
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
    awk '{ print $2 }' "$RT_TMP/results" | awk '!seen[$0]++' >"$RT_TMP/tests"
    while read -r t; do
        r=$(awk -v t="$t" '$1 == "redis" && $2 == t { print $3 }' "$RT_TMP/results" | median)
        rl=$(awk -v t="$t" '$1 == "redis" && $2 == t { print $4 }' "$RT_TMP/results" | median)
        g=$(awk -v t="$t" '$1 == "trellis" && $2 == t { print $3 }' "$RT_TMP/results" | median)
        gl=$(awk -v t="$t" '$1 == "trellis" && $2 == t { print $4 }' "$RT_TMP/results" | median)
        printf '| %s | %.0f | %s | %.0f | %s |\n' "$t" "$r" "$rl" "$g" "$gl"
    done <"$RT_TMP/tests"
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "gateway errors: $(rt_metric trellis_resp_errors_total)"
