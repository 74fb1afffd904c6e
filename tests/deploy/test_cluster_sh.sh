#!/usr/bin/env bash
# tests/deploy/test_cluster_sh.sh - deploy/cluster.sh from the outside:
# bad arguments, up (1 router, 2 memory, 1 disk), status, a CLI round trip,
# add-node, remove-node (the node leaves, the data stays readable),
# restart-node (a killed disk node comes back with its data and status
# shows it alive again; a removed node comes back), a second up refused,
# down (no process left).
#
# Runs in its own temporary TRELLIS_HOME with a TRELLIS_PORT_BASE of its
# own (tests/support/lib.sh), so it runs in parallel with other tests.
# Uses the binaries in TRELLIS_BIN (default build/bin).
set -euo pipefail

# shellcheck source=tests/support/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/lib.sh"
cs=$TS_CS
tmp=$TS_DIR
export TRELLIS_HOME=$tmp/home TRELLIS_PORT_BASE
ts_ports 1000 # cluster.sh's span
TRELLIS_PORT_BASE=$TS_PORT_BASE

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
        die "'$*' exited $rc, expected $want"
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

for b in trellis-route trellis-kvs trellis-cli; do
    [ -x "$TRELLIS_BIN/$b" ] || die "no $b in $TRELLIS_BIN (build first)"
done

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
    die "a refused command left process records"
run 0 "$cs" --help
grep -q "add-node TIER" <<<"$out" || die "--help does not describe add-node"
if [ ! -x "$TRELLIS_BIN/trellis-monitor" ]; then
    run 1 "$cs" up --monitor
    grep -q "trellis-monitor" <<<"$err" || die "up --monitor without the binary: unclear error: $err"
fi

step "up: 1 router, 2 memory nodes, 1 disk node"
TS_CS_UP=1 # stopped, checked and its logs scanned at exit, whatever happens
rc=0
"$cs" up --routers 1 --memory 2 --disk 1 >"$tmp/out" 2>"$tmp/err" || rc=$?
out=$(cat "$tmp/out")
[ "$rc" -eq 0 ] || die "up exited $rc: $(cat "$tmp/err")"
router_url="tcp://127.0.0.1:$TRELLIS_PORT_BASE"
grep -qx "router $router_url" <<<"$out" || die "up did not print 'router $router_url': $out"

step "status: one line per process, all alive"
run 0 "$cs" status
status_out=$out
[ "$(wc -l <<<"$status_out")" -eq 4 ] || die "expected 4 status lines: $status_out"
[ "$(awk '$1 == "router"' <<<"$status_out" | wc -l)" -eq 1 ] || die "no router line: $status_out"
[ "$(awk '$1 == "memory"' <<<"$status_out" | wc -l)" -eq 2 ] || die "not 2 memory lines: $status_out"
[ "$(awk '$1 == "disk"' <<<"$status_out" | wc -l)" -eq 1 ] || die "not 1 disk line: $status_out"
[ "$(awk '$NF != "alive"' <<<"$status_out" | wc -l)" -eq 0 ] || die "not all alive: $status_out"
pids=$(awk '{ print $3 }' <<<"$status_out")
for pid in $pids; do
    kill -0 "$pid" 2>/dev/null || die "pid $pid from status is not running"
done
mem0="m$((TRELLIS_PORT_BASE + 50))"
grep -q "^memory *$mem0 " <<<"$status_out" || die "no memory node $mem0 in: $status_out"

step "every storage node ACTIVE"
while read -r role id _ ports _; do
    [ "$role" = router ] && continue
    code=$(healthz "$(metrics_of "$ports")")
    [ "$code" = 200 ] || die "$id: /healthz answered $code"
done <<<"$status_out"
[ "$(router_metric memory ACTIVE)" = 2 ] || die "the router does not count 2 ACTIVE memory nodes"
[ "$(router_metric disk ACTIVE)" = 1 ] || die "the router does not count 1 ACTIVE disk node"
run 0 "$cs" cli NODES
nodes=$out
while read -r role id _; do
    [ "$role" = router ] && continue
    [ "$(awk -v id="$id" '$1 == id { print $4 }' <<<"$nodes")" = ACTIVE ] ||
        die "NODES does not show $id ACTIVE: $nodes"
done <<<"$status_out"

step "cli SET/GET round trip"
run 0 "$cs" cli SET greeting "hello world"
[ "$out" = OK ] || die "SET printed '$out'"
run 0 "$cs" cli GET greeting
[ "$out" = "hello world" ] || die "GET printed '$out'"
# Forty more through one session: the CLI reads commands from stdin.
for i in $(seq 1 40); do echo "SET key$i value$i"; done >"$tmp/sets"
run 0 "$cs" cli <"$tmp/sets"
[ "$(grep -c '^OK$' <<<"$out")" = 40 ] || die "40 SETs printed '$out'"

step "add-node memory"
run 0 "$cs" add-node memory
new_id=$(awk '$1 == "node" { print $2 }' <<<"$out")
[ -n "$new_id" ] || die "add-node printed no 'node ID' line: $out"
run 0 "$cs" status
line=$(awk -v id="$new_id" '$2 == id' <<<"$out")
[ -n "$line" ] || die "status does not list $new_id: $out"
[ "$(awk '{ print $1, $NF }' <<<"$line")" = "memory alive" ] || die "bad status line: $line"
[ "$(healthz "$(metrics_of "$line")")" = 200 ] || die "$new_id is not ACTIVE"
[ "$(router_metric memory ACTIVE)" = 3 ] || die "the router does not count 3 ACTIVE memory nodes"
run 0 "$cs" cli NODES
[ "$(awk -v id="$new_id" '$1 == id { print $4 }' <<<"$out")" = ACTIVE ] ||
    die "NODES does not show $new_id ACTIVE: $out"

step "remove-node $mem0"
mem0_pid=$(awk -v id="$mem0" '$2 == id { print $3 }' <<<"$status_out")
run 0 "$cs" remove-node "$mem0"
! kill -0 "$mem0_pid" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$mem0_pid/stat" 2>/dev/null)" = Z ] ||
    die "$mem0 (pid $mem0_pid) still runs after remove-node"
run 0 "$cs" status
[ -z "$(awk -v id="$mem0" '$2 == id' <<<"$out")" ] || die "status still lists $mem0: $out"
[ "$(router_metric memory LEFT)" = 1 ] || die "the router does not count 1 LEFT memory node"
run 2 "$cs" remove-node nosuchnode
run 0 "$cs" cli NODES
[ "$(awk -v id="$mem0" '$1 == id { print $4 }' <<<"$out")" = LEFT ] ||
    die "NODES does not show $mem0 LEFT: $out"
run 0 "$cs" cli GET greeting
[ "$out" = "hello world" ] || die "after remove-node GET greeting printed '$out'"
for i in $(seq 1 40); do echo "GET key$i"; done >"$tmp/gets"
run 0 "$cs" cli <"$tmp/gets"
[ "$out" = "$(for i in $(seq 1 40); do echo "value$i"; done)" ] ||
    die "after remove-node the 40 GETs printed '$out'"

step "restart-node: a killed disk node comes back with its data, a removed node comes back"
disk0="d$((TRELLIS_PORT_BASE + 450))"
run 0 "$cs" status
disk_line=$(awk -v id="$disk0" '$2 == id' <<<"$out")
disk_pid=$(awk '{ print $3 }' <<<"$disk_line")
[ -n "$disk_pid" ] || fail "no disk node $disk0 in: $out"
disk_keys() { # the keys the disk node reports holding
    curl -s -m 2 "http://127.0.0.1:$(metrics_of "$disk_line")/metrics" |
        awk '$1 ~ /^trellis_keys\{/ { n += $2 } END { print n + 0 }'
}
keys_before=$(disk_keys)
[ "$keys_before" -gt 0 ] || fail "the disk node reports no keys before it is killed"
run 1 "$cs" restart-node "$disk0"
grep -q "is running" <<<"$err" || fail "restart-node of a running node: unclear error: $err"
run 2 "$cs" restart-node nosuchnode
run 2 "$cs" restart-node
kill -KILL "$disk_pid"
for _ in $(seq 1 50); do
    kill -0 "$disk_pid" 2>/dev/null || break
    sleep 0.1
done
run 1 "$cs" status
[ "$(awk -v id="$disk0" '$2 == id { print $NF }' <<<"$out")" = dead ] ||
    fail "status does not show the killed $disk0 dead: $out"
run 0 "$cs" restart-node "$disk0"
grep -qx "node $disk0" <<<"$out" || fail "restart-node printed no 'node $disk0' line: $out"
run 0 "$cs" status
disk_line=$(awk -v id="$disk0" '$2 == id' <<<"$out")
[ "$(awk '{ print $NF }' <<<"$disk_line")" = alive ] || fail "$disk0 is not alive again: $out"
[ "$(awk '{ print $3 }' <<<"$disk_line")" != "$disk_pid" ] || fail "$disk0 kept its old pid"
# The gauge is published once per kvs.stats_period_ms (1 s here): a node
# just started reports 0 until its first period ends.
for _ in $(seq 1 30); do
    keys_after=$(disk_keys)
    [ "$keys_after" -lt "$keys_before" ] || break
    sleep 0.1
done
[ "$keys_after" -ge "$keys_before" ] ||
    fail "$disk0 came back with $keys_after keys, had $keys_before"
run 0 "$cs" restart-node "$mem0"
run 0 "$cs" status
[ "$(awk -v id="$mem0" '$2 == id { print $NF }' <<<"$out")" = alive ] ||
    fail "the removed $mem0 did not come back: $out"
run 0 "$cs" cli GET greeting
[ "$out" = "hello world" ] || fail "after restart-node GET greeting printed '$out'"

step "up while running is refused"
run 0 "$cs" status
before=$out
rc=0
"$cs" up --memory 1 --disk 0 >"$tmp/out" 2>"$tmp/err" || rc=$?
[ $rc -ne 0 ] || die "a second up succeeded"
grep -q "already running" "$tmp/err" || die "a second up: unclear error: $(cat "$tmp/err")"
run 0 "$cs" status
[ "$out" = "$before" ] || die "a refused up changed the cluster: $before / $out"

step "logs"
run 0 "$cs" logs
grep -q "^==> r$TRELLIS_PORT_BASE <==" <<<"$out" || die "logs shows no router log"
run 0 "$cs" logs "$new_id"
grep -q "ACTIVE" <<<"$out" || die "the log of $new_id does not show it ACTIVE"
run 2 "$cs" logs nosuchlog

step "down"
all_pids=$(awk '{ print $3 }' <<<"$before")
run 0 "$cs" down
for pid in $all_pids $mem0_pid; do
    if kill -0 "$pid" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
        die "pid $pid still runs after down"
    fi
done
left=$(pgrep -f -- "$TRELLIS_HOME/" || true)
[ -z "$left" ] || die "processes of the cluster left after down: $left"
run 1 "$cs" status
run 0 "$cs" down
