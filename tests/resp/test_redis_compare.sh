#!/usr/bin/env bash
# tests/resp/test_redis_compare.sh - the same redis-py session against a
# redis-server started here and against the gateway of a deploy/cluster.sh
# cluster; the gateway must give Redis's answers (test_redis_compare.py).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/resp/lib.sh
source "$here/lib.sh"

py=/usr/bin/python3
[ -x "$py" ] || py=python3
"$py" -c 'import redis' 2>/dev/null ||
    ts_skip "python3-redis is not installed (deploy/install-deps.sh installs it)"
ts_need redis-server

rt_up --memory 2 --disk 1
# Redis on a port of this test's own block (the cluster uses the block's
# first hundred), without persistence, gone with the test.
redis_port=$((TRELLIS_PORT_BASE + 900))
timeout 300 redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$TS_DIR" --logfile "$TS_DIR/redis.log" &
redis_pid=$!
stop_redis() {
    kill "$redis_pid" 2>/dev/null
    wait "$redis_pid" 2>/dev/null
}
ts_at_exit stop_redis
for _ in $(seq 50); do
    redis-cli -p "$redis_port" PING >/dev/null 2>&1 && break
    sleep 0.1
done
redis-cli -p "$redis_port" PING >/dev/null 2>&1 || die "redis-server did not start"
step "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), python3-redis $("$py" -c 'import redis; print(redis.__version__)')"
timeout 120 "$py" "$here/test_redis_compare.py" "$redis_port" "$RT_PORT" || fail "test_redis_compare.py"
