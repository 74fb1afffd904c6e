#!/usr/bin/env bash
# tests/bench/test_membership.sh - bench/membership.sh end to end, one run
# of its quick mode: a memory node joins and departs, idle and under load,
# and every figure (join and departure times, write rates, their ratio) is
# there; bad arguments are usage errors.
set -euo pipefail

# shellcheck source=tests/support/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/lib.sh"
src=$TS_SRC
tmp=$TS_DIR
ts_ports 1000 # the script's clusters take base .. base + 900
export TRELLIS_PORT_BASE=$TS_PORT_BASE

for args in "--runs 0" "--keys x" "--bogus"; do
    rc=0
    # shellcheck disable=SC2086 # the arguments split on purpose
    bash "$src/bench/membership.sh" $args --out "$tmp/bad" >/dev/null 2>&1 || rc=$?
    [ $rc -eq 2 ] || die "$args exited $rc, not 2"
done

rc=0
TMPDIR=$tmp bash "$src/bench/membership.sh" --quick --runs 1 --out "$tmp/out" \
    >"$tmp/stdout" 2>"$tmp/stderr" || rc=$?
cat "$tmp/stdout"
if [ $rc -ne 0 ]; then
    tail -n 30 "$tmp/stderr" >&2
    die "membership.sh --quick exited $rc"
fi
grep -qE '^  ratio [0-9.]+$' "$tmp/out/runs.txt" || die "no throughput ratio in runs.txt"
