#!/usr/bin/env bash
# tests/bench/test_autoscale.sh - bench/autoscale.sh end to end in its quick
# mode (a short scale-out measurement of 1, 2 and 4 CPU-limited nodes, then
# about 80 s of load): the monitor adds a node after the load step, raises a
# hot key's replication, removes the node after the drop; every check key
# reads back; the summary states the scale-out factors and the decisions
# per minute; the CSV has every phase and the PNG is drawn; no process of
# the run is left behind. Skips where nodes cannot take a CPU allotment.
set -euo pipefail

# shellcheck source=tests/support/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/lib.sh"
src=$TS_SRC
tmp=$TS_DIR
ts_need gnuplot curl
why=$("$TRELLIS_BIN/trellis-kvs" --check-cpu-limit 0.25 2>&1) ||
    ts_skip "storage nodes cannot take a CPU allotment here: $why"
ts_ports 1000 # the cluster takes base .. base + 900
export TRELLIS_PORT_BASE=$TS_PORT_BASE
# The cluster autoscale.sh runs is stopped and checked at exit (ts_cs_down).
export TRELLIS_HOME=$tmp/out/cluster
TS_CS_UP=1

# A failure shows the series and the decisions, and ends the test.
bad() {
    [ ! -f "$tmp/out/autoscale.csv" ] || cut -d, -f1,3-12 "$tmp/out/autoscale.csv" >&2
    [ ! -f "$tmp/out/decisions.jsonl" ] || cat "$tmp/out/decisions.jsonl" >&2
    die "$@"
}

# Bad arguments: usage errors, exit 2.
rc=0
bash "$src/bench/autoscale.sh" --cap 3 >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || bad "--cap 3 exited $rc, not 2"
rc=0
bash "$src/bench/autoscale.sh" --bogus >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || bad "--bogus exited $rc, not 2"
for args in "--nodes 2,4" "--nodes 1,,2" "--nodes 1,9" "--no-scaleout --no-scenario"; do
    rc=0
    # shellcheck disable=SC2086 # the arguments split on purpose
    bash "$src/bench/autoscale.sh" $args --out "$tmp/bad" >/dev/null 2>&1 || rc=$?
    [ $rc -eq 2 ] || bad "$args exited $rc, not 2"
    [ ! -e "$tmp/bad" ] || bad "$args created its output directory"
done

rc=0
# A tenth of a core per node: on the data plane a node serves tens of
# thousands of operations a second on a quarter of one, more than a load
# generator sharing two CPUs with the rest of the suite can offer it, and a
# node that never saturates is never joined by another.
bash "$src/bench/autoscale.sh" --quick --cpu-limit 0.1 --out "$tmp/out" >"$tmp/stdout" \
    2>"$tmp/stderr" || rc=$?
cat "$tmp/stdout"
if [ $rc -ne 0 ]; then
    tail -n 30 "$tmp/stderr" >&2
    bad "autoscale.sh --quick exited $rc"
fi
summary=$tmp/out/summary.txt
grep -q "^node added (ACTIVE, serving) " "$summary" || bad "no node was added"
grep -q "^node removed " "$summary" || bad "no node was removed after the drop"
grep -q "lost or wrong: 0$" "$summary" || bad "keys were lost: $(grep lost "$summary")"
grep -q "hot_keys,raise" "$summary" || bad "no hot key was replicated"
grep -qE "^  1 node [0-9]+ ops/s, 2 nodes [0-9]+ ops/s \([0-9.]+x\), 4 nodes [0-9]+ ops/s \([0-9.]+x\)" "$summary" ||
    bad "no scale-out figures: $(grep -A1 scale-out "$summary")"
grep -qE "^decisions: [0-9]+ in [0-9.]+ min of load, [0-9.]+ per minute" "$summary" ||
    bad "no decisions per minute"

csv=$tmp/out/autoscale.csv
head -n 1 "$csv" | grep -q "^t_s,time_unix,phase,target_ops_per_sec,ops_per_sec,p50_us,p99_us,errors,memory_nodes,hot_keys,hot_key_replicas,client_p99_us,cpu_used_cores,cpu_allotted_cores,decisions$" ||
    bad "the CSV header is wrong: $(head -n 1 "$csv")"
for ph in low high hot; do
    [ "$(awk -F, -v p="$ph" '$3 == p' "$csv" | wc -l)" -ge 5 ] || bad "the CSV lacks the $ph phase"
done
# Every node's CPU is sampled, and the tier never used more than it was
# allotted (the quota holds; a little slack for the sampling).
awk -F, 'NR > 1 && $3 == "high" && $13 != "" { n++; if ($13 + 0 > 1.25 * $14 + 0.05) bad++ }
         END { exit !(n >= 5 && !bad) }' "$csv" ||
    bad "CPU use per second is missing or above the allotment"
# The node count over time goes 1 -> 2 or more -> back down to 1: the
# monitor's own gauge, sampled every second until the run ended (the
# removal may end after the last phase's load did).
awk -F, 'NR > 1 && $2 != "" { if (!first) first = $2; if ($2 > top) top = $2; last = $2 }
         END { exit !(first == 1 && top >= 2 && last == 1) }' "$tmp/out/samples.csv" ||
    bad "memory nodes over time do not go 1 -> 2+ -> 1: $(cut -d, -f2 "$tmp/out/samples.csv" | uniq -c | tr '\n' ' ')"
# No flapping: once a node was removed, none is added at the low load.
awk -F, '$2 == "elasticity" && $3 == "remove" { rem = 1 }
         $2 == "elasticity" && $3 == "add" && rem { readd++ }
         END { exit readd > 0 }' "$tmp/out/decisions.csv" ||
    bad "a node was added again after the scale-in"
[ "$(head -c 8 "$tmp/out/autoscale.png" | od -An -c | tr -d ' ')" = '211PNG\r\n032\n' ] ||
    bad "autoscale.png is not a PNG"

# Nothing of the run is left.
left=$(pgrep -f "$tmp/out/cluster" || true)
[ -z "$left" ] || bad "processes left behind: $left"
echo "ok: $(tr '\n' ';' <"$summary")"
