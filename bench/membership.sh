#!/usr/bin/env bash
# bench/membership.sh - what membership changes take: how long a memory
# node's join and departure last with and without load, and what the
# writers get while a node joins (their writes to keys it is gaining wait
# for it: docs/protocol.md, "Membership changes"), as a ratio to their
# steady state.
#
# Each run starts a local cluster (deploy/cluster.sh: one router, two memory
# nodes and one disk node of two shards), writes --keys keys, then:
#   idle     add-node memory, then remove-node it: join and departure times
#   loaded   trellis-bench writes (--clients, no reads, 0.5 s intervals);
#            after 10 s a memory node joins, 5 s after it is ACTIVE it
#            departs; join and departure times, and the writes per second
#            in the intervals that overlap the join against the median
#            interval before it
# Times come from the node's own log: from its start to "JOINING ->
# ACTIVE", and from "departing" to "departed". Prints one line per run and
# the medians; writes DIR/runs.txt and each run's bench series.
set -euo pipefail

readonly PROG=membership.sh
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly root

usage() {
    cat <<EOF
usage: bench/membership.sh [--quick] [--runs N] [--keys K] [--clients C] [--out DIR]

  --quick       a short run that proves the script works (5000 keys, 4
                clients, 20 s of load)
  --runs N      runs (default 3); the figures are their medians
  --keys K      keys written before the changes (default 200000)
  --clients C   writer threads of trellis-bench (default 16)
  --out DIR     where the results go (default: membership-results)

Uses build/bin (or TRELLIS_BIN) and the ports from TRELLIS_PORT_BASE
(default 17450) on. Its figures are times: run it with nothing else running
on the machine.
EOF
}

runs=3 keys=200000 clients=16 out=membership-results
load_s=45 settle_s=10 after_s=5
while [ $# -gt 0 ]; do
    case $1 in
    --quick) keys=5000 clients=4 load_s=20 settle_s=4 after_s=2; shift ;;
    --runs) runs=$2; shift 2 ;;
    --keys) keys=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "$PROG: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
for v in "$runs" "$keys" "$clients"; do
    if ! [[ $v =~ ^[0-9]+$ ]] || [ "$v" -eq 0 ]; then
        echo "$PROG: bad number '$v'" >&2
        exit 2
    fi
done

bin=${TRELLIS_BIN:-$root/build/bin}
if [ ! -x "$bin/trellis-bench" ] || [ ! -x "$bin/trellis-kvs" ]; then
    echo "$PROG: no trellis-bench/trellis-kvs in $bin (build first)" >&2
    exit 1
fi
mkdir -p "$out"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/trellis-membership.XXXXXX")
home=$tmp/home
base=${TRELLIS_PORT_BASE:-17450}

cs() { TRELLIS_HOME=$home TRELLIS_PORT_BASE=$base TRELLIS_BIN=$bin "$root/deploy/cluster.sh" "$@"; }

cleanup() {
    cs down >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# The unix time (s, with ms) of the first line matching PATTERN in node
# ID's log after line FROM.
log_time() { # id from pattern
    local t
    t=$(tail -n +"$(($2 + 1))" "$home/logs/$1.log" | grep -m1 -- "$3" | awk '{ print $1 }')
    [ -n "$t" ] || { echo "$PROG: '$3' not in $1's log" >&2; exit 1; }
    date -u -d "$t" +%s.%3N
}
log_lines() { wc -l <"$home/logs/$1.log" 2>/dev/null || echo 0; }

# A memory node joins; sets node and join_start/join_end (unix s).
join() {
    local from
    node=$(cs add-node memory | awk '$1 == "node" { print $2 }')
    [ -n "$node" ] || { echo "$PROG: add-node printed no node" >&2; exit 1; }
    from=$(grep -n "^==== .* started" "$home/logs/$node.log" | tail -1 | cut -d: -f1)
    join_start=$(log_time "$node" "$((from - 1))" "memory node with")
    join_end=$(log_time "$node" "$((from - 1))" "JOINING -> ACTIVE")
}

# Node $node departs; sets leave_start/leave_end.
leave() {
    local from
    from=$(log_lines "$node")
    cs remove-node "$node" >/dev/null 2>&1
    leave_start=$(log_time "$node" "$from" "departing")
    leave_end=$(log_time "$node" "$from" "departed")
}

ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (b - a) * 1000 }'; }

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

: >"$out/runs.txt"
echo "run join_idle_ms leave_idle_ms join_load_ms leave_load_ms steady_ops join_ops ratio" |
    tee -a "$out/runs.txt"
for run in $(seq 1 "$runs"); do
    cs up --memory 2 --disk 1 --threads 2 >"$tmp/up.out" 2>"$tmp/up.err" ||
        { cat "$tmp/up.err" >&2; exit 1; }
    router=$(awk '$1 == "router" { print $2 }' "$tmp/up.out")
    "$bin/trellis-bench" -r "$router" --load --duration 0 --keys "$keys" --clients 8 --batch 16 \
        --quiet >/dev/null

    join
    join_idle=$(ms "$join_start" "$join_end")
    leave
    leave_idle=$(ms "$leave_start" "$leave_end")

    csv=$out/bench-$run.csv
    "$bin/trellis-bench" -r "$router" --clients "$clients" --duration "$load_s" --warmup 2 \
        --interval 0.5 --keys "$keys" --read-ratio 0 --csv "$csv" --quiet >/dev/null &
    bench=$!
    sleep "$settle_s"
    join
    join_load=$(ms "$join_start" "$join_end")
    sleep "$after_s"
    leave
    leave_load=$(ms "$leave_start" "$leave_end")
    wait "$bench"

    # Writes per second: the median interval before the join, and the
    # intervals that overlap it.
    steady=$(awk -F, -v a="$join_start" 'NR > 1 && $6 > 0 && $1 < a { print $6 }' "$csv" | median)
    during=$(awk -F, -v a="$join_start" -v b="$join_end" '
        NR > 1 && $6 > 0 && $1 > a && $1 - $5 / $6 < b { ops += $5; secs += $5 / $6 }
        END { printf "%d\n", (secs > 0 ? ops / secs : 0) }' "$csv")
    steady=${steady%.*}
    ratio=$(awk -v a="$during" -v b="$steady" 'BEGIN { printf "%.2f", b ? a / b : 0 }')
    echo "$run $join_idle $leave_idle $join_load $leave_load $steady $during $ratio" |
        tee -a "$out/runs.txt"
    cs down >/dev/null 2>&1
    rm -rf "$home"
done

echo "medians:" | tee -a "$out/runs.txt"
for col in 2 3 4 5 6 7 8; do
    name=$(head -1 "$out/runs.txt" | awk -v c="$col" '{ print $c }')
    val=$(awk -v c="$col" 'NR > 1 && $1 ~ /^[0-9]+$/ { print $c }' "$out/runs.txt" | median)
    echo "  $name $val" | tee -a "$out/runs.txt"
done

# Every figure must be there: a time, a rate.
if ! awk 'NR > 1 && $1 ~ /^[0-9]+$/ { for (i = 2; i <= 8; i++) if ($i + 0 <= 0) exit 1 }' \
    "$out/runs.txt"; then
    echo "$PROG: a run is missing a figure (see $out/runs.txt)" >&2
    exit 1
fi
