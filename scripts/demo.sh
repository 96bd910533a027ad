#!/usr/bin/env bash
# The main job: tutorial 04 between two network namespaces joined by a veth pair. The
# server's daemon registers oping-server in an eth-dix layer and auto-starts `oping -l` when
# the client's `oping -n oping-server -c 10` allocates a flow. Needs root. Cleans up on exit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" != 0 ]; then
    echo "demo.sh: needs root (it creates network namespaces)" >&2
    exit 1
fi
count=${COUNT:-10}
echo "== building (release)"
(cd "$root" && cargo build --release --locked -q -p o7s-control -p o7s-dataplane -p oping -p o7sctl)
bin=$root/target/release
name=$("$(dirname "$0")/netns.sh" unique o7demo 12)
tmp=$(mktemp -d /tmp/o7s-demo.XXXXXX)
cleanup() {
    for p in "$tmp"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
    sleep 0.5
    "$root/scripts/netns.sh" down "$name"
    rm -rf "$tmp"
}
trap cleanup EXIT
"$root/scripts/netns.sh" up "$name"

# Tutorial 04's configuration files, with the devices of this topology and this build's oping
# by its path (the tutorial's /usr/bin/oping may be liboping's, another tool of that name).
cat > "$tmp/server.conf" <<CONF
[name."oping-server"]
prog=["$bin/oping"]
args=["-l"]

[eth-dix.wifi1]
bootstrap="wifi-network"
dev="$name-vb"
reg=["oping-server"]
CONF
cat > "$tmp/client.conf" <<CONF
[eth-dix.wifi1]
bootstrap="wifi-network"
dev="$name-va"
CONF

start() { # side conf
    ip netns exec "$name-$1" env PATH="$bin:$PATH" O7S_RUNDIR="$tmp/run-$1" \
        "$bin/o7sd" --config "$tmp/$2" > "$tmp/o7sd-$1.log" 2>&1 &
    echo $! > "$tmp/o7sd-$1.pid"
}
start b server.conf
start a client.conf
for s in a b; do
    for _ in $(seq 100); do [ -S "$tmp/run-$s/o7sd.sock" ] && break; sleep 0.05; done
done
sleep 0.2
echo "== server: o7sctl ipcp list"
ip netns exec "$name-b" env O7S_RUNDIR="$tmp/run-b" "$bin/o7sctl" ipcp list
echo "== client: oping -n oping-server -c $count -i 200ms"
ip netns exec "$name-a" env O7S_RUNDIR="$tmp/run-a" "$bin/oping" -n oping-server -c "$count" -i 200ms
echo "== client: o7sctl cache list"
ip netns exec "$name-a" env O7S_RUNDIR="$tmp/run-a" "$bin/o7sctl" cache list
echo "== server: o7sctl flow list"
ip netns exec "$name-b" env O7S_RUNDIR="$tmp/run-b" "$bin/o7sctl" flow list
echo "== server log"
cat "$tmp/o7sd-b.log"
