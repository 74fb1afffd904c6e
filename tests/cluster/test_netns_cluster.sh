#!/usr/bin/env bash
# tests/cluster/test_netns_cluster.sh - deploy/netns-cluster.sh end to end:
# up (two routers, two memory nodes, a disk node, each in a namespace of
# its own), status, the CLI from the hub, a partition that makes each
# side's router mark the other side's node DEAD, healing (the nodes rejoin),
# kill and start of one host, and down, after which no namespace and no
# process of the cluster is left. As a user other than root the script
# refuses with exit status 77 and says why; without root this test is
# skipped (exit 77).
set -uo pipefail

# shellcheck source=tests/support/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/lib.sh"
script=$TS_SRC/deploy/netns-cluster.sh

pass() { echo "ok - $*"; }
check() { # description command... : passes when the command succeeds
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}

export TRELLIS_NETNS_PREFIX=tn$(($$ % 1000000))
export TRELLIS_NETNS_SUBNET=10.231.9
export TRELLIS_START_TIMEOUT=30 TRELLIS_STOP_TIMEOUT=5
dir=$TS_DIR
export TRELLIS_NETNS_HOME=$dir/home
r0=tcp://10.231.9.1:6450
r1=tcp://10.231.9.2:6450

# At exit, whatever happened: the cluster goes, and its logs are scanned.
netns_down() {
    bash "$script" down >/dev/null 2>&1
    ts_scan_logs "$TRELLIS_NETNS_HOME"/logs/*.log
}
ts_at_exit netns_down

# ---- not root: a clear refusal ---------------------------------------------------------
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
    # A copy the other user can read: the checkout may live under a home
    # directory only root may enter (/root).
    pub=$(mktemp -d "${TMPDIR:-/tmp}/trellis-netns-pub-XXXXXX")
    chmod 755 "$pub"
    install -m 755 "$script" "$pub/netns-cluster.sh"
    out=$(cd / && setpriv --reuid=65534 --regid=65534 --clear-groups \
        env TRELLIS_NETNS_HOME="$dir/nobody" bash "$pub/netns-cluster.sh" status 2>&1)
    st=$?
    if [ $st -eq 77 ] && grep -q "needs root" <<<"$out"; then
        pass "as another user: exit 77, '$out'"
    else
        fail "as another user: exit $st, '$out'"
    fi
    rm -rf "$pub"
fi

# ---- up ------------------------------------------------------------------------------------
out=$(bash "$script" up --routers 2 --memory 2 --disk 1 --owner $$ \
    --set route.node_timeout_ms=1000 --set kvs.heartbeat_period_ms=100 \
    --set cluster.vnodes=64 --set kvs.rocksdb_cache_bytes=4MiB 2>&1)
st=$?
[ $st -ne 77 ] || ts_skip "network namespaces are not permitted here: $out"
if [ $st -ne 0 ]; then
    echo "$out"
    die "up exited $st"
fi
up_lines() {
    grep -qx "netns $TRELLIS_NETNS_PREFIX-hub" <<<"$out" && grep -qx "router $r0" <<<"$out" &&
        grep -qx "router $r1" <<<"$out"
}
check "up prints the hub and both routers" up_lines

status=$(bash "$script" status)
check "status: 5 processes alive" [ "$(grep -c ' alive$' <<<"$status")" = 5 ]
for ns in hub r0 r1 m0 m1 d0; do
    ip netns list | grep -q "^$TRELLIS_NETNS_PREFIX-$ns\b" || fail "no namespace for $ns"
done

nodes_on() { # router URL -> its NODES listing
    bash "$script" exec hub "$TRELLIS_BIN/trellis-cli" -r "$1" -t 500 NODES 2>/dev/null
}
wait_for() { # seconds description command... : until the command succeeds
    local until=$((SECONDS + $1)) what=$2
    shift 2
    while ((SECONDS < until)); do
        if "$@"; then
            pass "$what"
            return 0
        fi
        sleep 0.1
    done
    fail "$what (not within the time)"
    return 1
}
state_is() { # router node state
    nodes_on "$1" | grep -q "^$2 .* $3 "
}
all_active() { # router
    [ "$(nodes_on "$1" | grep -c ' ACTIVE ')" = 3 ]
}

# up waits until the first router lists every node; the second hears of
# them through the routers' gossip a moment later.
wait_for 15 "r0 lists every node ACTIVE" all_active "$r0"
wait_for 15 "r1 lists every node ACTIVE" all_active "$r1"

set_get() {
    [ "$(bash "$script" cli SET greeting hello 2>&1)" = OK ] &&
        [ "$(bash "$script" cli GET greeting 2>&1)" = hello ]
}
check "cli from the hub: SET then GET" set_get

# ---- partition and heal ------------------------------------------------------------------
check "partition r0,m0 | r1,m1,d0" bash "$script" partition r0,m0 r1,m1,d0
wait_for 10 "r0 marks m1 DEAD" state_is "$r0" m1 DEAD
wait_for 10 "r1 marks m0 DEAD" state_is "$r1" m0 DEAD
check "r0 keeps m0 ACTIVE" state_is "$r0" m0 ACTIVE
check "the hub still reaches the cluster" bash "$script" cli GET greeting
check "heal" bash "$script" heal
wait_for 15 "after healing, r0 lists every node ACTIVE" all_active "$r0"
wait_for 15 "after healing, r1 lists every node ACTIVE" all_active "$r1"
check "m1 rejoined under a new generation" \
    grep -q "marked DEAD by the routers; rejoining" "$TRELLIS_NETNS_HOME/logs/m1.log"

# ---- kill and start one host ---------------------------------------------------------------
check "kill m0" bash "$script" kill m0
sleep 0.3
status=$(bash "$script" status)
check "status shows m0 dead (and says so with its exit status)" \
    grep -q '^memory *m0 .* dead$' <<<"$status"
check "start m0" bash "$script" start m0
wait_for 15 "m0 back ACTIVE" all_active "$r0"

# ---- down: nothing left ----------------------------------------------------------------------
check "down" bash "$script" down
check "no namespace left" [ "$(ip netns list | grep -c "^$TRELLIS_NETNS_PREFIX-")" = 0 ]
check "no storage node left" [ "$(pgrep -f -- "--data-dir $TRELLIS_NETNS_HOME/data" | wc -l)" = 0 ]
check "no router left" [ "$(pgrep -f -- "trellis-route --id r[01] --listen 10.231.9." | wc -l)" = 0 ]

