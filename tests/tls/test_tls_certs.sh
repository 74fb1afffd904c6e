#!/usr/bin/env bash
# tests/tls/test_tls_certs.sh - which certificates trellis's TLS (nng over
# mbed TLS 2.28) accepts, checked end to end (docs/security.md): a router
# with its Redis gateway is started with each kind and a client connects
# to both endpoints.
#
# Accepted: EC P-256 keys in PKCS#8 (what OpenSSL 3 writes) or SEC1 form,
# self-signed or CA-signed, EC P-384 (key before the certificate), RSA. Refused when the process starts, with
# the file named: EC keys with explicit curve parameters, Ed25519, and
# encrypted keys. Names: without tls.server_name a client checks the chain
# only; with it, the name must be a DNS name of the server's certificate
# (mbed TLS 2.28 never matches an IP address). Under mutual TLS a client
# certificate needs the clientAuth purpose.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/tls/lib.sh
source "$here/lib.sh"

command -v openssl >/dev/null || {
    echo "openssl not found: skipping"
    exit 77
}
have_redis_cli=0
if command -v redis-cli >/dev/null && redis-cli --help 2>&1 | grep -q -- '--tls'; then
    have_redis_cli=1
fi

tt_pick_ports 2
port=$TT_BASE
resp=$((TT_BASE + 1))

step "certificates"
tt_ca ca
tt_leaf ca client
tt_leaf ca ec-pkcs8
head -n1 "$TT_DIR/ec-pkcs8.key" | grep -q "BEGIN PRIVATE KEY" ||
    fail "OpenSSL wrote the EC key as $(head -n1 "$TT_DIR/ec-pkcs8.key"), not PKCS#8"
tt_leaf ca ec-sec1
openssl ec -in "$TT_DIR/ec-sec1.key" -out "$TT_DIR/ec-sec1.sec1" 2>>"$TT_DIR/openssl.log"
cat "$TT_DIR/ec-sec1.crt" "$TT_DIR/ec-sec1.sec1" >"$TT_DIR/ec-sec1.pem"
grep -q "BEGIN EC PRIVATE KEY" "$TT_DIR/ec-sec1.pem" || fail "no SEC1 key"
tt_leaf ca ec-p384 -newkey ec -pkeyopt ec_paramgen_curve:secp384r1
cat "$TT_DIR/ec-p384.key" "$TT_DIR/ec-p384.crt" >"$TT_DIR/ec-p384-keyfirst.pem"
tt_leaf ca rsa -newkey rsa:2048
tt_leaf ca ec-explicit -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -pkeyopt ec_param_enc:explicit
tt_leaf ca ed25519 -newkey ed25519
# The key encrypted with a passphrase (trellis has no setting for one).
openssl pkey -in "$TT_DIR/ec-pkcs8.key" -aes256 -passout pass:secret \
    -out "$TT_DIR/enc.key" 2>>"$TT_DIR/openssl.log"
cat "$TT_DIR/ec-pkcs8.crt" "$TT_DIR/enc.key" >"$TT_DIR/encrypted.pem"
# Self-signed, as in the field notes' attempt: its own CA.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout "$TT_DIR/self.key" \
    -out "$TT_DIR/self.crt" >>"$TT_DIR/openssl.log" 2>&1
cat "$TT_DIR/self.crt" "$TT_DIR/self.key" >"$TT_DIR/self.pem"
# A server certificate for another name only.
printf 'subjectAltName=DNS:other.example\nextendedKeyUsage=serverAuth,clientAuth\n' \
    >"$TT_DIR/other.ext"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=other \
    -keyout "$TT_DIR/other.key" -out "$TT_DIR/other.csr" >>"$TT_DIR/openssl.log" 2>&1
openssl x509 -req -in "$TT_DIR/other.csr" -CA "$TT_DIR/ca.crt" -CAkey "$TT_DIR/ca.key" \
    -CAcreateserial -days 2 -extfile "$TT_DIR/other.ext" -out "$TT_DIR/other.crt" \
    >>"$TT_DIR/openssl.log" 2>&1
cat "$TT_DIR/other.crt" "$TT_DIR/other.key" >"$TT_DIR/other.pem"
# A client certificate for servers only (no clientAuth).
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$TT_DIR/srvonly.ext"
openssl x509 -req -in "$TT_DIR/client.csr" -CA "$TT_DIR/ca.crt" -CAkey "$TT_DIR/ca.key" \
    -CAcreateserial -days 2 -extfile "$TT_DIR/srvonly.ext" -out "$TT_DIR/srvonly.crt" \
    >>"$TT_DIR/openssl.log" 2>&1
cat "$TT_DIR/srvonly.crt" "$TT_DIR/client.key" >"$TT_DIR/srvonly.pem"

yml() { # FILE CA CERTKEY [SERVER_NAME]
    printf 'tls:\n  ca_file: %s\n  cert_key_file: %s\n  server_name: "%s"\n  mutual: true\n' \
        "$2" "$3" "${4:-}" >"$1"
}

router_pid=
start_router() { # NAME CERTKEY [CA]
    yml "$TT_DIR/$1.yml" "${3:-$TT_DIR/ca.crt}" "$2"
    : >"$TT_DIR/$1.log"
    tt_spawn "$1" "$TRELLIS_BIN/trellis-route" --config "$TT_DIR/$1.yml" --listen 127.0.0.1 \
        --port "$port" --resp-port "$resp" --log-level info
    router_pid=${TT_PIDS[-1]}
}

stop_router() {
    kill -TERM "$router_pid" 2>/dev/null
    wait "$router_pid" 2>/dev/null
    local i
    for ((i = 0; i < 50; i++)); do
        tt_port_busy "$port" || tt_port_busy "$resp" || return 0
        sleep 0.1
    done
}

# cli CLIENT_YML: trellis-cli PING through the TLS router.
cli_ping() {
    timeout 10 "$TRELLIS_BIN/trellis-cli" -c "$1" -r "tls+tcp://127.0.0.1:$port" -t 1500 PING 2>&1
}

redis_ping() { # CA CERT KEY
    timeout 10 redis-cli --tls --cacert "$1" --cert "$2" --key "$3" -h 127.0.0.1 -p "$resp" \
        PING 2>&1
}

accepted() { # NAME CERTKEY [CA]
    local name=$1 out
    step "$name: accepted"
    start_router "$@"
    if ! tt_wait_port "$port" 10 || ! tt_wait_port "$resp" 5; then
        fail "$name: the router did not start: $(tail -n 3 "$TT_DIR/$name.log")"
        stop_router
        return
    fi
    local ca=${3:-$TT_DIR/ca.crt} client=$TT_DIR/client.pem ckey=$TT_DIR/client.key
    local ccrt=$TT_DIR/client.crt
    if [ "$name" = self-signed ]; then
        client=$2
        ckey=$TT_DIR/self.key
        ccrt=$TT_DIR/self.crt
    fi
    yml "$TT_DIR/$name-client.yml" "$ca" "$client"
    out=$(cli_ping "$TT_DIR/$name-client.yml")
    [ "$out" = PONG ] || fail "$name: trellis-cli PING over TLS: [$out]"
    if [ $have_redis_cli -eq 1 ]; then
        out=$(redis_ping "$ca" "$ccrt" "$ckey")
        [ "$out" = PONG ] || fail "$name: redis-cli --tls PING: [$out]"
    fi
    stop_router
}

refused_at_start() { # NAME CERTKEY
    local name=$1 i
    step "$name: refused when the router starts"
    start_router "$@"
    for ((i = 0; i < 50; i++)); do
        kill -0 "$router_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$router_pid" 2>/dev/null; then
        fail "$name: the router started"
        stop_router
        return
    fi
    grep -q "certificate/key file $2" "$TT_DIR/$name.log" ||
        fail "$name: the error does not name the file: $(tail -n 2 "$TT_DIR/$name.log")"
}

accepted ec-p256-pkcs8 "$TT_DIR/ec-pkcs8.pem"
accepted ec-p256-sec1 "$TT_DIR/ec-sec1.pem"
accepted self-signed "$TT_DIR/self.pem" "$TT_DIR/self.crt"
accepted ec-p384-key-first "$TT_DIR/ec-p384-keyfirst.pem"
accepted rsa-2048 "$TT_DIR/rsa.pem"
refused_at_start ec-explicit-parameters "$TT_DIR/ec-explicit.pem"
refused_at_start ed25519 "$TT_DIR/ed25519.pem"
refused_at_start encrypted-key "$TT_DIR/encrypted.pem"

step "server names: the CA alone, or tls.server_name"
# Without tls.server_name a client checks the chain only: any certificate
# of the cluster's CA is accepted at any address.
start_router other-name "$TT_DIR/other.pem"
tt_wait_port "$port" 10 || fail "other-name: the router did not start"
yml "$TT_DIR/c1.yml" "$TT_DIR/ca.crt" "$TT_DIR/client.pem"
out=$(cli_ping "$TT_DIR/c1.yml")
[ "$out" = PONG ] || fail "no server_name, a certificate of the CA for other.example: [$out]"
yml "$TT_DIR/c2.yml" "$TT_DIR/ca.crt" "$TT_DIR/client.pem" other.example
out=$(cli_ping "$TT_DIR/c2.yml")
[ "$out" = PONG ] || fail "server_name other.example: [$out]"
yml "$TT_DIR/c3.yml" "$TT_DIR/ca.crt" "$TT_DIR/client.pem" localhost
out=$(cli_ping "$TT_DIR/c3.yml")
[[ $out == *UNAVAILABLE* ]] || fail "server_name localhost, certificate for other.example: [$out]"
stop_router
# mbed TLS 2.28 compares server names with DNS names only: an IP address
# never matches, not even one in an IP subjectAltName.
start_router names "$TT_DIR/ec-pkcs8.pem"
tt_wait_port "$port" 10 || fail "names: the router did not start"
yml "$TT_DIR/c4.yml" "$TT_DIR/ca.crt" "$TT_DIR/client.pem" localhost
out=$(cli_ping "$TT_DIR/c4.yml")
[ "$out" = PONG ] || fail "server_name localhost (DNS:localhost in the certificate): [$out]"
yml "$TT_DIR/c5.yml" "$TT_DIR/ca.crt" "$TT_DIR/client.pem" 127.0.0.1
out=$(cli_ping "$TT_DIR/c5.yml")
[[ $out == *UNAVAILABLE* ]] || fail "server_name 127.0.0.1 (IP:127.0.0.1 in the certificate): [$out]"
stop_router

step "mutual TLS: a client certificate without clientAuth"
start_router mutual "$TT_DIR/ec-pkcs8.pem"
tt_wait_port "$port" 10 || fail "mutual: the router did not start"
yml "$TT_DIR/c6.yml" "$TT_DIR/ca.crt" "$TT_DIR/srvonly.pem"
out=$(cli_ping "$TT_DIR/c6.yml")
[[ $out == *UNAVAILABLE* ]] || fail "a serverAuth-only client certificate: [$out]"
yml "$TT_DIR/c7.yml" "$TT_DIR/ca.crt" ""
out=$(cli_ping "$TT_DIR/c7.yml")
[[ $out == *UNAVAILABLE* ]] || fail "no client certificate under mutual TLS: [$out]"
stop_router

tt_finish
