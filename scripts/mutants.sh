#!/usr/bin/env bash
# Mutation testing with cargo-mutants (issue 29, docs/TESTING.md): it changes the code
# (an operator, a constant, a function body) and runs the tests; a mutant no test
# notices ("missed") is code whose behaviour no test pins down.
#
#   scripts/mutants.sh --in-diff [BASE]   the lines changed since BASE (default HEAD~1) in
#                                         the pure crates' sources; fails on a missed mutant
#   scripts/mutants.sh FILE...            every mutant of these files (proto/, wire/, and
#                                         dataplane/src/shaper.rs, impair.rs, packet_path.rs
#                                         and packet_path/fast.rs,
#                                         dt.rs, route_map.rs, local_flows.rs, queue_spread.rs
#                                         and handoff.rs), with a
#                                         report
#
# The pure code is what it covers: o7s-proto, o7s-wire and the data plane's pure parts: the
# shaper, the impairments, the per-packet decision, the DT decision and its tables, the
# queues over workers and the hand-off between workers (no sockets, fast tests). Results in mutants.out/ (outcomes.json, missed.txt, caught.txt).
# Installs cargo-mutants (pinned) when it is missing. MUTANTS_JOBS=1 builds one mutant at a
# time (default 2), leaving a core for other work. MUTANTS_LIB_ONLY=1 runs each crate's unit
# tests alone (about 10 s a proto mutant instead of 35: the simulations are left out, so it
# can only miss more, never fewer; re-run what it misses without it).
set -euo pipefail
cd "$(dirname "$0")/.."
# cargo-mutants builds a copy of the tree in /tmp, where no ../shared lies beside it: name
# the reference's captures by their absolute path (the build scripts and tests read
# O7S_SHARED), or a CI run with O7S_REQUIRE_SHARED=1 fails its unmutated baseline.
if [ -z "${O7S_SHARED:-}" ] && [ -d ../shared/captures ]; then
    O7S_SHARED=$(cd ../shared && pwd)
    export O7S_SHARED
fi

VERSION=27.1.0
# Where the mutants run: the packages and the tests that exercise them (the namespace
# tests are not run per mutant; the pure crates' own tests are).
SCOPE=(proto/src wire/src dataplane/src/shaper.rs dataplane/src/impair.rs
    dataplane/src/packet_path.rs dataplane/src/packet_path/fast.rs dataplane/src/dt.rs
    dataplane/src/route_map.rs
    dataplane/src/local_flows.rs dataplane/src/queue_spread.rs dataplane/src/handoff.rs)

if ! cargo mutants --version 2>/dev/null | grep -q "$VERSION"; then
    echo "installing cargo-mutants $VERSION (crates.io)..."
    cargo install cargo-mutants --locked --version "$VERSION" >/dev/null 2>&1 || {
        echo "mutants.sh: cargo install cargo-mutants failed (network to crates.io?)" >&2
        exit 1
    }
fi

# The test targets of a file's package: the library's unit tests and the pure
# simulations; not the slow 1000-IPCP run (ignored anyway).
package_of() {
    case "$1" in
        proto/*) echo o7s-proto ;;
        wire/*) echo o7s-wire ;;
        dataplane/*) echo o7s-dataplane ;;
        *) return 1 ;;
    esac
}

run() { # package, output directory, extra cargo-mutants args...
    local pkg=$1 out=$2
    shift 2
    local tests=(--cargo-test-arg=--lib)
    if [ "${MUTANTS_LIB_ONLY:-0}" != 1 ]; then
        case "$pkg" in
            o7s-proto) tests+=(--cargo-test-arg=--tests) ;;
            o7s-wire) tests+=(--cargo-test-arg=--tests) ;;
        esac
    fi
    cargo mutants --package "$pkg" --jobs "${MUTANTS_JOBS:-2}" --timeout 120 "${tests[@]}" \
        --output "$out" "$@"
}

status=0
# cargo-mutants exits 2 when a mutant was missed, 3 when one timed out (a test hung on it:
# noticed, as a failure would be), 4 when the tree fails its tests unmutated.
note() {
    local rc=$1
    case $rc in
        0 | 3) ;;
        *) status=$rc ;;
    esac
}
rm -rf mutants.out
mkdir -p mutants.out
if [ "${1:-}" = "--in-diff" ]; then
    base=${2:-HEAD~1}
    if ! git rev-parse --verify -q "$base" >/dev/null; then
        echo "mutants.sh: $base is not a commit here (a shallow clone?): nothing compared" >&2
        exit 1
    fi
    any=0
    for pkg in o7s-proto o7s-wire o7s-dataplane; do
        paths=()
        for p in "${SCOPE[@]}"; do
            [ "$(package_of "$p")" = "$pkg" ] && paths+=("$p")
        done
        diff=mutants.out/$pkg.diff
        git diff "$base" -- "${paths[@]}" >"$diff"
        if [ ! -s "$diff" ]; then
            echo "== $pkg: no change since $base in ${paths[*]}: nothing to mutate"
            continue
        fi
        any=1
        echo "== $pkg: mutants on the lines changed since $base"
        rc=0
        run "$pkg" "mutants.out/$pkg" --in-diff "$diff" || rc=$?
        note $rc
    done
    [ $any = 1 ] || echo "mutants.sh: nothing in scope changed since $base"
else
    [ $# -gt 0 ] || {
        sed -n '2,14p' "$0"
        exit 2
    }
    for f in "$@"; do
        pkg=$(package_of "$f") || {
            echo "mutants.sh: $f is outside the pure crates (${SCOPE[*]})" >&2
            exit 2
        }
        echo "== $f ($pkg)"
        rc=0
        run "$pkg" "mutants.out/$(echo "$f" | tr / _)" --file "$f" || rc=$?
        note $rc
    done
fi
for o in mutants.out/*/mutants.out; do
    [ -d "$o" ] || continue
    echo "$(dirname "$o"): caught $(wc -l <"$o/caught.txt"), missed $(wc -l <"$o/missed.txt"), timeout $(wc -l <"$o/timeout.txt"), unviable $(wc -l <"$o/unviable.txt")"
done
if [ $status -eq 2 ]; then
    echo "mutants.sh: missed mutants (exit 2): no test notices these changes:" >&2
    cat mutants.out/*/mutants.out/missed.txt 2>/dev/null >&2 || true
elif [ $status -ne 0 ]; then
    echo "mutants.sh: cargo mutants failed (exit $status; 4: the tree fails its tests unmutated); its output is above" >&2
fi
exit $status
