#!/usr/bin/env bash
# False suspicions under load (issue 14, finding 9), on real processes: a 9-node store on this
# machine, every node taking SETs of 500 KB values from its own redis-benchmark
# (`-d 500000 -c 2 -P 2`) for DURATION seconds; then counts, from the nodes' logs, the
# suspicions (with their reasons), the live members excluded, and the nodes' own pauses ("did
# not run for"). Then one node is SIGKILLed and the script measures how long the others take to
# install a view without it (target: within 1 s at the defaults).
#
#   bash scripts/bench-suspicion.sh               # 9 nodes, 15 s of load (~1 min)
#   NODES=5 DURATION=30 bash scripts/bench-suspicion.sh
set -euo pipefail
cd "$(dirname "$0")/.."
NODES=${NODES:-9}
DURATION=${DURATION:-15}
VALUE=${VALUE:-500000}
BASE=${BASE:-7801}
OUT=$(mktemp -d /tmp/chorus-bench-suspicion.XXXXXX)
echo "==> configs and logs in $OUT"
for t in redis-cli redis-benchmark; do command -v "$t" >/dev/null || { echo "needs $t (apt-get install redis-tools)" >&2; exit 2; }; done
cargo build --release -q -p chorus-kv
KV=$PWD/target/release/chorus-kv

declare -A PID
BENCH=()
cleanup() {
    for p in "${BENCH[@]}" "${PID[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

config() {
    local i=$1 seeds=() j
    for ((j = 1; j <= NODES; j++)); do [ "$j" != "$i" ] && seeds+=("\"$j@127.0.0.1:$((BASE + 100 + j))\""); done
    cat >"$OUT/node$i.toml" <<EOF
[group]
node = $i
listen = "127.0.0.1:$((BASE + 100 + i))"
seeds = [$(IFS=,; echo "${seeds[*]}")]
secret = "bench-suspicion secret"
plaintext = true
bootstrap = $([ "$i" = 1 ] && echo true || echo false)

[kv]
listen = "127.0.0.1:$((BASE + i))"
plaintext = true
EOF
}
port() { echo $((BASE + $1)); }
field() { redis-cli -p "$(port "$1")" info group 2>/dev/null | tr -d '\r' | awk -F: -v k="$2" '$1 == k {print $2}'; }
members() { field "$1" members | tr ',' '\n' | grep -c . || true; }

for ((i = 1; i <= NODES; i++)); do
    config "$i"
    CHORUS_LOG=info "$KV" node --config "$OUT/node$i.toml" >"$OUT/node$i.log" 2>&1 &
    PID[$i]=$!
done
t0=$SECONDS
for ((i = 1; i <= NODES; i++)); do
    until [ "$(field "$i" role)" = active ] && [ "$(members "$i")" = "$NODES" ]; do
        [ $((SECONDS - t0)) -lt 120 ] || { echo "node $i not active in a view of $NODES within 120 s" >&2; tail -n 20 "$OUT/node$i.log" >&2; exit 1; }
        sleep 0.1
    done
done
view0=$(field 1 view_id)
echo "==> $NODES nodes active in view $view0; $DURATION s of SETs of $VALUE bytes, one redis-benchmark per node"
for f in "$OUT"/node*.log; do : >"$f.mark"; wc -l <"$f" >"$f.mark"; done
for ((i = 1; i <= NODES; i++)); do
    redis-benchmark -p "$(port "$i")" -t set -d "$VALUE" -c 2 -P 2 -n 100000000 -r 1000 -q >"$OUT/bench$i.txt" 2>&1 &
    BENCH+=($!)
done
sleep "$DURATION"
for p in "${BENCH[@]}"; do kill "$p" 2>/dev/null || true; done
wait "${BENCH[@]}" 2>/dev/null || true
BENCH=()
sleep 2
since() { tail -n +"$(( $(cat "$1.mark") + 1 ))" "$1"; }
susp=0 silent=0 lagging=0 excl=0 pauses=0
for ((i = 1; i <= NODES; i++)); do
    f=$OUT/node$i.log
    s=$(since "$f" | grep -c "suspects " || true)
    susp=$((susp + s))
    silent=$((silent + $(since "$f" | grep "suspects " | grep -c "silent" || true)))
    lagging=$((lagging + $(since "$f" | grep "suspects " | grep -c "stood still" || true)))
    excl=$((excl + $(since "$f" | grep -c "excluded from the group" || true)))
    pauses=$((pauses + $(since "$f" | grep -c "did not run for" || true)))
done
view1=$(field 1 view_id)
echo "LOAD: views $view0 -> $view1; live members excluded: $excl; suspicions: $susp ($silent silent, $lagging lagging); own pauses logged: $pauses"
if [ "$pauses" -gt 0 ]; then
    echo "  longest own pauses:"
    grep -ho "paused_ms=[0-9]*" "$OUT"/node*.log | cut -d= -f2 | sort -n | tail -n 3 | sed 's/^/    /; s/$/ ms/'
fi
# Wait for the group to settle (every node active in one view of all), then kill one.
t0=$SECONDS
until [ "$(members 1)" = "$NODES" ] && [ "$(field 1 role)" = active ]; do
    [ $((SECONDS - t0)) -lt 120 ] || { echo "the group did not settle back to $NODES members" >&2; exit 1; }
    sleep 0.1
done
victim=$NODES
echo "==> node $victim SIGKILLed"
t0=$(date +%s.%N)
kill -9 "${PID[$victim]}"
wait "${PID[$victim]}" 2>/dev/null || true
until [ "$(members 1)" = "$((NODES - 1))" ]; do sleep 0.01; done
t1=$(date +%s.%N)
echo "KILL: node $victim out of node 1's view $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}') s after SIGKILL (target: within 1 s)"
