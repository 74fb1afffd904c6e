#!/usr/bin/env bash
# Installs every Debian package trellis needs to build, test and run, and
# fetches the source of Debian's nng, which the build compiles with the
# project's patch (deploy/nng/, docs/operations.md "Where nng comes from").
# Idempotent: prints nothing and changes nothing when everything is present.
# usage: deploy/install-deps.sh [--runtime-only]
#
# nng's source: a deb-src entry for bookworm (the archive this machine already
# uses) in /etc/apt/sources.list.d/trellis-src.sources, then `apt-get source
# nng` into TRELLIS_DEPS_SRC (default /usr/local/src/trellis), which leaves the
# unpacked tree, Debian's own patches applied, in TRELLIS_DEPS_SRC/nng.
set -euo pipefail

build_pkgs=(
    build-essential cmake pkg-config git ca-certificates dpkg-dev patch
    libmbedtls-dev libprotobuf-c-dev protobuf-c-compiler librocksdb-dev
    libxxhash-dev libyaml-dev libedit-dev libcriterion-dev libssl-dev
    clang-14 libclang-rt-14-dev
)
# libmbedtls14, libmbedx509-1 and libmbedcrypto7 are what the built-in nng
# links for TLS on the control plane; libssl3 is TLS on the data plane.
runtime_pkgs=(
    libmbedtls14 libmbedx509-1 libmbedcrypto7 libssl3
    libprotobuf-c1 librocksdb7.8 libxxhash0 libyaml-0-2 libedit2
    procps iproute2 nftables python3 python3-redis redis-server redis-tools
    gnuplot-nox faketime curl python3-yaml
)

nng_src_root=${TRELLIS_DEPS_SRC:-/usr/local/src/trellis}
nng_src=$nng_src_root/nng
src_list=/etc/apt/sources.list.d/trellis-src.sources

want=("${runtime_pkgs[@]}")
fetch_nng=0
if [ "${1:-}" != "--runtime-only" ]; then
    want+=("${build_pkgs[@]}")
    [ -f "$nng_src/CMakeLists.txt" ] || fetch_nng=1
fi

missing=()
for p in "${want[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && [ $fetch_nng -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive

# Prints a deb-src entry for every bookworm entry of this machine's apt
# sources (deb822 stanzas or one-line entries), or for deb.debian.org when
# there is none.
deb_src_entries() {
    local f part out=""
    for f in /etc/apt/sources.list.d/*.sources; do
        if [ ! -f "$f" ] || [ "$f" = "$src_list" ]; then
            continue
        fi
        part=$(awk -v RS= -v ORS='\n\n' '
            /(^|\n)Types:[^\n]*deb/ && /(^|\n)Suites:[^\n]*bookworm/ {
                sub(/(^|\n)Types:[^\n]*/, "\nTypes: deb-src"); sub(/^\n/, ""); print
            }' "$f")
        if [ -n "$part" ]; then
            out+="$part"$'\n\n'
        fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        if [ -f "$f" ]; then
            part=$(sed -n 's/^deb[[:space:]]\(.*[[:space:]]bookworm.*\)/deb-src \1/p' "$f")
            if [ -n "$part" ]; then
                out+="$part"$'\n'
            fi
        fi
    done
    if [ -z "$out" ]; then
        out='Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg'
    fi
    printf '%s\n' "$out"
}

if [ $fetch_nng -eq 1 ] && [ ! -f "$src_list" ]; then
    echo "install-deps: adding Debian's source archive ($src_list) for nng's source" >&2
    deb_src_entries | $sudo tee "$src_list" >/dev/null
fi
[ ${#missing[@]} -eq 0 ] || echo "install-deps: installing ${missing[*]}" >&2
$sudo apt-get update -q >/dev/null
[ ${#missing[@]} -eq 0 ] || $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
# redis-server's package starts a system instance; trellis only runs its own.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now redis-server >/dev/null 2>&1 || true
fi

# nng's source package, unpacked by dpkg-source with Debian's patches; the
# build applies the project's patches to a copy (cmake/nng.cmake).
if [ $fetch_nng -eq 1 ]; then
    echo "install-deps: fetching Debian's nng source into $nng_src" >&2
    tmp=$(mktemp -d)
    if ! (cd "$tmp" && apt-get source -q --only-source nng >apt-get-source.log 2>&1); then
        cat "$tmp/apt-get-source.log" >&2
        rm -rf "$tmp"
        echo "install-deps: apt-get source nng failed (is Debian's source archive reachable?)" >&2
        exit 1
    fi
    tree=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d -name 'nng-*' | head -n 1)
    if [ -z "$tree" ] || [ ! -f "$tree/CMakeLists.txt" ]; then
        cat "$tmp/apt-get-source.log" >&2
        rm -rf "$tmp"
        echo "install-deps: apt-get source nng left no source tree in $tmp" >&2
        exit 1
    fi
    $sudo mkdir -p "$nng_src_root"
    $sudo rm -rf "$nng_src"
    $sudo cp -R "$tree" "$nng_src"
    rm -rf "$tmp"
fi
