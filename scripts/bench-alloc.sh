#!/usr/bin/env bash
# Flow-allocation latency of two builds in one invocation: a baseline (O7S_BASE_BIN, e.g.
# an older commit built with `git worktree add` + `CARGO_TARGET_DIR=... cargo build
# --release`) and this checkout's release build. Each round starts fresh daemons of one
# build in a namespace pair joined by a veth (eth-dix), allocates and deallocates ALLOCS
# flows one after the other (o7s-bench alloc-client against o7s-bench alloc-server of the
# same build) and stops them; rounds alternate between the builds. Writes JSON with
# every round's p50/p99 and the medians' ratios (this build / baseline) to bench-results/.
#   O7S_BASE_BIN=/path/to/release scripts/bench-alloc.sh [ALLOCS=1000] [ROUNDS=3]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
case "${1:-}" in -h|--help) sed -n '2,/^set -/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0;; esac
for a in "$@"; do case "$a" in ""|*[!0-9.]*) echo "bench-alloc.sh: '$a' is not a number (--help says what the arguments are)" >&2; exit 2;; esac; done
for t in ip python3 cargo git; do command -v "$t" >/dev/null || { echo "bench-alloc.sh: $t is missing (scripts/setup.sh installs it)" >&2; exit 1; }; done
allocs=${1:-1000}; rounds=${2:-3}
[ "$(id -u)" = 0 ] || { echo "bench-alloc.sh: needs root" >&2; exit 1; }
base=${O7S_BASE_BIN:?set O7S_BASE_BIN to the baseline build\'s directory (o7sd, o7s-dataplane, o7s-bench)}
for b in o7sd o7s-dataplane o7s-bench; do
    [ -x "$base/$b" ] || { echo "bench-alloc.sh: $base/$b is missing" >&2; exit 1; }
done
(cd "$root" && cargo build --release --locked -q -p o7s-control -p o7s-dataplane -p o7s-bench)
new=$root/target/release
name=$("$(dirname "$0")/netns.sh" unique oa 10)
tmp=$(mktemp -d /tmp/o7s-bench-alloc.XXXXXX)
stop_all() {
    for p in "$tmp"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; rm -f "$p"; done
    for ns in "$name-a" "$name-b"; do for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null || true; done; done
    sleep 0.5
}
cleanup() { stop_all; "$root/scripts/netns.sh" down "$name" >/dev/null 2>&1 || true; rm -rf "$tmp"; }
trap cleanup EXIT
"$root/scripts/netns.sh" up "$name" >/dev/null

# One round with the build in $1: prints alloc-client's JSON.
round() {
    local bin=$1 r=$2
    rm -rf "$tmp/run-a" "$tmp/run-b"
    printf '[name."alloc-bench"]\nprog=["%s"]\n[eth-dix.dix]\nbootstrap="bench"\ndev="%s"\nreg=["alloc-bench"]\n' \
        "$bin/o7s-bench" "$name-vb" > "$tmp/b.conf"
    printf '[eth-dix.dix]\nbootstrap="bench"\ndev="%s"\n' "$name-va" > "$tmp/a.conf"
    for s in a b; do
        ip netns exec "$name-$s" env O7S_RUNDIR="$tmp/run-$s" "$bin/o7sd" --config "$tmp/$s.conf" > "$tmp/o7sd-$s-$r.log" 2>&1 &
        echo $! > "$tmp/o7sd-$s.pid"
    done
    for s in a b; do for _ in $(seq 100); do [ -S "$tmp/run-$s/o7sd.sock" ] && break; sleep 0.05; done; done
    sleep 0.3
    ip netns exec "$name-b" env O7S_RUNDIR="$tmp/run-b" "$bin/o7s-bench" alloc-server > /dev/null 2>&1 &
    echo $! > "$tmp/srv.pid"
    sleep 0.3
    local rc=0
    ip netns exec "$name-a" env O7S_RUNDIR="$tmp/run-a" "$bin/o7s-bench" alloc-client -n alloc-bench -c "$allocs" || rc=$?
    stop_all
    return "$rc"
}
# A round whose allocations failed (alloc-client exits non-zero) ends the benchmark: its
# medians would describe something else.
failed_round() {
    echo "bench-alloc.sh: round $1 had failed allocations: $2 (o7sd logs: $tmp kept)" >&2
    trap - EXIT; stop_all; "$root/scripts/netns.sh" down "$name" >/dev/null 2>&1 || true
    exit 1
}

base_runs=(); new_runs=()
for r in $(seq "$rounds"); do
    echo "round $r: baseline ..." >&2
    one=$(round "$base" "base$r") || failed_round "base$r" "$one"
    base_runs+=("$one")
    echo "round $r: this build ..." >&2
    one=$(round "$new" "new$r") || failed_round "new$r" "$one"
    new_runs+=("$one")
done
join() { local IFS=,; echo "$*"; }
mkdir -p "$root/bench-results"
out="$root/bench-results/alloc-$(date -u +%Y%m%dT%H%M%SZ).json"
python3 - "$out" "$allocs" "$rounds" "$base" "$(git -C "$root" rev-parse --short HEAD)" \
    "[$(join "${base_runs[@]}")]" "[$(join "${new_runs[@]}")]" <<'PY'
import json, statistics, subprocess, sys, datetime, os
out, allocs, rounds, base, head, b, n = sys.argv[1:]
b, n = json.loads(b), json.loads(n)
med = lambda runs, k: statistics.median(r["latency_ms"][k] for r in runs)
res = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "machine": f"{os.cpu_count()} vCPU, {os.uname().release}",
    "command": f"O7S_BASE_BIN={base} scripts/bench-alloc.sh {allocs} {rounds}",
    "this_build": head,
    "baseline": {"runs": b, "p50_ms": med(b, "p50"), "p99_ms": med(b, "p99")},
    "this": {"runs": n, "p50_ms": med(n, "p50"), "p99_ms": med(n, "p99")},
}
res["ratio_p50"] = round(res["this"]["p50_ms"] / res["baseline"]["p50_ms"], 3)
res["ratio_p99"] = round(res["this"]["p99_ms"] / res["baseline"]["p99_ms"], 3)
json.dump(res, open(out, "w"), indent=1)
print(json.dumps({k: v for k, v in res.items() if k not in ("baseline", "this")} |
                 {"baseline_p50_p99_ms": [res["baseline"]["p50_ms"], res["baseline"]["p99_ms"]],
                  "this_p50_p99_ms": [res["this"]["p50_ms"], res["this"]["p99_ms"]], "file": out}))
PY
