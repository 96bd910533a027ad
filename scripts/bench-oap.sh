#!/usr/bin/env bash
# Benchmark of OAP security over the udp4 layer on one host (127.0.0.1 <-> 127.0.0.2 in a
# fresh namespace), in one invocation: one-flow ocbr goodput (flood) at 64 and 1400 bytes on
# a plaintext flow and on an encrypted flow (P-256, AES-256-GCM) of the same path, medians of
# RUNS; and flow-allocation latency p50/p99 over ALLOCS allocations without security and with
# authentication + encryption (P-256 PKI from scripts/pki.sh). JSON to bench-results/.
#   scripts/bench-oap.sh [SECONDS=3] [RUNS=3] [ALLOCS=500]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-3}; runs=${2:-3}; allocs=${3:-500}
[ "$(id -u)" = 0 ] || { echo "bench-oap.sh: needs root" >&2; exit 1; }
(cd "$root" && cargo build --release --locked -q -p o7s-control -p o7s-dataplane -p ocbr -p o7sctl -p o7s-bench)
bin=$root/target/release
ns=o7o$$; ns=${ns:0:12}
tmp=$(mktemp -d /tmp/o7s-bench-oap.XXXXXX)
cleanup() {
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
    sleep 0.3; ip netns del "$ns" 2>/dev/null || true; rm -rf "/etc/netns/$ns" "$tmp"
}
trap cleanup EXIT
ip netns add "$ns"; ip -n "$ns" link set lo up
md5() { printf '%s' "$1" | md5sum | cut -d' ' -f1; }
mkdir -p "/etc/netns/$ns"
{
    echo "127.0.0.1 localhost"
    for n in ocbr ocbr-enc alloc-plain alloc-sec; do echo "127.0.0.2 $(md5 $n)"; done
} > "/etc/netns/$ns/hosts"
printf 'nameserver 127.0.0.1\n' > "/etc/netns/$ns/resolv.conf"
CURVE=P-256 "$root/scripts/pki.sh" "$tmp/pki" > /dev/null
for s in a b; do
    mkdir -p "$tmp/$s/security/cacert" "$tmp/$s/security/untrusted"
    cp "$tmp/pki/root/crt.pem" "$tmp/$s/security/cacert/ca.pem"
    cp "$tmp/pki/sign/crt.pem" "$tmp/$s/security/untrusted/sign.pem"
done
mkdir -p "$tmp/a/security/client/ocbr-enc" "$tmp/a/security/client/alloc-sec" "$tmp/b/security/server/alloc-sec"
: > "$tmp/a/security/client/ocbr-enc/enc.conf"
: > "$tmp/a/security/client/alloc-sec/enc.conf"
# The server's certificate must carry the name it serves.
NAME=alloc-sec CURVE=P-256 "$root/scripts/pki.sh" "$tmp/pki-sec" > /dev/null
cp "$tmp/pki-sec/root/crt.pem" "$tmp/a/security/cacert/ca-sec.pem"
cp "$tmp/pki-sec/sign/crt.pem" "$tmp/a/security/untrusted/sign-sec.pem"
cp "$tmp/pki-sec/server/crt.pem" "$tmp/pki-sec/server/key.pem" "$tmp/b/security/server/alloc-sec/"
cat > "$tmp/b/o7sd.conf" <<CONF
[name."ocbr"]
prog=["$bin/ocbr"]
[name."ocbr-enc"]
prog=["$bin/ocbr"]
[name."alloc-plain"]
prog=["$bin/o7s-bench"]
[name."alloc-sec"]
prog=["$bin/o7s-bench"]
[udp4.u]
bootstrap="udp"
ip="127.0.0.2"
reg=["ocbr", "ocbr-enc", "alloc-plain", "alloc-sec"]
CONF
printf '[udp4.u]\nbootstrap="udp"\nip="127.0.0.1"\n' > "$tmp/a/o7sd.conf"
run() { ip netns exec "$ns" env O7S_RUNDIR="$tmp/run-$1" "${@:2}"; }
for s in a b; do
    run "$s" "$bin/o7sd" --config "$tmp/$s/o7sd.conf" > "$tmp/o7sd-$s.log" 2>&1 &
done
for s in a b; do for _ in $(seq 100); do [ -S "$tmp/run-$s/o7sd.sock" ] && break; sleep 0.05; done; done
sleep 0.3
run b "$bin/ocbr" -l --json > "$tmp/ocbr.json" 2>&1 &
run b "$bin/o7s-bench" alloc-server &
sleep 0.3

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }
tput='{'
for size in 64 1400; do
    p=(); e=()
    for r in $(seq "$runs"); do
        for name in ocbr ocbr-enc; do
            echo "size $size run $r: $name ($secs s) ..." >&2
            before=$(wc -l < "$tmp/ocbr.json")
            run a "$bin/ocbr" -n "$name" -s "$size" -f -d "$secs" --json > /dev/null
            for _ in $(seq 100); do [ "$(wc -l < "$tmp/ocbr.json")" -gt "$before" ] && break; sleep 0.1; done
            v=$(tail -1 "$tmp/ocbr.json" | field mbps)
            if [ "$name" = ocbr ]; then p+=("$v"); else e+=("$v"); fi
        done
    done
    pm=$(printf '%s\n' "${p[@]}" | median); em=$(printf '%s\n' "${e[@]}" | median)
    ratio=$(python3 -c "print(round($em/$pm,3) if $pm else 0)")
    tput="$tput\"$size\": {\"plain_mbps\": $pm, \"encrypted_mbps\": $em, \"ratio\": $ratio, \"runs_plain\": [$(IFS=,; echo "${p[*]}")], \"runs_encrypted\": [$(IFS=,; echo "${e[*]}")]},"
done
tput="${tput%,}}"
echo "allocations x$allocs, plain and auth+enc ..." >&2
aplain=$(run a "$bin/o7s-bench" alloc-client -n alloc-plain -c "$allocs")
asec=$(run a "$bin/o7s-bench" alloc-client -n alloc-sec -c "$allocs")
grep -q "Successfully authenticated alloc-sec" "$tmp/o7sd-a.log" || { echo "bench-oap.sh: alloc-sec was not authenticated" >&2; exit 1; }
mkdir -p "$root/bench-results"
out="$root/bench-results/oap-$(date -u +%Y%m%dT%H%M%SZ).json"
cat > "$out" <<JSON
{"date": "$(date -u +%FT%TZ)", "machine": "$(nproc) vCPU, $(uname -r)", "command": "scripts/bench-oap.sh $secs $runs $allocs",
 "path": "udp4 127.0.0.1 <-> 127.0.0.2, AES-256-GCM, P-256", "goodput_flood": $tput,
 "flow_alloc": {"plain": $aplain, "auth_enc": $asec}}
JSON
cat "$out"
