#!/usr/bin/env bash
# tests/resp/test_cluster.sh - every shard of a storage node speaks Redis
# Cluster on its data port (kvs/dp_resp.c), on a cluster from
# deploy/cluster.sh (1 router, 2 memory nodes of 2 shards each, no disk
# node): the frame protocol and RESP share the port; every shard tells the
# same slot map (CLUSTER SLOTS, SHARDS, NODES, INFO), each covering every
# slot once with its 4 shards as masters; CLUSTER MYID, KEYSLOT and
# COUNTKEYSINSLOT; connection commands; SET and GET from any shard with
# redis-cli -c (MOVED followed), sets, counters, CROSSSLOT, expiry; a
# pipeline sent in one write answered in order; redis-benchmark --cluster;
# on every shard port, garbage and a huge bulk length are refused and close the connection, a
# half-written command waits; the nodes' trellis_resp_* metrics.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/resp/lib.sh
source "$here/lib.sh"

command -v redis-cli >/dev/null ||
    ts_skip "redis-cli is not installed (deploy/install-deps.sh installs redis-tools)"

rt_up --memory 2 --disk 0 --threads 2
[ -n "$RT_CLUSTER" ] || die "cluster.sh up printed no 'cluster HOST:PORT' line: $TS_CS_OUT"
mapfile -t shard_ports < <("$TS_CS" status | awk '$1 == "memory" { print }' |
    grep -o 'data=[0-9-]*' | sed 's/data=//' | while IFS=- read -r a b; do seq "$a" "${b:-$a}"; done)
[ "${#shard_ports[@]}" -eq 4 ] || fail "expected 4 shard data ports, got [${shard_ports[*]}]"

rc() { timeout 10 redis-cli --no-raw -p "$@" 2>&1; }
# raw BYTES: what the shard answers to BYTES (a printf format, in single
# quotes on purpose) sent on a connection of its own to shard port $p.
# shellcheck disable=SC2016
raw() {
    timeout 10 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "$2" >&3 && timeout 3 cat <&3' \
        _ "$p" "$1" 2>&1 | tr -d '\r'
}

step "connection commands on a shard"
p=$RT_CLUSTER
[ "$(rc "$p" PING)" = PONG ] || fail "PING: $(rc "$p" PING)"
[ "$(rc "$p" ECHO hi)" = '"hi"' ] || fail "ECHO"
[[ $(rc "$p" HELLO 3) == *'"mode"'*'"cluster"'* ]] || fail "HELLO 3: $(rc "$p" HELLO 3)"
[[ $(rc "$p" HELLO 4) == "(error) NOPROTO"* ]] || fail "HELLO 4"
[ "$(rc "$p" READONLY)" = OK ] || fail "READONLY"
[ "$(rc "$p" ASKING)" = OK ] || fail "ASKING"
[[ $(rc "$p" AUTH x) == "(error) ERR AUTH <password> called without any password"* ]] ||
    fail "AUTH without a password: $(rc "$p" AUTH x)"

step "the slot map, the same from every shard"
# cluster.sh up returns once the router lists every node ACTIVE; a shard
# learns the ring from the node's next heartbeat (asynchronously, slower
# under the sanitizers): wait, bounded, until each one knows the 4 shards.
for sp in "${shard_ports[@]}"; do
    for _ in $(seq 1 100); do
        [[ $(rc "$sp" CLUSTER INFO) == *cluster_known_nodes:4* ]] && break
        sleep 0.1
    done
done
first=
for sp in "${shard_ports[@]}"; do
    slots=$(timeout 10 redis-cli --raw -p "$sp" CLUSTER SLOTS 2>&1 | grep -v '^[0-9a-f]\{40\}$')
    [ -n "$first" ] || first=$slots
    [ "$slots" = "$first" ] || fail "CLUSTER SLOTS of $sp differs from the first shard's"
    info=$(rc "$sp" CLUSTER INFO)
    [[ $info == *cluster_state:ok* && $info == *cluster_slots_assigned:16384* &&
        $info == *cluster_known_nodes:4* && $info == *cluster_size:4* ]] ||
        fail "CLUSTER INFO of $sp: $info"
    myid=$(timeout 10 redis-cli --raw -p "$sp" CLUSTER MYID)
    [[ $myid =~ ^[0-9a-f]{40}$ ]] || fail "CLUSTER MYID of $sp: [$myid]"
    nodes=$(timeout 10 redis-cli --raw -p "$sp" CLUSTER NODES)
    [ "$(grep -c . <<<"$nodes")" -eq 4 ] || fail "CLUSTER NODES of $sp: $nodes"
    grep -q "^$myid 127.0.0.1:$sp@[0-9]* myself,master " <<<"$nodes" ||
        fail "CLUSTER NODES of $sp does not show it as myself: $nodes"
done
# Every slot exactly once across the masters' ranges of CLUSTER NODES.
timeout 10 redis-cli --raw -p "$p" CLUSTER NODES | python3 -c '
import sys
seen = [0] * 16384
for line in sys.stdin:
    for r in line.split()[8:]:
        a, _, b = r.partition("-")
        for s in range(int(a), int(b or a) + 1):
            seen[s] += 1
bad = [s for s in range(16384) if seen[s] != 1]
sys.exit(1 if bad else 0)' || fail "CLUSTER NODES does not cover every slot once"
shards=$(rc "$p" CLUSTER SHARDS)
[ "$(grep -c '"master"' <<<"$shards")" -eq 4 ] || fail "CLUSTER SHARDS: $shards"

step "slots of keys"
for k in foo bar '{user1000}.following' 'a{b'; do
    want=$(python3 -c '
import sys
k = sys.argv[1].encode()
s = k.find(b"{")
if s >= 0:
    e = k.find(b"}", s + 1)
    if e > s + 1:
        k = k[s + 1:e]
crc = 0
for b in k:
    crc ^= b << 8
    for _ in range(8):
        crc = ((crc << 1) ^ 0x1021) & 0xffff if crc & 0x8000 else (crc << 1) & 0xffff
print(crc % 16384)' "$k")
    got=$(timeout 10 redis-cli --raw -p "$p" CLUSTER KEYSLOT "$k")
    [ "$got" = "$want" ] || fail "CLUSTER KEYSLOT $k: $got, want $want"
done
[ "$(rc "$p" CLUSTER COUNTKEYSINSLOT 0)" = "(integer) 0" ] || fail "COUNTKEYSINSLOT 0"
[[ $(rc "$p" CLUSTER COUNTKEYSINSLOT 16384) == "(error) ERR Invalid slot"* ]] ||
    fail "COUNTKEYSINSLOT 16384"
[[ $(rc "$p" CLUSTER FAILOVER) == "(error) ERR trellis: CLUSTER FAILOVER is not supported"* ]] ||
    fail "CLUSTER FAILOVER"

step "data commands follow the slots"
# Without -c: a key of another shard's slot answers MOVED to that shard.
moved=0 served=0
for i in $(seq 1 40); do
    out=$(rc "$p" SET "k$i" "v$i")
    case $out in
    OK) served=$((served + 1)) ;;
    "(error) MOVED "*)
        moved=$((moved + 1))
        read -r _ _ slot _ <<<"$out"
        [ "$slot" = "$(timeout 10 redis-cli --raw -p "$p" CLUSTER KEYSLOT "k$i")" ] ||
            fail "MOVED names slot $slot for k$i"
        ;;
    *) fail "SET k$i on $p: [$out]" ;;
    esac
done
if [ "$moved" -eq 0 ] || [ "$served" -eq 0 ]; then
    fail "40 keys: $served served, $moved moved"
fi
# With -c, from any shard: every key written and read back.
for i in $(seq 1 40); do
    sp=${shard_ports[$((i % 4))]}
    [ "$(timeout 10 redis-cli -c -p "$sp" SET "key:$i" "value $i" 2>&1)" = OK ] ||
        fail "redis-cli -c SET key:$i via $sp"
done
for i in $(seq 1 40); do
    sp=${shard_ports[$(((i + 1) % 4))]}
    got=$(timeout 10 redis-cli -c -p "$sp" GET "key:$i" 2>&1)
    [ "$got" = "value $i" ] || fail "redis-cli -c GET key:$i via $sp: [$got]"
done
# Each key lives on exactly one shard: the counts of its slots add up.
total=0
for sp in "${shard_ports[@]}"; do
    for i in $(seq 1 40); do
        s=$(timeout 10 redis-cli --raw -p "$sp" CLUSTER KEYSLOT "key:$i")
        n=$(timeout 10 redis-cli --raw -p "$sp" CLUSTER COUNTKEYSINSLOT "$s")
        total=$((total + n))
    done
done
[ "$total" -ge 40 ] || fail "COUNTKEYSINSLOT over the shards: $total for 40 keys"
[ "$(timeout 10 redis-cli -c -p "$p" MSET '{u1}a' 1 '{u1}b' 2 2>&1)" = OK ] || fail "MSET in one slot"
[ "$(timeout 10 redis-cli -c -p "$p" MGET '{u1}a' '{u1}b' 2>&1 | tr '\n' ' ')" = "1 2 " ] ||
    fail "MGET in one slot"
[[ $(timeout 10 redis-cli -c -p "$p" MSET a 1 b 2 2>&1) == *CROSSSLOT* ]] || fail "MSET across slots"
[ "$(timeout 10 redis-cli -c -p "$p" EXPIRE key:1 100 2>&1)" = 1 ] || fail "EXPIRE"
ttl=$(timeout 10 redis-cli -c -p "$p" TTL key:1 2>&1)
[ "$ttl" -gt 90 ] 2>/dev/null || fail "TTL key:1: [$ttl]"
[ "$(timeout 10 redis-cli -c -p "$p" DEL key:2 2>&1)" = 1 ] || fail "DEL"
[ -z "$(timeout 10 redis-cli -c -p "$p" GET key:2 2>&1)" ] || fail "GET after DEL"
[ "$(timeout 10 redis-cli -c -p "$p" SADD tags red green red 2>&1)" = 2 ] || fail "SADD"
[ "$(timeout 10 redis-cli -c -p "$p" SREM tags green blue 2>&1)" = 1 ] || fail "SREM"
[ "$(timeout 10 redis-cli -c -p "$p" SMEMBERS tags 2>&1)" = red ] || fail "SMEMBERS"
[[ $(timeout 10 redis-cli -c -p "$p" GET tags 2>&1) == *WRONGTYPE* ]] || fail "GET of a set"
# Counters: four clients on two shards' ports, 50 increments each.
pids=()
for i in 0 1 2 3; do
    timeout 60 redis-cli -c -p "${shard_ports[$((i % 2))]}" -r 50 INCR hits >/dev/null 2>&1 &
    pids+=($!)
done
wait "${pids[@]}"
[ "$(timeout 10 redis-cli -c -p "$p" GET hits 2>&1)" = 200 ] ||
    fail "200 INCRs: GET hits is $(timeout 10 redis-cli -c -p "$p" GET hits 2>&1)"
[ "$(timeout 10 redis-cli -c -p "$p" INCRBY hits -201 2>&1)" = -1 ] || fail "INCRBY -201"
[ "$(timeout 10 redis-cli -p "$RT_PORT" GET hits 2>&1)" = -1 ] || fail "the gateway's GET hits"
[[ $(timeout 10 redis-cli -c -p "$p" HSET h f v 2>&1) == *"ask the gateway"* ]] ||
    fail "HSET on a shard port: $(timeout 10 redis-cli -c -p "$p" HSET h f v 2>&1)"
# What the shards wrote, the gateway reads: one placement.
[ "$(timeout 10 redis-cli -p "$RT_PORT" GET key:3 2>&1)" = "value 3" ] || fail "gateway GET key:3"

step "a pipeline in one write: one round, replies in order"
# A hash tag of a slot this shard serves, and a key of a slot it does not.
tag='' other=''
for i in $(seq 1 200); do
    out=$(rc "$p" EXISTS "{pl$i}")
    if [ -z "$tag" ] && [ "$out" = "(integer) 0" ]; then
        tag="{pl$i}"
    elif [ -z "$other" ] && [[ $out == "(error) MOVED "* ]]; then
        other="pl$i"
    fi
    [ -z "$tag" ] || [ -z "$other" ] || break
done
if [ -z "$tag" ] || [ -z "$other" ]; then
    fail "no key served by $p and none served elsewhere"
fi
# The commands as RESP arrays, one after the other, sent in one write; an
# inline command among them.
req() {
    printf '*%d\r\n' $#
    for a; do printf '$%d\r\n%s\r\n' ${#a} "$a"; done
}
pipeline=$(
    req SET "${tag}a" 1
    req GET "${tag}a"
    req SADD "${tag}s" x y
    req SADD "${tag}s" y z
    req PING
    printf 'GET %sa\r\n' "$tag"
    req GET "$other"
    req INCR "${tag}c"
    req INCR "${tag}c"
    req GET
    req SET "${tag}a" 2
    req GET "${tag}a"
    req MGET "${tag}a" "${tag}b"
    req SCARD "${tag}s"
    req DEL "${tag}a"
    req GET "${tag}a"
)
# ($(...) dropped the last LF: the format puts it back.)
out=$(raw "$pipeline"'\n' | sed 's/^-MOVED [0-9]* .*/-MOVED/')
# shellcheck disable=SC2016 # RESP's bulk headers, literally
want=$(printf '%s\n' +OK '$1' 1 :2 :1 +PONG '$1' 1 -MOVED :1 :2 \
    "-ERR wrong number of arguments for 'get' command" +OK '$1' 2 '*2' '$1' 2 '$-1' :3 :1 '$-1')
[ "$out" = "$want" ] || fail "the pipeline answered:
$out
instead of:
$want"

step "redis-benchmark --cluster"
out=$(timeout 120 redis-benchmark --cluster -p "$p" -t set,get,incr,sadd -n 4000 -c 8 -q 2>&1)
echo "$out" | tr '\r' '\n' | grep -E 'requests per second' || fail "redis-benchmark --cluster: $out"
[[ $out == *"SET: "*"GET: "*"INCR: "*"SADD: "* ]] ||
    fail "redis-benchmark --cluster did not run SET, GET, INCR and SADD: $out"

step "bad input"
# Every shard's port, each on its own.
p0=$p
for p in "${shard_ports[@]}"; do
    # shellcheck disable=SC2016
    out=$(raw '*1\r\n$999999999999\r\n')
    [[ $out == "-ERR Protocol error"* ]] || fail "$p: a huge bulk length: [$out]"
    out=$(raw '*x\r\n')
    [[ $out == "-ERR Protocol error"* ]] || fail "$p: a garbage array length: [$out]"
    # shellcheck disable=SC2016
    out=$(raw '*2\r\n$4\r\nECHO\r\n$5\r\nhal')
    [ -z "$out" ] || fail "$p: a half-written command was answered: [$out]"
    [ "$(rc "$p" PING)" = PONG ] || fail "$p: PING after bad input"
    [[ $(rc "$p" GET) == *"wrong number of arguments"* ]] || fail "$p: a command after bad input"
done
p=$p0

step "the nodes' metrics count what their shards' Redis ports did"
# Summed over the memory nodes' /metrics; a shard reports its counts once
# per statistics period, so wait (bounded) for the last ones.
mapfile -t node_metrics < <("$TS_CS" status | awk '$1 == "memory" { print }' |
    grep -o 'metrics=[0-9]*' | sed 's/metrics=//')
[ "${#node_metrics[@]}" -eq 2 ] || fail "expected 2 memory nodes' metrics ports: [${node_metrics[*]}]"
resp_sum() { # metric
    local mp total=0 v
    for mp in "${node_metrics[@]}"; do
        v=$(curl -s -m 5 "http://127.0.0.1:$mp/metrics" | awk -v m="$1" '
            index($1, m "{") == 1 { t += $2 } END { printf "%.0f", t }')
        total=$((total + ${v:-0}))
    done
    echo "$total"
}
for _ in $(seq 1 50); do
    [ "$(resp_sum trellis_resp_protocol_errors_total)" -ge 2 ] && break
    sleep 0.2
done
commands=$(resp_sum trellis_resp_commands_total)
rounds=$(resp_sum trellis_resp_batches_total)
in_rounds=$(resp_sum trellis_resp_batched_commands_total)
errors=$(resp_sum trellis_resp_errors_total)
proto=$(resp_sum trellis_resp_protocol_errors_total)
conns=$(resp_sum trellis_resp_connections_total)
step "metrics: $commands commands, $in_rounds of them in $rounds rounds, $errors errors, $proto protocol errors, $conns connections"
[ "$commands" -ge 16000 ] || fail "trellis_resp_commands_total: $commands (redis-benchmark alone sent 16000)"
if [ "$rounds" -eq 0 ] || [ "$in_rounds" -le "$rounds" ]; then
    fail "rounds: $in_rounds commands in $rounds rounds (the pipeline's first round held 4)"
fi
[ "$errors" -ge 1 ] || fail "trellis_resp_errors_total: $errors (MOVED, CROSSSLOT answered)"
[ "$proto" -ge 2 ] || fail "trellis_resp_protocol_errors_total: $proto (2 sent)"
[ "$conns" -ge 8 ] || fail "trellis_resp_connections_total: $conns"
