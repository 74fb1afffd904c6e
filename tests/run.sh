#!/usr/bin/env bash
# shellcheck disable=SC2317 # build, tests: run by stage
# Installs what is missing, builds trellis, and runs every test once, fast
# ones first, each in the build where it finds the most (docs/testing.md):
#
#   1. unit tests and static checks     (labels unit, lint)
#   2. integration tests under AddressSanitizer + UndefinedBehaviorSanitizer
#                                       (labels unit, integration, tsan: real
#                                        processes, the sanitized daemons;
#                                        the unit tests again), in build-asan/
#   3. cluster tests and benchmarks     (labels cluster, bench, chaos: whole
#                                        clusters, timing, which sanitizers
#                                        distort; a 30-second chaos schedule)
#   4. ThreadSanitizer: the concurrency tests (label tsan), in build-tsan/
#   5. fuzzing: each libFuzzer harness for TRELLIS_FUZZ_SECONDS (default
#      5), in build-fuzz/ (label fuzz)
#
#   tests/run.sh            all of it
#   tests/run.sh --quick    no sanitizers, no chaos, no fuzzing: the unit,
#                           integration, cluster and benchmark tests of the
#                           plain build
#   TRELLIS_JOBS=N          tests run at once (default: CPU count); each
#                           Criterion binary runs its tests one at a time,
#                           so N processes of tests at most
#
# Long runs have scripts of their own: tests/chaos/run.sh (chaos
# campaigns), tests/fuzz/run.sh (fuzzing campaigns), bench/ (benchmarks).
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
fuzz_seconds=${TRELLIS_FUZZ_SECONDS:-5}
started=$SECONDS
report=()      # one line per stage
status=0       # 1 once anything failed
tests_failed=0 # 1 once a ctest stage failed
summary=       # the ctest output whose summary closes the run

bash deploy/install-deps.sh || { echo "tests/run.sh: installing dependencies failed" >&2; exit 1; }
report+=("$(printf '%-58s %5d s' "dependencies" $((SECONDS - started)))")

# stage NAME COMMAND...: runs a stage, times it, remembers how it went.
stage() {
    local name=$1 t0=$SECONDS rc=0
    shift
    echo "== $name"
    "$@" || rc=$?
    report+=("$(printf '%-58s %5d s  %s' "$name" $((SECONDS - t0)) "$([ $rc -eq 0 ] && echo ok || echo FAILED)")")
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

# The sanitizer and fuzzing builds use build/'s nng (cmake/nng.cmake): it is
# built without this project's flags in every build, so once is enough.
nng_from=(-DTRELLIS_NNG_FROM="$root/build")

build_fuzz() {
    CC=clang-14 CXX=clang++-14 build build-fuzz fuzz_harnesses -- "${nng_from[@]}" \
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
if [ $quick -eq 1 ]; then
    stage "integration tests (integration, tsan)" tests build -L 'integration|tsan'
    stage "cluster tests and benchmarks (cluster, bench)" tests build -L 'cluster|bench'
else
    # The integration tests run once, under the sanitizers: the daemons they
    # start are the sanitized ones. -O2 with the sanitizers: several times
    # faster than -O0, and what they find is the same.
    if stage "build (ASan + UBSan)" build build-asan -- "${nng_from[@]}" \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTRELLIS_SANITIZE=ON; then
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            stage "integration tests, ASan + UBSan (unit, integration, tsan)" \
            tests build-asan -L 'unit|integration|tsan'
    fi

    # What measures time runs in the plain build: the sanitizers distort it.
    stage "cluster tests and benchmarks (cluster, bench, chaos)" tests build -L 'cluster|bench|chaos'

    # Criterion binaries cannot run under ThreadSanitizer: only the plain
    # executables labelled tsan are built (target tsan_tests) and run.
    if stage "build (ThreadSanitizer)" build build-tsan tsan_tests -- "${nng_from[@]}" \
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
