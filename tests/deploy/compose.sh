#!/usr/bin/env bash
# The compose file for real (issue: chorus across real networks): the image built FROM scratch
# (scripts/build-image.sh), deploy/docker-compose.yml brought up with certificates made by
# `chorus certs`; then: a write through one container is read through another; a container
# stopped, writes go on, it comes back with them; a container disconnected from the network
# (`docker network disconnect`) stops being ready while the other two serve; reconnected, it
# re-joins; every replica ends with the same applied index and state digest; the whole store
# restarted (`docker-compose restart`) keeps every write. Cleans up after itself (also on
# failure or Ctrl-C). Without docker or docker-compose it prints SKIP and why, and exits 0
# unless CHORUS_REQUIRE_DOCKER=1 (CI sets it).
#
#   bash tests/deploy/compose.sh          # ~1 min after the image build
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
skip() {
    if [ "${CHORUS_REQUIRE_DOCKER:-0}" = 1 ]; then
        echo "FAIL: $1 (CHORUS_REQUIRE_DOCKER=1)" >&2
        exit 1
    fi
    echo "SKIP: compose test not run: $1"
    exit 0
}
command -v docker >/dev/null || skip "docker is not installed"
command -v docker-compose >/dev/null || skip "docker-compose is not installed"
docker info >/dev/null 2>&1 || skip "the docker daemon does not answer"
command -v redis-cli >/dev/null || skip "redis-cli is not installed (apt-get install redis-tools)"

IMAGE=${IMAGE:-chorus:test}
PROJECT=chorustest$$
P1=${P1:-17001} P2=${P2:-17002} P3=${P3:-17003}
WORK=$(mktemp -d /tmp/chorus-compose.XXXXXX)
compose() {
    CHORUS_IMAGE=$IMAGE CHORUS_SECRET=compose-test-secret-0123456789 CHORUS_PORT_1=$P1 CHORUS_PORT_2=$P2 \
        CHORUS_PORT_3=$P3 docker-compose -p "$PROJECT" -f "$WORK/docker-compose.yml" "$@"
}
cleanup() {
    local rc=$?
    if [ "$rc" != 0 ]; then
        echo "--- logs (the test failed) ---"
        compose logs --no-color --tail 40 2>/dev/null || true
    fi
    compose down -v --remove-orphans >/dev/null 2>&1 || true
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

IMAGE=$IMAGE bash scripts/build-image.sh
CHORUS=$REPO/target/static/x86_64-unknown-linux-gnu/release/chorus
cp deploy/docker-compose.yml "$WORK/"
"$CHORUS" certs --dir "$WORK/certs" --host node-1,node-2,node-3 node-1 node-2 node-3 >/dev/null
# The containers run as root here (the compose file sets no user); the keys are the owner's.
echo "==> docker-compose up (3 nodes)"
compose up -d --quiet-pull 2>&1 | grep -v "^Creating\|^Pulling" || true

container() { compose ps -q "$1"; }
health() { docker inspect --format '{{.State.Health.Status}}' "$(container "$1")" 2>/dev/null || echo none; }
wait_healthy() { # wait_healthy NODE... within 60 s
    local n end=$((SECONDS + 60))
    for n in "$@"; do
        until [ "$(health "$n")" = healthy ]; do
            if [ $SECONDS -ge $end ]; then
                echo "FAIL: $n is not healthy within 60 s (health: $(health "$n"))" >&2
                exit 1
            fi
            sleep 0.5
        done
    done
}
cli() { local port=$1; shift; redis-cli -p "$port" "$@" 2>&1 | tr -d '\r'; }
expect() { # expect WHAT GOT WANT
    if [ "$2" != "$3" ]; then
        echo "FAIL: $1: got '$2', want '$3'" >&2
        exit 1
    fi
    echo "  ok: $1"
}
wait_answer() { # wait_answer PORT WANT ARGS...: until the node answers WANT (30 s)
    local port=$1 want=$2 end=$((SECONDS + 30)) got
    shift 2
    while :; do
        got=$(cli "$port" "$@")
        [ "$got" = "$want" ] && return 0
        if [ $SECONDS -ge $end ]; then
            echo "FAIL: redis-cli -p $port $* answers '$got', not '$want', after 30 s" >&2
            exit 1
        fi
        sleep 0.5
    done
}

wait_healthy node-1 node-2 node-3
echo "==> all three healthy (in one primary view, state loaded)"
# The metrics port inside the compose network (the host reaches the containers' addresses).
IP1=$(docker inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$(container node-1)")
http_get() { python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode().strip())' "$1" 2>&1; }
expect "node-1's /health on the metrics port" "$(http_get "http://$IP1:9121/health")" primary
expect "node-1's view in its metrics" "$(http_get "http://$IP1:9121/metrics" | grep '^chorus_view_members ')" "chorus_view_members 3"
expect "SET through node-1" "$(cli "$P1" SET greeting 'hello from a container')" OK
expect "GET through node-3" "$(cli "$P3" GET greeting)" "hello from a container"
for i in $(seq 1 50); do cli "$P2" RPUSH log "a$i" >/dev/null; done
expect "50 appends through node-2, read through node-1" "$(cli "$P1" LLEN log)" 50

echo "==> node-2 stopped"
compose stop node-2 >/dev/null 2>&1
wait_answer "$P1" OK SET while-stopped yes
expect "written while node-2 was down, read through node-3" "$(cli "$P3" GET while-stopped)" yes
echo "==> node-2 started again"
compose start node-2 >/dev/null 2>&1
wait_healthy node-2
wait_answer "$P2" yes GET while-stopped
echo "  ok: node-2 re-joined with what was written while it was down"

NET=$(docker inspect --format '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}' "$(container node-3)")
echo "==> node-3 disconnected from $NET"
docker network disconnect "$NET" "$(container node-3)"
end=$((SECONDS + 30))
until [ "$(docker exec "$(container node-3)" /chorus-kv health --port 6379 >/dev/null 2>&1 && echo ready || echo not)" = not ]; do
    [ $SECONDS -lt $end ] || { echo "FAIL: node-3 still ready 30 s after its disconnection" >&2; exit 1; }
    sleep 0.5
done
echo "  ok: node-3 says it is not ready: $(docker exec "$(container node-3)" /chorus-kv health --port 6379 2>&1 | tail -1)"
wait_answer "$P1" OK SET while-cut yes
expect "the majority serves: read through node-2" "$(cli "$P2" GET while-cut)" yes
echo "==> node-3 reconnected"
docker network connect --alias node-3 "$NET" "$(container node-3)"
wait_healthy node-3
docker exec "$(container node-3)" /chorus-kv health --port 6379 >/dev/null
echo "  ok: node-3 is ready again"

converged() { # every replica the same applied index and state digest (30 s)
    local end=$((SECONDS + 30)) a b c
    while :; do
        a=$(cli "$P1" INFO group | grep -E '^(applied_index|state_digest):' | sort | tr '\n' ' ')
        b=$(cli "$P2" INFO group | grep -E '^(applied_index|state_digest):' | sort | tr '\n' ' ')
        c=$(docker exec "$(container node-3)" /chorus-kv health --port 6379 >/dev/null 2>&1 && cli "$P3" INFO group | grep -E '^(applied_index|state_digest):' | sort | tr '\n' ' ' || echo none)
        if [ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" = "$c" ]; then
            echo "  ok: every replica at $a"
            return 0
        fi
        if [ $SECONDS -ge $end ]; then
            echo "FAIL: replicas differ after 30 s: node-1 $a; node-2 $b; node-3 $c" >&2
            exit 1
        fi
        sleep 0.5
    done
}
wait_answer "$P3" yes GET while-cut
converged

echo "==> docker-compose restart (the whole store)"
compose restart >/dev/null 2>&1
wait_healthy node-1 node-2 node-3
expect "after the restart, node-3 still has the first write" "$(cli "$P3" GET greeting)" "hello from a container"
expect "after the restart, node-1 has all 50 appends" "$(cli "$P1" LLEN log)" 50
converged
echo "PASS: compose test"
