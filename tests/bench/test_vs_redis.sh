#!/usr/bin/env bash
# tests/bench/test_vs_redis.sh - bench/vs-redis.sh end to end in its quick
# mode (small key count, one repetition, 1 s per workload): it starts
# redis-server and two trellis clusters, runs every workload, prints the
# table and leaves no process behind. Skipped (77) without Redis.
set -euo pipefail

src=${TRELLIS_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export TRELLIS_BIN=${TRELLIS_BIN:-$src/build/bin}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/trellis-vs-redis-test.XXXXXX")
started=$SECONDS

cleanup() {
    local rc=$?
    rm -rf "$tmp"
    echo "bench_vs_redis: $([ $rc -eq 0 ] && echo passed || echo FAILED) in $((SECONDS - started)) s"
    exit $rc
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

for p in redis-server redis-benchmark redis-cli; do
    if ! command -v "$p" >/dev/null; then
        echo "SKIP: $p is not installed"
        exit 77
    fi
done

rc=0
bash "$src/bench/vs-redis.sh" --quick --keys 5000 --out "$tmp/table.md" >"$tmp/out" 2>"$tmp/err" || rc=$?
if [ $rc -ne 0 ]; then
    tail -n 30 "$tmp/err" >&2
    fail "vs-redis.sh --quick exited $rc"
fi
cat "$tmp/out"
cmp -s <(head -n "$(wc -l <"$tmp/out")" "$tmp/table.md") "$tmp/out" || fail "--out does not hold the table"
for row in "SET, no pipelining" "GET, no pipelining" "50% GET, no batching" "SET, -P 16" \
    "GET, -P 16" "50% GET, batch 16" "after loading 5000 keys" "disk-only cluster"; do
    grep -qF "| $row" "$tmp/out" || fail "no row '$row' in the table"
done
# Every throughput cell has a number, and every ratio too; so do the CPU
# and memory rows.
awk -F'|' '/^\| (SET|GET|50%)/ && /p50/ && ($3 !~ /[0-9.]+k/ || $4 !~ /[0-9.]+k/ || $5 !~ /[0-9]/) { print; bad = 1 } END { exit bad }' \
    "$tmp/out" || fail "a row lacks a figure"
awk -F'|' '/^\| (SET|GET), / && !/p50/ && ($3 !~ /[0-9]/ || $4 !~ /[0-9]/) { print; bad = 1 } END { exit bad }' \
    "$tmp/out" || fail "a CPU row lacks a figure"
grep -q "errors" "$tmp/err" && fail "trellis-bench reported errors: $(grep errors "$tmp/err")"
# No process of the run outlives it.
sleep 0.5
if pgrep -f -- "trellis-vs-redis\." >/dev/null; then
    pgrep -af -- "trellis-vs-redis\." >&2
    fail "processes of the run are still alive"
fi
