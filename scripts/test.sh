#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit/scenario/property tests, mutant tests, and the
# deterministic simulator over the committed regression seeds plus a batch of fresh seeds, and
# the state-transfer bench's memory bound (a 1 GiB checkpoint, under 64 MiB extra per node).
#
#   CHORUS_SIM_SEEDS  how many fresh seeds (default 1000)
#   CHORUS_SIM_BASE   first fresh seed (default: derived from the clock, printed, so that every
#                     run explores new seeds; a failure prints the command that replays it)
set -euo pipefail
cd "$(dirname "$0")/.."

seeds=${CHORUS_SIM_SEEDS:-1000}
base=${CHORUS_SIM_BASE:-$(( $(date +%s) % 1000000000 * 1000 ))}

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets --all-features -- -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "cargo test (with the mutants feature, so every mutant is shown to be caught)"
cargo test --workspace --all-features --release

step "simulator: regression seeds + ${seeds} fresh seeds from ${base}"
cargo run --release -q -p chorus-sim -- run \
    --seeds "${base}..$(( base + seeds ))" \
    --regressions crates/chorus-sim/regressions.txt \
    --require-marks

step "state transfer: a 1 GiB checkpoint streams with under 64 MiB extra at the donor and the joiner"
cargo run --release -q -p chorus-sim --bin st-bench
