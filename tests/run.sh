#!/usr/bin/env bash
# shellcheck disable=SC2317 # build, tests: run by stage
# Installs what is missing, builds trellis, and runs every test, fast ones
# first (docs/testing.md):
#
#   1. unit tests and static checks     (labels unit, lint)
#   2. integration tests                (labels integration, tsan: real
#                                        processes, clusters in one process)
#   3. cluster tests                    (labels cluster, chaos: whole clusters,
#                                        the 2-minute chaos schedule)
#   4. AddressSanitizer + UndefinedBehaviorSanitizer: the unit and
#      integration tests again, in build-asan/
#   5. ThreadSanitizer: the concurrency tests (label tsan), in build-tsan/
#   6. fuzzing: each libFuzzer harness for TRELLIS_FUZZ_SECONDS (default
#      30), in build-fuzz/ (label fuzz)
#
#   tests/run.sh            all of it
#   tests/run.sh --quick    stages 1 to 3 without the chaos schedule
#   TRELLIS_JOBS=N          tests run at once (default: CPU count); each
#                           Criterion binary runs its tests one at a time,
#                           so N processes of tests at most
#
# The container image test (label container, minutes of podman builds) runs
# only by hand: ctest --test-dir build -L container, or tests/k8s/test_container.sh.
#
# Every stage runs even when an earlier one failed. Exits non-zero when
# anything failed. The end is the time each stage took, then ctest's
# summary of the first stage that failed (of the last one when none did).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$(pwd)
quick=0
[ "${1:-}" = "--quick" ] && quick=1
jobs=${TRELLIS_JOBS:-$(nproc)}
fuzz_seconds=${TRELLIS_FUZZ_SECONDS:-30}
started=$SECONDS
report=()      # one line per stage
status=0       # 1 once anything failed
tests_failed=0 # 1 once a ctest stage failed
summary=       # the ctest output whose summary closes the run

bash deploy/install-deps.sh || { echo "tests/run.sh: installing dependencies failed" >&2; exit 1; }
report+=("$(printf '%-44s %5d s' "dependencies" $((SECONDS - started)))")

# stage NAME COMMAND...: runs a stage, times it, remembers how it went.
stage() {
    local name=$1 t0=$SECONDS rc=0
    shift
    echo "== $name"
    "$@" || rc=$?
    report+=("$(printf '%-44s %5d s  %s' "$name" $((SECONDS - t0)) "$([ $rc -eq 0 ] && echo ok || echo FAILED)")")
    [ $rc -eq 0 ] || status=1
    return $rc
}

build() { # DIR [TARGET...] -- CMAKE-ARGS...
    local dir=$1 targets=()
    shift
    while [ $# -gt 0 ] && [ "$1" != -- ]; do targets+=(--target "$1"); shift; done
    shift
    mkdir -p "$dir"
    cmake -S "$root" -B "$dir" -DTRELLIS_WERROR=ON "$@" >"$dir.configure.log" 2>&1 ||
        { cat "$dir.configure.log"; return 1; }
    cmake --build "$dir" -j "$jobs" "${targets[@]}" >"$dir.build.log" 2>&1 ||
        { grep -E "error|Error" "$dir.build.log" | head -40; return 1; }
}

build_fuzz() {
    CC=clang-14 CXX=clang++-14 build build-fuzz fuzz_harnesses -- \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTRELLIS_FUZZ=ON -DTRELLIS_FUZZ_SECONDS="$fuzz_seconds"
}

# tests DIR CTEST-ARGS...: ctest, its output kept for the closing summary.
tests() {
    local dir=$1 out rc=0
    shift
    out=$(mktemp)
    ctest --test-dir "$dir" --output-on-failure -j "$jobs" "$@" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    # The closing summary: of the first stage that failed, else of the last.
    if [ "$tests_failed" -eq 0 ]; then summary=$(cat "$out"); fi
    [ "$rc" -eq 0 ] || tests_failed=1
    rm -f "$out"
    return "$rc"
}

stage "build (RelWithDebInfo)" build build -- -DCMAKE_BUILD_TYPE=RelWithDebInfo ||
    { echo "build failed" >&2; exit 1; }
stage "unit tests and static checks (unit, lint)" tests build -L 'unit|lint'
stage "integration tests (integration, tsan)" tests build -L 'integration|tsan'
if [ $quick -eq 1 ]; then
    stage "cluster tests (cluster)" tests build -L cluster
else
    stage "cluster tests (cluster, chaos)" tests build -L 'cluster|chaos'

    # -O2 with the sanitizers: several times faster than -O0, and what they
    # find is the same. The daemons the tests start are the sanitized ones.
    if stage "build (ASan + UBSan)" build build-asan -- -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DTRELLIS_SANITIZE=ON; then
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            stage "ASan + UBSan (unit, integration)" tests build-asan -L 'unit|integration'
    fi

    # Criterion binaries cannot run under ThreadSanitizer: only the plain
    # executables labelled tsan are built (target tsan_tests) and run.
    if stage "build (ThreadSanitizer)" build build-tsan tsan_tests -- \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTRELLIS_TSAN=ON; then
        stage "ThreadSanitizer (tsan)" tests build-tsan -L tsan
    fi

    # The libFuzzer harnesses (clang-14, ASan + UBSan), each from the
    # committed corpus; a crash is saved under tests/fuzz/regressions/.
    if stage "build (fuzzing, clang)" build_fuzz; then
        stage "fuzzing (fuzz, $fuzz_seconds s per harness)" tests build-fuzz -L fuzz
    fi
fi

echo
echo "== tests/run.sh took $((SECONDS - started)) s on $(nproc) CPUs (load average now $(cut -d' ' -f1-3 /proc/loadavg)):"
printf '   %s\n' "${report[@]}"
# ctest's summary closes the output.
echo
awk '/tests passed|tests failed out of/ { p = 1 } p' <<<"$summary"
exit $status
