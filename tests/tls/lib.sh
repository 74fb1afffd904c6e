# shellcheck shell=bash
# tests/tls/lib.sh - sourced by the TLS tests: certificates made with
# openssl, trellis processes started from $TRELLIS_BIN on loopback ports of
# the test's own (probed free), all killed when the test ends however it
# ends (an EXIT trap, and a watchdog in its own session).
#
#   tt_pick_ports N        sets TT_BASE: N free ports from TT_BASE on
#   tt_ca NAME             a CA (EC P-256): $TT_DIR/NAME.crt, NAME.key
#   tt_leaf CA NAME [KEYARGS...]
#                          a certificate for 127.0.0.1 and localhost signed
#                          by CA, serverAuth and clientAuth:
#                          $TT_DIR/NAME.pem (certificate then key)
#   tt_spawn NAME ARGV...  start a process, log in $TT_DIR/NAME.log
#   tt_wait_port PORT      wait until something listens on PORT
#   tt_dump                the last lines of every log
#   fail MSG / tt_finish   as in tests/resp/lib.sh

: "${TRELLIS_BIN:?TRELLIS_BIN must name the directory of the trellis binaries}"
TT_DIR=$(mktemp -d "${TMPDIR:-/tmp}/trellis-tls.XXXXXX")
TT_NAME=$(basename "$0" .sh)
TT_START=$SECONDS
TT_FAILURES=0
TT_PIDS=()
TT_BASE=0
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

fail() {
    echo "FAIL: $*" >&2
    TT_FAILURES=$((TT_FAILURES + 1))
}

step() {
    echo "== [$((SECONDS - TT_START)) s] $*"
}

tt_dump() {
    local f
    for f in "$TT_DIR"/*.log; do
        [ -f "$f" ] || continue
        echo "---- $f" >&2
        tail -n 15 "$f" >&2
    done
}

tt_cleanup() {
    local rc=$? pid
    if [ $rc -ne 0 ] || [ "$TT_FAILURES" -ne 0 ]; then tt_dump; fi
    for pid in "${TT_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
    for pid in "${TT_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    [ -z "${TT_WATCHDOG:-}" ] || kill "$TT_WATCHDOG" 2>/dev/null
    rm -rf "$TT_DIR"
    exit $rc
}
trap tt_cleanup EXIT

# When this shell is killed (a test timeout), kill what it started.
: >"$TT_DIR/pids"
# shellcheck disable=SC2016 # expanded by the inner shell
setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done
    xargs -r kill -KILL <"$2/pids" 2>/dev/null; rm -rf "$2"' _ $$ "$TT_DIR" \
    </dev/null >/dev/null 2>&1 &
TT_WATCHDOG=$!

tt_port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

tt_pick_ports() { # N
    local n=$1 tries base p busy
    for ((tries = 0; tries < 100; tries++)); do
        # 11000-13999: apart from the client tests' ports and cluster.sh's bases.
        base=$((11000 + ((($$ + tries * 7) % 145) * 20)))
        busy=0
        for ((p = base; p < base + n; p++)); do
            if tt_port_busy "$p"; then
                busy=1
                break
            fi
        done
        if [ $busy -eq 0 ]; then
            # shellcheck disable=SC2034 # for the tests that source this file
            TT_BASE=$base
            return 0
        fi
    done
    echo "no free ports" >&2
    exit 1
}

tt_ca() { # NAME
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=$1" -keyout "$TT_DIR/$1.key" -out "$TT_DIR/$1.crt" \
        >>"$TT_DIR/openssl.log" 2>&1 || {
        cat "$TT_DIR/openssl.log" >&2
        exit 1
    }
}

tt_leaf() { # CA NAME [KEY ARGS for openssl req -newkey]
    local ca=$1 name=$2
    shift 2
    local keyargs=("$@")
    [ ${#keyargs[@]} -gt 0 ] || keyargs=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1)
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' \
        >"$TT_DIR/$name.ext"
    if ! openssl req -new "${keyargs[@]}" -nodes -subj "/CN=$name" -keyout "$TT_DIR/$name.key" \
        -out "$TT_DIR/$name.csr" >>"$TT_DIR/openssl.log" 2>&1 ||
        ! openssl x509 -req -in "$TT_DIR/$name.csr" -CA "$TT_DIR/$ca.crt" \
            -CAkey "$TT_DIR/$ca.key" -CAcreateserial -days 2 -extfile "$TT_DIR/$name.ext" \
            -out "$TT_DIR/$name.crt" >>"$TT_DIR/openssl.log" 2>&1; then
        cat "$TT_DIR/openssl.log" >&2
        exit 1
    fi
    cat "$TT_DIR/$name.crt" "$TT_DIR/$name.key" >"$TT_DIR/$name.pem"
}

tt_spawn() { # NAME ARGV...
    local name=$1
    shift
    "$@" </dev/null >>"$TT_DIR/$name.log" 2>&1 &
    TT_PIDS+=("$!")
    echo "$!" >>"$TT_DIR/pids"
}

tt_wait_port() { # PORT [SECONDS]
    local deadline=$((SECONDS + ${2:-10}))
    while ! tt_port_busy "$1"; do
        [ $SECONDS -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

tt_finish() {
    echo "$TT_NAME: $TT_FAILURES failures in $((SECONDS - TT_START)) s"
    [ "$TT_FAILURES" -eq 0 ]
}
