#!/usr/bin/env bash
# Round-trip time on one link and through a forwarding hop, o7s against the kernel, in one
# invocation (issue 23, item 5). Three namespaces A - B - C (veth A-B, B-C):
#   o7s     one unicast layer over eth-dix N-1 layers on AF_XDP (o7sd --io af_xdp in all
#           three); `oping -n oping-b` (A to B, one link) and `oping -n oping-c` (A to C,
#           forwarded by B's data-plane worker);
#   kernel  IPv4 on the same veths (B routes, ip_forward=1): `o7s-bench udp-ping` to a
#           `o7s-bench udp-echo-server` at B (one link) and at C (routed through B): the
#           best a path through user space can expect without spinning apps;
#   icmp    kernel ping A to B and A to C, for context.
# CPUs: A's and C's processes (o7sd, its worker, the apps, the UDP client and servers) on
# CPU 0, B's on CPU 1 (taskset, o7sd --core). Each run measures every path in turn (PINGS
# round trips every 10 ms); medians of the runs' p50 and p99, every run in the JSON. Then
# the o7s layer again with busy polling (o7sd --busy-poll: the workers never sleep; A's and
# C's share CPU 0, so "through B" has two spinning workers on one CPU), against the kernel
# figures of the first phase (measured without spinning workers beside them).
# Goals (issue 23): oping p50 at most 1.0x the kernel UDP echo with the default (adaptive)
# polling, at most 0.5x with busy polling, on one link and through B.
# JSON to bench-results/rtt-<date>.json.
#   scripts/bench-rtt.sh [PINGS=300] [RUNS=3]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
case "${1:-}" in -h|--help) sed -n '2,/^set -/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0;; esac
for a in "$@"; do case "$a" in ""|*[!0-9.]*) echo "bench-rtt.sh: '$a' is not a number (--help says what the arguments are)" >&2; exit 2;; esac; done
pings=${1:-300}; runs=${2:-3}
[ "$(id -u)" = 0 ] || { echo "bench-rtt.sh: needs root (namespaces, XDP)" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "bench-rtt.sh: needs 2 CPUs (A and C on CPU 0, B on CPU 1)" >&2; exit 1; }
for t in ip taskset python3 ping timeout; do
    command -v "$t" >/dev/null || { echo "bench-rtt.sh: $t is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
# O7S_RTT_ARGS="--spin-us 0": extra o7sd arguments for both phases.
# O7S_BENCH_BIN=DIR: the binaries of DIR (another build, for an old-vs-new comparison)
# instead of this tree's release build.
if [ -n "${O7S_BENCH_BIN:-}" ]; then
    bin=$O7S_BENCH_BIN
    for b in o7sd o7s-dataplane o7sctl oping o7s-bench; do
        [ -x "$bin/$b" ] || { echo "bench-rtt.sh: $bin/$b is missing (O7S_BENCH_BIN)" >&2; exit 1; }
    done
else
    (cd "$root" && cargo build --release --locked -q -p o7s-control -p o7s-dataplane -p o7sctl -p oping -p o7s-bench)
    bin=$root/target/release
fi
n=$("$(dirname "$0")/netns.sh" unique rt 8)
tmp=$(mktemp -d /tmp/o7s-bench-rtt.XXXXXX)
kill_ns() { for p in $(ip netns pids "$n-$1" 2>/dev/null); do kill "$p" 2>/dev/null || true; done; }
stop_all() { for s in a b c; do kill_ns "$s"; done; sleep 0.5; for s in a b c; do
    for p in $(ip netns pids "$n-$s" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done; done; }
cleanup() {
    stop_all
    for s in a b c; do ip netns del "$n-$s" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
for s in a b c; do ip netns add "$n-$s"; ip -n "$n-$s" link set lo up; done
ip link add "$n-ab" netns "$n-a" type veth peer name "$n-ba" netns "$n-b"
ip link add "$n-bc" netns "$n-b" type veth peer name "$n-cb" netns "$n-c"
for d in a:ab b:ba b:bc c:cb; do ip -n "$n-${d%%:*}" link set "$n-${d##*:}" up; done
# The kernel's path (o7s ignores IP).
ip -n "$n-a" addr add 10.83.1.1/24 dev "$n-ab"
ip -n "$n-b" addr add 10.83.1.2/24 dev "$n-ba"
ip -n "$n-b" addr add 10.83.2.2/24 dev "$n-bc"
ip -n "$n-c" addr add 10.83.2.3/24 dev "$n-cb"
ip -n "$n-a" route add 10.83.2.0/24 via 10.83.1.2
ip -n "$n-c" route add 10.83.1.0/24 via 10.83.2.2
ip netns exec "$n-b" sysctl -qw net.ipv4.ip_forward=1

cpu_of() { [ "$1" = b ] && echo 1 || echo 0; }
cat >"$tmp/a.conf" <<EOF
[eth-dix.e]
bootstrap="eth"
dev="$n-ab"
reg=["ua"]

[unicast.ua]
bootstrap="rtt"
autobind=true
EOF
cat >"$tmp/b.conf" <<EOF
[name."oping-b"]
prog=["$bin/oping"]

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
reg=["oping-b"]
EOF
cat >"$tmp/c.conf" <<EOF
[name."oping-c"]
prog=["$bin/oping"]

[eth-dix.e]
bootstrap="eth"
dev="$n-cb"

[unicast.uc]
enrol="ub"
autobind=true
conn=["ub"]
reg=["oping-c"]
EOF
on() { local s=$1; shift; ip netns exec "$n-$s" env O7S_RUNDIR="$tmp/run-$s" taskset -c "$(cpu_of "$s")" "$@"; }
ctl() { local s=$1; shift; on "$s" "$bin/o7sctl" "$@"; }
uni() { # side, python expression over the unicast IPCP's listing u
    ctl "$1" ipcp list --json | python3 -c "
import json,sys
u=[x for x in json.load(sys.stdin) if x['type']=='unicast']
print($2 if u else '-')" 2>/dev/null || echo -
}
up() { # o7sd args...: the layer A - B - C and the oping servers at B and C
    local s
    for s in a b c; do
        rm -rf "$tmp/run-$s"; mkdir -p "$tmp/run-$s"
        on "$s" "$bin/o7sd" --config "$tmp/$s.conf" --rundir "$tmp/run-$s" --io af_xdp \
            --core "$(cpu_of "$s")" "$@" >/dev/null 2>>"$tmp/o7sd-$s.log" &
        for _ in $(seq 100); do [ -S "$tmp/run-$s/o7sd.sock" ] && break; sleep 0.05; done
        [ "$s" = a ] && continue
        for _ in $(seq 150); do [ "$(uni "$s" "u[0]['state']")" = enrolled ] && break; sleep 0.1; done
        [ "$(uni "$s" "u[0]['state']")" = enrolled ] || {
            echo "bench-rtt.sh: $s did not enrol; o7sd logs:" >&2; cat "$tmp"/o7sd-*.log >&2; exit 1; }
    done
    on b "$bin/oping" -l -Q >/dev/null 2>&1 &
    on c "$bin/oping" -l -Q >/dev/null 2>&1 &
    # A reaches both names (routes and directory), checked with a few pings.
    for name in oping-b oping-c; do
        local ok=0
        for _ in $(seq 40); do
            if on a "$bin/oping" -n "$name" -c 3 -i 10ms -Q >/dev/null 2>&1; then ok=1; break; fi
            sleep 0.5
        done
        [ $ok = 1 ] || { echo "bench-rtt.sh: A cannot reach $name over o7s; o7sd logs:" >&2; cat "$tmp"/o7sd-*.log >&2; exit 1; }
    done
}
icmp() { # destination IP -> {"n", "p50", "p99", "avg"}
    on a ping -c "$pings" -i 0.01 "$1" | sed -n 's/.*time=\([0-9.]*\) ms/\1/p' | sort -n |
        awk '{v[NR]=$1; s+=$1} END {printf "{\"n\": %d, \"p50\": %s, \"p99\": %s, \"avg\": %.4f}", NR, v[int(NR*0.5+0.5)], v[int(NR*0.99+0.5)], s/NR}'
}
udp_echo() { # side of the server, its IP
    on "$1" timeout $((pings / 50 + 30)) "$bin/o7s-bench" udp-echo-server "$2:7777" &
    local spid=$!
    sleep 0.2
    on a "$bin/o7s-bench" udp-ping "$2:7777" -c "$pings" -i 10000 | python3 -c \
        'import json,sys; d=json.load(sys.stdin); r=d["rtt_ms"]; print(json.dumps({"n": d["n"], "p50": r["p50"], "p99": r["p99"], "avg": r["mean"]}))'
    kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true
}
oping() { # server name
    on a "$bin/oping" -n "$1" -c "$pings" -i 10ms --json | python3 -c \
        'import json,sys; d=json.load(sys.stdin); r=d["rtt_ms"]; print(json.dumps({"n": d["received"], "p50": r["p50"], "p99": r["p99"], "avg": r["avg"]}))'
}
results=$tmp/results.jsonl
: >"$results"
total=$((runs * 6 + runs * 2)); done_n=0
progress() { done_n=$((done_n + 1)); printf '\r[%-30s] %d/%d %-28s' "$(printf '#%.0s' $(seq $((done_n * 30 / total))))" "$done_n" "$total" "$1" >&2; }
row() { # mode path what json
    echo "{\"mode\": \"$1\", \"path\": \"$2\", \"what\": \"$3\", \"rtt_ms\": $4}" >>"$results"; progress "$1 $2 $3"; }

# shellcheck disable=SC2086 # O7S_RTT_ARGS: extra o7sd arguments, word-split on purpose
up ${O7S_RTT_ARGS:-}
for r in $(seq "$runs"); do
    row adaptive one_link kernel_udp_echo "$(udp_echo b 10.83.1.2)"
    row adaptive one_link oping "$(oping oping-b)"
    row adaptive one_link icmp "$(icmp 10.83.1.2)"
    row adaptive through_b kernel_udp_echo "$(udp_echo c 10.83.2.3)"
    row adaptive through_b oping "$(oping oping-c)"
    row adaptive through_b icmp "$(icmp 10.83.2.3)"
done
ctl b ipcp list --json >"$tmp/b-ipcp-adaptive.json"
stop_all
# shellcheck disable=SC2086
up ${O7S_RTT_ARGS:-} --busy-poll
for r in $(seq "$runs"); do
    row busy_poll one_link oping "$(oping oping-b)"
    row busy_poll through_b oping "$(oping oping-c)"
done
ctl b ipcp list --json >"$tmp/b-ipcp-busy.json"
echo >&2
stop_all
mkdir -p "$root/bench-results"
out="$root/bench-results/rtt-$(date -u +%Y%m%dT%H%M%SZ).json"
python3 - "$results" "$out" "$pings" "$runs" "$tmp" <<'PY'
import json, sys, statistics, datetime, platform, os
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
out, pings, runs, tmp = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
fig = {}
for r in rows:
    fig.setdefault(r["path"], {}).setdefault(f'{r["what"]}_{r["mode"]}' if r["what"] == "oping" else r["what"], []).append(r["rtt_ms"])
summary = {}
for path, whats in fig.items():
    for what, rs in whats.items():
        summary.setdefault(path, {})[what] = {
            "p50_ms": round(statistics.median(x["p50"] for x in rs), 4),
            "p99_ms": round(statistics.median(x["p99"] for x in rs), 4),
            "replies": sum(x["n"] for x in rs), "asked": pings * len(rs),
            "runs_p50_ms": [x["p50"] for x in rs], "runs_p99_ms": [x["p99"] for x in rs]}
ratios, met = {}, {}
for path, s in summary.items():
    k = s.get("kernel_udp_echo")
    for mode, goal in (("adaptive", 1.0), ("busy_poll", 0.5)):
        o = s.get(f"oping_{mode}")
        if k and o and k["p50_ms"] > 0:
            ratios[f"{path}_oping_{mode}_p50_over_udp_echo"] = round(o["p50_ms"] / k["p50_ms"], 3)
            ratios[f"{path}_oping_{mode}_p99_over_udp_echo"] = round(o["p99_ms"] / k["p99_ms"], 3)
            met[f"{path}_{mode}"] = o["p50_ms"] / k["p50_ms"] <= goal
def b_counters(p):
    try:
        u = [x for x in json.load(open(p)) if x["type"] == "unicast"]
    except (OSError, ValueError):
        return None
    return {k: u[0].get(k) for k in ("dt_forwarded", "dt_forwarded_in_place", "dt_delivered")} if u else None
doc = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, kernel {platform.release()}",
    "command": f"scripts/bench-rtt.sh {pings} {runs}",
    "binaries": os.environ.get("O7S_BENCH_BIN") or "this tree's release build",
    "o7sd_args": os.environ.get("O7S_RTT_ARGS", ""),
    "setup": "A (CPU 0) - B (CPU 1) - C (CPU 0), veth; o7s: one unicast layer over eth-dix on AF_XDP, oping 64 B every 10 ms; kernel: UDP echo (o7s-bench) and ICMP, B routing; medians of the runs' p50 and p99",
    "busy_poll_note": "with --busy-poll A's and C's workers spin on the same CPU 0; the kernel figures are those of the first phase",
    "paths": summary,
    "ratios": ratios,
    "goals": {"adaptive": "oping p50 <= 1.0 x kernel UDP echo", "busy_poll": "oping p50 <= 0.5 x kernel UDP echo"},
    "goals_met": met,
    "b_forwarded": {"adaptive": b_counters(f"{tmp}/b-ipcp-adaptive.json"), "busy_poll": b_counters(f"{tmp}/b-ipcp-busy.json")},
}
open(out, "w").write(json.dumps(doc, indent=1) + "\n")
print(json.dumps({k: doc[k] for k in ("ratios", "goals_met")}, indent=1))
for path, s in summary.items():
    print(path + ": " + ", ".join(f'{w} p50 {v["p50_ms"]} p99 {v["p99_ms"]} ms' for w, v in sorted(s.items())))
print(f"written to {out}", file=sys.stderr)
PY
