#!/usr/bin/env bash
# bench/autoscale.sh - autoscaling on real load, measured and drawn.
#
# Every storage node runs with a CPU allotment of its own (a cgroup quota:
# deploy/cluster.sh --cpu-limit), so that on one machine an added node adds
# real CPU, as a pod with a CPU limit does on Kubernetes. Two parts:
#
#  1. Scale-out: the throughput of 1, 2 and 4 memory nodes (--nodes) of the
#     same allotment under the same closed-loop zipfian workload (0.9 over
#     100 000 keys), with calls in flight in proportion to the shards (so
#     that every shard sees requests of the same size whatever the cluster),
#     the nodes and the load generator on CPUs of their own (--placement),
#     and the CPU both used: the scale-out factor, and what limited it.
#  2. The scenario: one memory node, the monitor with the local provisioner
#     (its nodes get the same allotment), and trellis-bench driving
#       low    a light open-loop load (--low ops/s)
#       high   zipfian 0.9 over 100 000 keys, closed loop, enough callers
#              to saturate one node: the monitor adds nodes on their CPU
#              use against their allotment and on the clients' p99
#       hot    closed loop, reads that go mostly to one key (zipfian 2):
#              the monitor gives the key more replicas
#       low    the light load again: the key cools, the extra nodes are
#              drained and removed after the grace period
#     Meanwhile it samples the monitor's /metrics every second (nodes, hot
#     keys, the clients' p99, every node's CPU used and allotted).
# Then it joins the bench series, the samples and the monitor's decision
# log on time into one CSV (a row per second), draws it with gnuplot into
# one PNG (throughput, client p99, node count, CPU per node against its
# allotment, decisions marked), checks that every key written before the
# scenario reads back after it, and writes the figures docs/benchmarks.md
# quotes into summary.txt.
set -euo pipefail

readonly PROG=autoscale.sh
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly root

usage() {
    cat <<EOF
usage: bench/autoscale.sh [--quick] [--out DIR] [--cpu-limit CORES] [--nodes LIST]
                          [--placement split|shared] [--no-scaleout | --no-scenario]
                          [--low N]
       bench/autoscale.sh --cap N [--quick] [--out DIR] [--low N]

Measures the scale-out factor of CPU-limited memory nodes and runs the
autoscaling scenario (low -> high -> hot key -> low load against a cluster
with the monitor); writes DIR/autoscale.csv, DIR/autoscale.png,
DIR/decisions.jsonl, DIR/scaleout.csv, DIR/scaleout.png and DIR/summary.txt.

  --quick            short phases (about 2 minutes in all) that prove the
                     script works; the full run takes about 7 minutes
  --out DIR          where the results go (default: autoscale-results)
  --cpu-limit CORES  each storage node's CPU allotment (default 0.25 in the
                     scenario, 0.15 in part 1: there four nodes and the load
                     generator must fit on the machine, 0.6 cores of nodes
                     and about 0.7 of load generator on two CPUs)
  --nodes LIST       the clusters part 1 measures, in memory nodes, comma
                     separated, the first 1 (default: 1,2,4)
  --placement P      part 1: split runs the clusters on CPU 0 and the load
                     generator on CPU 1 (default where there are two CPUs);
                     shared lets every process use every CPU
  --no-scaleout      skip part 1
  --no-scenario      part 1 only
  --low N            operations a second of the low phases (default 500)
  --cap N            the old simulation instead of allotments: every shard
                     capped at N operations a second (kvs.max_ops_per_sec),
                     no CPU limit, no part 1
  -h, --help         this text

environment:
  TRELLIS_BIN        the trellis binaries (default: build-release/bin if it
                     has trellis-bench, else build/bin)
  TRELLIS_PORT_BASE  first port of the clusters (default 17450)

Needs a writable cgroup cpu controller (root) unless --cap is given.
exit status: 0 success, 1 failure, 2 bad arguments.
EOF
}

die() {
    echo "$PROG: error: $*" >&2
    exit 1
}

usage_error() {
    echo "$PROG: $*" >&2
    exit 2
}

note() {
    echo "$PROG: $(date -u +%H:%M:%S) $*" >&2
}

# ---- arguments -----------------------------------------------------------------------------

quick=0 out=autoscale-results cpu='' scaleout=1 scenario=1 low=500 cap=0 nodes=1,2,4
placement=''
while [ $# -gt 0 ]; do
    case $1 in
    --quick)
        quick=1
        shift
        ;;
    --out)
        [ $# -ge 2 ] || usage_error "--out needs a directory"
        out=$2
        shift 2
        ;;
    --cpu-limit)
        if ! [[ ${2:-} =~ ^[0-9]{1,3}(\.[0-9]{1,4})?$ ]] || ! awk -v c="$2" 'BEGIN { exit !(c >= 0.05) }'; then
            usage_error "--cpu-limit needs a number of cores of at least 0.05"
        fi
        cpu=$2
        shift 2
        ;;
    --nodes)
        if ! [[ ${2:-} =~ ^1(,[1-8])*$ ]]; then
            usage_error "--nodes needs node counts from 1 to 8, comma separated, the first 1 (e.g. 1,2,4)"
        fi
        nodes=$2
        shift 2
        ;;
    --placement)
        case ${2:-} in
        split | shared) placement=$2 ;;
        *) usage_error "--placement is split or shared" ;;
        esac
        shift 2
        ;;
    --no-scaleout)
        scaleout=0
        shift
        ;;
    --no-scenario)
        scenario=0
        shift
        ;;
    --low)
        if ! [[ ${2:-} =~ ^[0-9]+$ ]] || [ "$2" -lt 10 ]; then
            usage_error "--low needs a number of at least 10"
        fi
        low=$2
        shift 2
        ;;
    --cap)
        if ! [[ ${2:-} =~ ^[0-9]+$ ]] || [ "$2" -lt 50 ]; then
            usage_error "--cap needs a number of at least 50"
        fi
        cap=$2
        shift 2
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) usage_error "unknown argument '$1' (see --help)" ;;
    esac
done

if [ -n "${TRELLIS_BIN:-}" ]; then
    bin=$TRELLIS_BIN
elif [ -x "$root/build-release/bin/trellis-bench" ]; then
    bin=$root/build-release/bin
else
    bin=$root/build/bin
fi
for b in trellis-bench trellis-kvs trellis-route trellis-monitor trellis-cli; do
    [ -x "$bin/$b" ] || die "$bin/$b is missing (build first: cmake --build build)"
done
for t in gnuplot curl awk; do
    command -v "$t" >/dev/null || die "$t is missing (deploy/install-deps.sh installs it)"
done
[ $scaleout -eq 1 ] || [ $scenario -eq 1 ] || usage_error "--no-scaleout and --no-scenario leave nothing to run"
so_cpu=${cpu:-0.15} # part 1's allotment
cpu=${cpu:-0.25}    # the scenario's
# Part 1's placement: where there are two CPUs, the clusters on one and the
# load generator on the other, so that neither is measured with CPU the
# other took (srv_cpu and gen_cpu prefix their commands).
if [ -z "$placement" ]; then
    placement=shared
    if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then placement='split'; fi
fi
if [ "$placement" = split ]; then
    command -v taskset >/dev/null || die "taskset is missing (util-linux)"
    [ "$(nproc)" -ge 2 ] || die "--placement split needs two CPUs"
    srv_cpu=(taskset -c 0) gen_cpu=(taskset -c 1) gen_cores=1
    where="placement split: the nodes on CPU 0, the load generator on CPU 1"
else
    srv_cpu=() gen_cpu=() gen_cores=$(nproc)
    where="placement shared: every process on any of $(nproc) CPUs"
fi
if [ "$cap" -gt 0 ]; then
    [ $scenario -eq 1 ] || usage_error "--cap runs the scenario alone: --no-scenario leaves nothing"
    scaleout=0
else
    why=$("$bin/trellis-kvs" --check-cpu-limit "$so_cpu" 2>&1) ||
        die "storage nodes cannot take a CPU allotment here ($why); run as root, or use --cap"
fi

keys=100000
checks=1000 # keys written before the scenario and read back after it
if [ $quick -eq 1 ]; then
    so_dur=3 so_reps=1
    t_low1=6 t_high=30 t_hot=16 t_low2=30 grace=6000 max_nodes=2
else
    so_dur=8 so_reps=3
    t_low1=30 t_high=90 t_hot=45 t_low2=75 grace=15000 max_nodes=4
fi
slo_us=50000 # the clients' p99 objective

mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -rf "$out"/cluster "$out"/scale-* "$out"/bench-*.csv "$out"/samples.csv "$out"/cpu-*.dat
export TRELLIS_BIN=$bin
export TRELLIS_PORT_BASE=${TRELLIS_PORT_BASE:-17450}
base=$TRELLIS_PORT_BASE
router=tcp://127.0.0.1:$base
metrics=http://127.0.0.1:$((base + 40))/metrics

sampler=''
cleanup() {
    [ -z "$sampler" ] || kill "$sampler" 2>/dev/null || true
    local h
    for h in "$out"/cluster "$out"/scale-*; do
        [ -d "$h" ] || continue
        TRELLIS_HOME=$h TRELLIS_STOP_TIMEOUT=20 bash "$root/deploy/cluster.sh" down >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cluster() { # home args...: deploy/cluster.sh with that state directory
    local h=$1
    shift
    TRELLIS_HOME=$h bash "$root/deploy/cluster.sh" "$@"
}

# CPU seconds (user + system) of the processes of a cluster's storage nodes.
nodes_cpu_s() { # home
    local pid tck total=0
    tck=$(getconf CLK_TCK)
    for pid in $(cluster "$1" status 2>/dev/null | awk '$1 == "memory" || $1 == "disk" { print $3 }'); do
        [ -r "/proc/$pid/stat" ] || continue
        total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
    done
    awk -v t="$total" -v k="$tck" 'BEGIN { printf "%.3f", t / k }'
}

json_num() { # file field
    tail -n 1 "$1" | grep -o "\"$2\":[-0-9.e+]*" | head -n 1 | cut -d: -f2
}

# ---- part 1: scale-out ---------------------------------------------------------------------

# Every cluster gets the same calls in flight per shard (32 clients x 4
# calls per node: 64 per shard of two), so that a shard's requests carry as
# many operations with four nodes as with one: a fixed number of callers
# spread over more shards would make every request smaller and each
# operation dearer, and measure that instead of the added nodes.
so_csv=$out/scaleout.csv
echo "nodes,run,ops_per_sec,p99_us,ops_per_request,client_cpu_us_per_op,node_cpu_us_per_op,node_cpu_cores,client_cpu_cores" >"$so_csv"
if [ $scaleout -eq 1 ]; then
    for n in ${nodes//,/ }; do
        h=$out/scale-$n
        note "scale-out: $n memory node(s) of $so_cpu cores ($where)"
        TRELLIS_HOME=$h "${srv_cpu[@]}" bash "$root/deploy/cluster.sh" up --routers 1 --memory "$n" \
            --disk 0 --threads 2 --cpu-limit "$so_cpu" --set cluster.disk_replicas=0 >"$h.up.txt" 2>&1 ||
            { cat "$h.up.txt" >&2; die "the $n-node cluster did not start"; }
        # Every key written once (not in --quick: reads of absent keys then
        # cost a little less).
        [ $quick -eq 1 ] || "${gen_cpu[@]}" "$bin/trellis-bench" -r "$router" --keys "$keys" --load \
            --duration 0 --clients 16 --window 8 --batch 16 --quiet >/dev/null 2>"$h.load.err" ||
            { tail -5 "$h.load.err" >&2; die "loading the keys failed"; }
        for ((r = 1; r <= so_reps; r++)); do
            c0=$(nodes_cpu_s "$h")
            "${gen_cpu[@]}" "$bin/trellis-bench" -r "$router" --clients 32 --window $((4 * n)) \
                --keys "$keys" --zipf 0.9 --read-ratio 0.5 --warmup 1 --duration "$so_dur" --quiet \
                --json >"$h.run$r.json" 2>"$h.run$r.err" ||
                { tail -5 "$h.run$r.err" >&2; die "trellis-bench failed with $n nodes"; }
            c1=$(nodes_cpu_s "$h")
            f=$h.run$r.json
            awk -v n="$n" -v r="$r" -v ops="$(json_num "$f" ops_per_sec)" \
                -v p99="$(json_num "$f" p99_us)" -v opr="$(json_num "$f" ops_per_request)" \
                -v ccpu="$(json_num "$f" client_cpu_s)" -v total="$(json_num "$f" ops)" \
                -v dur="$(json_num "$f" duration_s)" -v c0="$c0" -v c1="$c1" 'BEGIN {
                    # CPU over the measured window and the warm-up before it
                    wall = dur + 1
                    cc = total > 0 ? ccpu * 1e6 / total : 0
                    nc = ops > 0 ? (c1 - c0) * 1e6 / (ops * wall) : 0
                    printf "%d,%d,%.0f,%d,%.1f,%.2f,%.2f,%.3f,%.3f\n", n, r, ops, p99, opr, cc, nc, (c1 - c0) / wall, ccpu / wall
                }' >>"$so_csv"
            note "  run $r: $(tail -n 1 "$so_csv")"
        done
        TRELLIS_HOME=$h bash "$root/deploy/cluster.sh" down >/dev/null 2>&1 || true
    done
fi

# The scale-out figures: medians per node count, the factor against one
# node, the CPU the nodes and the load generator used against what they
# had, and what held the factor back when it fell short.
if [ $scaleout -eq 1 ]; then
    awk -F, -v cpu="$so_cpu" -v reps="$so_reps" -v dur="$so_dur" -v list="$nodes" -v where="$where" \
        -v gen="$gen_cores" -v dat="$out/scaleout.dat" '
        NR > 1 { n = $1; c[n]++; ops[n, c[n]] = $3; opr[n, c[n]] = $5; ccpu[n, c[n]] = $6; ncpu[n, c[n]] = $7; nco[n, c[n]] = $8; cco[n, c[n]] = $9 }
        function med(n, arr,   i, j, t, v, k) {
            k = c[n]; for (i = 1; i <= k; i++) v[i] = arr[n, i]
            for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
            return v[int((k + 1) / 2)]
        }
        function each(arr, unit, fmt,   i, s) {
            for (i = 1; i <= k; i++) s = s (i > 1 ? ", " : "") sprintf(fmt, med(ns[i], arr))
            return s unit
        }
        END {
            k = split(list, ns, ",")
            o1 = med(1, ops); met = 1; goals = ""
            printf "scale-out (%s cores per node, %s; zipfian 0.9, 100000 keys, 50%% reads, closed loop, 32 clients x 4 calls per node: 64 calls in flight per shard; medians of %d runs of %d s):\n", cpu, where, reps, dur
            line = "  1 node " sprintf("%.0f", o1) " ops/s"
            for (i = 2; i <= k; i++) {
                n = ns[i]; f = med(n, ops) / o1
                line = line sprintf(", %d nodes %.0f ops/s (%.2fx)", n, med(n, ops), f)
                # The goals: 1.8x for two nodes, 3.4x for four (0.85 of linear).
                if (n == 2 || n == 4) {
                    goals = goals (goals == "" ? "" : " and ") (n == 2 ? "1.8x" : "3.4x")
                    if (f < 0.85 * n) met = 0
                }
            }
            if (goals != "") line = line "; goal " goals ": " (met ? "met" : "missed")
            print line
            printf "  operations per request to a shard: %s; node CPU per operation: %s; client CPU per operation: %s\n",
                each(opr, "", "%.1f"), each(ncpu, " us", "%.2f"), each(ccpu, " us", "%.2f")
            # The nodes CPU in use against their allotment: below it, the
            # load generator (or the machine) was the limit, not the nodes.
            nl = "  nodes CPU used / allotted:"; gl = "  load generator CPU used / available:"
            short = 0; genlim = 0
            for (i = 1; i <= k; i++) {
                n = ns[i]; used = med(n, nco); gused = med(n, cco)
                nl = nl sprintf("%s %.2f / %.2f", i > 1 ? "," : "", used, n * cpu)
                gl = gl sprintf("%s %.2f / %d", i > 1 ? "," : "", gused, gen)
                if (used < 0.85 * n * cpu) { short = 1; if (gused > 0.85 * gen) genlim = genlim ? genlim : n }
                printf "%d,%.0f,%.0f,%.3f,%.3f,%.3f,%d,%.2f,%.2f\n", n, med(n, ops), n * o1, used, n * cpu, gused, gen, med(n, ncpu), med(n, ccpu) > dat
            }
            print nl " cores"
            print gl " cores"
            if (genlim)
                printf "  the load generator was the limit from %d nodes on: it used the CPU it had while the nodes were below their allotment\n", genlim
            else if (short)
                printf "  not every cluster was held at its allotment: the machine limited it too\n"
            n = ns[k]
            if (!met && med(n, ncpu) > 1.15 * med(1, ncpu) && med(n, opr) < 0.85 * med(1, opr))
                printf "  held back by the per-request cost: with %d nodes a node spent %.2f us of CPU per operation against %.2f us with one, its requests carrying %.1f operations against %.1f\n",
                    n, med(n, ncpu), med(1, ncpu), med(n, opr), med(1, opr)
            else if (!met && med(n, ncpu) > 1.15 * med(1, ncpu))
                printf "  held back by the nodes CPU per operation: with %d nodes a node spent %.2f us per operation against %.2f us with one, with requests of about the same size (%.1f operations against %.1f)\n",
                    n, med(n, ncpu), med(1, ncpu), med(n, opr), med(1, opr)
        }' "$so_csv" >"$out/scaleout.txt"
    cat "$out/scaleout.txt" >&2
    # Throughput against the node count beside linear scaling, and the CPU
    # the nodes and the load generator used against what they had.
    gnuplot <<EOF || die "gnuplot failed"
set terminal pngcairo size 1200,520 font ",10" noenhanced
set output "$out/scaleout.png"
set multiplot layout 1,2 title "trellis scale-out: memory nodes of $so_cpu cores each, $where ($(date -u +%Y-%m-%d))"
set grid
set key top left
set xlabel "memory nodes"
set xtics 1
set xrange [0.5:$(tr ',' '\n' <<<"$nodes" | sort -n | tail -n 1).5]
set yrange [0:*]
set ylabel "operations/s"
set datafile separator ","
plot "$so_csv" every ::1 using 1:3 with points pt 1 lc rgb "#888888" title "each run", \\
     "$out/scaleout.dat" using 1:2 with linespoints lw 2 pt 7 title "median", \\
     "$out/scaleout.dat" using 1:3 with lines dt 2 lc rgb "#555555" title "linear (one node x n)", \\
     "$out/scaleout.dat" using 1:(0.85 * \$3) with lines dt 3 lc rgb "red" title "goal (0.85 x linear)"
set ylabel "CPU (cores)"
set yrange [0:1.15 * $gen_cores]
set key bottom right
plot "$out/scaleout.dat" using 1:4 with linespoints lw 2 pt 7 title "nodes: used", \\
     "$out/scaleout.dat" using 1:5 with lines dt 2 title "nodes: allotted", \\
     "$out/scaleout.dat" using 1:6 with linespoints lw 2 pt 5 title "load generator: used", \\
     "$out/scaleout.dat" using 1:7 with lines dt 2 title "load generator: available"
unset multiplot
EOF
fi
if [ $scenario -eq 0 ]; then
    cp "$out/scaleout.txt" "$out/summary.txt"
    note "done (part 1 only)"
    exit 0
fi

# ---- part 2: the scenario ------------------------------------------------------------------

home=$out/cluster
export TRELLIS_HOME=$home
if [ "$cap" -gt 0 ]; then
    alloc=(--cpu-limit 0 --set "kvs.max_ops_per_sec=$cap")
    what="every shard capped at $cap ops/s (simulation), no CPU limit"
else
    alloc=(--cpu-limit "$cpu")
    what="$cpu cores per node"
fi
note "scenario: $what; phases: low $low ops/s for ${t_low1} s, high (32 x 4 callers) for" \
    "${t_high} s, hot key (16 x 2 callers) for ${t_hot} s, low $low ops/s for ${t_low2} s"
up=(up --routers 1 --memory 1 --disk 0 --threads 2 --monitor "${alloc[@]}"
    --set kvs.stats_period_ms=1000
    --set cluster.disk_replicas=0
    --set monitor.period_ms=1000
    --set monitor.busy_high=0.8
    --set monitor.busy_low=0.3
    --set "monitor.latency_slo_us=$slo_us"
    --set monitor.slo_periods=2
    --set "monitor.grace_ms=$grace"
    --set monitor.min_memory_nodes=1
    --set "monitor.max_memory_nodes=$max_nodes"
    --set monitor.max_disk_nodes=0
    --set monitor.tiering=false
    --set monitor.hot_k=3
    --set monitor.hot_min_rate=100)
bash "$root/deploy/cluster.sh" "${up[@]}" >"$out/cluster-up.txt" 2>&1 ||
    { cat "$out/cluster-up.txt" >&2; die "the cluster did not start"; }
note "cluster up: $(grep -m 1 '^router' "$out/cluster-up.txt")"

# One line a second: unix time, memory nodes serving, hot keys, the
# clients' p99; and one line per node to cpu-samples.csv.
sample_once() {
    local m t nodes hotk cp99
    m=$(curl -s -m 1 "$metrics" 2>/dev/null || true)
    t=$(date +%s.%N | cut -c1-14)
    nodes=$(awk '/^trellis_monitor_tier_active_nodes\{tier="memory"\}/ {print $2}' <<<"$m")
    hotk=$(awk '/^trellis_monitor_hot_keys / {print $2; exit}' <<<"$m")
    cp99=$(awk '/^trellis_monitor_client_p99_microseconds / {print $2; exit}' <<<"$m")
    printf '%s,%s,%s,%s\n' "$t" "${nodes:-}" "${hotk:-}" "${cp99:-}"
    awk -v t="$t" -F'[{}" ]+' '
        /^trellis_monitor_node_cpu_used_cores\{/ { used[$3] = $NF }
        /^trellis_monitor_node_cpu_allotted_cores\{/ { allot[$3] = $NF }
        END { for (n in used) printf "%s,%s,%s,%s\n", t, n, used[n], allot[n] >> "'"$out/cpu-samples.csv"'" }' <<<"$m"
}
sample() {
    while :; do
        sample_once
        sleep 1
    done
}
echo "time_unix,memory_nodes,hot_keys,client_p99_us" >"$out/samples.csv"
: >"$out/cpu-samples.csv"
sample >>"$out/samples.csv" &
sampler=$!

tb() { # csv-name args...
    local name=$1
    shift
    "$bin/trellis-bench" -r "$router" --keys "$keys" --value-size 100 \
        --warmup 0 --interval 1 --quiet --json --csv "$out/bench-$name.csv" "$@" \
        >"$out/bench-$name.json" 2>"$out/bench-$name.err" ||
        { tail -5 "$out/bench-$name.err" >&2; die "trellis-bench failed in phase $name"; }
}

# Keys whose values the end of the run checks: written before the load,
# they live through the scale-out, the hot-key replication and the
# scale-in (hand-offs both ways).
note "writing $checks keys to check at the end"
for ((k = 0; k < checks; k++)); do echo "SET check:$k v$k"; done |
    "$bin/trellis-cli" -r "$router" >"$out/checks-written.txt" 2>&1 ||
    die "writing the check keys failed: $(grep -m 1 error "$out/checks-written.txt")"
[ "$(grep -c '^OK$' "$out/checks-written.txt")" -eq $checks ] ||
    die "writing the check keys: $(grep -vc '^OK$' "$out/checks-written.txt") failed"
sleep 3 # the writes' CPU must not look like a load step
t_start=$(date +%s.%N | cut -c1-14)
note "phase 1: low"
tb 1-low --clients 4 --window 2 --rate "$low" --duration "$t_low1" --read-ratio 0.5 --zipf 0.9
note "phase 2: high"
t_step=$(date +%s.%N | cut -c1-14)
tb 2-high --clients 32 --window 4 --duration "$t_high" --read-ratio 0.5 --zipf 0.9
note "phase 3: hot key"
tb 3-hot --clients 16 --window 2 --duration "$t_hot" --read-ratio 0.9 --zipf 2
note "phase 4: low"
t_drop=$(date +%s.%N | cut -c1-14)
tb 4-low --clients 4 --window 2 --rate "$low" --duration "$t_low2" --read-ratio 0.5 --zipf 0.9
# Give the removals under way time to finish before the log is read.
for _ in $(seq 40); do
    nodes=$(curl -s -m 1 "$metrics" | awk '/^trellis_monitor_tier_active_nodes\{tier="memory"\}/ {print $2}')
    ops=$(curl -s -m 1 "$metrics" | awk '/^trellis_monitor_operations / {print $2}')
    [ "${nodes:-0}" = 1 ] && [ "${ops:-1}" = 0 ] && break
    sleep 1
done
t_end=$(date +%s.%N | cut -c1-14)
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
sampler=''
sample_once >>"$out/samples.csv" # the state the run ended in

# Every check key reads back with its value (nothing lost to the scale-in).
note "reading the $checks check keys back"
for ((i = 0; i < checks; i++)); do echo "GET check:$i"; done |
    "$bin/trellis-cli" -r "$router" >"$out/checks-read.txt" 2>&1 || true
missing=$(for ((i = 0; i < checks; i++)); do echo "v$i"; done |
    diff - "$out/checks-read.txt" | grep -c '^<' || true)
cp "$home/logs/monitor-decisions.jsonl" "$out/decisions.jsonl" 2>/dev/null || : >"$out/decisions.jsonl"

# ---- the joined CSV --------------------------------------------------------------------------

# Decisions (summary lines left out) as:
# unix_time,policy,action,node_or_key,replicas,result,done_unix_time
decisions=$out/decisions.csv
grep -v '"policy":"summary"' "$out/decisions.jsonl" | awk '
    function str(k,   m) { if (match($0, "\"" k "\":\"[^\"]*\"")) { m = substr($0, RSTART, RLENGTH); sub("^\"" k "\":\"", "", m); sub(/"$/, "", m); return m } return "" }
    function num(k,   m) { if (match($0, "\"" k "\":-?[0-9.e+]+")) { m = substr($0, RSTART, RLENGTH); sub("^\"" k "\":", "", m); return m } return "" }
    {
        t = str("time")   # 2026-11-23T14:18:36.613Z
        cmd = "date -u -d " t " +%s.%N"; cmd | getline u; close(cmd)
        who = str("node"); if (who == "") who = str("key")
        done = u + (num("done_ms") - num("t_ms")) / 1000
        printf "%.3f,%s,%s,%s,%s,%s,%.3f\n", u, str("policy"), str("action"), who, num("memory"), str("result"), done
    }' | sort -t, -k1,1n >"$decisions"

# CPU per node: one data file per node for the plot, and the totals per
# second for the CSV.
awk -F, -v dir="$out" -v t0="$t_start" '$2 != "" { f = dir "/cpu-" $2 ".dat"; printf "%.1f %s %s\n", $1 - t0, $3, $4 > f }' "$out/cpu-samples.csv"
awk -F, '{ k = int($1); u[k] += $3; a[k] += $4 } END { for (k in u) printf "%d,%.4f,%.4f\n", k, u[k], a[k] }' \
    "$out/cpu-samples.csv" | sort -n >"$out/cpu-total.csv"

csv=$out/autoscale.csv
{
    echo "t_s,time_unix,phase,target_ops_per_sec,ops_per_sec,p50_us,p99_us,errors,memory_nodes,hot_keys,hot_key_replicas,client_p99_us,cpu_used_cores,cpu_allotted_cores,decisions"
    for f in "$out"/bench-[0-9]*.csv; do
        ph=$(basename "$f" .csv)
        ph=${ph#bench-[0-9]-}
        awk -F, -v ph="$ph" 'NR > 1 { print $1 "," ph "," $4 "," $6 "," $11 "," $12 "," $10 }' "$f"
    done | sort -t, -k1,1n |
        awk -F, -v t0="$t_start" -v samples="$out/samples.csv" -v dec="$decisions" -v cpu="$out/cpu-total.csv" '
        BEGIN {
            while ((getline l < samples) > 0) { if (l ~ /^time/) continue; split(l, a, ","); ns++; st[ns] = a[1]; sn[ns] = a[2]; sh[ns] = a[3]; sp[ns] = a[4] }
            while ((getline l < dec) > 0) { split(l, a, ","); nd++; dt[nd] = a[1]; dp[nd] = a[2]; da[nd] = a[3]; dw[nd] = a[4]; dr[nd] = a[5] }
            while ((getline l < cpu) > 0) { split(l, a, ","); cu[a[1]] = a[2]; ca[a[1]] = a[3] }
            si = 1; di = 1
        }
        {
            t = $1
            while (si < ns && st[si + 1] <= t) si++
            ok = ns && st[si] <= t + 1
            nodes = ok ? sn[si] : ""; hk = ok ? sh[si] : ""; cp = ok ? sp[si] : ""
            d = ""
            while (di <= nd && dt[di] <= t) {
                if (dp[di] == "hot_keys" && dr[di] != "") rep[dw[di]] = dr[di]
                d = d (d == "" ? "" : " ") dp[di] ":" da[di] ":" dw[di]
                di++
            }
            # A key cannot have more replicas than there are nodes.
            maxr = 1; for (k in rep) if (rep[k] > maxr) maxr = rep[k]
            if (nodes != "" && maxr > nodes + 0) maxr = nodes + 0
            k = int(t); u = (k in cu) ? cu[k] : ((k - 1) in cu ? cu[k - 1] : ""); al = (k in ca) ? ca[k] : ((k - 1) in ca ? ca[k - 1] : "")
            printf "%.1f,%.3f,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", t - t0, t, $2, $3, $4, $5, $6, $7, nodes, hk, maxr, cp, u, al, d
        }'
} >"$csv"

# ---- figures ---------------------------------------------------------------------------------

summary=$out/summary.txt
: >"$summary"
[ $scaleout -eq 0 ] || cat "$out/scaleout.txt" >>"$summary"
awk -F, -v step="$t_step" -v drop="$t_drop" -v slo="$slo_us" -v t0="$t_start" -v grace="$grace" '
    NR == FNR { if ($3 == "add" && $1 > step && !add) { add = $1; served = $7 }; if ($3 == "remove" && $1 > drop && !rem) { rem = $1; remdone = $7 }; next }
    FNR > 1 && $2 >= step && $3 == "high" {
        p = ($12 != "" && $12 + 0 > 0) ? $12 + 0 : $7 + 0
        if (p > slo) { last_over = $2 }
        peak = (p > peak) ? p : peak
        if ($5 + 0 > tp) tp = $5 + 0
    }
    END {
        printf "load step at t=%.0f s; drop at t=%.0f s\n", step - t0, drop - t0
        if (add) printf "node added (ACTIVE, serving) %.1f s after the load step (decided after %.1f s)\n", served - step, add - step
        else print "no node was added"
        if (last_over) printf "client p99 back under the %d ms objective %.1f s after the load step (peak p99 %d ms)\n", slo / 1000, last_over + 1 - step, peak / 1000
        else printf "client p99 never above the %d ms objective in the high phase\n", slo / 1000
        printf "highest throughput in the high phase: %d ops/s\n", tp
        if (rem) printf "node removed %.1f s after the load drop (decided after %.1f s; grace period %d s)\n", remdone - drop, rem - drop, grace / 1000
        else print "no node was removed after the load drop"
    }' "$decisions" "$csv" >>"$summary"
{
    mins=$(awk -v a="$t_start" -v b="$t_end" 'BEGIN { printf "%.2f", (b - a) / 60 }')
    n=$(wc -l <"$decisions")
    echo "decisions: $n in $mins min of load, $(awk -v n="$n" -v m="$mins" 'BEGIN { r = m > 0 ? n / m : 0; printf "%.1f", r }') per minute ($(cut -d, -f2,3 "$decisions" | sort | uniq -c | awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}')); summary lines: $(grep -c '"policy":"summary"' "$out/decisions.jsonl" || true)"
    echo "keys written before the run and read back after it: $checks, lost or wrong: $missing"
    echo "errors reported by trellis-bench: $(awk -F, 'NR > 1 { e += $8 } END { print e + 0 }' "$csv")"
} >>"$summary"

# ---- the plot --------------------------------------------------------------------------------

png=$out/autoscale.png
# Decisions as arrows and labels on every panel.
awk -F, -v t0="$t_start" '{
        printf "set arrow from first %.1f, graph 0 to first %.1f, graph 1 nohead lc rgb \"#999999\" dt 3\n", $1 - t0, $1 - t0
        label = $3 " " $4; if ($2 == "hot_keys") label = $3 " x" $5
        printf "set label \"%s\" at first %.1f, graph 0.97 right rotate by 90 font \",8\" tc rgb \"#555555\"\n", label, $1 - t0 - 0.5
    }' "$decisions" >"$out/marks.gp"
cpu_plot=""
for f in "$out"/cpu-*.dat; do
    [ -f "$f" ] || continue
    n=$(basename "$f" .dat)
    n=${n#cpu-}
    cpu_plot+="${cpu_plot:+, }\"$f\" using 1:2 with lines lw 2 title \"$n used\", \"$f\" using 1:3 with lines dt 2 notitle"
done
[ -n "$cpu_plot" ] || cpu_plot="0 notitle"
gnuplot <<EOF || die "gnuplot failed"
set terminal pngcairo size 1200,1150 font ",10" noenhanced
set output "$png"
set datafile separator ","
set multiplot layout 4,1 title "trellis autoscaling on real load: $what, objective: clients' p99 $((slo_us / 1000)) ms ($(date -u +%Y-%m-%d))"
set grid
set key top left
set xrange [0:*]
set lmargin 12
set ylabel "operations/s"
load "$out/marks.gp"
plot "$csv" every ::1 using 1:5 with lines lw 2 title "throughput", \
     "$csv" every ::1 using 1:4 with steps dt 2 title "offered"
set ylabel "client p99 (ms)"
set logscale y
plot "$csv" every ::1 using 1:(\$7 > 0 ? \$7 / 1000.0 : 1/0) with lines lw 2 title "p99 of the load generator's calls", \
     "$csv" every ::1 using 1:(\$12 > 0 ? \$12 / 1000.0 : 1/0) with lines title "clients' p99 seen by the monitor", \
     $((slo_us / 1000)) with lines dt 2 lc rgb "red" title "objective"
unset logscale y
unset label
set ylabel "count"
set yrange [0:5]
plot "$csv" every ::1 using 1:9 with steps lw 2 title "memory nodes", \
     "$csv" every ::1 using 1:11 with steps lw 2 title "replicas of the hottest key"
set yrange [0:*]
set datafile separator whitespace
set ylabel "CPU (cores)"
set xlabel "seconds"
plot $cpu_plot
unset multiplot
EOF

note "done in $(awk -v a="$t_start" -v b="$t_end" 'BEGIN { printf "%.0f", b - a }') s of load"
cat "$summary"
echo "csv $csv"
echo "png $png"
[ "$missing" -eq 0 ] || die "$missing keys did not read back"
