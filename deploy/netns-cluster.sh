#!/usr/bin/env bash
# deploy/netns-cluster.sh - a trellis cluster spread over network namespaces
# on this machine: every router and storage node has a namespace, an
# address and a network link of its own, so that partitions between them
# can be made (nftables) and healed. Needs root (CAP_SYS_ADMIN and
# CAP_NET_ADMIN) and iproute2; partitions need nft.
#
# Topology: a hub namespace PREFIX-hub holds a bridge (br0, address .254 of
# the /24); each host H has a namespace PREFIX-H whose eth0 is one end of a
# veth pair, the other end (vH) enslaved to the bridge in the hub. Host
# addresses: routers r0.. at .1.., memory nodes m0.. at .10.., disk nodes
# d0.. at .50... Every process listens on its own address with the default
# ports (router 6450, metrics 6480; storage shards from 6500, metrics 6509, the
# data plane from 6510).
# Nothing is created outside the namespaces: the machine's own interfaces,
# routes and firewall are untouched.
set -euo pipefail

readonly PROG=netns-cluster.sh
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly root

usage() {
    cat <<EOF
usage: deploy/netns-cluster.sh COMMAND [ARG...]

A trellis cluster in network namespaces of this machine (needs root).

commands:
  up [--routers N] [--memory N] [--disk N] [--threads N] [--set KEY=VALUE]...
     [--owner PID]
                      create the namespaces, start the processes and wait
                      until every storage node is ACTIVE; prints
                      'netns HUB' (the namespace that reaches every host)
                      and 'router URL' lines (defaults: 1 router, 2 memory
                      nodes, 1 disk node, 2 shard threads); --set applies
                      to every process; with --owner, 'down' runs by
                      itself once process PID has exited
  down                stop every process and delete every namespace the
                      cluster created
  status              one line per host: ROLE ID NETNS ADDRESS PID alive|dead;
                      exits 1 if any process is dead
  partition A B       drop all traffic between the hosts of group A and
                      those of group B (groups: comma-separated host names,
                      e.g. r0,m0 r1,m1); partitions add up
  heal                remove every partition
  exec HOST CMD...    run CMD in HOST's namespace (HOST may be 'hub')
  cli ARG...          trellis-cli in the hub namespace against the routers
  kill HOST [SIGNAL]  send SIGNAL (default KILL) to HOST's process
  start HOST          start HOST's process again (after kill), same arguments
  help                this text

environment:
  TRELLIS_NETNS_PREFIX   namespace name prefix (default trellis; at most 8
                         characters: letters, digits, '-')
  TRELLIS_NETNS_SUBNET   first three octets of the cluster's /24 (default
                         10.231.0)
  TRELLIS_NETNS_HOME     state directory: records, logs, disk data (default
                         \${TMPDIR:-/tmp}/trellis-netns-PREFIX)
  TRELLIS_BIN            directory of the trellis binaries (default build/bin)
  TRELLIS_START_TIMEOUT  seconds to wait for the cluster to serve (default 30)
  TRELLIS_STOP_TIMEOUT   seconds processes get to stop on SIGTERM (default 10)

exit status: 0 success, 1 failure, 2 bad arguments, 77 network namespaces
are not permitted here (tests take it as a reason to skip).
EOF
}

die() {
    echo "$PROG: error: $*" >&2
    exit 1
}

usage_error() {
    echo "$PROG: $*" >&2
    echo "see 'deploy/netns-cluster.sh --help'" >&2
    exit 2
}

note() {
    echo "$PROG: $*" >&2
}

prefix=${TRELLIS_NETNS_PREFIX:-trellis}
[[ $prefix =~ ^[A-Za-z0-9-]{1,8}$ ]] ||
    usage_error "TRELLIS_NETNS_PREFIX must be 1 to 8 letters, digits or '-': '$prefix'"
subnet=${TRELLIS_NETNS_SUBNET:-10.231.0}
[[ $subnet =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] ||
    usage_error "TRELLIS_NETNS_SUBNET must be three octets such as 10.231.0: '$subnet'"
home=${TRELLIS_NETNS_HOME:-${TMPDIR:-/tmp}/trellis-netns-$prefix}
[[ $home == /* ]] || home=$PWD/$home
home=${home%/}
bin=${TRELLIS_BIN:-$root/build/bin}
start_timeout=${TRELLIS_START_TIMEOUT:-30}
stop_timeout=${TRELLIS_STOP_TIMEOUT:-10}
readonly prefix subnet home bin start_timeout stop_timeout
readonly hub=$prefix-hub rundir=$home/run logdir=$home/logs
readonly ROUTER_PORT=6450 ROUTER_METRICS=6480 NODE_PORT=6500 NODE_METRICS=6509 NODE_DATA=6510
readonly MAX_ROUTERS=9 MAX_NODES=40 MAX_THREADS=8

# ---- hosts -----------------------------------------------------------------------------

ns_of() { # host
    if [ "$1" = hub ]; then echo "$hub"; else echo "$prefix-$1"; fi
}

addr_of() { # host
    local n=${1:1}
    case $1 in
    hub) echo "$subnet.254" ;;
    r*) echo "$subnet.$((1 + n))" ;;
    m*) echo "$subnet.$((10 + n))" ;;
    d*) echo "$subnet.$((50 + n))" ;;
    esac
}

valid_host() { # host
    [[ $1 =~ ^(r[0-8]|[md]([0-9]|[1-3][0-9]))$ ]]
}

# run/HOST: role, pid, address and the command line (NUL-separated in
# run/HOST.cmd) of the host's process.
rec_write() { # host role pid
    local tmp=$rundir/.$1.tmp
    printf 'role=%s\npid=%s\naddr=%s\n' "$2" "$3" "$(addr_of "$1")" >"$tmp"
    mv "$tmp" "$rundir/$1"
}

rec_get() { # host key
    [ -f "$rundir/$1" ] || return 1
    sed -n "s/^$2=//p" "$rundir/$1"
}

hosts() { # recorded hosts: routers first, then memory and disk nodes
    local f
    [ -d "$rundir" ] || return 0
    for f in "$rundir"/r[0-9]* "$rundir"/m[0-9]* "$rundir"/d[0-9]*; do
        case $f in *.cmd) continue ;; esac
        [ -f "$f" ] && basename "$f"
    done
    return 0
}

# Is pid alive (not a zombie) and inside host's namespace?
alive() { # host pid
    local pid=$2 state
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    state=$({ awk '{print $3}' "/proc/$pid/stat"; } 2>/dev/null) || return 1
    [ "$state" != Z ] && [ "$state" != X ] || return 1
    ip netns pids "$(ns_of "$1")" 2>/dev/null | grep -qx "$pid"
}

# Namespaces of this prefix that exist now.
our_netns() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$prefix-(hub|[rmd][0-9]+)$" || true
}

routers_urls() {
    local h urls=""
    for h in $(hosts); do
        case $h in r*) urls+="${urls:+,}tcp://$(addr_of "$h"):$ROUTER_PORT" ;; esac
    done
    echo "$urls"
}

# ---- namespaces and links --------------------------------------------------------------

check_permitted() {
    command -v ip >/dev/null || die "iproute2 (ip) is not installed"
    local probe="$prefix-probe$$" err
    if ! err=$(ip netns add "$probe" 2>&1); then
        echo "$PROG: network namespaces are not permitted here (needs root: CAP_SYS_ADMIN and" \
            "CAP_NET_ADMIN): ip netns add: $err" >&2
        exit 77
    fi
    ip netns del "$probe" 2>/dev/null || true
}

make_hub() {
    ip netns add "$hub"
    ip -n "$hub" link set lo up
    ip -n "$hub" link add br0 type bridge
    ip -n "$hub" addr add "$subnet.254/24" dev br0
    ip -n "$hub" link set br0 up
}

make_host() { # host
    local h=$1 ns
    ns=$(ns_of "$h")
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # Both ends are made from the hub: the host's end moves straight into
    # its namespace, so no interface ever appears outside them.
    ip -n "$hub" link add "v$h" type veth peer name eth0 netns "$ns"
    ip -n "$hub" link set "v$h" master br0 up
    ip -n "$ns" addr add "$(addr_of "$h")/24" dev eth0
    ip -n "$ns" link set eth0 up
}

# ---- processes ---------------------------------------------------------------------------

# Starts host's process from its recorded command line, detached, in its
# namespace; records its pid.
launch() { # host role
    local h=$1 role=$2 ns pid
    local -a argv=()
    ns=$(ns_of "$h")
    mapfile -d '' -t argv <"$rundir/$h.cmd"
    printf '==== %s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${argv[*]}" >>"$logdir/$h.log"
    # setsid: a session of its own (no signal from this shell's terminal);
    # ip netns exec replaces itself with the program, so $! is its pid.
    setsid ip netns exec "$ns" "${argv[@]}" </dev/null >>"$logdir/$h.log" 2>&1 9>&- &
    pid=$!
    rec_write "$h" "$role" "$pid"
}

write_cmd() { # host argv...
    local h=$1
    shift
    printf '%s\0' "$@" >"$rundir/$h.cmd"
}

# Waits until a TCP connection from the hub to addr:port succeeds.
wait_port() { # addr port deadline
    while ((SECONDS < $3)); do
        if ip netns exec "$hub" bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# The hub's view of the membership: how many nodes the routers list ACTIVE.
active_count() {
    ip netns exec "$hub" "$bin/trellis-cli" -r "$(routers_urls)" -t 500 NODES 2>/dev/null |
        grep -c ' ACTIVE ' || true
}

tail_log() { # host
    if [ -f "$logdir/$1.log" ]; then
        echo "---- $1 ($logdir/$1.log)" >&2
        tail -n 20 "$logdir/$1.log" >&2
    fi
}

# ---- commands --------------------------------------------------------------------------------

cmd_up() {
    local nrouters=1 nmem=2 ndisk=1 threads=2 owner="" i h n
    local -a sets=()
    while [ $# -gt 0 ]; do
        case $1 in
        --routers | --memory | --disk | --threads | --owner | --set)
            [ $# -ge 2 ] || usage_error "$1 needs a value"
            case $1 in
            --routers) nrouters=$2 ;;
            --memory) nmem=$2 ;;
            --disk) ndisk=$2 ;;
            --threads) threads=$2 ;;
            --owner) owner=$2 ;;
            --set) sets+=(--set "$2") ;;
            esac
            shift 2
            ;;
        *) usage_error "up: unknown option '$1'" ;;
        esac
    done
    for n in "$nrouters" "$nmem" "$ndisk" "$threads"; do
        [[ $n =~ ^[0-9]+$ ]] || usage_error "up: '$n' is not a number"
    done
    ((nrouters >= 1 && nrouters <= MAX_ROUTERS)) || usage_error "up: --routers 1 to $MAX_ROUTERS"
    ((nmem <= MAX_NODES && ndisk <= MAX_NODES)) || usage_error "up: at most $MAX_NODES per tier"
    ((nmem + ndisk >= 1)) || usage_error "up: no storage node"
    ((threads >= 1 && threads <= MAX_THREADS)) || usage_error "up: --threads 1 to $MAX_THREADS"
    [ -z "$owner" ] || [[ $owner =~ ^[0-9]+$ ]] || usage_error "up: --owner takes a pid"
    if [ ! -x "$bin/trellis-route" ] || [ ! -x "$bin/trellis-kvs" ] || [ ! -x "$bin/trellis-cli" ]; then
        die "no trellis binaries in $bin (build them: cmake -S . -B build && cmake --build build)"
    fi
    check_permitted
    [ -z "$(our_netns)" ] ||
        die "namespaces of prefix '$prefix' exist already (deploy/netns-cluster.sh down, or" \
            "another TRELLIS_NETNS_PREFIX): $(our_netns | tr '\n' ' ')"
    mkdir -p "$rundir" "$logdir" "$home/data"
    rm -f "$rundir"/*

    # Anything that fails from here on takes the whole cluster down.
    trap 'note "starting failed; cleaning up"; cmd_down >/dev/null 2>&1 || true' ERR
    make_hub
    local -a rhosts=() nhosts=()
    for ((i = 0; i < nrouters; i++)); do rhosts+=("r$i"); done
    for ((i = 0; i < nmem; i++)); do nhosts+=("m$i"); done
    for ((i = 0; i < ndisk; i++)); do nhosts+=("d$i"); done
    for h in "${rhosts[@]}" "${nhosts[@]}"; do make_host "$h"; done

    local -a rargs=()
    for h in "${rhosts[@]}"; do rargs+=(--router "tcp://$(addr_of "$h"):$ROUTER_PORT"); done
    for h in "${rhosts[@]}"; do
        local -a peers=()
        for n in "${rhosts[@]}"; do
            [ "$n" = "$h" ] || peers+=(--peer "tcp://$(addr_of "$n"):$ROUTER_PORT")
        done
        write_cmd "$h" "$bin/trellis-route" --id "$h" --listen "$(addr_of "$h")" \
            --port "$ROUTER_PORT" --metrics-port "$ROUTER_METRICS" ${peers[@]+"${peers[@]}"} \
            ${sets[@]+"${sets[@]}"}
        launch "$h" router
    done
    local deadline=$((SECONDS + start_timeout))
    for h in "${rhosts[@]}"; do
        wait_port "$(addr_of "$h")" "$ROUTER_PORT" "$deadline" || {
            tail_log "$h"
            false
        }
    done
    for h in "${nhosts[@]}"; do
        local tier=memory
        [ "${h:0:1}" = d ] && tier=disk
        write_cmd "$h" "$bin/trellis-kvs" --tier "$tier" --threads "$threads" --id "$h" \
            --listen "$(addr_of "$h")" --port-base "$NODE_PORT" --metrics-port "$NODE_METRICS" \
            --data-port "$NODE_DATA" \
            --data-dir "$home/data" "${rargs[@]}" ${sets[@]+"${sets[@]}"}
        launch "$h" "$tier"
    done
    local want=${#nhosts[@]}
    until [ "$(active_count)" = "$want" ]; do
        for h in "${nhosts[@]}" "${rhosts[@]}"; do
            if ! alive "$h" "$(rec_get "$h" pid)"; then
                note "$h exited"
                tail_log "$h"
                false
            fi
        done
        if ((SECONDS >= deadline)); then
            note "the storage nodes did not all become ACTIVE within ${start_timeout}s"
            for h in "${nhosts[@]}"; do tail_log "$h"; done
            false
        fi
        sleep 0.2
    done
    trap - ERR
    if [ -n "$owner" ]; then
        # Outlives this script, not the owner: down once the owner is gone.
        (
            trap '' TERM INT HUP
            while kill -0 "$owner" 2>/dev/null; do sleep 1; done
            TRELLIS_NETNS_PREFIX=$prefix TRELLIS_NETNS_HOME=$home TRELLIS_STOP_TIMEOUT=2 \
                bash "$root/deploy/netns-cluster.sh" down
        ) </dev/null >>"$logdir/watchdog.log" 2>&1 9>&- &
        echo "$!" >"$home/watchdog"
    fi
    echo "netns $hub"
    for h in "${rhosts[@]}"; do echo "router tcp://$(addr_of "$h"):$ROUTER_PORT"; done
}

cmd_down() {
    local h pid ns deadline any
    # Storage nodes first (they hand their keys off while the routers run),
    # then routers; SIGTERM, then SIGKILL after the stop timeout.
    for role in node router; do
        any=0
        for h in $(hosts); do
            [[ $role == router && $h == r* || $role == node && $h != r* ]] || continue
            pid=$(rec_get "$h" pid) || continue
            if alive "$h" "$pid"; then
                kill -TERM "$pid" 2>/dev/null || true
                any=1
            fi
        done
        ((any)) || continue
        deadline=$((SECONDS + stop_timeout))
        while ((SECONDS < deadline)); do
            any=0
            for h in $(hosts); do
                pid=$(rec_get "$h" pid) || continue
                if [[ $role == router && $h == r* || $role == node && $h != r* ]] &&
                    alive "$h" "$pid"; then
                    any=1
                fi
            done
            ((any)) || break
            sleep 0.1
        done
    done
    # Whatever else still runs in our namespaces (stragglers, processes
    # started with exec) is killed, except this command's own ancestors (a
    # test that joined the hub runs down), then the namespaces go (their
    # links with them).
    local keep=" " p=$$
    while [[ $p =~ ^[0-9]+$ ]] && ((p > 1)); do
        keep+="$p "
        p=$({ awk '{print $4}' "/proc/$p/stat"; } 2>/dev/null) || break
    done
    for ns in $(our_netns); do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            case $keep in *" $pid "*) continue ;; esac
            kill -KILL "$pid" 2>/dev/null || true
        done
    done
    for ns in $(our_netns); do
        deadline=$((SECONDS + 5))
        while ((SECONDS < deadline)); do
            any=0
            for pid in $(ip netns pids "$ns" 2>/dev/null); do
                case $keep in *" $pid "*) ;; *) any=1 ;; esac
            done
            ((any)) || break
            sleep 0.05
        done
        [ "$ns" = "$hub" ] || ip netns del "$ns" 2>/dev/null || note "cannot delete $ns"
    done
    if ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$hub"; then
        ip netns del "$hub" 2>/dev/null || note "cannot delete $hub"
    fi
    if [ -f "$home/watchdog" ]; then
        pid=$(cat "$home/watchdog")
        rm -f "$home/watchdog"
        # The watchdog runs this very command: leave it be.
        if [ "$pid" != "$PPID" ] && [[ $pid =~ ^[0-9]+$ ]]; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$rundir"/* 2>/dev/null || true
    [ -z "$(our_netns)" ] || die "namespaces left: $(our_netns | tr '\n' ' ')"
}

cmd_status() {
    local h pid st bad=0
    for h in $(hosts); do
        pid=$(rec_get "$h" pid)
        if alive "$h" "$pid"; then st=alive; else
            st=dead
            bad=1
        fi
        printf '%-8s %-6s %-18s %-15s %-8s %s\n' "$(rec_get "$h" role)" "$h" "$(ns_of "$h")" \
            "$(addr_of "$h")" "$pid" "$st"
    done
    return $bad
}

group_hosts() { # group -> host names, checked
    local g=$1 h
    [ -n "$g" ] || usage_error "partition: empty group"
    for h in ${g//,/ }; do
        if ! valid_host "$h" || [ ! -f "$rundir/$h" ]; then
            usage_error "partition: no host '$h'"
        fi
        echo "$h"
    done
}

cmd_partition() {
    [ $# -eq 2 ] || usage_error "partition takes two groups of hosts"
    command -v nft >/dev/null || die "nft (nftables) is not installed"
    local -a a=() b=()
    mapfile -t a < <(group_hosts "$1")
    mapfile -t b < <(group_hosts "$2")
    local h x
    for h in "${a[@]}"; do for x in "${b[@]}"; do
        [ "$h" != "$x" ] || usage_error "partition: $h is on both sides"
    done; done
    drop_from() { # host, other hosts...
        local self=$1 ns addrs="" o
        shift
        ns=$(ns_of "$self")
        for o in "$@"; do addrs+="${addrs:+, }$(addr_of "$o")"; done
        ip netns exec "$ns" nft -f - <<EOF
table inet trellis_partition {
    chain input { type filter hook input priority 0; policy accept; }
    chain output { type filter hook output priority 0; policy accept; }
}
add rule inet trellis_partition input ip saddr { $addrs } drop
add rule inet trellis_partition output ip daddr { $addrs } drop
EOF
    }
    for h in "${a[@]}"; do drop_from "$h" "${b[@]}"; done
    for h in "${b[@]}"; do drop_from "$h" "${a[@]}"; done
}

cmd_heal() {
    local h
    command -v nft >/dev/null || return 0
    for h in $(hosts); do
        ip netns exec "$(ns_of "$h")" nft delete table inet trellis_partition 2>/dev/null || true
    done
}

host_arg() { # host (or hub) that must exist
    [ "$1" = hub ] && return 0
    if ! valid_host "$1" || [ ! -f "$rundir/$1" ]; then
        usage_error "no host '$1' (see status)"
    fi
}

main() {
    [ $# -ge 1 ] || {
        usage >&2
        exit 2
    }
    local command=$1
    shift
    case $command in
    help | --help | -h)
        usage
        return 0
        ;;
    up | down | status | partition | heal | exec | cli | kill | start) ;;
    *) usage_error "unknown command '$command'" ;;
    esac
    [ "$(id -u)" = 0 ] || {
        echo "$PROG: needs root (network namespaces)" >&2
        exit 77
    }
    mkdir -p "$home"
    # One command at a time per cluster (the watchdog's down waits its turn).
    exec 9>"$home/lock"
    flock 9
    case $command in
    up) cmd_up "$@" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    partition) cmd_partition "$@" ;;
    heal) cmd_heal ;;
    exec)
        [ $# -ge 2 ] || usage_error "exec HOST CMD..."
        host_arg "$1"
        local ns
        ns=$(ns_of "$1")
        shift
        exec 9>&-
        exec ip netns exec "$ns" "$@"
        ;;
    cli)
        local urls
        urls=$(routers_urls)
        [ -n "$urls" ] || die "no cluster is running"
        exec 9>&-
        exec ip netns exec "$hub" "$bin/trellis-cli" -r "$urls" "$@"
        ;;
    kill)
        if [ $# -lt 1 ] || [ $# -gt 2 ]; then
            usage_error "kill HOST [SIGNAL]"
        fi
        host_arg "$1"
        kill -"${2:-KILL}" "$(rec_get "$1" pid)"
        ;;
    start)
        [ $# -eq 1 ] || usage_error "start HOST"
        host_arg "$1"
        ! alive "$1" "$(rec_get "$1" pid)" || die "$1 is running"
        launch "$1" "$(rec_get "$1" role)"
        ;;
    esac
}

main "$@"
