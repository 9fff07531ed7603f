#!/usr/bin/env bash
# Durable writes, side by side on this machine (issue: "a store that survives its crashes",
# must-show 3): redis-benchmark -c 50 -n 200000 -P 16 -t set (the issue's command: one key,
# 3-byte values, unless RAND / DSIZE say otherwise) against
#   - the 3-node chorus-kv store (chorus-kv demo, data directories) with appendfsync always
#     (every write on every member's disk before its reply) and with appendfsync everysec;
#   - one redis-server with appendonly yes and appendfsync always, and with everysec;
#   - one redis-server without persistence, the same command: a check of this machine against
#     the peers kit's reference figure for redis-server (the kit has none with appendonly);
# and etcd's put rate with fsync (3 nodes, 64 B values, 64 closed-loop clients on 100k keys; also
# --unsafe-no-fsync) through the peers kit (../shared/peers).
# Interleaved: ROUNDS rounds of [store always, redis always, store everysec, redis everysec,
# redis no persistence], each server started fresh on empty data directories; every figure is
# given as min / median / max of the rounds, and every ratio per round (the store over the
# redis-server run next to it). The peers are set against their reference figures (the kit's
# RESULTS.md): one below LOW_PEER (75%) of its reference is flagged and no target is judged on a
# ratio against it. Targets: always >= 20x etcd (fsync) and >= 0.5 of redis-server always;
# everysec >= 0.5 of redis-server everysec.
# Writes the table as Markdown to $OUT/results.md (named at the end; also copied to $RESULTS_TO).
#
#   bash scripts/bench-durable.sh              # everything: the rounds (~1-2 min) + etcd
#                                              # (~1.5 min: the kit runs its 8 etcd figures;
#                                              # the first time more: apt-get etcd-server, build
#                                              # the kit's client; needs root)
#   SKIP_ETCD=1 bash scripts/bench-durable.sh  # without etcd
#   N=20000 ROUNDS=2 SKIP_ETCD=1 ...           # a quick check (~30 s)
#   RAND=100000 DSIZE=64 ...                   # random keys among 100,000 (-r), 64-byte values (-d)
# Knobs: N=200000 requests per test; ROUNDS=5 (RUNS, the old name, is read too); CLIENTS=50;
#   PIPELINE=16; RAND= (-r; default none: one key); DSIZE= (-d; default none: 3 B);
#   SKIP_CHECK=1 without the no-persistence redis-server; SKIP_ETCD=1; ETCD_RUNS=1 runs per etcd
#   figure; LOW_PEER=0.75; PEERS=../shared/peers; KV=path/to/chorus-kv (used as is, no build;
#   default: cargo build --release, honouring CARGO_TARGET_DIR); RESULTS_TO=path (a copy of the
#   results table); BENCH_TIMEOUT=600 s per redis-benchmark run.
# Ports: 7501-7503 (the store; its group ports 100 above), 7521 (redis-server).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-200000}
ROUNDS=${ROUNDS:-${RUNS:-5}}
CLIENTS=${CLIENTS:-50}
PIPELINE=${PIPELINE:-16}
RAND=${RAND:-}
DSIZE=${DSIZE:-}
PEERS=${PEERS:-$(cd .. && pwd)/shared/peers}
# shellcheck source=scripts/lib-bench.sh
source scripts/lib-bench.sh
need_uint N "$N"
need_uint ROUNDS "$ROUNDS"
need_uint CLIENTS "$CLIENTS"
need_uint PIPELINE "$PIPELINE"
need_uint RAND "$RAND" empty-ok
need_uint DSIZE "$DSIZE" empty-ok
need_uint ETCD_RUNS "$ETCD_RUNS"
need_ratio LOW_PEER "$LOW_PEER"
need_tools
need_peers
OUT=$(mktemp -d /tmp/chorus-bench-durable.XXXXXX)
echo "==> results and logs in $OUT"
build_kv

BENCH_ARGS=()
[ -z "$RAND" ] || BENCH_ARGS+=(-r "$RAND")
[ -z "$DSIZE" ] || BENCH_ARGS+=(-d "$DSIZE")
F=SET-P$PIPELINE
SYSTEMS=(kv-always redis-always kv-everysec redis-everysec)
[ "${SKIP_CHECK:-0}" = 1 ] || SYSTEMS+=(redis-memory)

for ((round = 1; round <= ROUNDS; round++)); do
    echo "==> round $round of $ROUNDS: ${SYSTEMS[*]}"
    for sys in "${SYSTEMS[@]}"; do
        case $sys in
        kv-*)
            start_store "$OUT/$sys-r$round" 7501 --appendfsync "${sys#kv-}"
            bench_once "$sys" 7501 "$round" set "$PIPELINE"
            { redis-cli -p 7501 info persistence | tr -d '\r' | grep -E '^(appendfsync|wal_fsyncs|wal_fsync_max_us)' |
                tee -a "$OUT/$sys-persistence.txt" | paste -sd' ' - | sed 's/^/      /'; } || true
            stop_store "$OUT/$sys-r$round"
            ;;
        redis-memory)
            start_redis "$sys-r$round" 7521 --appendonly no
            bench_once "$sys" 7521 "$round" set "$PIPELINE"
            stop_redis "$sys-r$round" 7521
            ;;
        redis-*)
            start_redis "$sys-r$round" 7521 --appendonly yes --appendfsync "${sys#redis-}"
            bench_once "$sys" 7521 "$round" set "$PIPELINE"
            stop_redis "$sys-r$round" 7521
            ;;
        esac
    done
done

ETCD_FSYNC="" ETCD_NOFSYNC="" ETCD_ERROR=""
[ "${SKIP_ETCD:-0}" = 1 ] || run_etcd

# ---------------------------------------------------------------- the table
cmdline="redis-benchmark -c $CLIENTS -n $N -P $PIPELINE${RAND:+ -r $RAND}${DSIZE:+ -d $DSIZE} -t set"
rkv() { vals "$1" "$2" | med; } # the median of a system's figure
keys="one key"
[ -z "$RAND" ] || keys="random keys among $(fmt "$RAND")"
: >"$OUT/results.md"
md "#### Durable writes: \`scripts/bench-durable.sh\`"
md ""
md "$(machine_line)."
md ""
md "\`$cmdline\` ($keys, ${DSIZE:-3}-byte values) against chorus-kv (3 nodes on loopback, one" \
    "process each, data directories; redis-benchmark on node 1) and one redis-server with" \
    "\`appendonly yes\`, each with \`appendfsync always\` and \`everysec\`. $ROUNDS rounds, interleaved: in" \
    "each round the store always, redis-server always, the store everysec, redis-server" \
    "everysec$([ "${SKIP_CHECK:-0}" = 1 ] || echo ", redis-server without persistence"), each started fresh on" \
    "empty data directories. SET/s as min / median / max of the rounds; the ratio is chorus-kv over" \
    "the redis-server run next to it in the same round."
md ""
# redis-server without persistence against its reference: is redis-server running low here?
rid="redis-set-${DSIZE:-3}B-P$PIPELINE"
rref=$(ref "$rid")
rfrac=n/a
[ "${SKIP_CHECK:-0}" = 1 ] || rfrac=$(ratio "$(rkv redis-memory "$F")" "$rref")
redis_low=$(low "$rfrac")
md "| SET -P $PIPELINE | chorus-kv, 3 nodes | redis-server, 1 node | ratio per round | ratio min / median / max | target |"
md "|---|---:|---:|---|---:|---|"
for pol in always everysec; do
    if [ "$redis_low" = yes ]; then
        tgt=">= 0.50: not judged, redis-server (no persistence) ran at $(pct "$rfrac") of its reference"
    else
        tgt=">= 0.50: $(verdict "$(ratio_med "kv-$pol" "redis-$pol" "$F")" 0.50)"
    fi
    md "| appendfsync $pol | $(spread "kv-$pol" "$F") | $(spread "redis-$pol" "$F") | $(ratio_cells "kv-$pol" "redis-$pol" "$F") | $tgt |"
done

md ""
md "##### The peers against their reference figures"
md ""
md "Reference: $(ref_source)." \
    "It has no redis-server figure with \`appendonly\`; redis-server without persistence, the same" \
    "command, stands in as the check of this machine. A peer below $(pct "$LOW_PEER") of its" \
    "reference is flagged **low**: a ratio against it flatters chorus-kv, so no target is judged on" \
    "it (rerun on a quieter machine). For etcd the ratio against its reference is given beside the" \
    "one against this run."
md ""
md "| peer figure | this run (median) | reference | this run / reference |"
md "|---|---:|---:|---:|"
flags=()
if [ "${SKIP_CHECK:-0}" != 1 ]; then
    flag=""
    if [ "$redis_low" = yes ]; then
        flag=" **low**"
        flags+=("redis-server (no persistence) ran at $(pct "$rfrac") of its reference: median $(fmt "$(rkv redis-memory "$F")") vs $(fmt "$rref") SET/s (rounds: $(vals redis-memory "$F" | while read -r v; do fmt "$v"; done | paste -sd/ - | sed 's|/| / |g')); the appendonly runs on this machine were likely as depressed")
    fi
    note=""
    [ -z "$RAND" ] || note=" (the reference used one key)"
    [ -n "$rref" ] || note=" (no reference figure $rid)"
    md "| redis-server, no persistence, SET -P $PIPELINE$note | $(fmt "$(rkv redis-memory "$F")") | $(fmt "$rref") | $(pct "$rfrac")$flag |"
fi
md "| redis-server, appendonly yes, always / everysec | $(fmt "$(rkv redis-always "$F")") / $(fmt "$(rkv redis-everysec "$F")") | none | n/a |"
etcd_low=no
if [ "${SKIP_ETCD:-0}" != 1 ]; then
    eref=$(ref etcd-64-tput) enref=$(ref etcd-64-tput-nofsync)
    efrac=$(ratio "$ETCD_FSYNC" "$eref") enfrac=$(ratio "$ETCD_NOFSYNC" "$enref")
    flag=""
    if [ "$(low "$efrac")" = yes ]; then
        flag=" **low**" etcd_low=yes
        flags+=("etcd (fsync) ran at $(pct "$efrac") of its reference ($(fmt "$ETCD_FSYNC") vs $(fmt "$eref") puts/s)")
    fi
    md "| etcd puts/s, 3 nodes, fsync | $(fmt "$ETCD_FSYNC") | $(fmt "$eref") | $(pct "$efrac")$flag |"
    flag=""
    if [ "$(low "$enfrac")" = yes ]; then
        flag=" **low**"
        flags+=("etcd (--unsafe-no-fsync) ran at $(pct "$enfrac") of its reference ($(fmt "$ETCD_NOFSYNC") vs $(fmt "$enref") puts/s)")
    fi
    md "| etcd puts/s, 3 nodes, --unsafe-no-fsync | $(fmt "$ETCD_NOFSYNC") | $(fmt "$enref") | $(pct "$enfrac")$flag |"
    md ""
    md "etcd 3.4 (the peers kit, $ETCD_RUNS run(s) per figure, after the rounds above): puts of 64 B" \
        "values, 64 clients over 8 connections closed loop on 100k keys."
    md ""
    md "| chorus-kv SET -P $PIPELINE against etcd | chorus-kv (median) | / etcd, this run | / etcd's reference | target |"
    md "|---|---:|---:|---:|---|"
    x=$(xratio "$(rkv kv-always "$F")" "$ETCD_FSYNC") xr=$(xratio "$(rkv kv-always "$F")" "$eref")
    if [ "$etcd_low" = yes ]; then
        tgt=">= 20x: not judged, etcd ran at $(pct "$efrac") of its reference"
    else
        tgt=">= 20x: $(verdict "${x%x}" 20)"
    fi
    md "| always vs etcd with fsync | $(fmt "$(rkv kv-always "$F")") | $x | $xr | $tgt |"
    md "| everysec vs etcd --unsafe-no-fsync | $(fmt "$(rkv kv-everysec "$F")") | $(xratio "$(rkv kv-everysec "$F")" "$ETCD_NOFSYNC") | $(xratio "$(rkv kv-everysec "$F")" "$enref") | |"
    if [ -n "$ETCD_ERROR" ]; then
        md ""
        md "etcd **failed**: $ETCD_ERROR"
    fi
else
    md ""
    md "etcd: not run (SKIP_ETCD=1)."
fi
finish_with_peers
