#!/usr/bin/env bash
# test_tls.sh - the client on a cluster that uses TLS (mutual, tls+tcp://)
# and a shared token: trellis-cli with the configuration's certificates and
# token works; without the token it is refused (UNAUTHORIZED); without TLS
# settings a tls+tcp:// URL is a usage error; a plain tcp:// client cannot
# talk to a TLS router.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/client/cluster.sh
source "$here/cluster.sh"
trap tc_stop EXIT

CLI="$TRELLIS_BIN/trellis-cli"
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

command -v openssl >/dev/null || {
    echo "openssl not found: skipping"
    exit 0
}

# An RSA certificate for 127.0.0.1 that is its own CA (RSA: see the TLS
# notes on mbed TLS and EC keys in the field notes).
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$TC_DIR/key.pem" -out "$TC_DIR/cert.pem" \
    >"$TC_DIR/openssl.log" 2>&1 || {
    cat "$TC_DIR/openssl.log" >&2
    exit 1
}
cat "$TC_DIR/cert.pem" "$TC_DIR/key.pem" >"$TC_DIR/certkey.pem"
printf 's3cret-token\n' >"$TC_DIR/token"
cat >"$TC_DIR/tls.yml" <<EOF
tls:
  ca_file: $TC_DIR/cert.pem
  cert_key_file: $TC_DIR/certkey.pem
  mutual: true
auth:
  token_file: $TC_DIR/token
EOF
cat >"$TC_DIR/notoken.yml" <<EOF
tls:
  ca_file: $TC_DIR/cert.pem
  cert_key_file: $TC_DIR/certkey.pem
EOF

TC_EXTRA=(--config "$TC_DIR/tls.yml")
TC_CLI_ARGS=(-c "$TC_DIR/tls.yml")
TC_SCHEME=tls+tcp
tc_start 1 1 || exit 1

out=$("$CLI" -c "$TC_DIR/tls.yml" -r "$TC_URL" SET secret value 2>&1) rc=$?
[[ $rc == 0 && $out == OK ]] || fail "SET over TLS with the token: rc=$rc [$out]"
out=$("$CLI" -c "$TC_DIR/tls.yml" -r "$TC_URL" GET secret 2>&1) rc=$?
[[ $rc == 0 && $out == value ]] || fail "GET over TLS with the token: rc=$rc [$out]"
out=$(printf 'INCR n\nINCR n\nNODES\n' | "$CLI" -c "$TC_DIR/tls.yml" -r "$TC_URL" 2>&1) rc=$?
[[ $rc == 0 && $out == $'1\n2\n'* && $out == *"tls+tcp://127.0.0.1:"* ]] ||
    fail "piped over TLS: rc=$rc [$out]"

out=$("$CLI" -c "$TC_DIR/notoken.yml" -r "$TC_URL" -t 1000 GET secret 2>&1) rc=$?
[[ $rc == 1 && $out == *UNAUTHORIZED* ]] || fail "without the token: rc=$rc [$out]"
out=$("$CLI" -r "$TC_URL" -t 500 GET secret 2>&1) rc=$?
[[ $rc == 2 && $out == "error: cannot connect to $TC_URL"*INVALID* ]] ||
    fail "tls+tcp without TLS settings: rc=$rc [$out]"
out=$("$CLI" -r "tcp://127.0.0.1:${TC_URL##*:}" -t 500 GET secret 2>&1) rc=$?
[[ $rc == 1 ]] || fail "plain TCP to a TLS router: rc=$rc [$out]"

echo "client_tls: $failures failures"
if ((failures)); then
    tc_dump
    exit 1
fi
exit 0
