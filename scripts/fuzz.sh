#!/usr/bin/env bash
# Runs every cargo-fuzz target of wire/fuzz for SECONDS each (default 60) and fails on the
# first crash. Needs a nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz
# (`cargo install cargo-fuzz`). Seeds each corpus with the repo's tutorial frames.
set -euo pipefail
secs=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/wire/fuzz"
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: no nightly toolchain: cargo-fuzz needs one" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is not installed (cargo install cargo-fuzz)" >&2
    exit 2
fi
targets=$(cargo +nightly fuzz list)
mkdir -p corpus
for t in $targets; do
    mkdir -p "corpus/$t"
    # Seed corpus: the tutorials' frames.
    grep -v '^#' "$root/wire/tests/vectors/seed_frames.txt" | awk -F'\t' 'NF==3 {print $1, $3}' |
        while read -r id hex; do echo -n "$hex" | xxd -r -p > "corpus/$t/$id"; done
done
cargo +nightly fuzz build
failed=0
for t in $targets; do
    echo "== $t: ${secs}s"
    if ! cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 2>"/tmp/fuzz-$t.log"; then
        echo "fuzz.sh: $t FAILED, see /tmp/fuzz-$t.log and wire/fuzz/artifacts/$t" >&2
        tail -30 "/tmp/fuzz-$t.log" >&2
        failed=1
    else
        grep -E "^Done|#[0-9]+.*DONE" "/tmp/fuzz-$t.log" | tail -1 || true
    fi
done
if [ "$failed" = 0 ]; then echo "fuzz.sh: all targets ran ${secs}s with no crash"; fi
exit "$failed"
