#!/usr/bin/env bash
# scripts/setup.sh: installs everything Cairn needs to build and test on Debian bookworm.
# Idempotent: apt-get runs only when a package is missing, pip only when the venv lacks the
# pinned pymongo/pytest versions (an older or newer one is replaced). Runs as root, or as a
# user with sudo.
#
# Usage: scripts/setup.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"

PACKAGES=(
    build-essential meson ninja-build pkg-config cmake
    librocksdb-dev libbson-dev libmongoc-dev libraft-dev libuv1-dev libnng-dev check
    python3 python3-venv python3-pip clang-format
    golang-go golang-mongodb-mongo-driver-dev
)

# The Python test clients, pinned so that a driver release cannot change what the suites
# exercise unnoticed; bump these deliberately.
PYMONGO_VERSION=4.20.1
PYTEST_VERSION=9.2.0

log() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        log "need root (or sudo) to run: $*"
        return 1
    fi
}

missing=()
for p in "${PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
    if [ "$status" != "install ok installed" ]; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}"
else
    log "system packages present"
fi

venv_ok() {
    [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" - "$PYMONGO_VERSION" "$PYTEST_VERSION" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
assert version("pymongo") == sys.argv[1], version("pymongo")
assert version("pytest") == sys.argv[2], version("pytest")
import pymongo, pytest
EOF
}

if ! venv_ok; then
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating venv $VENV"
        python3 -m venv "$VENV"
    fi
    log "installing pymongo==$PYMONGO_VERSION and pytest==$PYTEST_VERSION into the venv"
    "$VENV/bin/python" -m pip install -q "pymongo==$PYMONGO_VERSION" "pytest==$PYTEST_VERSION"
    venv_ok || { log "venv check failed after pip install"; exit 1; }
else
    log "venv present ($VENV)"
fi
