#!/usr/bin/env bash
# tests/tls/test_tls_cluster.sh - a cluster where every endpoint speaks
# tls+tcp:// with mutual TLS (EC P-256 certificates of one CA) and a
# shared token: two routers that gossip, a memory and a disk node that
# replicate to each other, a monitor, and the Redis gateways of both
# routers. Checks:
#  - node-to-node, node-to-router, router-to-router and monitor traffic
#    works over mutual TLS; a node whose certificate comes from another CA
#    never joins;
#  - a client with the CA, its certificate and the token works; without
#    the CA, with another CA or without a client certificate it fails;
#  - a wrong token gets UNAUTHORIZED (NOAUTH / WRONGPASS at the gateway)
#    and nothing it tried was written; before AUTH the gateway takes small
#    commands only;
#  - the memory node's shards serve Redis Cluster clients over TLS with the
#    token (redis-cli -c --tls following MOVED between them).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/tls/lib.sh
source "$here/lib.sh"

CLI=$TRELLIS_BIN/trellis-cli

ts_ports 26
ra=$TS_PORT_BASE rb=$((TS_PORT_BASE + 1))          # routers
ga=$((TS_PORT_BASE + 2)) gb=$((TS_PORT_BASE + 3))  # their gateways
ma=$((TS_PORT_BASE + 4)) mb=$((TS_PORT_BASE + 5))  # their metrics
mon=$((TS_PORT_BASE + 6)) monm=$((TS_PORT_BASE + 7))
# a node: 2 shards, admin, its data plane's 2 shards, then its metrics
mem=$((TS_PORT_BASE + 8)) memm=$((TS_PORT_BASE + 13))
dsk=$((TS_PORT_BASE + 14)) dskm=$((TS_PORT_BASE + 19))
rogue=$((TS_PORT_BASE + 20)) roguem=$((TS_PORT_BASE + 25))
A=tls+tcp://127.0.0.1:$ra
B=tls+tcp://127.0.0.1:$rb

step "certificates (EC P-256) and the token"
tt_ca ca
tt_ca rogue-ca
tt_leaf ca node
tt_leaf ca client
tt_leaf rogue-ca rogue
printf 'the-shared-token-%s\n' "$$" >"$TS_DIR/token"
token=$(head -n1 "$TS_DIR/token")
printf 'wrong-token\n' >"$TS_DIR/wrong-token"

# cfg FILE CA CERTKEY TOKENFILE
cfg() {
    cat >"$1" <<YML
cluster:
  routers: [$A, $B]
  monitor: "tls+tcp://127.0.0.1:$mon"
  vnodes: 64
tls:
  ca_file: "$2"
  cert_key_file: "$3"
  mutual: true
auth:
  token_file: "$4"
YML
}
cfg "$TS_DIR/node.yml" "$TS_DIR/ca.crt" "$TS_DIR/node.pem" "$TS_DIR/token"
cfg "$TS_DIR/client.yml" "$TS_DIR/ca.crt" "$TS_DIR/client.pem" "$TS_DIR/token"
cfg "$TS_DIR/wrong-token.yml" "$TS_DIR/ca.crt" "$TS_DIR/client.pem" "$TS_DIR/wrong-token"
cfg "$TS_DIR/other-ca.yml" "$TS_DIR/rogue-ca.crt" "$TS_DIR/client.pem" "$TS_DIR/token"
cfg "$TS_DIR/no-cert.yml" "$TS_DIR/ca.crt" "" "$TS_DIR/token"
cfg "$TS_DIR/rogue.yml" "$TS_DIR/ca.crt" "$TS_DIR/rogue.pem" "$TS_DIR/token"
printf 'auth:\n  token_file: "%s"\n' "$TS_DIR/token" >"$TS_DIR/no-tls.yml"

step "start: 2 routers, a memory and a disk node, the monitor (ports $TS_PORT_BASE-$((TS_PORT_BASE + 25)))"
common=(--config "$TS_DIR/node.yml" --log-level info)
ts_spawn ra "$TRELLIS_BIN/trellis-route" "${common[@]}" --id ra --port "$ra" --resp-port "$ga" \
    --metrics-port "$ma" --peer "$B" --node-timeout 60000
ts_spawn rb "$TRELLIS_BIN/trellis-route" "${common[@]}" --id rb --port "$rb" --resp-port "$gb" \
    --metrics-port "$mb" --peer "$A" --node-timeout 60000
if ! ts_wait_port "$ra" || ! ts_wait_port "$rb"; then fail "the routers did not start"; fi
node_flags=(--threads 2 --set kvs.heartbeat_period_ms=100 --set kvs.gossip_period_ms=50
    --set kvs.join_timeout_ms=3000 --capacity 64MiB --set kvs.rocksdb_cache_bytes=4MiB
    --set kvs.rocksdb_write_buffer_bytes=4MiB)
ts_spawn m1 "$TRELLIS_BIN/trellis-kvs" "${common[@]}" "${node_flags[@]}" --tier memory --id m1 \
    --port-base "$mem" --metrics-port "$memm" --data-dir "$TS_DIR/m1"
ts_spawn d1 "$TRELLIS_BIN/trellis-kvs" "${common[@]}" "${node_flags[@]}" --tier disk --id d1 \
    --port-base "$dsk" --metrics-port "$dskm" --data-dir "$TS_DIR/d1"
ts_spawn monitor "$TRELLIS_BIN/trellis-monitor" "${common[@]}" --port "$mon" \
    --metrics-port "$monm" --state-dir "$TS_DIR/mon" --log-file "$TS_DIR/decisions.jsonl" \
    --set monitor.elasticity=false --set monitor.hot_keys=false --set monitor.tiering=false

# active URL: how many nodes that router lists as ACTIVE (over TLS, with the token).
active() {
    timeout 5 "$CLI" -c "$TS_DIR/client.yml" -r "$1" -t 1000 NODES 2>/dev/null | grep -c ' ACTIVE '
}
deadline=$((SECONDS + 30))
while [ "$(active "$A")" != 2 ] || [ "$(active "$B")" != 2 ]; do
    if [ $SECONDS -ge $deadline ]; then
        fail "the routers do not both list 2 ACTIVE nodes: $(active "$A") and $(active "$B")"
        break
    fi
    sleep 0.2
done
out=$(timeout 5 "$CLI" -c "$TS_DIR/client.yml" -r "$A" NODES 2>&1)
[[ $(grep -c "tls+tcp://127.0.0.1:" <<<"$out") == 2 ]] || fail "nodes advertise tls+tcp: [$out]"

# The memory node's data plane (its shard 0 at port_base + threads + 1)
# speaks TLS: a client certificate of the CA completes the handshake; none
# is refused under mutual TLS (TLS 1.2, where the refusal is part of the
# handshake rather than an alert after it).
dp=$((mem + 3))
out=$(timeout 10 openssl s_client -connect "127.0.0.1:$dp" -CAfile "$TS_DIR/ca.crt" \
    -cert "$TS_DIR/client.crt" -key "$TS_DIR/client.key" -verify_return_error </dev/null 2>&1)
grep -q "Verify return code: 0 (ok)" <<<"$out" || fail "TLS handshake on the data plane: [$out]"
rc=0
out=$(timeout 10 openssl s_client -tls1_2 -connect "127.0.0.1:$dp" -CAfile "$TS_DIR/ca.crt" \
    -verify_return_error </dev/null 2>&1) || rc=$?
if [ $rc -eq 0 ] || ! grep -q "alert" <<<"$out"; then
    fail "the data plane accepted a client without a certificate: rc=$rc [$out]"
fi

step "a node with a certificate of another CA does not join"
ts_spawn rogue "$TRELLIS_BIN/trellis-kvs" --config "$TS_DIR/rogue.yml" "${node_flags[@]}" \
    --tier memory --id rogue --port-base "$rogue" --metrics-port "$roguem" \
    --data-dir "$TS_DIR/rogue" --log-level info

step "clients with the CA, a certificate and the token"
out=$(timeout 10 "$CLI" -c "$TS_DIR/client.yml" -r "$A" SET secret value 2>&1)
[ "$out" = OK ] || fail "SET through router A: [$out]"
out=$(timeout 10 "$CLI" -c "$TS_DIR/client.yml" -r "$B" GET secret 2>&1)
[ "$out" = value ] || fail "GET through router B: [$out]"
out=$(printf 'INCR hits\nINCR hits\nSADD s a b\nSMEMBERS s\n' |
    timeout 10 "$CLI" -c "$TS_DIR/client.yml" -r "$A" 2>&1)
[ "$out" = $'1\n2\nOK\na\nb' ] || fail "piped commands over TLS: [$out]"

step "clients without the CA, with another CA, without a certificate"
out=$(timeout 10 "$CLI" -c "$TS_DIR/no-tls.yml" -r "$A" -t 1000 GET secret 2>&1) rc=$?
[[ $rc == 2 && $out == *INVALID* ]] || fail "no TLS settings: rc=$rc [$out]"
out=$(timeout 10 "$CLI" -c "$TS_DIR/other-ca.yml" -r "$A" -t 1000 GET secret 2>&1) rc=$?
[[ $rc == 1 && $out == *UNAVAILABLE* ]] || fail "another CA: rc=$rc [$out]"
out=$(timeout 10 "$CLI" -c "$TS_DIR/no-cert.yml" -r "$A" -t 1000 GET secret 2>&1) rc=$?
[[ $rc == 1 && $out == *UNAVAILABLE* ]] || fail "no client certificate: rc=$rc [$out]"
out=$(timeout 10 "$CLI" -r "tcp://127.0.0.1:$ra" -t 1000 GET secret 2>&1) rc=$?
[[ $rc == 1 ]] || fail "plain TCP to a TLS router: rc=$rc [$out]"

step "a wrong token: UNAUTHORIZED, nothing written"
out=$(timeout 10 "$CLI" -c "$TS_DIR/wrong-token.yml" -r "$A" -t 1000 SET stolen x 2>&1) rc=$?
[[ $rc == 1 && $out == *UNAUTHORIZED* ]] || fail "SET with a wrong token: rc=$rc [$out]"
out=$(timeout 10 "$CLI" -c "$TS_DIR/client.yml" -r "$A" GET stolen 2>&1)
[ "$out" = "(nil)" ] || fail "the key a wrong token tried to write: [$out]"

step "the Redis gateways over TLS"
RC=(redis-cli --tls --cacert "$TS_DIR/ca.crt" --cert "$TS_DIR/client.crt"
    --key "$TS_DIR/client.key" -h 127.0.0.1)
out=$(timeout 10 "${RC[@]}" -p "$ga" PING 2>&1)
[ "$out" = PONG ] || fail "PING before AUTH: [$out]"
out=$(timeout 10 "${RC[@]}" -p "$ga" SET gw-stolen x 2>&1)
[[ $out == "NOAUTH Authentication required." ]] || fail "SET before AUTH: [$out]"
out=$(timeout 10 "${RC[@]}" -p "$ga" --no-auth-warning -a wrong-token SET gw-stolen x 2>&1)
# AUTH with the wrong token is WRONGPASS, and the write after it NOAUTH.
[[ $out == *WRONGPASS* && $out == *"NOAUTH Authentication required."* ]] ||
    fail "a wrong token at the gateway: [$out]"
out=$(timeout 10 "${RC[@]}" -p "$ga" --no-auth-warning -a "$token" GET secret 2>&1)
[ "$out" = value ] || fail "GET with the token through gateway A: [$out]"
out=$(timeout 10 "${RC[@]}" -p "$gb" --no-auth-warning -a "$token" SET gw-key gw-value 2>&1)
[ "$out" = OK ] || fail "SET with the token through gateway B: [$out]"
out=$(timeout 10 "${RC[@]}" -p "$ga" --no-auth-warning -a "$token" GET gw-key 2>&1)
[ "$out" = gw-value ] || fail "GET through gateway A of B's write: [$out]"
out=$(timeout 10 "${RC[@]}" -p "$ga" --no-auth-warning -a "$token" EXISTS gw-stolen stolen 2>&1)
[ "$out" = 0 ] || fail "what the wrong tokens tried was written: [$out]"
out=$(timeout 10 redis-cli --tls -h 127.0.0.1 -p "$ga" PING 2>&1)
[[ $out != PONG ]] || fail "a gateway client without the CA got an answer"
out=$(timeout 10 redis-cli --tls --cacert "$TS_DIR/ca.crt" -h 127.0.0.1 -p "$ga" PING 2>&1)
[[ $out != PONG ]] || fail "a gateway client without a certificate got an answer"
out=$(timeout 5 redis-cli -h 127.0.0.1 -p "$ga" PING 2>&1)
[[ $out != PONG ]] || fail "a plain TCP client got an answer from a TLS gateway"

# Before AUTH: small commands only (limits.unauth_message_bytes), checked
# at the announced length.
out=$(timeout 30 "$PY" - "$ga" "$TS_DIR/ca.crt" "$TS_DIR/client.crt" "$TS_DIR/client.key" \
    "$token" <<'PY' 2>&1
import socket, ssl, sys
port, ca, crt, key, token = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(crt, key)
ctx.check_hostname = False
def talk(data, wait=2.0):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5))
    s.sendall(data)
    s.settimeout(wait)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                return out + b"<closed>"
            out += b
    except (socket.timeout, TimeoutError):
        return out
    except (ConnectionResetError, ssl.SSLError):
        return out + b"<closed>"
def bulk(*words):
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)
print(talk(bulk(b"SET", b"k", b"v" * 10000)))
print(talk(bulk(b"SET", b"k", b"v") + bulk(b"PING"), wait=0.5))
print(talk(bulk(b"AUTH", token.encode()) + bulk(b"SET", b"big", b"v" * 10000) + bulk(b"STRLEN", b"big"), wait=1.0))
print(talk(bulk(b"HELLO", b"3", b"AUTH", b"default", token.encode()) + bulk(b"GET", b"nothing"), wait=1.0))
print(talk(bulk(b"HELLO", b"3") + bulk(b"AUTH", b"nobody", token.encode()), wait=1.0))
PY
)
exp1="b'-ERR Protocol error: invalid bulk length 10000 (limit 4096 bytes)\\r\\n<closed>'"
exp2="b'-NOAUTH Authentication required.\\r\\n+PONG\\r\\n'"
[[ $(sed -n 1p <<<"$out") == "$exp1" ]] || fail "a large command before AUTH: [$out]"
[[ $(sed -n 2p <<<"$out") == "$exp2" ]] || fail "a small command before AUTH: [$out]"
[[ $(sed -n 3p <<<"$out") == *'+OK\r\n+OK\r\n-ERR unknown command'* ]] ||
    fail "a large command after AUTH: [$(sed -n 3p <<<"$out")]"
[[ $(sed -n 4p <<<"$out") == *'proto\r\n:3'*'_\r\n'* ]] ||
    fail "HELLO 3 AUTH default TOKEN: [$(sed -n 4p <<<"$out")]"
[[ $(sed -n 5p <<<"$out") == *'-NOAUTH HELLO must be called'*'-WRONGPASS'* ]] ||
    fail "HELLO 3 without AUTH, AUTH as another user: [$(sed -n 5p <<<"$out")]"

step "the memory node's Redis Cluster ports (its data plane) over TLS, with the token"
out=$(timeout 10 "${RC[@]}" -p "$dp" SET sh-stolen x 2>&1)
[[ $out == "NOAUTH Authentication required." ]] || fail "SET on a shard before AUTH: [$out]"
out=$(timeout 10 "${RC[@]}" -p "$dp" --no-auth-warning -a wrong-token SET sh-stolen x 2>&1)
[[ $out == *WRONGPASS* ]] || fail "a wrong token at a shard: [$out]"
# redis-cli -c follows MOVED to the other shard, over TLS, with the token.
for i in $(seq 1 10); do
    out=$(timeout 10 "${RC[@]}" -c -p "$dp" --no-auth-warning -a "$token" SET "sh-key$i" "v$i" 2>&1)
    [ "$out" = OK ] || fail "SET sh-key$i through shard port $dp: [$out]"
done
for i in $(seq 1 10); do
    out=$(timeout 10 "${RC[@]}" -c -p "$((dp + 1))" --no-auth-warning -a "$token" GET "sh-key$i" 2>&1)
    [ "$out" = "v$i" ] || fail "GET sh-key$i through shard port $((dp + 1)): [$out]"
done
out=$(timeout 10 "${RC[@]}" -c -p "$dp" --no-auth-warning -a "$token" GET gw-key 2>&1)
[ "$out" = gw-value ] || fail "a shard's GET of the gateway's write: [$out]"
out=$(timeout 10 "${RC[@]}" -c -p "$dp" --no-auth-warning -a "$token" EXISTS sh-stolen 2>&1)
[ "$out" = 0 ] || fail "what the wrong token tried on a shard was written: [$out]"
out=$(timeout 5 redis-cli -h 127.0.0.1 -p "$dp" PING 2>&1)
[[ $out != *PONG* && $out != *NOAUTH* ]] || fail "a plain TCP client got an answer from a TLS shard"

step "the monitor over TLS, the rogue node, metrics"
deadline=$((SECONDS + 15))
while :; do
    reports=$(curl -s -m 2 "http://127.0.0.1:$monm/metrics" |
        awk '$1 == "trellis_monitor_reports_total" { print $2 }')
    epoch=$(curl -s -m 2 "http://127.0.0.1:$monm/metrics" |
        awk '$1 == "trellis_ring_epoch" { print $2 }')
    if [ "${reports:-0}" -gt 0 ] 2>/dev/null && [ "${epoch:-0}" != 0 ]; then break; fi
    if [ $SECONDS -ge $deadline ]; then
        fail "the monitor heard nothing over TLS (reports ${reports:-none}, ring epoch ${epoch:-none})"
        break
    fi
    sleep 0.5
done
received=$(curl -s -m 2 "http://127.0.0.1:$dskm/metrics" |
    awk '$1 ~ /^trellis_replicated_received_total/ { s += $2 } END { print s + 0 }')
[ "$received" -gt 0 ] 2>/dev/null ||
    fail "the disk node received no replicated state over mutual TLS ($received)"
out=$(timeout 5 "$CLI" -c "$TS_DIR/client.yml" -r "$A" NODES 2>&1)
[[ $out != *rogue* ]] || fail "the node with another CA's certificate joined: [$out]"
failures=$(curl -s -m 2 "http://127.0.0.1:$ma/metrics" |
    awk '$1 == "trellis_resp_auth_failures_total" { print $2 }')
[ "${failures:-0}" -gt 0 ] 2>/dev/null || fail "trellis_resp_auth_failures_total is [$failures]"

