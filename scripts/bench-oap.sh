#!/usr/bin/env bash
# Benchmark of OAP security, in one invocation, on two paths of the data plane:
#   - eth: eth-dix over a veth pair between two namespaces, data frames through XDP and the
#     AF_XDP socket (o7sd --io auto; the path taken is recorded);
#   - udp4: 127.0.0.1 <-> 127.0.0.2 in one namespace (GSO batches, the cheapest path).
# Host A (o7sd --core 0, the client apps) runs on CPU 0, host B on CPU 1. Per path: one-flow
# ocbr flood goodput at 64 and 1400 bytes on a plaintext flow (name "ocbr") and on an
# encrypted flow of the same path (name "ocbr-enc": P-256, AES-256-GCM, the defaults),
# alternating runs, medians of RUNS; flow-allocation latency p50/p99 over ALLOCS
# allocations without security and with authentication + encryption (P-256 PKI from
# scripts/pki.sh); and the cipher alone (o7s-bench crypt: seal + open per SDU), which bounds
# what encryption can cost. JSON to bench-results/.
#   scripts/bench-oap.sh [SECONDS=3] [RUNS=5] [ALLOCS=500]
# O7S_BIN=DIR takes o7sd, o7s-dataplane, ocbr, o7sctl and o7s-bench from DIR instead of
# target/release (to measure another build, e.g. a baseline, in the same session).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
case "${1:-}" in -h|--help) sed -n '2,/^set -/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0;; esac
for a in "$@"; do case "$a" in ""|*[!0-9.]*) echo "bench-oap.sh: '$a' is not a number (--help says what the arguments are)" >&2; exit 2;; esac; done
for t in ip python3 taskset cargo openssl; do command -v "$t" >/dev/null || { echo "bench-oap.sh: $t is missing (scripts/setup.sh installs it)" >&2; exit 1; }; done
secs=${1:-3}; runs=${2:-5}; allocs=${3:-500}
[ "$(id -u)" = 0 ] || { echo "bench-oap.sh: needs root" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "bench-oap.sh: needs 2 CPUs (host A on CPU 0, host B on CPU 1)" >&2; exit 1; }
(cd "$root" && cargo build --release --locked -q -p o7s-control -p o7s-dataplane -p ocbr -p o7sctl -p o7s-bench)
bin=${O7S_BIN:-$root/target/release}
E=$("$(dirname "$0")/netns.sh" unique oe 10)   # eth pair: namespaces $E-a, $E-b
U=$("$(dirname "$0")/netns.sh" unique ou 10)   # udp4: one namespace $U
tmp=$(mktemp -d /tmp/o7s-bench-oap.XXXXXX)
nss() { echo "$E-a $E-b $U"; }
cleanup() {
    local rc=$?
    if [ "$rc" != 0 ]; then
        for f in "$tmp"/*/o7sd.log; do [ -f "$f" ] && { echo "== $f" >&2; tail -20 "$f" >&2; }; done
    fi
    for ns in $(nss); do for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null || true; done; done
    sleep 0.3
    "$root/scripts/netns.sh" down "$E" >/dev/null 2>&1 || true
    ip netns del "$U" 2>/dev/null || true
    rm -rf "/etc/netns/$U" "$tmp"
}
trap cleanup EXIT

names=(ocbr ocbr-enc alloc-plain alloc-sec)
# PKI: the server of alloc-sec proves its name; the clients trust its CA.
CURVE=P-256 NAME=alloc-sec "$root/scripts/pki.sh" "$tmp/pki" > /dev/null
security() { # DIR: a host's security directory
    mkdir -p "$1/cacert" "$1/untrusted" "$1/client/ocbr-enc" "$1/client/alloc-sec" "$1/server/alloc-sec"
    cp "$tmp/pki/root/crt.pem" "$1/cacert/ca.pem"
    cp "$tmp/pki/sign/crt.pem" "$1/untrusted/sign.pem"
    : > "$1/client/ocbr-enc/enc.conf"   # empty: the defaults (P-256, AES-256-GCM, SHA-256)
    : > "$1/client/alloc-sec/enc.conf"
    cp "$tmp/pki/server/crt.pem" "$tmp/pki/server/key.pem" "$1/server/alloc-sec/"
}
server_names() {
    printf '[name."ocbr"]\nprog=["%s"]\n[name."ocbr-enc"]\nprog=["%s"]\n' "$bin/ocbr" "$bin/ocbr"
    printf '[name."alloc-plain"]\nprog=["%s"]\n[name."alloc-sec"]\nprog=["%s"]\n' "$bin/o7s-bench" "$bin/o7s-bench"
}
reg='reg=["ocbr", "ocbr-enc", "alloc-plain", "alloc-sec"]'

# eth path
"$root/scripts/netns.sh" up "$E"
for s in a b; do mkdir -p "$tmp/eth-$s"; security "$tmp/eth-$s/security"; done
{ server_names; printf '[eth-dix.dix]\nbootstrap="bench"\ndev="%s"\n%s\n' "$E-vb" "$reg"; } > "$tmp/eth-b/o7sd.conf"
printf '[eth-dix.dix]\nbootstrap="bench"\ndev="%s"\n' "$E-va" > "$tmp/eth-a/o7sd.conf"
# udp4 path
ip netns add "$U"; ip -n "$U" link set lo up
md5() { printf '%s' "$1" | md5sum | cut -d' ' -f1; }
mkdir -p "/etc/netns/$U"
{ echo "127.0.0.1 localhost"; for n in "${names[@]}"; do echo "127.0.0.2 $(md5 "$n")"; done; } > "/etc/netns/$U/hosts"
printf 'nameserver 127.0.0.1\n' > "/etc/netns/$U/resolv.conf"
for s in a b; do mkdir -p "$tmp/udp-$s"; security "$tmp/udp-$s/security"; done
{ server_names; printf '[udp4.u]\nbootstrap="udp"\nip="127.0.0.2"\n%s\n' "$reg"; } > "$tmp/udp-b/o7sd.conf"
printf '[udp4.u]\nbootstrap="udp"\nip="127.0.0.1"\n' > "$tmp/udp-a/o7sd.conf"

ns_of() { # PATH SIDE
    if [ "$1" = eth ]; then echo "$E-$2"; else echo "$U"; fi
}
run() { # PATH SIDE CMD...: in that host's namespace and CPU, talking to its daemon
    local p=$1 s=$2 cpu; shift 2; cpu=$([ "$s" = a ] && echo 0 || echo 1)
    ip netns exec "$(ns_of "$p" "$s")" env O7S_RUNDIR="$tmp/$p-$s/run" taskset -c "$cpu" "$@"
}
for p in eth udp; do
    for s in a b; do
        cpu=$([ "$s" = a ] && echo 0 || echo 1)
        run "$p" "$s" "$bin/o7sd" --config "$tmp/$p-$s/o7sd.conf" --core "$cpu" > "$tmp/$p-$s/o7sd.log" 2>&1 &
    done
    for s in a b; do for _ in $(seq 100); do [ -S "$tmp/$p-$s/run/o7sd.sock" ] && break; sleep 0.05; done; done
    sleep 0.3
    run "$p" b "$bin/ocbr" -l --json > "$tmp/$p-ocbr.json" 2>&1 &
    run "$p" b "$bin/o7s-bench" alloc-server &
done
sleep 0.5
io_path=$(run eth b "$bin/o7sctl" port list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["io_path"])')
echo "eth path: $io_path" >&2

field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }
flood() { # PATH NAME SIZE -> server-measured Mbit/s
    local before; before=$(wc -l < "$tmp/$1-ocbr.json")
    run "$1" a "$bin/ocbr" -n "$2" -s "$3" -f -d "$secs" --json > /dev/null ||
        { echo "bench-oap.sh: the ocbr client to $2 ($1, $3 B) failed" >&2; exit 1; }
    for _ in $(seq 100); do [ "$(wc -l < "$tmp/$1-ocbr.json")" -gt "$before" ] && break; sleep 0.1; done
    [ "$(wc -l < "$tmp/$1-ocbr.json")" -gt "$before" ] || { echo "bench-oap.sh: the ocbr server wrote no result for this run within 10 s" >&2; exit 1; }
    tail -1 "$tmp/$1-ocbr.json" | field mbps
}
declare -A R
for size in 64 1400; do
    for r in $(seq "$runs"); do
        for p in eth udp; do
            for name in ocbr ocbr-enc; do
                echo "$p $size B run $r/$runs: $name ($secs s) ..." >&2
                R[$p-$size-$name]="${R[$p-$size-$name]:-}$(flood "$p" "$name" "$size"),"
            done
        done
    done
done
alloc="{"
for p in eth udp; do
    echo "$p: allocations x$allocs, plain and auth+enc ..." >&2
    aplain=$(run "$p" a "$bin/o7s-bench" alloc-client -n alloc-plain -c "$allocs")
    asec=$(run "$p" a "$bin/o7s-bench" alloc-client -n alloc-sec -c "$allocs")
    grep -q "Successfully authenticated alloc-sec" "$tmp/$p-a/o7sd.log" ||
        { echo "bench-oap.sh: $p: alloc-sec was not authenticated" >&2; exit 1; }
    alloc="$alloc\"$p\": {\"plain\": $aplain, \"auth_enc\": $asec},"
done
alloc="${alloc%,}}"
# The flows to ocbr-enc really were encrypted.
for p in eth udp; do
    grep -q "Encryption enabled for ocbr-enc" "$tmp/$p-a/o7sd.log" ||
        { echo "bench-oap.sh: $p: the ocbr-enc flows were not encrypted" >&2; exit 1; }
done
cipher="["
for size in 64 1400; do
    cipher="$cipher$(taskset -c 0 "$bin/o7s-bench" crypt -s "$size" --cipher aes-256-gcm),"
done
cipher="${cipher%,}]"

mkdir -p "$root/bench-results"
out="$root/bench-results/oap-$(date -u +%Y%m%dT%H%M%SZ).json"
python3 - "$out" <<PY
import json, statistics, sys
R = {k: [float(x) for x in v.strip(",").split(",")] for k, v in {
$(for k in "${!R[@]}"; do printf '    "%s": "%s",\n' "$k" "${R[$k]}"; done)
}.items()}
goodput = {}
for p in ("eth", "udp"):
    goodput[p] = {}
    for size in ("64", "1400"):
        pl, en = R[f"{p}-{size}-ocbr"], R[f"{p}-{size}-ocbr-enc"]
        pm, em = statistics.median(pl), statistics.median(en)
        goodput[p][size] = {"plain_mbps": round(pm, 1), "encrypted_mbps": round(em, 1),
                            "ratio": round(em / pm, 3) if pm else 0,
                            "runs_plain": [round(x, 1) for x in pl], "runs_encrypted": [round(x, 1) for x in en]}
goals = {f"encrypted_over_plain_1400_{p}": {"value": goodput[p]["1400"]["ratio"], "goal": ">= 0.8",
                                           "met": goodput[p]["1400"]["ratio"] >= 0.8} for p in ("eth", "udp")}
doc = {"date": "$(date -u +%FT%TZ)", "machine": "$(nproc) vCPU, $(uname -r)",
       "command": "scripts/bench-oap.sh $secs $runs $allocs",
       "paths": {"eth": "eth-dix over veth, $io_path, host A = CPU 0, host B = CPU 1",
                 "udp": "udp4 127.0.0.1 <-> 127.0.0.2, host A = CPU 0, host B = CPU 1"},
       "cipher": "AES-256-GCM, P-256 key exchange (enc.conf empty: the defaults)",
       "goodput_flood": goodput, "flow_alloc": json.loads('''$alloc'''),
       "cipher_alone": json.loads('''$cipher'''), "goals": goals}
open(sys.argv[1], "w").write(json.dumps(doc, indent=1))
short = {p: {s: {k: v for k, v in goodput[p][s].items() if not k.startswith("runs")} for s in goodput[p]} for p in goodput}
print(json.dumps({"goodput_medians": short, "goals": goals,
                  "flow_alloc_p50_p99_ms": {p: {k: [a["latency_ms"]["p50"], a["latency_ms"]["p99"]] for k, a in v.items()}
                                            for p, v in doc["flow_alloc"].items()},
                  "cipher_alone": [{k: c[k] for k in ("size", "seal_ns_per_packet", "open_ns_per_packet")} for c in doc["cipher_alone"]],
                  "file": sys.argv[1]}, indent=1))
PY
