#!/usr/bin/env bash
# A unicast layer as docs/TUTORIALS.md "A unicast layer" builds it, in one command: hosts A,
# B and C on one Ethernet (network namespaces on a bridge); A bootstraps the layer "chain",
# B enrols through A, C through B and publishes oping-server; A pings C through B. The
# configurations are the tutorial's own files (docs/tutorial-unicast/*.conf), only their
# `dev` changed to this topology's devices. Prints the views the tutorial shows; fails
# unless every ping comes back. Needs root. Everything it made goes on exit.
#   scripts/demo-unicast.sh [-c COUNT]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
count=${COUNT:-10}
while [ $# -gt 0 ]; do
    case "$1" in
    -c) count=$2; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
name=o7u$$
name=${name:0:12}
tmp=$(mktemp -d /tmp/o7s-demo-unicast.XXXXXX)
cleanup() {
    for p in "$tmp"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
    sleep 0.5
    "$root/scripts/netns.sh" down "$name"
    rm -rf "$tmp"
}
trap cleanup EXIT
"$root/scripts/netns.sh" bridge "$name" a b c

on() { # host command...
    local h=$1; shift
    ip netns exec "$name-$h" env PATH="$bin:$PATH" O7S_RUNDIR="$tmp/run-$h" "$@"
}
start() { # host
    sed "s/^dev=\"eth0\"/dev=\"$name-v$1\"/" "$root/docs/tutorial-unicast/$1.conf" > "$tmp/$1.conf"
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
echo "== A bootstraps the layer, B enrols through A, C through B"
start a
wait_state a ua bootstrapped
start b
wait_state b ub enrolled
start c
wait_state c uc enrolled
# Routes: A reaches C once link state has flooded (a second or two).
for _ in $(seq 100); do
    if on a "$bin/o7sctl" dht list --json 2>/dev/null | python3 -c "import json,sys; sys.exit(0 if json.load(sys.stdin) else 1)" &&
        [ "$(on a "$bin/o7sctl" route list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" -ge 2 ]; then
        break
    fi
    sleep 0.1
done
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
