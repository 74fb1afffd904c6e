#!/usr/bin/env bash
# test_cli.sh - trellis-cli driven as a user would: one-shot commands,
# commands piped in (thousands through one connection), and the
# interactive prompt on a pseudo-terminal; output format, exit codes,
# binary values, quoting and usage errors.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/support/lib.sh
source "$here/../support/lib.sh"

CLI="$TRELLIS_BIN/trellis-cli"
checks=0

# run ARGS...: runs the CLI against the cluster; sets out, err, rc.
run() {
    out=$("$CLI" -r "$TS_URL" "$@" 2>"$TS_DIR/err")
    rc=$?
    err=$(cat "$TS_DIR/err")
}

# expect RC OUT DESCRIPTION: checks the last run.
expect() {
    checks=$((checks + 1))
    if [[ $rc != "$1" || $out != "$2" ]]; then
        fail "$3: want rc=$1 out=[$2], got rc=$rc out=[$out] err=[$err]"
    fi
}

expect_err() { # RC PATTERN DESCRIPTION
    checks=$((checks + 1))
    if [[ $rc != "$1" || ! $err =~ $2 ]]; then
        fail "$3: want rc=$1 stderr~/$2/, got rc=$rc out=[$out] err=[$err]"
    fi
}

# ---- without a cluster ------------------------------------------------------

out=$("$CLI" --help) rc=$?
err=
checks=$((checks + 1))
[[ $rc == 0 && $out == usage:* && $out == *"INCRBY"* && $out == *"--ack one|all"* ]] ||
    fail "--help: rc=$rc"
out=$("$CLI" -r tcp://127.0.0.1:1 -t 300 GET k 2>"$TS_DIR/err") rc=$?
err=$(cat "$TS_DIR/err")
expect_err 1 '^error: cannot reach a router at tcp://127.0.0.1:1: nothing answers there' "no router"
out=$("$CLI" -r tcp://127.0.0.1:1 NOSUCH k 2>"$TS_DIR/err") rc=$?
err=$(cat "$TS_DIR/err")
expect_err 2 "^error: unknown command 'NOSUCH'" "usage errors need no server"
out=$("$CLI" --bogus 2>"$TS_DIR/err") rc=$?
err=$(cat "$TS_DIR/err")
expect_err 2 "^error: unknown option '--bogus'" "unknown option"
out=$("$CLI" -t abc GET k 2>"$TS_DIR/err") rc=$?
err=$(cat "$TS_DIR/err")
expect_err 2 '^error: --timeout' "bad timeout"
out=$("$CLI" --ack most GET k 2>"$TS_DIR/err") rc=$?
err=$(cat "$TS_DIR/err")
expect_err 2 '^error: --ack' "bad ack"
out=$("$CLI" -x </dev/null 2>"$TS_DIR/err") rc=$?
err=$(cat "$TS_DIR/err")
expect_err 2 '^error: -x needs a command' "-x alone"
out=$("$CLI" -r bogus://x GET k 2>"$TS_DIR/err") rc=$?
err=$(cat "$TS_DIR/err")
expect_err 2 "^error: 'bogus://x' is not a router address: use HOST:PORT or tcp://HOST:PORT" \
    "malformed URL"
out=$("$CLI" -r 127.0.0.1:1 -t 300 GET k 2>"$TS_DIR/err") rc=$?
err=$(cat "$TS_DIR/err")
expect_err 1 '^error: cannot reach a router at tcp://127.0.0.1:1:' "HOST:PORT is taken as tcp://"

# ---- one-shot ---------------------------------------------------------------

ts_cluster 2 1
start=$SECONDS

run SET greeting "hello world"
expect 0 OK "SET"
run GET greeting
expect 0 "hello world" "GET a value with a space"
run get greeting
expect 0 "hello world" "commands are case-insensitive"
run GeT greeting
expect 0 "hello world" "mixed case"
run GET missing
expect 0 "(nil)" "a missing key"
run DEL greeting
expect 0 OK "DEL"
run GET greeting
expect 0 "(nil)" "GET after DEL"
run TYPE greeting
expect 0 LWW "TYPE of a deleted LWW key"
run TYPE never
expect 0 none "TYPE of a missing key"

run INCR hits
expect 0 1 "INCR"
run INCRBY hits 10
expect 0 11 "INCRBY"
run DECRBY hits 3
expect 0 8 "DECRBY"
run DECR hits
expect 0 7 "DECR"
run INCRBY hits -7
expect 0 0 "INCRBY with a negative number"
run GET hits
expect 0 0 "GET of a counter prints its integer"
run TYPE hits
expect 0 COUNTER "TYPE counter"

run MAX top 5
expect 0 OK "MAX"
run MAX top -2
expect 0 OK "MAX lower"
run GET top
expect 0 5 "GET of a max"

run SADD fruit pear apple fig
expect 0 OK "SADD"
run SMEMBERS fruit
expect 0 $'apple\nfig\npear' "SMEMBERS in byte order"
run SREM fruit fig
expect 0 OK "SREM"
run GET fruit
expect 0 $'apple\npear' "GET of a set prints its members"
run TYPE fruit
expect 0 ORSET "TYPE orset"
run SMEMBERS nofruit
expect 0 "(nil)" "SMEMBERS of a missing key"
run GADD grow b a
expect 0 OK "GADD"
run SADD grow c
expect 0 OK "SADD on a SET key"
run SMEMBERS grow
expect 0 $'a\nb\nc' "grow-only set members"
run TYPE grow
expect 0 SET "TYPE set"

run PSET job 5 five
expect 0 OK "PSET"
run PSET job 2 two
expect 0 OK "PSET lower"
run GET job
expect 0 two "PRIORITY: the lowest wins"
run CSET doc first
expect 0 OK "CSET"
run CSET doc second
expect 0 OK "CSET over what it read"
run GET doc
expect 0 second "CAUSAL: one value after a write over the read"
run TYPE doc
expect 0 CAUSAL "TYPE causal"

# Server errors: exit 1, a message on stderr, nothing on stdout.
run SET word x
run INCR word
expect_err 1 "^error: 'word' has type LWW, which INCR does not apply to \(LATTICE_MISMATCH\)$" \
    "wrong type, named"
checks=$((checks + 1))
[[ -z $out ]] || fail "an error prints nothing on stdout: [$out]"
run SMEMBERS word
expect_err 1 'LATTICE_MISMATCH' "SMEMBERS of an LWW key"
run DEL top
expect_err 1 "^error: cannot delete 'top': MAX keys only grow" "DEL of a grow-only type names the key"
run DEL nosuch top
expect_err 1 "cannot delete 'top'" "DEL of several keys names the one refused"

# Expiry.
run SET tk v EX 100
expect 0 OK "SET EX"
run TTL tk
expect 0 100 "TTL after SET EX 100"
run PTTL tk
checks=$((checks + 1))
((rc == 0 && out > 99000 && out <= 100000)) || fail "PTTL: rc=$rc [$out]"
run SET tk v2 KEEPTTL
expect 0 OK "SET KEEPTTL"
run TTL tk
checks=$((checks + 1))
((rc == 0 && out >= 99 && out <= 100)) || fail "KEEPTTL keeps the TTL: [$out]"
run SET tk v3
run TTL tk
expect 0 -1 "a plain SET clears the TTL"
run TTL nokey
expect 0 -2 "TTL of a missing key"
run EXPIRE tk 50
expect 0 1 "EXPIRE"
run EXPIRE tk 10 GT
expect 0 0 "EXPIRE GT with an earlier time"
run EXPIRE tk 60 XX
expect 0 1 "EXPIRE XX"
run TTL tk
expect 0 60 "TTL after EXPIRE 60"
run PERSIST tk
expect 0 1 "PERSIST"
run PERSIST tk
expect 0 0 "PERSIST without a TTL"
run EXPIRE nokey 5
expect 0 0 "EXPIRE of a missing key"
run EXPIREAT tk $(($(date +%s) + 200))
expect 0 1 "EXPIREAT"
run TTL tk
checks=$((checks + 1))
((out >= 199 && out <= 201)) || fail "TTL after EXPIREAT: [$out]"
run SET tk v PXAT $(($(date +%s%3N) + 30000))
run PTTL tk
checks=$((checks + 1))
((out > 29000 && out <= 30000)) || fail "PTTL after SET PXAT: [$out]"
run EXPIRE tk soon
expect_err 2 "not an integer" "EXPIRE with a word"
run EXPIRE tk 5 SOMETIMES
expect_err 2 "unknown option 'SOMETIMES'" "EXPIRE with a bad condition"
run SET tk v EX 0
expect_err 2 "invalid expire time in 'SET'" "SET EX 0"
run SET tk v EX 5 PX 6
expect_err 2 "wrong number of arguments for 'SET'" "SET with two options"
run SET tk v NX
expect_err 2 "SET takes one of EX" "SET NX is refused"
run PEXPIRE tk 200
expect 0 1 "PEXPIRE"
sleep 0.4
run GET tk
expect 0 "(nil)" "an expired key reads as missing"
run TTL tk
expect 0 -2 "an expired key has no TTL"
run SET tk again
run GET tk
expect 0 again "written again after it expired"

# Maps.
run HSET h f1 v1 f2 v2
expect 0 2 "HSET two new fields"
run HSET h f1 x
expect 0 0 "HSET of an existing field"
run HGET h f1
expect 0 x "HGET"
run HGET h nope
expect 0 "(nil)" "HGET of a missing field"
run HGET nomap f
expect 0 "(nil)" "HGET of a missing key"
run HGETALL h
expect 0 $'f1\nx\nf2\nv2' "HGETALL: fields and values on alternate lines"
run HMGET h f2 nope f1
expect 0 $'v2\n(nil)\nx' "HMGET"
run HKEYS h
expect 0 $'f1\nf2' "HKEYS"
run HVALS h
expect 0 $'x\nv2' "HVALS"
run HLEN h
expect 0 2 "HLEN"
run HEXISTS h f1
expect 0 1 "HEXISTS"
run HSTRLEN h f2
expect 0 2 "HSTRLEN"
run HINCRBY h n 5
expect 0 5 "HINCRBY of a new field"
run HINCRBY h n -2
expect 0 3 "HINCRBY down"
run HSET h num 41
run HINCRBY h num 1
expect 0 42 "HINCRBY of a field holding an integer"
run HINCRBY h f1 1
expect_err 1 "hash value is not an integer" "HINCRBY of a word"
run HSETNX h f1 y
expect 0 0 "HSETNX of an existing field"
run HSETNX h f3 z
expect 0 1 "HSETNX of a new field"
run HDEL h f1 nope
expect 0 1 "HDEL counts the fields that existed"
run HLEN h
expect 0 4 "HLEN after HDEL"
run TYPE h
expect 0 MAP "TYPE of a map"
run GET h
expect 0 $'f2\nv2\nf3\nz\nn\n3\nnum\n42' "GET of a map"
run HSET h f1
expect_err 2 "wrong number of arguments for 'HSET'" "HSET without a value"
run HGET word f
expect_err 1 "'word' has type LWW" "HGET of an LWW key"
run DEL h
expect 0 OK "DEL of a map"
run HGETALL h
expect 0 "" "HGETALL of a deleted map"

# Usage errors: exit 2.
run GET
expect_err 2 "^error: wrong number of arguments for 'GET' \(usage: GET key\)$" "GET without key"
run SET a
expect_err 2 "wrong number of arguments for 'SET'" "SET without value"
run INCRBY hits many
expect_err 2 "not an integer" "INCRBY with a word"
run INCRBY hits 99999999999999999999
expect_err 2 "out of range" "INCRBY overflow"
run FROB x
expect_err 2 "unknown command 'FROB'" "unknown command"
run NODES extra
expect_err 2 "wrong number of arguments" "NODES with an argument"

# Binary values: -x takes the last argument from stdin, GET prints raw bytes.
printf 'a\000b\377\nc d' >"$TS_DIR/bin.in"
out=$("$CLI" -r "$TS_URL" -x SET blob <"$TS_DIR/bin.in" 2>"$TS_DIR/err") rc=$?
err=$(cat "$TS_DIR/err")
expect 0 OK "-x SET"
"$CLI" -r "$TS_URL" GET blob >"$TS_DIR/bin.out"
{ cat "$TS_DIR/bin.in"; printf '\n'; } >"$TS_DIR/bin.want"
checks=$((checks + 1))
cmp -s "$TS_DIR/bin.out" "$TS_DIR/bin.want" || fail "binary value round trip"
head -c 100000 /dev/urandom >"$TS_DIR/big.in"
"$CLI" -r "$TS_URL" -x SET big <"$TS_DIR/big.in" >/dev/null
"$CLI" -r "$TS_URL" GET big >"$TS_DIR/big.out"
{ cat "$TS_DIR/big.in"; printf '\n'; } >"$TS_DIR/big.want"
checks=$((checks + 1))
cmp -s "$TS_DIR/big.out" "$TS_DIR/big.want" || fail "100 kB random value round trip"
out=$(printf 'm\000n' | "$CLI" -r "$TS_URL" -x SADD bset 2>&1) rc=$?
expect 0 OK "-x SADD"
"$CLI" -r "$TS_URL" SMEMBERS bset >"$TS_DIR/bset.out"
checks=$((checks + 1))
cmp -s "$TS_DIR/bset.out" <(printf 'm\000n\n') || fail "binary set member"

# Cluster information.
run NODES
checks=$((checks + 1))
if [[ $(grep -cE '^[md][0-9]+ (memory|disk) tcp://127\.0\.0\.1:[0-9]+ ACTIVE 2$' <<<"$out") != 3 ]]; then
    fail "NODES: [$out]"
fi
[[ $(grep -c ' memory ' <<<"$out") == 2 && $(grep -c ' disk ' <<<"$out") == 1 ]] ||
    fail "NODES tiers: [$out]"
run STATS
checks=$((checks + 1))
[[ $rc == 0 && $out == *"epoch "* && $out == *"memory nodes=2"* && $out == *"disk nodes=1"* ]] ||
    fail "STATS: rc=$rc [$out] [$err]"
run PING
expect 0 PONG "PING"

# Options.
run --ack all SET acked yes
expect 0 OK "--ack all"
run -t 5000 --retries 1 GET acked
expect 0 yes "-t and --retries"
out=$(TRELLIS_ROUTER=$TS_URL "$CLI" GET acked 2>&1) rc=$?
expect 0 yes "TRELLIS_ROUTER"
cat >"$TS_DIR/client.yml" <<EOF
cluster:
  routers: [$TS_URL]
client:
  timeout_ms: 3000
  ack: all
EOF
out=$(env -u TRELLIS_ROUTER "$CLI" -c "$TS_DIR/client.yml" GET acked 2>&1) rc=$?
expect 0 yes "--config gives the router"

# ---- piped: thousands of commands through one connection -------------------

N=3000
{
    for ((i = 0; i < N; i++)); do echo "SET key:$i value-$i"; done
    for ((i = 0; i < N; i++)); do echo "GET key:$i"; done
    # shellcheck disable=SC2028 # the CLI, not echo, reads the escapes
    echo 'set "two words" "x\x00y\ty"'
    echo "GET 'two words'"
    echo ''
    echo 'INCR pipe'
    echo 'INCR pipe'
    echo 'GET pipe'
    echo 'NODES'
    echo 'bogus command'
    echo 'GET "unterminated'
    echo 'INCR key:1'
    echo 'GET key:7'
} >"$TS_DIR/cmds"
t0=$(date +%s%N)
"$CLI" -r "$TS_URL" <"$TS_DIR/cmds" >"$TS_DIR/piped.out" 2>"$TS_DIR/piped.err"
rc=$?
t1=$(date +%s%N)
echo "piped $((2 * N + 11)) commands in $(((t1 - t0) / 1000000)) ms"
{
    for ((i = 0; i < N; i++)); do echo OK; done
    for ((i = 0; i < N; i++)); do echo "value-$i"; done
    echo OK
    printf 'x\000y\ty\n'
    echo 1
    echo 2
    echo 2
    "$CLI" -r "$TS_URL" NODES
    echo value-7
} >"$TS_DIR/piped.want"
checks=$((checks + 1))
cmp -s "$TS_DIR/piped.out" "$TS_DIR/piped.want" ||
    fail "piped answers in order: $(diff <(cat -v "$TS_DIR/piped.want") <(cat -v "$TS_DIR/piped.out") | head -5)"
checks=$((checks + 1))
if [[ $rc != 2 || $(grep -c '^error: ' "$TS_DIR/piped.err") != 3 ]]; then
    fail "piped errors: rc=$rc [$(cat "$TS_DIR/piped.err")]"
fi
grep -q "unknown command 'bogus'" "$TS_DIR/piped.err" || fail "piped usage error text"
grep -q 'unbalanced quotes' "$TS_DIR/piped.err" || fail "piped quoting error"
grep -q 'LATTICE_MISMATCH' "$TS_DIR/piped.err" || fail "piped server error"
out=$(printf 'SET ok 1\nGET ok\n' | "$CLI" -r "$TS_URL" 2>&1) rc=$?
expect 0 $'OK\n1' "piped without errors exits 0"
out=$(printf 'GET ok' | "$CLI" -r "$TS_URL" 2>&1) rc=$?
expect 0 1 "a last line without a newline"
out=$(printf 'INCR ok\nGET ok\n' | "$CLI" -r "$TS_URL" 2>/dev/null) rc=$?
expect 1 1 "piped: a server error sets the exit status, later commands still run"

# The key space: KEYS, SCAN and DBSIZE over the keys written above.
run KEYS 'key:1??'
checks=$((checks + 1))
[[ $rc == 0 && $(wc -l <<<"$out") == 100 && $(sort -u <<<"$out" | wc -l) == 100 ]] ||
    fail "KEYS key:1??: rc=$rc $(wc -l <<<"$out") lines"
cursor=0
: >"$TS_DIR/scan.out"
steps=0
while :; do
    "$CLI" -r "$TS_URL" SCAN "$cursor" MATCH 'key:*' COUNT 200 >"$TS_DIR/step" || break
    cursor=$(head -1 "$TS_DIR/step")
    tail -n +2 "$TS_DIR/step" >>"$TS_DIR/scan.out"
    steps=$((steps + 1))
    [[ $cursor == 0 || $steps -gt 1000 ]] && break
done
checks=$((checks + 1))
[[ $cursor == 0 && $(sort -u "$TS_DIR/scan.out" | wc -l) == "$N" ]] ||
    fail "SCAN MATCH key:* found $(sort -u "$TS_DIR/scan.out" | wc -l) of $N keys in $steps steps"
((steps > 1)) || fail "SCAN COUNT 200 took one step for $N keys"
run SCAN 0 TYPE MAP
checks=$((checks + 1))
[[ $rc == 0 && $(head -1 <<<"$out") =~ ^[0-9]+$ ]] || fail "SCAN TYPE: rc=$rc [$out] [$err]"
run SCAN -1
expect_err 2 "invalid cursor" "SCAN with a bad cursor"
run SCAN 0 COUNT
expect_err 2 "needs a value" "SCAN option without a value"
run KEYS "$(printf '%*s' 4097 '' | tr ' ' '*')"
expect_err 1 "^error: a MATCH pattern of 4097 bytes: at most 4096 \(TOO_LARGE\)$" \
    "KEYS with a pattern over the limit"
all=$("$CLI" -r "$TS_URL" KEYS '*' | wc -l)
run DBSIZE
expect 0 "$all" "DBSIZE counts what KEYS lists"
sum=0
for id in $("$CLI" -r "$TS_URL" NODES | awk '$2 == "memory" { print $1 }'); do
    run DBSIZE "$id"
    checks=$((checks + 1))
    [[ $rc == 0 && $out =~ ^[0-9]+$ ]] || fail "DBSIZE $id: rc=$rc [$out] [$err]"
    sum=$((sum + out))
done
checks=$((checks + 1))
((sum == all)) || fail "the memory nodes' DBSIZEs add up to $sum, not $all"
run DBSIZE no-such-node
expect_err 1 "^error: no serving node 'no-such-node' in the ring \(NOT_FOUND\)$" \
    "DBSIZE of a node not in the ring"

# Answers keep coming while input trickles in (a co-process conversation).
coproc CO { "$CLI" -r "$TS_URL"; }
echo "SET co 42" >&"${CO[1]}"
read -r -t 5 line <&"${CO[0]}"
checks=$((checks + 1))
[[ ${line:-} == OK ]] || fail "answer before more input: [${line:-}]"
echo "GET co" >&"${CO[1]}"
read -r -t 5 line <&"${CO[0]}"
checks=$((checks + 1))
[[ ${line:-} == 42 ]] || fail "second answer: [${line:-}]"
co_in=${CO[1]:-}
if [[ -n $co_in ]]; then exec {co_in}>&-; fi
wait "${CO_PID:-}" 2>/dev/null

# ---- interactive prompt on a pseudo-terminal --------------------------------

export HOME=$TS_DIR
printf '%s\n' 'SET ik "a b\x00c"' 'get ik' 'GET nokey' 'bogus' 'smembers fruit' \
    "set 'it''s' x" 'QUIT' |
    script -qfec "$CLI -r $TS_URL" /dev/null >"$TS_DIR/tty.out" 2>&1
rc=$?
tr -d '\r' <"$TS_DIR/tty.out" >"$TS_DIR/tty.txt"
prompt="127.0.0.1:${TS_URL##*:}> "
checks=$((checks + 1))
grep -qxF "${prompt}get ik" "$TS_DIR/tty.txt" || fail "prompt: $(cat "$TS_DIR/tty.txt")"
grep -qxF '"a b\x00c"' "$TS_DIR/tty.txt" || fail "binary value escaped at the prompt"
grep -qxF '(nil)' "$TS_DIR/tty.txt" || fail "(nil) at the prompt"
grep -qx "error: unknown command 'bogus' (try HELP)" "$TS_DIR/tty.txt" || fail "error at the prompt"
grep -qx 'apple' "$TS_DIR/tty.txt" || fail "set members at the prompt"
grep -q 'closing quote must be followed by a space' "$TS_DIR/tty.txt" || fail "quote error"
[[ $rc == 0 ]] || fail "the prompt exits 0 after QUIT (rc=$rc)"
# libedit's history file escapes blanks (get\040ik).
grep -q '^get.040ik$' "$HOME/.trellis_cli_history" || fail "history file"
checks=$((checks + 1))
"$CLI" -r "$TS_URL" GET ik | cmp -s - <(printf 'a b\000c\n') || fail "prompt-typed binary value"

# ---- a node stops: errors within the deadline -------------------------------

ts_kill_node 0
t0=$(date +%s%N)
for ((i = 0; i < 8; i++)); do
    "$CLI" -r "$TS_URL" -t 500 GET "key:$i" >/dev/null 2>>"$TS_DIR/down.err"
done
t1=$(date +%s%N)
checks=$((checks + 1))
grep -q '^error: no replica is reachable (UNAVAILABLE)$' "$TS_DIR/down.err" ||
    fail "UNAVAILABLE when a node is down: $(head -3 "$TS_DIR/down.err")"
(((t1 - t0) / 1000000 < 8 * 700)) || fail "commands to a stopped node took too long"

echo "client_cli: $checks checks, $((SECONDS - start)) s with the cluster"
