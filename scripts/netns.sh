#!/usr/bin/env bash
# Two hosts in network namespaces joined by a veth pair.
#   scripts/netns.sh up NAME     creates namespaces NAME-a and NAME-b, veth NAME-va (in
#                                NAME-a) <-> NAME-vb (in NAME-b), both up, lo up in both
#   scripts/netns.sh down NAME   removes them (and whatever still runs inside is killed)
# NAME: at most 12 characters (interface names are limited to 15).
set -euo pipefail
cmd=${1:-}; name=${2:-}
if [ -z "$cmd" ] || [ -z "$name" ] || [ ${#name} -gt 12 ]; then
    echo "usage: $0 up|down NAME (NAME at most 12 characters)" >&2
    exit 2
fi
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
down)
    for s in a b; do
        if ip netns pids "$name-$s" >/dev/null 2>&1; then
            for p in $(ip netns pids "$name-$s" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        fi
        ip netns del "$name-$s" 2>/dev/null || true
    done
    ;;
*)
    echo "usage: $0 up|down NAME" >&2
    exit 2
    ;;
esac
