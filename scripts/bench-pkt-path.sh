#!/usr/bin/env bash
# The data plane's per-packet path in isolation (parse a received eth-dix frame, look its
# flow up in a 1024-flow table, build the frame of an SDU to the peer): ns per packet,
# median of RUNS runs, at 64 and 1400 bytes; instructions per packet from `perf stat` when
# the machine has hardware counters, else from valgrind's callgrind (counts instructions by
# simulation: exact and repeatable, whatever the machine's load), as the difference
# between a run of N packets and a run of none, divided by N.
# JSON to bench-results/pkt-path-<date>.json.
#   scripts/bench-pkt-path.sh [RUNS=5] [PACKETS=10000000]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
case "${1:-}" in -h|--help) sed -n '2,/^set -/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0;; esac
for a in "$@"; do case "$a" in ""|*[!0-9.]*) echo "bench-pkt-path.sh: '$a' is not a number (--help says what the arguments are)" >&2; exit 2;; esac; done
runs=${1:-5}; count=${2:-10000000}
(cd "$root" && cargo build --release --locked -q -p o7s-bench)
b=$root/target/release/o7s-bench
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
instr() { # instructions:u of one run of COUNT packets, or "" when not supported
    perf stat -x, -e instructions:u "$b" pkt-path -c "$1" -s "$2" 2>&1 >/dev/null | awk -F, '/instructions/ {print $1}' | grep -E '^[0-9]+$' || true
}
cg() { # instructions counted by callgrind for one run of COUNT packets
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$b" pkt-path -c "$1" -s "$2" 2>&1 >/dev/null |
        sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p'
}
cg_count=200000
res="{"
for size in 64 1400; do
    ns=()
    for _ in $(seq "$runs"); do
        ns+=("$("$b" pkt-path -c "$count" -s "$size" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ns_per_packet"])')")
    done
    ipp=null; why="\"neither perf with hardware counters nor valgrind is available\""
    full=""; base=""
    if command -v perf >/dev/null; then
        full=$(instr "$count" "$size"); base=$(instr 0 "$size")
    fi
    if [ -n "$full" ] && [ -n "$base" ]; then
        ipp=$(python3 -c "print(round(($full - $base) / $count, 1))"); why="\"perf stat instructions:u\""
    elif command -v valgrind >/dev/null; then
        full=$(cg "$cg_count" "$size"); base=$(cg 0 "$size")
        if [ -n "$full" ] && [ -n "$base" ]; then
            ipp=$(python3 -c "print(round(($full - $base) / $cg_count, 1))")
            why="\"valgrind callgrind, ($cg_count packets - 0 packets) / $cg_count (perf has no hardware counters here)\""
        fi
    fi
    res="$res\"$size\": {\"ns_per_packet_median\": $(printf '%s\n' "${ns[@]}" | median), \"ns_per_packet_runs\": [$(IFS=,; echo "${ns[*]}")], \"instructions_per_packet\": $ipp, \"instructions_source\": $why},"
done
res="${res%,}}"
mkdir -p "$root/bench-results"
out="$root/bench-results/pkt-path-$(date -u +%Y%m%dT%H%M%SZ).json"
python3 - "$out" <<PY
import json, sys
doc = {"date": "$(date -u +%FT%TZ)", "machine": "$(nproc) vCPU, $(uname -r)",
       "command": "scripts/bench-pkt-path.sh $runs $count", "packets_per_run": $count,
       "path": "packet_path::classify_eth over a frame of one of 1024 plain flows (deliver) + frames::build_dix (the SDU back)",
       "sizes": json.loads('''$res''')}
open(sys.argv[1], "w").write(json.dumps(doc, indent=1))
print(json.dumps(doc, indent=1))
PY
