#!/usr/bin/env bash
# Backs up and restores a disk-tier storage node; installed in the image as
# trellis-backup and run as `trellis backup` / `trellis restore`.
#
# trellis backup [--data-dir DIR] [--id ID] [--out FILE]
#     Takes a RocksDB checkpoint of every shard of the running node ID (default:
#     the host name, which is the node id in the StatefulSet) through a
#     secondary instance, while the node keeps serving, and writes them as a
#     tar stream (ID/NODE, ID/shard-N/...) to FILE or standard output. The
#     checkpoint holds every write the node had acknowledged. It is made on the
#     data volume (hard links, so it costs little space) and removed afterwards.
#
# trellis restore [--config FILE]... [--set KEY=VALUE]... [--data-dir DIR]
#                 [--id RESTORE_ID] [--advertise HOST] [--port-base PORT]
#                 [--metrics-port PORT] [--settle SECONDS] [--timeout SECONDS] [FILE|-]
#     Merges a backup (a tar stream from FILE or standard input) back into the
#     running cluster: starts a temporary disk node RESTORE_ID on it (default:
#     restore-ID-TIME) with the given configuration, waits until the node is
#     ACTIVE in the ring and for --settle seconds (default 10), then makes it
#     depart, which hands every key it holds to the key's owners. Lattice
#     merges make this safe at any time: nothing newer is overwritten, and what
#     the backup holds that the cluster lost comes back. The temporary node
#     uses ports PORT.. (default 6600) and the metrics port (default 6690) of
#     the container it runs in, and advertises HOST (default: this pod's
#     fully qualified name, from hostname -f).
#
# Defaults fit the Kubernetes manifests (deploy/k8s): data in /var/lib/trellis/data.
set -euo pipefail

data_dir=/var/lib/trellis/data
id=${HOSTNAME:-$(hostname)}
prog=trellis-backup

die() { echo "$prog: $*" >&2; exit 1; }
say() { echo "$prog: $*" >&2; }

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

backup() {
    local out=- work
    while [ $# -gt 0 ]; do
        case "$1" in
            --data-dir) data_dir=${2:?--data-dir needs a directory}; shift 2 ;;
            --data-dir=*) data_dir=${1#*=}; shift ;;
            --id) id=${2:?--id needs a node id}; shift 2 ;;
            --id=*) id=${1#*=}; shift ;;
            --out) out=${2:?--out needs a file}; shift 2 ;;
            --out=*) out=${1#*=}; shift ;;
            -h|--help) usage; exit 0 ;;
            *) die "backup: unknown argument '$1'" ;;
        esac
    done
    local src="$data_dir/$id"
    [ -f "$src/NODE" ] || die "no disk node data in $src (see --data-dir, --id)"
    command -v ldb >/dev/null || die "ldb (Debian: rocksdb-tools) is not installed"
    work=$(mktemp -d "$data_dir/.backup-XXXXXX")
    # shellcheck disable=SC2064 # expand now: the trap must remove this directory
    trap "rm -rf '$work'" EXIT
    mkdir -p "$work/$id" "$work/.secondary"
    cp "$src/NODE" "$work/$id/NODE"
    local shards=0 s n
    for s in "$src"/shard-*; do
        [ -d "$s" ] || continue
        n=${s##*/}
        ldb --db="$s" --secondary_path="$work/.secondary/$n" checkpoint \
            --checkpoint_dir="$work/$id/$n" >/dev/null 2>"$work/err" ||
            die "checkpoint of $s failed: $(cat "$work/err")"
        shards=$((shards + 1))
    done
    [ $shards -gt 0 ] || die "no shard directories in $src"
    rm -rf "$work/.secondary" "$work/err"
    if [ "$out" = - ]; then
        tar -C "$work" -cf - "$id"
    else
        tar -C "$work" -cf "$out" "$id"
    fi
    say "backup of $id: $shards shards"
}

http_status() { # port path: the status code of GET http://127.0.0.1:PORT/PATH, or nothing
    local line
    { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 0
    printf 'GET %s HTTP/1.0\r\n\r\n' "$2" >&3
    IFS= read -r line <&3 || line=""
    exec 3<&-
    line=${line#* }
    echo "${line%% *}"
}

restore() {
    local configs=() extra=() rid="" advertise="" port_base=6600 mport=6690 settle=10 timeout=180 in=-
    while [ $# -gt 0 ]; do
        case "$1" in
            --config) configs+=("--config=${2:?--config needs a file}"); shift 2 ;;
            --config=*) configs+=("$1"); shift ;;
            --data-dir) data_dir=${2:?--data-dir needs a directory}; shift 2 ;;
            --data-dir=*) data_dir=${1#*=}; shift ;;
            --id) rid=${2:?--id needs a node id}; shift 2 ;;
            --id=*) rid=${1#*=}; shift ;;
            --advertise) advertise=${2:?--advertise needs a host}; shift 2 ;;
            --advertise=*) advertise=${1#*=}; shift ;;
            --port-base) port_base=${2:?}; shift 2 ;;
            --port-base=*) port_base=${1#*=}; shift ;;
            --metrics-port) mport=${2:?}; shift 2 ;;
            --metrics-port=*) mport=${1#*=}; shift ;;
            --settle) settle=${2:?}; shift 2 ;;
            --settle=*) settle=${1#*=}; shift ;;
            --timeout) timeout=${2:?}; shift 2 ;;
            --timeout=*) timeout=${1#*=}; shift ;;
            --set) extra+=(--set "${2:?--set needs KEY=VALUE}"); shift 2 ;;
            --*.*=*) extra+=("$1"); shift ;;
            -h|--help) usage; exit 0 ;;
            -) in=-; shift ;;
            -*) die "restore: unknown argument '$1'" ;;
            *) in=$1; shift ;;
        esac
    done
    [ -n "$advertise" ] || advertise=$(hostname -f 2>/dev/null || true)
    [ -n "$advertise" ] || advertise=${HOSTNAME:-$(hostname)}
    mkdir -p "$data_dir"
    local unpack
    unpack=$(mktemp -d "$data_dir/.restore-XXXXXX")
    # shellcheck disable=SC2064 # expand now: the trap must remove this directory
    trap "rm -rf '$unpack'" EXIT
    if [ "$in" = - ]; then
        tar -C "$unpack" -xf - || die "restore: standard input is not a backup (tar)"
    else
        tar -C "$unpack" -xf "$in" || die "restore: $in is not a backup (tar)"
    fi
    local nodes=("$unpack"/*/NODE)
    if [ ${#nodes[@]} -ne 1 ] || [ ! -f "${nodes[0]}" ]; then
        die "restore: the backup holds no single node (ID/NODE)"
    fi
    local src_dir=${nodes[0]%/NODE} threads
    local src_id=${src_dir##*/}
    threads=$(sed -n 's/^shards=\([0-9][0-9]*\).*/\1/p' "${nodes[0]}")
    [ -n "$threads" ] || die "restore: ${nodes[0]} is unreadable"
    [ -n "$rid" ] || rid="restore-$src_id-$(date +%s)"
    [ ! -e "$data_dir/$rid" ] || die "restore: $data_dir/$rid exists already"
    mv "$src_dir" "$data_dir/$rid"
    say "restoring $src_id as temporary node $rid ($threads shards, $advertise:$port_base)"

    trellis-kvs "${configs[@]}" --tier=disk --id="$rid" --data-dir="$data_dir" --threads="$threads" \
        --listen=0.0.0.0 --advertise="$advertise" --port-base="$port_base" --admin-port=0 \
        --metrics-port="$mport" --monitor= "${extra[@]}" &
    local pid=$! deadline=$((SECONDS + timeout)) status=""
    # shellcheck disable=SC2064 # expand now: stop this node (it departs) on interruption
    trap "kill -TERM $pid 2>/dev/null; wait $pid; rm -rf '$unpack'" EXIT
    until [ "$status" = 200 ]; do
        kill -0 "$pid" 2>/dev/null || die "restore: the temporary node exited (see above)"
        [ $SECONDS -lt $deadline ] || die "restore: $rid not ACTIVE after $timeout s"
        sleep 1
        status=$(http_status "$mport" /healthz)
    done
    say "$rid is ACTIVE; letting it settle for $settle s"
    sleep "$settle"
    say "$rid departs: handing its keys to their owners"
    kill -TERM "$pid"
    local rc=0
    wait "$pid" || rc=$?
    # shellcheck disable=SC2064 # expand now, as above
    trap "rm -rf '$unpack'" EXIT
    [ $rc -eq 0 ] || die "restore: $rid exited with $rc; its data stays in $data_dir/$rid"
    rm -rf "${data_dir:?}/$rid"
    say "restore of $src_id complete"
}

case "${1:-}" in
    backup) shift; backup "$@" ;;
    restore) shift; restore "$@" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
esac
