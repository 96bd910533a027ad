#!/usr/bin/env bash
# Benchmark of the eth-dix layer over one veth pair between two namespaces (root), in one
# invocation: kernel ICMP ping RTT, oping RTT (the port's I/O path as o7sd chose it, `auto`:
# AF_XDP on veth where it works; the JSON's io_path says which), and flow-allocation latency
# over N allocations. Writes JSON to bench-results/eth-<date>.json and prints it.
#   scripts/bench-eth.sh [PINGS=500] [ALLOCS=1000]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
pings=${1:-500}; allocs=${2:-1000}
[ "$(id -u)" = 0 ] || { echo "bench-eth.sh: needs root" >&2; exit 1; }
case "$pings$allocs" in *[!0-9]*|"") echo "usage: scripts/bench-eth.sh [PINGS=500] [ALLOCS=1000]" >&2; exit 2;; esac
for t in ping python3 ip; do command -v "$t" >/dev/null || { echo "bench-eth.sh: $t is missing (scripts/setup.sh installs it)" >&2; exit 1; }; done
(cd "$root" && cargo build --release --locked -q -p o7s-control -p o7s-dataplane -p oping -p o7sctl -p o7s-bench)
bin=$root/target/release
name=$("$(dirname "$0")/netns.sh" unique o7b 12)
tmp=$(mktemp -d /tmp/o7s-bench.XXXXXX)
cleanup() {
    for p in "$tmp"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
    sleep 0.3; "$root/scripts/netns.sh" down "$name"; rm -rf "$tmp"
}
trap cleanup EXIT
"$root/scripts/netns.sh" up "$name"
# Link-local addresses on our own veth pair, for the kernel ping baseline only.
ip -n "$name-a" addr add 169.254.77.1/24 dev "$name-va"
ip -n "$name-b" addr add 169.254.77.2/24 dev "$name-vb"
cat > "$tmp/b.conf" <<CONF
[name."oping-server"]
prog=["$bin/oping"]
args=["-l", "-Q"]
[name."alloc-bench"]
prog=["$bin/o7s-bench"]
[eth-dix.dix]
bootstrap="bench"
dev="$name-vb"
reg=["oping-server", "alloc-bench"]
CONF
printf '[eth-dix.dix]\nbootstrap="bench"\ndev="%s"\n' "$name-va" > "$tmp/a.conf"
for s in a b; do
    ip netns exec "$name-$s" env O7S_RUNDIR="$tmp/run-$s" "$bin/o7sd" --config "$tmp/$s.conf" > "$tmp/o7sd-$s.log" 2>&1 &
    echo $! > "$tmp/o7sd-$s.pid"
done
for s in a b; do for _ in $(seq 100); do [ -S "$tmp/run-$s/o7sd.sock" ] && break; sleep 0.05; done; done
sleep 0.3
ip netns exec "$name-b" env O7S_RUNDIR="$tmp/run-b" "$bin/o7s-bench" alloc-server &
echo $! > "$tmp/srv.pid"
sleep 0.2

echo "kernel ping x$pings ..." >&2
kping=$(ip netns exec "$name-a" ping -c "$pings" -i 0.01 169.254.77.2 | sed -n 's/.*time=\([0-9.]*\) ms/\1/p' | sort -n |
    awk '{v[NR]=$1; s+=$1} END {printf "{\"n\": %d, \"p50\": %s, \"p99\": %s, \"avg\": %.4f, \"min\": %s, \"max\": %s}", NR, v[int(NR*0.5+0.5)], v[int(NR*0.99+0.5)], s/NR, v[1], v[NR]}')
echo "oping x$pings ..." >&2
oping=$(ip netns exec "$name-a" env O7S_RUNDIR="$tmp/run-a" "$bin/oping" -n oping-server -c "$pings" -i 10ms --json)
echo "flow allocation x$allocs ..." >&2
alloc=$(ip netns exec "$name-a" env O7S_RUNDIR="$tmp/run-a" "$bin/o7s-bench" alloc-client -n alloc-bench -c "$allocs") || {
    kept=$(mktemp -d /tmp/o7s-bench-failed.XXXXXX); cp "$tmp"/*.log "$kept"/
    echo "bench-eth.sh: allocations failed: $alloc (daemon logs kept in $kept)" >&2
    exit 1; }
io_path=$(ip netns exec "$name-b" env O7S_RUNDIR="$tmp/run-b" "$bin/o7sctl" port list --json |
    python3 -c 'import json,sys; print(",".join(sorted({p.get("io_path", "?") for p in json.load(sys.stdin)})))')
mkdir -p "$root/bench-results"
out="$root/bench-results/eth-$(date -u +%Y%m%dT%H%M%SZ).json"
cat > "$out" <<JSON
{"date": "$(date -u +%FT%TZ)", "machine": "$(nproc) vCPU, $(uname -r)", "command": "scripts/bench-eth.sh $pings $allocs",
 "io_path": "$io_path", "kernel_icmp_ping_ms": $kping, "oping": $oping, "flow_alloc": $alloc}
JSON
cat "$out"
