#!/usr/bin/env bash
# A store holding about 1 GiB, on real processes (issue: "a store that survives its crashes",
# must-show 4):
#   1. a new node joins a 3-node store holding 1 GiB: the extra memory each old member takes
#      while it gives the state (peak RSS during the join minus RSS before it; the peak is reset
#      through /proc/PID/clear_refs) must stay under 64 MiB at the donor;
#   2. one node killed and restarted while the others run (it loads the state from a donor);
#   3. every node killed at once (SIGKILL) and restarted: how long each takes to be back,
#      active, from its own files (snapshot + log), must be under 10 s.
#
#   bash scripts/bench-gib.sh          # ~1 GiB: 1,000,000 keys of 1 KiB (needs ~8 GiB of RAM, 5 GiB of disk)
#   KEYS=100000 bash scripts/bench-gib.sh   # a smaller run
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${KEYS:-1000000}
VALUE=${VALUE:-1024}
BASE=${BASE:-7601}
OUT=$(mktemp -d /tmp/chorus-bench-gib.XXXXXX)
echo "==> results, configs, logs and data in $OUT"
for t in redis-cli python3; do command -v "$t" >/dev/null || { echo "needs $t" >&2; exit 2; }; done
cargo build --release -q -p chorus-kv
KV=$PWD/target/release/chorus-kv

declare -A PID
cleanup() { for p in "${PID[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

config() { # config I: node I of 4 (nodes 1-3 form the store, node 4 joins later)
    local i=$1 seeds=() j
    for j in 1 2 3 4; do [ "$j" != "$i" ] && seeds+=("\"$j@127.0.0.1:$((BASE + 100 + j))\""); done
    cat >"$OUT/node$i.toml" <<EOF
[group]
node = $i
listen = "127.0.0.1:$((BASE + 100 + i))"
seeds = [$(IFS=,; echo "${seeds[*]}")]
secret = "bench-gib secret"
plaintext = true
bootstrap = $([ "$i" = 1 ] && echo true || echo false)
data_dir = "$OUT/data$i"

[kv]
listen = "127.0.0.1:$((BASE + i))"
plaintext = true
appendfsync = "always"
EOF
}
start() { CHORUS_LOG=info "$KV" node --config "$OUT/node$1.toml" >>"$OUT/node$1.log" 2>&1 & PID[$1]=$!; }
port() { echo $((BASE + $1)); }
info() { redis-cli -p "$(port "$1")" info "${2:-group}" 2>/dev/null | tr -d '\r'; }
field() { info "$1" "${3:-group}" | awk -F: -v k="$2" '$1 == k {print $2}'; }
members() { field "$1" members | tr ',' '\n' | grep -c . || true; }
wait_active() { # wait_active I N TIMEOUT_S: node I active in a view of N members
    local t0=$SECONDS
    while [ $((SECONDS - t0)) -lt "$3" ]; do
        [ "$(field "$1" role)" = active ] && [ "$(members "$1")" = "$2" ] && return 0
        sleep 0.05
    done
    echo "node $1 not active in a view of $2 within $3 s" >&2
    tail -n 20 "$OUT/node$1.log" >&2
    exit 1
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

for i in 1 2 3 4; do config "$i"; done
for i in 1 2 3; do start "$i"; done
for i in 1 2 3; do wait_active "$i" 3 60; done
echo "==> 3 nodes up; loading $KEYS keys of $VALUE bytes through node 1 (redis-cli --pipe)"
python3 - "$KEYS" "$VALUE" <<'EOF' | redis-cli -p "$(port 1)" --pipe | tail -n 1
import sys
keys, size = int(sys.argv[1]), int(sys.argv[2])
out = sys.stdout.buffer
value = b"v" * size
for i in range(keys):
    key = b"key:%09d" % i
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, size, value))
EOF
# No SAVE: the restart below replays whatever log the automatic snapshots left, as after a
# power cut (the worst case is a log as large as the last snapshot).
for i in 1 2 3; do
    echo "  node $i: $(field "$i" applied_index) applied, RSS $(( $(rss_kb "${PID[$i]}") / 1024 )) MiB," \
        "snapshot $(( $(field "$i" snapshot_bytes persistence) / 1048576 )) MiB, log $(( $(field "$i" wal_bytes persistence) / 1048576 )) MiB"
done
dbsize=$(redis-cli -p "$(port 2)" dbsize | tr -d '\r')
[ "$dbsize" = "$KEYS" ] || { echo "node 2 holds $dbsize keys, not $KEYS" >&2; exit 1; }

echo "==> a new node (4) joins: the donor streams its frozen copy"
declare -A BEFORE
for i in 1 2 3; do
    echo 5 >"/proc/${PID[$i]}/clear_refs"
    BEFORE[$i]=$(rss_kb "${PID[$i]}")
done
t0=$(date +%s.%N)
start 4
wait_active 4 4 600
while [ "$(field 4 applied_index)" != "$(field 1 applied_index)" ]; do sleep 0.1; done
t1=$(date +%s.%N)
worst=0
for i in 1 2 3; do
    extra=$(( ($(hwm_kb "${PID[$i]}") - BEFORE[$i]) / 1024 ))
    [ "$extra" -gt "$worst" ] && worst=$extra
    echo "  node $i: RSS before $(( BEFORE[$i] / 1024 )) MiB, peak during the join +$extra MiB"
done
echo "  node 4 joined and loaded the state in $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}') s"
echo "JOIN: largest extra memory at an old member: $worst MiB (target < 64 MiB)"

echo "==> node 2 alone SIGKILLed and restarted while the others run"
kill -9 "${PID[2]}"
wait "${PID[2]}" 2>/dev/null || true
t0=$(date +%s.%N)
start 2
wait_active 2 4 300
while [ "$(field 2 applied_index)" != "$(field 1 applied_index)" ]; do sleep 0.1; done
t=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
echo "ONE: node 2 back, active, caught up $t s after its restart (it loads the state from a donor: a live group does not take a restarted member's own files)"

echo "==> every node SIGKILLed at once, then restarted from its own files (snapshot + log, no SAVE first)"
for i in 1 2 3 4; do
    echo "  node $i: snapshot $(( $(field "$i" snapshot_bytes persistence) / 1048576 )) MiB, log $(( $(field "$i" wal_bytes persistence) / 1048576 )) MiB"
done
for i in 1 2 3 4; do kill -9 "${PID[$i]}"; done
wait 2>/dev/null || true
t0=$(date +%s.%N)
for i in 1 2 3 4; do start "$i"; done
slowest=0
for i in 1 2 3 4; do
    wait_active "$i" 4 120
    t=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
    echo "  node $i active again after $t s ($(grep -o 'opened the stored state.*' "$OUT/node$i.log" | tail -n 1))"
    slowest=$t
done
[ "$(redis-cli -p "$(port 3)" dbsize | tr -d '\r')" = "$KEYS" ] || { echo "keys missing after the restart" >&2; exit 1; }
echo "RESTART: every node back, active, with all $KEYS keys, $slowest s after the restart (target < 10 s)"
