#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit/scenario/property tests, mutant tests, and the
# deterministic simulator over the committed regression seeds plus a batch of fresh seeds, and
# the state-transfer bench's memory bound (a 1 GiB checkpoint, under 64 MiB extra per node).
# The key-value store's tests need redis-server, redis-tools and redis-py: installed below when
# missing (as root, with apt-get and pip).
#
#   CHORUS_SIM_SEEDS  how many fresh seeds (default 1000)
#   CHORUS_SIM_BASE   first fresh seed (default: derived from the clock, printed, so that every
#                     run explores new seeds; a failure prints the command that replays it)
set -euo pipefail
cd "$(dirname "$0")/.."

seeds=${CHORUS_SIM_SEEDS:-1000}
base=${CHORUS_SIM_BASE:-$(( $(date +%s) % 1000000000 * 1000 ))}

# Each step says when it starts (seconds since the script started), so that a CI log shows
# where the time goes.
step() { printf '\n==> [%ds] %s\n' "$SECONDS" "$*"; }
trap 'printf "\n==> [%ds] scripts/test.sh ends (status %s)\n" "$SECONDS" "$?"' EXIT

step "test dependencies: redis-server and redis-tools (Debian), redis-py (PyPI)"
# The store is tested as users use it: redis-cli, redis-benchmark and redis-py against it, and
# differential tests against a real redis-server. Installed here when missing (root: apt-get);
# CHORUS_SKIP_REDIS=1 compiles those tests as ignored instead, when a tool is missing
# (crates/chorus-kv/build.rs): cargo test lists them as ignored, never as passed.
if [ "${CHORUS_SKIP_REDIS:-0}" != 1 ]; then
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-benchmark >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
        else
            echo "redis-server and redis-tools are missing: install them (apt-get install redis-server redis-tools) or set CHORUS_SKIP_REDIS=1" >&2
            exit 1
        fi
    fi
    if ! python3 -c 'import redis' >/dev/null 2>&1; then
        python3 -m pip install -q redis || python3 -m pip install -q --break-system-packages redis
    fi
    echo "$(redis-server --version | cut -d' ' -f1-3); redis-py $(python3 -c 'import redis; print(redis.__version__)')"
fi

step "test dependency: xmllint (Debian's libxml2-utils), to validate the space-time diagrams"
if ! command -v xmllint >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libxml2-utils >/dev/null
fi
command -v xmllint >/dev/null 2>&1 && echo "xmllint present: the SVG test validates" || echo "xmllint missing: the SVG test skips its validation (it says so)"

step "test dependency: libfaketime (Debian's faketime), for the clock-skew test and the Jepsen runner's clock faults"
if [ ! -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >/dev/null
fi
if [ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ]; then
    export CHORUS_REQUIRE_FAKETIME=1
    echo "libfaketime present: the clock-skew test runs"
else
    echo "libfaketime missing (not root, or no apt-get): the clock-skew test is compiled as ignored"
fi

step "test dependencies: promtool (Debian's prometheus) and chromium, for the metrics and status page tests"
if { ! command -v promtool >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; } && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus chromium >/dev/null
fi
if command -v promtool >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1; then
    export CHORUS_REQUIRE_METRICS_TOOLS=1
    echo "promtool and chromium present: the metrics test checks every scrape, the status page test renders"
else
    echo "promtool or chromium missing (not root, or no apt-get): those checks skip and say so"
fi

step "cargo fmt --check"
cargo fmt --all --check

step "docs: every benchmark figure quoted from the results file its run wrote (scripts/doc-figures.py)"
python3 scripts/doc-figures.py

step "cargo clippy --all-targets --all-features -- -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "the fuzz targets compile (fuzz/ is outside the workspace, so clippy and test do not see it)"
cargo check -q --manifest-path fuzz/Cargo.toml --bins

step "cargo test (with the mutants feature, so every mutant is shown to be caught)"
cargo test --workspace --all-features --release

step "simulator: regression seeds + ${seeds} fresh seeds from ${base}"
cargo run --release -q -p chorus-sim -- run \
    --seeds "${base}..$(( base + seeds ))" \
    --regressions crates/chorus-sim/regressions.txt \
    --require-marks

step "state transfer: a 1 GiB checkpoint streams with under 64 MiB extra at the donor and the joiner"
cargo run --release -q -p chorus-sim --bin st-bench

step "real networks: 5 store nodes in network namespaces, two Jepsen-style runs with partitions, kills and pauses"
# Needs root and ip/iptables/tc (CI has them); elsewhere it prints SKIP with the reason.
# The 100-run campaign is outside CI: see docs/jepsen.md.
if [ "$(id -u)" = 0 ] && ! command -v ping >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iputils-ping >/dev/null || true
fi
cargo build --release -q -p chorus-kv -p chorus-lin -p chorus
python3 tests/net/hosts.py --self-test
python3 tests/net/jepsen.py --nodes 5 --seconds 20 --interval 5 --runs 2 --out "target/jepsen/ci-$(date +%s)"

step "TLS: chorus bench over mutual TLS next to plaintext, 64 B total order (a smoke run: it must form and deliver)"
target/release/chorus bench --tls --orders total --seconds 0.5 | tail -n 3

step "deploy: the Kubernetes manifests against the Kubernetes schemas (kubernetes-validate, PyPI)"
if ! command -v kubernetes-validate >/dev/null 2>&1; then
    python3 -m pip install -q kubernetes-validate || python3 -m pip install -q --break-system-packages kubernetes-validate
fi
kubernetes-validate --strict --quiet -k 1.29.0 deploy/k8s/*.yaml
kubernetes-validate --strict --quiet deploy/k8s/*.yaml
echo "deploy/k8s: valid for Kubernetes 1.29 and $(kubernetes-validate --version 2>/dev/null | tail -n 1)"

step "deploy: the image (FROM scratch, static binaries) and the compose file for real"
# Needs docker and docker-compose (CI has them); elsewhere it prints SKIP with the reason.
bash tests/deploy/compose.sh
