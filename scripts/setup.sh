#!/usr/bin/env bash
# scripts/setup.sh: installs everything Cairn needs to build and test on Debian bookworm.
# Idempotent: apt-get runs only when a package is missing, pip only when the venv lacks the
# pinned pymongo/pytest/mongoengine versions (an older or newer one is replaced). Runs as root, or as a
# user with sudo.
#
# Usage: scripts/setup.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"

PACKAGES=(
    build-essential meson ninja-build pkg-config cmake
    librocksdb-dev libbson-dev libmongoc-dev libuv1-dev libnng-dev check
    python3 python3-venv python3-pip clang-format
    golang-go golang-mongodb-mongo-driver-dev
)

# The Python test clients, pinned so that a driver release cannot change what the suites
# exercise unnoticed; bump these deliberately.
PYMONGO_VERSION=4.20.1
PYTEST_VERSION=9.2.0
# The ODM of tests/integration/test_mongoengine_models.py; 0.29.x takes pymongo >= 3.4, < 5.
MONGOENGINE_VERSION=0.29.3

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

# libraft-dev 0.22.1 comes from bookworm-backports (docs/decisions.md §16): bookworm's 0.15
# commits entries of an earlier term by counting replicas (Figure 8 of the Raft paper).
RAFT_VERSION=0.22.1
BACKPORTS=/etc/apt/sources.list.d/bookworm-backports.sources

raft_ok() {
    local v
    v="$(dpkg-query -W -f='${Version}' libraft-dev 2>/dev/null || true)"
    case "$v" in "$RAFT_VERSION"-*) return 0 ;; *) return 1 ;; esac
}

if ! raft_ok; then
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        log "adding the bookworm-backports source ($BACKPORTS)"
        if [ -f /etc/apt/sources.list.d/debian.sources ]; then
            # The main archive's stanza with its URIs and Signed-By, suite bookworm-backports.
            awk 'BEGIN{RS="";ORS="\n\n"} /Suites:[^\n]*bookworm( |$|\n)/ && !/security/' \
                /etc/apt/sources.list.d/debian.sources |
                sed -e 's/^Suites:.*/Suites: bookworm-backports/' |
                as_root tee "$BACKPORTS" >/dev/null
        else
            printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' |
                as_root tee "$BACKPORTS" >/dev/null
        fi
    fi
    log "installing libraft-dev $RAFT_VERSION from bookworm-backports"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -t bookworm-backports "libraft-dev=$RAFT_VERSION-*"
    raft_ok || { log "libraft-dev $RAFT_VERSION is not installed"; exit 1; }
else
    log "libraft-dev $RAFT_VERSION present"
fi

venv_ok() {
    [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" - "$PYMONGO_VERSION" "$PYTEST_VERSION" "$MONGOENGINE_VERSION" \
            <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
assert version("pymongo") == sys.argv[1], version("pymongo")
assert version("pytest") == sys.argv[2], version("pytest")
assert version("mongoengine") == sys.argv[3], version("mongoengine")
import pymongo, pytest, mongoengine
EOF
}

if ! venv_ok; then
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating venv $VENV"
        python3 -m venv "$VENV"
    fi
    log "installing pymongo==$PYMONGO_VERSION, pytest==$PYTEST_VERSION and" \
        "mongoengine==$MONGOENGINE_VERSION into the venv"
    "$VENV/bin/python" -m pip install -q "pymongo==$PYMONGO_VERSION" "pytest==$PYTEST_VERSION" \
        "mongoengine==$MONGOENGINE_VERSION"
    venv_ok || { log "venv check failed after pip install"; exit 1; }
else
    log "venv present ($VENV)"
fi
