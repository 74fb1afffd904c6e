#!/usr/bin/env bash
# test_tls.sh - the client on a cluster that uses TLS (mutual, tls+tcp://)
# and a shared token: trellis-cli with the configuration's certificates and
# token works; without the token it is refused (UNAUTHORIZED); without TLS
# settings a tls+tcp:// URL is a usage error; a plain tcp:// client cannot
# talk to a TLS router.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/support/lib.sh
source "$here/../support/lib.sh"

CLI="$TRELLIS_BIN/trellis-cli"

ts_need openssl

# An RSA certificate for 127.0.0.1 that is its own CA (RSA: see the TLS
# notes on mbed TLS and EC keys in the field notes).
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$TS_DIR/key.pem" -out "$TS_DIR/cert.pem" \
    >"$TS_DIR/openssl.log" 2>&1 || {
    cat "$TS_DIR/openssl.log" >&2
    exit 1
}
cat "$TS_DIR/cert.pem" "$TS_DIR/key.pem" >"$TS_DIR/certkey.pem"
printf 's3cret-token\n' >"$TS_DIR/token"
cat >"$TS_DIR/tls.yml" <<EOF
tls:
  ca_file: $TS_DIR/cert.pem
  cert_key_file: $TS_DIR/certkey.pem
  mutual: true
auth:
  token_file: $TS_DIR/token
EOF
cat >"$TS_DIR/notoken.yml" <<EOF
tls:
  ca_file: $TS_DIR/cert.pem
  cert_key_file: $TS_DIR/certkey.pem
EOF

TS_EXTRA=(--config "$TS_DIR/tls.yml")
TS_CLI_ARGS=(-c "$TS_DIR/tls.yml")
TS_SCHEME=tls+tcp
ts_cluster 1 1

out=$("$CLI" -c "$TS_DIR/tls.yml" -r "$TS_URL" SET secret value 2>&1) rc=$?
[[ $rc == 0 && $out == OK ]] || fail "SET over TLS with the token: rc=$rc [$out]"
out=$("$CLI" -c "$TS_DIR/tls.yml" -r "$TS_URL" GET secret 2>&1) rc=$?
[[ $rc == 0 && $out == value ]] || fail "GET over TLS with the token: rc=$rc [$out]"
out=$(printf 'INCR n\nINCR n\nNODES\n' | "$CLI" -c "$TS_DIR/tls.yml" -r "$TS_URL" 2>&1) rc=$?
[[ $rc == 0 && $out == $'1\n2\n'* && $out == *"tls+tcp://127.0.0.1:"* ]] ||
    fail "piped over TLS: rc=$rc [$out]"

out=$("$CLI" -c "$TS_DIR/notoken.yml" -r "$TS_URL" -t 1000 GET secret 2>&1) rc=$?
[[ $rc == 1 && $out == *UNAUTHORIZED* ]] || fail "without the token: rc=$rc [$out]"
out=$("$CLI" -r "$TS_URL" -t 500 GET secret 2>&1) rc=$?
[[ $rc == 2 && $out == "error: cannot connect to $TS_URL"*INVALID* ]] ||
    fail "tls+tcp without TLS settings: rc=$rc [$out]"
out=$("$CLI" -r "tcp://127.0.0.1:${TS_URL##*:}" -t 500 GET secret 2>&1) rc=$?
[[ $rc == 1 ]] || fail "plain TCP to a TLS router: rc=$rc [$out]"

