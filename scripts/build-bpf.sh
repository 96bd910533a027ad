#!/usr/bin/env bash
# Builds bpf/xdp_o7s.o from bpf/xdp_o7s.c with clang-19 (Debian: clang-19 libbpf-dev).
#   scripts/build-bpf.sh          rebuild the committed object
#   scripts/build-bpf.sh --check  fail if the committed object is not what the source builds
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=bpf/xdp_o7s.o
[ "${1:-}" = "--check" ] && out=$(mktemp --suffix=.o)
# Paths are mapped so that the object does not depend on where the checkout is.
clang-19 -target bpf -O2 -g -Wall -Werror \
    -I/usr/include/x86_64-linux-gnu \
    -fdebug-prefix-map="$root"=. -fmacro-prefix-map="$root"=. \
    -c bpf/xdp_o7s.c -o "$out"
if [ "${1:-}" = "--check" ]; then
    if ! cmp -s "$out" bpf/xdp_o7s.o; then
        echo "build-bpf.sh: bpf/xdp_o7s.o is stale: run scripts/build-bpf.sh and commit it" >&2
        rm -f "$out"
        exit 1
    fi
    rm -f "$out"
    echo "build-bpf.sh: bpf/xdp_o7s.o is up to date"
fi
