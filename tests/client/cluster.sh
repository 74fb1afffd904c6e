# shellcheck shell=bash
# tests/client/cluster.sh - sourced by the client's shell tests: a router
# and storage nodes from $TRELLIS_BIN on loopback, on a port range of the
# test's own (derived from its pid, probed free) and in a temporary
# directory, all killed when the test ends however it ends (an EXIT trap,
# and a watchdog that outlives a killed test by at most a second).
#
#   tc_start NMEM NDISK    start and wait until every node is ACTIVE;
#                          sets TC_URL (the router) and TC_DIR
#   tc_kill_node INDEX     SIGKILL the INDEX-th node (0-based)
#   tc_stop                kill everything, remove the directory
#
# Set before tc_start: TC_EXTRA (an array of arguments for every daemon,
# e.g. --config FILE), TC_CLI_ARGS (arguments the readiness check gives
# trellis-cli) and TC_SCHEME (tls+tcp when the daemons use TLS).

: "${TRELLIS_BIN:?TRELLIS_BIN must name the directory of the trellis binaries}"

TC_DIR=$(mktemp -d "${TMPDIR:-/tmp}/trellis-client-sh-XXXXXX")
TC_URL=
TC_PIDS=()
TC_EXTRA=()
TC_CLI_ARGS=()
TC_SCHEME=tcp

tc_port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

tc_pick_base() {
    local slot=$(($$ % 180)) tries base p busy
    for ((tries = 0; tries < 180; tries++)); do
        base=$((14000 + slot * 32))
        busy=0
        for ((p = base; p < base + 32; p++)); do
            if tc_port_busy "$p"; then
                busy=1
                break
            fi
        done
        if ((!busy)); then
            echo "$base"
            return 0
        fi
        slot=$(((slot + 1) % 180))
    done
    return 1
}

tc_stop() {
    local pid
    for pid in "${TC_PIDS[@]}"; do
        kill -CONT "$pid" 2>/dev/null
        kill -KILL "$pid" 2>/dev/null
    done
    for pid in "${TC_PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    TC_PIDS=()
    if [[ -n ${TC_WATCHDOG:-} ]]; then
        kill -KILL "$TC_WATCHDOG" 2>/dev/null
        wait "$TC_WATCHDOG" 2>/dev/null
        TC_WATCHDOG=
    fi
    if [[ -z ${TRELLIS_KEEP_TMP:-} && -d $TC_DIR ]]; then
        rm -rf "$TC_DIR"
    fi
}

tc_dump() {
    local f
    for f in "$TC_DIR"/*.log; do
        [[ -f $f ]] || continue
        echo "---- $f" >&2
        tail -n 20 "$f" >&2
    done
}

tc_spawn() { # LOG ARGV...
    local log=$1
    shift
    "$@" </dev/null >>"$log" 2>&1 &
    TC_PIDS+=("$!")
    echo "$!" >>"$TC_DIR/pids"
}

TC_NODES=0
TC_BASE=0

tc_add_node() { # TIER (memory|disk)
    local tier=$1 n=$TC_NODES id port
    id="${tier:0:1}$(($(grep -c "^${tier:0:1}" "$TC_DIR/ids" 2>/dev/null) + 1))"
    echo "$id" >>"$TC_DIR/ids"
    port=$((TC_BASE + 1 + 5 * n)) # 2 shards, the admin port, 2 data-plane ports
    tc_spawn "$TC_DIR/$id.log" "$TRELLIS_BIN/trellis-kvs" --tier "$tier" --threads 2 --id "$id" \
        --listen 127.0.0.1 --port-base "$port" --admin-port $((port + 2)) \
        --data-dir "$TC_DIR/$id" --router "$TC_URL" --capacity 64MiB --log-level warn \
        --set kvs.heartbeat_period_ms=100 --set kvs.join_timeout_ms=3000 \
        --set kvs.gossip_period_ms=50 --set kvs.rocksdb_cache_bytes=4MiB \
        --set kvs.rocksdb_write_buffer_bytes=4MiB "${TC_EXTRA[@]}"
    TC_NODES=$((n + 1))
}

tc_start() { # NMEM NDISK
    local nmem=$1 ndisk=$2 i want deadline
    TC_BASE=$(tc_pick_base) || {
        echo "no free port range" >&2
        return 1
    }
    TC_URL="$TC_SCHEME://127.0.0.1:$TC_BASE"
    : >"$TC_DIR/pids"
    # The watchdog: when this shell dies, whatever it started dies too.
    (
        trap '' TERM
        while kill -0 $$ 2>/dev/null; do sleep 1; done
        xargs -r kill -KILL <"$TC_DIR/pids" 2>/dev/null
        rm -rf "$TC_DIR"
    ) </dev/null >/dev/null 2>&1 &
    TC_WATCHDOG=$!
    tc_spawn "$TC_DIR/router.log" "$TRELLIS_BIN/trellis-route" --listen 127.0.0.1 \
        --port "$TC_BASE" --node-timeout 60000 --log-level warn --set cluster.vnodes=64 \
        "${TC_EXTRA[@]}"
    for ((i = 0; i < nmem; i++)); do tc_add_node memory; done
    for ((i = 0; i < ndisk; i++)); do tc_add_node disk; done
    want=$((nmem + ndisk))
    deadline=$((SECONDS + 20))
    while ((SECONDS < deadline)); do
        if [[ $("$TRELLIS_BIN/trellis-cli" "${TC_CLI_ARGS[@]}" -r "$TC_URL" -t 300 NODES 2>/dev/null |
            grep -c ' ACTIVE ') == "$want" ]]; then
            sleep 0.4 # every node hears of the final ring
            return 0
        fi
        sleep 0.1
    done
    echo "cluster did not come up" >&2
    tc_dump
    return 1
}

tc_kill_node() { # INDEX
    local pid=${TC_PIDS[$(($1 + 1))]}
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}
