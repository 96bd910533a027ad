#!/usr/bin/env bash
# The eth-dix layer's two I/O paths on one veth pair between two namespaces, in one
# invocation: oping RTT with AF_XDP and with AF_PACKET next to kernel ICMP ping, and one-flow
# ocbr flood at 64 and 1400 bytes (delivered pps, Mbit/s, loss), medians of RUNS runs per
# path. JSON to bench-results/xdp-<date>.json.
#   scripts/bench-xdp.sh [PINGS=300] [SECONDS=3] [RUNS=5]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
pings=${1:-300}; secs=${2:-3}; runs=${3:-5}
[ "$(id -u)" = 0 ] || { echo "bench-xdp.sh: needs root" >&2; exit 1; }
(cd "$root" && cargo build --release --locked -q -p o7s-control -p o7s-dataplane -p oping -p ocbr -p o7sctl)
bin=$root/target/release
name=o7x$$; name=${name:0:12}
tmp=$(mktemp -d /tmp/o7s-bench-xdp.XXXXXX)
stop_daemons() {
    for p in "$tmp"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; rm -f "$p"; done
    for s in a b; do for p in $(ip netns pids "$name-$s" 2>/dev/null); do kill "$p" 2>/dev/null || true; done; done
    sleep 0.5
}
cleanup() { stop_daemons; "$root/scripts/netns.sh" down "$name"; rm -rf "$tmp"; }
trap cleanup EXIT
"$root/scripts/netns.sh" up "$name"
ip -n "$name-a" addr add 169.254.80.1/24 dev "$name-va"
ip -n "$name-b" addr add 169.254.80.2/24 dev "$name-vb"
cat > "$tmp/b.conf" <<CONF
[name."oping-server"]
prog=["$bin/oping"]
args=["-l", "-Q"]
[name."ocbr"]
prog=["$bin/ocbr"]
[eth-dix.dix]
bootstrap="bench"
dev="$name-vb"
reg=["oping-server", "ocbr"]
CONF
printf '[eth-dix.dix]\nbootstrap="bench"\ndev="%s"\n' "$name-va" > "$tmp/a.conf"
run() { ip netns exec "$name-$1" env O7S_RUNDIR="$tmp/run-$1" "${@:2}"; }
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }

echo "kernel ping x$pings ..." >&2
kping=$(ip netns exec "$name-a" ping -c "$pings" -i 0.01 169.254.80.2 | sed -n 's/.*time=\([0-9.]*\) ms/\1/p' | sort -n |
    awk '{v[NR]=$1; s+=$1} END {printf "{\"n\": %d, \"p50\": %s, \"p99\": %s, \"avg\": %.4f}", NR, v[int(NR*0.5+0.5)], v[int(NR*0.99+0.5)], s/NR}')
result="{"
for io in af_xdp af_packet; do
    for s in a b; do
        run "$s" "$bin/o7sd" --config "$tmp/$s.conf" --io "$io" > "$tmp/o7sd-$s.log" 2>&1 &
        echo $! > "$tmp/o7sd-$s.pid"
    done
    for s in a b; do for _ in $(seq 100); do [ -S "$tmp/run-$s/o7sd.sock" ] && break; sleep 0.05; done; done
    sleep 0.3
    path=$(run b "$bin/o7sctl" port list --json | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['io_path'])")
    run b "$bin/ocbr" -l --json > "$tmp/ocbr-$io.json" 2>&1 &
    echo $! > "$tmp/ocbr.pid"
    sleep 0.3
    echo "$io: oping x$pings ..." >&2
    oping=$(run a "$bin/oping" -n oping-server -c "$pings" -i 10ms --json)
    tput="{"
    for size in 64 1400; do
        m=(); p=(); l=()
        for r in $(seq "$runs"); do
            echo "$io: ocbr flood $size B run $r ($secs s) ..." >&2
            before=$(wc -l < "$tmp/ocbr-$io.json")
            sent=$(run a "$bin/ocbr" -n ocbr -s "$size" -f -d "$secs" --json | field sent)
            for _ in $(seq 100); do [ "$(wc -l < "$tmp/ocbr-$io.json")" -gt "$before" ] && break; sleep 0.1; done
            line=$(tail -1 "$tmp/ocbr-$io.json")
            m+=("$(echo "$line" | field mbps)"); p+=("$(echo "$line" | field pps)")
            l+=("$(python3 -c "import json; d=json.loads('$line'); print(round(100*(1-d['received']/$sent),2))")")
        done
        tput="$tput\"$size\": {\"mbps\": $(printf '%s\n' "${m[@]}" | median), \"pps\": $(printf '%s\n' "${p[@]}" | median), \"loss_pct\": $(printf '%s\n' "${l[@]}" | median)},"
    done
    tput="${tput%,}}"
    result="$result\"$io\": {\"io_path\": \"$path\", \"oping\": $oping, \"ocbr_flood\": $tput},"
    stop_daemons
done
result="${result%,}}"
mkdir -p "$root/bench-results"
out="$root/bench-results/xdp-$(date -u +%Y%m%dT%H%M%SZ).json"
python3 - "$out" <<PY
import json, sys
r = json.loads('''$result''')
k = json.loads('''$kping''')
x, p = r["af_xdp"], r["af_packet"]
ratios = {
    "pps_64_xdp_over_packet": round(x["ocbr_flood"]["64"]["pps"] / max(p["ocbr_flood"]["64"]["pps"], 1e-9), 3),
    "mbps_1400_xdp_over_packet": round(x["ocbr_flood"]["1400"]["mbps"] / max(p["ocbr_flood"]["1400"]["mbps"], 1e-9), 3),
    "rtt_p50_xdp_over_icmp": round(x["oping"]["rtt_ms"]["p50"] / k["p50"], 3),
    "rtt_p50_packet_over_icmp": round(p["oping"]["rtt_ms"]["p50"] / k["p50"], 3),
}
doc = {"date": "$(date -u +%FT%TZ)", "machine": "$(nproc) vCPU, $(uname -r)", "command": "scripts/bench-xdp.sh $pings $secs $runs",
       "kernel_icmp_ping_ms": k, "paths": r, "ratios": ratios}
open(sys.argv[1], "w").write(json.dumps(doc, indent=1))
print(json.dumps(doc, indent=1))
PY
