#!/usr/bin/env bash
# tests/resp/test_cluster_tx.sh - transactions on the shards' Redis Cluster
# ports (kvs/dp_resp.c, docs/redis.md "Transactions"), on a cluster from
# deploy/cluster.sh (1 router, 2 memory nodes of 2 shards each and a disk
# node, so that a transaction's keys may first come from the disk tier):
# python3-redis's default pipeline() and transaction(), WATCH, CROSSSLOT and
# MOVED inside MULTI, concurrent transactions that must not interleave, and
# RedisCluster's pipeline (test_cluster_tx.py).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/resp/lib.sh
source "$here/lib.sh"

py=/usr/bin/python3
[ -x "$py" ] || py=python3
"$py" -c 'import redis.cluster' 2>/dev/null ||
    ts_skip "python3-redis (with redis.cluster) is not installed (deploy/install-deps.sh installs it)"

rt_up --memory 2 --disk 1 --threads 2
[ -n "$RT_CLUSTER" ] || die "cluster.sh up printed no 'cluster HOST:PORT' line: $TS_CS_OUT"
# A shard learns the ring from its node's next heartbeat: wait (bounded)
# until the one clients start from covers every slot.
for _ in $(seq 1 100); do
    [[ $(timeout 5 redis-cli -p "$RT_CLUSTER" CLUSTER INFO 2>&1) == *cluster_state:ok* ]] && break
    sleep 0.1
done
step "python3-redis $("$py" -c 'import redis; print(redis.__version__)') on shard port $RT_CLUSTER"
timeout 180 "$py" "$here/test_cluster_tx.py" "$RT_CLUSTER" || fail "test_cluster_tx.py"
