#!/usr/bin/env bash
# tests/resp/test_cluster_node.sh - transactions on the shards' Redis
# Cluster ports from Node.js: node-redis's and ioredis's cluster clients
# (test_cluster_node.js), installed with npm into the test's own directory.
# Skipped where node or npm is missing (deploy/install-deps.sh installs
# neither) or the npm registry cannot be reached.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/resp/lib.sh
source "$here/lib.sh"

ts_need node npm redis-cli
mkdir -p "$TS_DIR/npm"
(cd "$TS_DIR/npm" && HOME=$TS_DIR timeout 240 npm install --no-audit --no-fund --silent \
    redis@4.7.1 ioredis@5.9.3) >"$TS_DIR/npm.log" 2>&1 ||
    ts_skip "npm could not install redis@4.7.1 and ioredis@5.9.3: $(tail -n 3 "$TS_DIR/npm.log")"

rt_up --memory 2 --disk 0 --threads 2
[ -n "$RT_CLUSTER" ] || die "cluster.sh up printed no 'cluster HOST:PORT' line: $TS_CS_OUT"
for _ in $(seq 1 100); do
    [[ $(timeout 5 redis-cli -p "$RT_CLUSTER" CLUSTER INFO 2>&1) == *cluster_state:ok* ]] && break
    sleep 0.1
done
step "node $(node --version) on shard port $RT_CLUSTER"
NODE_PATH=$TS_DIR/npm/node_modules timeout 120 node "$here/test_cluster_node.js" "$RT_CLUSTER" ||
    fail "test_cluster_node.js"
