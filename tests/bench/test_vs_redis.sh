#!/usr/bin/env bash
# tests/bench/test_vs_redis.sh - bench/vs-redis.sh end to end in its quick
# mode (small key count, one repetition, 1 s per workload): it starts
# redis-server and two trellis clusters, runs every workload, prints the
# table and leaves no process behind. Skipped (77) without Redis.
set -euo pipefail

# shellcheck source=tests/support/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/lib.sh"
src=$TS_SRC
tmp=$TS_DIR
ts_need redis-server redis-benchmark redis-cli
ts_ports 1000 # the span of its clusters and redis-server
export TRELLIS_PORT_BASE=$TS_PORT_BASE

rc=0
TMPDIR=$tmp bash "$src/bench/vs-redis.sh" --quick --keys 5000 --out "$tmp/table.md" >"$tmp/out" 2>"$tmp/err" || rc=$?
if [ $rc -ne 0 ]; then
    tail -n 30 "$tmp/err" >&2
    die "vs-redis.sh --quick exited $rc"
fi
cat "$tmp/out"
cmp -s <(head -n "$(wc -l <"$tmp/out")" "$tmp/table.md") "$tmp/out" || die "--out does not hold the table"
for row in "SET, no pipelining" "GET, no pipelining" "50% GET, no batching" "SET, -P 16" \
    "GET, -P 16" "50% GET, batch 16" "after loading 5000 keys" "disk-only cluster"; do
    grep -qF "| $row" "$tmp/out" || die "no row '$row' in the table"
done
# Every throughput cell has a number, and every ratio too; so do the CPU
# and memory rows.
awk -F'|' '/^\| (SET|GET|50%)/ && /p50/ && ($3 !~ /[0-9.]+k/ || $4 !~ /[0-9.]+k/ || $5 !~ /[0-9]/) { print; bad = 1 } END { exit bad }' \
    "$tmp/out" || die "a row lacks a figure"
awk -F'|' '/^\| (SET|GET), / && !/p50/ && ($3 !~ /[0-9]/ || $4 !~ /[0-9]/) { print; bad = 1 } END { exit bad }' \
    "$tmp/out" || die "a CPU row lacks a figure"
grep -q "errors" "$tmp/err" && die "trellis-bench reported errors: $(grep errors "$tmp/err")"
# No process of the run outlives it.
sleep 0.5
if pgrep -f -- "$tmp/" >/dev/null; then
    pgrep -af -- "$tmp/" >&2
    die "processes of the run are still alive"
fi
