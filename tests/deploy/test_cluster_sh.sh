#!/usr/bin/env bash
# tests/deploy/test_cluster_sh.sh - deploy/cluster.sh from the outside:
# bad arguments, up (1 router, 2 memory, 1 disk), status, a CLI round trip,
# add-node, remove-node (the node leaves, the data stays readable), a second
# up refused, down (no process left).
#
# Runs in its own temporary TRELLIS_HOME with a TRELLIS_PORT_BASE derived
# from its pid, so it runs in parallel with other tests. Uses the binaries
# in TRELLIS_BIN (default build/bin); the CLI steps are skipped while
# trellis-cli is not built.
set -euo pipefail

src=${TRELLIS_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export TRELLIS_BIN=${TRELLIS_BIN:-$src/build/bin}
cs=$src/deploy/cluster.sh
tmp=$(mktemp -d "${TMPDIR:-/tmp}/trellis-cluster-sh.XXXXXX")
export TRELLIS_HOME=$tmp/home
started=$SECONDS

# Bases 10000..31000, below the kernel's ephemeral ports (32768 and up).
pick_base() { echo $((10000 + (($$ + $1) % 22) * 1000)); }
export TRELLIS_PORT_BASE
TRELLIS_PORT_BASE=$(pick_base 0)

cleanup() {
    local rc=$?
    if [ -d "$TRELLIS_HOME" ]; then
        "$cs" down >/dev/null 2>&1 || true
        # Whatever down missed must not outlive the test.
        local pid
        for pid in $(pgrep -f -- "$TRELLIS_HOME/" 2>/dev/null || true); do
            echo "leftover process $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" >&2
            kill -KILL "$pid" 2>/dev/null || true
            rc=1
        done
    fi
    if [ $rc -ne 0 ] && [ -d "$TRELLIS_HOME/logs" ]; then
        echo "---- logs ($TRELLIS_HOME/logs) ----" >&2
        tail -n 30 "$TRELLIS_HOME"/logs/*.log >&2 || true
    fi
    rm -rf "$tmp"
    echo "cluster_script: $([ $rc -eq 0 ] && echo passed || echo FAILED) in $((SECONDS - started)) s"
    exit $rc
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

step() {
    echo "== [$((SECONDS - started)) s] $*"
}

# run EXPECTED_STATUS CMD...: runs CMD, output in $out/$err, checks the status.
run() {
    local want=$1 rc=0
    shift
    "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    out=$(cat "$tmp/out")
    err=$(cat "$tmp/err")
    if [ "$rc" -ne "$want" ]; then
        echo "stdout: $out" >&2
        echo "stderr: $err" >&2
        fail "'$*' exited $rc, expected $want"
    fi
}

healthz() {
    curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1/healthz" 2>/dev/null || true
}

# The metrics port of a status line's PORTS field.
metrics_of() { sed -n 's/.*metrics=\([0-9]*\).*/\1/p' <<<"$1"; }

router_metric() { # tier state: the router's count of nodes
    curl -s -m 2 "http://127.0.0.1:$((TRELLIS_PORT_BASE + 30))/metrics" |
        awk -v m="trellis_nodes{tier=\"$1\",state=\"$2\"}" '$1 == m { print $2 }'
}

# The CLI steps need a trellis-cli whose --help names its commands.
have_cli=0
cli_why="$TRELLIS_BIN/trellis-cli is not built"
if [ -x "$TRELLIS_BIN/trellis-cli" ]; then
    if "$TRELLIS_BIN/trellis-cli" --help 2>&1 | grep -q NODES; then
        have_cli=1
    else
        cli_why="$TRELLIS_BIN/trellis-cli --help does not list NODES (unfinished CLI)"
    fi
fi
if [ ! -x "$TRELLIS_BIN/trellis-route" ] || [ ! -x "$TRELLIS_BIN/trellis-kvs" ]; then
    fail "no trellis-route/trellis-kvs in $TRELLIS_BIN (build first)"
fi

step "bad arguments exit 2"
run 2 "$cs"
run 2 "$cs" frobnicate
run 2 "$cs" up --memory
run 2 "$cs" up --memory two
run 2 "$cs" up --disk -1
run 2 "$cs" up --routers 0
run 2 "$cs" up --threads 9
run 2 "$cs" up --frobnicate
run 2 "$cs" add-node
run 2 "$cs" add-node ssd
run 2 "$cs" remove-node
run 2 "$cs" status extra
run 2 "$cs" down extra
TRELLIS_PORT_BASE=80 run 2 "$cs" up
[ ! -d "$TRELLIS_HOME/run" ] || [ -z "$(ls -A "$TRELLIS_HOME/run")" ] ||
    fail "a refused command left process records"
run 0 "$cs" --help
grep -q "add-node TIER" <<<"$out" || fail "--help does not describe add-node"
if [ ! -x "$TRELLIS_BIN/trellis-monitor" ]; then
    run 1 "$cs" up --monitor
    grep -q "trellis-monitor" <<<"$err" || fail "up --monitor without the binary: unclear error: $err"
fi

step "up: 1 router, 2 memory nodes, 1 disk node"
for attempt in 1 2 3; do
    rc=0
    "$cs" up --routers 1 --memory 2 --disk 1 >"$tmp/out" 2>"$tmp/err" || rc=$?
    if [ "$rc" -eq 0 ] || [ $attempt -eq 3 ] || ! grep -q "already in use" "$tmp/err"; then
        break
    fi
    TRELLIS_PORT_BASE=$(pick_base "$attempt")
    echo "ports taken; trying base $TRELLIS_PORT_BASE"
done
out=$(cat "$tmp/out")
[ "$rc" -eq 0 ] || fail "up exited $rc: $(cat "$tmp/err")"
router_url="tcp://127.0.0.1:$TRELLIS_PORT_BASE"
grep -qx "router $router_url" <<<"$out" || fail "up did not print 'router $router_url': $out"

step "status: one line per process, all alive"
run 0 "$cs" status
status_out=$out
[ "$(wc -l <<<"$status_out")" -eq 4 ] || fail "expected 4 status lines: $status_out"
[ "$(awk '$1 == "router"' <<<"$status_out" | wc -l)" -eq 1 ] || fail "no router line: $status_out"
[ "$(awk '$1 == "memory"' <<<"$status_out" | wc -l)" -eq 2 ] || fail "not 2 memory lines: $status_out"
[ "$(awk '$1 == "disk"' <<<"$status_out" | wc -l)" -eq 1 ] || fail "not 1 disk line: $status_out"
[ "$(awk '$NF != "alive"' <<<"$status_out" | wc -l)" -eq 0 ] || fail "not all alive: $status_out"
pids=$(awk '{ print $3 }' <<<"$status_out")
for pid in $pids; do
    kill -0 "$pid" 2>/dev/null || fail "pid $pid from status is not running"
done
mem0="m$((TRELLIS_PORT_BASE + 50))"
grep -q "^memory *$mem0 " <<<"$status_out" || fail "no memory node $mem0 in: $status_out"

step "every storage node ACTIVE"
while read -r role id _ ports _; do
    [ "$role" = router ] && continue
    code=$(healthz "$(metrics_of "$ports")")
    [ "$code" = 200 ] || fail "$id: /healthz answered $code"
done <<<"$status_out"
[ "$(router_metric memory ACTIVE)" = 2 ] || fail "the router does not count 2 ACTIVE memory nodes"
[ "$(router_metric disk ACTIVE)" = 1 ] || fail "the router does not count 1 ACTIVE disk node"
if [ $have_cli -eq 1 ]; then
    run 0 "$cs" cli NODES
    nodes=$out
    while read -r role id _; do
        [ "$role" = router ] && continue
        [ "$(awk -v id="$id" '$1 == id { print $4 }' <<<"$nodes")" = ACTIVE ] ||
            fail "NODES does not show $id ACTIVE: $nodes"
    done <<<"$status_out"
fi

step "cli SET/GET round trip"
if [ $have_cli -eq 1 ]; then
    run 0 "$cs" cli SET greeting "hello world"
    [ "$out" = OK ] || fail "SET printed '$out'"
    run 0 "$cs" cli GET greeting
    [ "$out" = "hello world" ] || fail "GET printed '$out'"
    for i in $(seq 1 40); do
        run 0 "$cs" cli SET "key$i" "value$i"
    done
else
    echo "skipped: $cli_why"
fi

step "add-node memory"
run 0 "$cs" add-node memory
new_id=$(awk '$1 == "node" { print $2 }' <<<"$out")
[ -n "$new_id" ] || fail "add-node printed no 'node ID' line: $out"
run 0 "$cs" status
line=$(awk -v id="$new_id" '$2 == id' <<<"$out")
[ -n "$line" ] || fail "status does not list $new_id: $out"
[ "$(awk '{ print $1, $NF }' <<<"$line")" = "memory alive" ] || fail "bad status line: $line"
[ "$(healthz "$(metrics_of "$line")")" = 200 ] || fail "$new_id is not ACTIVE"
[ "$(router_metric memory ACTIVE)" = 3 ] || fail "the router does not count 3 ACTIVE memory nodes"
if [ $have_cli -eq 1 ]; then
    run 0 "$cs" cli NODES
    [ "$(awk -v id="$new_id" '$1 == id { print $4 }' <<<"$out")" = ACTIVE ] ||
        fail "NODES does not show $new_id ACTIVE: $out"
fi

step "remove-node $mem0"
mem0_pid=$(awk -v id="$mem0" '$2 == id { print $3 }' <<<"$status_out")
run 0 "$cs" remove-node "$mem0"
! kill -0 "$mem0_pid" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$mem0_pid/stat" 2>/dev/null)" = Z ] ||
    fail "$mem0 (pid $mem0_pid) still runs after remove-node"
run 0 "$cs" status
[ -z "$(awk -v id="$mem0" '$2 == id' <<<"$out")" ] || fail "status still lists $mem0: $out"
[ "$(router_metric memory LEFT)" = 1 ] || fail "the router does not count 1 LEFT memory node"
run 2 "$cs" remove-node nosuchnode
if [ $have_cli -eq 1 ]; then
    run 0 "$cs" cli NODES
    [ "$(awk -v id="$mem0" '$1 == id { print $4 }' <<<"$out")" = LEFT ] ||
        fail "NODES does not show $mem0 LEFT: $out"
    run 0 "$cs" cli GET greeting
    [ "$out" = "hello world" ] || fail "after remove-node GET greeting printed '$out'"
    for i in $(seq 1 40); do
        run 0 "$cs" cli GET "key$i"
        [ "$out" = "value$i" ] || fail "after remove-node GET key$i printed '$out'"
    done
else
    echo "data check skipped: $cli_why"
fi

step "up while running is refused"
run 0 "$cs" status
before=$out
rc=0
"$cs" up --memory 1 --disk 0 >"$tmp/out" 2>"$tmp/err" || rc=$?
[ $rc -ne 0 ] || fail "a second up succeeded"
grep -q "already running" "$tmp/err" || fail "a second up: unclear error: $(cat "$tmp/err")"
run 0 "$cs" status
[ "$out" = "$before" ] || fail "a refused up changed the cluster: $before / $out"

step "logs"
run 0 "$cs" logs
grep -q "^==> r$TRELLIS_PORT_BASE <==" <<<"$out" || fail "logs shows no router log"
run 0 "$cs" logs "$new_id"
grep -q "ACTIVE" <<<"$out" || fail "the log of $new_id does not show it ACTIVE"
run 2 "$cs" logs nosuchlog

step "down"
all_pids=$(awk '{ print $3 }' <<<"$before")
run 0 "$cs" down
for pid in $all_pids $mem0_pid; do
    if kill -0 "$pid" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
        fail "pid $pid still runs after down"
    fi
done
left=$(pgrep -f -- "$TRELLIS_HOME/" || true)
[ -z "$left" ] || fail "processes of the cluster left after down: $left"
run 1 "$cs" status
run 0 "$cs" down
