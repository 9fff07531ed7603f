#!/usr/bin/env bash
# Runs a benchmark and keeps what it printed in docs/results/NAME.txt, headed by the command and
# the date, so that docs/benchmarks.md can quote it (scripts/doc-figures.py keeps the quote and
# the file equal; `--update` refreshes the quotes).
#
#   bash scripts/record-bench.sh core-bench cargo run --release -q -p chorus-sim -- bench
#   bash scripts/record-bench.sh st-bench cargo run --release -q -p chorus-sim --bin st-bench
#   python3 scripts/doc-figures.py --update
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 NAME COMMAND..." >&2; exit 2; }
name=$1
shift
out=docs/results/$name.txt
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
{
    printf '$ %s\n' "$*"
    printf '# %s UTC, %s cores, %s\n' "$(date -u '+%Y-%m-%d %H:%M')" "$(nproc)" "$(git rev-parse --short HEAD 2>/dev/null || echo '?')"
} >"$tmp"
# The figures go to the file only if the command succeeded.
"$@" | tee -a "$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "==> kept in $out; python3 scripts/doc-figures.py --update quotes it in the docs"
