#!/usr/bin/env bash
# tests/fuzz/fuzz_one.sh HARNESS EXECUTABLE SECONDS - one libFuzzer
# campaign, the fuzz_<harness> test of a -DTRELLIS_FUZZ=ON build: from a
# copy of the committed corpus, for SECONDS. A crash is saved under
# tests/fuzz/regressions/<harness>/, so that the replay tests (label unit)
# run it from then on; the status is then non-zero.
set -uo pipefail
h=${1:?usage: fuzz_one.sh HARNESS EXECUTABLE SECONDS}
exe=${2:?usage: fuzz_one.sh HARNESS EXECUTABLE SECONDS}
secs=${3:?usage: fuzz_one.sh HARNESS EXECUTABLE SECONDS}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/trellis-fuzz-$h.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$here/regressions/$h"
cp "$here/corpus/$h"/* "$work/corpus/" 2>/dev/null
# -rss_limit_mb bounds memory; -max_len keeps inputs at message scale.
ASAN_OPTIONS=detect_leaks=1 "$exe" "$work/corpus" -max_total_time="$secs" -max_len=65536 \
    -rss_limit_mb=2048 -timeout=10 -artifact_prefix="$here/regressions/$h/" \
    -print_final_stats=1 >"$work/log" 2>&1
rc=$?
runs=$(awk '/^stat::number_of_executed_units/ { print $2 }' "$work/log")
cov=$(grep -E '^#[0-9]+' "$work/log" | tail -1 | grep -oE 'cov: [0-9]+' | awk '{ print $2 }')
printf 'fuzz %-12s %4ss  runs %-10s coverage %-6s %s\n' "$h" "$secs" "${runs:-?}" "${cov:-?}" \
    "$([ $rc -eq 0 ] && echo ok || echo FAILED)"
[ $rc -eq 0 ] || tail -n 40 "$work/log"
exit $rc
