#!/usr/bin/env bash
# The store against the systems it stands in for, as users run it, side by side on this machine:
# redis-benchmark -c 50 -n 200000 -t set,get -r 100000 -d 64 (random keys among 100,000, 64-byte
# values), with -P 1 and with -P 16, against
#   - the 3-node chorus-kv store on loopback (chorus-kv demo: one process per node, data
#     directories, its default appendfsync always; redis-benchmark talks to node 1), with local
#     reads and with linearizable reads;
#   - one redis-server (no persistence: the upper bound for one node);
# and etcd's put rate (3 nodes, 64 B values, 64 closed-loop clients on 100k keys, with fsync and
# with --unsafe-no-fsync) through the peers kit (../shared/peers).
# The store and redis-server are interleaved: ROUNDS rounds of [store local reads, redis-server,
# store linearizable reads], each server started fresh; every figure is given as min / median /
# max of the rounds, and every ratio per round (the store over the redis-server run next to it).
# The peers are also set against their reference figures (the kit's RESULTS.md): a peer below
# LOW_PEER (75%) of its reference is flagged, the ratio against the reference is printed beside
# the one against this run, and no target is judged on a ratio against a depressed peer.
# Targets (issue 5): SET -P 16 >= 0.5 of redis-server, local GET >= 0.8 of redis-server (-P 1
# and -P 16), SET -P 16 >= 20x etcd's put rate with fsync.
# Writes the table as Markdown to $OUT/results.md (named at the end; also copied to $RESULTS_TO).
#
#   bash scripts/bench-kv.sh              # everything: the rounds (~3 min on a quiet machine,
#                                         # 7 min on a busy one) + etcd (~1.5 min: the kit runs
#                                         # its 8 etcd figures; the first time more: apt-get
#                                         # etcd-server, build the kit's client; needs root)
#   SKIP_ETCD=1 bash scripts/bench-kv.sh  # the store and redis-server only
#   N=20000 ROUNDS=2 SKIP_ETCD=1 ...      # a quick check (~30 s)
# Knobs: N=200000 requests per test; ROUNDS=5 (RUNS, the old name, is read too); CLIENTS=50;
#   RAND=100000 keys (-r; RAND= for redis-benchmark's default, one key); DSIZE=64 value bytes
#   (-d; DSIZE= for its default, 3 B); SKIP_LINEAR=1 without the linearizable-read store;
#   SKIP_ETCD=1; ETCD_RUNS=1 runs per etcd figure; LOW_PEER=0.75; PEERS=../shared/peers;
#   KV=path/to/chorus-kv (used as is, no build; default: cargo build --release, honouring
#   CARGO_TARGET_DIR); KV_FSYNC=always|everysec|no (default: the store's own, always);
#   RESULTS_TO=path (a copy of the results table); BENCH_TIMEOUT=600 s per redis-benchmark run.
# Ports: 7401-7403 and 7411-7413 (the stores; their group ports 100 above), 7421 (redis-server).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-200000}
ROUNDS=${ROUNDS:-${RUNS:-5}}
CLIENTS=${CLIENTS:-50}
RAND=${RAND-100000}
DSIZE=${DSIZE-64}
PEERS=${PEERS:-$(cd .. && pwd)/shared/peers}
# shellcheck source=scripts/lib-bench.sh
source scripts/lib-bench.sh
need_uint N "$N"
need_uint ROUNDS "$ROUNDS"
need_uint CLIENTS "$CLIENTS"
need_uint RAND "$RAND" empty-ok
need_uint DSIZE "$DSIZE" empty-ok
need_uint ETCD_RUNS "$ETCD_RUNS"
need_ratio LOW_PEER "$LOW_PEER"
case "${KV_FSYNC:-}" in "" | always | everysec | no) ;; *) die "KV_FSYNC must be always, everysec or no (got '$KV_FSYNC')" ;; esac
need_tools
need_peers
OUT=$(mktemp -d /tmp/chorus-bench-kv.XXXXXX)
echo "==> results and logs in $OUT"
build_kv

BENCH_ARGS=()
[ -z "$RAND" ] || BENCH_ARGS+=(-r "$RAND")
[ -z "$DSIZE" ] || BENCH_ARGS+=(-d "$DSIZE")
STORE_ARGS=()
[ -z "${KV_FSYNC:-}" ] || STORE_ARGS+=(--appendfsync "$KV_FSYNC")
SYSTEMS=(kv-local redis)
[ "${SKIP_LINEAR:-0}" = 1 ] || SYSTEMS+=(kv-linear)

KV_POLICY=""
for ((round = 1; round <= ROUNDS; round++)); do
    echo "==> round $round of $ROUNDS: ${SYSTEMS[*]}"
    for sys in "${SYSTEMS[@]}"; do
        case $sys in
        kv-local | kv-linear)
            port=7401 reads=local
            [ "$sys" = kv-linear ] && port=7411 reads=linearizable
            start_store "$OUT/$sys-r$round" "$port" --reads "$reads" "${STORE_ARGS[@]}"
            [ -n "$KV_POLICY" ] || KV_POLICY=$(redis-cli -p "$port" info persistence 2>/dev/null | tr -d '\r' | sed -n 's/^appendfsync://p' || true)
            for p in 1 16; do bench_once "$sys" "$port" "$round" set,get "$p"; done
            stop_store "$OUT/$sys-r$round"
            ;;
        redis)
            start_redis "redis-r$round" 7421 --appendonly no
            for p in 1 16; do bench_once redis 7421 "$round" set,get "$p"; done
            stop_redis "redis-r$round" 7421
            ;;
        esac
    done
done

ETCD_FSYNC="" ETCD_NOFSYNC="" ETCD_ERROR=""
[ "${SKIP_ETCD:-0}" = 1 ] || run_etcd

# ---------------------------------------------------------------- the table
D=${DSIZE:-3}
cmdline="redis-benchmark -c $CLIENTS -n $N${RAND:+ -r $RAND}${DSIZE:+ -d $DSIZE} -t set,get"
rkv() { vals "$1" "$2" | med; } # the median of a system's figure
: >"$OUT/results.md"
md "#### chorus-kv against redis-server and etcd: \`scripts/bench-kv.sh\`"
md ""
md "$(machine_line)."
md ""
md "\`$cmdline\`, \`-P 1\` and \`-P 16\`, against chorus-kv (3 nodes on loopback, one process each," \
    "data directories, appendfsync ${KV_POLICY:-?}; redis-benchmark on node 1) and one redis-server" \
    "(no persistence). $ROUNDS rounds, interleaved: in each round chorus-kv with local reads, then" \
    "redis-server$([ "${SKIP_LINEAR:-0}" = 1 ] || echo ", then chorus-kv with linearizable reads"), each started" \
    "fresh. Requests/s as min / median / max of the rounds; the ratio is chorus-kv over the" \
    "redis-server run of the same round."
md ""
md "| figure | chorus-kv, 3 nodes | redis-server, 1 node | ratio per round | ratio min / median / max | target |"
md "|---|---:|---:|---|---:|---|"

# the peers against their references: redis-server figures, flagged when low
declare -A RREF RFRAC RLOW
for t in SET GET; do
    for p in 1 16; do
        f=$t-P$p
        RREF[$f]=$(ref "redis-${t,,}-${D}B-P$p")
        RFRAC[$f]=$(ratio "$(rkv redis "$f")" "${RREF[$f]}")
        RLOW[$f]=$(low "${RFRAC[$f]}")
    done
done
# judge SYSTEM FIGURE TARGET: the target's verdict on the ratio per round (median); not judged
# if redis-server ran low in this run (the ratio would flatter the store)
judge() {
    if [ "${RLOW[$2]}" = yes ]; then
        echo ">= $3: not judged, redis-server ran at $(pct "${RFRAC[$2]}") of its reference (against the reference: $(ratio "$(rkv "$1" "$2")" "${RREF[$2]}"))"
    else
        echo ">= $3: $(verdict "$(ratio_med "$1" redis "$2")" "$3")"
    fi
}
row() { # row LABEL SYSTEM FIGURE [TARGET]
    local tgt=""
    [ -z "${4:-}" ] || tgt=$(judge "$2" "$3" "$4")
    md "| $1 | $(spread "$2" "$3") | $(spread redis "$3") | $(ratio_cells "$2" redis "$3") | $tgt |"
}
row "SET -P 1" kv-local SET-P1
row "SET -P 16" kv-local SET-P16 0.50
row "GET -P 1, local reads" kv-local GET-P1 0.80
row "GET -P 16, local reads" kv-local GET-P16 0.80
if [ "${SKIP_LINEAR:-0}" != 1 ]; then
    row "GET -P 1, linearizable reads" kv-linear GET-P1
    row "GET -P 16, linearizable reads" kv-linear GET-P16
fi

md ""
md "##### The peers against their reference figures"
md ""
md "Reference: $(ref_source)$([ ! -f "$PEERS/RESULTS.md" ] || echo "; its redis-server runs used one key (no \`-r\`)"). A peer below $(pct "$LOW_PEER") of its reference is" \
    "flagged **low**: a ratio against it flatters chorus-kv, so no target is judged on it (rerun on a" \
    "quieter machine); the ratio against the reference is given beside it."
md ""
md "| peer figure | this run (median) | reference | this run / reference | chorus-kv / peer, this run | chorus-kv / peer's reference |"
md "|---|---:|---:|---:|---:|---:|"
flags=()
for f in SET-P1 SET-P16 GET-P1 GET-P16; do
    label="redis-server ${f%-P*} -P ${f#*-P}"
    [ "${f%-P*}" = GET ] && label="$label (vs local reads)"
    flag=""
    if [ "${RLOW[$f]}" = yes ]; then
        flag=" **low**"
        flags+=("redis-server ${f%-P*} -P ${f#*-P} ran at $(pct "${RFRAC[$f]}") of its reference: median $(fmt "$(rkv redis "$f")") vs $(fmt "${RREF[$f]}") requests/s (rounds: $(vals redis "$f" | while read -r v; do fmt "$v"; done | paste -sd/ - | sed 's|/| / |g'))")
    fi
    md "| $label | $(fmt "$(rkv redis "$f")") | $(fmt "${RREF[$f]}") | $(pct "${RFRAC[$f]}")$flag | $(ratio "$(ratio_med kv-local redis "$f")" 1) | $(ratio "$(rkv kv-local "$f")" "${RREF[$f]}") |"
done

md ""
if [ "${SKIP_ETCD:-0}" = 1 ]; then
    md "etcd: not run (SKIP_ETCD=1)."
else
    md "etcd 3.4, 3 nodes, puts of 64 B values, 64 clients over 8 connections closed loop on 100k keys" \
        "(the peers kit, $ETCD_RUNS run(s) per figure, after the rounds above). \`SET -P 1\` (50 clients, one" \
        "request each in flight) is the closer match to etcd's closed-loop clients; \`-P 16\` is given beside it."
    md ""
    md "| etcd, 3 nodes | puts/s, this run | reference | this run / reference | SET -P 1 / etcd: this run, reference | SET -P 16 / etcd: this run, reference | target |"
    md "|---|---:|---:|---:|---|---|---|"
    for mode in fsync nofsync; do
        if [ $mode = fsync ]; then
            e=$ETCD_FSYNC eref=$(ref etcd-64-tput) label="default durability (fsync)"
        else
            e=$ETCD_NOFSYNC eref=$(ref etcd-64-tput-nofsync) label="--unsafe-no-fsync"
        fi
        frac=$(ratio "$e" "$eref")
        flag=""
        if [ "$(low "$frac")" = yes ]; then
            flag=" **low**"
            flags+=("etcd $label ran at $(pct "$frac") of its reference ($(fmt "$e") vs $(fmt "$eref") puts/s)")
        fi
        x1=$(xratio "$(rkv kv-local SET-P1)" "$e") x1r=$(xratio "$(rkv kv-local SET-P1)" "$eref")
        x16=$(xratio "$(rkv kv-local SET-P16)" "$e") x16r=$(xratio "$(rkv kv-local SET-P16)" "$eref")
        tgt=""
        if [ $mode = fsync ]; then
            if [ -n "$flag" ]; then
                tgt="SET -P 16 >= 20x: not judged, etcd ran at $(pct "$frac") of its reference"
            else
                tgt="SET -P 16 >= 20x: $(verdict "${x16%x}" 20)"
            fi
        fi
        md "| $label | $(fmt "$e") | $(fmt "$eref") | $(pct "$frac")$flag | $x1, $x1r | $x16, $x16r | $tgt |"
    done
    if [ -n "$ETCD_ERROR" ]; then
        md ""
        md "etcd **failed**: $ETCD_ERROR"
    fi
fi
finish_with_peers
