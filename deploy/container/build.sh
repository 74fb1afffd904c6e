#!/usr/bin/env bash
# Builds the trellis container image with podman, without a registry.
#
# usage: deploy/container/build.sh [--tag IMAGE] [--rev REV] [--base-only] [--quiet]
#
#   --tag IMAGE   image name (default: trellis:VERSION, VERSION from CMakeLists.txt)
#   --rev REV     build the committed tree REV (git archive) instead of the working tree
#   --base-only   only make sure the Debian base image exists, then print its name
#   --quiet       print only the image name at the end
#
# The base image is a Debian bookworm root made by debootstrap from Debian's
# archive and loaded with `podman import` (localhost/trellis-base:bookworm); its
# root file system is cached as a tarball under TRELLIS_IMAGE_CACHE (default
# ~/.cache/trellis-images) and reused, so debootstrap runs once per machine.
# The image itself is built from deploy/container/Dockerfile: the build stage
# installs the build dependencies with deploy/install-deps.sh, builds, and runs
# the unit tests; the runtime stage holds the runtime libraries and binaries.
# The log of the last build is kept in TRELLIS_IMAGE_CACHE/last-build.log.
#
# Environment:
#   TRELLIS_IMAGE_CACHE    cache directory for the base root file system
#   TRELLIS_DEBIAN_MIRROR  Debian mirror (default: this machine's, else deb.debian.org)
#   TRELLIS_OCI_RUNTIME    OCI runtime for podman (default: runc when installed)
#   CONTAINERS_CONF        podman configuration; when unset, a temporary one that
#                          drops podman's default ulimits is used (some sandboxes
#                          forbid setting rlimits)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
base_image=localhost/trellis-base:bookworm
cache=${TRELLIS_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/trellis-images}
version=$(sed -n 's/^project(trellis VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
tag="trellis:${version:-latest}"
rev=""
base_only=0
quiet=0

die() { echo "build.sh: $*" >&2; exit 1; }
say() { [ "$quiet" -eq 1 ] || echo "build.sh: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --tag) tag=${2:?--tag needs an image name}; shift 2 ;;
        --rev) rev=${2:?--rev needs a git revision}; shift 2 ;;
        --base-only) base_only=1; shift ;;
        --quiet) quiet=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done

command -v podman >/dev/null 2>&1 || die "podman is not installed (Debian: apt-get install podman runc)"

mkdir -p "$cache"
tmp=$(mktemp -d)
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT

if [ -z "${CONTAINERS_CONF:-}" ]; then
    printf '[containers]\ndefault_ulimits = []\n' >"$tmp/containers.conf"
    export CONTAINERS_CONF="$tmp/containers.conf"
fi
runtime=${TRELLIS_OCI_RUNTIME:-}
if [ -z "$runtime" ] && command -v runc >/dev/null 2>&1; then
    runtime=runc
fi
podman_cmd=(podman)
[ -n "$runtime" ] && podman_cmd+=(--runtime "$runtime")

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo

# ---- the Debian base image ---------------------------------------------------------
mirror=${TRELLIS_DEBIAN_MIRROR:-}
if [ -z "$mirror" ] && [ -r /etc/apt/sources.list.d/debian.sources ]; then
    mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
mirror=${mirror:-http://deb.debian.org/debian}

make_base_tarball() { # out
    local out=$1 rootfs="$tmp/rootfs"
    command -v debootstrap >/dev/null 2>&1 ||
        die "debootstrap is not installed (Debian: apt-get install debootstrap)"
    say "debootstrap bookworm from $mirror (once per machine; a few minutes)"
    mkdir -p "$rootfs"
    $sudo debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1 ||
        { tail -20 "$tmp/debootstrap.log" >&2; die "debootstrap failed"; }
    # The same sources as Debian's official images: the release, its updates
    # and the security archive.
    $sudo rm -f "$rootfs/etc/apt/sources.list"
    $sudo tee "$rootfs/etc/apt/sources.list.d/debian.sources" >/dev/null <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    # As in Debian's container images: no recommends, no package caches.
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' |
        $sudo tee "$rootfs/etc/apt/apt.conf.d/90trellis-container" >/dev/null
    $sudo rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
    mkdir -p "$(dirname "$out")"
    $sudo tar -C "$rootfs" --numeric-owner -cf "$out.part" .
    mv "$out.part" "$out"
    $sudo rm -rf "$rootfs"
}

if ! "${podman_cmd[@]}" image exists "$base_image"; then
    tarball="$cache/debian-bookworm-minbase.tar"
    [ -s "$tarball" ] || make_base_tarball "$tarball"
    say "importing $tarball as $base_image"
    "${podman_cmd[@]}" import --quiet \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' \
        "$tarball" "$base_image" >/dev/null || die "podman import failed"
fi
if [ "$base_only" -eq 1 ]; then
    echo "$base_image"
    exit 0
fi

# ---- the build context: only source files ------------------------------------------
ctx="$tmp/context"
mkdir -p "$ctx"
if [ -n "$rev" ]; then
    say "context: git archive $rev"
    git -C "$root" archive --format=tar "$rev" | tar -C "$ctx" -xf -
else
    # Tracked and new files, without what .gitignore excludes (build trees).
    say "context: working tree of $root"
    (cd "$root" && git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do if [ -e "$f" ]; then printf '%s\0' "$f"; fi; done |
        tar --null -T - -cf -) | tar -C "$ctx" -xf -
fi
[ -f "$ctx/deploy/container/Dockerfile" ] || die "no deploy/container/Dockerfile in the context"

say "building $tag (build stage compiles and runs the unit tests; several minutes)"
build_log="$tmp/build.log"
start=$(date +%s)
if ! "${podman_cmd[@]}" build --pull=never \
        --build-arg "BASE_IMAGE=$base_image" --build-arg "RUNTIME_IMAGE=$base_image" \
        --build-arg "TRELLIS_VERSION=${version:-0}" \
        -f "$ctx/deploy/container/Dockerfile" -t "$tag" "$ctx" >"$build_log" 2>&1; then
    cp "$build_log" "$cache/last-build.log" 2>/dev/null || true
    tail -40 "$build_log" >&2
    die "podman build failed (whole log: $cache/last-build.log)"
fi
cp "$build_log" "$cache/last-build.log" 2>/dev/null || true
say "built $tag in $(( $(date +%s) - start )) s"
echo "$tag"
