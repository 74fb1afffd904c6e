# shellcheck shell=bash
# tests/support/lib.sh - the test-support layer for scripts, the shell side
# of tests/support/tsupport.h. Source it first:
#
#   source "$TRELLIS_SRC/tests/support/lib.sh"   (or a path relative to the script)
#
# Sourcing it makes TS_DIR, a temporary directory of the test's own, and
# sets an EXIT trap: whatever ends the test, every process it started is
# stopped cleanly (SIGTERM; storage nodes SIGINT then SIGTERM, so that they
# stop at once: the nodes of ts_cluster run with kvs.force_depart), the logs are scanned for sanitizer reports (each counts as
# a failure), a process still running from the test's directory is a
# failure too, the logs are printed when the test failed, the directory is
# removed (kept with TRELLIS_KEEP_TMP) and a last line says how it went.
# A watchdog in its own session kills what is left if the test itself is
# killed (a ctest timeout): what it started, and whatever runs from its
# directory. Give programs that make temporary files TMPDIR=$TS_DIR.
#
#   fail MSG                a failure; the test goes on (exit status 1 at the end)
#   die MSG                 a failure that ends the test now
#   step MSG                "== [N s] MSG"
#   ts_skip MSG             ends the test as skipped (exit 77: ctest's SKIP_RETURN_CODE)
#   ts_need CMD...          ts_skip unless every command is installed
#   ts_ports N              TS_PORT_BASE: N consecutive ports no other test on this
#                           machine uses (the locks of tests/support/tport.h, via flock)
#   ts_spawn NAME ARGV...   starts a process, output in $TS_DIR/NAME.log; TS_PID is its pid
#   ts_wait_port PORT [S]   waits until something listens on 127.0.0.1:PORT (10 s)
#   ts_stop                 stops what ts_spawn started, scans the logs (also at exit)
#   ts_scan_logs FILE...    counts the sanitizer reports in logs as failures (printed)
#   ts_dump                 the last lines of every log
#   ts_at_exit FUNCTION     runs FUNCTION at exit, before the processes stop
#
# A cluster of the binaries in $TRELLIS_BIN:
#   ts_cluster NMEM NDISK   a router and nodes of two shards, waits until every node is
#                           ACTIVE; sets TS_URL. Set before: TS_EXTRA (an array of
#                           arguments for every daemon, e.g. --config FILE), TS_CLI_ARGS
#                           (arguments the readiness check gives trellis-cli), TS_SCHEME
#                           (tls+tcp when the daemons use TLS)
#   ts_add_node TIER        one more node (memory|disk); does not wait
#   ts_node_pid INDEX       the pid of the INDEX-th node (0-based)
#   ts_kill_node INDEX      SIGKILL to the INDEX-th node
#
# A cluster of deploy/cluster.sh, in TRELLIS_HOME=$TS_DIR/home:
#   ts_cs_up [UP-ARGS...]   reserves ports (TRELLIS_PORT_BASE) and runs `cluster.sh up`
#                           (after the command TS_CS_PREFIX, an array, e.g. taskset);
#                           its output in TS_CS_OUT
#   ts_cs_down              `cluster.sh down`, then no process may be left; logs scanned
#                           (also at exit)
#
# Needs TRELLIS_BIN (the binaries; default build/bin of the source tree).

TS_SRC=${TRELLIS_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export TRELLIS_BIN=${TRELLIS_BIN:-$TS_SRC/build/bin}
TS_NAME=$(basename "$0" .sh)
TS_NAME=${TS_NAME#test_}
TS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/trellis-$TS_NAME.XXXXXX")
TS_START=$SECONDS
TS_FAILURES=0
TS_PIDS=()
TS_LOGS=()
TS_KVS=() # 1 where TS_PIDS holds a storage node
TS_PID=
TS_URL=
TS_EXTRA=()
TS_CLI_ARGS=()
TS_SCHEME=tcp
TS_NODES=0
TS_CS=$TS_SRC/deploy/cluster.sh
TS_CS_UP=0
TS_CS_OUT=
TS_CS_PREFIX=()
TS_STOP_SECONDS=20 # a process's time to exit after SIGTERM
TS_AT_EXIT=()

fail() {
    echo "FAIL: $*" >&2
    TS_FAILURES=$((TS_FAILURES + 1))
}

die() {
    fail "$@"
    exit 1
}

step() {
    echo "== [$((SECONDS - TS_START)) s] $*"
}

ts_skip() {
    echo "SKIP: $*"
    exit 77
}

ts_need() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null || ts_skip "$c is not installed"
    done
}

# ---- ports ---------------------------------------------------------------------------------------
# The layout of tests/support/tport.h: blocks of 32 ports from 10000 up to
# Linux's ephemeral ports, one lock file per block.
TS_PORT_FIRST=10000
TS_PORT_END=32768
TS_PORT_BLOCK=32
TS_PORT_LOCKS=${TRELLIS_PORT_LOCKS:-/tmp/trellis-ports}
TS_PORT_BASE=
TS_PORT_FDS=()

# True when some socket (other than one in TIME_WAIT) has a local port in
# [BASE, BASE + COUNT).
ts_ports_bound() { # BASE COUNT
    awk -v lo="$1" -v hi="$(($1 + $2))" '
        function hex(s, i, n) {
            for (i = 1; i <= length(s); i++) n = n * 16 + index("0123456789ABCDEF", substr(s, i, 1)) - 1
            return n
        }
        FNR > 1 { split($2, a, ":"); p = hex(a[2]); if (p >= lo && p < hi && $4 != "06") { found = 1; exit } }
        END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

ts_ports() { # N
    local need starts first tried b0 b fd lock ok base
    need=$((($1 + TS_PORT_BLOCK - 1) / TS_PORT_BLOCK))
    starts=$(((TS_PORT_END - TS_PORT_FIRST) / TS_PORT_BLOCK - need + 1))
    if mkdir "$TS_PORT_LOCKS" 2>/dev/null; then chmod 1777 "$TS_PORT_LOCKS"; fi
    first=$(($$ % starts))
    for ((tried = 0; tried < starts; tried += need)); do
        b0=$(((first + tried) % starts))
        ok=1
        for ((b = b0; b < b0 + need && ok; b++)); do
            lock=$TS_PORT_LOCKS/$((TS_PORT_FIRST + b * TS_PORT_BLOCK)).lock
            [ -e "$lock" ] || : >>"$lock" 2>/dev/null || true
            if exec {fd}<"$lock"; then
                TS_PORT_FDS+=("$fd")
                flock -n "$fd" || ok=0
            else
                ok=0
            fi
        done
        base=$((TS_PORT_FIRST + b0 * TS_PORT_BLOCK))
        if ((ok)) && ! ts_ports_bound "$base" $((need * TS_PORT_BLOCK)); then
            TS_PORT_BASE=$base
            return 0
        fi
        for fd in "${TS_PORT_FDS[@]}"; do exec {fd}<&-; done
        TS_PORT_FDS=()
    done
    die "no $1 free ports in $TS_PORT_FIRST..$((TS_PORT_END - 1)) (locks in $TS_PORT_LOCKS)"
}

# ---- processes -----------------------------------------------------------------------------------

ts_spawn() { # NAME ARGV...
    local name=$1
    shift
    "$@" </dev/null >>"$TS_DIR/$name.log" 2>&1 &
    TS_PID=$!
    TS_PIDS+=("$TS_PID")
    TS_LOGS+=("$TS_DIR/$name.log")
    if [[ $(basename "$1") == trellis-kvs ]]; then TS_KVS+=(1); else TS_KVS+=(0); fi
    echo "$TS_PID" >>"$TS_DIR/pids"
}

ts_port_open() { # PORT
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

ts_wait_port() { # PORT [SECONDS]
    local deadline=$((SECONDS + ${2:-10}))
    while ! ts_port_open "$1"; do
        [ $SECONDS -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

ts_scan_logs() { # FILE...
    local f reports
    for f in "$@"; do
        [ -f "$f" ] || continue
        reports=$(grep -cE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: ThreadSanitizer' "$f" || true)
        if [ "$reports" -gt 0 ]; then
            fail "$reports sanitizer report(s) in $f"
            grep -m 1 -A 40 -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: ThreadSanitizer' "$f" >&2
        fi
    done
}

# Waits until none of the pids runs, up to TS_STOP_SECONDS; kills and
# fails for the rest.
ts_wait_gone() { # PID...
    local deadline=$((SECONDS + TS_STOP_SECONDS)) pid alive
    while :; do
        alive=0
        for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        if ((!alive)) || [ $SECONDS -ge $deadline ]; then break; fi
        sleep 0.05
    done
    for pid in "$@"; do
        if kill -0 "$pid" 2>/dev/null; then
            fail "process $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)) did not stop within $TS_STOP_SECONDS s of SIGTERM"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
}

ts_stop() {
    local i kvs=() others=()
    for i in "${!TS_PIDS[@]}"; do
        kill -0 "${TS_PIDS[$i]}" 2>/dev/null || continue
        kill -CONT "${TS_PIDS[$i]}" 2>/dev/null || true
        if [ "${TS_KVS[$i]}" = 1 ]; then kvs+=("${TS_PIDS[$i]}"); else others+=("${TS_PIDS[$i]}"); fi
    done
    # Storage nodes first, at once: the first signal makes a node depart,
    # the second stop without a hand-off to nodes that are stopping too
    # (with kvs.force_depart, which ts_cluster's nodes have).
    if ((${#kvs[@]})); then
        kill -INT "${kvs[@]}" 2>/dev/null || true
        kill -TERM "${kvs[@]}" 2>/dev/null || true
        ts_wait_gone "${kvs[@]}"
    fi
    if ((${#others[@]})); then
        kill -TERM "${others[@]}" 2>/dev/null || true
        ts_wait_gone "${others[@]}"
    fi
    ((${#TS_LOGS[@]} == 0)) || ts_scan_logs "${TS_LOGS[@]}"
    TS_PIDS=()
    TS_LOGS=()
    TS_KVS=()
}

ts_dump() {
    local f
    for f in "$TS_DIR"/*.log "$TS_DIR"/home/logs/*.log; do
        [ -f "$f" ] || continue
        echo "---- $f" >&2
        tail -n 20 "$f" >&2
    done
}

# ---- a cluster of the binaries -------------------------------------------------------------------

ts_add_node() { # TIER (memory|disk)
    local tier=$1 n=$TS_NODES id port
    id="${tier:0:1}$(($(grep -c "^${tier:0:1}" "$TS_DIR/ids" 2>/dev/null || true) + 1))"
    echo "$id" >>"$TS_DIR/ids"
    port=$((TS_PORT_BASE + 1 + 5 * n)) # 2 shards, the admin port, 2 data-plane ports
    ts_spawn "$id" "$TRELLIS_BIN/trellis-kvs" --tier "$tier" --threads 2 --id "$id" \
        --listen 127.0.0.1 --port-base "$port" --admin-port $((port + 2)) \
        --data-dir "$TS_DIR/$id" --router "$TS_URL" --capacity 64MiB --log-level warn \
        --set kvs.heartbeat_period_ms=100 --set kvs.join_timeout_ms=3000 \
        --set kvs.gossip_period_ms=50 --set kvs.rocksdb_cache_bytes=4MiB \
        --set kvs.rocksdb_write_buffer_bytes=4MiB --set kvs.force_depart=true "${TS_EXTRA[@]}"
    echo "$TS_PID" >>"$TS_DIR/node-pids"
    TS_NODES=$((n + 1))
}

ts_node_pid() { # INDEX
    sed -n "$(($1 + 1))p" "$TS_DIR/node-pids"
}

ts_kill_node() { # INDEX
    local pid
    pid=$(ts_node_pid "$1")
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

ts_cluster() { # NMEM NDISK
    local nmem=$1 ndisk=$2 i want deadline
    ts_ports 32
    TS_URL="$TS_SCHEME://127.0.0.1:$TS_PORT_BASE"
    ts_spawn router "$TRELLIS_BIN/trellis-route" --listen 127.0.0.1 --port "$TS_PORT_BASE" \
        --node-timeout 60000 --log-level warn --set cluster.vnodes=64 "${TS_EXTRA[@]}"
    for ((i = 0; i < nmem; i++)); do ts_add_node memory; done
    for ((i = 0; i < ndisk; i++)); do ts_add_node disk; done
    want=$((nmem + ndisk))
    deadline=$((SECONDS + 20))
    while ((SECONDS < deadline)); do
        if [[ $("$TRELLIS_BIN/trellis-cli" "${TS_CLI_ARGS[@]}" -r "$TS_URL" -t 300 NODES 2>/dev/null |
            grep -c ' ACTIVE ') == "$want" ]]; then
            sleep 0.4 # every node hears of the final ring
            return 0
        fi
        sleep 0.1
    done
    die "the cluster did not come up"
}

# ---- a cluster of deploy/cluster.sh --------------------------------------------------------------

ts_cs_up() { # [UP-ARGS...]
    # cluster.sh lays a cluster out over 1000 ports from its base.
    [ -n "$TS_PORT_BASE" ] || ts_ports 1000
    export TRELLIS_HOME=$TS_DIR/home TRELLIS_PORT_BASE=$TS_PORT_BASE
    TS_CS_UP=1
    # shellcheck disable=SC2034 # for the tests that source this file
    TS_CS_OUT=$("${TS_CS_PREFIX[@]}" "$TS_CS" up "$@" 2>"$TS_DIR/up.err") || {
        cat "$TS_DIR/up.err" >&2
        die "cluster.sh up $* failed"
    }
}

ts_cs_down() {
    ((TS_CS_UP)) || return 0
    TS_CS_UP=0
    TRELLIS_STOP_TIMEOUT=$TS_STOP_SECONDS "$TS_CS" down >"$TS_DIR/down.log" 2>&1 ||
        fail "cluster.sh down failed: $(tail -n 5 "$TS_DIR/down.log")"
    local pid
    for pid in $(pgrep -f -- "$TRELLIS_HOME/" 2>/dev/null); do
        fail "process $pid outlived cluster.sh down: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
        kill -KILL "$pid" 2>/dev/null || true
    done
    ts_scan_logs "$TRELLIS_HOME"/logs/*.log
}

# ---- the end -------------------------------------------------------------------------------------

# Whatever still runs from the test's directory (its binaries, data or
# logs on its command line) outlived the test: a failure, and killed.
ts_leftovers() {
    local pid
    for pid in $(pgrep -f -- "$TS_DIR/" 2>/dev/null); do
        fail "process $pid outlived the test: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
        kill -KILL "$pid" 2>/dev/null || true
    done
}

ts_at_exit() { # FUNCTION
    TS_AT_EXIT+=("$1")
}

ts_exit() {
    local rc=$? f
    trap - EXIT
    for f in "${TS_AT_EXIT[@]}"; do "$f" || true; done
    ts_stop
    ts_cs_down
    ts_leftovers
    if [ $rc -eq 0 ] && [ "$TS_FAILURES" -gt 0 ]; then rc=1; fi
    if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then ts_dump; fi
    [ -z "${TS_WATCHDOG:-}" ] || kill "$TS_WATCHDOG" 2>/dev/null || true
    [ -n "${TRELLIS_KEEP_TMP:-}" ] || rm -rf "$TS_DIR"
    case $rc in
    0) echo "$TS_NAME: passed in $((SECONDS - TS_START)) s" ;;
    77) echo "$TS_NAME: skipped" ;;
    *) echo "$TS_NAME: FAILED ($TS_FAILURES failures, status $rc) in $((SECONDS - TS_START)) s" ;;
    esac
    exit $rc
}
trap ts_exit EXIT

# The watchdog: when this shell is gone without its EXIT trap (killed at a
# timeout), it kills what the test started and removes the directory.
: >"$TS_DIR/pids"
# shellcheck disable=SC2016 # expanded by the inner shell
setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done
    xargs -r kill -KILL <"$2/pids" 2>/dev/null
    pkill -KILL -f -- "$2/"
    if [ -d "$2/home" ]; then TRELLIS_HOME=$2/home TRELLIS_STOP_TIMEOUT=5 "$3" down; pkill -KILL -f -- "$2/home/"; fi
    [ -n "$4" ] || rm -rf "$2"' _ $$ "$TS_DIR" "$TS_CS" "${TRELLIS_KEEP_TMP:-}" \
    </dev/null >/dev/null 2>&1 &
TS_WATCHDOG=$!
