# shellcheck shell=bash
# tests/tls/lib.sh - sourced by the TLS tests: tests/support/lib.sh (the
# test's directory TS_DIR, ports, processes, failures), and certificates
# made with openssl; both tests need openssl and a redis-cli with TLS, and
# skip without.
#
#   tt_ca NAME             a CA (EC P-256): $TS_DIR/NAME.crt, NAME.key
#   tt_leaf CA NAME [KEYARGS...]
#                          a certificate for 127.0.0.1 and localhost signed
#                          by CA, serverAuth and clientAuth:
#                          $TS_DIR/NAME.pem (certificate then key)

# shellcheck source=tests/support/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../support/lib.sh"
ts_need openssl redis-cli
# (The help taken whole: under pipefail, `| grep -q` fails when grep stops
# reading early.)
[[ $(redis-cli --help 2>&1) == *--tls* ]] ||
    ts_skip "redis-cli has no TLS support (Debian's redis-tools has)"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

tt_ca() { # NAME
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=$1" -keyout "$TS_DIR/$1.key" -out "$TS_DIR/$1.crt" \
        >>"$TS_DIR/openssl.log" 2>&1 || {
        cat "$TS_DIR/openssl.log" >&2
        exit 1
    }
}

tt_leaf() { # CA NAME [KEY ARGS for openssl req -newkey]
    local ca=$1 name=$2
    shift 2
    local keyargs=("$@")
    [ ${#keyargs[@]} -gt 0 ] || keyargs=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1)
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' \
        >"$TS_DIR/$name.ext"
    if ! openssl req -new "${keyargs[@]}" -nodes -subj "/CN=$name" -keyout "$TS_DIR/$name.key" \
        -out "$TS_DIR/$name.csr" >>"$TS_DIR/openssl.log" 2>&1 ||
        ! openssl x509 -req -in "$TS_DIR/$name.csr" -CA "$TS_DIR/$ca.crt" \
            -CAkey "$TS_DIR/$ca.key" -CAcreateserial -days 2 -extfile "$TS_DIR/$name.ext" \
            -out "$TS_DIR/$name.crt" >>"$TS_DIR/openssl.log" 2>&1; then
        cat "$TS_DIR/openssl.log" >&2
        exit 1
    fi
    cat "$TS_DIR/$name.crt" "$TS_DIR/$name.key" >"$TS_DIR/$name.pem"
}
