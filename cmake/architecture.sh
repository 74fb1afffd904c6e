#!/usr/bin/env bash
# cmake/architecture.sh - the dependency drawing of docs/architecture.md and
# the rule it shows: every link runs down the layers.
#
#   cmake/architecture.sh           checks the rule, then redraws
#                                   docs/figures/architecture.{dot,svg,png}
#                                   (needs graphviz's dot)
#   cmake/architecture.sh --check   checks the rule only (tests/layout)
#
# The links are CMake's own (cmake --graphviz of a configuration without
# tests), so the drawing is what the build does, not what a document says.
# Every project target has a layer below; a link must go to a lower layer,
# and a target missing from the table fails the check, so a new target is
# placed in a layer on purpose.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
check_only=0
[[ ${1:-} == --check ]] && check_only=1

# Layer of each target: links go from a higher number to a lower one.
declare -A layer=(
    [trellis_status]=0 [trellis_proto]=0
    [trellis_base]=1 [trellis_lattices]=1 [trellis_placement]=1
    [trellis_client]=2 [trellis_config]=2 [trellis_resp]=2
    [trellis]=3 [trellis_server]=3
    [trellis_gateway]=4 [trellis_kvs]=4 [trellis_monitor]=4
    [trellis_route]=5
    [trellis-cli]=6 [trellis-bench]=6 [trellis-lattice-bench]=6
    [trellis-kvs]=6 [trellis-route]=6 [trellis-monitor]=6
)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/build"
cat >"$tmp/build/CMakeGraphVizOptions.cmake" <<'OPTS'
set(GRAPHVIZ_GRAPH_NAME "trellis")
set(GRAPHVIZ_EXTERNAL_LIBS FALSE)
set(GRAPHVIZ_GENERATE_PER_TARGET FALSE)
set(GRAPHVIZ_GENERATE_DEPENDERS FALSE)
OPTS
cmake -S "$root" -B "$tmp/build" -DTRELLIS_TESTS=OFF --graphviz="$tmp/cmake.dot" \
    >"$tmp/configure.log" 2>&1 || { cat "$tmp/configure.log" >&2; exit 1; }

# CMake writes: "nodeN" [ label = "target", ... ];  and
#               "nodeA" -> "nodeB" ...  // from -> to
status=0
while read -r from to; do
    lf=${layer[$from]:-} lt=${layer[$to]:-}
    for t in "$from" "$to"; do
        [[ -n ${layer[$t]:-} ]] || { echo "architecture: $t has no layer (cmake/architecture.sh)" >&2; status=1; }
    done
    if [[ -n $lf && -n $lt ]] && ((lf <= lt)); then
        echo "architecture: $from (layer $lf) links $to (layer $lt): links run down the layers" >&2
        status=1
    fi
done < <(sed -n 's|.*// \([^ ]*\) -> \([^ ]*\)$|\1 \2|p' "$tmp/cmake.dot")
[[ $status -eq 0 ]] || exit 1
echo "architecture: every link runs down the layers"
[[ $check_only -eq 1 ]] && exit 0

# The drawing: the legend dropped, one row per layer, top layer first.
command -v dot >/dev/null || { echo "architecture: graphviz's dot is missing" >&2; exit 1; }
out=$root/docs/figures/architecture
awk -v ranks="$(for t in "${!layer[@]}"; do echo "$t=${layer[$t]}"; done)" '
    BEGIN { n = split(ranks, r, "\n"); for (i = 1; i <= n; i++) { split(r[i], kv, "="); rank[kv[1]] = kv[2] } }
    /^subgraph clusterLegend/ { skip = 1 }
    skip { if ($0 ~ /^}/) skip = 0; next }
    /label = "/ { match($0, /label = "[^"]*"/); t = substr($0, RSTART + 9, RLENGTH - 10)
                  split($0, q, "\""); node[t] = q[2] }
    /^}/ { for (t in node) row[rank[t]] = row[rank[t]] " \"" node[t] "\";"
           for (k = 6; k >= 0; k--) if (row[k] != "") print "    { rank = same;" row[k] " }"
           print; next }
    { print }
    /^node \[/ { hdr = 1 }
' "$tmp/cmake.dot" | sed 's/^digraph "trellis" {$/digraph "trellis" {\n  rankdir = TB;/' >"$out.dot"
dot -Tsvg "$out.dot" -o "$out.svg"
dot -Tpng -Gdpi=80 "$out.dot" -o "$out.png"
echo "architecture: wrote ${out#"$root"/}.{dot,svg,png}"
