#!/usr/bin/env bash
# A unicast layer as docs/TUTORIALS.md "A unicast layer" builds it, in one command: hosts A,
# B and C on one Ethernet (network namespaces on a bridge); A bootstraps the layer "chain",
# B enrols through A, C through B and publishes oping-server; A pings C through B. The
# configurations are the tutorial's own files (docs/tutorial-unicast/*.conf), only their
# `dev` changed to this topology's devices. Prints the views the tutorial shows; fails
# unless every ping comes back. Needs root. Everything it made goes on exit.
# --blog: the blog's four nodes instead (docs/tutorial-unicast/blog/*.conf): client 1 and
# client 2 each on a veth to the router, the router on a third to the server; the router
# bootstraps "blog", the others enrol through it; both clients ping the server.
#   scripts/demo-unicast.sh [-c COUNT] [--blog]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
count=${COUNT:-10}
blog=""
while [ $# -gt 0 ]; do
    case "$1" in
    -c) count=$2; shift 2 ;;
    --blog) blog=1; shift ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo-unicast.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then
    echo "demo-unicast.sh: needs root (it creates network namespaces)" >&2
    exit 1
fi
for t in ip python3 cargo; do
    command -v "$t" >/dev/null || { echo "demo-unicast.sh: $t is missing (scripts/setup.sh installs what the project uses)" >&2; exit 1; }
done
echo "== building (release)"
(cd "$root" && cargo build --release --locked -q -p o7s-control -p o7s-dataplane -p oping -p o7sctl)
bin=$root/target/release
name=$("$(dirname "$0")/netns.sh" unique o7u 12)
tmp=$(mktemp -d /tmp/o7s-demo-unicast.XXXXXX)
cleanup() {
    for p in "$tmp"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
    sleep 0.5
    "$root/scripts/netns.sh" down "$name"
    rm -rf "$tmp"
}
trap cleanup EXIT
if [ -z "$blog" ]; then
    "$root/scripts/netns.sh" bridge "$name" a b c
else
    # Hosts 1, 2 (the clients), r (the router), s (the server); a veth per link.
    for h in 1 2 r s; do ip netns add "$name-$h"; ip -n "$name-$h" link set lo up; done
    for h in 1 2 s; do
        ip link add "$name-${h}r" netns "$name-$h" type veth peer name "$name-r$h" netns "$name-r"
        ip -n "$name-$h" link set "$name-${h}r" up
        ip -n "$name-r" link set "$name-r$h" up
    done
fi

on() { # host command...
    local h=$1; shift
    ip netns exec "$name-$h" env PATH="$bin:$PATH" O7S_RUNDIR="$tmp/run-$h" "$@"
}
start() { # host [configuration file, default docs/tutorial-unicast/HOST.conf]
    local file=${2:-$root/docs/tutorial-unicast/$1.conf}
    # Only the devices change: eth0 is the host's own (on the router: the port to client
    # 1), eth1 and eth2 the router's ports to client 2 and to the server.
    if [ -z "$blog" ]; then
        sed "s/^dev=\"eth0\"/dev=\"$name-v$1\"/" "$file" > "$tmp/$1.conf"
    elif [ "$1" = r ]; then
        sed -e "s/^dev=\"eth0\"/dev=\"$name-r1\"/" -e "s/^dev=\"eth1\"/dev=\"$name-r2\"/" \
            -e "s/^dev=\"eth2\"/dev=\"$name-rs\"/" "$file" > "$tmp/$1.conf"
    else
        sed "s/^dev=\"eth0\"/dev=\"$name-$1r\"/" "$file" > "$tmp/$1.conf"
    fi
    on "$1" "$bin/o7sd" --config "$tmp/$1.conf" > "$tmp/o7sd-$1.log" 2>&1 &
    echo $! > "$tmp/o7sd-$1.pid"
    for _ in $(seq 100); do [ -S "$tmp/run-$1/o7sd.sock" ] && return; sleep 0.05; done
    echo "demo-unicast.sh: o7sd on $1 did not start; its log:" >&2
    cat "$tmp/o7sd-$1.log" >&2
    exit 1
}
# Waits until host $1's IPCP $2 is in state $3 (10 s), else shows the logs and fails.
wait_state() {
    for _ in $(seq 100); do
        if on "$1" "$bin/o7sctl" ipcp list --json 2>/dev/null |
            python3 -c "import json,sys; sys.exit(0 if any(r['name']=='$2' and r['state']=='$3' for r in json.load(sys.stdin)) else 1)"; then
            return
        fi
        sleep 0.1
    done
    echo "demo-unicast.sh: $2 on $1 is not $3 after 10 s; logs:" >&2
    tail -n 20 "$tmp"/o7sd-*.log >&2
    exit 1
}
# Waits until host $1 has routes to $2 other members and a directory entry (10 s).
wait_routes() {
    for _ in $(seq 100); do
        if on "$1" "$bin/o7sctl" dht list --json 2>/dev/null | python3 -c "import json,sys; sys.exit(0 if json.load(sys.stdin) else 1)" &&
            [ "$(on "$1" "$bin/o7sctl" route list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" -ge "$2" ]; then
            return
        fi
        sleep 0.1
    done
}
if [ -n "$blog" ]; then
    echo "== the router bootstraps \"blog\", the clients and the server enrol through it"
    dir=$root/docs/tutorial-unicast/blog
    start r "$dir/router.conf"
    wait_state r ur bootstrapped
    start 1 "$dir/client1.conf"
    start 2 "$dir/client2.conf"
    start s "$dir/server.conf"
    wait_state 1 uc1 enrolled
    wait_state 2 uc2 enrolled
    wait_state s us enrolled
    fails=0
    for c in 1 2; do
        wait_routes "$c" 3
        echo "== client $c: oping -n oping-server -c $count -i 200ms (through the router)"
        out=$(on "$c" "$bin/oping" -n oping-server -c "$count" -i 200ms 2>&1) || true
        echo "$out"
        grep -q "^$count SDUs transmitted, $count received" <<<"$out" || fails=1
    done
    for h in 1 2 r s; do
        echo "== $h: o7sctl ipcp list"
        on "$h" "$bin/o7sctl" ipcp list
    done
    echo "== 1: o7sctl route list"
    on 1 "$bin/o7sctl" route list
    echo "== r: o7sctl neighbour list"
    on r "$bin/o7sctl" neighbour list
    if [ "$fails" != 0 ]; then
        echo "demo-unicast.sh: not every ping came back; logs:" >&2
        tail -n 20 "$tmp"/o7sd-*.log >&2
        exit 1
    fi
    echo "== $count/$count pings from each client to the server through the router"
    exit 0
fi
echo "== A bootstraps the layer, B enrols through A, C through B"
start a
wait_state a ua bootstrapped
start b
wait_state b ub enrolled
start c
wait_state c uc enrolled
# Routes: A reaches C once link state has flooded (a second or two).
wait_routes a 2
echo "== A: oping -n oping-server -c $count -i 200ms (through B)"
out=$(on a "$bin/oping" -n oping-server -c "$count" -i 200ms 2>&1) || true
echo "$out"
for h in a b c; do
    echo "== $h: o7sctl ipcp list"
    on "$h" "$bin/o7sctl" ipcp list
done
echo "== a: o7sctl route list"
on a "$bin/o7sctl" route list
echo "== a: o7sctl lsdb list"
on a "$bin/o7sctl" lsdb list
echo "== a: o7sctl dht list"
on a "$bin/o7sctl" dht list
echo "== b: o7sctl neighbour list"
on b "$bin/o7sctl" neighbour list
if ! grep -q "^$count SDUs transmitted, $count received" <<<"$out"; then
    echo "demo-unicast.sh: not every ping came back; logs:" >&2
    tail -n 20 "$tmp"/o7sd-*.log >&2
    exit 1
fi
echo "== $count/$count pings from A to C through B"
