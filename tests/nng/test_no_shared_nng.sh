#!/usr/bin/env bash
# test_no_shared_nng.sh BUILD_DIR - no program or library of the build loads
# a shared libnng: nng is built from Debian's source with the project's patch
# and linked in (cmake/nng.cmake), and Debian's libnng1 lacks that patch.
set -uo pipefail
build=${1:?usage: test_no_shared_nng.sh BUILD_DIR}
n=0
bad=0
for f in "$build"/bin/* "$build"/lib/*.so*; do
    [[ -f $f && ! -L $f ]] || continue
    [[ $(head -c 4 "$f" | tail -c 3) == ELF ]] || continue
    n=$((n + 1))
    libs=$(ldd "$f" 2>/dev/null)
    if [[ $libs == *libnng* ]]; then
        echo "FAIL: $f loads a shared libnng: $libs" >&2
        bad=1
    fi
done
[[ $n -gt 0 ]] || { echo "FAIL: no ELF files in $build/bin and $build/lib" >&2; exit 1; }
[[ $bad -eq 0 ]] || exit 1
echo "no_shared_nng: none of $n programs and libraries loads a shared libnng"
