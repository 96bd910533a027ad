#!/usr/bin/env bash
# Hosts in network namespaces.
#   scripts/netns.sh up NAME     two hosts: namespaces NAME-a and NAME-b, veth NAME-va (in
#                                NAME-a) <-> NAME-vb (in NAME-b), both up, lo up in both
#   scripts/netns.sh bridge NAME H1 H2 [H3 ...]
#                                hosts on one Ethernet: namespaces NAME-H1 ..., each with a
#                                device NAME-vH on a bridge in namespace NAME-br
#   scripts/netns.sh down NAME   removes every NAME-* namespace (whatever still runs inside
#                                is killed)
#   scripts/netns.sh unique PREFIX LEN
#                                prints a NAME of LEN characters, PREFIX then random
#                                lowercase letters, that no namespace of this host starts
#                                with (the tests' names are a prefix and digits: never the
#                                same; two runs of a script: different names, so one's
#                                clean-up never removes the other's namespaces)
#   scripts/netns.sh pids NS COMM
#                                prints the pids of the processes named COMM (their
#                                /proc/PID/comm) in namespace NS, one a line
#   scripts/netns.sh signal NS SIG COMM
#                                sends SIG to those (never to a process of that name
#                                elsewhere on the host, another run's or a user's); exit
#                                status 1 when there was none
# NAME: at most 12 characters (interface names are limited to 15); hosts: one letter or digit.
set -euo pipefail
cmd=${1:-}; name=${2:-}
if [ "$cmd" = pids ] || [ "$cmd" = signal ]; then
    if [ "$cmd" = pids ]; then sig=""; comm=${3:-}; else sig=${3:-}; comm=${4:-}; fi
    if [ -z "$name" ] || [ -z "$comm" ] || { [ "$cmd" = signal ] && [ -z "$sig" ]; }; then
        echo "usage: $0 pids NS COMM | signal NS SIG COMM" >&2
        exit 2
    fi
    found=1
    for p in $(ip netns pids "$name" 2>/dev/null); do
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$comm" ] || continue
        found=0
        if [ -z "$sig" ]; then echo "$p"; else kill -s "$sig" "$p" 2>/dev/null || true; fi
    done
    exit "$found"
fi
if [ "$cmd" = unique ]; then
    len=${3:-}
    if [ -z "$name" ] || ! [[ "$len" =~ ^[0-9]+$ ]] || [ "$len" -gt 12 ] || [ "$len" -lt $((${#name} + 4)) ]; then
        echo "usage: $0 unique PREFIX LEN (LEN at most 12, at least PREFIX + 4)" >&2
        exit 2
    fi
    for _ in 1 2 3 4 5 6 7 8; do
        tail=$(LC_ALL=C tr -dc 'a-z' </dev/urandom | head -c $((len - ${#name})) || true)
        cand=$name$tail
        taken=$(ip netns list 2>/dev/null | awk -v c="$cand" 'index($1, c) == 1 {n++} END {print n + 0}')
        if [ "$taken" = 0 ]; then
            echo "$cand"
            exit 0
        fi
    done
    echo "$0: no free name with prefix $name" >&2
    exit 1
fi
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
