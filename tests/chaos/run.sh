#!/usr/bin/env bash
# Runs the chaos test (tests/chaos/chaos.c) outside ctest, for longer
# campaigns and to replay seeds. Needs root (network namespaces).
#
#   tests/chaos/run.sh                      one 2-minute schedule, a fresh seed
#   tests/chaos/run.sh --minutes 30         one 30-minute schedule
#   tests/chaos/run.sh --seed 1234          replays seed 1234's schedule
#   tests/chaos/run.sh --runs 10 --minutes 5
#                                           ten schedules, fresh seeds, stops at
#                                           the first failure
#   tests/chaos/run.sh --regressions        every seed of tests/chaos/seeds.txt, each
#                                           with the length it was found with
#   --keep                                  keeps each run's directory (logs,
#                                           history.txt) even when it passes
#
# Builds trellis-kvs, trellis-route and test_chaos in build/ (or
# $TRELLIS_BUILD) first. Exits non-zero when a run fails; its seed and
# directory are on the last line of its output.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${TRELLIS_BUILD:-$root/build}

minutes=2
runs=1
seed=""
keep=()
regressions=0
while [ $# -gt 0 ]; do
    case "$1" in
    --minutes) minutes=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --keep) keep=(--keep); shift ;;
    --regressions) regressions=1; shift ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" >"$build.configure.log" 2>&1 ||
        { cat "$build.configure.log"; exit 1; }
fi
cmake --build "$build" -j "$(nproc)" --target test_chaos trellis-kvs trellis-route >/dev/null ||
    { echo "run.sh: build failed" >&2; exit 1; }

export TRELLIS_BIN="$build/bin" TRELLIS_SRC="$root"

one() { # seed-or-empty [minutes]
    local args=(--minutes "${2:-$minutes}" "${keep[@]}")
    [ -n "$1" ] && args+=(--seed "$1")
    "$build/bin/test_chaos" "${args[@]}"
}

status=0
if [ $regressions -eq 1 ]; then
    # Each line: SEED MINUTES what it found.
    while read -r s m _; do
        case "$s" in '' | '#'*) continue ;; esac
        echo "== regression seed $s ($m minutes)"
        one "$s" "$m" || { status=1; break; }
    done <"$here/seeds.txt"
    exit $status
fi
for i in $(seq 1 "$runs"); do
    [ "$runs" -gt 1 ] && echo "== run $i of $runs"
    one "$seed"
    rc=$?
    [ $rc -eq 77 ] && exit 77
    [ $rc -ne 0 ] && { status=1; break; }
done
exit $status
