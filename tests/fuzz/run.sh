#!/usr/bin/env bash
# Fuzzing campaign: builds the libFuzzer harnesses with clang-14 (ASan +
# UBSan) into build-fuzz/ and runs each for SECONDS (default 60), starting
# from the committed corpus. A crash is saved under
# tests/fuzz/regressions/<harness>/ so that the test suite replays it from
# then on; the script exits non-zero when any harness found one.
#   tests/fuzz/run.sh [SECONDS] [HARNESS...]
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
secs=${1:-60}
shift || true
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(kvs_request router merge config resp frame)
jobs=${TRELLIS_JOBS:-$(nproc)}

bash deploy/install-deps.sh || exit 1
command -v clang-14 >/dev/null || { echo "fuzz: clang-14 is missing" >&2; exit 1; }
CC=clang-14 CXX=clang++-14 cmake -S "$root" -B build-fuzz -DTRELLIS_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >build-fuzz.configure.log 2>&1 ||
    { cat build-fuzz.configure.log; exit 1; }
targets=()
for h in "${harnesses[@]}"; do targets+=(--target "fuzz_$h"); done
cmake --build build-fuzz -j "$jobs" "${targets[@]}" 2>&1 | grep -E "error|warning"
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "fuzz: build failed" >&2; exit 1; }

status=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run_one() {
    local h=$1
    local corpus="$work/$h"
    mkdir -p "$corpus" "tests/fuzz/regressions/$h"
    cp tests/fuzz/corpus/"$h"/* "$corpus"/ 2>/dev/null
    local log="$work/$h.log"
    # -rss_limit_mb bounds memory; -max_len keeps inputs at message scale.
    ASAN_OPTIONS=detect_leaks=1 build-fuzz/bin/fuzz_"$h" "$corpus" \
        -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="tests/fuzz/regressions/$h/" -print_final_stats=1 >"$log" 2>&1
    local rc=$?
    local runs cov
    runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
    cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+' | awk '{print $2}')
    printf 'fuzz %-12s %4ss  runs %-10s coverage %-6s %s\n' "$h" "$secs" "${runs:-?}" \
        "${cov:-?}" "$([ $rc -eq 0 ] && echo ok || echo FAILED)"
    if [ $rc -ne 0 ]; then
        tail -40 "$log"
        return 1
    fi
}
pids=()
for h in "${harnesses[@]}"; do
    run_one "$h" &
    pids+=($!)
    # Two at a time on two cores.
    if [ ${#pids[@]} -ge "$jobs" ]; then
        wait "${pids[0]}" || status=1
        pids=("${pids[@]:1}")
    fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
