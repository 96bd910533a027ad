#!/usr/bin/env bash
# IP over Ouroboros against plain IP, in one invocation (issue 28): two namespaces joined by
# a veth pair, release builds. Three paths between the same two hosts, each measured the
# same way: TCP goodput (iperf3 when installed, else benches' o7s-tcp-goodput; SECONDS
# each, the sender's and receiver's digests compared) and ping RTT (COUNT pings):
#   veth         IP on the veth pair itself (the baseline)
#   vpn          o7s-vpn (TUN) over an eth-dix layer on the same veth pair
#   vpn-enc      the same with the name's enc.conf on both sides (P-256, AES-256-GCM)
#   wireguard    boringtun-cli (userspace WireGuard) configured with wg, when both are
#                installed (else recorded as not measured, with what is missing)
# Writes JSON with the figures and the ratios against veth to
# bench-results/vpn-<date>.json (or OUT).
#   scripts/bench-vpn.sh [SECONDS=5] [COUNT=50] [OUT]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ns=$root/scripts/netns.sh
case "${1:-}" in -h|--help) sed -n '2,/^set -/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0;; esac
for a in "${@:1:2}"; do case "$a" in ""|*[!0-9.]*) echo "bench-vpn.sh: '$a' is not a number (--help says what the arguments are)" >&2; exit 2;; esac; done
secs=${1:-5}; count=${2:-50}
out=${3:-$root/bench-results/vpn-$(date -u +%Y%m%dT%H%M%SZ).json}
[ "$(id -u)" = 0 ] || { echo "bench-vpn.sh: needs root (namespaces, TUN, XDP)" >&2; exit 1; }
missing=""
for t in ip ping python3 cargo; do command -v "$t" >/dev/null 2>&1 || missing="$missing $t"; done
[ -z "$missing" ] || { echo "bench-vpn.sh: missing:$missing (scripts/setup.sh installs them)" >&2; exit 1; }
[[ "$secs" =~ ^[0-9]+$ && "$count" =~ ^[0-9]+$ ]] || { echo "bench-vpn.sh: SECONDS and COUNT are whole numbers" >&2; exit 2; }
bin=$root/target/release
echo "building (release)..."
(cd "$root" && cargo build --release --locked -q -p o7s-control -p o7s-dataplane -p o7s-vpn -p o7sctl -p o7s-bench)

n=$("$(dirname "$0")/netns.sh" unique bv 8)
tmp=$(mktemp -d /tmp/o7s-bench-vpn.XXXXXX)
teardown() {
    for s in a b; do
        for p in $(ip netns pids "$n-$s" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$n-$s" 2>/dev/null || true
        rm -f "/var/run/wireguard/$n-w$s.sock"
    done
}
cleanup() { teardown; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
run() { local s=$1; shift; O7S_RUNDIR="$tmp/run-$s" ip netns exec "$n-$s" "$@"; }

for s in a b; do ip netns add "$n-$s"; ip -n "$n-$s" link set lo up; mkdir -p "$tmp/run-$s"; done
ip link add "$n-a" netns "$n-a" type veth peer name "$n-b" netns "$n-b"
ip -n "$n-a" addr add 10.93.0.1/24 dev "$n-a"; ip -n "$n-b" addr add 10.93.0.2/24 dev "$n-b"
for s in a b; do ip -n "$n-$s" link set "$n-$s" up; done

# One measurement between a (client) and b (server) at b's address $2, named $1: a JSON line.
measure() {
    local what=$1 dst=$2 dev=$3 rtt good mtu
    mtu=$(ip -n "$n-a" -o link show "$dev" | sed -n 's/.* mtu \([0-9]*\).*/\1/p')
    echo "  $what: ping x$count, TCP ${secs} s..." >&2
    rtt=$(run a ping -q -c "$count" -i 0.02 -W 2 "$dst" | sed -n 's/.*= \([0-9.]*\)\/\([0-9.]*\)\/.*/\2/p')
    if command -v iperf3 >/dev/null 2>&1; then
        run b iperf3 -s -1 -B "$dst" >/dev/null 2>&1 &
        sleep 0.5
        good=$(run a iperf3 -c "$dst" -t "$secs" -J | python3 -c "import json,sys; d=json.load(sys.stdin)['end']; print(json.dumps({'tool':'iperf3','mbit_s':d['sum_received']['bits_per_second']/1e6,'ok':True}))")
    else
        run b "$bin/o7s-tcp-goodput" --listen "$dst:5209" >"$tmp/rx.json" 2>/dev/null &
        local srv=$!
        sleep 0.5
        run a "$bin/o7s-tcp-goodput" --connect "$dst:5209" --seconds "$secs" >"$tmp/tx.json"
        wait "$srv"
        good=$(python3 - "$tmp/tx.json" "$tmp/rx.json" <<'PY'
import json, sys
tx, rx = (json.load(open(p)) for p in sys.argv[1:3])
print(json.dumps({"tool": "o7s-tcp-goodput", "mbit_s": rx["mbit_s"], "bytes": rx["bytes"],
                  "ok": tx["digest"] == rx["digest"] and tx["bytes"] == rx["bytes"]}))
PY
)
    fi
    python3 -c "import json,sys; g=json.loads(sys.argv[3]); print(json.dumps({'path': sys.argv[1], 'mtu': int(sys.argv[4]) if sys.argv[4] else None, 'rtt_avg_ms': float(sys.argv[2]) if sys.argv[2] else None, **g}))" "$what" "$rtt" "$good" "$mtu"
}

results=$tmp/results.jsonl
echo "veth (baseline):" >&2
measure veth 10.93.0.2 "$n-a" >>"$results"

# o7sd on both, an eth-dix layer on the veth pair, two names at b: plain and encrypted.
for s in a b; do
    {
        [ "$s" = b ] && printf '[name."vpnp"]\nlb="round-robin"\n\n[name."vpne"]\nlb="round-robin"\n\n'
        printf '[eth-dix.e]\nbootstrap="vpn-bench"\ndev="%s"\n' "$n-$s"
        [ "$s" = b ] && printf 'reg=["vpnp", "vpne"]\n'
    } >"$tmp/$s.conf"
done
for side in client server; do mkdir -p "$tmp/security/$side/vpne"; : >"$tmp/security/$side/vpne/enc.conf"; done
for s in b a; do
    run "$s" "$bin/o7sd" --config "$tmp/$s.conf" --rundir "$tmp/run-$s" >/dev/null 2>"$tmp/o7sd-$s.log" &
    for _ in $(seq 100); do [ -S "$tmp/run-$s/o7sd.sock" ] && break; sleep 0.05; done
done

tunnel() {
    local name=$1 what=$2
    echo "$what:" >&2
    run b "$bin/o7s-vpn" --bind "$name" -i 10.94.0.2 -m 24 --dev "$n-tb" --json >"$tmp/$what-b.json" 2>"$tmp/$what-b.err" &
    local srv=$!
    for _ in $(seq 100); do
        run b "$bin/o7sctl" name list --json 2>/dev/null | python3 -c "import json,sys; sys.exit(0 if any(x['name']=='$name' and x.get('accepting',0) for x in json.load(sys.stdin)) else 1)" && break
        sleep 0.1
    done
    run a "$bin/o7s-vpn" -n "$name" -i 10.94.0.1 -m 24 --dev "$n-ta" --json >"$tmp/$what-a.json" 2>"$tmp/$what-a.err" &
    local cli=$!
    for _ in $(seq 100); do grep -q "tunnel up" "$tmp/$what-a.err" && break; sleep 0.1; done
    grep -q "tunnel up" "$tmp/$what-a.err" || { echo "bench-vpn.sh: the $what tunnel did not come up:" >&2; cat "$tmp/$what-a.err" "$tmp/o7sd-a.log" >&2; exit 1; }
    measure "$what" 10.94.0.2 "$n-ta" >>"$results"
    # $cli and $srv are the subshells of `run ... &`, which ignore SIGINT (no job control):
    # signal the o7s-vpn processes themselves; SIGTERM writes their --json counters too.
    stop_vpn
    wait "$cli" "$srv" 2>/dev/null || true
}
stop_vpn() {
    local s
    for s in a b; do "$ns" signal "$n-$s" TERM o7s-vpn || true; done
    for _ in $(seq 50); do
        "$ns" pids "$n-a" o7s-vpn >/dev/null || "$ns" pids "$n-b" o7s-vpn >/dev/null || return 0
        sleep 0.1
    done
    echo "bench-vpn.sh: o7s-vpn did not stop on SIGTERM within 5 s; killing it" >&2
    for s in a b; do "$ns" signal "$n-$s" KILL o7s-vpn || true; done
}
tunnel vpnp vpn
tunnel vpne vpn-enc
run b "$bin/o7sctl" flow list --json >"$tmp/flows-b.json" 2>/dev/null || true
# The vpn-enc tunnel's flow asked for encryption (o7sd logs this line when it builds the
# request from the name's enc.conf; a flow whose server refused would not have come up).
grep -q "Encryption enabled for vpne" "$tmp/o7sd-a.log" ||
    { echo "bench-vpn.sh: the vpn-enc tunnel's flow was not encrypted" >&2; cat "$tmp/o7sd-a.log" >&2; exit 1; }

# WireGuard over the same veth pair: boringtun-cli (userspace; this kernel has no WireGuard
# module) configured with wg, 2 threads each (the machine's cores), foreground, UDP 51820.
wg_missing=""
command -v boringtun-cli >/dev/null 2>&1 || wg_missing="$wg_missing boringtun-cli (cargo install --locked boringtun-cli)"
command -v wg >/dev/null 2>&1 || wg_missing="$wg_missing wg (apt-get install wireguard-tools)"
if [ -z "$wg_missing" ]; then
    echo "wireguard (boringtun-cli):" >&2
    for s in a b; do
        (umask 077; wg genkey >"$tmp/wg-$s.key"); wg pubkey <"$tmp/wg-$s.key" >"$tmp/wg-$s.pub"
        WG_SUDO=true run "$s" boringtun-cli --foreground --threads 2 --log "$tmp/boringtun-$s.log" "$n-w$s" >/dev/null 2>&1 &
        for _ in $(seq 50); do ip -n "$n-$s" link show "$n-w$s" >/dev/null 2>&1 && [ -S "/var/run/wireguard/$n-w$s.sock" ] && break; sleep 0.1; done
    done
    run a wg set "$n-wa" private-key "$tmp/wg-a.key" listen-port 51820 \
        peer "$(cat "$tmp/wg-b.pub")" allowed-ips 10.95.0.2/32 endpoint 10.93.0.2:51820
    run b wg set "$n-wb" private-key "$tmp/wg-b.key" listen-port 51820 \
        peer "$(cat "$tmp/wg-a.pub")" allowed-ips 10.95.0.1/32 endpoint 10.93.0.1:51820
    ip -n "$n-a" addr add 10.95.0.1/24 dev "$n-wa"; ip -n "$n-b" addr add 10.95.0.2/24 dev "$n-wb"
    # wg-quick's MTU for IPv4 (1500 - 80): a 1500-byte inner packet would be fragmented
    for s in a b; do ip -n "$n-$s" link set "$n-w$s" mtu 1420 up; done
    # the handshake, before anything is timed
    run a ping -q -c 3 -i 0.2 -W 2 10.95.0.2 >/dev/null 2>&1 || true
    measure wireguard 10.95.0.2 "$n-wa" >>"$results"
fi

mkdir -p "$(dirname "$out")"
python3 - "$results" "$out" "$secs" "$count" <<'PY'
import json, shutil, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
out, secs, count = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
by = {r["path"]: r for r in rows}
base = by.get("veth", {})
def ratio(x, y):
    return round(x / y, 3) if x and y else None
for r in rows:
    r["goodput_vs_veth"] = ratio(r.get("mbit_s"), base.get("mbit_s"))
    r["rtt_vs_veth"] = ratio(r.get("rtt_avg_ms"), base.get("rtt_avg_ms"))
missing = [t for t in ("boringtun-cli", "wg") if shutil.which(t) is None]
wg = by.get("wireguard")
doc = {
    "bench": "vpn", "seconds": secs, "pings": count,
    "results": rows,
    "wireguard": {"measured": wg is not None,
                  "why": None if wg else f"missing: {', '.join(missing)} (cargo install --locked boringtun-cli; apt-get install wireguard-tools)"},
    "goal_vpn_enc_vs_wireguard": ratio(by.get("vpn-enc", {}).get("mbit_s"), (wg or {}).get("mbit_s")),
}
open(out, "w").write(json.dumps(doc, indent=1) + "\n")
def check(r):
    if r.get("tool") == "iperf3":
        return "iperf3: no digest"
    return "digests equal" if r.get("ok") else "digests DIFFER"
for r in rows:
    print(f"{r['path']:9s} MTU {r.get('mtu')} goodput {r.get('mbit_s', 0):8.1f} Mbit/s ({r['goodput_vs_veth']}x veth, {check(r)}), "
          f"RTT {r.get('rtt_avg_ms')} ms ({r['rtt_vs_veth']}x)")
if wg is None:
    print(f"wireguard: not measured ({doc['wireguard']['why']})")
else:
    g = doc["goal_vpn_enc_vs_wireguard"]
    print(f"encrypted o7s-vpn / WireGuard (boringtun) goodput: {g}x (goal >= 1.0: {'met' if g and g >= 1.0 else 'NOT met'})")
print(f"results: {out}")
PY
