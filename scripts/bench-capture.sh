#!/usr/bin/env bash
# What `o7sctl capture` costs a 1400-byte ocbr flood over an AF_XDP eth-dix port: runs
# alternate between the flood alone and the flood while the receiving port is captured
# (o7sctl capture ... -w /dev/null), on one veth pair between namespaces (host A on CPU 0,
# host B on CPU 1), in one invocation. Reports delivered Mbit/s (medians of RUNS runs),
# their ratio (goal >= 0.95), and the frames each capture copied and dropped.
# JSON to bench-results/capture-<date>.json.
#   scripts/bench-capture.sh [SECONDS=3] [RUNS=5]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
case "${1:-}" in -h|--help) sed -n '2,/^set -/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0;; esac
for a in "$@"; do case "$a" in ""|*[!0-9.]*) echo "bench-capture.sh: '$a' is not a number (--help says what the arguments are)" >&2; exit 2;; esac; done
for t in ip python3 taskset cargo; do command -v "$t" >/dev/null || { echo "bench-capture.sh: $t is missing (scripts/setup.sh installs it)" >&2; exit 1; }; done
secs=${1:-3}; runs=${2:-5}
[ "$(id -u)" = 0 ] || { echo "bench-capture.sh: needs root" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "bench-capture.sh: needs 2 CPUs" >&2; exit 1; }
(cd "$root" && cargo build --release --locked -q -p o7s-control -p o7s-dataplane -p ocbr -p o7sctl)
bin=$root/target/release
tmp=$(mktemp -d /tmp/o7s-bench-cap.XXXXXX)
N=$("$(dirname "$0")/netns.sh" unique oc 10)
cleanup() { for s in a b; do for p in $(ip netns pids "$N-$s" 2>/dev/null); do kill "$p" 2>/dev/null || true; done; done
    sleep 0.5; "$root/scripts/netns.sh" down "$N" >/dev/null 2>&1 || true; rm -rf "$tmp"; }
trap cleanup EXIT
run() { local s=$1 cpu; shift; cpu=$([ "$s" = a ] && echo 0 || echo 1)
    ip netns exec "$N-$s" env O7S_RUNDIR="$tmp/run-$s" taskset -c "$cpu" "$@"; }
"$root/scripts/netns.sh" up "$N"
printf '[name."ocbr"]\nprog=["%s"]\n[eth-dix.dix]\nbootstrap="bench"\ndev="%s"\nreg=["ocbr"]\n' "$bin/ocbr" "$N-vb" > "$tmp/b.conf"
printf '[eth-dix.dix]\nbootstrap="bench"\ndev="%s"\n' "$N-va" > "$tmp/a.conf"
for s in a b; do
    cpu=$([ "$s" = a ] && echo 0 || echo 1)
    ip netns exec "$N-$s" env O7S_RUNDIR="$tmp/run-$s" "$bin/o7sd" --config "$tmp/$s.conf" --core "$cpu" > "$tmp/o7sd-$s.log" 2>&1 &
done
for s in a b; do for _ in $(seq 100); do [ -S "$tmp/run-$s/o7sd.sock" ] && break; sleep 0.05; done; done
sleep 0.3
io=$(run b "$bin/o7sctl" port list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["io_path"])')
case "$io" in af_xdp*) ;; *) echo "bench-capture.sh: the port is not on AF_XDP: $io" >&2; exit 1;; esac
run b "$bin/ocbr" -l --json > "$tmp/ocbr.json" 2>&1 &
sleep 0.3
flood() { # -> JSON of one run
    local before cl sv; before=$(wc -l < "$tmp/ocbr.json")
    cl=$(run a "$bin/ocbr" -n ocbr -s 1400 -f -d "$secs" --json) ||
        { echo "bench-capture.sh: the ocbr client failed: $cl" >&2; exit 1; }
    for _ in $(seq 100); do [ "$(wc -l < "$tmp/ocbr.json")" -gt "$before" ] && break; sleep 0.1; done
    [ "$(wc -l < "$tmp/ocbr.json")" -gt "$before" ] || { echo "bench-capture.sh: the ocbr server wrote no result for this run within 10 s" >&2; exit 1; }
    sv=$(tail -1 "$tmp/ocbr.json")
    python3 -c "
import json
c = json.loads('$cl'); s = json.loads('$sv')
print(json.dumps({'sent': c['sent'], 'received': s['received'], 'mbps': round(s['mbps'], 1)}))"
}
plain=""; captured=""
for r in $(seq "$runs"); do
    echo "flood alone, run $r/$runs ..." >&2
    plain="$plain$(flood),"
    echo "flood while captured, run $r/$runs ..." >&2
    run b "$bin/o7sctl" capture dix -w /dev/null 2> "$tmp/cap.err" &
    cap=$!
    for _ in $(seq 100); do grep -q "capturing on" "$tmp/cap.err" 2>/dev/null && break; sleep 0.05; done
    one=$(flood)
    # (A background job of a script ignores SIGINT: stop o7sctl itself, with SIGTERM.)
    "$root/scripts/netns.sh" signal "$N-b" TERM o7sctl || true
    wait "$cap" || true
    # o7sctl's last line: "N frames captured" and, when some were, ", M frames dropped (the
    # ring was full)" ("frame" for 1).
    counts=$(sed -n -e 's/.*: \([0-9]*\) frames\{0,1\} captured, \([0-9]*\) frames\{0,1\} dropped.*/{"captured": \1, "dropped": \2}/p' \
        -e 's/.*: \([0-9]*\) frames\{0,1\} captured$/{"captured": \1, "dropped": 0}/p' "$tmp/cap.err" | tail -1)
    [ -n "$counts" ] || { echo "bench-capture.sh: o7sctl capture reported no counts:" >&2; cat "$tmp/cap.err" >&2; exit 1; }
    captured="$captured$(python3 -c "import json; a=json.loads('$one'); a.update(json.loads('${counts:-{\}}')); print(json.dumps(a))"),"
done
mkdir -p "$root/bench-results"
out="$root/bench-results/capture-$(date -u +%Y%m%dT%H%M%SZ).json"
python3 - "$out" <<PY
import json, statistics, sys, datetime
plain = json.loads('[${plain%,}]'); cap = json.loads('[${captured%,}]')
m0 = statistics.median(r['mbps'] for r in plain); m1 = statistics.median(r['mbps'] for r in cap)
res = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
       "what": "ocbr -s 1400 -f over AF_XDP, alone vs while o7sctl capture runs on the receiving port",
       "io_path": "$io", "seconds": $secs, "runs": $runs,
       "alone": plain, "captured": cap,
       "median_mbps_alone": m0, "median_mbps_captured": m1,
       "ratio": round(m1 / m0, 3) if m0 else None,
       "goal": "ratio >= 0.95, drops counted",
       "met": bool(m0) and m1 / m0 >= 0.95 and all("dropped" in r for r in cap)}
json.dump(res, open(sys.argv[1], "w"), indent=1)
print(json.dumps({k: res[k] for k in ("median_mbps_alone", "median_mbps_captured", "ratio", "met")}))
print("captures:", [(r.get("captured"), r.get("dropped")) for r in cap])
PY
echo "bench-capture.sh: $out"
