#!/usr/bin/env bash
# The unicast layer's 3-node chain against the kernel, in one invocation (issue 15):
# namespaces A - B - C joined by two veth pairs (A-B, B-C). Each runs o7sd (release build):
# A bootstraps a unicast layer, B enrols through A (eth-dix on the A-B link) and connects to
# it, C enrols through B (eth-dix on the B-C link) and connects to it. The same namespaces
# carry IPv4 with B routing between 10.81.1.0/24 and 10.81.2.0/24.
#   oping RTT A -> C through B (COUNT pings, INTERVAL apart) vs kernel ping A -> C through B
#   ocbr goodput A -> C through B vs A -> B (1400-byte SDUs, flood, SECONDS each)
# Both twice in one invocation: B forwarding in place between its two AF_XDP ports (they
# share a UMEM), then with the copy forced at B (O7S_DP_FORWARD_COPY=1 in B's o7sd).
# Writes JSON with the figures and the ratios to bench-results/unicast-*.json.
#   scripts/bench-unicast.sh [COUNT=500] [SECONDS=3]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
case "${1:-}" in -h|--help) sed -n '2,/^set -/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0;; esac
for a in "$@"; do case "$a" in ""|*[!0-9.]*) echo "bench-unicast.sh: '$a' is not a number (--help says what the arguments are)" >&2; exit 2;; esac; done
for t in ip python3 ping cargo; do command -v "$t" >/dev/null || { echo "bench-unicast.sh: $t is missing (scripts/setup.sh installs it)" >&2; exit 1; }; done
count=${1:-500}; secs=${2:-3}
[ "$(id -u)" = 0 ] || { echo "bench-unicast.sh: needs root" >&2; exit 1; }
bin=$root/target/release
if [ -z "${O7S_BENCH_INNER:-}" ]; then
    (cd "$root" && cargo build --release --locked -q -p o7s-control -p o7s-dataplane -p oping -p ocbr -p o7sctl)
    in_place=$(O7S_BENCH_INNER=in-place "$0" "$count" "$secs" | tail -1)
    copy=$(O7S_BENCH_INNER=copy "$0" "$count" "$secs" | tail -1)
    mkdir -p "$root/bench-results"
    out="$root/bench-results/unicast-$(date -u +%Y%m%dT%H%M%SZ).json"
    python3 - "$in_place" "$copy" "$out" <<'PY'
import json, sys
a, b, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
def ratio(x, y):
    return round(x / y, 3) if x and y else None
a["copy_forced_at_b"] = {k: b.get(k) for k in ("oping_a_to_c", "kernel_ping_a_to_c", "ocbr_1400_a_to_c_mbps",
                          "ocbr_1400_a_to_b_mbps", "ratio_goodput_ac_ab", "b_forwarded_pdus_in_data_plane",
                          "b_forwarded_pdus_in_place")}
a["ratio_goodput_ac_in_place_vs_copy"] = ratio(a.get("ocbr_1400_a_to_c_mbps"), b.get("ocbr_1400_a_to_c_mbps"))
a["ratio_p50_in_place_vs_copy"] = ratio(a["oping_a_to_c"].get("p50_ms"), b["oping_a_to_c"].get("p50_ms"))
a["command"] = a["command"].replace(" (inner)", "")
open(out, "w").write(json.dumps(a, indent=1) + "\n")
print(json.dumps(a))
PY
    exit 0
fi
n=$("$(dirname "$0")/netns.sh" unique uc 8)
tmp=$(mktemp -d /tmp/o7s-bench-unicast.XXXXXX)
cleanup() {
    for s in a b c; do
        for p in $(ip netns pids "$n-$s" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$n-$s" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
for s in a b c; do ip netns add "$n-$s"; ip -n "$n-$s" link set lo up; done
ip link add "$n-ab" netns "$n-a" type veth peer name "$n-ba" netns "$n-b"
ip link add "$n-bc" netns "$n-b" type veth peer name "$n-cb" netns "$n-c"
for d in a:ab b:ba b:bc c:cb; do ip -n "$n-${d%%:*}" link set "$n-${d##*:}" up; done
ip -n "$n-a" addr add 10.81.1.1/24 dev "$n-ab"
ip -n "$n-b" addr add 10.81.1.2/24 dev "$n-ba"
ip -n "$n-b" addr add 10.81.2.2/24 dev "$n-bc"
ip -n "$n-c" addr add 10.81.2.3/24 dev "$n-cb"
ip -n "$n-a" route add 10.81.2.0/24 via 10.81.1.2
ip -n "$n-c" route add 10.81.1.0/24 via 10.81.2.2
ip netns exec "$n-b" sysctl -qw net.ipv4.ip_forward=1

cat >"$tmp/a.conf" <<EOF
[eth-dix.e]
bootstrap="eth"
dev="$n-ab"
reg=["ua"]

[unicast.ua]
bootstrap="bench"
autobind=true
EOF
cat >"$tmp/b.conf" <<EOF
[name."ocbr"]
prog=["$bin/ocbr"]

[eth-dix.e0]
bootstrap="eth"
dev="$n-ba"

[eth-dix.e1]
bootstrap="eth"
dev="$n-bc"
reg=["ub"]

[unicast.ub]
enrol="ua"
autobind=true
conn=["ua"]
reg=["ocbr-b"]
EOF
cat >"$tmp/c.conf" <<EOF
[name."oping-server"]
prog=["$bin/oping"]

[name."ocbr"]
prog=["$bin/ocbr"]

[eth-dix.e]
bootstrap="eth"
dev="$n-cb"

[unicast.uc]
enrol="ub"
autobind=true
conn=["ub"]
reg=["oping-server", "ocbr"]
EOF
run() { # side, command...
    local s=$1; shift
    O7S_RUNDIR="$tmp/run-$s" ip netns exec "$n-$s" "$@"
}
start() {
    mkdir -p "$tmp/run-$1"
    local envs=(env)
    [ "$1" = b ] && [ "$O7S_BENCH_INNER" = copy ] && envs+=(O7S_DP_FORWARD_COPY=1)
    run "$1" "${envs[@]}" "$bin/o7sd" --config "$tmp/$1.conf" --rundir "$tmp/run-$1" >/dev/null 2>"$tmp/o7sd-$1.log" &
    for _ in $(seq 100); do [ -S "$tmp/run-$1/o7sd.sock" ] && break; sleep 0.05; done
}
state() { run "$1" "$bin/o7sctl" ipcp list --json | python3 -c "
import json,sys
r=[x for x in json.load(sys.stdin) if x['type']=='unicast']
print(r[0]['state'] if r else '-')"; }
start a; start b
for _ in $(seq 100); do [ "$(state b)" = enrolled ] && break; sleep 0.1; done
start c
for _ in $(seq 100); do [ "$(state c)" = enrolled ] && break; sleep 0.1; done
[ "$(state c)" = enrolled ] || { echo "bench-unicast.sh: C did not enrol" >&2; cat "$tmp"/o7sd-*.log >&2; exit 1; }
# The directory and the routes settle.
for _ in $(seq 100); do
    run a "$bin/o7sctl" dht list --json | grep -q '"local": false\|"local":false' && break; sleep 0.1
done
run c "$bin/oping" --listen >/dev/null 2>&1 &
run c "$bin/ocbr" -l --json >"$tmp/ocbr-c.json" 2>/dev/null &
sleep 1

# RTT: oping through the unicast layer, kernel ping through B's routing.
run a "$bin/oping" -n oping-server -c "$count" -i 2ms --json >"$tmp/oping.json"
run a ping -n -c "$count" -i 0.002 10.81.2.3 >"$tmp/ping.txt"
# Goodput: A -> C through B, then A -> B (the server on B).
run a "$bin/ocbr" -n ocbr -f -s 1400 -d "$secs" --json >"$tmp/ocbr-ac.json" 2>/dev/null || true
sleep 1.5   # the server reports once the flow has been idle for a second
"$root/scripts/netns.sh" signal "$n-c" TERM ocbr || true
run b "$bin/ocbr" -l --json >"$tmp/ocbr-b.json" 2>/dev/null &
sleep 0.5
run b "$bin/o7sctl" bind process "$("$root/scripts/netns.sh" pids "$n-b" ocbr | tail -1)" name ocbr-b >/dev/null
run a "$bin/ocbr" -n ocbr-b -f -s 1400 -d "$secs" --json >"$tmp/ocbr-ab.json" 2>/dev/null || true
sleep 1.5
fwd=$(run b "$bin/o7sctl" ipcp list --json | python3 -c "
import json,sys
u=[x for x in json.load(sys.stdin) if x['type']=='unicast'][0]
print(u.get('dt_forwarded',0), u.get('dt_forwarded_in_o7sd',0), u.get('dt_forwarded_in_place',0))")

python3 - "$tmp" "$count" "$secs" "$fwd" "$O7S_BENCH_INNER" <<'PY'
import json, sys, re, datetime, platform, statistics
tmp, count, secs, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[5]
fwd, fwd_o7sd, fwd_in_place = (int(x) for x in sys.argv[4].split())
def last_json(path):
    lines = [l for l in open(path).read().splitlines() if l.strip().startswith("{")]
    return json.loads(lines[-1]) if lines else {}
o = last_json(f"{tmp}/oping.json")
rtts = sorted(float(m) for m in re.findall(r"time=([0-9.]+) ms", open(f"{tmp}/ping.txt").read()))
def pct(v, p):
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))] if v else None
k = {"received": len(rtts), "p50": pct(rtts, 50), "p99": pct(rtts, 99)}
# Goodput as the receiving server measured it (a flood also loses SDUs to full rings).
ac, ab = last_json(f"{tmp}/ocbr-c.json"), last_json(f"{tmp}/ocbr-b.json")
sent_ac, sent_ab = last_json(f"{tmp}/ocbr-ac.json"), last_json(f"{tmp}/ocbr-ab.json")
doc = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "machine": f"{platform.machine()}, kernel {platform.release()}",
    "command": f"scripts/bench-unicast.sh {count} {secs}",
    "path": "the data-plane workers move the unicast layer's PDUs (forwarding at B, PCI at A and C)",
    "forwarding_at_b": "in place where its ports share a UMEM" if mode == "in-place" else "copy forced (O7S_DP_FORWARD_COPY=1)",
    "oping_a_to_c": {"received": o.get("received"), "p50_ms": o.get("rtt_ms", {}).get("p50"),
                     "p99_ms": o.get("rtt_ms", {}).get("p99"), "alloc_ms": o.get("alloc_ms")},
    "kernel_ping_a_to_c": {"received": k["received"], "p50_ms": k["p50"], "p99_ms": k["p99"]},
    "ratio_p50": round(o.get("rtt_ms", {}).get("p50", 0) / k["p50"], 2) if k["p50"] else None,
    "ratio_p99": round(o.get("rtt_ms", {}).get("p99", 0) / k["p99"], 2) if k["p99"] else None,
    "ocbr_1400_a_to_c_mbps": ac.get("mbps"), "ocbr_1400_a_to_b_mbps": ab.get("mbps"),
    "ocbr_sent_mbps": {"a_to_c": sent_ac.get("mbps"), "a_to_b": sent_ab.get("mbps")},
    "ratio_goodput_ac_ab": round(ac["mbps"] / ab["mbps"], 3) if ac.get("mbps") and ab.get("mbps") else None,
    "b_forwarded_pdus_in_data_plane": fwd,
    "b_forwarded_pdus_in_o7sd": fwd_o7sd,
    "b_forwarded_pdus_in_place": fwd_in_place,
}
print(json.dumps(doc))
PY
