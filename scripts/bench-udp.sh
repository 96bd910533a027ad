#!/usr/bin/env bash
# Benchmark of the udp4 layer on one host (127.0.0.1 <-> 127.0.0.2 in a fresh namespace), in
# one invocation: oping RTT next to a plain kernel UDP echo, and one-flow ocbr goodput
# (flood) at 64 and 1400 bytes next to a plain kernel UDP blast between the same two
# addresses. Throughput figures are medians of RUNS runs. JSON to bench-results/.
#   scripts/bench-udp.sh [PINGS=500] [SECONDS=3] [RUNS=3]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
case "${1:-}" in -h|--help) sed -n '2,/^set -/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0;; esac
for a in "$@"; do case "$a" in ""|*[!0-9.]*) echo "bench-udp.sh: '$a' is not a number (--help says what the arguments are)" >&2; exit 2;; esac; done
for t in ip python3 md5sum cargo; do command -v "$t" >/dev/null || { echo "bench-udp.sh: $t is missing (scripts/setup.sh installs it)" >&2; exit 1; }; done
pings=${1:-500}; secs=${2:-3}; runs=${3:-3}
[ "$(id -u)" = 0 ] || { echo "bench-udp.sh: needs root" >&2; exit 1; }
(cd "$root" && cargo build --release --locked -q -p o7s-control -p o7s-dataplane -p oping -p ocbr -p o7sctl -p o7s-bench)
bin=$root/target/release
ns=$("$(dirname "$0")/netns.sh" unique o7u 12)
tmp=$(mktemp -d /tmp/o7s-bench-udp.XXXXXX)
cleanup() {
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
    sleep 0.3; ip netns del "$ns" 2>/dev/null || true; rm -rf "/etc/netns/$ns" "$tmp"
}
trap cleanup EXIT
ip netns add "$ns"; ip -n "$ns" link set lo up
md5() { printf '%s' "$1" | md5sum | cut -d' ' -f1; }
mkdir -p "/etc/netns/$ns"
printf '127.0.0.1 localhost\n127.0.0.2 %s\n127.0.0.2 %s\n' "$(md5 oping-server)" "$(md5 ocbr)" > "/etc/netns/$ns/hosts"
printf 'nameserver 127.0.0.1\n' > "/etc/netns/$ns/resolv.conf"
cat > "$tmp/b.conf" <<CONF
[name."oping-server"]
prog=["$bin/oping"]
args=["-l", "-Q"]
[name."ocbr"]
prog=["$bin/ocbr"]
[udp4.u]
bootstrap="udp"
ip="127.0.0.2"
reg=["oping-server", "ocbr"]
CONF
printf '[udp4.u]\nbootstrap="udp"\nip="127.0.0.1"\n' > "$tmp/a.conf"
run() { ip netns exec "$ns" env O7S_RUNDIR="$tmp/run-$1" "${@:2}"; }
for s in a b; do
    run "$s" "$bin/o7sd" --config "$tmp/$s.conf" > "$tmp/o7sd-$s.log" 2>&1 &
done
for s in a b; do for _ in $(seq 100); do [ -S "$tmp/run-$s/o7sd.sock" ] && break; sleep 0.05; done; done
sleep 0.3
run b "$bin/ocbr" -l --json > "$tmp/ocbr-server.json" 2>&1 &
run b "$bin/o7s-bench" udp-echo-server 127.0.0.2:4000 &
sleep 0.3

echo "RTT: kernel UDP echo x$pings, oping x$pings ..." >&2
kudp_rtt=$(run a "$bin/o7s-bench" udp-ping 127.0.0.2:4000 -c "$pings" -s 64 -i 10000)
oping=$(run a "$bin/oping" -n oping-server -c "$pings" -i 10ms --json)

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }
tput='{'
for size in 64 1400; do
    k=(); o=(); kl=(); ol=()
    for r in $(seq "$runs"); do
        echo "size $size run $r: kernel UDP blast, ocbr flood ($secs s each) ..." >&2
        run b "$bin/o7s-bench" udp-sink 127.0.0.2:4001 > "$tmp/sink.json" &
        sinkpid=$!
        sleep 0.2
        sent=$(run a "$bin/o7s-bench" udp-blast 127.0.0.2:4001 -s "$size" -d "$secs" | field sent)
        wait $sinkpid
        k+=("$(field mbps < "$tmp/sink.json")")
        kl+=("$(python3 -c "import json; d=json.load(open('$tmp/sink.json')); print(round(100*(1-d['received']/$sent),3))")")
        before=$(wc -l < "$tmp/ocbr-server.json")
        csent=$(run a "$bin/ocbr" -n ocbr -s "$size" -f -d "$secs" --json | field sent)
        for _ in $(seq 100); do [ "$(wc -l < "$tmp/ocbr-server.json")" -gt "$before" ] && break; sleep 0.1; done
        [ "$(wc -l < "$tmp/ocbr-server.json")" -gt "$before" ] || { echo "bench-udp.sh: the ocbr server wrote no result for this run within 10 s" >&2; exit 1; }
        line=$(tail -1 "$tmp/ocbr-server.json")
        o+=("$(echo "$line" | field mbps)")
        ol+=("$(python3 -c "import json; d=json.loads('$line'); print(round(100*(1-d['received']/$csent),3))")")
    done
    km=$(printf '%s\n' "${k[@]}" | median); om=$(printf '%s\n' "${o[@]}" | median)
    klm=$(printf '%s\n' "${kl[@]}" | median); olm=$(printf '%s\n' "${ol[@]}" | median)
    ratio=$(python3 -c "print(round($om/$km,3) if $km else 0)")
    tput="$tput\"$size\": {\"kernel_udp_mbps\": $km, \"kernel_udp_loss_pct\": $klm, \"o7s_ocbr_mbps\": $om, \"o7s_ocbr_loss_pct\": $olm, \"ratio\": $ratio, \"runs_kernel\": [$(IFS=,; echo "${k[*]}")], \"runs_o7s\": [$(IFS=,; echo "${o[*]}")]},"
done
tput="${tput%,}}"
mkdir -p "$root/bench-results"
out="$root/bench-results/udp-$(date -u +%Y%m%dT%H%M%SZ).json"
cat > "$out" <<JSON
{"date": "$(date -u +%FT%TZ)", "machine": "$(nproc) vCPU, $(uname -r)", "command": "scripts/bench-udp.sh $pings $secs $runs",
 "rtt": {"kernel_udp_echo": $kudp_rtt, "oping": $oping}, "goodput_flood": $tput}
JSON
cat "$out"
