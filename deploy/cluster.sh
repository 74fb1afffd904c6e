#!/usr/bin/env bash
# deploy/cluster.sh - a trellis cluster on this machine's loopback.
#
# Every process runs detached (its own session) under a state directory,
# is started with --config on the cluster's own copy of deploy/trellis.yml,
# logs to its own file and is recorded (role, id, pid, ports) so that
# status, add-node, remove-node and down find it again. See
# docs/operations.md for the port layout and the state directory.
set -euo pipefail

readonly PROG=cluster.sh
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly root

usage() {
    cat <<EOF
usage: deploy/cluster.sh COMMAND [ARG...]

A trellis cluster on this machine's loopback interface.

commands:
  up [--routers N] [--memory N] [--disk N] [--threads N] [--monitor]
     [--cpu-limit CORES] [--set SECTION.KEY=VALUE]...
                      install what is missing, build if needed, start a
                      cluster and wait until it serves; prints
                      'router URL', 'resp HOST:PORT' (the Redis gateway)
                      and 'cluster HOST:PORT' (a shard serving Redis
                      Cluster clients) (defaults: 1 router, 2 memory nodes,
                      1 disk node, 2 shard threads per node; a tier may
                      have 0 nodes); --cpu-limit puts each storage node in
                      a cgroup of its own with that CPU quota (e.g. 0.5;
                      0: none; with --monitor the default is
                      $MONITOR_CPU_LIMIT where cgroups allow it); --set
                      changes a key of deploy/trellis.yml for every process
                      (VALUE as YAML, e.g. --set kvs.max_ops_per_sec=1000)
  down                stop every process of the cluster (storage nodes
                      depart first), leaving none behind
  status              one line per process: ROLE ID PID PORTS alive|dead
                      (a node restarted by hand with its recorded id is
                      taken back as the recorded process); exit status 1
                      while a recorded process is dead
  cli ARG...          run trellis-cli against the cluster's router
  logs [-f] [NAME]    the last lines of every log, or all of NAME's log
                      (NAME: a process id from status, or 'build')
  add-node TIER [--cpu-limit CORES]
                      start one more storage node (memory|disk) and wait
                      until it is ACTIVE; prints 'node ID'; --cpu-limit
                      gives it another CPU allotment than the cluster's
  remove-node ID      stop storage node ID gracefully (it hands its keys
                      off, then leaves) and wait until it exited
  restart-node ID     start storage node ID again after it stopped, was
                      killed or was removed: same id, ports and data
                      directory (a disk node serves what it had); waits
                      until it is ACTIVE; prints 'node ID'
  help                this text

environment:
  TRELLIS_HOME        state directory (default: .trellis at the repository root)
  TRELLIS_PORT_BASE   first port of the cluster (default 6450); every port
                      is derived from it, so clusters with bases at least
                      1000 apart coexist
  TRELLIS_BIN         use the binaries in this directory; skips installing
                      and building
  TRELLIS_START_TIMEOUT  seconds a process may take to come up (default 30,
                      plus kvs.join_timeout_ms for storage nodes)
  TRELLIS_STOP_TIMEOUT   seconds storage nodes get to hand their keys off
                      when the cluster stops (default 30)

exit status: 0 success, 1 failure, 2 bad arguments.
EOF
}

die() {
    echo "$PROG: error: $*" >&2
    exit 1
}

usage_error() {
    echo "$PROG: $*" >&2
    echo "see 'deploy/cluster.sh --help'" >&2
    exit 2
}

note() {
    echo "$PROG: $*" >&2
}

# ---- the state directory and the port layout --------------------------------------------

home=${TRELLIS_HOME:-$root/.trellis}
[[ $home == /* ]] || home=$PWD/$home
home=${home%/}
cfg=$home/trellis.yml
rundir=$home/run
logdir=$home/logs

# Port layout, relative to the base B (TRELLIS_PORT_BASE, default 6450):
#   B+0  .. B+9     router i (client and node traffic)       at B+i
#   B+10            monitor
#   B+20 .. B+29    router i Redis protocol gateway          at B+20+i
#   B+30 .. B+39    router i /metrics and /healthz           at B+30+i
#   B+40            monitor /metrics and /healthz
#   B+50 .. B+449   memory node k (0..19) at P = B+50+20k
#   B+450 .. B+849  disk node k (0..19)   at P = B+450+20k
#                   a node's shard i listens on P+i (control plane), its
#                   control endpoint on P+threads, its /metrics and
#                   /healthz on P+9, and shard i serves clients' frames (the
#                   data plane) on P+10+i
#   B+850 ..        nodes started by the monitor (monitor.local_port_base)
readonly MAX_ROUTERS=10 MAX_NODES=20 NODE_STRIDE=20 MAX_THREADS=8 PORT_SPAN=1000
# A storage node's CPU allotment when the monitor runs and --cpu-limit is
# not given: so that an added node adds CPU on one machine, as on Kubernetes.
readonly MONITOR_CPU_LIMIT=0.5
router_port() { echo $((base + $1)); }
resp_port() { echo $((base + 20 + $1)); }
router_metrics_port() { echo $((base + 30 + $1)); }
monitor_port() { echo $((base + 10)); }
monitor_metrics_port() { echo $((base + 40)); }
node_port() { # tier slot
    local first=$((base + 50))
    if [ "$1" = disk ]; then first=$((base + 450)); fi
    echo $((first + NODE_STRIDE * $2))
}
node_id() { # tier slot
    local p
    p=$(node_port "$1" "$2")
    if [ "$1" = memory ]; then echo "m$p"; else echo "d$p"; fi
}

# Settings of the cluster in $home, written by up.
load_cluster() {
    [ -f "$home/cluster" ] || return 1
    local k v
    while IFS='=' read -r k v; do
        case $k in
        base) base=$v ;;
        threads) threads=$v ;;
        bin) bin=$v ;;
        routers) nrouters=$v ;;
        esac
    done <"$home/cluster"
    [ -n "${base:-}" ] && [ -n "${threads:-}" ] && [ -n "${bin:-}" ] && [ -n "${nrouters:-}" ]
}

# ---- process records ---------------------------------------------------------------------

# run/ID holds one process: role, id, pid, url, ports, metrics, tier, slot.
rec_write() { # id role pid url ports metrics tier slot
    local tmp=$rundir/.$1.tmp
    printf 'role=%s\nid=%s\npid=%s\nurl=%s\nports=%s\nmetrics=%s\ntier=%s\nslot=%s\n' \
        "$2" "$1" "$3" "$4" "$5" "$6" "$7" "$8" >"$tmp"
    mv "$tmp" "$rundir/$1"
}

rec_load() { # id: sets r_role r_pid r_url r_ports r_metrics r_tier r_slot
    r_role='' r_pid='' r_url='' r_ports='' r_metrics='' r_tier='' r_slot=''
    [ -f "$rundir/$1" ] || return 1
    local k v
    while IFS='=' read -r k v; do
        case $k in
        role) r_role=$v ;;
        pid) r_pid=$v ;;
        url) r_url=$v ;;
        ports) r_ports=$v ;;
        metrics) r_metrics=$v ;;
        tier) r_tier=$v ;;
        slot) r_slot=$v ;;
        esac
    done <"$rundir/$1"
    [ -n "$r_pid" ]
}

# The pid of a running process of this cluster started with --id ID that
# is not the recorded one (a node restarted by hand), or nothing.
hand_started_pid() { # id
    local pid args
    for pid in $(stray_pids); do
        args=$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null) || continue
        if [[ " $args " == *" --id $1 "* || " $args " == *" --id=$1 "* ]]; then
            echo "$pid"
            return 0
        fi
    done
    return 0
}

# Record ids, routers first, then the monitor, memory and disk nodes.
rec_ids() {
    local f
    [ -d "$rundir" ] || return 0
    for f in "$rundir"/r[0-9]* "$rundir"/monitor "$rundir"/m[0-9]* "$rundir"/d[0-9]*; do
        [ -f "$f" ] && basename "$f"
    done
    return 0
}

# Is pid a live (not zombie) process started with this cluster's config?
is_ours() {
    local pid=$1 state
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/stat" ] || return 1
    state=$({ awk '{print $3}' "/proc/$pid/stat"; } 2>/dev/null) || return 1
    [ "$state" != Z ] && [ "$state" != X ] || return 1
    { tr '\0' '\n' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qxF -- "$cfg"
}

# Pids of trellis processes that belong to this cluster but have no record
# (e.g. nodes started by the monitor): their environment or command line
# names the state directory.
stray_pids() {
    local d pid comm state recorded=" " id
    for id in $(rec_ids); do
        if rec_load "$id"; then recorded+="$r_pid "; fi
    done
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        comm=$({ cat "$d/comm"; } 2>/dev/null) || continue
        case $comm in trellis-*) ;; *) continue ;; esac
        case $recorded in *" $pid "*) continue ;; esac
        state=$({ awk '{print $3}' "$d/stat"; } 2>/dev/null) || continue
        [ "$state" = Z ] && continue
        if { tr '\0' '\n' <"$d/environ"; } 2>/dev/null | grep -qxF "TRELLIS_CLUSTER_HOME=$home" ||
            { tr '\0' '\n' <"$d/cmdline"; } 2>/dev/null | grep -qF "$home/"; then
            echo "$pid"
        fi
    done
    return 0
}

running_ids() {
    local id
    for id in $(rec_ids); do
        rec_load "$id" && is_ours "$r_pid" && echo "$id"
    done
    return 0
}

# ---- helpers -------------------------------------------------------------------------------

take_lock() {
    mkdir -p "$home"
    exec 9>"$home/lock"
    flock -w 60 9 || die "another cluster.sh command holds $home/lock"
}

# The lock if nobody holds it, without waiting; 0 when taken.
try_lock() {
    exec 9>"$home/lock"
    flock -n 9
}

release_lock() {
    flock -u 9
    exec 9>&-
}

posint() { [[ $1 =~ ^[0-9]+$ ]] && [ ${#1} -le 6 ]; }

config_value() { # section key: the value in the cluster's config, unquoted
    awk -v want="$1.$2" '
        /^[A-Za-z_]+:[[:space:]]*$/ { sec = $0; sub(/:.*/, "", sec); next }
        /^  [A-Za-z_]+:/ {
            key = $1; sub(/:$/, "", key)
            if (sec "." key == want) { v = $0; sub(/^[^:]*:[[:space:]]*/, "", v); gsub(/"/, "", v); print v; exit }
        }' "$cfg"
}

port_in_use() { # port: 0 if something listens on it (tcp, any address)
    command -v ss >/dev/null 2>&1 || return 1
    [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
}

healthz() { # metrics port: prints the HTTP status of /healthz (000: no answer)
    curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1/healthz" 2>/dev/null || true
}

have_cli() { [ -x "$bin/trellis-cli" ]; }

first_router_url() {
    local id
    for id in $(rec_ids); do
        rec_load "$id" && [ "$r_role" = router ] && is_ours "$r_pid" && {
            echo "$r_url"
            return 0
        }
    done
    return 1
}

# The router's view of every node, one per line: ID TIER ADDRESS STATE SHARDS.
router_nodes() {
    local url
    url=$(first_router_url) || return 1
    "$bin/trellis-cli" -r "$url" -t 2000 NODES 2>/dev/null
}

# How many nodes of a tier the router counts in a state (from its /metrics).
router_count() { # tier state
    local id
    for id in $(rec_ids); do
        if ! rec_load "$id" || [ "$r_role" != router ] || ! is_ours "$r_pid"; then continue; fi
        curl -s -m 2 "http://127.0.0.1:$r_metrics/metrics" 2>/dev/null |
            awk -v m="trellis_nodes{tier=\"$1\",state=\"$2\"}" '$1 == m { print $2; found = 1 } END { if (!found) print 0 }'
        return 0
    done
    echo 0
}

show_log_tail() { # id
    local log=$logdir/$1.log
    [ -f "$log" ] || return 0
    echo "---- last lines of $log ----" >&2
    tail -n 25 "$log" >&2
    echo "----" >&2
}

# Starts a detached process: its own session, stdin from /dev/null, output
# appended to logs/ID.log, working directory the state directory, the lock
# descriptor closed. Sets launched_pid.
launch() { # id cmd...
    local id=$1 log=$logdir/$1.log
    shift
    printf '==== %s started: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$log"
    (
        exec 9>&-
        cd "$home"
        exec env TRELLIS_CLUSTER_HOME="$home" setsid nohup "$@" >>"$log" 2>&1 </dev/null
    ) &
    launched_pid=$!
}

# ---- stopping ------------------------------------------------------------------------------

# Is pid a live process of this cluster (recorded or stray)?
pid_alive() {
    local state comm
    is_ours "$1" && return 0
    comm=$({ cat "/proc/$1/comm"; } 2>/dev/null) || return 1
    [[ $comm == trellis-* ]] || return 1
    state=$({ awk '{print $3}' "/proc/$1/stat"; } 2>/dev/null) || return 1
    [ "$state" != Z ] && [ "$state" != X ]
}

alive_of() { # pid...: those still running
    local pid
    for pid in "$@"; do
        if pid_alive "$pid"; then echo "$pid"; fi
    done
    return 0
}

wait_gone() { # seconds pid...: 0 once every pid exited, 1 at the deadline
    local deadline=$((SECONDS + $1))
    shift
    while [ -n "$(alive_of "$@")" ]; do
        [ $SECONDS -lt "$deadline" ] || return 1
        sleep 0.1
    done
    return 0
}

# SIGTERM, then (storage nodes) a second SIGTERM, which stops a node at
# once without finishing its hand-off, then SIGKILL. Each step waits.
stop_pids() { # what grace_seconds pid...
    local what=$1 grace=$2
    shift 2
    local pids
    mapfile -t pids < <(alive_of "$@")
    [ ${#pids[@]} -gt 0 ] || return 0
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait_gone "$grace" "${pids[@]}" && return 0
    mapfile -t pids < <(alive_of "${pids[@]}")
    note "$what still running after ${grace} s (pids ${pids[*]}); signalling again (a storage node then stops without finishing only with kvs.force_depart)"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait_gone 10 "${pids[@]}" && return 0
    mapfile -t pids < <(alive_of "${pids[@]}")
    note "$what still running (pids ${pids[*]}); killing"
    kill -KILL "${pids[@]}" 2>/dev/null || true
    wait_gone 10 "${pids[@]}" || die "pids ${pids[*]} survived SIGKILL"
}

# Stops every process of the cluster: the monitor first (so that it does
# not replace what stops), then the memory nodes (while the disk tier is
# still there to take their keys), then the disk nodes, then the routers.
stop_all() {
    local id pid comm mon=() mem=() disk=() routers=() other=() ndisk=0 grace
    for id in $(rec_ids); do
        rec_load "$id" || continue
        case $r_role in
        monitor) mon+=("$r_pid") ;;
        memory) mem+=("$r_pid") ;;
        disk)
            disk+=("$r_pid")
            if is_ours "$r_pid"; then ndisk=$((ndisk + 1)); fi
            ;;
        router) routers+=("$r_pid") ;;
        esac
    done
    # Processes without a record: nodes the monitor started, or processes
    # restarted by hand. Each joins the stage of its kind.
    for pid in $(stray_pids); do
        comm=$({ cat "/proc/$pid/comm"; } 2>/dev/null) || continue
        case $comm in
        trellis-monitor) mon+=("$pid") ;;
        trellis-kvs) mem+=("$pid") ;;
        trellis-route) routers+=("$pid") ;;
        *) other+=("$pid") ;;
        esac
    done
    stop_pids monitor 15 "${mon[@]}"
    # Departing nodes hand their keys to the nodes that stay. When no disk
    # node stays, the memory tier's keys have nowhere to go: a short grace.
    grace=${TRELLIS_STOP_TIMEOUT:-30}
    [ "$ndisk" -gt 0 ] || grace=3
    stop_pids "memory nodes" "$grace" "${mem[@]}"
    stop_pids "disk nodes" 5 "${disk[@]}"
    stop_pids routers 10 "${routers[@]}" "${other[@]}"
    mapfile -t other < <(stray_pids)
    stop_pids "remaining processes" 5 "${other[@]}"
    for id in $(rec_ids); do
        rm -f "$rundir/$id"
    done
}

# ---- building ------------------------------------------------------------------------------

ensure_built() {
    if [ -n "${TRELLIS_BIN:-}" ]; then
        bin=$(cd "$TRELLIS_BIN" 2>/dev/null && pwd) || die "TRELLIS_BIN=$TRELLIS_BIN is not a directory"
        return 0
    fi
    bash "$root/deploy/install-deps.sh" || die "installing the dependencies failed (deploy/install-deps.sh)"
    local build=$root/build blog=$logdir/build.log
    bin=$build/bin
    mkdir -p "$build"
    : >"$blog"
    if [ ! -f "$build/CMakeCache.txt" ]; then
        note "configuring $build"
        cmake -S "$root" -B "$build" >>"$blog" 2>&1 || {
            tail -n 30 "$blog" >&2
            die "cmake configuration failed (full log: $blog)"
        }
    fi
    # Only the programs the cluster runs; make/ninja rebuild what changed.
    local t targets=() known
    known=$(cmake --build "$build" --target help 2>/dev/null || true)
    for t in trellis-route trellis-kvs trellis-cli trellis-monitor; do
        if grep -qE "(^|[ .:])$t(:|\$| )" <<<"$known"; then targets+=(--target "$t"); fi
    done
    note "building (log: $blog)"
    cmake --build "$build" -j "$(nproc)" "${targets[@]}" >>"$blog" 2>&1 || {
        grep -E "error|Error" "$blog" | tail -n 30 >&2 || true
        die "the build failed (full log: $blog)"
    }
}

# ---- the configuration ---------------------------------------------------------------------

# Writes $cfg: deploy/trellis.yml with the cluster's routers, monitor,
# ports and directories. Every key set here must exist in the template.
write_config() { # with_monitor
    local template=$root/deploy/trellis.yml router_list="" i ov
    [ -f "$template" ] || die "$template is missing"
    for ((i = 0; i < nrouters; i++)); do
        router_list+="${router_list:+, }tcp://127.0.0.1:$(router_port "$i")"
    done
    local monitor_url='""'
    if [ "$1" -eq 1 ]; then monitor_url="\"tcp://127.0.0.1:$(monitor_port)\""; fi
    ov="cluster.routers	[$router_list]
cluster.monitor	$monitor_url
kvs.threads	$threads
kvs.port_base	$(node_port memory 0)
kvs.metrics_port	$(($(node_port memory 0) + 9))
kvs.data_dir	\"$home/data\"
route.port	$(router_port 0)
route.peers	[]
route.metrics_port	$(router_metrics_port 0)
route.resp_port	$(resp_port 0)
monitor.port	$(monitor_port)
monitor.metrics_port	$(monitor_metrics_port)
monitor.log_file	\"$logdir/monitor-decisions.jsonl\"
monitor.provisioner	local
monitor.state_dir	\"$home/monitor\"
monitor.kvs_binary	\"$bin/trellis-kvs\"
monitor.local_port_base	$((base + 850))"
    # --set KEY=VALUE of up: after the cluster's own keys, so they win.
    [ -z "${extra_set:-}" ] || ov+=$'\n'"$extra_set"
    {
        echo "# The configuration of the local cluster in $home,"
        echo "# written by deploy/cluster.sh up from deploy/trellis.yml (port base $base)."
        echo "# Every process of the cluster is started with --config on this file;"
        echo "# per-process flags set each one's id, ports and peers."
        echo "#"
        OVERRIDES=$ov awk '
            BEGIN {
                n = split(ENVIRON["OVERRIDES"], lines, "\n")
                for (i = 1; i <= n; i++) {
                    t = index(lines[i], "\t")
                    if (t) v[substr(lines[i], 1, t - 1)] = substr(lines[i], t + 1)
                }
            }
            /^[A-Za-z_]+:[[:space:]]*$/ { sec = $0; sub(/:.*/, "", sec) }
            /^  [A-Za-z_]+:/ {
                key = $1; sub(/:$/, "", key)
                if ((sec "." key) in v) { print "  " key ": " v[sec "." key]; done[sec "." key] = 1; next }
            }
            { print }
            END {
                for (k in v) if (!(k in done)) { print "cluster.sh: " k " is not in deploy/trellis.yml" > "/dev/stderr"; bad = 1 }
                exit bad
            }' "$template"
    } >"$cfg.tmp" || die "cannot write $cfg"
    mv "$cfg.tmp" "$cfg"
    local err
    err=$("$bin/trellis-kvs" --config "$cfg" --print-config 2>&1 >/dev/null) ||
        die "the generated configuration $cfg is refused: $err"
}

# ---- starting and waiting ------------------------------------------------------------------

start_router() { # index
    local i=$1 port mport rport id peers=() j
    port=$(router_port "$i")
    mport=$(router_metrics_port "$i")
    rport=$(resp_port "$i")
    id=r$port
    for ((j = 0; j < nrouters; j++)); do
        [ "$j" -eq "$i" ] || peers+=(--peer "tcp://127.0.0.1:$(router_port "$j")")
    done
    launch "$id" "$bin/trellis-route" --config "$cfg" --id "$id" --port "$port" \
        --metrics-port "$mport" --resp-port "$rport" "${peers[@]}"
    rec_write "$id" router "$launched_pid" "tcp://127.0.0.1:$port" \
        "port=$port,resp=$rport,metrics=$mport" "$mport" - "$i"
    started+=("$id")
}

start_node() { # tier slot [trellis-kvs argument...]
    local tier=$1 slot=$2 port id mport
    shift 2
    port=$(node_port "$tier" "$slot")
    id=$(node_id "$tier" "$slot")
    mport=$((port + 9))
    launch "$id" "$bin/trellis-kvs" --config "$cfg" --tier "$tier" --id "$id" \
        --port-base "$port" --metrics-port "$mport" --data-port $((port + 10)) "$@"
    local shards=$port data=$((port + 10))
    if [ "$threads" -gt 1 ]; then
        shards="$port-$((port + threads - 1))"
        data="$((port + 10))-$((port + 9 + threads))"
    fi
    rec_write "$id" "$tier" "$launched_pid" "tcp://127.0.0.1:$port" \
        "shards=$shards,admin=$((port + threads)),metrics=$mport,data=$data" "$mport" "$tier" "$slot"
    started+=("$id")
}

start_monitor() {
    local id=monitor
    launch "$id" "$bin/trellis-monitor" --config "$cfg"
    rec_write "$id" monitor "$launched_pid" "tcp://127.0.0.1:$(monitor_port)" \
        "port=$(monitor_port),metrics=$(monitor_metrics_port)" "$(monitor_metrics_port)" - 0
    started+=("$id")
}

# Ports a new process needs, checked before it starts.
check_ports_free() { # port...
    local p
    for p in "$@"; do
        if port_in_use "$p"; then
            die "port $p is already in use (another cluster or program?); choose another TRELLIS_PORT_BASE"
        fi
    done
}

node_ports() { # tier slot
    local p i
    p=$(node_port "$1" "$2")
    for ((i = 0; i <= threads; i++)); do echo $((p + i)); done
    echo $((p + 9))
    for ((i = 0; i < threads; i++)); do echo $((p + 10 + i)); done
}

# Waits until each process answers on /healthz (a storage node: is ACTIVE),
# and the router lists each storage node as ACTIVE. On failure: the reason,
# the tail of the process's log, exit 1 (the caller's trap cleans up).
wait_ready() { # seconds id...
    local limit=$1 deadline=$((SECONDS + $1)) id pending code state
    shift
    pending=("$@")
    while [ ${#pending[@]} -gt 0 ]; do
        local still=() view='' use_view=0
        # The router's view, when the CLI shows it (an older CLI without
        # NODES leaves /healthz and the router's /metrics as the checks).
        if have_cli && view=$(router_nodes) &&
            grep -qE '^[^ ]+ +(memory|disk) +[^ ]+ +(JOINING|ACTIVE|LEAVING|LEFT|DEAD)( |$)' <<<"$view"; then
            use_view=1
        fi
        for id in "${pending[@]}"; do
            rec_load "$id" || die "$id has no record"
            if ! is_ours "$r_pid"; then
                note "$id (pid $r_pid) exited while starting"
                show_log_tail "$id"
                exit 1
            fi
            code=$(healthz "$r_metrics")
            if [ "$code" != 200 ]; then
                still+=("$id")
                continue
            fi
            if [ $use_view -eq 1 ] && { [ "$r_role" = memory ] || [ "$r_role" = disk ]; }; then
                state=$(awk -v id="$id" '$1 == id { print $4 }' <<<"$view")
                if [ "$state" != ACTIVE ]; then
                    still+=("$id")
                    continue
                fi
            fi
        done
        pending=("${still[@]+"${still[@]}"}")
        [ ${#pending[@]} -eq 0 ] && break
        if [ $SECONDS -ge "$deadline" ]; then
            id=${pending[0]}
            rec_load "$id"
            code=$(healthz "$r_metrics")
            case $r_role in
            memory | disk)
                state=$(awk -v id="$id" '$1 == id { print $4 }' <<<"$view")
                note "$id did not become ACTIVE within $limit s (its /healthz: $code; the router's view: ${state:-not listed})"
                ;;
            *) note "$id did not answer on /healthz (port $r_metrics) within $limit s (got $code)" ;;
            esac
            show_log_tail "$id"
            exit 1
        fi
        sleep 0.2
    done
    # The router must count at least our nodes as ACTIVE.
    local tier want have
    for tier in memory disk; do
        want=0
        for id in $(running_ids); do
            if rec_load "$id" && [ "$r_role" = "$tier" ]; then want=$((want + 1)); fi
        done
        while :; do
            have=$(router_count "$tier" ACTIVE)
            [ "${have:-0}" -lt "$want" ] || break
            if [ $SECONDS -ge "$deadline" ]; then
                note "the router counts ${have:-0} ACTIVE $tier nodes, expected at least $want"
                exit 1
            fi
            sleep 0.2
        done
    done
}

cores_ok() { [[ $1 =~ ^[0-9]{1,4}(\.[0-9]{1,4})?$ ]]; }

# Whether storage nodes can take a CPU allotment of $1 cores here (a
# writable cgroup cpu controller); the reason on stdout if not.
cpu_limit_possible() { # cores
    local out
    out=$("$bin/trellis-kvs" --check-cpu-limit "$1" 2>&1) && return 0
    echo "$out"
    return 1
}

node_wait_seconds() {
    local join
    join=$(config_value kvs join_timeout_ms)
    echo $((${TRELLIS_START_TIMEOUT:-30} + ${join:-30000} / 1000))
}

# ---- commands ------------------------------------------------------------------------------

up_failed() { # exit status
    [ "$1" -ne 0 ] || return 0
    note "up failed; stopping what it started"
    stop_all || true
}

cmd_up() {
    local want_routers=1 want_memory=2 want_disk=1 want_threads=2 with_monitor=0 cpu_limit=''
    extra_set=""
    while [ $# -gt 0 ]; do
        case $1 in
        --routers | --memory | --disk | --threads)
            [ $# -ge 2 ] || usage_error "up: $1 needs a number"
            posint "$2" || usage_error "up: $1 needs a non-negative integer, got '$2'"
            case $1 in
            --routers) want_routers=$((10#$2)) ;;
            --memory) want_memory=$((10#$2)) ;;
            --disk) want_disk=$((10#$2)) ;;
            --threads) want_threads=$((10#$2)) ;;
            esac
            shift 2
            ;;
        --routers=* | --memory=* | --disk=* | --threads=*)
            local opt=${1%%=*} val=${1#*=}
            shift
            set -- "$opt" "$val" "$@"
            ;;
        --monitor)
            with_monitor=1
            shift
            ;;
        --cpu-limit)
            [ $# -ge 2 ] || usage_error "up: --cpu-limit needs a number of cores"
            cores_ok "$2" || usage_error "up: --cpu-limit needs a number of cores (e.g. 0.5), got '$2'"
            cpu_limit=$2
            shift 2
            ;;
        --cpu-limit=*)
            local val=${1#*=}
            shift
            set -- --cpu-limit "$val" "$@"
            ;;
        --set)
            [ $# -ge 2 ] || usage_error "up: --set needs KEY=VALUE"
            [[ $2 =~ ^[a-z_]+\.[a-z_0-9]+=.+$ ]] ||
                usage_error "up: --set needs SECTION.KEY=VALUE, got '$2'"
            extra_set+="${extra_set:+$'\n'}${2%%=*}"$'\t'"${2#*=}"
            shift 2
            ;;
        --set=*)
            local val=${1#*=}
            shift
            set -- --set "$val" "$@"
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) usage_error "up: unknown argument '$1'" ;;
        esac
    done
    if [ "$want_routers" -lt 1 ] || [ "$want_routers" -gt $MAX_ROUTERS ]; then
        usage_error "up: --routers must be between 1 and $MAX_ROUTERS"
    fi
    [ "$want_memory" -le $MAX_NODES ] || usage_error "up: --memory must be at most $MAX_NODES"
    [ "$want_disk" -le $MAX_NODES ] || usage_error "up: --disk must be at most $MAX_NODES"
    if [ "$want_threads" -lt 1 ] || [ "$want_threads" -gt $MAX_THREADS ]; then
        usage_error "up: --threads must be between 1 and $MAX_THREADS"
    fi
    local want_base=${TRELLIS_PORT_BASE:-6450}
    if ! posint "$want_base" || [ "$want_base" -lt 1024 ] || [ "$want_base" -gt $((65535 - PORT_SPAN)) ]; then
        usage_error "TRELLIS_PORT_BASE must be a port between 1024 and $((65535 - PORT_SPAN)), got '$want_base'"
    fi

    take_lock
    mkdir -p "$rundir" "$logdir" "$home/data" "$home/monitor"
    local running
    running=$(running_ids | wc -l)
    if [ "$running" -gt 0 ]; then
        die "a cluster is already running in $home ($running processes; see 'deploy/cluster.sh status', stop it with 'deploy/cluster.sh down')"
    fi
    local strays
    strays=$(stray_pids | tr '\n' ' ')
    [ -z "$strays" ] ||
        die "processes of an earlier cluster in $home still run (pids $strays); stop them with 'deploy/cluster.sh down'"
    local id stale=0
    for id in $(rec_ids); do
        rm -f "$rundir/$id"
        stale=1
    done
    [ $stale -eq 0 ] || note "forgetting the records of a cluster that is no longer running"

    base=$((10#$want_base))
    threads=$want_threads
    nrouters=$want_routers
    ensure_built
    local b
    for b in trellis-route trellis-kvs; do
        [ -x "$bin/$b" ] || die "$bin/$b is missing (the build did not produce it)"
    done
    if [ $with_monitor -eq 1 ] && [ ! -x "$bin/trellis-monitor" ]; then
        die "--monitor: $bin/trellis-monitor does not exist (not built yet); start without --monitor"
    fi
    # CPU allotments: asked for, or the monitor's default where possible.
    local why
    if [ -n "$cpu_limit" ] && awk -v c="$cpu_limit" 'BEGIN { exit !(c > 0) }'; then
        why=$(cpu_limit_possible "$cpu_limit") ||
            die "--cpu-limit $cpu_limit: storage nodes cannot take a CPU allotment here: $why"
    elif [ -z "$cpu_limit" ] && [ $with_monitor -eq 1 ]; then
        if why=$(cpu_limit_possible "$MONITOR_CPU_LIMIT"); then
            cpu_limit=$MONITOR_CPU_LIMIT
            note "storage nodes get $cpu_limit cores each (--cpu-limit to change, 0 for none)"
        else
            note "warning: no CPU allotment for the storage nodes ($why); their busy figure is CPU use against the machine's CPUs"
        fi
    fi
    [ -z "$cpu_limit" ] || extra_set="kvs.cpu_limit"$'\t'"$cpu_limit${extra_set:+$'\n'}$extra_set"

    # Every port first, so that a clash fails before anything starts.
    local i ports=()
    for ((i = 0; i < nrouters; i++)); do
        ports+=("$(router_port "$i")" "$(router_metrics_port "$i")" "$(resp_port "$i")")
    done
    [ $with_monitor -eq 0 ] || ports+=("$(monitor_port)" "$(monitor_metrics_port)")
    for ((i = 0; i < want_memory; i++)); do mapfile -t -O ${#ports[@]} ports < <(node_ports memory "$i"); done
    for ((i = 0; i < want_disk; i++)); do mapfile -t -O ${#ports[@]} ports < <(node_ports disk "$i"); done
    check_ports_free "${ports[@]}"

    printf 'base=%s\nthreads=%s\nbin=%s\nrouters=%s\nmonitor=%s\n' \
        "$base" "$threads" "$bin" "$nrouters" "$with_monitor" >"$home/cluster"
    write_config "$with_monitor"

    # From here on a failure stops whatever this command started.
    started=()
    trap 'up_failed $?' EXIT
    trap 'exit 130' INT TERM

    note "starting $nrouters router(s), $want_memory memory and $want_disk disk node(s) in $home (ports from $base)"
    for ((i = 0; i < nrouters; i++)); do start_router "$i"; done
    wait_ready "${TRELLIS_START_TIMEOUT:-30}" "${started[@]}"
    local nodes=()
    for ((i = 0; i < want_memory; i++)); do start_node memory "$i"; done
    for ((i = 0; i < want_disk; i++)); do start_node disk "$i"; done
    nodes=("${started[@]:nrouters}")
    [ ${#nodes[@]} -eq 0 ] || wait_ready "$(node_wait_seconds)" "${nodes[@]}"
    if [ $with_monitor -eq 1 ]; then
        start_monitor
        wait_ready "${TRELLIS_START_TIMEOUT:-30}" monitor
    fi
    trap - EXIT INT TERM
    note "cluster up: ${#started[@]} processes (deploy/cluster.sh status)"

    # The endpoints, each on a line of its own.
    echo "router tcp://127.0.0.1:$(router_port 0)"
    # The Redis protocol gateway: printed once router 0 listens on its port.
    if port_in_use "$(resp_port 0)"; then
        echo "resp 127.0.0.1:$(resp_port 0)"
    fi
    # Redis Cluster: shard 0 of the first node of the tier that serves
    # Redis clients (every shard is an entry point; docs/redis.md).
    if [ "$want_memory" -gt 0 ]; then
        echo "cluster 127.0.0.1:$(($(node_port memory 0) + 10))"
    elif [ "$want_disk" -gt 0 ]; then
        echo "cluster 127.0.0.1:$(($(node_port disk 0) + 10))"
    fi
    [ $with_monitor -eq 0 ] || echo "monitor tcp://127.0.0.1:$(monitor_port)"
}

need_cluster() {
    load_cluster || die "no cluster in $home (start one with 'deploy/cluster.sh up')"
}

cmd_down() {
    [ $# -eq 0 ] || usage_error "down takes no arguments"
    if [ ! -d "$home" ]; then
        note "no cluster in $home"
        return 0
    fi
    take_lock
    load_cluster || true
    local n
    n=$(( $(running_ids | wc -l) + $(stray_pids | wc -l) ))
    if [ "$n" -eq 0 ]; then
        for id in $(rec_ids); do rm -f "$rundir/$id"; done
        note "no cluster running in $home"
        return 0
    fi
    stop_all
    note "stopped $n processes"
}

cmd_status() {
    [ $# -eq 0 ] || usage_error "status takes no arguments"
    need_cluster
    local id any=0 dead=0 state pid
    for id in $(rec_ids); do
        rec_load "$id" || continue
        any=1
        state=dead
        if is_ours "$r_pid"; then
            state=alive
        elif [ "$r_role" = memory ] || [ "$r_role" = disk ]; then
            # Restarted by hand under its recorded id: that process is the
            # node now. The record follows it when nothing else holds the
            # lock (a command in progress records its own processes).
            pid=$(hand_started_pid "$id")
            if [ -n "$pid" ]; then
                state=alive
                if try_lock; then
                    rec_write "$id" "$r_role" "$pid" "$r_url" "$r_ports" "$r_metrics" "$r_tier" "$r_slot"
                    release_lock
                fi
                r_pid=$pid
            fi
        fi
        [ "$state" = alive ] || dead=1
        printf '%-8s %-8s %-8s %-44s %s\n' "$r_role" "$id" "$r_pid" "$r_ports" "$state"
    done
    for pid in $(stray_pids); do
        local args tier sid
        args=$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null) || continue
        tier=$(sed -n 's/.*--tier[ =]\([a-z]*\).*/\1/p' <<<"$args")
        sid=$(sed -n 's/.*--id[ =]\([^ ]*\).*/\1/p' <<<"$args")
        # Listed above as its record's process.
        if [ -n "$sid" ] && rec_load "$sid" && [ "$(hand_started_pid "$sid")" = "$pid" ]; then
            continue
        fi
        any=1
        if [ -z "$tier" ]; then
            tier=$({ cat "/proc/$pid/comm"; } 2>/dev/null) || tier=''
            tier=${tier#trellis-}
            [ "$tier" != route ] || tier=router
        fi
        printf '%-8s %-8s %-8s %-44s %s\n' "${tier:-?}" "${sid:--}" "$pid" "(not started by cluster.sh)" alive
    done
    if [ $any -eq 0 ]; then
        note "no cluster running in $home"
        return 1
    fi
    [ $dead -eq 0 ]
}

cmd_cli() {
    need_cluster
    have_cli || die "$bin/trellis-cli does not exist (not built yet)"
    local url
    url=$(first_router_url) || die "no router of the cluster in $home is running"
    exec "$bin/trellis-cli" -r "$url" "$@"
}

cmd_logs() {
    local follow=0 name=''
    while [ $# -gt 0 ]; do
        case $1 in
        -f | --follow) follow=1 ;;
        -*) usage_error "logs: unknown option '$1'" ;;
        *)
            [ -z "$name" ] || usage_error "logs takes one NAME"
            name=$1
            ;;
        esac
        shift
    done
    [ -d "$logdir" ] || die "no logs in $home"
    if [ -z "$name" ]; then
        [ $follow -eq 0 ] || usage_error "logs -f needs a NAME"
        local f
        for f in "$logdir"/*.log; do
            [ -f "$f" ] || continue
            echo "==> $(basename "$f" .log) <=="
            tail -n 10 "$f"
        done
        return 0
    fi
    local log=$logdir/$name.log
    if [ ! -f "$log" ]; then
        local names='' f
        for f in "$logdir"/*.log; do
            if [ -f "$f" ]; then names+="$(basename "$f" .log) "; fi
        done
        usage_error "logs: no log named '$name' (have: ${names:-none})"
    fi
    if [ $follow -eq 1 ]; then exec tail -n 20 -f "$log"; fi
    cat "$log"
}

add_node_failed() { # exit status
    [ "$1" -ne 0 ] && [ ${#started[@]} -gt 0 ] || return 0
    note "stopping ${started[0]}"
    if rec_load "${started[0]}"; then stop_pids "${started[0]}" 5 "$r_pid" || true; fi
    rm -f "$rundir/${started[0]}"
}

# Starts storage node id in its slot and waits until it is ACTIVE (stopped
# again if that fails); prints 'node ID'.
run_node() { # verb tier slot id [trellis-kvs argument...]
    local verb=$1 tier=$2 slot=$3 id=$4
    shift 4
    local ports=()
    mapfile -t ports < <(node_ports "$tier" "$slot")
    check_ports_free "${ports[@]}"
    started=()
    trap 'add_node_failed $?' EXIT
    trap 'exit 130' INT TERM
    note "$verb $tier node $id"
    start_node "$tier" "$slot" "$@"
    wait_ready "$(node_wait_seconds)" "$id"
    trap - EXIT INT TERM
    note "$id is ACTIVE"
    echo "node $id"
}

cmd_add_node() {
    local tier='' node_args=()
    while [ $# -gt 0 ]; do
        case $1 in
        --cpu-limit)
            [ $# -ge 2 ] || usage_error "add-node: --cpu-limit needs a number of cores"
            cores_ok "$2" || usage_error "add-node: --cpu-limit needs a number of cores (e.g. 0.5), got '$2'"
            node_args=(--cpu-limit "$2")
            shift 2
            ;;
        --cpu-limit=*)
            local val=${1#*=}
            shift
            set -- --cpu-limit "$val" "$@"
            ;;
        -*) usage_error "add-node: unknown option '$1'" ;;
        *)
            [ -z "$tier" ] || usage_error "add-node needs one TIER (memory|disk)"
            tier=$1
            shift
            ;;
        esac
    done
    [ -n "$tier" ] || usage_error "add-node needs one TIER (memory|disk)"
    case $tier in memory | disk) ;; *) usage_error "add-node: TIER must be memory or disk, got '$tier'" ;; esac
    need_cluster
    if [ ${#node_args[@]} -gt 0 ] && awk -v c="${node_args[1]}" 'BEGIN { exit !(c > 0) }'; then
        local why
        why=$(cpu_limit_possible "${node_args[1]}") ||
            die "--cpu-limit ${node_args[1]}: the node cannot take a CPU allotment here: $why"
    fi
    take_lock
    [ -n "$(running_ids)" ] || die "no cluster running in $home (start one with 'deploy/cluster.sh up')"
    first_router_url >/dev/null || die "no router of the cluster in $home is running"
    local slot=0 id
    while [ $slot -lt $MAX_NODES ]; do
        id=$(node_id "$tier" "$slot")
        if ! rec_load "$id" || ! is_ours "$r_pid"; then break; fi
        slot=$((slot + 1))
    done
    [ $slot -lt $MAX_NODES ] || die "the $tier tier already has $MAX_NODES nodes"
    run_node starting "$tier" "$slot" "$id" "${node_args[@]+"${node_args[@]}"}"
}

cmd_remove_node() {
    [ $# -eq 1 ] || usage_error "remove-node needs one node ID (see 'deploy/cluster.sh status')"
    local id=$1
    [[ $id =~ ^[A-Za-z0-9_.-]+$ ]] || usage_error "remove-node: bad node id '$id'"
    need_cluster
    take_lock
    if ! rec_load "$id" || { [ "$r_role" != memory ] && [ "$r_role" != disk ]; }; then
        local known=() i
        for i in $(running_ids); do
            if rec_load "$i" && { [ "$r_role" = memory ] || [ "$r_role" = disk ]; }; then known+=("$i"); fi
        done
        usage_error "remove-node: '$id' is not a storage node of this cluster (have: ${known[*]:-none})"
    fi
    local pid=$r_pid tier=$r_role
    if ! is_ours "$pid"; then
        rm -f "$rundir/$id"
        die "$id (pid $pid) is not running; forgot its record"
    fi
    local others=0 i
    for i in $(running_ids); do
        [ "$i" = "$id" ] && continue
        if rec_load "$i" && { [ "$r_role" = memory ] || [ "$r_role" = disk ]; }; then others=$((others + 1)); fi
    done
    [ $others -gt 0 ] || note "warning: $id is the last storage node; its keys have nowhere to go"
    local drain limit
    drain=$(config_value kvs drain_timeout_ms)
    limit=$((2 * ${drain:-60000} / 1000 + 15))
    note "stopping $tier node $id (pid $pid): it hands its keys off, then leaves"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$limit" "$pid"; then
        note "$id did not finish its departure within $limit s"
        show_log_tail "$id"
        stop_pids "$id" 1 "$pid"
    fi
    rm -f "$rundir/$id"
    if have_cli; then
        local state
        state=$(router_nodes | awk -v id="$id" '$1 == id { print $4 }') || state=''
        if [ -n "$state" ] && [ "$state" != LEFT ]; then
            note "warning: the router lists $id as $state, not LEFT"
        fi
    fi
    note "$id has left"
}

cmd_restart_node() {
    [ $# -eq 1 ] || usage_error "restart-node needs one node ID (see 'deploy/cluster.sh status')"
    local id=$1 tier slot port first
    [[ $id =~ ^[md][0-9]{1,5}$ ]] || usage_error "restart-node: bad node id '$id' (a storage node id such as m6500 or d6900)"
    need_cluster
    take_lock
    [ -n "$(running_ids)" ] || die "no cluster running in $home (start one with 'deploy/cluster.sh up')"
    first_router_url >/dev/null || die "no router of the cluster in $home is running"
    # The id names the tier and the port, which give the slot (the record
    # of a removed node is gone, its data directory is not).
    if [ "${id:0:1}" = m ]; then tier=memory first=$((base + 50)); else tier=disk first=$((base + 450)); fi
    port=${id:1}
    slot=$(((port - first) / NODE_STRIDE))
    if [ "$port" -lt "$first" ] || [ $(((port - first) % NODE_STRIDE)) -ne 0 ] ||
        [ "$slot" -ge "$MAX_NODES" ] || [ "$(node_id "$tier" "$slot")" != "$id" ]; then
        usage_error "restart-node: '$id' is not a storage node id of this cluster (see 'deploy/cluster.sh status')"
    fi
    if rec_load "$id" && is_ours "$r_pid"; then
        die "$id is running (pid $r_pid); stop it first ('deploy/cluster.sh remove-node $id')"
    fi
    local pid
    pid=$(hand_started_pid "$id")
    [ -z "$pid" ] || die "$id is running (pid $pid, started by hand); 'deploy/cluster.sh status' takes it back"
    run_node restarting "$tier" "$slot" "$id"
}

main() {
    [ $# -gt 0 ] || {
        usage >&2
        exit 2
    }
    local cmd=$1
    shift
    case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    cli) cmd_cli "$@" ;;
    logs) cmd_logs "$@" ;;
    add-node) cmd_add_node "$@" ;;
    remove-node) cmd_remove_node "$@" ;;
    restart-node) cmd_restart_node "$@" ;;
    help | -h | --help) usage ;;
    *) usage_error "unknown command '$cmd'" ;;
    esac
}

main "$@"
