#!/usr/bin/env bash
# Soak: one ocbr flood over the AF_XDP eth-dix path for SECONDS (default 180), host A on
# CPU 0 and host B on CPU 1 as in scripts/bench-xdp.sh, the UMEMs on hugepages (reserved
# for the run and restored). Samples the resident memory of both data planes and daemons
# every 30 s (growth counted from the 30 s sample on, after warm-up), then checks what a long run must not do: lose the flow (the peer timeout is
# 120 s: keepalives keep the one-way flow up), leak UMEM frames, grow memory, or leave the
# daemons unable to serve (an oping run after the flood). JSON to
# bench-results/soak-xdp-<date>.json; exit 1 when a check fails.
# O7S_SOAK_ENC=1: the flow is encrypted (OAP, P-256 + AES-256-GCM, the defaults; the key
# rotates every 2^20 packets, about once a second at 64 B).
#   scripts/soak-xdp.sh [SECONDS=180] [SIZE=64]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
case "${1:-}" in -h|--help) sed -n '2,/^set -/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0;; esac
for a in "$@"; do case "$a" in ""|*[!0-9.]*) echo "soak-xdp.sh: '$a' is not a number (--help says what the arguments are)" >&2; exit 2;; esac; done
for t in ip python3 ping taskset timeout cargo; do command -v "$t" >/dev/null || { echo "soak-xdp.sh: $t is missing (scripts/setup.sh installs it)" >&2; exit 1; }; done
secs=${1:-180}; size=${2:-64}
[ "$(id -u)" = 0 ] || { echo "soak-xdp.sh: needs root" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "soak-xdp.sh: needs 2 CPUs" >&2; exit 1; }
(cd "$root" && cargo build --release --locked -q -p o7s-control -p o7s-dataplane -p oping -p ocbr -p o7sctl)
bin=$root/target/release
tmp=$(mktemp -d /tmp/o7s-soak.XXXXXX)
n=$("$(dirname "$0")/netns.sh" unique sk 10)
hp_before=$(cat /proc/sys/vm/nr_hugepages); hp_added=0
# Gives back the hugepages this run added (not an absolute value: another run may have
# reserved its own meanwhile).
hp_give_back() {
    [ "$hp_added" -gt 0 ] || return 0
    local now; now=$(cat /proc/sys/vm/nr_hugepages)
    echo $(( now > hp_added ? now - hp_added : 0 )) > /proc/sys/vm/nr_hugepages
}
cleanup() { for p in $(ip netns pids "$n-a" 2>/dev/null) $(ip netns pids "$n-b" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
    sleep 0.5; "$root/scripts/netns.sh" down "$n" >/dev/null 2>&1 || true; rm -rf "$tmp"; hp_give_back; }
trap cleanup EXIT
echo $((hp_before + 50)) > /proc/sys/vm/nr_hugepages; hp_added=$(( $(cat /proc/sys/vm/nr_hugepages) - hp_before ))  # two workers' UMEMs (room for two ports of 12288 2-KiB frames: 24 pages each) and two spare
run() { local s=$1 cpu; shift; cpu=$([ "$s" = a ] && echo 0 || echo 1)
    ip netns exec "$n-$s" env O7S_RUNDIR="$tmp/run-$s" taskset -c "$cpu" "$@"; }
"$root/scripts/netns.sh" up "$n"
target=ocbr
if [ "${O7S_SOAK_ENC:-0}" = 1 ]; then
    # An encrypted flow: a client enc.conf for the name (empty: the defaults) on host A.
    target=ocbr-enc
    mkdir -p "$tmp/security/client/ocbr-enc"; : > "$tmp/security/client/ocbr-enc/enc.conf"
fi
cat > "$tmp/b.conf" <<CONF
[name."oping-server"]
prog=["$bin/oping"]
[name."ocbr"]
prog=["$bin/ocbr"]
[name."ocbr-enc"]
prog=["$bin/ocbr"]
[eth-dix.dix]
bootstrap="soak"
dev="$n-vb"
reg=["oping-server", "ocbr", "ocbr-enc"]
CONF
printf '[eth-dix.dix]\nbootstrap="soak"\ndev="%s"\n' "$n-va" > "$tmp/a.conf"
for s in a b; do
    cpu=$([ "$s" = a ] && echo 0 || echo 1)
    ip netns exec "$n-$s" env O7S_RUNDIR="$tmp/run-$s" "$bin/o7sd" --config "$tmp/$s.conf" --io af_xdp --core "$cpu" > "$tmp/o7sd-$s.log" 2>&1 &
done
for s in a b; do for _ in $(seq 100); do [ -S "$tmp/run-$s/o7sd.sock" ] && break; sleep 0.05; done; done
sleep 0.3
run b "$bin/ocbr" -l --json > "$tmp/ocbr.json" 2>&1 &
run b "$bin/oping" -l -Q > /dev/null 2>&1 &
sleep 0.3
rss() { # "name": KiB of every o7s-dataplane and o7sd in the two namespaces
    local out="" p c
    for p in $(ip netns pids "$n-a") $(ip netns pids "$n-b"); do
        c=$(ps -o comm= -p "$p" 2>/dev/null || true)
        case "$c" in o7s-dataplane|o7sd) out="$out\"$c-$p\": $(ps -o rss= -p "$p" | tr -d ' '),";; esac
    done
    echo "{${out%,}}"
}
samples="[{\"t\": 0, \"rss_kib\": $(rss)}"
run a "$bin/ocbr" -n "$target" -s "$size" -d "$secs" -f --json > "$tmp/client.json" 2>&1 &
client=$!
for i in $(seq $((secs / 30))); do
    sleep 30; samples="$samples, {\"t\": $((i * 30)), \"rss_kib\": $(rss)}"
    echo "soak: $((i * 30)) s" >&2
done
client_ok=true; wait "$client" || client_ok=false
sleep 1
samples="$samples]"
ping=$(run a "$bin/oping" -n oping-server -c 50 -i 10ms --json || echo '{}')
pa=$(run a "$bin/o7sctl" port list --json); pb=$(run b "$bin/o7sctl" port list --json)
enc_log=$(grep -c "Encryption enabled" "$tmp/o7sd-a.log" || true)
mkdir -p "$root/bench-results"
out="$root/bench-results/soak-xdp-$(date -u +%Y%m%dT%H%M%SZ).json"
python3 - "$out" "$tmp/client.json" "$tmp/ocbr.json" <<PY
import json, sys
out, cpath, spath = sys.argv[1:4]
ctext = open(cpath).read().strip().splitlines()
client = next((json.loads(l) for l in reversed(ctext) if l.startswith("{")), {"error": " ".join(ctext)})
server = json.loads(open(spath).read().strip().splitlines()[-1])
pa, pb = json.loads('''$pa''')[0], json.loads('''$pb''')[0]
samples = json.loads('''$samples''')
ping = json.loads('''$ping''')
# Growth after warm-up: from the 30 s sample (buffers touched once by then) to the last.
first, last = samples[min(1, len(samples) - 1)]["rss_kib"], samples[-1]["rss_kib"]
growth = {k: last.get(k, 0) - v for k, v in first.items()}
checks = {
    "client_finished": "$client_ok" == "true" and "sent" in client,
    # A flood may lose SDUs (a full rx ring: `lost` below, counted): what is checked is that
    # the flow carried to the end, its last SDU reaching the server.
    "last_sdu_reached_the_server": server.get("highest_seq") == client.get("sent"),
    "umem_frames_back_a": pa["umem_frames_accounted"] == pa["umem_frames"],
    "umem_frames_back_b": pb["umem_frames_accounted"] == pb["umem_frames"],
    "rss_growth_under_4_mib": all(g < 4096 for g in growth.values()),
    "oping_after_the_flood": ping.get("received") == 50,
}
if "$target" == "ocbr-enc":
    checks["flow_was_encrypted"] = int("$enc_log") > 0
doc = {"command": "O7S_SOAK_ENC=${O7S_SOAK_ENC:-0} scripts/soak-xdp.sh $secs $size", "flow": "$target", "client": client, "server": server,
       "lost": client.get("sent", 0) - server.get("received", 0),
       "lost_at_receiver_rx_ring": pb["xdp_redirected"] - pb["rx_xdp"], "rss_samples": samples,
       "rss_growth_kib": growth, "oping_after": {k: ping.get(k) for k in ("received", "rtt_ms")}, "checks": checks,
       "passed": all(checks.values())}
open(out, "w").write(json.dumps(doc, indent=1))
print(json.dumps({k: doc[k] for k in ("client", "server", "lost", "lost_at_receiver_rx_ring", "rss_growth_kib", "checks", "passed")}, indent=1))
print("file:", out)
sys.exit(0 if doc["passed"] else 1)
PY
