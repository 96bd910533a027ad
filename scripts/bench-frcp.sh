#!/usr/bin/env bash
# Goodput of a reliable flow (FRCP with retransmission, `-q data`) against a raw flow and
# against kernel TCP on the same path, at 0 % and at LOSS % random loss, in one invocation
# (issue 27). Two namespaces joined by a veth pair, release builds, SDUs of 1400 bytes:
#   raw    ocbr -q raw, flat out: what the server receives (loss is not repaired)
#   frcp   ocbr -q data, flat out: every SDU, in order (the server checks sequence numbers
#          and the payload pattern: lost, out_of_order and corrupt must be 0)
#   tcp    benches' o7s-tcp-goodput (digests compared at both ends)
# Loss: o7s frames are dropped by the worker's impairment (`o7sctl port set e loss R`, on
# both ports: data one way, ACKs the other); TCP segments by an nftables rule in both
# namespaces (`numgen random mod 10000 < R*100 drop` on input): the same rate, both ways.
# (nftables cannot drop o7s frames: XDP takes them before the netdev hooks.) TSO, GSO and
# GRO are off on the veths, so TCP's segments are the packets on the wire.
# Each figure is the median of RUNS runs, the runs alternating raw, frcp, tcp.
# Writes JSON with every run, the medians and the ratios to bench-results/frcp-<date>.json
# (or OUT). Goals (issue 27): at 0 % loss frcp >= 0.9x raw; at LOSS % frcp ahead of tcp.
#   scripts/bench-frcp.sh [SECONDS=5] [LOSS=1] [RUNS=3] [OUT]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
case "${1:-}" in -h|--help) sed -n '2,/^set -/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0;; esac
for a in "${@:1:3}"; do case "$a" in ""|*[!0-9.]*) echo "bench-frcp.sh: '$a' is not a number (--help says what the arguments are)" >&2; exit 2;; esac; done
secs=${1:-5}; loss=${2:-1}; runs=${3:-3}
out=${4:-$root/bench-results/frcp-$(date -u +%Y%m%dT%H%M%SZ).json}
[ "$(id -u)" = 0 ] || { echo "bench-frcp.sh: needs root (namespaces, XDP)" >&2; exit 1; }
missing=""
for t in ip nft ethtool python3 cargo; do command -v "$t" >/dev/null 2>&1 || missing="$missing $t"; done
[ -z "$missing" ] || { echo "bench-frcp.sh: missing:$missing (scripts/setup.sh installs them)" >&2; exit 1; }
[[ "$secs" =~ ^[0-9]+$ && "$runs" =~ ^[0-9]+$ && "$loss" =~ ^[0-9]+(\.[0-9]+)?$ ]] \
    || { echo "bench-frcp.sh: SECONDS and RUNS are whole numbers, LOSS a percentage (1 or 0.5)" >&2; exit 2; }
bin=$root/target/release
echo "building (release)..."
(cd "$root" && cargo build --release --locked -q -p o7s-control -p o7s-dataplane -p o7sctl -p ocbr -p o7s-bench)

n=$("$(dirname "$0")/netns.sh" unique bf 8)
tmp=$(mktemp -d /tmp/o7s-bench-frcp.XXXXXX)
cleanup() {
    for s in a b; do
        for p in $(ip netns pids "$n-$s" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$n-$s" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
run() { local s=$1; shift; O7S_RUNDIR="$tmp/run-$s" ip netns exec "$n-$s" "$@"; }

for s in a b; do ip netns add "$n-$s"; ip -n "$n-$s" link set lo up; mkdir -p "$tmp/run-$s"; done
ip link add "$n-a" netns "$n-a" type veth peer name "$n-b" netns "$n-b"
ip -n "$n-a" addr add 10.96.0.1/24 dev "$n-a"; ip -n "$n-b" addr add 10.96.0.2/24 dev "$n-b"
for s in a b; do ip -n "$n-$s" link set "$n-$s" up; done
# Segments of wire size for TCP (no TSO/GSO/GRO super-packets), so that its 1 % is 1 % of
# the packets on the wire, as the worker's is of o7s frames.
for s in a b; do run "$s" ethtool -K "$n-$s" tso off gso off gro off >/dev/null 2>&1; done

printf '[name."ocbr"]\nprog=["%s"]\n\n[eth-dix.e]\nbootstrap="frcp-bench"\ndev="%s"\nreg=["ocbr"]\n' "$bin/ocbr" "$n-b" >"$tmp/b.conf"
printf '[eth-dix.e]\nbootstrap="frcp-bench"\ndev="%s"\n' "$n-a" >"$tmp/a.conf"
for s in b a; do
    run "$s" "$bin/o7sd" --config "$tmp/$s.conf" --rundir "$tmp/run-$s" >/dev/null 2>"$tmp/o7sd-$s.log" &
    for _ in $(seq 100); do [ -S "$tmp/run-$s/o7sd.sock" ] && break; sleep 0.05; done
done

set_loss() {
    local pct=$1 s
    for s in a b; do
        run "$s" "$bin/o7sctl" port set e loss "$pct%" >/dev/null
        run "$s" nft delete table inet o7sbench 2>/dev/null || true
        if [ "$pct" != 0 ]; then
            local per10k
            per10k=$(python3 -c "print(round(float('$pct') * 100))")
            run "$s" nft add table inet o7sbench
            run "$s" nft add chain inet o7sbench in '{ type filter hook input priority 0; }'
            run "$s" nft add rule inet o7sbench in meta l4proto tcp numgen random mod 10000 lt "$per10k" counter drop
        fi
    done
}

# One ocbr stream: a JSON line with the client's and the server's figures.
ocbr_run() {
    local qos=$1
    run b "$bin/ocbr" -l --json --verify --flows 1 -t 2 >"$tmp/srv.json" 2>"$tmp/srv.err" &
    local srv=$!
    for _ in $(seq 100); do
        run b "$bin/o7sctl" name list --json 2>/dev/null | python3 -c "import json,sys; sys.exit(0 if any(x['name']=='ocbr' and x.get('accepting',0) for x in json.load(sys.stdin)) else 1)" && break
        sleep 0.1
    done
    run a "$bin/ocbr" -n ocbr -q "$qos" -s 1400 -f -d "$secs" --json >"$tmp/cli.json" 2>"$tmp/cli.err" \
        || { echo "bench-frcp.sh: ocbr -q $qos failed:" >&2; cat "$tmp/cli.err" >&2; exit 1; }
    wait "$srv" || true
    python3 - "$qos" "$tmp/cli.json" "$tmp/srv.json" <<'PY'
import json, sys
qos, c, s = sys.argv[1], *(json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[2:4])
print(json.dumps({"path": "frcp" if qos == "data" else qos, "mbit_s": s["mbps"], "bytes": s["bytes"],
                  "sent_sdus": c["sent"], "received_sdus": s["received"], "lost": s["lost"],
                  "out_of_order": s["out_of_order"], "corrupt": s["corrupt"], "frcp": c.get("frcp"),
                  "ok": qos != "data" or (s["received"] == c["sent"] and s["out_of_order"] == 0
                                          and s["corrupt"] == 0 and s["lost"] == 0)}))
PY
}

tcp_run() {
    run b "$bin/o7s-tcp-goodput" --listen 10.96.0.2:5210 >"$tmp/rx.json" 2>/dev/null &
    local srv=$!
    sleep 0.3
    run a "$bin/o7s-tcp-goodput" --connect 10.96.0.2:5210 --seconds "$secs" >"$tmp/tx.json"
    wait "$srv"
    python3 - "$tmp/tx.json" "$tmp/rx.json" <<'PY'
import json, sys
tx, rx = (json.load(open(p)) for p in sys.argv[1:3])
print(json.dumps({"path": "tcp", "mbit_s": rx["mbit_s"], "bytes": rx["bytes"],
                  "ok": tx["digest"] == rx["digest"] and tx["bytes"] == rx["bytes"]}))
PY
}

results=$tmp/results.jsonl
total=$((2 * runs * 3)); done_=0
for pct in 0 "$loss"; do
    set_loss "$pct"
    for r in $(seq "$runs"); do
        for path in raw frcp tcp; do
            done_=$((done_ + 1))
            printf '\r[%-30s] %d/%d  loss %s%%  run %d  %-4s ' "$(printf '#%.0s' $(seq $((done_ * 30 / total))))" "$done_" "$total" "$pct" "$r" "$path" >&2
            case $path in
                raw) line=$(ocbr_run raw) ;;
                frcp) line=$(ocbr_run data) ;;
                tcp) line=$(tcp_run) ;;
            esac
            python3 -c "import json,sys; d=json.loads(sys.argv[1]); d.update(loss_pct=float(sys.argv[2]), run=int(sys.argv[3])); print(json.dumps(d))" "$line" "$pct" "$r" >>"$results"
        done
    done
done
echo >&2
lost_o7s=$(run b "$bin/o7sctl" port list --json | python3 -c "import json,sys; print(json.load(sys.stdin)[0].get('impair_lost',0))")
nft_b=$(run b nft list table inet o7sbench 2>/dev/null | sed -n 's/.*packets \([0-9]*\).*/\1/p' | head -1)
set_loss 0

mkdir -p "$(dirname "$out")"
python3 - "$results" "$out" "$secs" "$loss" "$runs" "$lost_o7s" "${nft_b:-0}" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
out, secs, loss, runs = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
med = {}
for pct in (0.0, loss):
    for p in ("raw", "frcp", "tcp"):
        xs = [r["mbit_s"] for r in rows if r["loss_pct"] == pct and r["path"] == p]
        med[(pct, p)] = {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "runs": xs}
def ratio(a, b):
    return round(a / b, 3) if a and b else None
summary = {}
for pct in (0.0, loss):
    m = {p: med[(pct, p)] for p in ("raw", "frcp", "tcp")}
    summary[str(pct)] = {**m, "frcp_vs_raw": ratio(m["frcp"]["median"], m["raw"]["median"]),
                         "frcp_vs_tcp": ratio(m["frcp"]["median"], m["tcp"]["median"])}
g0 = summary["0.0"]["frcp_vs_raw"]; gl = summary[str(loss)]["frcp_vs_tcp"]
doc = {"bench": "frcp", "seconds": secs, "loss_pct": loss, "runs": runs, "sdu_bytes": 1400,
       "results": rows, "summary": summary,
       "o7s_frames_dropped_at_b": int(sys.argv[6]), "tcp_segments_dropped_at_b_loss_runs": int(sys.argv[7] or 0),
       "all_ok": all(r["ok"] for r in rows)}
# A rate counts only when every stream arrived whole and in order and every TCP digest
# matched: a fast stream that lost data meets no goal.
doc["goal_frcp_vs_raw_at_0"] = {"ratio": g0, "goal": 0.9, "met": bool(doc["all_ok"] and g0 and g0 >= 0.9)}
doc["goal_frcp_vs_tcp_at_loss"] = {"ratio": gl, "goal": 1.0, "met": bool(doc["all_ok"] and gl and gl > 1.0)}
open(out, "w").write(json.dumps(doc, indent=1) + "\n")
for pct in (0.0, loss):
    s = summary[str(pct)]
    print(f"loss {pct:g}%: " + ", ".join(f"{p} {s[p]['median']:.1f} Mbit/s ({s[p]['min']:.1f}-{s[p]['max']:.1f})" for p in ("raw", "frcp", "tcp"))
          + f"; frcp/raw {s['frcp_vs_raw']}x, frcp/tcp {s['frcp_vs_tcp']}x")
print(f"every reliable stream complete and in order, every TCP digest equal: {doc['all_ok']}")
print(f"goal at 0%: frcp >= 0.9x raw: {'met' if doc['goal_frcp_vs_raw_at_0']['met'] else 'NOT met'} ({g0}x)")
print(f"goal at {loss:g}%: frcp ahead of tcp: {'met' if doc['goal_frcp_vs_tcp_at_loss']['met'] else 'NOT met'} ({gl}x)")
print(f"results: {out}")
if not doc["all_ok"]:
    print("bench-frcp.sh: a stream arrived incomplete, out of order or with another digest (see results)", file=sys.stderr)
    sys.exit(1)
PY
