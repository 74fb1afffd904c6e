#!/usr/bin/env bash
# tests/resp/test_redis_cli.sh - redis-cli drives the gateway as a user
# would, on a cluster from deploy/cluster.sh (1 router, 2 memory nodes, 1
# disk node): every command, connection state within one connection,
# RESP3, pipelined input (redis-cli --pipe), errors for unsupported
# commands, bad arguments and wrong types, and the gateway's metrics.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/resp/lib.sh
source "$here/lib.sh"

command -v redis-cli >/dev/null ||
    ts_skip "redis-cli is not installed (deploy/install-deps.sh installs redis-tools)"

rt_up --memory 2 --disk 1

# expect WANT ARG...: redis-cli ARG... (typed output) must print WANT.
expect() {
    local want=$1 out
    shift
    out=$(timeout 10 redis-cli --no-raw -p "$RT_PORT" "$@" 2>&1)
    [[ $out == "$want" ]] || fail "redis-cli $*: got [$out], want [$want]"
}

# expect_match PATTERN ARG...: the output must match the glob PATTERN.
expect_match() {
    local want=$1 out
    shift
    out=$(timeout 10 redis-cli --no-raw -p "$RT_PORT" "$@" 2>&1)
    # shellcheck disable=SC2053
    [[ $out == $want ]] || fail "redis-cli $*: got [$out], want [$want]"
}

step "connection commands"
expect PONG PING
expect '"hi there"' PING "hi there"
expect '"echo me"' ECHO "echo me"
expect OK SELECT 0
expect_match "(error) ERR DB index is out of range*" SELECT 1
expect_match "(error) ERR value is not an integer*" SELECT x
expect_match '*redis_version:*' INFO
expect_match '*trellis_ring_epoch:*' INFO trellis
expect_match '*# Server*' INFO server
expect_match '(integer) [1-9]*' COMMAND COUNT
expect_match '1) 1) "get"*' COMMAND INFO get
expect_match '*"sadd"*' COMMAND
expect_match '*"standalone"*' HELLO 2
expect_match "(error) NOPROTO*" HELLO 4
expect_match "(error) ERR AUTH <password> called without any password configured*" AUTH x
expect OK CLIENT SETINFO lib-name test

# Several commands on one connection: the state a connection keeps.
out=$(printf 'CLIENT SETNAME cli-test\nCLIENT GETNAME\nCLIENT ID\n' |
    timeout 10 redis-cli --no-raw -p "$RT_PORT" 2>&1)
[[ $out == $'OK\n"cli-test"\n(integer) '[0-9]* ]] || fail "CLIENT SETNAME/GETNAME/ID: [$out]"
expect '(nil)' CLIENT GETNAME

step "strings (LWW registers)"
expect OK SET greeting "hello, trellis"
expect '"hello, trellis"' GET greeting
expect '(nil)' GET no-such-key
expect OK SET greeting replaced
expect '"replaced"' GET greeting
expect_match "(error) ERR trellis: SET NX is not supported*" SET k v NX
expect OK MSET m1 one m2 two m3 three
expect $'1) "one"\n2) "two"\n3) (nil)\n4) "three"' MGET m1 m2 missing m3
expect_match "(error) ERR wrong number of arguments for 'mset'*" MSET a b c
expect '(integer) 2' EXISTS greeting m1 missing
expect '(integer) 2' DEL m1 m2 missing
expect '(integer) 0' EXISTS m1 m2
expect '(nil)' GET m1
expect '(integer) 1' UNLINK m3
expect string TYPE greeting
expect none TYPE m1
expect none TYPE missing
printf 'binary\000value' | timeout 10 redis-cli -p "$RT_PORT" -x SET bin >/dev/null
out=$(timeout 10 redis-cli -p "$RT_PORT" --raw GET bin | od -An -c | tr -s ' ')
[[ $out == *'b i n a r y \0 v a l u e'* ]] || fail "binary value round trip: [$out]"
expect_match "(error) ERR trellis: empty keys are not supported*" SET "" v

step "expiry"
expect OK SET tk v EX 100
expect '(integer) 100' TTL tk
expect_match '(integer) 99[0-9][0-9][0-9]' PTTL tk
expect OK SET tk v2 KEEPTTL
expect_match '(integer) [19][09]*' TTL tk
expect OK SET tk v3
expect '(integer) -1' TTL tk
expect '(integer) -2' TTL no-such-key
expect '(integer) 1' EXPIRE tk 50
expect '(integer) 0' EXPIRE tk 10 GT
expect '(integer) 1' EXPIRE tk 60 XX
expect '(integer) 60' TTL tk
expect '(integer) 1' PERSIST tk
expect '(integer) 0' PERSIST tk
expect '(integer) 0' EXPIRE no-such-key 5
expect OK SETEX sx 30 v
expect '(integer) 30' TTL sx
expect OK PSETEX px 30000 v
expect_match '(integer) 2[0-9][0-9][0-9][0-9]' PTTL px
expect '"v"' GETEX px PERSIST
expect '(integer) -1' PTTL px
expect '"v"' GETEX px EX 40
expect '(integer) 40' TTL px
at=$(($(date +%s) + 300))
expect '(integer) 1' EXPIREAT px "$at"
expect "(integer) $at" EXPIRETIME px
expect_match "(error) ERR invalid expire time in 'set' command*" SET tk v EX 0
expect_match "(error) ERR invalid expire time in 'setex' command*" SETEX tk -1 v
expect_match "(error) ERR syntax error*" SET tk v EX 10 KEEPTTL
expect_match "(error) ERR value is not an integer or out of range*" EXPIRE tk soon
expect_match "(error) ERR NX and XX, GT or LT options at the same time are not compatible*" \
    EXPIRE tk 10 NX XX
expect_match "(error) ERR Unsupported option SOMETIMES*" EXPIRE tk 10 SOMETIMES
expect '(integer) 1' PEXPIRE tk 200
sleep 0.4
expect '(nil)' GET tk
expect '(integer) -2' TTL tk
expect '(integer) 0' EXISTS tk
expect OK SET tk again
expect '"again"' GET tk

step "hashes (MAP)"
expect '(integer) 2' HSET h f1 v1 f2 v2
expect '(integer) 0' HSET h f1 x
expect '"x"' HGET h f1
expect '(nil)' HGET h nope
expect $'1) "f1"\n2) "x"\n3) "f2"\n4) "v2"' HGETALL h
expect $'1) "v2"\n2) (nil)\n3) "x"' HMGET h f2 nope f1
expect $'1) "f1"\n2) "f2"' HKEYS h
expect $'1) "x"\n2) "v2"' HVALS h
expect '(integer) 2' HLEN h
expect '(integer) 1' HEXISTS h f1
expect '(integer) 2' HSTRLEN h f2
expect '(integer) 5' HINCRBY h n 5
expect '(integer) 3' HINCRBY h n -2
expect_match "(error) ERR hash value is not an integer*" HINCRBY h f1 1
expect '(integer) 0' HSETNX h f1 y
expect '(integer) 1' HSETNX h f3 z
expect '(integer) 1' HDEL h f1 nope
expect OK HMSET h a 1 b 2
expect hash TYPE h
expect $'1) "0"\n2) 1) "a"\n   2) "1"\n   3) "b"\n   4) "2"' HSCAN h 0 MATCH '[ab]'
expect_match "(error) ERR wrong number of arguments for 'hset' command*" HSET h f1
expect "$(printf '(error) WRONGTYPE Operation against a key holding the wrong kind of value')" \
    HGET greeting f
out=$(timeout 10 redis-cli --no-raw -3 -p "$RT_PORT" HGETALL h 2>&1)
[[ $out == '1# "a" => "1"'* ]] || fail "RESP3 HGETALL is a map: [$out]"

step "the key space"
for i in $(seq 1 30); do printf 'SET ks:%d x\r\n' "$i"; done | timeout 10 redis-cli -p "$RT_PORT" --pipe >/dev/null
out=$(timeout 10 redis-cli -p "$RT_PORT" KEYS 'ks:*' | sort -t: -k2 -n | tr '\n' ' ')
[[ $out == "$(for i in $(seq 1 30); do printf 'ks:%d ' "$i"; done)" ]] || fail "KEYS ks:*: [$out]"
out=$(timeout 20 redis-cli -p "$RT_PORT" --scan --pattern 'ks:1*' | sort | tr '\n' ' ')
[[ $out == "ks:1 ks:10 ks:11 ks:12 ks:13 ks:14 ks:15 ks:16 ks:17 ks:18 ks:19 " ]] ||
    fail "redis-cli --scan: [$out]"
out=$(timeout 10 redis-cli -p "$RT_PORT" SCAN 0 TYPE hash COUNT 1000)
[[ $out == *h* ]] || fail "SCAN TYPE hash: [$out]"
all=$(timeout 10 redis-cli -p "$RT_PORT" KEYS '*' | wc -l)
expect "(integer) $all" DBSIZE
expect_match "*db0:keys=$all,expires=*" INFO keyspace
expect_match "(error) ERR invalid cursor*" SCAN x
long=$(printf '%*s' 4097 '' | tr ' ' '*')
expect "(error) ERR trellis: a pattern of 4097 bytes; at most 4096" SCAN 0 MATCH "$long"
expect "(error) ERR trellis: a pattern of 4097 bytes; at most 4096" KEYS "$long"
expect_match '1) "maxmemory"*' CONFIG GET maxmemory
expect_match '*"kvs.expiry_grace_ms"*"60000"*' CONFIG GET 'kvs.*'
expect '(empty array)' CONFIG GET no-such-parameter

step "counters"
expect '(integer) 1' INCR visits
expect '(integer) 2' INCR visits
expect '(integer) 12' INCRBY visits 10
expect '(integer) 11' DECR visits
expect '(integer) 1' DECRBY visits 10
expect '(integer) -4' INCRBY visits -5
expect '"-4"' GET visits
expect counter TYPE visits
expect_match "(error) ERR value is not an integer or out of range*" INCRBY visits ten
expect_match "(error) ERR value is not an integer or out of range*" INCRBY visits 99999999999999999999
expect_match "(error) ERR decrement would overflow*" DECRBY visits -9223372036854775808

step "sets (ORSET)"
expect '(integer) 3' SADD tags red green blue
expect '(integer) 1' SADD tags red gray gray
expect $'1) "blue"\n2) "gray"\n3) "green"\n4) "red"' SMEMBERS tags
expect '(integer) 4' SCARD tags
expect '(integer) 1' SISMEMBER tags red
expect '(integer) 0' SISMEMBER tags pink
expect $'1) (integer) 1\n2) (integer) 0' SMISMEMBER tags blue pink
expect '(integer) 2' SREM tags gray red pink
expect $'1) "blue"\n2) "green"' SMEMBERS tags
expect set TYPE tags
expect '(empty array)' SMEMBERS no-such-set
expect '(integer) 0' SCARD no-such-set
expect '(integer) 0' SREM no-such-set x
expect '(integer) 1' DEL tags
expect '(empty array)' SMEMBERS tags

step "RESP3"
out=$(timeout 10 redis-cli --no-raw -3 -p "$RT_PORT" SMEMBERS nothing-here 2>&1)
[[ $out == "(empty set)" ]] || fail "RESP3 empty set: [$out]"
timeout 10 redis-cli -p "$RT_PORT" SADD r3 a >/dev/null
out=$(timeout 10 redis-cli --no-raw -3 -p "$RT_PORT" GET no-such-key 2>&1)
[[ $out == "(nil)" ]] || fail "RESP3 nil: [$out]"
out=$(timeout 10 redis-cli --no-raw -3 -p "$RT_PORT" HELLO 3 2>&1)
[[ $out == *'"proto" => (integer) 3'* ]] || fail "HELLO 3: [$out]"

step "wrong types and unsupported commands"
wrongtype="(error) WRONGTYPE Operation against a key holding the wrong kind of value"
timeout 10 redis-cli -p "$RT_PORT" SADD aset x >/dev/null
expect "$wrongtype" GET aset
expect "$wrongtype" SADD greeting x
expect "$wrongtype" INCR greeting
expect "$wrongtype" SMEMBERS greeting
expect "$wrongtype" SISMEMBER visits x
expect "$wrongtype" SET aset v
expect $'1) (nil)\n2) "replaced"' MGET aset greeting
expect_match "(error) ERR unknown command 'LPUSH', with args beginning with: 'l' 'x'*" LPUSH l x
expect_match "(error) ERR unknown command 'FLUSHALL'*" FLUSHALL
expect_match "(error) ERR wrong number of arguments for 'get' command*" GET
expect_match "(error) ERR wrong number of arguments for 'incr' command*" INCR a b
expect_match "(error) ERR trellis: CONFIG SET is not supported*" CONFIG SET save ""
out=$(printf 'MULTI\nSET in-multi 1\nEXEC\nGET in-multi\n' |
    timeout 10 redis-cli --no-raw -p "$RT_PORT" 2>&1)
[[ $out == *"MULTI/EXEC transactions are not supported"*"pipeline without MULTI instead"*"refused inside MULTI"*"EXECABORT"*"(nil)" ]] ||
    fail "MULTI: [$out]"

step "pipelined input (redis-cli --pipe)"
n=20000
{
    for ((i = 0; i < n; i++)); do printf 'SET pipe:%d value-%d\r\n' "$i" "$i"; done
    for ((i = 0; i < 100; i++)); do printf 'INCR pipe:counter\r\n'; done
    printf 'SADD pipe:set a b c\r\n'
} >"$TS_DIR/pipe.txt"
t0=$SECONDS
out=$(timeout 60 redis-cli -p "$RT_PORT" --pipe <"$TS_DIR/pipe.txt" 2>&1)
[[ $out == *"errors: 0, replies: $((n + 101))"* ]] || fail "--pipe: [$out]"
echo "$((n + 101)) commands piped in $((SECONDS - t0)) s"
expect '"value-19999"' GET pipe:19999
expect '"100"' GET pipe:counter
expect '(integer) 3' SCARD pipe:set
printf 'SET ok 1\r\nNOSUCHCOMMAND\r\nINCR greeting\r\nGET ok\r\n' >"$TS_DIR/pipe2.txt"
out=$(timeout 30 redis-cli -p "$RT_PORT" --pipe <"$TS_DIR/pipe2.txt" 2>&1)
[[ $out == *"errors: 2, replies: 4"* ]] || fail "--pipe with errors: [$out]"

step "QUIT and metrics"
expect OK QUIT
commands=$(rt_metric trellis_resp_commands_total)
errors=$(rt_metric trellis_resp_errors_total)
conns=$(rt_metric trellis_resp_connections_total)
[ "$commands" -gt "$n" ] 2>/dev/null || fail "trellis_resp_commands_total is [$commands]"
[ "$errors" -gt 10 ] 2>/dev/null || fail "trellis_resp_errors_total is [$errors]"
[ "$conns" -gt 50 ] 2>/dev/null || fail "trellis_resp_connections_total is [$conns]"

