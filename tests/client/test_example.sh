#!/usr/bin/env bash
# test_example.sh BUILD_DIR - the example program of docs/client.md: taken
# from the first ```c block of the page, built against the client
# component installed into a temporary prefix (shared library through
# pkg-config, and the static library), and run against a cluster.
set -uo pipefail

build=${1:?usage: test_example.sh BUILD_DIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=${TRELLIS_SRC:-$(cd "$here/../.." && pwd)}
# shellcheck source=tests/support/lib.sh
source "$here/../support/lib.sh"
ts_need cc c++ pkg-config nm ldd

# The example: the first fenced C block of the page.
awk '/^```c$/ && !done { inside = 1; next } inside && /^```$/ { inside = 0; done = 1 } inside' \
    "$src/docs/client.md" >"$TS_DIR/example.c"
[[ -s $TS_DIR/example.c ]] || die "no \`\`\`c block in docs/client.md"
grep -q 'int main' "$TS_DIR/example.c" || die "the example has no main()"

prefix=$TS_DIR/prefix
cmake --install "$build" --component client --prefix "$prefix" >"$TS_DIR/install.log" 2>&1 ||
    die "install: $(cat "$TS_DIR/install.log")"
pc=$(find "$prefix" -name trellis.pc | head -n 1)
[[ -n $pc ]] || die "no trellis.pc installed"
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$pc")
libdir=$(pkg-config --variable=libdir trellis)
[[ -f $prefix/include/trellis/trellis.h && -f $prefix/include/trellis/trellis_status.h ]] ||
    die "headers not installed"
# The client library needs no YAML (it reads no configuration file), and
# the static library makes only the trellis_ functions global.
pkg-config --static --libs trellis | grep -q -- -lyaml && die "trellis.pc asks for -lyaml"
stray=$(nm -g --defined-only "$libdir/libtrellis.a" | awk 'NF == 3 && $3 !~ /^trellis_[a-z]/ { print $3 }')
[[ -z $stray ]] || die "libtrellis.a exports symbols without the trellis_ prefix: $stray"
nm -g --defined-only "$libdir/libtrellis.a" | grep -q ' T trellis_connect$' ||
    die "libtrellis.a does not export trellis_connect"
[[ -x $prefix/bin/trellis-cli ]] || die "trellis-cli not installed"

# Strict flags: the public header must compile cleanly in users' builds.
flags=(-std=c11 -Wall -Wextra -Wpedantic -Werror)
# A sanitized build's static library needs the sanitizers' runtimes.
# shellcheck disable=SC2206
[[ -n ${TRELLIS_SANITIZE_FLAGS:-} ]] && flags+=($TRELLIS_SANITIZE_FLAGS)
# shellcheck disable=SC2046
# No -rpath here: trellis.pc's flags carry it, so the program runs without
# LD_LIBRARY_PATH (checked by ldd below and by running it).
cc "${flags[@]}" "$TS_DIR/example.c" $(pkg-config --cflags --libs trellis) \
    -o "$TS_DIR/example" 2>"$TS_DIR/cc.log" ||
    die "compile (shared): $(cat "$TS_DIR/cc.log")"
# The static library carries nng; what else it needs is the .pc file's
# Libs.private, which must not name nng.
private=$(sed -n 's/^Libs.private: //p' "$pc")
[[ $private != *-lnng* ]] || die "trellis.pc still asks for -lnng: $private"
# shellcheck disable=SC2046,SC2086
cc "${flags[@]}" "$TS_DIR/example.c" $(pkg-config --cflags trellis) "$libdir/libtrellis.a" \
    $private -o "$TS_DIR/example-static" \
    2>"$TS_DIR/cc-static.log" || die "compile (static): $(cat "$TS_DIR/cc-static.log")"
# ldd's output is taken whole first: `ldd | grep -q` fails under pipefail
# when grep stops reading early.
libs=$(env -u LD_LIBRARY_PATH ldd "$TS_DIR/example")
[[ $libs == *"$libdir/libtrellis.so"* ]] || die "not linked to the installed library: $libs"
for exe in "$TS_DIR/example" "$TS_DIR/example-static"; do
    libs=$(ldd "$exe")
    [[ $libs != *libnng* ]] || die "$(basename "$exe") loads a shared libnng: $libs"
done
# The C++ compilers of users see the same header.
printf '#include <trellis/trellis.h>\nint main() { return trellis_strerror(0) == nullptr; }\n' \
    >"$TS_DIR/cxx.cc"
c++ -std=c++11 -Wall -Wextra -Werror -I"$prefix/include" "$TS_DIR/cxx.cc" -c \
    -o "$TS_DIR/cxx.o" 2>"$TS_DIR/cxx.log" || die "C++ include: $(cat "$TS_DIR/cxx.log")"

ts_cluster 1 1
want='greeting = hello, trellis
no such key
visits = 1
tag blue
tag green
tag red
batch: 100 of 100 read back, item:99 = value 99'
out=$(env -u LD_LIBRARY_PATH "$TS_DIR/example" "$TS_URL" 2>&1) || die "example exited $?: $out"
[[ $out == "$want" ]] || die "example output: [$out]"
want=${want/visits = 1/visits = 2}
out=$("$TS_DIR/example-static" "$TS_URL" 2>&1) || die "static example exited $?: $out"
[[ $out == "$want" ]] || die "static example output: [$out]"
out=$("$TS_DIR/example" tcp://127.0.0.1:1 2>&1)
rc=$?
[[ $rc == 1 && $out == "cannot connect to tcp://127.0.0.1:1: no router answers at tcp://127.0.0.1:1" ]] ||
    die "example without a cluster: rc=$rc [$out]"
echo "client_example: built and ran the example of docs/client.md"
