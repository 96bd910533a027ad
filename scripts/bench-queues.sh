#!/usr/bin/env bash
# What an RX queue relayed by another worker costs (issue 23 item 4), in one invocation.
# Two namespaces A - B on a veth pair with two RX queues. B: o7sd with two workers
# (--core 0,1, XDP in driver mode, AF_XDP); its eth-dix port belongs to worker 0, which
# binds queue 0, while worker 1 binds queue 1 and hands its frames to worker 0
# (dataplane/src/queue_spread.rs). A: o7sd on AF_PACKET, its processes on CPU 0; XPS on
# A's device sends every frame through one TX queue, which on veth is B's RX queue of the
# same number. Measured for each queue, alternating, RUNS times: oping RTT (PINGS
# requests every 10 ms: p50, p99). (No flood: with two CPUs for A's worker and app and
# B's two workers and server, all spinning, a flood measures the scheduler: 140
# exchanges a second on either queue.) Then B again with O7S_DP_SPREAD_QUEUES=0 (worker 0 binds both
# queues, as before the spreading) as the baseline. B's `port list` after each phase
# shows which queue received what. JSON to bench-results/queues-<date>.json.
#   scripts/bench-queues.sh [PINGS=300] [RUNS=3]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
case "${1:-}" in -h|--help) sed -n '2,/^set -/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0;; esac
for a in "$@"; do case "$a" in ""|*[!0-9.]*) echo "bench-queues.sh: '$a' is not a number (--help says what the arguments are)" >&2; exit 2;; esac; done
pings=${1:-300}; runs=${2:-3}
[ "$(id -u)" = 0 ] || { echo "bench-queues.sh: needs root (namespaces, XDP)" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "bench-queues.sh: needs 2 CPUs (two workers)" >&2; exit 1; }
for t in ip taskset python3 timeout; do
    command -v "$t" >/dev/null || { echo "bench-queues.sh: $t is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
(cd "$root" && cargo build --release --locked -q -p o7s-control -p o7s-dataplane -p o7sctl -p oping)
bin=$root/target/release
n=$("$(dirname "$0")/netns.sh" unique bq 8)
tmp=$(mktemp -d /tmp/o7s-bench-queues.XXXXXX)
stop_all() {
    for s in a b; do for p in $(ip netns pids "$n-$s" 2>/dev/null); do kill "$p" 2>/dev/null || true; done; done
    sleep 0.5
    for s in a b; do for p in $(ip netns pids "$n-$s" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done; done
}
cleanup() {
    stop_all
    for s in a b; do ip netns del "$n-$s" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
for s in a b; do ip netns add "$n-$s"; ip -n "$n-$s" link set lo up; done
ip link add "$n-ab" numtxqueues 2 numrxqueues 2 netns "$n-a" type veth \
    peer name "$n-ba" numtxqueues 2 numrxqueues 2 netns "$n-b"
ip -n "$n-a" link set "$n-ab" up
ip -n "$n-b" link set "$n-ba" up
cat >"$tmp/a.conf" <<EOF
[eth-dix.e]
bootstrap="l"
dev="$n-ab"
EOF
cat >"$tmp/b.conf" <<EOF
[name."oping-server"]
prog=["$bin/oping"]
args=["-l", "-Q"]

[eth-dix.e]
bootstrap="l"
dev="$n-ba"
reg=["oping-server"]
EOF
on() { local s=$1; shift; ip netns exec "$n-$s" env O7S_RUNDIR="$tmp/run-$s" "$@"; }
up() { # spread (1 or 0)
    rm -rf "$tmp/run-a" "$tmp/run-b"; mkdir -p "$tmp/run-a" "$tmp/run-b"
    on b env O7S_DP_SPREAD_QUEUES="$1" "$bin/o7sd" --config "$tmp/b.conf" --rundir "$tmp/run-b" \
        --io af_xdp --xdp-mode driver --core 0,1 >/dev/null 2>>"$tmp/o7sd-b.log" &
    on a taskset -c 0 "$bin/o7sd" --config "$tmp/a.conf" --rundir "$tmp/run-a" --io af_packet \
        --core 0 >/dev/null 2>>"$tmp/o7sd-a.log" &
    for s in a b; do
        for _ in $(seq 100); do [ -S "$tmp/run-$s/o7sd.sock" ] && break; sleep 0.05; done
    done
    local ok=0
    for _ in $(seq 40); do
        if on a "$bin/oping" -n oping-server -c 3 -i 10ms -Q >/dev/null 2>&1; then ok=1; break; fi
        sleep 0.25
    done
    [ $ok = 1 ] || { echo "bench-queues.sh: A cannot reach oping-server; o7sd logs:" >&2; cat "$tmp"/o7sd-*.log >&2; exit 1; }
    local path
    path=$(on b "$bin/o7sctl" port list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["io_path"])')
    case "$path" in af_xdp*) ;; *) echo "bench-queues.sh: B's port is not on AF_XDP: $path" >&2; exit 1;; esac
}
steer() { # queue: A sends through that TX queue only (XPS, every CPU)
    local all; all=$(printf '%x' $(( (1 << $(nproc)) - 1 )))
    for i in 0 1; do
        on a sh -c "echo $([ "$i" = "$1" ] && echo "$all" || echo 0) > /sys/class/net/$n-ab/queues/tx-$i/xps_cpus"
    done
}
rtt() {
    on a taskset -c 0 "$bin/oping" -n oping-server -c "$pings" -i 10ms --json | python3 -c \
        'import json,sys; d=json.load(sys.stdin); r=d["rtt_ms"]; print(json.dumps({"n": d["received"], "p50": r["p50"], "p99": r["p99"]}))'
}
ports() { on b "$bin/o7sctl" port list --json; }
results=$tmp/results.jsonl
: >"$results"
total=$((runs * 2 * 2)); done_n=0
progress() { done_n=$((done_n + 1)); printf '\r[%-30s] %d/%d %-28s' "$(printf '#%.0s' $(seq $((done_n * 30 / total))))" "$done_n" "$total" "$1" >&2; }
row() { echo "{\"spread\": $1, \"queue\": $2, \"what\": \"$3\", \"v\": $4}" >>"$results"; progress "spread $1 queue $2 $3"; }
for spread in 1 0; do
    up "$spread"
    for r in $(seq "$runs"); do
        for q in 0 1; do
            steer "$q"
            row "$spread" "$q" rtt "$(rtt)"
        done
    done
    ports >"$tmp/ports-$spread.json"
    stop_all
done
echo >&2
mkdir -p "$root/bench-results"
out="$root/bench-results/queues-$(date -u +%Y%m%dT%H%M%SZ).json"
python3 - "$results" "$out" "$pings" "$runs" "$tmp" <<'PY'
import json, sys, statistics, datetime, platform, os
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
out, pings, runs, tmp = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
def cell(spread, q):
    rs = [r["v"] for r in rows if r["spread"] == spread and r["queue"] == q and r["what"] == "rtt"]
    return {"rtt_p50_ms": round(statistics.median(x["p50"] for x in rs), 4),
            "rtt_p99_ms": round(statistics.median(x["p99"] for x in rs), 4),
            "replies": sum(x["n"] for x in rs), "asked": pings * len(rs),
            "runs_p50_ms": [x["p50"] for x in rs], "runs_p99_ms": [x["p99"] for x in rs]}
figs = {"spread": {"queue0_owner": cell(1, 0), "queue1_relayed": cell(1, 1)},
        "baseline_one_worker_binds_both": {"queue0": cell(0, 0), "queue1": cell(0, 1)}}
s, b = figs["spread"], figs["baseline_one_worker_binds_both"]
ratios = {
    "relayed_over_owner_p50": round(s["queue1_relayed"]["rtt_p50_ms"] / s["queue0_owner"]["rtt_p50_ms"], 3),
    "relayed_over_baseline_queue1_p50": round(s["queue1_relayed"]["rtt_p50_ms"] / b["queue1"]["rtt_p50_ms"], 3),
    "relayed_over_owner_p99": round(s["queue1_relayed"]["rtt_p99_ms"] / s["queue0_owner"]["rtt_p99_ms"], 3),
    "relayed_over_baseline_queue1_p99": round(s["queue1_relayed"]["rtt_p99_ms"] / b["queue1"]["rtt_p99_ms"], 3),
}
def port(p):
    try:
        x = json.load(open(p))[0]
    except (OSError, ValueError, IndexError):
        return None
    return {k: x.get(k) for k in ("rx_xdp_per_queue", "rx_queues", "queue_relayed", "queue_relay_dropped", "io_path")}
doc = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, kernel {platform.release()}",
    "command": f"scripts/bench-queues.sh {pings} {runs}",
    "setup": "A (AF_PACKET, CPU 0) - B (two workers on CPUs 0 and 1, AF_XDP, XDP driver mode), veth with 2 queues; XPS at A picks B's RX queue; oping 64 B every 10 ms; medians of the runs",
    "figures": figs,
    "ratios": ratios,
    "b_ports": {"spread": port(f"{tmp}/ports-1.json"), "baseline": port(f"{tmp}/ports-0.json")},
}
open(out, "w").write(json.dumps(doc, indent=1) + "\n")
print(json.dumps(ratios, indent=1))
for k, v in figs.items():
    for q, c in v.items():
        print(f'{k} {q}: p50 {c["rtt_p50_ms"]} p99 {c["rtt_p99_ms"]} ms ({c["replies"]} of {c["asked"]} answered)')
print(f"written to {out}", file=sys.stderr)
PY
