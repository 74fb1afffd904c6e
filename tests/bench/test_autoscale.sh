#!/usr/bin/env bash
# tests/bench/test_autoscale.sh - bench/autoscale.sh end to end in its quick
# mode (a short scale-out measurement of 1, 2 and 4 CPU-limited nodes, then
# about 80 s of load): the monitor adds a node after the load step, raises a
# hot key's replication, removes the node after the drop; every check key
# reads back; the summary states the scale-out factors and the decisions
# per minute; the CSV has every phase and the PNG is drawn; no process of
# the run is left behind. Skips where nodes cannot take a CPU allotment.
set -euo pipefail

src=${TRELLIS_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export TRELLIS_BIN=${TRELLIS_BIN:-$src/build/bin}
# A port range of this run's own below the ephemeral ports (the cluster
# takes base .. base + 900).
# A base with nothing listening in its range, starting from one derived from
# the pid (other tests' clusters take such ranges too).
for ((i = 0; i < 10; i++)); do
    TRELLIS_PORT_BASE=$((21000 + (($$ + i) % 10) * 1000))
    busy=$(ss -Hltn 2>/dev/null | awk -v lo="$TRELLIS_PORT_BASE" '{ n = split($4, a, ":"); p = a[n] + 0 }
        p >= lo && p <= lo + 900 { print p; exit }')
    [ -n "$busy" ] || break
done
export TRELLIS_PORT_BASE
tmp=$(mktemp -d "${TMPDIR:-/tmp}/trellis-autoscale-test.XXXXXX")
started=$SECONDS

cleanup() {
    local rc=$?
    TRELLIS_HOME=$tmp/out/cluster bash "$src/deploy/cluster.sh" down >/dev/null 2>&1 || true
    [ -n "${TRELLIS_KEEP_TMP:-}" ] || rm -rf "$tmp"
    echo "bench_autoscale: $([ $rc -eq 0 ] && echo passed || echo FAILED) in $((SECONDS - started)) s"
    exit $rc
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    [ ! -f "$tmp/out/autoscale.csv" ] || cut -d, -f1,3-12 "$tmp/out/autoscale.csv" >&2
    [ ! -f "$tmp/out/decisions.jsonl" ] || cat "$tmp/out/decisions.jsonl" >&2
    exit 1
}

for t in gnuplot curl; do
    command -v "$t" >/dev/null || { echo "SKIP: $t is not installed"; exit 77; }
done
if ! why=$("$TRELLIS_BIN/trellis-kvs" --check-cpu-limit 0.25 2>&1); then
    echo "SKIP: storage nodes cannot take a CPU allotment here: $why"
    exit 77
fi

# Bad arguments: usage errors, exit 2.
rc=0
bash "$src/bench/autoscale.sh" --cap 3 >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || fail "--cap 3 exited $rc, not 2"
rc=0
bash "$src/bench/autoscale.sh" --bogus >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || fail "--bogus exited $rc, not 2"
for bad in "--nodes 2,4" "--nodes 1,,2" "--nodes 1,9" "--no-scaleout --no-scenario"; do
    rc=0
    # shellcheck disable=SC2086 # the arguments split on purpose
    bash "$src/bench/autoscale.sh" $bad --out "$tmp/bad" >/dev/null 2>&1 || rc=$?
    [ $rc -eq 2 ] || fail "$bad exited $rc, not 2"
    [ ! -e "$tmp/bad" ] || fail "$bad created its output directory"
done

rc=0
bash "$src/bench/autoscale.sh" --quick --out "$tmp/out" >"$tmp/stdout" 2>"$tmp/stderr" || rc=$?
cat "$tmp/stdout"
if [ $rc -ne 0 ]; then
    tail -n 30 "$tmp/stderr" >&2
    fail "autoscale.sh --quick exited $rc"
fi
summary=$tmp/out/summary.txt
grep -q "^node added (ACTIVE, serving) " "$summary" || fail "no node was added"
grep -q "^node removed " "$summary" || fail "no node was removed after the drop"
grep -q "lost or wrong: 0$" "$summary" || fail "keys were lost: $(grep lost "$summary")"
grep -q "hot_keys,raise" "$summary" || fail "no hot key was replicated"
grep -qE "^  1 node [0-9]+ ops/s, 2 nodes [0-9]+ ops/s \([0-9.]+x\), 4 nodes [0-9]+ ops/s \([0-9.]+x\)" "$summary" ||
    fail "no scale-out figures: $(grep -A1 scale-out "$summary")"
grep -qE "^decisions: [0-9]+ in [0-9.]+ min of load, [0-9.]+ per minute" "$summary" ||
    fail "no decisions per minute"

csv=$tmp/out/autoscale.csv
head -n 1 "$csv" | grep -q "^t_s,time_unix,phase,target_ops_per_sec,ops_per_sec,p50_us,p99_us,errors,memory_nodes,hot_keys,hot_key_replicas,client_p99_us,cpu_used_cores,cpu_allotted_cores,decisions$" ||
    fail "the CSV header is wrong: $(head -n 1 "$csv")"
for ph in low high hot; do
    [ "$(awk -F, -v p="$ph" '$3 == p' "$csv" | wc -l)" -ge 5 ] || fail "the CSV lacks the $ph phase"
done
# Every node's CPU is sampled, and the tier never used more than it was
# allotted (the quota holds; a little slack for the sampling).
awk -F, 'NR > 1 && $3 == "high" && $13 != "" { n++; if ($13 + 0 > 1.25 * $14 + 0.05) bad++ }
         END { exit !(n >= 5 && !bad) }' "$csv" ||
    fail "CPU use per second is missing or above the allotment"
# The node count over time goes 1 -> 2 or more -> back down to 1.
awk -F, 'NR > 1 && $9 != "" { if (!first) first = $9; if ($9 > top) top = $9; last = $9 }
         END { exit !(first == 1 && top >= 2 && last == 1) }' "$csv" ||
    fail "memory nodes over time do not go 1 -> 2+ -> 1"
[ "$(head -c 8 "$tmp/out/autoscale.png" | od -An -c | tr -d ' ')" = '211PNG\r\n032\n' ] ||
    fail "autoscale.png is not a PNG"

# Nothing of the run is left.
left=$(pgrep -f "$tmp/out/cluster" || true)
[ -z "$left" ] || fail "processes left behind: $left"
echo "ok: $(tr '\n' ';' <"$summary")"
