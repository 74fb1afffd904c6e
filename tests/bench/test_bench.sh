#!/usr/bin/env bash
# tests/bench/test_bench.sh - trellis-bench against a small local cluster:
# usage errors, --load then --json (parsed; no errors, every read hits),
# --csv with --phases (the columns, one row per interval, the target rates
# roughly honoured), --rate, --ops, synchronous callers, batches, zipfian
# keys and every lattice type.
#
# Runs in its own temporary TRELLIS_HOME and port range (tests/support/
# lib.sh), so it runs in parallel with other tests; stops the cluster
# whatever happens. Uses the binaries in TRELLIS_BIN (default build/bin).
set -euo pipefail

# shellcheck source=tests/support/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/lib.sh"
bench=$TRELLIS_BIN/trellis-bench
tmp=$TS_DIR

# The value of a number field of the JSON object on the last line of a file.
jnum() { # key file
    tail -n 1 "$2" | sed -nE "s/.*\"$1\":(-?[0-9.]+).*/\1/p"
}

# Checks a run's JSON: errors 0 and sane percentiles; prints ops/s.
check_json() { # file what
    local errors p50 p99 p999 ops
    errors=$(jnum errors "$1")
    p50=$(jnum p50_us "$1")
    p99=$(jnum p99_us "$1")
    p999=$(jnum p999_us "$1")
    ops=$(jnum ops "$1")
    if [ -z "$errors" ] || [ -z "$p50" ] || [ -z "$ops" ]; then
        die "$2: no JSON summary: $(tail -n 3 "$1")"
    fi
    [ "$errors" = 0 ] || die "$2: $errors errors: $(tail -n 1 "$1")"
    [ "$ops" -gt 0 ] || die "$2: no operations"
    if [ "$p50" -gt "$p99" ] || [ "$p99" -gt "$p999" ]; then
        die "$2: percentiles out of order: $p50 $p99 $p999"
    fi
}

[ -x "$bench" ] || die "$bench is missing (build first)"

step "usage"
"$bench" --help >"$tmp/out" || die "--help failed"
grep -q -- '--read-ratio' "$tmp/out" || die "--help does not describe --read-ratio"
for args in "--clients 0" "--read-ratio 2" "--lattice NOPE" "--phases 3" "--batch x" "stray"; do
    rc=0
    # shellcheck disable=SC2086
    "$bench" $args >/dev/null 2>&1 || rc=$?
    [ $rc -eq 2 ] || die "'$args' exited $rc, expected 2"
done

step "cluster up (1 memory node, 2 shards)"
ts_cs_up --memory 1 --disk 0 --threads 2
url=$(awk '$1 == "router" { print $2 }' <<<"$TS_CS_OUT")
[ -n "$url" ] || die "no router URL in: $TS_CS_OUT"
common=(-r "$url" --keys 2000 --warmup 0 --quiet)

step "--load, then 50% reads for 2 s with --json"
"$bench" "${common[@]}" --load --clients 8 --duration 2 --json >"$tmp/json.out" 2>"$tmp/json.err" ||
    die "trellis-bench exited $?: $(cat "$tmp/json.err")"
grep -q "loaded 2000 keys" "$tmp/json.err" || die "no load report: $(cat "$tmp/json.err")"
check_json "$tmp/json.out" "--json run"
[ "$(jnum misses "$tmp/json.out")" = 0 ] || die "reads missed loaded keys: $(tail -n 1 "$tmp/json.out")"
echo "   $(jnum ops_per_sec "$tmp/json.out") ops/s"

step "--phases with --csv: the columns, one row per interval, the rates"
"$bench" "${common[@]}" --clients 4 --window 2 --phases 1:400,1:1200 --csv "$tmp/run.csv" \
    --json >"$tmp/csv.out" 2>&1 || die "trellis-bench exited $?: $(tail -n 3 "$tmp/csv.out")"
check_json "$tmp/csv.out" "--phases run"
want="time_unix,elapsed_s,phase,target_ops_per_sec,ops,ops_per_sec,reads,writes,misses,errors,p50_us,p99_us,p999_us,max_us,mean_us"
[ "$(head -n 1 "$tmp/run.csv")" = "$want" ] || die "CSV header: $(head -n 1 "$tmp/run.csv")"
rows=$(($(wc -l <"$tmp/run.csv") - 1))
if [ "$rows" -lt 2 ] || [ "$rows" -gt 3 ]; then
    die "$rows CSV rows for 2 s at 1 s intervals"
fi
awk -F, -v now="$(date +%s)" 'NR > 1 && (NF != 15 || $1 < now - 120 || $1 > now + 5) { bad = 1 } END { exit bad }' \
    "$tmp/run.csv" || die "bad CSV rows: $(cat "$tmp/run.csv")"
awk -F, 'NR == 2 && ($3 != 0 || $4 != 400) { exit 1 } NR == 3 && ($3 != 1 || $4 != 1200) { exit 1 }' \
    "$tmp/run.csv" || die "phases or targets wrong in the CSV: $(cat "$tmp/run.csv")"
ops=$(jnum ops "$tmp/csv.out")
if [ "$ops" -lt 1200 ] || [ "$ops" -gt 2000 ]; then
    die "--phases 1:400,1:1200 did $ops operations, want about 1600"
fi

step "--rate 1500 for 2 s"
"$bench" "${common[@]}" --clients 4 --window 4 --rate 1500 --duration 2 --json >"$tmp/rate.out" 2>&1 ||
    die "trellis-bench exited $?"
check_json "$tmp/rate.out" "--rate run"
rate=$(jnum ops_per_sec "$tmp/rate.out")
awk -v r="$rate" 'BEGIN { exit !(r >= 1500 * 0.7 && r <= 1500 * 1.1) }' || die "--rate 1500 ran at $rate ops/s"
echo "   $rate ops/s"

step "--ops 3000, batches of 8, synchronous callers, zipfian keys"
"$bench" "${common[@]}" --clients 4 --batch 8 --ops 3000 --sync --zipf 0.99 --json >"$tmp/ops.out" 2>&1 ||
    die "trellis-bench exited $?"
check_json "$tmp/ops.out" "--ops run"
ops=$(jnum ops "$tmp/ops.out")
if [ "$ops" -lt 3000 ] || [ "$ops" -gt 3100 ]; then
    die "--ops 3000 did $ops operations"
fi

step "every lattice type"
for t in LWW COUNTER MAX SET ORSET PRIORITY CAUSAL; do
    "$bench" "${common[@]}" --key-prefix "$t:" --lattice "$t" --clients 2 --window 2 --batch 4 \
        --duration 0.5 --json >"$tmp/lat.out" 2>&1 || die "$t: trellis-bench exited $?"
    check_json "$tmp/lat.out" "$t"
done
echo "   LWW COUNTER MAX SET ORSET PRIORITY CAUSAL: no errors"
