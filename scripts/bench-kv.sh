#!/usr/bin/env bash
# The store against the systems it stands in for, side by side in one run on this machine:
# redis-benchmark (-c 50 -n 200000 -t set,get, -P 1 and -P 16) against
#   - the 3-node chorus-kv store on loopback (local reads, and linearizable reads),
#   - one redis-server (no persistence: the upper bound for one node),
# and etcd's put rate (3 nodes, the peers kit in ../shared/peers, 64 B values, default
# durability and --unsafe-no-fsync). Prints a table and the ratios the issue asks for.
#
#   bash scripts/bench-kv.sh              # everything (~5 min; etcd needs root for apt-get)
#   SKIP_ETCD=1 bash scripts/bench-kv.sh  # the store and redis-server only (~1 min)
#   N=200000 RUNS=3 ...                   # requests per test, runs per figure (median kept)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-200000}
RUNS=${RUNS:-3}
PEERS=${PEERS:-$(cd .. && pwd)/shared/peers}
OUT=$(mktemp -d /tmp/chorus-bench-kv.XXXXXX)
echo "==> results and logs in $OUT"

for t in redis-server redis-benchmark redis-cli; do
    command -v "$t" >/dev/null || { echo "needs $t (apt-get install redis-server redis-tools)" >&2; exit 2; }
done
cargo build --release -q -p chorus-kv
KV=target/release/chorus-kv

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# median of the numbers on stdin
median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print 0; else print a[int((NR+1)/2)]}'; }

# bench NAME PORT PIPELINE -> lines "NAME-set-PP rps" and "NAME-get-PP rps" in $OUT/figures
bench() {
    local name=$1 port=$2 p=$3 run out
    for ((run = 1; run <= RUNS; run++)); do
        redis-cli -p "$port" flushall >/dev/null
        out=$(redis-benchmark -p "$port" -t set,get -n "$N" -c 50 -P "$p" --csv 2>>"$OUT/$name.err")
        echo "$out" >>"$OUT/$name-P$p.csv"
        for t in set get; do
            printf '%s\n' "$out" | grep -i "^\"$t\"" | tr -d '"' | awk -F, -v k="$name-$t-P$p" '{print k, $2}' >>"$OUT/runs"
        done
    done
    for t in set get; do
        local m
        m=$(grep "^$name-$t-P$p " "$OUT/runs" | awk '{print $2}' | median)
        echo "$name-$t-P$p $m" >>"$OUT/figures"
        printf '  %-28s %12.0f requests/s (median of %d)\n' "$name $t -P $p" "$m" "$RUNS"
    done
}

store() { # store READS PORT: a 3-node store in the background until the next stop_store
    local reads=$1 port=$2
    "$KV" demo --port "$port" --reads "$reads" --dir "$OUT/store-$reads" >"$OUT/store-$reads.log" 2>&1 &
    STORE_PID=$!
    pids+=("$STORE_PID")
    for _ in $(seq 1 300); do
        grep -q "Running until Ctrl-C" "$OUT/store-$reads.log" && return 0
        kill -0 "$STORE_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$OUT/store-$reads.log" >&2
    echo "the store did not start" >&2
    exit 1
}
stop_store() { kill -TERM "$STORE_PID" 2>/dev/null || true; wait "$STORE_PID" 2>/dev/null || true; }

echo "==> chorus-kv, 3 nodes, local reads (READONLY-style: any replica, may be stale)"
store local 7401
for p in 1 16; do bench kv-local 7401 "$p"; done
stop_store
echo "==> chorus-kv, 3 nodes, linearizable reads (a barrier through the group)"
store linearizable 7411
for p in 1 16; do bench kv-linear 7411 "$p"; done
stop_store

echo "==> redis-server 7 (one node, no persistence)"
redis-server --port 7421 --bind 127.0.0.1 --save "" --appendonly no --daemonize no >"$OUT/redis.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 100); do redis-cli -p 7421 ping >/dev/null 2>&1 && break; sleep 0.1; done
for p in 1 16; do bench redis 7421 "$p"; done
redis-cli -p 7421 shutdown nosave >/dev/null 2>&1 || true

etcd_fsync=0
etcd_nofsync=0
if [ "${SKIP_ETCD:-0}" != 1 ]; then
    echo "==> etcd 3.4, 3 nodes (the peers kit: $PEERS/etcd)"
    rm -rf /tmp/peers-kv && cp -r "$PEERS" /tmp/peers-kv
    (cd /tmp/peers-kv && RUNS=1 ./run-all.sh etcd >"$OUT/etcd.log" 2>&1) || true
    row() { grep "^| $1 |" /tmp/peers-kv/RESULTS.md | awk -F'|' '{gsub(/ /, "", $4); print $4}'; }
    etcd_fsync=$(row etcd-64-tput || echo 0)
    etcd_nofsync=$(row etcd-64-tput-nofsync || echo 0)
    printf '  %-28s %12s puts/s\n' "etcd fsync" "${etcd_fsync:-0}" "etcd no-fsync" "${etcd_nofsync:-0}"
fi

fig() { grep "^$1 " "$OUT/figures" | awk '{print $2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo
echo "| figure | chorus-kv (3 nodes) | redis-server (1 node) | ratio |"
echo "|---|---|---|---|"
for p in 1 16; do
    echo "| SET -P $p | $(fig kv-local-set-P$p) | $(fig redis-set-P$p) | $(ratio "$(fig kv-local-set-P$p)" "$(fig redis-set-P$p)") |"
    echo "| GET -P $p, local reads | $(fig kv-local-get-P$p) | $(fig redis-get-P$p) | $(ratio "$(fig kv-local-get-P$p)" "$(fig redis-get-P$p)") |"
    echo "| GET -P $p, linearizable reads | $(fig kv-linear-get-P$p) | $(fig redis-get-P$p) | $(ratio "$(fig kv-linear-get-P$p)" "$(fig redis-get-P$p)") |"
done
echo
echo "targets: SET -P 16 >= 0.50 of redis-server: $(ratio "$(fig kv-local-set-P16)" "$(fig redis-set-P16)");" \
    "local GET >= 0.80 of redis-server: -P 1 $(ratio "$(fig kv-local-get-P1)" "$(fig redis-get-P1)"), -P 16 $(ratio "$(fig kv-local-get-P16)" "$(fig redis-get-P16)")"
if [ "${SKIP_ETCD:-0}" != 1 ]; then
    echo "SET -P 16 vs etcd's put rate (>= 20x): fsync $(ratio "$(fig kv-local-set-P16)" "$etcd_fsync")x," \
        "no-fsync $(ratio "$(fig kv-local-set-P16)" "$etcd_nofsync")x; SET -P 1: $(ratio "$(fig kv-local-set-P1)" "$etcd_fsync")x"
fi
