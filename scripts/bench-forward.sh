#!/usr/bin/env bash
# The forwarding hop against the kernel's IPv4 router and a raw AF_XDP forwarder, in one
# invocation (issue 23). Three namespaces A - B - C (veth A-B, B-C):
#   A: the traffic source, `o7s-bench xdp-gen` (AF_XDP tx ring, one frame flat out) on CPU 0;
#   C: the sink, `o7s-bench xdp-count` (bpf/xdp_count.o: count and drop);
#   B: the forwarder, one of three, on CPU 1:
#     o7s    o7sd's data-plane worker forwarding DT PDUs of a unicast layer in place between
#            its two AF_XDP ports (the layer A - B - C is built by o7sd in all three, then A's
#            and C's o7sd and data planes are stopped so the source and the sink own their
#            devices; B keeps its N-1 flows and routes for far longer than a run);
#     kernel B's IPv4 forwarding (ip_forward=1, a static neighbour for C), the source sending
#            UDP/IPv4 frames of the same sizes;
#     raw    `o7s-bench xdp-fwd`: the o7s XDP program steers the frames to an AF_XDP socket,
#            the MACs are rewritten and the frame is sent on the other port in place (shared
#            UMEM), one kick per batch, no other logic.
# On veth the receiving side's kernel work runs on the sender's CPU: B's receive (XDP and
# the copy into the AF_XDP socket, or the kernel's whole IPv4 forwarding) shares CPU 0 with
# the source; the AF_XDP forwarders' user-space work has CPU 1 (O7S_FWD_RPS=1 below moves
# B's receive work to CPU 1 instead). Frames: 64 B on the wire (60 without FCS) and 1514 B. Each run
# measures every forwarder at both sizes (RUNS runs, forwarders in turn); the figures are
# the sink's counts over SECONDS after a 1 s warm-up; medians and every run in the JSON.
# When the sink counts what the source sent, the source was the limit, not the forwarder
# ("source_limited" in the JSON).
# JSON to bench-results/forward-<date>.json.
#   scripts/bench-forward.sh [SECONDS=3] [RUNS=3]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
case "${1:-}" in -h|--help) sed -n '2,/^set -/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0;; esac
for a in "$@"; do case "$a" in ""|*[!0-9.]*) echo "bench-forward.sh: '$a' is not a number (--help says what the arguments are)" >&2; exit 2;; esac; done
secs=${1:-3}; runs=${2:-3}
[ "$(id -u)" = 0 ] || { echo "bench-forward.sh: needs root (namespaces, XDP)" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "bench-forward.sh: needs 2 CPUs (source on CPU 0, hop on CPU 1)" >&2; exit 1; }
for t in ip taskset python3; do
    command -v "$t" >/dev/null || { echo "bench-forward.sh: $t is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
(cd "$root" && cargo build --release --locked -q -p o7s-control -p o7s-dataplane -p o7sctl -p o7s-bench)
bin=$root/target/release
n=$("$(dirname "$0")/netns.sh" unique fw 8)
tmp=$(mktemp -d /tmp/o7s-bench-forward.XXXXXX)
kill_ns() { for p in $(ip netns pids "$n-$1" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done; }
cleanup() {
    for s in a b c; do kill_ns "$s"; ip netns del "$n-$s" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
for s in a b c; do ip netns add "$n-$s"; ip -n "$n-$s" link set lo up; done
ip link add "$n-ab" netns "$n-a" type veth peer name "$n-ba" netns "$n-b"
ip link add "$n-bc" netns "$n-b" type veth peer name "$n-cb" netns "$n-c"
for d in a:ab b:ba b:bc c:cb; do ip -n "$n-${d%%:*}" link set "$n-${d##*:}" up; done
mac() { ip netns exec "$n-$1" cat "/sys/class/net/$n-$2/address"; }
BA=$(mac b ba); CB=$(mac c cb)
# The kernel router's addresses (unused by o7s, which ignores IP).
ip -n "$n-b" addr add 10.81.1.2/24 dev "$n-ba"
ip -n "$n-b" addr add 10.81.2.2/24 dev "$n-bc"
ip netns exec "$n-b" sysctl -qw net.ipv4.ip_forward=1
ip -n "$n-b" neigh replace 10.81.2.3 lladdr "$CB" dev "$n-bc" nud permanent
# O7S_FWD_RPS=1: B's receive work on CPU 1 (RPS). Off by default: veth has no IRQ, so B's
# receive work (XDP, the copy into the AF_XDP socket, or the kernel's IPv4 forwarding) runs on
# the source's CPU 0; with RPS it shares CPU 1 with the AF_XDP forwarders, and a source
# faster than the hop starves them (receive livelock: measured 0.02 Mpps for the raw
# forwarder) while the kernel router, all in softirq, keeps up.
rps=${O7S_FWD_RPS:-0}
[ "$rps" = 1 ] && ip netns exec "$n-b" sh -c "echo 2 > /sys/class/net/$n-ba/queues/rx-0/rps_cpus"

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
EOF
cat >"$tmp/c.conf" <<EOF
[eth-dix.e]
bootstrap="eth"
dev="$n-cb"

[unicast.uc]
enrol="ub"
autobind=true
conn=["ub"]
EOF
ctl() { local s=$1; shift; O7S_RUNDIR="$tmp/run-$s" ip netns exec "$n-$s" "$bin/o7sctl" "$@"; }
start() { # side: o7sd with its worker on CPU 1 at B, CPU 0 elsewhere
    local s=$1 cpu=0
    [ "$s" = b ] && cpu=1
    rm -rf "$tmp/run-$s"; mkdir -p "$tmp/run-$s"
    O7S_RUNDIR="$tmp/run-$s" ip netns exec "$n-$s" taskset -c "$cpu" "$bin/o7sd" --config "$tmp/$s.conf" \
        --rundir "$tmp/run-$s" >/dev/null 2>>"$tmp/o7sd-$s.log" &
    for _ in $(seq 100); do [ -S "$tmp/run-$s/o7sd.sock" ] && break; sleep 0.05; done
}
uni() { # side, python expression over the unicast IPCP's listing u
    ctl "$1" ipcp list --json | python3 -c "
import json,sys
u=[x for x in json.load(sys.stdin) if x['type']=='unicast']
print($2 if u else '-')" 2>/dev/null || echo -
}
# Builds the layer A - B - C and leaves only B's o7sd: prints "EID ADDR", the endpoint id
# of B's DT N-1 flow from A (hexadecimal) and C's address.
o7s_up() {
    start a; start b
    for _ in $(seq 150); do [ "$(uni b "u[0]['state']")" = enrolled ] && break; sleep 0.1; done
    start c
    for _ in $(seq 150); do [ "$(uni c "u[0]['state']")" = enrolled ] && break; sleep 0.1; done
    [ "$(uni c "u[0]['state']")" = enrolled ] || { echo "bench-forward.sh: C did not enrol" >&2; cat "$tmp"/o7sd-*.log >&2; exit 1; }
    local caddr
    caddr=$(uni c "u[0]['address']")
    # B's route to C and its DT N-1 flow from A.
    local eid=""
    for _ in $(seq 100); do
        eid=$(python3 - "$(ctl b neighbour list --json)" "$(ctl b flow list --json)" <<'PY'
import json, sys
nb, flows = json.loads(sys.argv[1]), json.loads(sys.argv[2])
dt = [x["n1_flow"] for x in nb if x["component"] == "Data Transfer" and x["n1_name"] == "ua" and x["state"] == "up"]
f = [x for x in flows if dt and x["flow"] == dt[0]]
print(f[0]["local"] if f else "")
PY
)
        [ -n "$eid" ] && ctl b route list --json | grep -q "${caddr#0x}" && break
        sleep 0.1
    done
    [ -n "$eid" ] || { echo "bench-forward.sh: no DT flow from A at B" >&2; exit 1; }
    kill_ns a; kill_ns c; sleep 0.5
    echo "$eid $caddr"
}
# One measurement: forwarder FWD, frame size SIZE, source args...; prints the sink's and the
# source's JSON on one line.
measure() {
    local fwd=$1 size=$2; shift 2
    ip netns exec "$n-c" taskset -c 1 "$bin/o7s-bench" xdp-count --dev "$n-cb" -d "$secs" --warmup 1 >"$tmp/count.json" &
    local cpid=$!
    sleep 0.3
    ip netns exec "$n-a" taskset -c 0 "$bin/o7s-bench" xdp-gen --dev "$n-ab" --dst-mac "$BA" -s "$size" \
        -d "$(python3 -c "print($secs + 1.5)")" "$@" >"$tmp/gen.json"
    wait "$cpid"
    python3 -c "
import json,sys
c, g = json.load(open('$tmp/count.json')), json.load(open('$tmp/gen.json'))
print(json.dumps({'forwarder': '$fwd', 'frame': $size + 4, 'mpps': c['mpps'], 'gbps_l2': c['gbps'],
                  'gbps_on_wire': c['gbps_on_wire'], 'source_mpps': g['mpps']}))"
}
results=$tmp/results.jsonl
: >"$results"
total=$((runs * 3 * 2)); done_n=0
progress() { done_n=$((done_n + 1)); printf '\r[%-30s] %d/%d %s' "$(printf '#%.0s' $(seq $((done_n * 30 / total))))" "$done_n" "$total" "$1" >&2; }
for r in $(seq "$runs"); do
    read -r eid caddr < <(o7s_up)
    [ -n "${caddr:-}" ] || { echo "bench-forward.sh: the o7s layer did not come up" >&2; exit 1; }
    for size in 60 1514; do
        measure o7s "$size" --eid "$((eid))" --addr "${caddr#0x}" >>"$results"; progress "o7s $size"
        # B's ports after each size: what the kernel dropped before the worker read it.
        ctl b port list --json >"$tmp/b-port-$r-$size.json"
    done
    ctl b ipcp list --json >"$tmp/b-ipcp-$r.json"
    kill_ns b; sleep 0.5
    ip netns exec "$n-b" taskset -c 1 "$bin/o7s-bench" xdp-fwd --in "$n-ba" --out "$n-bc" --dst-mac "$CB" \
        -d "$(python3 -c "print(2 * ($secs + 2.5) + 1)")" >"$tmp/fwd-$r.json" &
    fpid=$!
    sleep 0.5
    for size in 60 1514; do
        measure raw "$size" --eid "$((eid))" --addr "${caddr#0x}" >>"$results"; progress "raw $size"
    done
    wait "$fpid" || { echo "bench-forward.sh: the raw forwarder failed" >&2; exit 1; }
    for size in 60 1514; do
        measure kernel "$size" --kind ipv4 --src-ip 10.81.1.1 --dst-ip 10.81.2.3 >>"$results"; progress "kernel $size"
    done
done
echo >&2
mkdir -p "$root/bench-results"
out="$root/bench-results/forward-$(date -u +%Y%m%dT%H%M%SZ).json"
python3 - "$results" "$out" "$secs" "$runs" "$tmp" "$rps" <<'PY'
import json, sys, statistics, datetime, platform, glob
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
out, secs, runs, tmp, rps = sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
fig = {}
for fwd in ("o7s", "kernel", "raw"):
    for frame in (64, 1518):
        rs = [r for r in rows if r["forwarder"] == fwd and r["frame"] == frame]
        if not rs:
            continue
        med = lambda k: round(statistics.median(r[k] for r in rs), 4)
        fig.setdefault(fwd, {})[str(frame - 4 if frame == 1518 else frame)] = {
            "mpps": med("mpps"), "gbps_on_wire": med("gbps_on_wire"), "gbps_l2": med("gbps_l2"),
            "source_mpps": med("source_mpps"),
            # The sink counted (nearly) all the source sent: the source, not the hop, was the limit.
            "source_limited": med("mpps") >= 0.97 * med("source_mpps"),
            "runs_mpps": [round(r["mpps"], 4) for r in rs]}
ratio = lambda a, b, s: round(fig[a][s]["mpps"] / fig[b][s]["mpps"], 3) if a in fig and b in fig else None
b_stats = []
for p in sorted(glob.glob(f"{tmp}/b-ipcp-*.json")):
    u = [x for x in json.load(open(p)) if x["type"] == "unicast"]
    if u:
        b_stats.append({k: u[0].get(k) for k in ("dt_forwarded", "dt_forwarded_in_place", "dt_forwarded_one_pass", "dt_drop_n1", "dt_drop_no_route")})
# Frames lost at B per o7s run and size (the difference of the port counters across the
# measurement): dropped by the kernel before the worker read them (no fill-ring buffer, rx
# ring full) and frames the worker could not send (tx_xdp_dropped).
drop_keys = ("xdp_rx_dropped", "xdp_rx_ring_full", "tx_xdp_dropped")
def port_sums(path):
    ports = json.load(open(path))
    return {k: sum(x.get(k) or 0 for x in ports) for k in drop_keys + ("rx_xdp", "tx_xdp")}
b_losses = []
for r in range(1, runs + 1):
    before = {k: 0 for k in drop_keys + ("rx_xdp", "tx_xdp")}
    for size in (60, 1514):
        path = f"{tmp}/b-port-{r}-{size}.json"
        try:
            now = port_sums(path)
        except (OSError, ValueError):
            continue
        b_losses.append({"run": r, "frame": size if size == 1514 else 64,
                         **{k: now[k] - before[k] for k in now}})
        before = now
doc = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPUs, kernel {platform.release()}",
    "command": f"scripts/bench-forward.sh {int(secs)} {runs}",
    "setup": "A (source, CPU 0) - B (forwarder, CPU 1; its receive work on CPU 0 with the source" + (", RPS: on CPU 1" if rps == "1" else "") + ") - C (XDP count-and-drop sink); veth; medians of the runs",
    "rps_at_b": rps == "1",
    "frames": "64 = 60 bytes + FCS on the wire, 1514 = without FCS; Gbit/s on the wire adds FCS, preamble and gap (24 B)",
    "forwarders": fig,
    "ratios": {"o7s_vs_kernel_64": ratio("o7s", "kernel", "64"), "o7s_vs_raw_64": ratio("o7s", "raw", "64"),
               "o7s_vs_kernel_1514": ratio("o7s", "kernel", "1514"), "o7s_vs_raw_1514": ratio("o7s", "raw", "1514")},
    "goals": {"o7s_vs_kernel_64": ">= 1.2", "o7s_vs_raw_64": ">= 0.8"},
    "b_counters_o7s_runs": b_stats,
    "b_losses_o7s_runs": b_losses,
}
r = doc["ratios"]
doc["goals_met"] = {"o7s_vs_kernel_64": r["o7s_vs_kernel_64"] is not None and r["o7s_vs_kernel_64"] >= 1.2,
                    "o7s_vs_raw_64": r["o7s_vs_raw_64"] is not None and r["o7s_vs_raw_64"] >= 0.8}
open(out, "w").write(json.dumps(doc, indent=1) + "\n")
print(json.dumps(doc, indent=1))
print(f"written to {out}", file=sys.stderr)
PY
