#!/usr/bin/env bash
# bench/vs-redis.sh - trellis against Redis on this machine, in one run.
#
# Starts Debian's redis-server and a local trellis cluster (one memory node
# with two shards, deploy/cluster.sh) on loopback with the same CPU
# placement, loads the same keys into both, runs the same workloads against
# both (redis-benchmark for Redis; trellis-bench for trellis; redis-benchmark
# again against trellis' Redis gateway when the router serves one), each
# several times, and prints a table of medians with the trellis/Redis
# ratios; then the same trellis workloads against a disk-only cluster.
# docs/benchmarks.md explains the workloads and the figures.
set -euo pipefail

readonly PROG=vs-redis.sh
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly root

usage() {
    cat <<EOF
usage: bench/vs-redis.sh [--quick] [--reps N] [--keys N] [--duration S]
                         [--placement shared|split] [--no-disk] [--out FILE]

Runs the same workloads against redis-server and a trellis cluster (one
memory node, two shards) and prints the medians and trellis/Redis ratios.

  --quick          a small, fast run that proves the script works
                   (20000 keys, 1 repetition, 1 s per workload)
  --reps N         repetitions of every workload (default 3)
  --keys N         keys loaded and used (default 1000000)
  --duration S     seconds per trellis workload; Redis runs about as long
                   (default 5)
  --placement P    shared: every process may use every CPU (default);
                   split: servers on CPU 0, load generators on CPU 1
  --no-disk        skip the disk-only trellis cluster
  --out FILE       also write the table and the raw results to FILE
  -h, --help       this text

environment:
  TRELLIS_BIN      the trellis binaries (default: build-release/bin if it
                   has trellis-bench, else build/bin)
  TRELLIS_PORT_BASE  first port of the trellis clusters (default: derived
                   from the process id, another if taken); Redis listens on
                   base + 990

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

quick=0 reps=3 keys=1000000 duration=5 placement=shared disk=1 out=''
keys_set=0 reps_set=0 duration_set=0
while [ $# -gt 0 ]; do
    case $1 in
    --quick) quick=1 ;;
    --reps | --keys | --duration | --placement | --out)
        [ $# -ge 2 ] || { echo "$PROG: $1 needs a value" >&2; exit 2; }
        case $1 in
        --reps) reps=$2 reps_set=1 ;;
        --keys) keys=$2 keys_set=1 ;;
        --duration) duration=$2 duration_set=1 ;;
        --placement) placement=$2 ;;
        --out) out=$2 ;;
        esac
        shift
        ;;
    --no-disk) disk=0 ;;
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
for v in "$reps" "$keys" "$duration"; do
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
base_try=0
base=${TRELLIS_PORT_BASE:-$(pick_base 0)}
redis_port=$((base + 990))
while ! port_free "$redis_port"; do
    if [ -n "${TRELLIS_PORT_BASE:-}" ] || [ $base_try -ge 21 ]; then
        die "port $redis_port is taken"
    fi
    base_try=$((base_try + 1))
    base=$(pick_base $base_try)
    redis_port=$((base + 990))
done
work=$(mktemp -d "${TMPDIR:-/tmp}/trellis-vs-redis.XXXXXX")
hz=$(getconf CLK_TCK)
redis_pid='' cluster_home=''

cleanup() {
    local rc=$?
    if [ -n "$redis_pid" ] && kill -0 "$redis_pid" 2>/dev/null; then
        redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || kill "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
    fi
    if [ -n "$cluster_home" ]; then
        TRELLIS_HOME=$cluster_home TRELLIS_BIN=$bin "$root/deploy/cluster.sh" down >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- helpers ----------------------------------------------------------------------------------

# CPU ticks (user + system) a process used so far.
cpu_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
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

# Requests for redis-benchmark to run about $duration seconds: a short run
# measures the rate first (redis-benchmark has no duration option).
rb_requests() { # port test pipeline
    local probe=$((20000 * $3)) rate
    if [ $quick -eq 1 ]; then
        echo $((5000 * $3))
        return
    fi
    rate=$("${cli_cpu[@]}" redis-benchmark -p "$1" -t "$2" -c 50 -P "$3" -n "$probe" -d 100 \
        -r "$keys" --csv 2>/dev/null | awk -F'"' -v t="${2^^}" '$2 == t { print $4 }')
    awk -v r="${rate:-0}" -v d="$duration" -v p="$probe" 'BEGIN { n = int(r * d); print (n > p ? n : p) }'
}

# redis-benchmark against a port for about $duration seconds; records NAME
# REP with its rate and latency, and the server CPU of pid (if given) per
# million requests.
run_rb() { # name rep port pid test pipeline
    local name=$1 rep=$2 port=$3 pid=$4 test=$5 pipe=$6 n t0 t1 line rps p50 p99
    n=$(rb_requests "$port" "$test" "$pipe")
    [ -z "$pid" ] || t0=$(cpu_ticks "$pid")
    line=$("${cli_cpu[@]}" redis-benchmark -p "$port" -t "$test" -c 50 -P "$pipe" -n "$n" -d 100 \
        -r "$keys" --csv 2>/dev/null | awk -F'"' -v t="${test^^}" '$2 == t { print $4, $10, $14 }')
    [ -n "$line" ] || die "redis-benchmark $test on port $port gave no result"
    [ -z "$pid" ] || t1=$(cpu_ticks "$pid")
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
        --read-ratio "$ratio" --keys "$keys" --value-size 100 --duration "$duration" \
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
    record "$name" "$rep" "$rps" "$p50" "$p99" "$cpu"
    note "  $name: $rps ops/s, p50 $p50 us, p99 $p99 us (per call of $batch), server $cpu CPU s per 1M ops"
}

# Starts a trellis cluster; sets cluster_home, cluster_url, resp_addr, kvs_pid.
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

# Loads keys into Redis: SET key:%012d of 100-byte values, pipelined.
redis_load() {
    awk -v n="$keys" 'BEGIN {
        v = sprintf("%100s", ""); gsub(/ /, "v", v)
        for (i = 0; i < n; i++) {
            k = sprintf("key:%012d", i)
            printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n", length(k), k, v
        }
    }' | redis-cli -p "$redis_port" --pipe >/dev/null
}

# ---- the run ---------------------------------------------------------------------------------

started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
note "$started: $keys keys, $reps repetition(s), ${duration} s per workload, placement $placement"
note "load average before: $load_before"

# Redis, empty, then loaded.
"${srv_cpu[@]}" redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --logfile "$work/redis.log" &
redis_pid=$!
for _ in $(seq 100); do
    redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
done
redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG || die "redis-server did not start (log: $work/redis.log)"
redis_rss0=$(rss_kb "$redis_pid")
note "loading $keys keys into Redis"
redis_load
redis_rss=$(rss_kb "$redis_pid")
redis_keys=$(redis-cli -p "$redis_port" dbsize)
[ "$redis_keys" -ge "$keys" ] || die "Redis holds $redis_keys keys, expected $keys"

# trellis: one memory node, two shards.
note "starting a trellis cluster (1 memory node, 2 shards) at port $base"
cluster_up 1 0
trellis_rss0=$(rss_kb "$kvs_pid")
note "loading $keys keys into trellis"
"${cli_cpu[@]}" "$bin/trellis-bench" -r "$cluster_url" --load --duration 0 --keys "$keys" \
    --value-size 100 --clients 8 --batch 64 >/dev/null 2>"$work/load.log" || {
    cat "$work/load.log" >&2
    die "loading trellis failed"
}
trellis_rss=$(rss_kb "$kvs_pid")
[ -n "$resp_addr" ] && note "the router serves the Redis protocol at $resp_addr"
resp_port=${resp_addr##*:}

for rep in $(seq "$reps"); do
    note "repetition $rep of $reps"
    run_rb redis_set_c50 "$rep" "$redis_port" "$redis_pid" set 1
    run_tb trellis_set_c50 "$rep" "$cluster_url" "$kvs_pid" 1 0
    [ -z "$resp_addr" ] || run_rb resp_set_c50 "$rep" "$resp_port" "" set 1
    run_rb redis_get_c50 "$rep" "$redis_port" "$redis_pid" get 1
    run_tb trellis_get_c50 "$rep" "$cluster_url" "$kvs_pid" 1 1
    [ -z "$resp_addr" ] || run_rb resp_get_c50 "$rep" "$resp_port" "" get 1
    run_tb trellis_mix_c50 "$rep" "$cluster_url" "$kvs_pid" 1 0.5
    run_rb redis_set_p16 "$rep" "$redis_port" "$redis_pid" set 16
    run_tb trellis_set_b16 "$rep" "$cluster_url" "$kvs_pid" 16 0
    [ -z "$resp_addr" ] || run_rb resp_set_p16 "$rep" "$resp_port" "" set 16
    run_rb redis_get_p16 "$rep" "$redis_port" "$redis_pid" get 16
    run_tb trellis_get_b16 "$rep" "$cluster_url" "$kvs_pid" 16 1
    [ -z "$resp_addr" ] || run_rb resp_get_p16 "$rep" "$resp_port" "" get 16
    run_tb trellis_mix_b16 "$rep" "$cluster_url" "$kvs_pid" 16 0.5
done
cluster_down
redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
wait "$redis_pid" 2>/dev/null || true
redis_pid=''

if [ $disk -eq 1 ]; then
    note "starting a disk-only trellis cluster (1 disk node, 2 shards)"
    cluster_up 0 1
    "${cli_cpu[@]}" "$bin/trellis-bench" -r "$cluster_url" --load --duration 0 --keys "$keys" \
        --value-size 100 --clients 8 --batch 64 >/dev/null 2>"$work/load.log" || {
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

row() { # label redis_name trellis_name resp_name
    local r t p
    r=$(med "$2" 3)
    t=$(med "$3" 3)
    p=-
    [ -z "$4" ] || p=$(med "$4" 3)
    printf '| %s | %s (p50 %s, p99 %s us) | %s (p50 %s, p99 %s us) | **%s** | %s | %s |\n' "$1" \
        "$(kops "$r")" "$(med "$2" 4)" "$(med "$2" 5)" \
        "$(kops "$t")" "$(med "$3" 4)" "$(med "$3" 5)" "$(ratio "$t" "$r")" \
        "$(kops "$p")" "$(ratio "$p" "$r")"
}

cpu_row() { # label redis_name trellis_name
    local r t
    r=$(med "$2" 6)
    t=$(med "$3" 6)
    printf '| %s | %s | %s | **%s** | | |\n' "$1" "$r" "$t" "$(ratio "$t" "$r")"
}

{
    echo "trellis vs Redis, $started, $(nproc) CPUs, placement $placement"
    echo "($keys keys of 16 bytes, 100-byte values, 50 clients; medians of $reps; load average $load_before before, $load_after after)"
    echo
    echo "| workload | Redis 7 (redis-benchmark) | trellis (trellis-bench) | trellis/Redis | trellis via RESP (redis-benchmark) | RESP/Redis |"
    echo "|---|---|---|---|---|---|"
    resp_set1='' resp_get1='' resp_set16='' resp_get16=''
    if [ -n "$resp_addr" ]; then
        resp_set1=resp_set_c50 resp_get1=resp_get_c50 resp_set16=resp_set_p16 resp_get16=resp_get_p16
    fi
    row "SET, no pipelining / no batching" redis_set_c50 trellis_set_c50 "$resp_set1"
    row "GET, no pipelining / no batching" redis_get_c50 trellis_get_c50 "$resp_get1"
    rmix=$(hmean "$(med redis_set_c50 3)" "$(med redis_get_c50 3)")
    tmix=$(med trellis_mix_c50 3)
    printf '| 50%% GET, no batching (Redis: harmonic mean of SET and GET) | %s | %s (p50 %s, p99 %s us) | **%s** | | |\n' \
        "$(kops "$rmix")" "$(kops "$tmix")" "$(med trellis_mix_c50 4)" "$(med trellis_mix_c50 5)" "$(ratio "$tmix" "$rmix")"
    row "SET, -P 16 / batch 16" redis_set_p16 trellis_set_b16 "$resp_set16"
    row "GET, -P 16 / batch 16" redis_get_p16 trellis_get_b16 "$resp_get16"
    rmix=$(hmean "$(med redis_set_p16 3)" "$(med redis_get_p16 3)")
    tmix=$(med trellis_mix_b16 3)
    printf '| 50%% GET, batch 16 (Redis: harmonic mean of SET and GET) | %s | %s (p50 %s, p99 %s us) | **%s** | | |\n' \
        "$(kops "$rmix")" "$(kops "$tmix")" "$(med trellis_mix_b16 4)" "$(med trellis_mix_b16 5)" "$(ratio "$tmix" "$rmix")"
    echo
    echo "| server CPU seconds per million operations | Redis | trellis-kvs | trellis/Redis | | |"
    echo "|---|---|---|---|---|---|"
    cpu_row "SET, no batching" redis_set_c50 trellis_set_c50
    cpu_row "GET, no batching" redis_get_c50 trellis_get_c50
    cpu_row "SET, -P 16 / batch 16" redis_set_p16 trellis_set_b16
    cpu_row "GET, -P 16 / batch 16" redis_get_p16 trellis_get_b16
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
    echo "Latencies: Redis per request; trellis per call (one operation, or a batch of 16)."
    echo "Server CPU: redis-server, or the trellis-kvs process (the router is idle on the data path)."
} >"$work/table.md"
cat "$work/table.md"
if [ -n "$out" ]; then
    {
        cat "$work/table.md"
        echo
        echo "raw results: name repetition ops_per_sec p50_us p99_us server_cpu_s_per_Mops"
        cat "$work/results"
    } >"$out"
fi
