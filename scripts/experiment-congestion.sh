#!/usr/bin/env bash
# The congestion experiment of the blog post "Exploring Ouroboros with wireshark" (issue 22),
# one command: four namespaces (client 1, client 2, router, server), three eth-dix layers
# (c1-r, c2-r, r-s) and one unicast layer of four IPCPs over them; the router's port towards
# the server is capped at CAP (100 Mbit/s) in its data-plane worker. ocbr flows of ~80
# Mbit/s (1000-byte SDUs) on the blog's schedule: flow 1 (client 1) 0-70 s, flow 2 (client 2)
# 14-24 s, flow 3 (client 1) 44-58 s, flow 4 (client 2) 63 s to the end (80 s). Captured on
# the server's port (o7sctl capture), turned into per-flow throughput in 100 ms bins
# (o7s-dissect --flows-csv), then into a JSON summary and a plot (o7s-congestion-report).
# The same run twice in one invocation: congestion = "mb-ecn" (the reference's default),
# then congestion = "none" for contrast.
#
#   scripts/experiment-congestion.sh [--time-scale S] [--cap RATE] [--rate RATE] [--out DIR]
#                                    [--spin-us US] [--dp-nice N]
#
# --time-scale 0.25 runs the schedule four times faster (20 s a run). Results:
# DIR/summary.json, DIR/congestion.png, DIR/congestion.svg, DIR/<run>.csv and the counters
# (default DIR: bench-results/congestion-<date>). --spin-us: how long each data-plane
# worker polls after its last packet before it sleeps (o7sd --spin-us; default 0 here:
# four data planes, four o7sd and three ocbr share the CPUs, and workers that spin take
# them from the senders' workers, whose stalls then shift the shares). --dp-nice: the nice
# value the data planes (o7s-dataplane, every thread) run at (default 0, as started; -10
# ended the lone flow's dips but starved the o7sd processes, so flows were allocated up to
# 0.9 s late). DIR/setup.json records them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
scale=1.0; cap=100M; rate=80M; out=""; spin=0; dpnice=0
while [ $# -gt 0 ]; do
    case "$1" in
        --time-scale) scale=$2; shift 2 ;;
        --cap) cap=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --spin-us) spin=$2; shift 2 ;;
        --dp-nice) dpnice=$2; shift 2 ;;
        -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "experiment-congestion.sh: unknown argument '$1' (--help)" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "experiment-congestion.sh: needs root (namespaces, XDP)" >&2; exit 1; }
missing=""
for t in ip python3 cargo; do command -v "$t" >/dev/null 2>&1 || missing="$missing $t"; done
command -v renice >/dev/null 2>&1 || missing="$missing renice(util-linux)"
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$missing fonts-dejavu-core"
[ -z "$missing" ] || { echo "experiment-congestion.sh: missing:$missing (scripts/setup.sh installs them)" >&2; exit 1; }
[[ "$spin" =~ ^[0-9]+$ ]] || { echo "--spin-us $spin: not a whole number of microseconds" >&2; exit 2; }
[[ "$dpnice" =~ ^-?[0-9]+$ ]] && [ "$dpnice" -ge -20 ] && [ "$dpnice" -le 19 ] \
    || { echo "--dp-nice $dpnice: a nice value from -20 to 19" >&2; exit 2; }
python3 -c "float('$scale')" 2>/dev/null || { echo "--time-scale $scale: not a number" >&2; exit 2; }
bin=$root/target/release
echo "building (release)..."
(cd "$root" && cargo build --release --locked -q -p o7s-control -p o7s-dataplane -p ocbr -p o7sctl -p o7s-dissect -p o7s-bench)
out=${out:-$root/bench-results/congestion-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
printf '{"time_scale": %s, "cap": "%s", "rate": "%s", "spin_us": %s, "dp_nice": %s}\n' \
    "$scale" "$cap" "$rate" "$spin" "$dpnice" >"$out/setup.json"
sec() { python3 -c "print(f'{($1) * $scale:.3f}')"; }
END=80

n=$("$(dirname "$0")/netns.sh" unique cg 8)
tmp=$(mktemp -d /tmp/o7s-congestion.XXXXXX)
nodes="c1 c2 r s"
teardown() {
    for s in $nodes; do
        for p in $(ip netns pids "$n-$s" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$n-$s" 2>/dev/null || true
    done
}
cleanup() { teardown; if [ -n "${O7S_KEEP:-}" ]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM

run() { local s=$1; shift; O7S_RUNDIR="$tmp/run-$s" ip netns exec "$n-$s" "$@"; }
jget() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

# One run of the experiment with congestion = $1; leaves $out/$1.csv and $out/$1-counters.json.
one_run() {
    local cong=$1
    teardown
    for s in $nodes; do ip netns add "$n-$s"; ip -n "$n-$s" link set lo up; mkdir -p "$tmp/run-$s"; done
    ip link add "$n-c1r" netns "$n-c1" type veth peer name "$n-rc1" netns "$n-r"
    ip link add "$n-c2r" netns "$n-c2" type veth peer name "$n-rc2" netns "$n-r"
    ip link add "$n-rs" netns "$n-r" type veth peer name "$n-sr" netns "$n-s"
    for d in c1:c1r c2:c2r r:rc1 r:rc2 r:rs s:sr; do ip -n "$n-${d%%:*}" link set "$n-${d##*:}" up; done
    cat >"$tmp/r.conf" <<EOF
[eth-dix.e1]
bootstrap="eth"
dev="$n-rc1"
reg=["ur"]

[eth-dix.e2]
bootstrap="eth"
dev="$n-rc2"
reg=["ur"]

[eth-dix.e3]
bootstrap="eth"
dev="$n-rs"
reg=["ur"]
rate="$cap"

[unicast.ur]
bootstrap="blog"
congestion="$cong"
autobind=true
EOF
    for c in c1 c2; do
        cat >"$tmp/$c.conf" <<EOF
[eth-dix.e]
bootstrap="eth"
dev="$n-${c}r"

[unicast.u$c]
enrol="ur"
autobind=true
conn=["ur"]
EOF
    done
    cat >"$tmp/s.conf" <<EOF
[name."ocbr"]
prog=["$bin/ocbr"]

[eth-dix.e]
bootstrap="eth"
dev="$n-sr"

[unicast.us]
enrol="ur"
autobind=true
conn=["ur"]
reg=["ocbr"]
EOF
    for s in r c1 c2 s; do
        run "$s" "$bin/o7sd" --config "$tmp/$s.conf" --rundir "$tmp/run-$s" --spin-us "$spin" \
            >/dev/null 2>"$tmp/o7sd-$s-$cong.log" &
        for _ in $(seq 100); do [ -S "$tmp/run-$s/o7sd.sock" ] && break; sleep 0.05; done
        # The router's three ports (XDP) and its layer are up before anyone enrols.
        if [ "$s" = r ]; then
            for _ in $(seq 100); do
                up=$(run r "$bin/o7sctl" ipcp list --json 2>/dev/null | jget "sum(1 for x in d if x.get('state') in ('up', 'enrolled', 'bootstrapped'))" 2>/dev/null || echo 0)
                [ "${up:-0}" -ge 4 ] && break
                sleep 0.1
            done
        fi
    done
    local s i
    for s in c1 c2 s; do
        for i in $(seq 150); do
            [ "$(run "$s" "$bin/o7sctl" ipcp list --json | jget "[x['state'] for x in d if x['type']=='unicast'][0]")" = enrolled ] && break
            # An enrolment that found no answer (the router still starting) is asked again.
            if [ $((i % 30)) = 0 ]; then
                run "$s" "$bin/o7sctl" ipcp enroll name "u$s" dst ur >/dev/null 2>&1 || true
                run "$s" "$bin/o7sctl" ipcp connect name "u$s" dst ur >/dev/null 2>&1 || true
            fi
            sleep 0.1
        done
    done
    # Appended to (O_APPEND): the file is emptied after the probes while the server writes on.
    run s "$bin/ocbr" -l --json >>"$tmp/server-$cong.json" 2>"$tmp/server-$cong.err" &
    # Ready when a short flow from each client gets through (directory and routes settled).
    for c in c1 c2; do
        local ok=""
        for _ in $(seq 60); do
            if run "$c" "$bin/ocbr" -n ocbr -s 100 -r 1M -d 0.1 >/dev/null 2>&1; then ok=1; break; fi
            sleep 0.5
        done
        [ -n "$ok" ] || { echo "experiment-congestion.sh: $c cannot reach the server; logs:" >&2; tail -n 5 "$tmp"/o7sd-*-"$cong".log >&2; exit 1; }
    done
    sleep 1.2   # the probes' flows end at the server
    : >"$tmp/server-$cong.json"
    : >"$out/$cong-router-port.jsonl"
    run s "$bin/o7sctl" capture "$n-sr" --snaplen 112 -w "$tmp/$cong.pcap" 2>"$tmp/capture-$cong.err" &
    local cap_pid=$!
    # The data planes' priority (--dp-nice), every thread of every o7s-dataplane.
    local p t
    for s in $nodes; do
        for p in $(ip netns pids "$n-$s"); do
            [ "$(cat /proc/"$p"/comm 2>/dev/null)" = o7s-dataplane ] || continue
            for t in /proc/"$p"/task/*; do renice -n "$dpnice" -p "${t##*/}" >/dev/null; done
        done
    done
    sleep 0.3
    # The schedule (seconds, unscaled): client, start, end; scaled before the clock starts
    # (an interpreter started per flow once flow 1 loads the CPUs takes ~0.1 s, and flows
    # launched after them joined up to 0.75 s late).
    local plan=() f total mid_at
    total=$(sec "$END + 2"); mid_at=$(sec 20)
    for f in "c1 0 70" "c2 14 24" "c1 44 58" "c2 63 $END"; do
        set -- $f
        plan+=("$1 $(sec "$2") $(sec "$3 - $2")")
    done
    local t0; t0=$(date +%s.%N)
    local flow=0
    for f in "${plan[@]}"; do
        set -- $f
        flow=$((flow + 1))
        ( sleep "$2"; run "$1" "$bin/ocbr" -n ocbr -s 1000 -r "$rate" -d "$3" --json \
              >"$tmp/client-$cong-$flow.json" 2>"$tmp/client-$cong-$flow.err" ) &
    done
    # A progress bar while it runs, the router's capped port over time (when it queued and
    # dropped), and a look at every node's flows while flow 1 and flow 2 share the link: one
    # long-lived monitor, not a few interpreters started every 0.4 s, which took CPU from the
    # data planes in bursts and showed in the shares.
    python3 - "$t0" "$total" "$cong" "$n" "$bin" "$out" "$mid_at" "$tmp" <<'PY'
import json, os, subprocess, sys, time
t0, total, cong, n, bindir, out, mid_at, tmp = sys.argv[1:9]
t0, total, mid_at = float(t0), float(total), float(mid_at)
def ctl(node, *args):
    env = dict(os.environ, O7S_RUNDIR=f"{tmp}/run-{node}")
    r = subprocess.run(["ip", "netns", "exec", f"{n}-{node}", f"{bindir}/o7sctl", *args],
                       capture_output=True, text=True, env=env)
    return r.stdout if r.returncode == 0 else None
mid = False
with open(f"{out}/{cong}-router-port.jsonl", "a") as log:
    while True:
        el = time.time() - t0
        k = int(40 * min(el, total) / total)
        sys.stderr.write(f"\r  {cong:7s} [{'#' * k}{'.' * (40 - k)}] {min(el, total):5.1f}/{total:.0f} s")
        sys.stderr.flush()
        if el >= total:
            break
        if not mid and el >= mid_at:
            mid = True
            for s in ("c1", "c2", "r", "s"):
                text = ctl(s, "flow", "list", "--json")
                if text is not None:
                    open(f"{out}/{cong}-flows-{s}-at-20s.json", "w").write(text)
        text = ctl("r", "port", "list", "--json")
        if text is not None:
            try:
                p = next((x for x in json.loads(text) if x.get("dev") == f"{n}-rs"), {})
            except ValueError:
                p = {}
            log.write(json.dumps({"t_s": round(el, 2), **{k: p.get(k) for k in
                      ("queued", "queued_max", "drop_queue_full", "ecn_marked")}}) + "\n")
        time.sleep(0.5)
PY
    echo >&2
    sleep 1.5   # the last flow ends at the server
    # Counters: the router's capped port, the server's and the clients' MB-ECN ends.
    run r "$bin/o7sctl" port list --json >"$tmp/r-ports-$cong.json"
    run s "$bin/o7sctl" ipcp list --json >"$tmp/s-ipcps-$cong.json"
    run s "$bin/o7sctl" flow list --json >"$tmp/s-flows-$cong.json" || true
    for c in c1 c2; do run "$c" "$bin/o7sctl" ipcp list --json >"$tmp/$c-ipcps-$cong.json"; done
    # The capture itself (not the shell around it, which ignores signals as a background
    # job) ends on SIGTERM and closes its file.
    "$root/scripts/netns.sh" signal "$n-s" TERM o7sctl || true
    wait "$cap_pid" 2>/dev/null || true
    # The capture starts after enrolment: the dissector is told which eth-dix flow carries the
    # unicast layer's DT PDUs (the server's N-1 flow to the router with the most SDUs).
    local layers
    layers=$(jget "' '.join(f'--layer dix:eid={e}:unicast' for x in [max((f for f in d if f.get('name') == 'ur'), key=lambda f: f.get('rx_sdus', 0))] for e in sorted({x['local'], x['remote']}))" <"$tmp/s-flows-$cong.json")
    # shellcheck disable=SC2086
    "$bin/o7s-dissect" --flows-csv --bin-ms 100 --no-guess $layers "$tmp/$cong.pcap" >"$out/$cong.csv" 2>"$tmp/dissect-$cong.err"
    cat "$tmp/dissect-$cong.err" >&2
    python3 - "$tmp" "$cong" "$n-rs" "$out/$cong-counters.json" <<'PY'
import json, sys, glob
tmp, cong, dev, out = sys.argv[1:5]
def lines(path):
    try:
        return [json.loads(l) for l in open(path) if l.strip().startswith("{")]
    except OSError:
        return []
sent = sum(l[-1].get("sent", 0) for l in (lines(p) for p in sorted(glob.glob(f"{tmp}/client-{cong}-*.json"))) if l)
server = lines(f"{tmp}/server-{cong}.json")
received = sum(x.get("received", 0) for x in server)
ports = json.load(open(f"{tmp}/r-ports-{cong}.json"))
p = next((x for x in ports if x.get("dev") == dev), {})
def uni(path):
    return next((x for x in json.load(open(path)) if x.get("type") == "unicast"), {})
s = uni(f"{tmp}/s-ipcps-{cong}.json")
c = [uni(f"{tmp}/{n}-ipcps-{cong}.json") for n in ("c1", "c2")]
doc = {
    "congestion": cong,
    "sent_sdus": sent,
    "received_sdus": received,
    "server_flows": len(server),
    "router_port": {k: p.get(k) for k in ("dev", "rate_bps", "queue_limit", "queued_max", "shaped",
                                          "drop_queue_full", "ecn_marked", "tx_frames")},
    "ecn_marked": p.get("ecn_marked"),
    "drop_queue_full": p.get("drop_queue_full"),
    "flow_updates_sent": s.get("ca_updates_out"),
    "flow_updates_taken_by_clients": sum(x.get("ca_updates_in", 0) or 0 for x in c),
}
open(out, "w").write(json.dumps(doc, indent=1) + "\n")
print(f"  {cong}: sent {sent} SDUs, received {received}, marked {doc['ecn_marked']}, "
      f"dropped at the cap {doc['drop_queue_full']}, FLOW_UPDATEs {doc['flow_updates_sent']}", file=sys.stderr)
PY
    cp "$tmp"/o7sd-*-"$cong".log "$out/" 2>/dev/null || true
    teardown
}

echo "congestion experiment: cap $cap, flows of $rate, time scale $scale (a run: $(sec $END) s)"
one_run mb-ecn
one_run none
"$bin/o7s-congestion-report" --run mb-ecn="$out/mb-ecn.csv" --run none="$out/none.csv" \
    --cap-mbit "$(python3 -c "
s='$cap'.lower().removesuffix('bit')
m={'k':1e-3,'m':1,'g':1e3}
print(float(s[:-1])*m[s[-1]] if s[-1] in m else float(s)/1e6)")" \
    --demand-mbit "$(python3 -c "
s='$rate'.lower()
m={'k':1e-3,'m':1,'g':1e3}
print(float(s[:-1])*m[s[-1]] if s[-1] in m else float(s)/1e6)")" \
    --sdu-bytes 1000 \
    --schedule "0-70,14-24,44-58,63-$END" --bin-ms 100 --time-scale "$scale" \
    --counters mb-ecn="$out/mb-ecn-counters.json" --counters none="$out/none-counters.json" \
    --out "$out"
python3 - "$out/summary.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for name, r in d["runs"].items():
    o = r["overall"]
    print(f"{name:7s} Jain {o.get('mean_jain_multi_flow')}, worst convergence {o.get('worst_convergence_s')} s, "
          f"utilisation {o.get('utilisation_congested')}, loss {o.get('loss')}, FLOW_UPDATEs {o.get('flow_updates')}, "
          f"verdict {r.get('verdict', {}).get('all_pass')}")
PY
echo "results: $out"
