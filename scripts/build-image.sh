#!/usr/bin/env bash
# Builds the container image `chorus:latest` (IMAGE to change the name): static binaries of
# chorus and chorus-kv (glibc linked in with crt-static: no base image can be pulled on these
# machines, and none is needed), copied into an image FROM scratch (deploy/Dockerfile). The
# binaries resolve host names themselves (a static glibc cannot load its NSS modules): peers
# named `node-2:7101` or `chorus-1.chorus.default.svc:7101` work inside the image.
#
#   bash scripts/build-image.sh          # ~3-5 min the first time (a release build)
#   IMAGE=chorus:dev bash scripts/build-image.sh
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-chorus:latest}
TARGET=x86_64-unknown-linux-gnu
command -v docker >/dev/null || { echo "docker is needed to build the image" >&2; exit 1; }
echo "==> static release build (target $TARGET, crt-static)"
# A target directory of its own: the flags differ from the normal build's, and sharing one
# would rebuild everything each time either is built.
# No debug info in the image's binaries (the workspace's release profile keeps line tables for
# profiling): smaller, and a quicker build in CI.
RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR=target/static CARGO_PROFILE_RELEASE_DEBUG=0 \
    cargo build --release --locked --target "$TARGET" -p chorus -p chorus-kv
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
for b in chorus chorus-kv; do
    cp "target/static/$TARGET/release/$b" "$ctx/$b"
    if ldd "$ctx/$b" 2>&1 | grep -q '=>'; then
        echo "error: $b is not static (ldd lists libraries it needs)" >&2
        exit 1
    fi
done
strip "$ctx/chorus" "$ctx/chorus-kv" 2>/dev/null || true
cp deploy/Dockerfile "$ctx/Dockerfile"
printf 'build.log\n' >"$ctx/.dockerignore"
echo "==> docker build -t $IMAGE"
# (The legacy builder's deprecation notice is left out unless the build fails.)
if ! docker build -q -t "$IMAGE" "$ctx" >"$ctx/build.log" 2>&1; then
    cat "$ctx/build.log" >&2
    exit 1
fi
docker image ls "$IMAGE" --format '{{.Repository}}:{{.Tag}} {{.Size}}'
