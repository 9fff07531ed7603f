#!/usr/bin/env bash
# Long fuzzing runs (issue 14, must-show 4): each target for SECONDS (default 3600), one after
# the other, starting from the committed corpus in fuzz/corpus/TARGET and adding what it finds
# there (minimized with `cargo fuzz cmin` at the end, so the corpus stays small enough to commit).
# Inputs that once crashed or hung are kept in fuzz/regressions/TARGET (cmin would drop them)
# and run too. A crash stops the script with the input in fuzz/artifacts/TARGET. The last lines of each run
# (executions, coverage, and the CPU time the fuzzer really got, which is less than SECONDS on a
# shared machine) go to fuzz/runs/TARGET.txt. Never pause a run (SIGSTOP): libFuzzer's -timeout
# counts wall time, so the input running at the pause is reported as a hang. Lower its priority
# (nice -n 19) instead.
#
# On a machine busy with other work, the wall-clock hour gives the fuzzer half an hour of CPU or
# less. CPU_SECONDS_PER_TARGET=N fuzzes in rounds of SECONDS_PER_TARGET (wall) until the fuzzer's
# processes have had N seconds of CPU; each round starts from the corpus the last one grew.
#
#   bash scripts/fuzz-long.sh                      # every target, one hour each
#   SECONDS_PER_TARGET=600 bash scripts/fuzz-long.sh node_inputs wire_decode
#   CPU_SECONDS_PER_TARGET=3600 SECONDS_PER_TARGET=900 nice -n 19 bash scripts/fuzz-long.sh config_toml
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${SECONDS_PER_TARGET:-3600}"
cpu_goal="${CPU_SECONDS_PER_TARGET:-0}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(wire_decode node_inputs resp_request config_toml trace_reader)
fi
if ! [ -x /usr/bin/time ]; then
    echo "fuzz-long.sh needs GNU time (apt-get install time) to report the CPU each target got" >&2
    exit 1
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --quiet
fi
mkdir -p runs
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    echo "==> $t: building"
    RUSTC_BOOTSTRAP=1 cargo fuzz build "$t" >/dev/null
    log="runs/$t.log"
    start=$(date -u +%FT%TZ)
    before=$(find "corpus/$t" -type f | wc -l)
    dirs=("corpus/$t")
    [ -d "regressions/$t" ] && dirs+=("regressions/$t")  # Inputs that once crashed or hung.
    cpu=0 rounds=0 runs=0 wall=0
    : >"$log"
    while :; do
        echo "==> $t: fuzzing for ${secs} s from $(find "corpus/$t" -type f | wc -l) corpus inputs (log: fuzz/$log; CPU so far ${cpu} s of ${cpu_goal} s)"
        # GNU time counts the CPU of cargo and of the fuzzer it waits for.
        if ! /usr/bin/time -o "runs/$t.cpu" -f '%U %S' env RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "${dirs[@]}" -- \
            -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log.round" 2>&1; then
            cat "$log.round" >>"$log"
            tail -n 40 "$log.round"
            echo "fuzz target $t failed: the crashing input is in fuzz/artifacts/$t" >&2
            exit 1
        fi
        cat "$log.round" >>"$log"
        rounds=$((rounds + 1))
        wall=$((wall + secs))
        cpu=$(awk -v c="$cpu" '{ printf "%.0f", c + $1 + $2 }' "runs/$t.cpu")
        runs=$((runs + $(grep -E '^stat::number_of_executed_units' "$log.round" | awk '{ print $2 }')))
        [ "$cpu" -ge "$cpu_goal" ] && break
    done
    RUSTC_BOOTSTRAP=1 cargo fuzz cmin "$t" "corpus/$t" >>"$log" 2>&1
    after=$(find "corpus/$t" -type f | wc -l)
    {
        echo "target $t: ${wall} s from $start in ${rounds} round(s), no crash; corpus $before inputs at the start, $after after cmin"
        echo "cpu: ${cpu} s user+system"
        echo "executed units: ${runs}"
        grep -E '^stat::peak_rss_mb' "$log.round" | head -n 1
        grep -E '#[0-9]+.*(cov|ft):' "$log.round" | grep -v -i cmin | tail -n 1
    } | tee "runs/$t.txt"
    rm -f "$log.round"
    rm -f "$log" "runs/$t.cpu"
done
