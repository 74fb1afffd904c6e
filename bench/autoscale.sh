#!/usr/bin/env bash
# bench/autoscale.sh - autoscaling at work, measured and drawn.
#
# Starts a local cluster (deploy/cluster.sh: one router, one memory node of
# two shards, the monitor with the local provisioner), caps every shard at
# kvs.max_ops_per_sec (the simulation knob that stands in for a node's
# capacity on one machine), and drives it with trellis-bench through these
# phases:
#
#   low    a quarter of one node's capacity
#   high   1.5 times one node's capacity: the monitor adds a node
#   hot    reads that go mostly to one key (zipfian): the monitor gives the
#          key more replicas
#   low    back to a quarter: the key cools and loses its replicas, the
#          extra node is drained and removed
#
# Meanwhile it samples the monitor's /metrics every second. Then it joins
# the bench series, the samples and the monitor's decision log on time into
# one CSV (a row per second) and draws it with gnuplot into one PNG:
# throughput, p99 latency, memory nodes and hot-key replicas over time,
# decisions marked. It ends by checking every key written in the run reads
# back, and prints the figures docs/benchmarks.md quotes.
set -euo pipefail

readonly PROG=autoscale.sh
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly root

usage() {
    cat <<EOF
usage: bench/autoscale.sh [--quick] [--out DIR] [--cap N]

Runs the autoscaling scenario (low -> high -> hot key -> low load against a
cluster with the monitor) and writes DIR/autoscale.csv, DIR/autoscale.png,
DIR/decisions.jsonl and DIR/summary.txt.

  --quick          short phases (about 90 s in all) that prove the script
                   works; the full run takes about 5 minutes
  --out DIR        where the results go (default: autoscale-results)
  --cap N          kvs.max_ops_per_sec, operations per second per shard
                   (default 1000; one node of two shards serves 2 x N)
  -h, --help       this text

environment:
  TRELLIS_BIN        the trellis binaries (default: build-release/bin if it
                     has trellis-bench, else build/bin)
  TRELLIS_PORT_BASE  first port of the cluster (default 17450)

exit status: 0 success, 1 failure, 2 bad arguments.
EOF
}

die() {
    echo "$PROG: error: $*" >&2
    exit 1
}

note() {
    echo "$PROG: $(date -u +%H:%M:%S) $*" >&2
}

# ---- arguments -----------------------------------------------------------------------------

quick=0 out=autoscale-results cap=1000
while [ $# -gt 0 ]; do
    case $1 in
    --quick)
        quick=1
        shift
        ;;
    --out)
        [ $# -ge 2 ] || { echo "$PROG: --out needs a directory" >&2; exit 2; }
        out=$2
        shift 2
        ;;
    --cap)
        if ! [[ ${2:-} =~ ^[0-9]+$ ]] || [ "$2" -lt 50 ]; then
            echo "$PROG: --cap needs a number of at least 50" >&2
            exit 2
        fi
        cap=$2
        shift 2
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        echo "$PROG: unknown argument '$1' (see --help)" >&2
        exit 2
        ;;
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

# ---- the scenario --------------------------------------------------------------------------

node_cap=$((2 * cap))          # one node: two shards
low=$((node_cap / 4))          # comfortably below busy_low with two nodes
high=$((node_cap * 3 / 2))     # needs two nodes
hot=$((node_cap * 4 / 5))      # the hot phase: enough for a key over hot_min_rate
keys=100000
checks=1000                    # keys written before the load and read back after it
if [ $quick -eq 1 ]; then
    t_low1=6 t_high=24 t_hot=16 t_low2=30 grace=6000
else
    t_low1=30 t_high=75 t_hot=45 t_low2=75 grace=15000
fi
# The objective: a shard capped at N operations a second needs k/N seconds
# for a batch of k, so p99 in the tens of milliseconds is normal here.
slo_us=100000

mkdir -p "$out"
out=$(cd "$out" && pwd)
home=$out/cluster
rm -rf "$home" "$out"/bench-*.csv "$out"/samples.csv
export TRELLIS_HOME=$home TRELLIS_BIN=$bin
export TRELLIS_PORT_BASE=${TRELLIS_PORT_BASE:-17450}
base=$TRELLIS_PORT_BASE
router=tcp://127.0.0.1:$base
metrics=http://127.0.0.1:$((base + 40))/metrics

sampler=''
cleanup() {
    [ -z "$sampler" ] || kill "$sampler" 2>/dev/null || true
    TRELLIS_STOP_TIMEOUT=20 bash "$root/deploy/cluster.sh" down >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

note "cap $cap ops/s per shard ($node_cap per node); phases: low $low ops/s for ${t_low1} s," \
    "high $high for ${t_high} s, hot key $hot for ${t_hot} s, low $low for ${t_low2} s"
up=(up --routers 1 --memory 1 --disk 0 --threads 2 --monitor
    --set "kvs.max_ops_per_sec=$cap"
    --set kvs.stats_period_ms=1000
    --set cluster.disk_replicas=0
    --set monitor.period_ms=1000
    --set monitor.busy_high=0.85
    --set monitor.busy_low=0.3
    --set "monitor.latency_slo_us=$slo_us"
    --set monitor.slo_periods=2
    --set "monitor.grace_ms=$grace"
    --set monitor.min_memory_nodes=1
    --set monitor.max_memory_nodes=3
    --set monitor.max_disk_nodes=0
    --set monitor.tiering=false
    --set monitor.hot_k=3
    --set monitor.hot_min_rate=150)
bash "$root/deploy/cluster.sh" "${up[@]}" >"$out/cluster-up.txt" 2>&1 ||
    { cat "$out/cluster-up.txt" >&2; die "the cluster did not start"; }
note "cluster up: $(head -n 1 "$out/cluster-up.txt")"

# One line a second: unix time, memory nodes serving, hot keys.
sample() {
    local m nodes hotk
    while :; do
        m=$(curl -s -m 1 "$metrics" 2>/dev/null || true)
        nodes=$(awk '/^trellis_monitor_tier_active_nodes\{tier="memory"\}/ {print $2}' <<<"$m")
        hotk=$(awk '/^trellis_monitor_hot_keys/ {print $2; exit}' <<<"$m")
        printf '%s,%s,%s\n' "$(date +%s.%N | cut -c1-14)" "${nodes:-}" "${hotk:-}"
        sleep 1
    done
}
echo "time_unix,memory_nodes,hot_keys" >"$out/samples.csv"
sample >>"$out/samples.csv" &
sampler=$!

tb() { # csv-name args...
    local name=$1
    shift
    "$bin/trellis-bench" -r "$router" --clients 8 --window 8 --keys "$keys" --value-size 100 \
        --warmup 0 --interval 1 --quiet --json --csv "$out/bench-$name.csv" "$@" \
        >"$out/bench-$name.json" 2>"$out/bench-$name.err" ||
        { tail -5 "$out/bench-$name.err" >&2; die "trellis-bench failed in phase $name"; }
}

# Keys whose values the end of the run checks: written before the load,
# they live through the scale-out, the hot-key replication and the
# scale-in (hand-offs both ways).
# In slices of 100 a second: all at once they would queue behind the cap
# and look like a load step to the monitor.
note "writing $checks keys to check at the end"
: >"$out/checks-written.txt"
for ((i = 0; i < checks; i += 100)); do
    for ((k = i; k < i + 100 && k < checks; k++)); do echo "SET check:$k v$k"; done |
        "$bin/trellis-cli" -r "$router" >>"$out/checks-written.txt" 2>&1 ||
        die "writing the check keys failed: $(grep -m 1 error "$out/checks-written.txt")"
    sleep 1
done
[ "$(grep -c '^OK$' "$out/checks-written.txt")" -eq $checks ] ||
    die "writing the check keys: $(grep -vc '^OK$' "$out/checks-written.txt") failed"
t_start=$(date +%s.%N | cut -c1-14)
note "phase 1: low"
tb 1-low --rate "$low" --duration "$t_low1" --read-ratio 0.5
note "phase 2: high"
t_step=$(date +%s.%N | cut -c1-14)
tb 2-high --rate "$high" --duration "$t_high" --read-ratio 0.5
note "phase 3: hot key"
tb 3-hot --rate "$hot" --duration "$t_hot" --read-ratio 0.9 --zipf 1.5
note "phase 4: low"
t_drop=$(date +%s.%N | cut -c1-14)
tb 4-low --rate "$low" --duration "$t_low2" --read-ratio 0.5
# Give a removal that is under way time to finish before the log is read.
for _ in $(seq 30); do
    nodes=$(curl -s -m 1 "$metrics" | awk '/^trellis_monitor_tier_active_nodes\{tier="memory"\}/ {print $2}')
    [ "${nodes:-0}" = 1 ] && break
    sleep 1
done
t_end=$(date +%s.%N | cut -c1-14)
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
sampler=''

# Every check key reads back with its value (nothing lost to the scale-in).
note "reading the $checks check keys back"
for ((i = 0; i < checks; i++)); do echo "GET check:$i"; done |
    "$bin/trellis-cli" -r "$router" >"$out/checks-read.txt" 2>&1 || true
missing=$(for ((i = 0; i < checks; i++)); do echo "v$i"; done |
    diff - "$out/checks-read.txt" | grep -c '^<' || true)
cp "$home/logs/monitor-decisions.jsonl" "$out/decisions.jsonl" 2>/dev/null || : >"$out/decisions.jsonl"

# ---- the joined CSV --------------------------------------------------------------------------

# Decisions as: unix_time,policy,action,node_or_key,replicas,result
decisions=$out/decisions.csv
awk '
    function str(k,   m) { if (match($0, "\"" k "\":\"[^\"]*\"")) { m = substr($0, RSTART, RLENGTH); sub("^\"" k "\":\"", "", m); sub(/"$/, "", m); return m } return "" }
    function num(k,   m) { if (match($0, "\"" k "\":-?[0-9.e+]+")) { m = substr($0, RSTART, RLENGTH); sub("^\"" k "\":", "", m); return m } return "" }
    {
        t = str("time")   # 2026-11-23T14:18:36.613Z
        cmd = "date -u -d " t " +%s.%N"; cmd | getline u; close(cmd)
        who = str("node"); if (who == "") who = str("key")
        printf "%.3f,%s,%s,%s,%s,%s\n", u, str("policy"), str("action"), who, num("memory"), str("result")
    }' "$out/decisions.jsonl" | sort -t, -k1,1n >"$decisions"

csv=$out/autoscale.csv
{
    echo "t_s,time_unix,phase,target_ops_per_sec,ops_per_sec,p50_us,p99_us,errors,memory_nodes,hot_keys,hot_key_replicas,decisions"
    for f in "$out"/bench-[0-9]*.csv; do
        ph=$(basename "$f" .csv)
        ph=${ph#bench-[0-9]-}
        awk -F, -v ph="$ph" 'NR > 1 { print $1 "," ph "," $4 "," $6 "," $11 "," $12 "," $10 }' "$f"
    done | sort -t, -k1,1n |
        awk -F, -v t0="$t_start" -v samples="$out/samples.csv" -v dec="$decisions" '
        BEGIN {
            while ((getline l < samples) > 0) { if (l ~ /^time/) continue; split(l, a, ","); ns++; st[ns] = a[1]; sn[ns] = a[2]; sh[ns] = a[3] }
            while ((getline l < dec) > 0) { split(l, a, ","); nd++; dt[nd] = a[1]; dp[nd] = a[2]; da[nd] = a[3]; dw[nd] = a[4]; dr[nd] = a[5] }
            si = 1; di = 1; prev = t0
        }
        {
            t = $1
            while (si < ns && st[si + 1] <= t) si++
            nodes = (ns && st[si] <= t + 1) ? sn[si] : ""
            hk = (ns && st[si] <= t + 1) ? sh[si] : ""
            d = ""
            while (di <= nd && dt[di] <= t) {
                if (dp[di] == "hot_keys" && dr[di] != "") rep[dw[di]] = dr[di]
                d = d (d == "" ? "" : " ") dp[di] ":" da[di] ":" dw[di]
                di++
            }
            # A key cannot have more replicas than there are nodes.
            maxr = 1; for (k in rep) if (rep[k] > maxr) maxr = rep[k]
            if (nodes != "" && maxr > nodes + 0) maxr = nodes + 0
            printf "%.1f,%.3f,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", t - t0, t, $2, $3, $4, $5, $6, $7, nodes, hk, maxr, d
        }'
} >"$csv"

# ---- figures ---------------------------------------------------------------------------------

# Seconds from the load step to the first add decision and to the added
# node serving (the decision is logged when the node is ACTIVE); seconds
# until p99 is back under the objective for good; the removal after the drop.
summary=$out/summary.txt
awk -F, -v step="$t_step" -v drop="$t_drop" -v slo="$slo_us" -v t0="$t_start" '
    NR == FNR { if ($3 == "add" && $1 > step && !add) add = $1; if ($3 == "remove" && $1 > drop && !rem) rem = $1; next }
    FNR > 1 && $2 >= step && $3 == "high" {
        if ($7 + 0 > slo) { last_over = $2 }
        peak = ($7 + 0 > peak) ? $7 + 0 : peak
        if ($5 + 0 > tp) tp = $5 + 0
    }
    END {
        printf "load step at t=%.0f s; drop at t=%.0f s\n", step - t0, drop - t0
        if (add) printf "node added (ACTIVE, serving) %.1f s after the load step\n", add - step
        else print "no node was added"
        if (last_over) printf "p99 back under the %d us objective %.1f s after the load step (peak p99 %d us)\n", slo, last_over + 1 - step, peak
        else printf "p99 never above the %d us objective in the high phase\n", slo
        printf "highest throughput in the high phase: %d ops/s\n", tp
        if (rem) printf "node removed %.1f s after the load drop\n", rem - drop
        else print "no node was removed after the load drop"
    }' "$decisions" "$csv" >"$summary"
{
    echo "decisions: $(wc -l <"$decisions") ($(cut -d, -f2,3 "$decisions" | sort | uniq -c | awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}'))"
    echo "keys written before the run and read back after it: $checks, lost or wrong: $missing"
    echo "errors reported by trellis-bench: $(awk -F, 'NR > 1 { e += $8 } END { print e + 0 }' "$csv")"
} >>"$summary"

# ---- the plot --------------------------------------------------------------------------------

png=$out/autoscale.png
# Decisions as arrows and labels on every panel.
awk -F, -v t0="$t_start" '{
        printf "set arrow from first %.1f, graph 0 to first %.1f, graph 1 nohead lc rgb \"#999999\" dt 3\n", $1 - t0, $1 - t0
        label = $3 " " $4; if ($2 == "hot_keys") label = $3 " " $4 " x" $5
        printf "set label \"%s\" at first %.1f, graph 0.97 right rotate by 90 font \",8\" tc rgb \"#555555\"\n", label, $1 - t0 - 0.5
    }' "$decisions" >"$out/marks.gp"
gnuplot <<EOF || die "gnuplot failed"
set terminal pngcairo size 1200,900 font ",10" noenhanced
set output "$png"
set datafile separator ","
set multiplot layout 3,1 title "trellis autoscaling: cap $cap ops/s per shard, objective p99 $((slo_us / 1000)) ms ($(date -u +%Y-%m-%d))"
set grid
set key top left
set xrange [0:*]
set lmargin 12
set ylabel "operations/s"
load "$out/marks.gp"
plot "$csv" every ::1 using 1:5 with lines lw 2 title "throughput", \
     "$csv" every ::1 using 1:4 with steps dt 2 title "offered"
set ylabel "p99 (ms)"
set logscale y
plot "$csv" every ::1 using 1:(\$7 > 0 ? \$7 / 1000.0 : 1/0) with lines lw 2 title "p99 latency", \
     $((slo_us / 1000)) with lines dt 2 lc rgb "red" title "objective"
unset logscale y
unset label
set ylabel "count"
set xlabel "seconds"
set yrange [0:4]
plot "$csv" every ::1 using 1:9 with steps lw 2 title "memory nodes", \
     "$csv" every ::1 using 1:11 with steps lw 2 title "replicas of the hottest key"
unset multiplot
EOF

note "done in $(awk -v a="$t_start" -v b="$t_end" 'BEGIN { printf "%.0f", b - a }') s of load"
cat "$summary"
echo "csv $csv"
echo "png $png"
[ "$missing" -eq 0 ] || die "$missing keys did not read back"
