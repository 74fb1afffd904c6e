#!/usr/bin/env bash
# tests/resp/test_redis_py.sh - a program using Debian's Redis client
# library (python3-redis) against the gateway of a deploy/cluster.sh
# cluster: strings, sets, counters, pipelines (test_redis_py.py).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/resp/lib.sh
source "$here/lib.sh"

# Debian's interpreter, where python3-redis is installed (a python3 earlier
# in PATH, such as pyenv's, may lack it).
py=/usr/bin/python3
[ -x "$py" ] || py=python3
"$py" -c 'import redis' 2>/dev/null ||
    ts_skip "python3-redis is not installed (deploy/install-deps.sh installs it)"

rt_up --memory 2 --disk 1
step "python3-redis $("$py" -c 'import redis; print(redis.__version__)')"
timeout 120 "$py" "$here/test_redis_py.py" "$RT_PORT" || fail "test_redis_py.py"
