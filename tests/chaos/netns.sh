#!/usr/bin/env bash
# Network namespaces for the chaos test: one namespace per process, each
# with a veth pair into a bridge in the calling namespace (which holds the
# test's clients), and an nftables set of addresses that the namespace
# drops in both directions (a partition is a set of such cuts).
#
#   netns.sh check                   exit 0 when namespaces can be made here
#   netns.sh up NAME SUBNET COUNT    namespaces NAME-1..NAME-COUNT, address
#                                    SUBNET.i/24 in NAME-i, SUBNET.254 on the
#                                    bridge NAMEbr
#   netns.sh cut NAME I ADDR...      namespace I drops traffic to and from ADDR...
#   netns.sh heal NAME I             namespace I drops nothing any more
#   netns.sh down NAME COUNT         removes the namespaces and the bridge
#   netns.sh gc                      removes what runs of the chaos test left
#                                    behind (names trc<pid>..., pid gone)
#
# NAME is short (interface names have at most 15 bytes): the chaos test
# uses trc<pid>. SUBNET is the first three octets of a free /24.
set -uo pipefail

die() {
    echo "netns.sh: $*" >&2
    exit 1
}

ns_exec() { # NAME I CMD...
    local ns="$1-$2"
    shift 2
    ip netns exec "$ns" "$@"
}

case "${1:-}" in
check)
    probe="trcprobe$$"
    ip netns add "$probe" 2>/dev/null || exit 1
    ok=0
    ip netns exec "$probe" nft list ruleset >/dev/null 2>&1 || ok=1
    ip netns del "$probe" 2>/dev/null
    exit $ok
    ;;
up)
    [ $# -eq 4 ] || die "usage: up NAME SUBNET COUNT"
    name=$2 subnet=$3 count=$4
    ip link add "${name}br" type bridge || die "cannot create bridge ${name}br"
    ip addr add "$subnet.254/24" dev "${name}br" || die "address $subnet.254"
    ip link set "${name}br" up || die "bridge up"
    for i in $(seq 1 "$count"); do
        ns="$name-$i"
        ip netns add "$ns" || die "cannot create namespace $ns"
        ip link add "${name}v$i" type veth peer name eth0 netns "$ns" || die "veth $i"
        ip link set "${name}v$i" master "${name}br" up || die "veth $i up"
        ip -n "$ns" addr add "$subnet.$i/24" dev eth0 || die "address $subnet.$i"
        ip -n "$ns" link set eth0 up || die "eth0 up in $ns"
        ip -n "$ns" link set lo up || die "lo up in $ns"
        ns_exec "$name" "$i" nft -f - <<'EOF' || die "nftables in $ns"
table inet chaos {
    set cut {
        type ipv4_addr
    }
    chain input {
        type filter hook input priority 0; policy accept;
        ip saddr @cut drop
    }
    chain output {
        type filter hook output priority 0; policy accept;
        ip daddr @cut drop
    }
}
EOF
    done
    ;;
cut)
    [ $# -ge 4 ] || die "usage: cut NAME I ADDR..."
    name=$2 i=$3
    shift 3
    elems=$(printf '%s, ' "$@")
    ns_exec "$name" "$i" nft add element inet chaos cut "{ ${elems%, } }" || die "cut in $name-$i"
    ;;
heal)
    [ $# -eq 3 ] || die "usage: heal NAME I"
    ns_exec "$2" "$3" nft flush set inet chaos cut || die "heal in $2-$3"
    ;;
down)
    [ $# -eq 3 ] || die "usage: down NAME COUNT"
    name=$2 count=$3
    for i in $(seq 1 "$count"); do
        ip netns del "$name-$i" 2>/dev/null
        ip link del "${name}v$i" 2>/dev/null
    done
    ip link del "${name}br" 2>/dev/null
    exit 0
    ;;
gc)
    for ns in $(ip netns list | awk '{print $1}' | grep -E '^trc[0-9]+-[0-9]+$'); do
        pid=${ns#trc}
        pid=${pid%%-*}
        kill -0 "$pid" 2>/dev/null || ip netns del "$ns" 2>/dev/null
    done
    for link in $(ip -o link show type bridge | awk -F': ' '{print $2}' | grep -E '^trc[0-9]+br$'); do
        pid=${link#trc}
        pid=${pid%br}
        kill -0 "$pid" 2>/dev/null || ip link del "$link" 2>/dev/null
    done
    exit 0
    ;;
*)
    die "usage: netns.sh check|up|cut|heal|down|gc ..."
    ;;
esac
