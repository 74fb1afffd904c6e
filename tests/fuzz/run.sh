#!/usr/bin/env bash
# Fuzzing campaign: builds the libFuzzer harnesses with clang-14 (ASan +
# UBSan) into build-fuzz/ and runs each for SECONDS (default 60), starting
# from the committed corpus: the tests fuzz_<harness> of that build
# (tests/fuzz/fuzz_one.sh), two at a time on two cores. A crash is saved
# under tests/fuzz/regressions/<harness>/ so that the test suite replays it
# from then on; the script exits non-zero when any harness found one.
#   tests/fuzz/run.sh [SECONDS] [HARNESS...]
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
root=$(pwd)
secs=${1:-60}
shift || true
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(kvs_request router merge config resp frame)
jobs=${TRELLIS_JOBS:-$(nproc)}

bash deploy/install-deps.sh || exit 1
command -v clang-14 >/dev/null || { echo "fuzz: clang-14 is missing" >&2; exit 1; }
CC=clang-14 CXX=clang++-14 cmake -S "$root" -B build-fuzz -DTRELLIS_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTRELLIS_FUZZ_SECONDS="$secs" >build-fuzz.configure.log 2>&1 ||
    { cat build-fuzz.configure.log; exit 1; }
targets=()
for h in "${harnesses[@]}"; do targets+=(--target "fuzz_$h"); done
cmake --build build-fuzz -j "$jobs" "${targets[@]}" 2>&1 | grep -E "error|warning"
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "fuzz: build failed" >&2; exit 1; }
pattern=$(IFS='|'; echo "${harnesses[*]}")
ctest --test-dir build-fuzz -L fuzz -R "^fuzz_($pattern)\$" -j "$jobs" --output-on-failure
