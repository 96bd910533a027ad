#!/usr/bin/env bash
# Builds bpf/*.o from bpf/*.c with clang-19 (Debian: clang-19 libbpf-dev).
#   scripts/build-bpf.sh          rebuild the committed object
#   scripts/build-bpf.sh --check  fail if the committed object is not what the source builds
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# Every program of bpf/: the data plane's steering (xdp_o7s) and the forwarding benchmark's
# sink (xdp_count).
status=0
for prog in xdp_o7s xdp_count; do
    out=bpf/$prog.o
    [ "${1:-}" = "--check" ] && out=$(mktemp --suffix=.o)
    # Paths are mapped so that the object does not depend on where the checkout is.
    clang-19 -target bpf -O2 -g -Wall -Werror \
        -I/usr/include/x86_64-linux-gnu \
        -fdebug-prefix-map="$root"=. -fmacro-prefix-map="$root"=. \
        -c "bpf/$prog.c" -o "$out"
    if [ "${1:-}" = "--check" ]; then
        if ! cmp -s "$out" "bpf/$prog.o"; then
            echo "build-bpf.sh: bpf/$prog.o is stale: run scripts/build-bpf.sh and commit it" >&2
            status=1
        else
            echo "build-bpf.sh: bpf/$prog.o is up to date"
        fi
        rm -f "$out"
    fi
done
exit $status
