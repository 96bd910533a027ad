#!/usr/bin/env bash
# Hosts in network namespaces.
#   scripts/netns.sh up NAME     two hosts: namespaces NAME-a and NAME-b, veth NAME-va (in
#                                NAME-a) <-> NAME-vb (in NAME-b), both up, lo up in both
#   scripts/netns.sh bridge NAME H1 H2 [H3 ...]
#                                hosts on one Ethernet: namespaces NAME-H1 ..., each with a
#                                device NAME-vH on a bridge in namespace NAME-br
#   scripts/netns.sh down NAME   removes every NAME-* namespace (whatever still runs inside
#                                is killed)
# NAME: at most 12 characters (interface names are limited to 15); hosts: one letter or digit.
set -euo pipefail
cmd=${1:-}; name=${2:-}
if [ -z "$cmd" ] || [ -z "$name" ] || [ ${#name} -gt 12 ]; then
    echo "usage: $0 up|bridge|down NAME [HOSTS...] (NAME at most 12 characters)" >&2
    exit 2
fi
shift 2
case "$cmd" in
up)
    ip netns add "$name-a"
    ip netns add "$name-b"
    ip link add "$name-va" netns "$name-a" type veth peer name "$name-vb" netns "$name-b"
    for s in a b; do
        ip -n "$name-$s" link set lo up
        ip -n "$name-$s" link set "$name-v$s" up
    done
    ;;
bridge)
    if [ $# -lt 2 ]; then
        echo "usage: $0 bridge NAME H1 H2 [H3 ...]" >&2
        exit 2
    fi
    ip netns add "$name-br"
    ip -n "$name-br" link add br0 type bridge
    ip -n "$name-br" link set br0 up
    for s in "$@"; do
        if [ ${#s} != 1 ]; then
            echo "$0: host names are one character ($s)" >&2
            exit 2
        fi
        ip netns add "$name-$s"
        ip -n "$name-$s" link set lo up
        ip link add "$name-v$s" netns "$name-$s" type veth peer name "$name-p$s" netns "$name-br"
        ip -n "$name-br" link set "$name-p$s" master br0
        ip -n "$name-br" link set "$name-p$s" up
        ip -n "$name-$s" link set "$name-v$s" up
    done
    ;;
down)
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$name-[a-z0-9]+$" || true); do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    ;;
*)
    echo "usage: $0 up|bridge|down NAME [HOSTS...]" >&2
    exit 2
    ;;
esac
