#!/usr/bin/env bash
# Installs what is missing, builds trellis, and runs every test.
#
#   tests/run.sh            the whole suite (unit, integration, cluster), then
#                           the unit and integration tests again under
#                           AddressSanitizer + UndefinedBehaviorSanitizer,
#                           the concurrency tests (label tsan) under
#                           ThreadSanitizer, and the 2-minute chaos run
#                           (label chaos; docs/hardening.md)
#   tests/run.sh --quick    the normal build's suite only
#   TRELLIS_JOBS=N          parallel ctest jobs (default: CPU count)
#
# The container image test (label container, minutes of podman builds) runs
# only by hand: ctest --test-dir build -L container, or tests/k8s/test_container.sh.
#
# Exits non-zero when anything fails. The last lines are ctest's summary.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
quick=0
[ "${1:-}" = "--quick" ] && quick=1
jobs=${TRELLIS_JOBS:-$(nproc)}

bash deploy/install-deps.sh || { echo "tests/run.sh: installing dependencies failed" >&2; exit 1; }

build() { # dir, extra cmake args...
    local dir=$1; shift
    cmake -S "$root" -B "$dir" -DTRELLIS_WERROR=ON "$@" >"$dir.configure.log" 2>&1 ||
        { cat "$dir.configure.log"; return 1; }
    cmake --build "$dir" -j "$jobs" 2>&1 | grep -E "error|warning|Error" ; return "${PIPESTATUS[0]}"
}

status=0
mkdir -p build
echo "== build (RelWithDebInfo)"
build build -DCMAKE_BUILD_TYPE=RelWithDebInfo || { echo "build failed" >&2; exit 1; }

if [ $quick -eq 0 ]; then
    echo "== build (ASan + UBSan)"
    mkdir -p build-asan
    if build build-asan -DCMAKE_BUILD_TYPE=Debug -DTRELLIS_SANITIZE=ON; then
        echo "== tests under ASan + UBSan (labels unit, integration)"
        # Leaks inside nng's own threads are not ours; reports name our frames.
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            ctest --test-dir build-asan -L 'unit|integration' --output-on-failure -j "$jobs" \
            --timeout 600 || status=1
    else
        echo "sanitized build failed" >&2
        status=1
    fi
fi

if [ $quick -eq 0 ]; then
    # Criterion binaries cannot run under ThreadSanitizer: only the plain
    # executables labelled tsan are built (target tsan_tests) and run.
    echo "== build (ThreadSanitizer, label tsan)"
    mkdir -p build-tsan
    if cmake -S "$root" -B build-tsan -DTRELLIS_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
            -DTRELLIS_TSAN=ON -DTRELLIS_TESTS=ON >build-tsan.configure.log 2>&1 &&
        cmake --build build-tsan -j "$jobs" --target tsan_tests >build-tsan.build.log 2>&1; then
        echo "== tests under ThreadSanitizer (label tsan)"
        ctest --test-dir build-tsan -L tsan --output-on-failure --timeout 600 || status=1
    else
        tail -40 build-tsan.configure.log build-tsan.build.log
        echo "ThreadSanitizer build failed" >&2
        status=1
    fi
fi

if [ $quick -eq 0 ]; then
    echo "== fuzzing (${TRELLIS_FUZZ_SECONDS:-30} s per harness)"
    bash tests/fuzz/run.sh "${TRELLIS_FUZZ_SECONDS:-30}" || status=1
fi

echo "== tests"
ctest --test-dir build --output-on-failure -j "$jobs" --timeout 900 -LE 'chaos|container' || status=1

if [ $quick -eq 0 ]; then
    # Alone, so that its timings are its own; needs root for network
    # namespaces and skips without.
    echo "== chaos (label chaos: a 2-minute nemesis schedule)"
    ctest --test-dir build --output-on-failure -L chaos --timeout 600 || status=1
fi
exit $status
