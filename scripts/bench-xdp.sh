#!/usr/bin/env bash
# The eth-dix layer's two I/O paths, AF_XDP and AF_PACKET, measured in one invocation on two
# identical veth pairs between namespaces, side by side (runs alternate between the paths,
# so that the hypervisor's steal time hits both alike). Each pair is two "hosts": host A's
# data-plane worker and apps pinned to CPU 0, host B's to CPU 1 (o7sd --core, taskset).
#   1. RTT, RUNS runs of PINGS each (medians of the runs' p50 and p99): kernel ICMP ping and
#      oping (adaptive polling) on each pair; then oping and ICMP with busy polling
#      (o7sd --busy-poll) on the AF_XDP pair. A second baseline: a kernel
#      UDP echo between two processes on the same veth (client CPU 0, server CPU 1), the
#      best any path through user space can expect without spinning apps.
#   2. ocbr flood, one flow, 64 and 1400 bytes: delivered pps, Mbit/s, loss; RUNS runs per
#      path, alternating; medians.
#   3. ocbr paced at 90 % of the AF_XDP path's median 1400-byte flood goodput (--spin):
#      delivered Mbit/s and SDUs lost, RUNS runs per path.
#   4. After everything: the AF_XDP port's UMEM accounting and XSK drops.
#   5. The spread: every run's flood figure with min/median/max, the per-run 64 B ratios,
#      and how many alternating runs a 10 % change of that ratio needs to be seen.
# The AF_XDP ports' UMEMs go on 2 MiB hugepages as the README recommends: the script reserves
# 50 more (vm.nr_hugepages: each host's worker has a UMEM of 48 MiB, room for two ports of
# one RX queue, 24 hugepages; two hosts on the AF_XDP pair, and two spare) for the run and restores the old value at exit;
# O7S_BENCH_HUGEPAGES=0 leaves them out (the UMEM is then on 4 KiB pages; "umem_pages" in the
# JSON says which was used).
# JSON to bench-results/xdp-<date>.json (goals and whether they are met included).
#   scripts/bench-xdp.sh [PINGS=300] [SECONDS=3] [RUNS=5]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
case "${1:-}" in -h|--help) sed -n '2,/^set -/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0;; esac
for a in "$@"; do case "$a" in ""|*[!0-9.]*) echo "bench-xdp.sh: '$a' is not a number (--help says what the arguments are)" >&2; exit 2;; esac; done
for t in ip python3 ping taskset timeout cargo; do command -v "$t" >/dev/null || { echo "bench-xdp.sh: $t is missing (scripts/setup.sh installs it)" >&2; exit 1; }; done
pings=${1:-300}; secs=${2:-3}; runs=${3:-5}
[ "$(id -u)" = 0 ] || { echo "bench-xdp.sh: needs root" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "bench-xdp.sh: needs 2 CPUs (host A on CPU 0, host B on CPU 1)" >&2; exit 1; }
# O7S_BENCH_BIN=DIR: the binaries of DIR (another build, for an old-vs-new comparison)
# instead of this tree's release build.
if [ -n "${O7S_BENCH_BIN:-}" ]; then
    bin=$O7S_BENCH_BIN
    for b in o7sd o7s-dataplane o7sctl oping ocbr o7s-bench; do
        [ -x "$bin/$b" ] || { echo "bench-xdp.sh: $bin/$b is missing (O7S_BENCH_BIN)" >&2; exit 1; }
    done
else
    (cd "$root" && cargo build --release --locked -q -p o7s-control -p o7s-dataplane -p oping -p ocbr -p o7sctl -p o7s-bench)
    bin=$root/target/release
fi
tmp=$(mktemp -d /tmp/o7s-bench-xdp.XXXXXX)
X=$("$(dirname "$0")/netns.sh" unique ox 10); P=$("$(dirname "$0")/netns.sh" unique op 10)
declare -A IO=([$X]=af_xdp [$P]=af_packet)
pids_of() { for s in a b; do ip netns pids "$1-$s" 2>/dev/null || true; done; }
stop_pair() { for p in $(pids_of "$1"); do kill "$p" 2>/dev/null || true; done; sleep 0.5; }
hp_before=$(cat /proc/sys/vm/nr_hugepages); hp_added=0
# Gives back the hugepages this run added (not an absolute value: another run may have
# reserved its own meanwhile).
hp_give_back() {
    [ "$hp_added" -gt 0 ] || return 0
    local now; now=$(cat /proc/sys/vm/nr_hugepages)
    echo $(( now > hp_added ? now - hp_added : 0 )) > /proc/sys/vm/nr_hugepages
}
cleanup() { for n in $X $P; do stop_pair "$n"; "$root/scripts/netns.sh" down "$n" >/dev/null 2>&1 || true; done; rm -rf "$tmp"
    hp_give_back; }
trap cleanup EXIT
# Two workers' UMEMs of 2 x 12288 2-KiB frames (48 MiB = 24 hugepages each), and two spare.
if [ "${O7S_BENCH_HUGEPAGES:-1}" != 0 ]; then
    echo $((hp_before + 50)) > /proc/sys/vm/nr_hugepages
    hp_added=$(( $(cat /proc/sys/vm/nr_hugepages) - hp_before ))
fi
run() { local n=$1 s=$2 cpu; shift 2; cpu=$([ "$s" = a ] && echo 0 || echo 1)
    ip netns exec "$n-$s" env O7S_RUNDIR="$tmp/$n/run-$s" taskset -c "$cpu" "$@"; }
start_pair() { # NAME [o7sd args]: daemons, ocbr and oping servers (host B)
    local n=$1; shift
    mkdir -p "$tmp/$n"
    cat > "$tmp/$n/b.conf" <<CONF
[name."oping-server"]
prog=["$bin/oping"]
[name."ocbr"]
prog=["$bin/ocbr"]
[eth-dix.dix]
bootstrap="bench"
dev="$n-vb"
reg=["oping-server", "ocbr"]
CONF
    printf '[eth-dix.dix]\nbootstrap="bench"\ndev="%s"\n' "$n-va" > "$tmp/$n/a.conf"
    for s in a b; do
        cpu=$([ "$s" = a ] && echo 0 || echo 1)
        rm -rf "$tmp/$n/run-$s"
        ip netns exec "$n-$s" env O7S_RUNDIR="$tmp/$n/run-$s" "$bin/o7sd" --config "$tmp/$n/$s.conf" \
            --io "${IO[$n]}" --core "$cpu" "$@" > "$tmp/$n/o7sd-$s.log" 2>&1 &
    done
    for s in a b; do for _ in $(seq 100); do [ -S "$tmp/$n/run-$s/o7sd.sock" ] && break; sleep 0.05; done; done
    sleep 0.3
    run "$n" b "$bin/ocbr" -l --json > "$tmp/$n/ocbr.json" 2>&1 &
    run "$n" b "$bin/oping" -l -Q > /dev/null 2>&1 &
    sleep 0.3
}
for n in $X $P; do
    "$root/scripts/netns.sh" up "$n"
    ip -n "$n-a" addr add 169.254.82.1/24 dev "$n-va"
    ip -n "$n-b" addr add 169.254.82.2/24 dev "$n-vb"
    start_pair "$n"
done
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
icmp() { # NAME -> {"p50", "p99"} of kernel ping over that pair's veth
    ip netns exec "$1-a" taskset -c 0 ping -c "$pings" -i 0.01 169.254.82.2 | sed -n 's/.*time=\([0-9.]*\) ms/\1/p' | sort -n |
        awk '{v[NR]=$1; s+=$1} END {printf "{\"n\": %d, \"p50\": %s, \"p99\": %s, \"avg\": %.4f}", NR, v[int(NR*0.5+0.5)], v[int(NR*0.99+0.5)], s/NR}'
}
udp_echo() { # NAME -> RTT of a kernel UDP echo between the pair's hosts (o7s-bench)
    run "$1" b timeout $((pings / 50 + 30)) "$bin/o7s-bench" udp-echo-server 169.254.82.2:7777 &
    sleep 0.2
    run "$1" a "$bin/o7s-bench" udp-ping 169.254.82.2:7777 -c "$pings" -i 10000 | python3 -c \
        'import json,sys; d=json.load(sys.stdin); r=d["rtt_ms"]; print(json.dumps({"n": d["n"], "p50": r["p50"], "p99": r["p99"], "avg": r["mean"]}))'
    "$root/scripts/netns.sh" signal "$1-b" TERM o7s-bench || true
}
oping() { run "$1" a "$bin/oping" -n oping-server -c "$pings" -i 10ms --json | python3 -c \
    'import json,sys; d=json.load(sys.stdin); r=d["rtt_ms"]; print(json.dumps({"n": d["received"], "p50": r["p50"], "p99": r["p99"], "avg": r["avg"]}))'; }
# One ocbr run on pair NAME: SIZE, then ocbr client args; prints a JSON object.
ocbr_run() {
    local n=$1 size=$2; shift 2
    local before; before=$(wc -l < "$tmp/$n/ocbr.json")
    local cl; cl=$(run "$n" a "$bin/ocbr" -n ocbr -s "$size" -d "$secs" --json "$@")
    for _ in $(seq 100); do [ "$(wc -l < "$tmp/$n/ocbr.json")" -gt "$before" ] && break; sleep 0.1; done
    [ "$(wc -l < "$tmp/$n/ocbr.json")" -gt "$before" ] || { echo "bench-xdp.sh: the ocbr server wrote no result for this run within 10 s" >&2; exit 1; }
    local sv; sv=$(tail -1 "$tmp/$n/ocbr.json")
    python3 -c "
import json
c = json.loads('$cl'); s = json.loads('$sv')
lost = c['sent'] - s['received']
print(json.dumps({'sent': c['sent'], 'received': s['received'], 'lost': lost, 'loss_pct': round(100 * lost / max(c['sent'], 1), 3),
                  'pps': round(s['pps']), 'mbps': round(s['mbps'], 1), 'offered_mbps': round(c['mbps'], 1)}))"
}

rtt_once() { echo "{\"icmp_ms\": $(icmp "$1"), \"udp_echo_ms\": $(udp_echo "$1"), \"oping_ms\": $(oping "$1")}"; }
declare -A rr=([$X]="" [$P]="")
for r in $(seq "$runs"); do
    for n in $X $P; do
        echo "RTT (adaptive polling) ${IO[$n]}, run $r/$runs ..." >&2
        rr[$n]="${rr[$n]}$(rtt_once "$n"),"
    done
done
rtt="{\"af_xdp\": [${rr[$X]%,}], \"af_packet\": [${rr[$P]%,}]}"

flood="{"
for size in 64 1400; do
    declare -A rs=([$X]="" [$P]="")
    for r in $(seq "$runs"); do
        for n in $X $P; do
            echo "flood ${IO[$n]} $size B, run $r/$runs ..." >&2
            rs[$n]="${rs[$n]}$(ocbr_run "$n" "$size" -f),"
        done
    done
    flood="$flood\"$size\": {\"af_xdp\": [${rs[$X]%,}], \"af_packet\": [${rs[$P]%,}]},"
done
flood="${flood%,}}"

rate=$(python3 -c "
import json, statistics
f = json.loads('''$flood''')
print(round(0.9 * statistics.median(r['mbps'] for r in f['1400']['af_xdp']), 1))")
paced="{\"rate_mbps\": $rate,"
declare -A ps=([$X]="" [$P]="")
for r in $(seq "$runs"); do
    for n in $X $P; do
        echo "paced ${IO[$n]} 1400 B at $rate Mbit/s, run $r/$runs ..." >&2
        ps[$n]="${ps[$n]}$(ocbr_run "$n" 1400 -r "${rate}M" --spin),"
    done
done
paced="$paced \"af_xdp\": [${ps[$X]%,}], \"af_packet\": [${ps[$P]%,}]}"

port=$(run "$X" b "$bin/o7sctl" port list --json)
echo "RTT with busy polling (AF_XDP pair) ..." >&2
stop_pair "$X"
start_pair "$X" --busy-poll
polling=$(run "$X" b "$bin/o7sctl" stats --json)
busy=""
for r in $(seq "$runs"); do
    echo "RTT (busy polling) af_xdp, run $r/$runs ..." >&2
    busy="$busy$(rtt_once "$X"),"
done
busy="[${busy%,}]"
stop_pair "$X"

mkdir -p "$root/bench-results"
out="$root/bench-results/xdp-$(date -u +%Y%m%dT%H%M%SZ).json"
python3 - "$out" <<PY
import json, math, statistics, sys
rtt_runs = json.loads('''$rtt'''); flood = json.loads('''$flood'''); paced = json.loads('''$paced''')
busy_runs = json.loads('''$busy'''); port = json.loads('''$port''')[0]
def med_rtt(runs):  # medians over the runs of each run's p50 and p99; pings summed
    return {m: {"p50": statistics.median(r[m]["p50"] for r in runs), "p99": statistics.median(r[m]["p99"] for r in runs),
                "n": sum(r[m]["n"] for r in runs), "runs": len(runs)} for m in ("icmp_ms", "udp_echo_ms", "oping_ms")}
rtt = {io: med_rtt(rs) for io, rs in rtt_runs.items()}
busy = med_rtt(busy_runs); busy["o7sctl_stats"] = json.loads('''$polling''')
med = lambda rs, k: statistics.median(r[k] for r in rs)
summary = {}
for size in ("64", "1400"):
    summary[size] = {io: {k: med(flood[size][io], k) for k in ("pps", "mbps", "loss_pct")} for io in ("af_xdp", "af_packet")}
pps_ratio = summary["64"]["af_xdp"]["pps"] / max(summary["64"]["af_packet"]["pps"], 1e-9)
# The spread (issue 23 item 6): every run's figure, min/median/max, and how many alternating
# runs it takes to see a 10 % change of the 64 B AF_XDP/AF_PACKET ratio (two standard errors
# of the mean of the per-run ratios, run r of one path against run r of the other, below
# 10 % of that mean).
def spread(values):
    v = sorted(values)
    m = statistics.median(v)
    return {"runs": values, "min": v[0], "median": m, "max": v[-1],
            "max_minus_min_over_median": round((v[-1] - v[0]) / m, 3) if m else None}
spreads = {size: {io: spread([r["pps"] for r in flood[size][io]]) for io in ("af_xdp", "af_packet")} for size in ("64", "1400")}
ratios = [x["pps"] / max(p["pps"], 1e-9) for x, p in zip(flood["64"]["af_xdp"], flood["64"]["af_packet"])]
ratio_spread = spread([round(r, 3) for r in ratios])
if len(ratios) >= 2:
    mean_r, sd_r = statistics.mean(ratios), statistics.stdev(ratios)
    ratio_spread["mean"] = round(mean_r, 3)
    ratio_spread["stdev"] = round(sd_r, 3)
    ratio_spread["runs_for_10pct_change"] = max(2, math.ceil((20 * sd_r / mean_r) ** 2))
    ratio_spread["detectable_change_pct_with_these_runs"] = round(200 * sd_r / mean_r / len(ratios) ** 0.5, 1)
paced_x = {"mbps": med(paced["af_xdp"], "mbps"), "lost": med(paced["af_xdp"], "lost"),
           "runs_with_zero_loss": sum(1 for r in paced["af_xdp"] if r["lost"] == 0), "runs": len(paced["af_xdp"])}
paced_p = {"mbps": med(paced["af_packet"], "mbps"), "lost": med(paced["af_packet"], "lost"),
           "runs_with_zero_loss": sum(1 for r in paced["af_packet"] if r["lost"] == 0), "runs": len(paced["af_packet"])}
rx = rtt["af_xdp"]
goals = {
    "pps_64_af_xdp_over_af_packet": {"value": round(pps_ratio, 3), "goal": ">= 1.4", "met": pps_ratio >= 1.4},
    "paced_1400_af_xdp": {"value": paced_x, "goal": ">= 4000 Mbit/s (median), zero loss in every run",
                          "met": paced_x["mbps"] >= 4000 and paced_x["runs_with_zero_loss"] == paced_x["runs"]},
    "oping_p50_over_icmp_adaptive": {"value": round(rx["oping_ms"]["p50"] / rx["icmp_ms"]["p50"], 3), "goal": "<= 1.5",
                                     "met": rx["oping_ms"]["p50"] <= 1.5 * rx["icmp_ms"]["p50"]},
    "oping_p50_over_icmp_busy_poll": {"value": round(busy["oping_ms"]["p50"] / busy["icmp_ms"]["p50"], 3), "goal": "<= 1.5",
                                      "met": busy["oping_ms"]["p50"] <= 1.5 * busy["icmp_ms"]["p50"]},
    "context_kernel_udp_echo_p50_over_icmp": {"value": round(rx["udp_echo_ms"]["p50"] / rx["icmp_ms"]["p50"], 3),
                                              "goal": "none: what two user-space processes get from the kernel"},
    "context_oping_p50_over_kernel_udp_echo": {"adaptive": round(rx["oping_ms"]["p50"] / rx["udp_echo_ms"]["p50"], 3),
                                               "busy_poll": round(busy["oping_ms"]["p50"] / busy["udp_echo_ms"]["p50"], 3),
                                               "goal": "none"},
}
doc = {"date": "$(date -u +%FT%TZ)", "machine": "$(nproc) vCPU, $(uname -r)", "command": "scripts/bench-xdp.sh $pings $secs $runs", "binaries": "${O7S_BENCH_BIN:-target/release}",
       "setup": "two veth pairs side by side (af_xdp, af_packet); host A = CPU 0 (o7sd --core 0, client apps), host B = CPU 1; XDP skb mode, copy mode",
       "rtt": rtt, "rtt_busy_poll_af_xdp": busy, "rtt_runs": rtt_runs, "rtt_busy_poll_runs": busy_runs, "flood_runs": flood, "flood_medians": summary, "paced_1400": paced,
       "paced_1400_medians": {"af_xdp": paced_x, "af_packet": paced_p},
       "af_xdp_port_after": {k: port.get(k) for k in ("rx_xdp", "xdp_redirected", "umem_frames_accounted", "tx_xdp_dropped")},
       "umem_pages": "2 MiB hugepages" if "UMEM on 2 MiB hugepages" in port.get("io_path", "") else "4 KiB pages",
       "spread": {"flood_pps": spreads, "ratio_64_af_xdp_over_af_packet": ratio_spread},
       "goals": goals}
open(sys.argv[1], "w").write(json.dumps(doc, indent=1))
print(json.dumps({"flood_medians": summary, "ratio_64_spread": ratio_spread, "paced_1400_medians": doc["paced_1400_medians"], "goals": goals,
                  "af_xdp_port_after": doc["af_xdp_port_after"], "umem_pages": doc["umem_pages"], "file": sys.argv[1]}, indent=1))
PY
