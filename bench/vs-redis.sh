#!/usr/bin/env bash
# bench/vs-redis.sh - trellis against Redis on this machine, in one run.
#
# Starts Debian's redis-server, a 2-master Redis Cluster and a local trellis
# cluster (one memory node with two shards, deploy/cluster.sh) on loopback
# with the same CPU placement, loads the same keys into them, runs the same
# workloads against them (redis-benchmark for Redis; trellis-bench for
# trellis; redis-benchmark --cluster against trellis' shards and against the
# Redis Cluster; redis-benchmark against trellis' plain Redis endpoint),
# each several times, and prints tables of medians with the ratios; then the
# same trellis workloads against a disk-only cluster.
# docs/benchmarks.md explains the workloads and the figures.
set -euo pipefail

readonly PROG=vs-redis.sh
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly root

usage() {
    cat <<EOF
usage: bench/vs-redis.sh [--quick] [--reps N] [--keys N] [--duration S]
                         [--value-size B] [--placement shared|split] [--no-disk]
                         [--resp-only] [--out FILE]

Runs the same workloads against redis-server, a 2-master Redis Cluster and
a trellis cluster (one memory node, two shards) and prints the medians and
the trellis/Redis ratios.

  --quick          a small, fast run that proves the script works
                   (20000 keys, 1 repetition, 1 s per workload)
  --reps N         repetitions of every workload (default 3)
  --keys N         keys loaded and used (default 1000000)
  --duration S     seconds per trellis workload; Redis runs about as long
                   (default 5)
  --value-size B   bytes per value, for every server (default 100;
                   redis-benchmark -d)
  --placement P    shared: every process may use every CPU (default);
                   split: servers on CPU 0, load generators on CPU 1
  --no-disk        skip the disk-only trellis cluster
  --resp-only      only the redis-benchmark workloads (Redis, the Redis
                   Cluster, trellis as a Redis Cluster and its plain
                   endpoint): no trellis-bench, no disk-only cluster
  --out FILE       also write the table and the raw results to FILE
  -h, --help       this text

environment:
  TRELLIS_BIN      the trellis binaries (default: build-release/bin if it
                   has trellis-bench, else build/bin)
  TRELLIS_PORT_BASE  first port of the trellis clusters (default: derived
                   from the process id, another if taken); Redis listens on
                   base + 990, the Redis Cluster's masters on base + 991
                   and base + 992, their cluster bus on base + 993 and
                   base + 994

exit status: 0 success, 1 failure, 2 bad arguments.
EOF
}

die() {
    echo "$PROG: error: $*" >&2
    exit 1
}

note() {
    echo "$PROG: $*" >&2
}

# ---- arguments ---------------------------------------------------------------------------

quick=0 reps=3 keys=1000000 duration=5 vsize=100 placement=shared disk=1 resp_only=0 out=''
keys_set=0 reps_set=0 duration_set=0
while [ $# -gt 0 ]; do
    case $1 in
    --quick) quick=1 ;;
    --reps | --keys | --duration | --value-size | --placement | --out)
        [ $# -ge 2 ] || { echo "$PROG: $1 needs a value" >&2; exit 2; }
        case $1 in
        --reps) reps=$2 reps_set=1 ;;
        --keys) keys=$2 keys_set=1 ;;
        --duration) duration=$2 duration_set=1 ;;
        --value-size) vsize=$2 ;;
        --placement) placement=$2 ;;
        --out) out=$2 ;;
        esac
        shift
        ;;
    --no-disk) disk=0 ;;
    --resp-only) resp_only=1 disk=0 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        echo "$PROG: unknown argument '$1'" >&2
        echo "see 'bench/vs-redis.sh --help'" >&2
        exit 2
        ;;
    esac
    shift
done
if [ $quick -eq 1 ]; then
    [ $keys_set -eq 1 ] || keys=20000
    [ $reps_set -eq 1 ] || reps=1
    [ $duration_set -eq 1 ] || duration=1
fi
for v in "$reps" "$keys" "$duration" "$vsize"; do
    if ! [[ $v =~ ^[0-9]+$ ]] || [ "$v" -eq 0 ]; then
        echo "$PROG: counts must be positive integers" >&2
        exit 2
    fi
done
case $placement in
shared) srv_cpu=() cli_cpu=() ;;
split) srv_cpu=(taskset -c 0) cli_cpu=(taskset -c 1) ;;
*)
    echo "$PROG: --placement is shared or split" >&2
    exit 2
    ;;
esac

# ---- what we need ---------------------------------------------------------------------------

if [ -n "${TRELLIS_BIN:-}" ]; then
    bin=$TRELLIS_BIN
elif [ -x "$root/build-release/bin/trellis-bench" ]; then
    bin=$root/build-release/bin
else
    bin=$root/build/bin
fi
bin=$(cd "$bin" 2>/dev/null && pwd) || die "no binaries in $bin (build first, or set TRELLIS_BIN)"
for b in trellis-bench trellis-kvs trellis-route trellis-cli; do
    [ -x "$bin/$b" ] || die "$bin/$b is missing (build first)"
done
for p in redis-server redis-benchmark redis-cli; do
    command -v "$p" >/dev/null || die "$p is not installed (Debian: apt-get install redis-server redis-tools)"
done
if [ "$placement" = split ]; then
    command -v taskset >/dev/null || die "taskset is missing (util-linux)"
    [ "$(nproc)" -ge 2 ] || die "--placement split needs two CPUs"
fi

# Port bases 10000..31000, below the kernel's ephemeral ports; another one
# is tried when a port is taken (unless TRELLIS_PORT_BASE fixes it).
pick_base() { echo $((10000 + (($$ + $1) % 22) * 1000)); }
port_free() { ! command -v ss >/dev/null || [ -z "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }
# Redis's ports at base: the single server, the cluster's masters and their
# buses (inside the span of base, not 10000 above: that may be a port in use).
redis_ports_free() {
    local p
    for p in $(($1 + 990)) $(($1 + 991)) $(($1 + 992)) $(($1 + 993)) $(($1 + 994)); do
        port_free "$p" || return 1
    done
}
base_try=0
base=${TRELLIS_PORT_BASE:-$(pick_base 0)}
redis_port=$((base + 990))
while ! redis_ports_free "$base"; do
    if [ -n "${TRELLIS_PORT_BASE:-}" ] || [ $base_try -ge 21 ]; then
        die "port $redis_port is taken"
    fi
    base_try=$((base_try + 1))
    base=$(pick_base $base_try)
    redis_port=$((base + 990))
done
rc_ports=($((base + 991)) $((base + 992))) rc_bus=($((base + 993)) $((base + 994)))
# Loading batches stay near 256 KiB whatever the value size.
load_batch=$((262144 / vsize))
[ $load_batch -le 64 ] || load_batch=64
[ $load_batch -ge 1 ] || load_batch=1
work=$(mktemp -d "${TMPDIR:-/tmp}/trellis-vs-redis.XXXXXX")
hz=$(getconf CLK_TCK)
redis_pid='' rc_pids=() cluster_home=''

# Stops the redis-server of pid at port.
redis_stop() { # pid port
    if [ -n "$1" ] && kill -0 "$1" 2>/dev/null; then
        redis-cli -p "$2" shutdown nosave >/dev/null 2>&1 || kill "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
    fi
}

cleanup() {
    local rc=$? i
    redis_stop "$redis_pid" "$redis_port"
    for i in "${!rc_pids[@]}"; do
        redis_stop "${rc_pids[$i]}" "${rc_ports[$i]}"
    done
    if [ -n "$cluster_home" ]; then
        TRELLIS_HOME=$cluster_home TRELLIS_BIN=$bin "$root/deploy/cluster.sh" down >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- helpers ----------------------------------------------------------------------------------

# CPU ticks (user + system) the processes used so far.
cpu_ticks() { # pid...
    local p t=0
    for p in "$@"; do
        t=$((t + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat")))
    done
    echo "$t"
}

rss_kb() {
    awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"
}

# The value of a number field in a one-line JSON object.
jnum() { # key json
    sed -nE "s/.*\"$1\":(-?[0-9.]+).*/\1/p" <<<"$2"
}

median() { # numbers...
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Results: one line per run in $work/results: NAME REP OPS_PER_SEC P50_US P99_US CPU_S_PER_MOPS
record() {
    echo "$*" >>"$work/results"
}

# cpu seconds per million operations
per_mops() { # ticks ops
    awk -v t="$1" -v n="$2" -v hz="$hz" 'BEGIN { if (n > 0) printf "%.2f", t / hz / n * 1e6; else print "-" }'
}

# redis-benchmark's target: -p PORT, and --cluster for a port given as
# PORT/cluster (a Redis Cluster: its clients spread over the masters).
rb_target() { # port[/cluster]
    case $1 in
    */cluster) echo "-h 127.0.0.1 -p ${1%/cluster} --cluster" ;;
    *) echo "-h 127.0.0.1 -p $1" ;;
    esac
}

# Requests for redis-benchmark to run about $duration seconds: a short run
# measures the rate first (redis-benchmark has no duration option).
rb_requests() { # port[/cluster] test pipeline
    local probe=$((20000 * $3)) rate
    if [ $quick -eq 1 ]; then
        echo $((5000 * $3))
        return
    fi
    # shellcheck disable=SC2046 # rb_target's words are separate arguments
    rate=$("${cli_cpu[@]}" redis-benchmark $(rb_target "$1") -t "$2" -c 50 -P "$3" -n "$probe" -d "$vsize" \
        -r "$keys" --csv 2>/dev/null | awk -F'"' -v t="${2^^}" '$2 == t { print $4 }')
    awk -v r="${rate:-0}" -v d="$duration" -v p="$probe" 'BEGIN { n = int(r * d); print (n > p ? n : p) }'
}

# redis-benchmark against a port (PORT/cluster: a cluster) for about
# $duration seconds; records NAME REP with its rate and latency, and the
# server CPU of the pids (if given: "PID PID...") per million requests.
run_rb() { # name rep port[/cluster] pids test pipeline
    local name=$1 rep=$2 port=$3 pid=$4 test=$5 pipe=$6 n t0 t1 line rps p50 p99
    n=$(rb_requests "$port" "$test" "$pipe")
    # shellcheck disable=SC2086 # a list of pids
    [ -z "$pid" ] || t0=$(cpu_ticks $pid)
    # shellcheck disable=SC2046 # rb_target's words are separate arguments
    line=$("${cli_cpu[@]}" redis-benchmark $(rb_target "$port") -t "$test" -c 50 -P "$pipe" -n "$n" -d "$vsize" \
        -r "$keys" --csv 2>/dev/null | awk -F'"' -v t="${test^^}" '$2 == t { print $4, $10, $14 }')
    [ -n "$line" ] || die "redis-benchmark $test on port $port gave no result"
    # shellcheck disable=SC2086 # a list of pids
    [ -z "$pid" ] || t1=$(cpu_ticks $pid)
    read -r rps p50 p99 <<<"$line"
    p50=$(awk -v v="$p50" 'BEGIN { printf "%.0f", v * 1000 }')
    p99=$(awk -v v="$p99" 'BEGIN { printf "%.0f", v * 1000 }')
    local cpu=-
    [ -z "$pid" ] || cpu=$(per_mops $((t1 - t0)) "$n")
    record "$name" "$rep" "$rps" "$p50" "$p99" "$cpu"
    note "  $name: $rps ops/s, p50 $p50 us, p99 $p99 us, server $cpu CPU s per 1M ops"
}

# trellis-bench; records NAME REP likewise (CPU of the storage node pid).
run_tb() { # name rep url pid batch read_ratio
    local name=$1 rep=$2 url=$3 pid=$4 batch=$5 ratio=$6 t0 t1 json
    t0=$(cpu_ticks "$pid")
    json=$("${cli_cpu[@]}" "$bin/trellis-bench" -r "$url" --clients 50 --batch "$batch" \
        --read-ratio "$ratio" --keys "$keys" --value-size "$vsize" --duration "$duration" \
        --warmup 0 --quiet --json | tail -n 1)
    t1=$(cpu_ticks "$pid")
    local ops rps p50 p99 errs
    ops=$(jnum ops "$json")
    rps=$(jnum ops_per_sec "$json")
    p50=$(jnum p50_us "$json")
    p99=$(jnum p99_us "$json")
    errs=$(jnum errors "$json")
    [ -n "$rps" ] || die "trellis-bench gave no result for $name"
    [ "${errs:-0}" = 0 ] || note "  $name: $errs errors (see the JSON: $json)"
    local cpu
    cpu=$(per_mops $((t1 - t0)) "$ops")
    record "$name" "$rep" "$rps" "$p50" "$p99" "$cpu" "${errs:-0}"
    note "  $name: $rps ops/s, p50 $p50 us, p99 $p99 us (per call of $batch), server $cpu CPU s per 1M ops"
}

# Starts a trellis cluster; sets cluster_home, cluster_url, resp_addr (the
# plain Redis endpoint), shard_addr (a shard: Redis Cluster), kvs_pid.
cluster_up() { # memory disk
    cluster_home=$work/cluster-$1-$2
    local up
    while ! up=$(TRELLIS_HOME=$cluster_home TRELLIS_PORT_BASE=$base TRELLIS_BIN=$bin \
        "${srv_cpu[@]}" "$root/deploy/cluster.sh" up --memory "$1" --disk "$2" --threads 2 2>"$work/up.log"); do
        if grep -q "already in use" "$work/up.log" && [ -z "${TRELLIS_PORT_BASE:-}" ] && [ $base_try -lt 21 ]; then
            base_try=$((base_try + 1))
            base=$(pick_base $base_try)
            continue
        fi
        cat "$work/up.log" >&2
        die "the trellis cluster did not start"
    done
    cluster_url=$(awk '$1 == "router" { print $2 }' <<<"$up")
    resp_addr=$(awk '$1 == "resp" { print $2 }' <<<"$up")
    shard_addr=$(awk '$1 == "cluster" { print $2 }' <<<"$up")
    kvs_pid=$(TRELLIS_HOME=$cluster_home TRELLIS_BIN=$bin "$root/deploy/cluster.sh" status |
        awk '$1 == "memory" || $1 == "disk" { print $3; exit }')
    if [ -z "$cluster_url" ] || [ -z "$kvs_pid" ]; then
        die "cannot find the cluster's router or storage node"
    fi
}

cluster_down() {
    TRELLIS_HOME=$cluster_home TRELLIS_BIN=$bin "$root/deploy/cluster.sh" down >/dev/null 2>&1 || true
    cluster_home=''
}

# Loads keys into Redis: SET key:%012d of $vsize-byte values, pipelined.
redis_load() {
    awk -v n="$keys" -v d="$vsize" 'BEGIN {
        v = sprintf("%" d "s", ""); gsub(/ /, "v", v)
        for (i = 0; i < n; i++) {
            k = sprintf("key:%012d", i)
            printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, d, v
        }
    }' | redis-cli -p "$redis_port" --pipe >/dev/null
}

# Starts a redis-server at port; sets started_pid.
redis_start() { # port name extra-args...
    local port=$1 name=$2
    shift 2
    "${srv_cpu[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no --logfile "$work/$name.log" "$@" &
    started_pid=$!
    for _ in $(seq 100); do
        redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && return 0
        sleep 0.1
    done
    die "redis-server did not start: $(tail -n 3 "$work/$name.log" 2>/dev/null)"
}

# A Redis Cluster of two masters on this machine, half the slots each
# (redis-cli --cluster create wants three); sets rc_pids.
rcluster_up() {
    local i ok
    for i in 0 1; do
        redis_start "${rc_ports[$i]}" "rcluster-$i" --cluster-enabled yes \
            --cluster-port "${rc_bus[$i]}" --cluster-config-file "$work/rcluster-$i.conf"
        rc_pids+=("$started_pid")
    done
    redis-cli -p "${rc_ports[0]}" cluster addslotsrange 0 8191 >/dev/null
    redis-cli -p "${rc_ports[1]}" cluster addslotsrange 8192 16383 >/dev/null
    redis-cli -p "${rc_ports[0]}" cluster meet 127.0.0.1 "${rc_ports[1]}" "${rc_bus[1]}" >/dev/null
    for _ in $(seq 200); do
        ok=0
        for i in 0 1; do
            redis-cli -p "${rc_ports[$i]}" cluster info | tr -d '\r' |
                grep -qx 'cluster_state:ok' && ok=$((ok + 1))
        done
        [ $ok -lt 2 ] || return 0
        sleep 0.1
    done
    die "the Redis Cluster did not reach cluster_state:ok (logs: $work/rcluster-*.log)"
}

# Loads a Redis Cluster (Redis's or trellis's) the way redis-benchmark
# --cluster will read it: its keys carry a hash tag of each master's first
# slot (key:{TAG}:%012d), so SET 3 x keys random ones (95 % of them).
cluster_load() { # port
    "${cli_cpu[@]}" redis-benchmark -h 127.0.0.1 -p "$1" --cluster -t set -c 50 -P 16 \
        -n $((3 * keys)) -d "$vsize" -r "$keys" -q >/dev/null 2>&1 ||
        die "loading the Redis Cluster at port $1 failed"
}

# ---- the run ---------------------------------------------------------------------------------

started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
note "$started: $keys keys, $vsize-byte values, $reps repetition(s), ${duration} s per workload, placement $placement"
note "load average before: $load_before"

# Redis, empty, then loaded.
redis_start "$redis_port" redis
redis_pid=$started_pid
redis_rss0=$(rss_kb "$redis_pid")
note "loading $keys keys into Redis"
redis_load
redis_rss=$(rss_kb "$redis_pid")
redis_keys=$(redis-cli -p "$redis_port" dbsize)
[ "$redis_keys" -ge "$keys" ] || die "Redis holds $redis_keys keys, expected $keys"
note "starting a Redis Cluster of 2 masters at ports ${rc_ports[*]}, loading it"
rcluster_up
cluster_load "${rc_ports[0]}"

# trellis: one memory node, two shards.
note "starting a trellis cluster (1 memory node, 2 shards) at port $base"
cluster_up 1 0
trellis_rss0=$(rss_kb "$kvs_pid")
note "loading $keys keys into trellis"
"${cli_cpu[@]}" "$bin/trellis-bench" -r "$cluster_url" --load --duration 0 --keys "$keys" \
    --value-size "$vsize" --clients 8 --batch "$load_batch" >/dev/null 2>"$work/load.log" || {
    cat "$work/load.log" >&2
    die "loading trellis failed"
}
trellis_rss=$(rss_kb "$kvs_pid")
[ -n "$resp_addr" ] && note "trellis serves plain Redis clients at $resp_addr"
resp_port=${resp_addr##*:}
[ -n "$shard_addr" ] || die "the trellis cluster names no shard serving Redis Cluster"
shard_port=${shard_addr##*:}
note "loading trellis as a Redis Cluster at $shard_addr"
cluster_load "$shard_port"

for rep in $(seq "$reps"); do
    note "repetition $rep of $reps"
    for pipe in 1 16; do
        for t in set get; do
            sfx=${t}_c50 bsfx=${t}_c50
            [ "$pipe" = 1 ] || sfx=${t}_p16 bsfx=${t}_b16
            run_rb "redis_$sfx" "$rep" "$redis_port" "$redis_pid" "$t" "$pipe"
            run_rb "rcluster_$sfx" "$rep" "${rc_ports[0]}/cluster" "${rc_pids[*]}" "$t" "$pipe"
            run_rb "tcluster_$sfx" "$rep" "$shard_port/cluster" "$kvs_pid" "$t" "$pipe"
            [ -z "$resp_addr" ] || run_rb "resp_$sfx" "$rep" "$resp_port" "" "$t" "$pipe"
            ratio=0
            [ $t = set ] || ratio=1
            [ $resp_only -eq 1 ] || run_tb "trellis_$bsfx" "$rep" "$cluster_url" "$kvs_pid" "$pipe" $ratio
        done
        [ $resp_only -eq 1 ] || run_tb "trellis_mix_${bsfx#*_}" "$rep" "$cluster_url" "$kvs_pid" "$pipe" 0.5
    done
done
cluster_down
redis_stop "$redis_pid" "$redis_port"
redis_pid=''
for i in "${!rc_pids[@]}"; do
    redis_stop "${rc_pids[$i]}" "${rc_ports[$i]}"
done
rc_pids=()

if [ $disk -eq 1 ]; then
    note "starting a disk-only trellis cluster (1 disk node, 2 shards)"
    cluster_up 0 1
    "${cli_cpu[@]}" "$bin/trellis-bench" -r "$cluster_url" --load --duration 0 --keys "$keys" \
        --value-size "$vsize" --clients 8 --batch "$load_batch" >/dev/null 2>"$work/load.log" || {
        cat "$work/load.log" >&2
        die "loading the disk node failed"
    }
    for rep in $(seq "$reps"); do
        note "disk node, repetition $rep of $reps"
        run_tb disk_mix_c50 "$rep" "$cluster_url" "$kvs_pid" 1 0.5
        run_tb disk_mix_b16 "$rep" "$cluster_url" "$kvs_pid" 16 0.5
    done
    cluster_down
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the table -----------------------------------------------------------------------------

# med NAME FIELD (3 ops/s, 4 p50, 5 p99, 6 CPU s per 1M ops): the median over repetitions.
med() {
    local vals
    mapfile -t vals < <(awk -v n="$1" -v f="$2" '$1 == n && $f != "-" { print $f }' "$work/results")
    [ ${#vals[@]} -gt 0 ] || { echo -; return; }
    median "${vals[@]}"
}

ratio() { # a b: a/b
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'
}

kops() { # ops/s -> "123.4k"
    awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else printf "%.1fk", v / 1000 }'
}

# Harmonic mean of two rates: what an even mix of the two costs.
hmean() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || a == 0 || b == 0) print "-"; else printf "%.0f", 2 / (1 / a + 1 / b) }'
}

row() { # label redis_name trellis_name
    local r t
    r=$(med "$2" 3)
    t=$(med "$3" 3)
    printf '| %s | %s (p50 %s, p99 %s us) | %s (p50 %s, p99 %s us) | **%s** |\n' "$1" \
        "$(kops "$r")" "$(med "$2" 4)" "$(med "$2" 5)" \
        "$(kops "$t")" "$(med "$3" 4)" "$(med "$3" 5)" "$(ratio "$t" "$r")"
}

# The Redis clients' table: redis-benchmark against Redis, the Redis
# Cluster, trellis as a Redis Cluster and trellis's plain endpoint.
resp_row() { # label suffix
    local r c t p
    r=$(med "redis_$2" 3)
    c=$(med "rcluster_$2" 3)
    t=$(med "tcluster_$2" 3)
    p=$(med "resp_$2" 3)
    printf '| %s | %s | %s | %s (p50 %s, p99 %s us) | **%s** | **%s** | %s | **%s** |\n' "$1" \
        "$(kops "$r")" "$(kops "$c")" "$(kops "$t")" "$(med "tcluster_$2" 4)" "$(med "tcluster_$2" 5)" \
        "$(ratio "$t" "$r")" "$(ratio "$t" "$c")" "$(kops "$p")" "$(ratio "$p" "$r")"
}

cpu_row() { # label redis_name trellis_name
    local r t
    r=$(med "$2" 6)
    t=$(med "$3" 6)
    printf '| %s | %s | %s | **%s** |\n' "$1" "$r" "$t" "$(ratio "$t" "$r")"
}

{
    echo "trellis vs Redis, $started, $(nproc) CPUs, placement $placement"
    echo "($keys keys of 16 bytes, $vsize-byte values, 50 clients; medians of $reps; load average $load_before before, $load_after after)"
    echo
    echo "| redis-benchmark | Redis 7 | Redis Cluster, 2 masters (--cluster) | trellis as a Redis Cluster (--cluster) | ×Redis | ×Redis Cluster | trellis, plain endpoint | ×Redis |"
    echo "|---|---|---|---|---|---|---|---|"
    resp_row "SET, no pipelining" set_c50
    resp_row "GET, no pipelining" get_c50
    resp_row "SET, -P 16" set_p16
    resp_row "GET, -P 16" get_p16
    echo
    echo "| server CPU seconds per million requests | Redis | Redis Cluster | trellis-kvs (--cluster) | ×Redis |"
    echo "|---|---|---|---|---|"
    for sfx in set_c50 get_c50 set_p16 get_p16; do
        printf '| %s | %s | %s | %s | **%s** |\n' "$sfx" "$(med "redis_$sfx" 6)" "$(med "rcluster_$sfx" 6)" \
            "$(med "tcluster_$sfx" 6)" "$(ratio "$(med "tcluster_$sfx" 6)" "$(med "redis_$sfx" 6)")"
    done
    if [ $resp_only -eq 0 ]; then
        echo
        echo "| workload | Redis 7 (redis-benchmark) | trellis (trellis-bench) | trellis/Redis |"
        echo "|---|---|---|---|"
        row "SET, no pipelining / no batching" redis_set_c50 trellis_set_c50
        row "GET, no pipelining / no batching" redis_get_c50 trellis_get_c50
        rmix=$(hmean "$(med redis_set_c50 3)" "$(med redis_get_c50 3)")
        tmix=$(med trellis_mix_c50 3)
        printf '| 50%% GET, no batching (Redis: harmonic mean of SET and GET) | %s | %s (p50 %s, p99 %s us) | **%s** |\n' \
            "$(kops "$rmix")" "$(kops "$tmix")" "$(med trellis_mix_c50 4)" "$(med trellis_mix_c50 5)" "$(ratio "$tmix" "$rmix")"
        row "SET, -P 16 / batch 16" redis_set_p16 trellis_set_b16
        row "GET, -P 16 / batch 16" redis_get_p16 trellis_get_b16
        rmix=$(hmean "$(med redis_set_p16 3)" "$(med redis_get_p16 3)")
        tmix=$(med trellis_mix_b16 3)
        printf '| 50%% GET, batch 16 (Redis: harmonic mean of SET and GET) | %s | %s (p50 %s, p99 %s us) | **%s** |\n' \
            "$(kops "$rmix")" "$(kops "$tmix")" "$(med trellis_mix_b16 4)" "$(med trellis_mix_b16 5)" "$(ratio "$tmix" "$rmix")"
        echo
        echo "| server CPU seconds per million operations | Redis | trellis-kvs | trellis/Redis |"
        echo "|---|---|---|---|"
        cpu_row "SET, no batching" redis_set_c50 trellis_set_c50
        cpu_row "GET, no batching" redis_get_c50 trellis_get_c50
        cpu_row "SET, -P 16 / batch 16" redis_set_p16 trellis_set_b16
        cpu_row "GET, -P 16 / batch 16" redis_get_p16 trellis_get_b16
    fi
    echo
    echo "| resident memory | Redis | trellis-kvs | trellis/Redis |"
    echo "|---|---|---|---|"
    printf '| empty server | %.1f MB | %.1f MB | |\n' "$(awk -v k="$redis_rss0" 'BEGIN { print k / 1024 }')" \
        "$(awk -v k="$trellis_rss0" 'BEGIN { print k / 1024 }')"
    printf '| after loading %s keys | %.1f MB | %.1f MB | **%s** |\n' "$keys" \
        "$(awk -v k="$redis_rss" 'BEGIN { print k / 1024 }')" "$(awk -v k="$trellis_rss" 'BEGIN { print k / 1024 }')" \
        "$(ratio "$trellis_rss" "$redis_rss")"
    if [ $disk -eq 1 ]; then
        echo
        echo "| disk-only cluster (1 disk node, 2 shards), 50% GET | ops/s | p50 us | p99 us | server CPU s per 1M ops |"
        echo "|---|---|---|---|---|"
        for n in disk_mix_c50 disk_mix_b16; do
            label="no batching"
            [ $n = disk_mix_c50 ] || label="batch 16"
            printf '| %s | %s | %s | %s | %s |\n' "$label" "$(kops "$(med $n 3)")" "$(med $n 4)" "$(med $n 5)" "$(med $n 6)"
        done
    fi
    echo
    echo "Failed trellis calls, every workload and repetition: $(awk 'NF >= 7 { n += $7 } END { print n + 0 }' "$work/results")."
    echo "Latencies: redis-benchmark's per request; trellis-bench's per call (one operation, or a batch of 16)."
    echo "redis-benchmark --cluster spreads its 50 clients over the masters, each on keys of its master's first slot."
    echo "Server CPU: redis-server (both masters for the Redis Cluster), or the trellis-kvs process."
} >"$work/table.md"
cat "$work/table.md"
if [ -n "$out" ]; then
    {
        cat "$work/table.md"
        echo
        echo "raw results: name repetition ops_per_sec p50_us p99_us server_cpu_s_per_Mops [failed_calls]"
        cat "$work/results"
    } >"$out"
fi
