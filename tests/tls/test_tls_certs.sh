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

ts_ports 2
port=$TS_PORT_BASE
resp=$((TS_PORT_BASE + 1))

step "certificates"
tt_ca ca
tt_leaf ca client
tt_leaf ca ec-pkcs8
head -n1 "$TS_DIR/ec-pkcs8.key" | grep -q "BEGIN PRIVATE KEY" ||
    fail "OpenSSL wrote the EC key as $(head -n1 "$TS_DIR/ec-pkcs8.key"), not PKCS#8"
tt_leaf ca ec-sec1
openssl ec -in "$TS_DIR/ec-sec1.key" -out "$TS_DIR/ec-sec1.sec1" 2>>"$TS_DIR/openssl.log"
cat "$TS_DIR/ec-sec1.crt" "$TS_DIR/ec-sec1.sec1" >"$TS_DIR/ec-sec1.pem"
grep -q "BEGIN EC PRIVATE KEY" "$TS_DIR/ec-sec1.pem" || fail "no SEC1 key"
tt_leaf ca ec-p384 -newkey ec -pkeyopt ec_paramgen_curve:secp384r1
cat "$TS_DIR/ec-p384.key" "$TS_DIR/ec-p384.crt" >"$TS_DIR/ec-p384-keyfirst.pem"
tt_leaf ca rsa -newkey rsa:2048
tt_leaf ca ec-explicit -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -pkeyopt ec_param_enc:explicit
tt_leaf ca ed25519 -newkey ed25519
# The key encrypted with a passphrase (trellis has no setting for one).
openssl pkey -in "$TS_DIR/ec-pkcs8.key" -aes256 -passout pass:secret \
    -out "$TS_DIR/enc.key" 2>>"$TS_DIR/openssl.log"
cat "$TS_DIR/ec-pkcs8.crt" "$TS_DIR/enc.key" >"$TS_DIR/encrypted.pem"
# Self-signed, as in the field notes' attempt: its own CA.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout "$TS_DIR/self.key" \
    -out "$TS_DIR/self.crt" >>"$TS_DIR/openssl.log" 2>&1
cat "$TS_DIR/self.crt" "$TS_DIR/self.key" >"$TS_DIR/self.pem"
# A server certificate for another name only.
printf 'subjectAltName=DNS:other.example\nextendedKeyUsage=serverAuth,clientAuth\n' \
    >"$TS_DIR/other.ext"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=other \
    -keyout "$TS_DIR/other.key" -out "$TS_DIR/other.csr" >>"$TS_DIR/openssl.log" 2>&1
openssl x509 -req -in "$TS_DIR/other.csr" -CA "$TS_DIR/ca.crt" -CAkey "$TS_DIR/ca.key" \
    -CAcreateserial -days 2 -extfile "$TS_DIR/other.ext" -out "$TS_DIR/other.crt" \
    >>"$TS_DIR/openssl.log" 2>&1
cat "$TS_DIR/other.crt" "$TS_DIR/other.key" >"$TS_DIR/other.pem"
# A client certificate for servers only (no clientAuth).
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$TS_DIR/srvonly.ext"
openssl x509 -req -in "$TS_DIR/client.csr" -CA "$TS_DIR/ca.crt" -CAkey "$TS_DIR/ca.key" \
    -CAcreateserial -days 2 -extfile "$TS_DIR/srvonly.ext" -out "$TS_DIR/srvonly.crt" \
    >>"$TS_DIR/openssl.log" 2>&1
cat "$TS_DIR/srvonly.crt" "$TS_DIR/client.key" >"$TS_DIR/srvonly.pem"

yml() { # FILE CA CERTKEY [SERVER_NAME]
    printf 'tls:\n  ca_file: %s\n  cert_key_file: %s\n  server_name: "%s"\n  mutual: true\n' \
        "$2" "$3" "${4:-}" >"$1"
}

router_pid=
start_router() { # NAME CERTKEY [CA]
    yml "$TS_DIR/$1.yml" "${3:-$TS_DIR/ca.crt}" "$2"
    : >"$TS_DIR/$1.log"
    ts_spawn "$1" "$TRELLIS_BIN/trellis-route" --config "$TS_DIR/$1.yml" --listen 127.0.0.1 \
        --port "$port" --resp-port "$resp" --log-level info
    router_pid=$TS_PID
}

stop_router() {
    kill -TERM "$router_pid" 2>/dev/null
    wait "$router_pid" 2>/dev/null
    local i
    for ((i = 0; i < 50; i++)); do
        ts_port_open "$port" || ts_port_open "$resp" || return 0
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
    if ! ts_wait_port "$port" 10 || ! ts_wait_port "$resp" 5; then
        fail "$name: the router did not start: $(tail -n 3 "$TS_DIR/$name.log")"
        stop_router
        return
    fi
    local ca=${3:-$TS_DIR/ca.crt} client=$TS_DIR/client.pem ckey=$TS_DIR/client.key
    local ccrt=$TS_DIR/client.crt
    if [ "$name" = self-signed ]; then
        client=$2
        ckey=$TS_DIR/self.key
        ccrt=$TS_DIR/self.crt
    fi
    yml "$TS_DIR/$name-client.yml" "$ca" "$client"
    out=$(cli_ping "$TS_DIR/$name-client.yml")
    [ "$out" = PONG ] || fail "$name: trellis-cli PING over TLS: [$out]"
    out=$(redis_ping "$ca" "$ccrt" "$ckey")
    [ "$out" = PONG ] || fail "$name: redis-cli --tls PING: [$out]"
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
    grep -q "certificate/key file $2" "$TS_DIR/$name.log" ||
        fail "$name: the error does not name the file: $(tail -n 2 "$TS_DIR/$name.log")"
}

accepted ec-p256-pkcs8 "$TS_DIR/ec-pkcs8.pem"
accepted ec-p256-sec1 "$TS_DIR/ec-sec1.pem"
accepted self-signed "$TS_DIR/self.pem" "$TS_DIR/self.crt"
accepted ec-p384-key-first "$TS_DIR/ec-p384-keyfirst.pem"
accepted rsa-2048 "$TS_DIR/rsa.pem"
refused_at_start ec-explicit-parameters "$TS_DIR/ec-explicit.pem"
refused_at_start ed25519 "$TS_DIR/ed25519.pem"
refused_at_start encrypted-key "$TS_DIR/encrypted.pem"

step "server names: the CA alone, or tls.server_name"
# Without tls.server_name a client checks the chain only: any certificate
# of the cluster's CA is accepted at any address.
start_router other-name "$TS_DIR/other.pem"
ts_wait_port "$port" 10 || fail "other-name: the router did not start"
yml "$TS_DIR/c1.yml" "$TS_DIR/ca.crt" "$TS_DIR/client.pem"
out=$(cli_ping "$TS_DIR/c1.yml")
[ "$out" = PONG ] || fail "no server_name, a certificate of the CA for other.example: [$out]"
yml "$TS_DIR/c2.yml" "$TS_DIR/ca.crt" "$TS_DIR/client.pem" other.example
out=$(cli_ping "$TS_DIR/c2.yml")
[ "$out" = PONG ] || fail "server_name other.example: [$out]"
yml "$TS_DIR/c3.yml" "$TS_DIR/ca.crt" "$TS_DIR/client.pem" localhost
out=$(cli_ping "$TS_DIR/c3.yml")
[[ $out == *UNAVAILABLE* ]] || fail "server_name localhost, certificate for other.example: [$out]"
stop_router
# mbed TLS 2.28 compares server names with DNS names only: an IP address
# never matches, not even one in an IP subjectAltName.
start_router names "$TS_DIR/ec-pkcs8.pem"
ts_wait_port "$port" 10 || fail "names: the router did not start"
yml "$TS_DIR/c4.yml" "$TS_DIR/ca.crt" "$TS_DIR/client.pem" localhost
out=$(cli_ping "$TS_DIR/c4.yml")
[ "$out" = PONG ] || fail "server_name localhost (DNS:localhost in the certificate): [$out]"
yml "$TS_DIR/c5.yml" "$TS_DIR/ca.crt" "$TS_DIR/client.pem" 127.0.0.1
out=$(cli_ping "$TS_DIR/c5.yml")
[[ $out == *UNAVAILABLE* ]] || fail "server_name 127.0.0.1 (IP:127.0.0.1 in the certificate): [$out]"
stop_router

step "mutual TLS: a client certificate without clientAuth"
start_router mutual "$TS_DIR/ec-pkcs8.pem"
ts_wait_port "$port" 10 || fail "mutual: the router did not start"
yml "$TS_DIR/c6.yml" "$TS_DIR/ca.crt" "$TS_DIR/srvonly.pem"
out=$(cli_ping "$TS_DIR/c6.yml")
[[ $out == *UNAVAILABLE* ]] || fail "a serverAuth-only client certificate: [$out]"
yml "$TS_DIR/c7.yml" "$TS_DIR/ca.crt" ""
out=$(cli_ping "$TS_DIR/c7.yml")
[[ $out == *UNAVAILABLE* ]] || fail "no client certificate under mutual TLS: [$out]"
stop_router

