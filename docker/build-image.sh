#!/usr/bin/env bash
# docker/build-image.sh: builds the image cairn:latest (or $CAIRN_IMAGE) from this machine
# alone, without any container registry: builds cairnd and cairn-ctl if needed (build/, or
# $CAIRN_BUILD), stages them (stripped) with exactly the shared libraries ldd resolves for them,
# a minimal /etc/passwd and /etc/group (user cairn, uid 999), and runs docker build on
# docker/Dockerfile (FROM scratch) in that staging directory. Prints the image size.
#
# Usage: docker/build-image.sh            (environment: CAIRN_IMAGE, CAIRN_BUILD)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
IMAGE="${CAIRN_IMAGE:-cairn:latest}"
BUILD="${CAIRN_BUILD:-build}"
BINS=("$BUILD/src/server/cairnd" "$BUILD/tools/cairn-ctl")

if [ -f "$BUILD/build.ninja" ]; then
    ninja -C "$BUILD" src/server/cairnd tools/cairn-ctl >&2
else
    bash scripts/build.sh "$BUILD" -Dwerror=true >&2
fi
for b in "${BINS[@]}"; do
    [ -x "$b" ] || { echo "build-image: $b was not built" >&2; exit 1; }
done

CTX="$(mktemp -d "${TMPDIR:-/tmp}/cairn-image.XXXXXX")"
trap 'rm -rf "$CTX"' EXIT
mkdir -p "$CTX/rootfs/usr/bin" "$CTX/rootfs/etc" "$CTX/owned/data" "$CTX/owned/key"

for b in "${BINS[@]}"; do
    cp "$b" "$CTX/rootfs/usr/bin/"
    strip --strip-unneeded "$CTX/rootfs/usr/bin/$(basename "$b")"
done
# Every library either binary loads, at the path the loader looks for it (the dynamic loader
# itself included); symlinks are resolved into plain files.
ldd "${BINS[@]}" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }' | sort -u |
    while read -r lib; do
        mkdir -p "$CTX/rootfs$(dirname "$lib")"
        cp -L "$lib" "$CTX/rootfs$lib"
        strip --strip-unneeded "$CTX/rootfs$lib" 2>/dev/null || true
    done
if [ ! -e "$CTX/rootfs/lib64/ld-linux-x86-64.so.2" ] && [ -z "$(ls "$CTX"/rootfs/lib*/ld-* 2>/dev/null)" ]; then
    echo "build-image: no dynamic loader found by ldd" >&2
    exit 1
fi
# /lib64 and /lib may be symlinks on the host (usrmerge); the copies above followed them,
# so the image holds real directories.
printf 'root:x:0:0:root:/:/nonexistent\ncairn:x:999:999:cairn:/data:/nonexistent\n' \
    >"$CTX/rootfs/etc/passwd"
printf 'root:x:0:\ncairn:x:999:\n' >"$CTX/rootfs/etc/group"
cp docker/Dockerfile "$CTX/Dockerfile"

# The legacy builder: it needs no registry for FROM scratch (no buildx on this machine).
old="$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$CTX" >&2
new="$(docker image inspect --format '{{.Id}}' "$IMAGE")"
if [ -n "$old" ] && [ "$old" != "$new" ]; then
    # The image this build replaced, now untagged; kept if a container still uses it.
    docker image rm "$old" >/dev/null 2>&1 || true
fi
size="$(docker image inspect --format '{{.Size}}' "$IMAGE")"
echo "build-image: $IMAGE built, $((size / 1024 / 1024)) MiB ($size bytes)" >&2
