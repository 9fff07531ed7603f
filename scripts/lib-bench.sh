# shellcheck shell=bash
# Shared by scripts/bench-kv.sh and scripts/bench-durable.sh (sourced, not run):
#   - errors: die (message on stderr, exit 1), knob checks;
#   - the binaries: redis tools present, chorus-kv built (or taken from $KV);
#   - processes: the 3-node store (chorus-kv demo) and redis-server in the background, each
#     recorded by PID and stopped by PID (TERM, then KILL after 15 s; the demo's node processes
#     too), all of them on exit, Ctrl-C or failure;
#   - one redis-benchmark run -> one line per test in $OUT/runs.tsv
#     (system, figure, round, requests/s); min / median / max over the rounds; ratios per round;
#   - reference figures of the peers (the peers kit's RESULTS.md) and etcd's put rate measured
#     in this run through the peers kit;
#   - Markdown for the results file ($OUT/results.md, copied to $RESULTS_TO if set).
# The caller sets OUT (a fresh directory), N, CLIENTS, BENCH_ARGS (array: -r/-d), PEERS, and
# runs `cd` to the repository root first.

LOW_PEER=${LOW_PEER:-0.75}          # a peer below this fraction of its reference is flagged
BENCH_TIMEOUT=${BENCH_TIMEOUT:-600} # seconds one redis-benchmark run may take
ETCD_RUNS=${ETCD_RUNS:-1}           # runs per etcd figure in the peers kit (median kept)

die() { printf '\nbench: ERROR: %s\n' "$*" >&2; exit 1; }

need_uint() { # need_uint NAME VALUE [empty-ok]: a knob must be a positive integer
    [ -z "$2" ] && [ "${3:-}" = empty-ok ] && return 0
    [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer (got '$2')"
}
need_ratio() {
    if [ -z "$2" ] || ! [[ "$2" =~ ^(0|1)?(\.[0-9]+)?$ ]]; then die "$1 must be a fraction like 0.75 (got '$2')"; fi
}

need_tools() {
    local t
    for t in redis-server redis-benchmark redis-cli timeout awk; do
        command -v "$t" >/dev/null || die "needs $t (apt-get install redis-server redis-tools coreutils gawk)"
    done
}

# KV: the chorus-kv binary. Default: built here (cargo build --release -p chorus-kv, honouring
# CARGO_TARGET_DIR); KV=/path/to/chorus-kv uses that binary as it is, without building.
build_kv() {
    if [ -n "${KV:-}" ]; then
        [ -x "$KV" ] || die "KV=$KV is not an executable file"
        echo "==> chorus-kv: $KV (KV given: not rebuilt)"
    else
        echo "==> cargo build --release -p chorus-kv"
        cargo build --release -q -p chorus-kv || die "cargo build --release -p chorus-kv failed"
        KV=${CARGO_TARGET_DIR:-target}/release/chorus-kv
        [ -x "$KV" ] || die "no binary at $KV after the build"
    fi
}

# ---------------------------------------------------------------- processes
BENCH_PIDS=()
track() { BENCH_PIDS+=("$1"); }
forget() { # forget PID: stopped, no longer ours (its number may be reused)
    local keep=() p
    for p in "${BENCH_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    BENCH_PIDS=("${keep[@]}")
}
# stop_pid PID: TERM, wait up to 15 s, then KILL; the process's own children (the store's
# nodes under chorus-kv demo) are killed too if they outlive it.
stop_pid() {
    local pid=$1 kids k i
    kids=$(pgrep -P "$pid" 2>/dev/null || true)
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 150; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "bench: PID $pid did not stop within 15 s of SIGTERM: SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
    for k in $kids; do
        if grep -qa chorus-kv "/proc/$k/cmdline" 2>/dev/null; then
            echo "bench: node PID $k outlived its parent $pid: SIGKILL" >&2
            kill -KILL "$k" 2>/dev/null || true
        fi
    done
    forget "$pid"
}
bench_cleanup() {
    local p
    for p in "${BENCH_PIDS[@]}"; do stop_pid "$p"; done
}
trap bench_cleanup EXIT
trap 'echo "bench: interrupted" >&2; exit 130' INT TERM

port_free() { # port_free PORT...: nothing may listen there (else redis-cli would talk to it)
    local p
    for p in "$@"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            die "port $p is already in use (another store, redis-server or benchmark running?)"
        fi
    done
}

# start_store DIR PORT [demo flags...]: a 3-node store (chorus-kv demo: Redis ports PORT..PORT+2,
# group ports PORT+100..PORT+102, configs, logs and data in DIR) until stop_store; STORE_PID.
start_store() {
    local dir=$1 port=$2 i
    shift 2
    port_free "$port" $((port + 1)) $((port + 2)) $((port + 100)) $((port + 101)) $((port + 102))
    rm -rf "$dir"
    : >"$dir.log" # before the store opens it: the wait below reads it at once
    "$KV" demo --port "$port" --dir "$dir" "$@" >"$dir.log" 2>&1 &
    STORE_PID=$!
    track "$STORE_PID"
    for ((i = 0; i < 600; i++)); do
        grep -q "Running until Ctrl-C" "$dir.log" && return 0
        kill -0 "$STORE_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 30 "$dir.log" >&2
    kill -0 "$STORE_PID" 2>/dev/null || die "the store (chorus-kv demo --port $port $*) exited before it was ready; logs: $dir.log, $dir/"
    die "the store (chorus-kv demo --port $port $*) was not ready within 60 s; logs: $dir.log, $dir/"
}
stop_store() { # stop_store DIR: stop it, drop its data directories (configs and logs kept)
    stop_pid "$STORE_PID"
    find "$1" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} + 2>/dev/null || true
}

# start_redis NAME PORT [redis-server flags...]: one redis-server (data in $OUT/NAME) until
# stop_redis; REDIS_PID.
start_redis() {
    local name=$1 port=$2 i
    shift 2
    port_free "$port"
    rm -rf "${OUT:?}/$name"
    mkdir -p "$OUT/$name"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$OUT/$name" --save "" --daemonize no "$@" \
        >"$OUT/$name.log" 2>&1 &
    REDIS_PID=$!
    track "$REDIS_PID"
    for ((i = 0; i < 100; i++)); do
        [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && return 0
        kill -0 "$REDIS_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$OUT/$name.log" >&2
    die "redis-server $* did not answer PING on port $port within 10 s; log: $OUT/$name.log"
}
stop_redis() { # stop_redis NAME PORT
    redis-cli -p "$2" shutdown nosave >/dev/null 2>&1 || true
    stop_pid "$REDIS_PID"
    rm -rf "${OUT:?}/$1"
}

# ---------------------------------------------------------------- measuring
# bench_once SYSTEM PORT ROUND TESTS PIPELINE: one redis-benchmark run (-t TESTS -n $N -c $CLIENTS
# -P PIPELINE "${BENCH_ARGS[@]}") on an emptied server; every test's requests/s goes to
# $OUT/runs.tsv as "SYSTEM <tab> TEST-PPIPELINE <tab> ROUND <tab> rps" (TEST in capitals).
# redis-benchmark exits non-zero on the first error reply; that, a timeout, or a run that left no
# key behind stops the script.
bench_once() {
    local sys=$1 port=$2 round=$3 tests=$4 p=$5 out rc=0 t rps keys
    local cmd=(redis-benchmark -p "$port" -t "$tests" -n "$N" -c "$CLIENTS" -P "$p" "${BENCH_ARGS[@]}" --csv)
    redis-cli -p "$port" flushall >/dev/null 2>&1 || die "FLUSHALL failed on port $port ($sys)"
    # in the background, so that Ctrl-C / SIGTERM stop the script (and it) at once
    timeout "$BENCH_TIMEOUT" "${cmd[@]}" >"$OUT/.bench.out" 2>&1 &
    local bpid=$!
    track "$bpid"
    wait "$bpid" || rc=$?
    forget "$bpid"
    out=$(cat "$OUT/.bench.out")
    printf '# round %s: %s\n%s\n' "$round" "${cmd[*]}" "$out" >>"$OUT/$sys.csv"
    if [ "$rc" != 0 ]; then
        printf '%s\n' "$out" | tail -n 5 >&2
        [ "$rc" = 124 ] && die "redis-benchmark against $sys timed out after $BENCH_TIMEOUT s: ${cmd[*]}"
        die "redis-benchmark against $sys exited with status $rc: ${cmd[*]} (output in $OUT/$sys.csv)"
    fi
    for t in ${tests//,/ }; do
        t=${t^^}
        rps=$(printf '%s\n' "$out" | tr -d '"' | awk -F, -v t="$t" 'toupper($1) == t { print $2 }')
        [[ "$rps" =~ ^[0-9.]+$ ]] || die "no $t figure in redis-benchmark's output against $sys ($OUT/$sys.csv)"
        printf '%s\t%s-P%s\t%s\t%s\n' "$sys" "$t" "$p" "$round" "$rps" >>"$OUT/runs.tsv"
        printf '    %-16s %-4s -P %-3s %12.0f requests/s\n' "$sys" "$t" "$p" "$rps"
    done
    if [[ ",$tests," == *,set,* ]]; then
        keys=$(redis-cli -p "$port" dbsize 2>/dev/null | tr -dc 0-9)
        [ "${keys:-0}" -gt 0 ] || die "$sys holds no key after redis-benchmark's SETs (port $port): the writes did not land"
    fi
}

# vals SYSTEM FIGURE: its requests/s, one line per round, in round order
vals() { awk -F'\t' -v s="$1" -v f="$2" '$1 == s && $2 == f { print $3, $4 }' "$OUT/runs.tsv" | sort -n | awk '{ print $2 }'; }
# stats: "min median max" of the numbers on stdin (median of an even count: mean of the middle two)
stats() {
    sort -g | awk '{ a[NR] = $1 } END {
        if (NR == 0) { print "", "", ""; exit }
        m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
        print a[1], m, a[NR] }'
}
med() { stats | awk '{ print $2 }'; }
# round_ratios A B FIGURE: A's figure over B's, round by round (the runs next to each other)
round_ratios() {
    paste <(vals "$1" "$3") <(vals "$2" "$3") | awk '$1 != "" && $2 > 0 { printf "%.4f\n", $1 / $2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }
xratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b + 0 > 0) printf "%.1fx", a / b; else print "n/a" }'; }
# fmt N: an integer with thousands separators ("n/a" if empty)
fmt() {
    awk -v x="$1" 'BEGIN {
        if (x == "") { print "n/a"; exit }
        s = sprintf("%.0f", x); n = ""
        while (length(s) > 3) { n = "," substr(s, length(s) - 2) n; s = substr(s, 1, length(s) - 3) }
        print s n }'
}
# spread SYSTEM FIGURE: "min / median / max" of its rounds, formatted
spread() { local a; read -r -a a < <(vals "$1" "$2" | stats); echo "$(fmt "${a[0]:-}") / $(fmt "${a[1]:-}") / $(fmt "${a[2]:-}")"; }
# ratio_cells A B FIGURE: "r1, r2, ... | min / median / max" of the per-round ratios
ratio_cells() {
    local list a
    list=$(round_ratios "$1" "$2" "$3" | awk '{ printf "%s%.2f", (NR > 1 ? ", " : ""), $1 }')
    read -r -a a < <(round_ratios "$1" "$2" "$3" | stats)
    printf '%s | %s / %s / %s' "${list:-n/a}" "$(ratio "${a[0]:-}" 1)" "$(ratio "${a[1]:-}" 1)" "$(ratio "${a[2]:-}" 1)"
}
ratio_med() { round_ratios "$1" "$2" "$3" | med; }
# verdict RATIO TARGET: "met" / "**not met**" / "n/a"
verdict() { awk -v r="$1" -v t="$2" 'BEGIN { if (r == "" || r == "n/a") print "n/a"; else if (r + 0 >= t + 0) print "met"; else print "**not met**" }'; }
# low FRACTION: "yes" if a peer at FRACTION of its reference is below $LOW_PEER
low() { awk -v f="$1" -v l="$LOW_PEER" 'BEGIN { print (f != "" && f != "n/a" && f + 0 < l + 0) ? "yes" : "no" }'; }
pct() { awk -v f="$1" 'BEGIN { if (f == "" || f == "n/a") print "n/a"; else printf "%.0f%%", 100 * f }'; }

# ---------------------------------------------------------------- the peers
# ref ID: the median rate of figure ID in the peers kit's reference RESULTS.md (empty if none)
ref() {
    [ -f "$PEERS/RESULTS.md" ] || return 0
    awk -F'|' -v id="$1" '{ f = $2; gsub(/ /, "", f) } f == id { v = $4; gsub(/[ ,]/, "", v); print v; exit }' "$PEERS/RESULTS.md"
}
ref_date() { sed -n 's/^ *date (UTC): *//p' "$PEERS/RESULTS.md" 2>/dev/null | head -n1; }
# ref_source: where the reference figures come from, for the results file
ref_source() {
    if [ -f "$PEERS/RESULTS.md" ]; then
        echo "the peers kit's RESULTS.md ($(ref_date) UTC, a 2-core machine of the same kind)"
    else
        echo "none ($PEERS/RESULTS.md not found)"
    fi
}
# need_peers: fail early (before the rounds) if etcd is to run and the kit is not there
need_peers() {
    [ "${SKIP_ETCD:-0}" = 1 ] && return 0
    [ -x "$PEERS/run-all.sh" ] && [ -d "$PEERS/etcd" ] && return 0
    die "no peers kit at $PEERS (needed for etcd): set PEERS=path/to/peers, or SKIP_ETCD=1"
}

# run_etcd: etcd 3.4, 3 nodes, through the peers kit (a copy in $OUT/peers; apt-get needs root;
# every etcd figure of the kit, $ETCD_RUNS runs each, about 2 min per run plus the first build of
# its client). Sets ETCD_FSYNC and ETCD_NOFSYNC (medians of the runs of etcd-64-tput and
# etcd-64-tput-nofsync; empty if the kit produced none) and ETCD_ERROR.
# shellcheck disable=SC2034 # ETCD_* are read by the scripts that source this file
run_etcd() {
    ETCD_FSYNC="" ETCD_NOFSYNC="" ETCD_ERROR=""
    echo "==> etcd 3.4, 3 nodes, through the peers kit ($PEERS/etcd; log: $OUT/etcd.log)"
    rm -rf "$OUT/peers"
    cp -r "$PEERS" "$OUT/peers"
    rm -rf "$OUT/peers/out" "$OUT/peers/RESULTS.md"   # nothing of the reference run can leak in
    (cd "$OUT/peers" && RUNS=$ETCD_RUNS ./run-all.sh etcd) >"$OUT/etcd.log" 2>&1 || true
    local tsv=$OUT/peers/out/results.tsv
    if [ -f "$tsv" ]; then
        ETCD_FSYNC=$(awk -F'\t' '$1 == "etcd-64-tput" && $3 == "rate" { print $4 }' "$tsv" | med)
        ETCD_NOFSYNC=$(awk -F'\t' '$1 == "etcd-64-tput-nofsync" && $3 == "rate" { print $4 }' "$tsv" | med)
    fi
    if [ -z "$ETCD_FSYNC" ]; then
        ETCD_ERROR="the peers kit gave no etcd put rate: see $OUT/etcd.log and $OUT/peers/out/logs/etcd.log"
        [ -f "$OUT/peers/out/notes.tsv" ] && sed 's/^/    kit note: /' "$OUT/peers/out/notes.tsv" >&2
    fi
    printf '    etcd fsync %s puts/s, --unsafe-no-fsync %s puts/s\n' "$(fmt "$ETCD_FSYNC")" "$(fmt "$ETCD_NOFSYNC")"
}

# ---------------------------------------------------------------- the results file
md() { printf '%s\n' "$*" >>"$OUT/results.md"; }
machine_line() {
    local rev dirty=""
    rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && dirty=" + uncommitted changes"
    printf 'Run of %s to %s UTC, %s cores, load average before it %s; commit %s%s; %s; %s' \
        "$START_DATE" "$(date -u '+%H:%M')" "$(nproc)" "$LOAD_BEFORE" "$rev" "$dirty" \
        "$("$KV" --version 2>/dev/null || echo chorus-kv)" "$(redis-server --version | awk '{ sub(/^v=/, "", $3); print "redis-server", $3 }')"
}
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)
START_DATE=$(date -u '+%Y-%m-%d %H:%M')
finish_results() { # print the table, name the file, copy it to $RESULTS_TO if set
    echo
    cat "$OUT/results.md"
    echo
    if [ -n "${RESULTS_TO:-}" ]; then
        cp "$OUT/results.md" "$RESULTS_TO" || die "could not copy $OUT/results.md to RESULTS_TO=$RESULTS_TO"
        echo "==> results table: $OUT/results.md (copied to $RESULTS_TO); logs and raw output in $OUT"
    else
        echo "==> results table: $OUT/results.md; logs and raw output in $OUT"
    fi
}

# finish_with_peers: lists the peers that ran low (the caller's `flags` array), writes the
# results file, and exits 1 if etcd failed (the table is written first).
# shellcheck disable=SC2154 # flags: set by the calling script
finish_with_peers() {
    md ""
    if [ ! -f "$PEERS/RESULTS.md" ]; then
        md "No reference figures ($PEERS/RESULTS.md not found): no peer could be checked."
    elif [ ${#flags[@]} = 0 ]; then
        md "No peer ran below $(pct "$LOW_PEER") of its reference figure."
    else
        md "Peers below $(pct "$LOW_PEER") of their reference figures (ratios against them are not headline figures):"
        md ""
        for f in "${flags[@]}"; do md "- $f"; done
    fi
    finish_results
    [ -z "$ETCD_ERROR" ] || die "etcd: $ETCD_ERROR (SKIP_ETCD=1 to run without it)"
}
