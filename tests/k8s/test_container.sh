#!/usr/bin/env bash
# Builds the container image (deploy/container/build.sh) and runs the pods of
# the small Kubernetes overlay in podman the way Kubernetes would: the same
# image, arguments, ConfigMap files and volumes, a read-only root file
# system, and the DNS names of the StatefulSet pods and Services as network
# aliases on one podman network. Checks that
#   - every storage node turns ready (/healthz 200, i.e. ACTIVE in the ring),
#     and so does the monitor (when the image has it; it runs with elasticity
#     off, as there is no Kubernetes API to scale through);
#   - trellis-cli in a container does a SET through one router and the GET
#     through the other (when the image has trellis-cli);
#   - SIGTERM makes a storage node depart (LEFT) and exit 0 within its grace
#     period, and the key is still served afterwards;
#   - `trellis backup` checkpoints the running disk node; after the node lost
#     its volume, `trellis restore` merges the backup back and every key
#     reads back (the reads need trellis-cli in the image).
#
# usage: tests/k8s/test_container.sh [--keep]
#   --keep                 leave the containers running (and print how to remove them)
#   TRELLIS_IMAGE=NAME     test an existing image instead of building one
#   TRELLIS_IMAGE_REV=REV  build the committed tree REV instead of the working tree
# Exit status: 0 passed, 1 failed, 77 skipped (podman, runc or debootstrap
# unusable here; the reason is printed).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
keep=0
[ "${1:-}" = "--keep" ] && keep=1

skip() { echo "skipped: $*"; exit 77; }
fail() { echo "FAIL: $*"; status=1; }
note() { echo "-- $*"; }
status=0

# ---- can this machine run containers? --------------------------------------------------
command -v podman >/dev/null 2>&1 || skip "podman is not installed (Debian: podman runc debootstrap)"
command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
python3 -c 'import yaml' 2>/dev/null || skip "PyYAML is missing (Debian: python3-yaml)"
tmp=$(mktemp -d)
if [ -z "${CONTAINERS_CONF:-}" ]; then
    printf '[containers]\ndefault_ulimits = []\n' >"$tmp/containers.conf"
    export CONTAINERS_CONF="$tmp/containers.conf"
fi
runtime=${TRELLIS_OCI_RUNTIME:-}
if [ -z "$runtime" ] && command -v runc >/dev/null 2>&1; then
    runtime=runc
fi
P=(podman)
[ -n "$runtime" ] && P+=(--runtime "$runtime")
"${P[@]}" info >/dev/null 2>&1 || { rm -rf "$tmp"; skip "podman does not work here ('podman info' fails)"; }
if [ -z "${TRELLIS_IMAGE:-}" ] && ! "${P[@]}" image exists localhost/trellis-base:bookworm &&
    ! command -v debootstrap >/dev/null 2>&1; then
    rm -rf "$tmp"
    skip "no base image and no debootstrap to make one (Debian: debootstrap)"
fi

tag=test-$$
net=trellis-$tag
containers=()
volumes=()
cleanup() {
    if [ $keep -eq 1 ]; then
        echo "kept: podman rm -f ${containers[*]}; podman volume rm ${volumes[*]}; podman network rm $net"
    else
        [ ${#containers[@]} -gt 0 ] && "${P[@]}" rm -f -t 0 "${containers[@]}" >/dev/null 2>&1
        [ ${#volumes[@]} -gt 0 ] && "${P[@]}" volume rm -f "${volumes[@]}" >/dev/null 2>&1
        "${P[@]}" network rm -f "$net" >/dev/null 2>&1
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# ---- the image -----------------------------------------------------------------------------
t0=$(date +%s)
if [ -n "${TRELLIS_IMAGE:-}" ]; then
    image=$TRELLIS_IMAGE
    "${P[@]}" image exists "$image" || { echo "FAIL: no image $image"; exit 1; }
else
    build_args=(--quiet)
    [ -n "${TRELLIS_IMAGE_REV:-}" ] && build_args+=(--rev "$TRELLIS_IMAGE_REV")
    if ! image=$(bash "$root/deploy/container/build.sh" "${build_args[@]}" 2>"$tmp/build.err"); then
        # A base that cannot be made (no network to Debian's archive) is the
        # machine's limit, not a failure of the image.
        if grep -q 'debootstrap failed' "$tmp/build.err"; then
            cat "$tmp/build.err"
            skip "debootstrap could not make the base image"
        fi
        cat "$tmp/build.err"
        echo "FAIL: the image does not build"
        exit 1
    fi
fi
t1=$(date +%s)
note "image $image ready in $((t1 - t0)) s"
has() { "${P[@]}" run --rm --entrypoint test "$image" -x "/usr/local/bin/trellis-$1"; }
"${P[@]}" run --rm "$image" version >/dev/null || { echo "FAIL: the image does not run"; exit 1; }
[ "$("${P[@]}" run --rm --entrypoint id "$image" -u)" = 10001 ] || fail "the image's user is not 10001"

# ---- the pods of the small overlay ---------------------------------------------------
python3 "$here/pods.py" "$root/deploy/k8s/overlays/small" "$tmp/k8s" || { echo "FAIL: pods.py"; exit 1; }
chmod -R a+rX "$tmp/k8s"
"${P[@]}" network create "$net" >/dev/null || { echo "FAIL: podman network create"; exit 1; }

start_pod() { # pod-name
    local pod=$1 kind rest role="" a=() opts=()
    while read -r kind rest; do
        case "$kind" in
            role) role=$rest ;;
            arg) a+=("$rest") ;;
            alias) opts+=(--network-alias "$rest") ;;
            config) opts+=(-v "$tmp/k8s/config:$rest:ro") ;;
            volume)
                local vname="$net-$pod-${rest%% *}"
                volumes+=("$vname")
                opts+=(-v "$vname:${rest#* }") ;;
        esac
    done <"$tmp/k8s/pods/$pod"
    if [ "$role" = kvs ] && [ $with_monitor -eq 0 ]; then
        a+=(--monitor=) # no monitor to report to
    fi
    if [ "$role" = monitor ]; then
        # No Kubernetes API here for its provisioner: it watches, it does not scale.
        a+=(--monitor.elasticity=false)
    fi
    containers+=("$net-$pod")
    "${P[@]}" run -d --name "$net-$pod" --hostname "$pod" --network "$net" "${opts[@]}" \
        --read-only --read-only-tmpfs=false "$image" "$role" "${a[@]}" >/dev/null ||
        { fail "$pod does not start"; return 1; }
}

http_get() { # container port path: the HTTP response, fetched inside the container
    "${P[@]}" exec "$1" bash -c "exec 3<>/dev/tcp/127.0.0.1/$2 && printf 'GET $3 HTTP/1.0\r\n\r\n' >&3 && cat <&3" \
        2>/dev/null | tr -d '\r'
}
http_status() { http_get "$@" | awk 'NR == 1 {print $2}'; }
active_nodes() { # router container: storage nodes it counts as ACTIVE
    http_get "$1" 9101 /metrics | awk '/^trellis_nodes\{.*state="ACTIVE"/ {n += $2} END {print n + 0}'
}

with_monitor=0
has monitor && with_monitor=1
storage=()
for f in "$tmp"/k8s/pods/*; do
    pod=$(basename "$f")
    case "$pod" in
        trellis-monitor-*) [ $with_monitor -eq 1 ] || continue ;;
        trellis-memory-*|trellis-disk-*) storage+=("$pod") ;;
    esac
    start_pod "$pod"
done
[ ${#storage[@]} -ge 2 ] || fail "the overlay has fewer than two storage pods"
note "started ${#containers[@]} containers: ${containers[*]#"$net-"}"

# ---- readiness -------------------------------------------------------------------------------
deadline=$(( $(date +%s) + 120 ))
for pod in "${storage[@]}"; do
    until [ "$(http_status "$net-$pod" 9100 /healthz)" = 200 ]; do
        if [ "$(date +%s)" -gt "$deadline" ]; then
            fail "$pod not ready (/healthz) after 120 s"
            "${P[@]}" logs "$net-$pod" 2>&1 | tail -20
            break
        fi
        sleep 1
    done
done
[ $status -eq 0 ] && note "storage nodes ready (/healthz 200) $(( $(date +%s) - t1 )) s after start"
# Both routers know every storage node as ACTIVE, and still do a few seconds later.
for r in trellis-route-0 trellis-route-1; do
    [ "$(http_status "$net-$r" 9101 /healthz)" = 200 ] || fail "$r /healthz not 200"
    until [ "$(active_nodes "$net-$r")" = ${#storage[@]} ]; do
        if [ "$(date +%s)" -gt "$deadline" ]; then
            fail "$r counts $(active_nodes "$net-$r") ACTIVE storage nodes, not ${#storage[@]}"
            break
        fi
        sleep 1
    done
done
sleep 5
for r in trellis-route-0 trellis-route-1; do
    n=$(active_nodes "$net-$r")
    [ "$n" = ${#storage[@]} ] || fail "$r: $n ACTIVE storage nodes 5 s later, not ${#storage[@]}"
done
# Pods start in any order, as on Kubernetes. A node that could not reach a
# router at first still joins (through kvs.join_timeout_ms at worst): worth a
# warning, not a failure.
for pod in "${storage[@]}"; do
    logs=$("${P[@]}" logs "$net-$pod" 2>&1)
    if grep -qE 'marked DEAD|join timeout' <<<"$logs"; then
        note "warning: $pod did not join at the first attempt: $(grep -E 'marked DEAD|join timeout|no router' <<<"$logs" | head -3 | tr '\n' ' ')"
    fi
done
[ $status -eq 0 ] && note "both routers count ${#storage[@]} ACTIVE storage nodes"
if [ $with_monitor -eq 1 ]; then
    [ "$(http_status "$net-trellis-monitor-0" 9102 /healthz)" = 200 ] || fail "trellis-monitor /healthz not 200"
    [ "$(http_status "$net-trellis-monitor-0" 9102 /livez)" = 200 ] || fail "trellis-monitor /livez not 200"
    [ $status -eq 0 ] && note "trellis-monitor up (/healthz 200)"
fi

# ---- a round trip with trellis-cli --------------------------------------------------------
cli() { # router-host args...
    local host=$1; shift
    "${P[@]}" run --rm --network "$net" --read-only "$image" cli -r "tcp://$host:6450" "$@" 2>&1
}
have_cli=0
if has cli; then
    have_cli=1
    out=$(cli trellis-route-0.trellis-route-peers SET greeting "hello from a container")
    [ "$out" = OK ] || fail "SET through trellis-route-0 printed '$out'"
    ok=0
    for _ in $(seq 1 20); do
        out=$(cli trellis-route-1.trellis-route-peers GET greeting)
        [ "$out" = "hello from a container" ] && { ok=1; break; }
        sleep 0.5
    done
    [ $ok -eq 1 ] || fail "GET through trellis-route-1 printed '$out'"
    out=$(cli trellis-route NODES)
    [ "$(grep -c ' ACTIVE ' <<<"$out")" -eq ${#storage[@]} ] ||
        fail "NODES does not list ${#storage[@]} ACTIVE nodes: $out"
    [ $status -eq 0 ] && note "trellis-cli round trip: SET via trellis-route-0, GET via trellis-route-1"
else
    note "trellis-cli is not in this image: round trip not checked (readiness only)"
fi

# ---- departure on SIGTERM ------------------------------------------------------------------
grace=150
depart() { # pod: SIGTERM, then it must have announced LEFT and exited 0
    local d0 code logs
    d0=$(date +%s)
    "${P[@]}" stop -t "$grace" "$net-$1" >/dev/null
    code=$("${P[@]}" inspect -f '{{.State.ExitCode}}' "$net-$1")
    [ "$code" = 0 ] || fail "$1 exited with $code after SIGTERM"
    logs=$("${P[@]}" logs "$net-$1" 2>&1)
    grep -q 'LEFT' <<<"$logs" || fail "$1 did not announce LEFT"
    note "$1 departed and exited $code in $(( $(date +%s) - d0 )) s"
}
get_is() { # key value: GET through a router prints value (retried for 10 s:
    # a client may meet a ring that is changing); the last output in $got
    got=""
    for _ in $(seq 1 20); do
        got=$(cli trellis-route GET "$1")
        [ "$got" = "$2" ] && return 0
        sleep 0.5
    done
    return 1
}
expect_get() { # key value what
    get_is "$1" "$2" || fail "GET $1 $3 printed '$got', not '$2'"
}
memory=()
disk=()
for pod in "${storage[@]}"; do
    case "$pod" in trellis-memory-*) memory+=("$pod") ;; *) disk+=("$pod") ;; esac
done
mapfile -t memory < <(printf '%s\n' "${memory[@]}" | sort -rV)
# The highest memory ordinal first, as a scale-down removes it.
depart "${memory[0]}"
[ $have_cli -eq 1 ] && expect_get greeting "hello from a container" "after ${memory[0]} departed"

# ---- backup of a disk node, loss of its volume, restore ----------------------------------
dnode=${disk[0]}
if [ $have_cli -eq 1 ]; then
    for i in $(seq 1 20); do echo "SET key$i value$i"; done |
        "${P[@]}" run --rm -i --network "$net" --read-only "$image" cli -r tcp://trellis-route:6450 \
        >"$tmp/set.out" 2>&1
    [ "$(grep -c '^OK$' "$tmp/set.out")" = 20 ] || fail "20 SETs through one trellis-cli: $(head -3 "$tmp/set.out")"
fi
b0=$(date +%s)
"${P[@]}" exec "$net-$dnode" trellis backup >"$tmp/backup.tar" 2>"$tmp/backup.err" ||
    fail "trellis backup: $(cat "$tmp/backup.err")"
tar -tf "$tmp/backup.tar" >"$tmp/backup.list" 2>&1 || fail "the backup is not a tar"
if ! grep -qx "$dnode/NODE" "$tmp/backup.list" || ! grep -q "^$dnode/shard-0/CURRENT$" "$tmp/backup.list"; then
    fail "the backup lacks $dnode/NODE or its shards' checkpoints: $(head -5 "$tmp/backup.list")"
fi
note "trellis backup of $dnode: $(wc -c <"$tmp/backup.tar") bytes in $(( $(date +%s) - b0 )) s"
# The other memory nodes depart too: the disk tier alone holds the keys.
for pod in "${memory[@]:1}"; do
    depart "$pod"
done
[ $have_cli -eq 1 ] && expect_get greeting "hello from a container" "from the disk tier alone"
# The disk node dies with its volume, and comes back empty.
"${P[@]}" rm -f -t 0 "$net-$dnode" >/dev/null
for v in "${volumes[@]}"; do
    case "$v" in "$net-$dnode"-*) "${P[@]}" volume rm -f "$v" >/dev/null ;; esac
done
start_pod "$dnode"
deadline=$(( $(date +%s) + 120 ))
until [ "$(http_status "$net-$dnode" 9100 /healthz)" = 200 ]; do
    [ "$(date +%s)" -le "$deadline" ] || { fail "$dnode not ready again after 120 s"; break; }
    sleep 1
done
if [ $have_cli -eq 1 ]; then
    out=$(cli trellis-route GET key7)
    note "after the loss of $dnode's volume, GET key7 prints '$out'"
fi
r0=$(date +%s)
"${P[@]}" exec -i "$net-$dnode" trellis restore --config=/etc/trellis/trellis.yml \
    --config=/etc/trellis/kubernetes.yml --settle=5 \
    --advertise="$dnode.${dnode%-*}.trellis.svc.cluster.local" <"$tmp/backup.tar" >"$tmp/restore.out" 2>&1 ||
    { fail "trellis restore failed"; tail -20 "$tmp/restore.out"; }
note "trellis restore into the new $dnode in $(( $(date +%s) - r0 )) s"
if [ $have_cli -eq 1 ]; then
    expect_get greeting "hello from a container" "after the restore"
    n=0
    for i in $(seq 1 20); do
        if get_is "key$i" "value$i"; then
            n=$((n + 1))
        else
            note "after the restore, GET key$i prints '$got'"
        fi
    done
    [ $n = 20 ] || fail "after the restore, $n of 20 keys read back"
    [ $status -eq 0 ] && note "backup and restore: every key read back"
fi
depart "$dnode"

if [ $with_monitor -eq 1 ]; then
    "${P[@]}" stop -t 30 "$net-trellis-monitor-0" >/dev/null
    code=$("${P[@]}" inspect -f '{{.State.ExitCode}}' "$net-trellis-monitor-0")
    [ "$code" = 0 ] || fail "trellis-monitor exited with $code after SIGTERM"
fi
for r in trellis-route-0 trellis-route-1; do
    d0=$(date +%s)
    "${P[@]}" stop -t 60 "$net-$r" >/dev/null
    code=$("${P[@]}" inspect -f '{{.State.ExitCode}}' "$net-$r")
    [ "$code" = 0 ] || fail "$r exited with $code after SIGTERM"
    note "$r stopped with $code in $(( $(date +%s) - d0 )) s"
done

if [ $status -ne 0 ]; then
    for c in "${containers[@]}"; do
        echo "== logs of $c"
        "${P[@]}" logs "$c" 2>&1 | tail -200
    done
    exit 1
fi
echo "ok: image $image; pods of deploy/k8s/overlays/small ran in podman ($(( $(date +%s) - t0 )) s)"
