#!/usr/bin/env bash
# loop_paused.sh [RUNS] [BUILD_DIR] - runs client::paused_node_times_out RUNS
# times in a row (default 200): a storage node is paused (SIGSTOP) under a
# client with a 600 ms deadline, then resumed, and the client closes while
# the resumed node flushes its replies - the close that used to wedge nng
# 1.5.2 (docs/operations.md). Each run is bounded (90 s); the loop stops at
# the first failure or hang and says which run it was. Not part of the
# suite: it takes minutes.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
runs=${1:-200}
build=${2:-$root/build}
exe=$build/bin/test_client
[[ $runs =~ ^[0-9]+$ && $runs -gt 0 ]] || { echo "usage: $0 [RUNS] [BUILD_DIR]" >&2; exit 2; }
[[ -x $exe ]] || { echo "loop_paused: $exe is missing (build first)" >&2; exit 2; }
export TRELLIS_BIN=$build/bin TRELLIS_SRC=$root
log=$(mktemp)
trap 'rm -f "$log"' EXIT
longest=0
start=$(date +%s%N)
for ((i = 1; i <= runs; i++)); do
    t0=$(date +%s%N)
    timeout -k 5 90 "$exe" --filter 'client/paused_node_times_out' --jobs=1 >"$log" 2>&1
    rc=$?
    ms=$((($(date +%s%N) - t0) / 1000000))
    ((ms > longest)) && longest=$ms
    if [[ $rc -ne 0 ]] || ! grep -q 'Passing: 1' "$log"; then
        tail -40 "$log"
        [[ $rc -eq 124 || $rc -eq 137 ]] && what="hung (killed after 90 s)" || what="failed (status $rc)"
        echo "loop_paused: run $i of $runs $what; $((i - 1)) passed before it"
        exit 1
    fi
done
total=$((($(date +%s%N) - start) / 1000000000))
echo "loop_paused: client::paused_node_times_out passed $runs of $runs runs in a row" \
    "(${total} s, longest run ${longest} ms)"
