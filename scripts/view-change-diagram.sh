#!/usr/bin/env bash
# The diagram of a real view change in the docs (docs/img/view-change.svg): `chorus demo` runs 5
# member processes on loopback and kills one; this draws its nodes' traces from that crash to the
# state transfer that brings the restarted node back: the suspicions, the flush (the cut of the
# crashed member's view delivered at the barrier), the view without it, its restart, the next
# flush and view, and the state streamed from the donor.
#
#   bash scripts/view-change-diagram.sh [OUT.svg]     # default docs/img/view-change.svg
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/img/view-change.svg}
cargo build --release -q -p chorus
dir=$(mktemp -d /tmp/chorus-diagram.XXXXXX)
trap 'rm -rf "$dir"' EXIT
echo "==> chorus demo (traces in $dir)"
target/release/chorus demo --dir "$dir/demo" >"$dir/demo.log" 2>&1 || {
    tail -n 20 "$dir/demo.log" >&2
    echo "chorus demo failed" >&2
    exit 1
}
# From the first crash to the state loaded by the first view with a joiner after it.
read -r from to view < <(python3 - "$dir/demo" <<'PY'
import glob, json, sys
evs = []
for f in glob.glob(sys.argv[1] + "/*.jsonl"):
    evs += [json.loads(l) for l in open(f) if l.strip()]
evs.sort(key=lambda e: e["t"])
crash = next(e for e in evs if e["ev"] == "crash")
join = next(e for e in evs if e["ev"] == "install" and e["t"] > crash["t"] and e.get("loading"))
done = max(e["t"] for e in evs if e["ev"] == "state_loaded" and e["view"] == join["view"])
print(crash["t"] - 1, done, join["view"])
PY
)
mkdir -p "$(dirname "$out")"
target/release/chorus trace svg "$dir"/demo/*.jsonl --from "$from" --to "$to" >"$out"
if command -v xmllint >/dev/null 2>&1; then
    xmllint --noout "$out"
fi
echo "==> $out: from the crash to the state loaded in view $view ($(grep -c '<line' "$out") lines)"
