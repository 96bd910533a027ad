#!/usr/bin/env bash
# The data plane's per-packet path in isolation (parse a received eth-dix frame, look its
# flow up in a 1024-flow table, build the frame of an SDU to the peer): ns per packet,
# median of RUNS runs, at 64 and 1400 bytes; instructions per packet from `perf stat` when
# the machine has hardware counters (virtual machines often do not: then null, with why).
# JSON to bench-results/pkt-path-<date>.json.
#   scripts/bench-pkt-path.sh [RUNS=5] [PACKETS=10000000]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-5}; count=${2:-10000000}
(cd "$root" && cargo build --release --locked -q -p o7s-bench)
b=$root/target/release/o7s-bench
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
instr() { # instructions:u of one run of COUNT packets, or "" when not supported
    perf stat -x, -e instructions:u "$b" pkt-path -c "$1" -s "$2" 2>&1 >/dev/null | awk -F, '/instructions/ {print $1}' | grep -E '^[0-9]+$' || true
}
res="{"
for size in 64 1400; do
    ns=()
    for _ in $(seq "$runs"); do
        ns+=("$("$b" pkt-path -c "$count" -s "$size" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ns_per_packet"])')")
    done
    ipp=null; why="\"perf is not installed\""
    if command -v perf >/dev/null; then
        full=$(instr "$count" "$size"); base=$(instr 0 "$size")
        if [ -n "$full" ] && [ -n "$base" ]; then
            ipp=$(python3 -c "print(round(($full - $base) / $count, 1))"); why=null
        else
            why="\"perf stat: instructions not supported here (no hardware counters in this VM)\""
        fi
    fi
    res="$res\"$size\": {\"ns_per_packet_median\": $(printf '%s\n' "${ns[@]}" | median), \"ns_per_packet_runs\": [$(IFS=,; echo "${ns[*]}")], \"instructions_per_packet\": $ipp, \"instructions_note\": $why},"
done
res="${res%,}}"
mkdir -p "$root/bench-results"
out="$root/bench-results/pkt-path-$(date -u +%Y%m%dT%H%M%SZ).json"
python3 - "$out" <<PY
import json, sys
doc = {"date": "$(date -u +%FT%TZ)", "machine": "$(nproc) vCPU, $(uname -r)",
       "command": "scripts/bench-pkt-path.sh $runs $count", "packets_per_run": $count,
       "path": "frames::parse + (port, eid) lookup in a 1024-flow foldhash table + frames::build_dix",
       "sizes": json.loads('''$res''')}
open(sys.argv[1], "w").write(json.dumps(doc, indent=1))
print(json.dumps(doc, indent=1))
PY
