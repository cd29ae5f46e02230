#!/usr/bin/env bash
# scripts/build.sh: configures (or reconfigures) a meson build directory and builds it.
#
# Usage: scripts/build.sh [builddir] [meson options...]
#   builddir defaults to build/ (relative to the repository root unless absolute).
#   Meson options (e.g. -Dwerror=true -Db_sanitize=address,undefined) are applied on every
#   call, so a second call with other options reconfigures the directory.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

BUILD="${1:-build}"
if [ "$#" -gt 0 ]; then shift; fi

if [ -f "$BUILD/build.ninja" ] && [ -d "$BUILD/meson-private" ]; then
    meson setup --reconfigure "$BUILD" "$@"
elif [ -d "$BUILD/meson-private" ]; then
    # A setup that failed half-way: start the directory afresh.
    meson setup --wipe "$BUILD" "$@"
else
    meson setup "$BUILD" "$@"
fi
ninja -C "$BUILD"
