#!/usr/bin/env bash
# Durable writes, side by side in one run on this machine (issue: "a store that survives its
# crashes", must-show 3): redis-benchmark -c 50 -P 16 -t set against
#   - the 3-node chorus-kv store with appendfsync always (every write on every member's disk
#     before its reply), and with appendfsync everysec;
#   - one redis-server with appendonly yes and appendfsync always, and with everysec;
# and etcd's put rate with fsync (3 nodes, the peers kit in ../shared/peers). Prints a table
# and the ratios: always >= 20x etcd and >= 0.5 of redis-server always; everysec >= 0.5 of
# redis-server everysec.
#
#   bash scripts/bench-durable.sh              # everything (~4 min; etcd needs root for apt-get)
#   SKIP_ETCD=1 bash scripts/bench-durable.sh  # without etcd
#   N=200000 RUNS=3 ...                        # requests per test, runs per figure (median kept)
#   RAND=100000 ...                            # random keys among 100,000 (-r); default: the
#                                              # issue's command, one key (redis-benchmark's default)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-200000}
RUNS=${RUNS:-3}
PEERS=${PEERS:-$(cd .. && pwd)/shared/peers}
OUT=$(mktemp -d /tmp/chorus-bench-durable.XXXXXX)
echo "==> results and logs in $OUT"

for t in redis-server redis-benchmark redis-cli; do
    command -v "$t" >/dev/null || { echo "needs $t (apt-get install redis-server redis-tools)" >&2; exit 2; }
done
cargo build --release -q -p chorus-kv
KV=target/release/chorus-kv

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print 0; else print a[int((NR+1)/2)]}'; }

# bench NAME PORT -> "NAME rps" (median of RUNS) in $OUT/figures
bench() {
    local name=$1 port=$2 run out
    for ((run = 1; run <= RUNS; run++)); do
        out=$(redis-benchmark -p "$port" -t set -n "$N" -c 50 -P 16 ${RAND:+-r "$RAND"} --csv 2>>"$OUT/$name.err")
        echo "$out" >>"$OUT/$name.csv"
        printf '%s\n' "$out" | grep -i '^"set"' | tr -d '"' | awk -F, -v k="$name" '{print k, $2}' >>"$OUT/runs"
    done
    local m
    m=$(grep "^$name " "$OUT/runs" | awk '{print $2}' | median)
    echo "$name $m" >>"$OUT/figures"
    printf '  %-34s %12.0f SET/s (median of %d)\n' "$name" "$m" "$RUNS"
}

store() { # store FSYNC PORT: a 3-node store with data directories, until stop_store
    local fsync=$1 port=$2
    "$KV" demo --port "$port" --appendfsync "$fsync" --dir "$OUT/store-$fsync" >"$OUT/store-$fsync.log" 2>&1 &
    STORE_PID=$!
    pids+=("$STORE_PID")
    for _ in $(seq 1 600); do
        grep -q "Running until Ctrl-C" "$OUT/store-$fsync.log" && return 0
        kill -0 "$STORE_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$OUT/store-$fsync.log" >&2
    echo "the store did not start" >&2
    exit 1
}
stop_store() { kill -TERM "$STORE_PID" 2>/dev/null || true; wait "$STORE_PID" 2>/dev/null || true; }

redis() { # redis FSYNC PORT
    local fsync=$1 port=$2
    mkdir -p "$OUT/redis-$fsync"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$OUT/redis-$fsync" --save "" \
        --appendonly yes --appendfsync "$fsync" --daemonize no >"$OUT/redis-$fsync.log" 2>&1 &
    REDIS_PID=$!
    pids+=("$REDIS_PID")
    for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "redis-server did not start" >&2
    exit 1
}
stop_redis() { redis-cli -p "$1" shutdown nosave >/dev/null 2>&1 || true; wait "$REDIS_PID" 2>/dev/null || true; }

for fsync in always everysec; do
    echo "==> chorus-kv, 3 nodes, appendfsync $fsync"
    store "$fsync" 7501
    bench "kv-$fsync" 7501
    grep -E '^(wal_fsyncs|wal_fsync_max_us|appendfsync)' <(redis-cli -p 7501 info persistence | tr -d '\r') | sed 's/^/    /'
    stop_store
    echo "==> redis-server, appendonly yes, appendfsync $fsync"
    redis "$fsync" 7521
    bench "redis-$fsync" 7521
    stop_redis 7521
done

etcd_fsync=0
if [ "${SKIP_ETCD:-0}" != 1 ]; then
    echo "==> etcd, 3 nodes with fsync (the peers kit: $PEERS/etcd)"
    rm -rf /tmp/peers-durable && cp -r "$PEERS" /tmp/peers-durable
    (cd /tmp/peers-durable && RUNS=1 ./run-all.sh etcd >"$OUT/etcd.log" 2>&1) || true
    etcd_fsync=$(grep "^| etcd-64-tput |" /tmp/peers-durable/RESULTS.md | awk -F'|' '{gsub(/ /, "", $4); print $4}' || true)
    etcd_fsync=${etcd_fsync:-0}
    printf '  %-34s %12s puts/s\n' "etcd, fsync" "$etcd_fsync"
fi

fig() { grep "^$1 " "$OUT/figures" | awk '{print $2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo
echo "| SET -c 50 -P 16 | chorus-kv (3 nodes) | redis-server (1 node) | ratio | etcd (3 nodes, fsync) | ratio |"
echo "|---|---|---|---|---|---|"
echo "| appendfsync always | $(fig kv-always) | $(fig redis-always) | $(ratio "$(fig kv-always)" "$(fig redis-always)") | $etcd_fsync | $(ratio "$(fig kv-always)" "$etcd_fsync") |"
echo "| appendfsync everysec | $(fig kv-everysec) | $(fig redis-everysec) | $(ratio "$(fig kv-everysec)" "$(fig redis-everysec)") | | |"
echo
echo "targets: always >= 20x etcd: $(ratio "$(fig kv-always)" "$etcd_fsync")x; always >= 0.50 of redis-server always: $(ratio "$(fig kv-always)" "$(fig redis-always)");" \
    "everysec >= 0.50 of redis-server everysec: $(ratio "$(fig kv-everysec)" "$(fig redis-everysec)")"
