#!/usr/bin/env bash
# Fuzzing: each cargo-fuzz target in fuzz/ (libFuzzer with AddressSanitizer) runs for
# FUZZ_SECONDS from its committed seed corpus, fuzz/corpus/<target>. Installs what it needs: a
# pinned nightly toolchain (rustup) and cargo-fuzz (crates.io, into .peers).
#
#   scripts/fuzz.sh                      # every target, 60 s each
#   scripts/fuzz.sh classify config      # some targets
#   FUZZ_SECONDS=600 scripts/fuzz.sh
#
# A crash, a panic, a leak or a timeout fails the run; libFuzzer keeps the input in
# fuzz/artifacts/<target>/ (reproduce: cargo +NIGHTLY fuzz run <target> <file>). Fix it and add
# the input as a regression test. Inputs found along the way go to a scratch folder, never into
# the committed corpus.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

NIGHTLY=${FUZZ_TOOLCHAIN:-nightly-2026-10-30}
SECONDS_EACH=${FUZZ_SECONDS:-60}
PEERS=${PORTCULLIS_PEERS:-$PWD/.peers}
FUZZ=$PEERS/cargo-fuzz/bin/cargo-fuzz

command -v rustup >/dev/null 2>&1 || { echo "fuzz: rustup is needed to install the $NIGHTLY toolchain" >&2; exit 1; }
if ! rustup run "$NIGHTLY" rustc -V >/dev/null 2>&1; then
    echo "fuzz: installing the $NIGHTLY toolchain"
    rustup toolchain install "$NIGHTLY" --profile minimal
fi
if [ ! -x "$FUZZ" ]; then
    echo "fuzz: installing cargo-fuzz 0.13.2 (crates.io)"
    cargo install --quiet --locked cargo-fuzz --version 0.13.2 --root "$PEERS/cargo-fuzz"
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for f in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

export PATH="$PEERS/cargo-fuzz/bin:$PATH"
cd fuzz
# One build of every target (the committed fuzz/Cargo.lock pins their dependencies).
cargo +"$NIGHTLY" fuzz build
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t"
    echo "--- fuzz $t: ${SECONDS_EACH}s from $(find "corpus/$t" -type f | wc -l) seeds"
    if ! cargo +"$NIGHTLY" fuzz run "$t" "$scratch/$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$scratch/$t.log" 2>&1; then
        tail -n 60 "$scratch/$t.log" >&2
        failed+=("$t")
    fi
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$scratch/$t.log" | tr '\n' ' ' || true
    echo
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: failed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${SECONDS_EACH}s each: no crash"
# CI: the sanitizer build (about 3 GB) is not needed after the run.
if [ "${CI:-}" = true ]; then rm -rf target; fi
