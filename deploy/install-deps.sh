#!/usr/bin/env bash
# Installs every Debian package trellis needs to build, test and run.
# Idempotent: prints nothing and changes nothing when everything is present.
# usage: deploy/install-deps.sh [--runtime-only]
set -euo pipefail

build_pkgs=(
    build-essential cmake pkg-config git ca-certificates
    libnng-dev libprotobuf-c-dev protobuf-c-compiler librocksdb-dev
    libxxhash-dev libyaml-dev libedit-dev libcriterion-dev
    clang-14 libclang-rt-14-dev
)
runtime_pkgs=(
    libnng1 libprotobuf-c1 librocksdb7.8 libxxhash0 libyaml-0-2 libedit2
    procps iproute2 nftables python3 python3-redis redis-server redis-tools
    gnuplot-nox faketime curl python3-yaml
)

want=("${runtime_pkgs[@]}")
[ "${1:-}" = "--runtime-only" ] || want+=("${build_pkgs[@]}")

missing=()
for p in "${want[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >/dev/null
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
# redis-server's package starts a system instance; trellis only runs its own.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now redis-server >/dev/null 2>&1 || true
fi
