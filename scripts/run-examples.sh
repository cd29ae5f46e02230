#!/usr/bin/env bash
# scripts/run-examples.sh: builds and runs the driver example programs (the transaction examples
# of tests/examples/, GridFS with the Go driver) against BUILDDIR's cairnd, each against its own
# fresh one-member replica set.
#
#   tests/examples/pymongo_with_transaction.py   PyMongo guide: with_transaction (+ an abort)
#   tests/examples/pymongo_retry_helpers.py      manual: hr.employees / reporting.events with
#                                                run_transaction_with_retry / commit_with_retry
#   BUILDDIR/tests/mongoc_with_transaction       manual, C: built by meson (tests/meson.build)
#   BUILDDIR/examples/go_with_transaction        manual, Go: built here from tests/examples/go
#   BUILDDIR/examples/go_gridfs                  GridFS with the Go driver (5 MB upload,
#                                                download, find, delete, its indexes): built
#                                                here from tests/go/gridfs
#
# The Go programs are built offline from Debian's packages (golang-go, golang-mongodb-mongo-
# driver-dev) in GOPATH mode; see the top of tests/examples/go/with_transaction.go.
#
# Prints each program's output (its "ok - ..." / "not ok - ..." lines and its own summary,
# then cairn_server.py's line about the server's clean shutdown), and ends with one line
# "N passed, N failed" counting every ok / not ok line; a program that could not be built,
# printed no summary line, or exited non-zero without a failed check counts one failure more.
# Exits non-zero if anything failed. Needs scripts/setup.sh and scripts/build.sh BUILDDIR.
#
# Usage: scripts/run-examples.sh BUILDDIR   (relative to the repository root unless absolute)
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

if [ "$#" -ne 1 ]; then
    echo "usage: $0 BUILDDIR" >&2
    exit 2
fi
BUILD="$1"
case "$BUILD" in
/*) ;;
*) BUILD="$REPO/$BUILD" ;;
esac
PY="$REPO/.venv/bin/python"
CAIRND="$BUILD/src/server/cairnd"
OUT="$BUILD/examples"

TOTAL_PASS=0
TOTAL_FAIL=0

fail_one() { # fail_one WHAT WHY: a failure outside any program's own checks
    echo "not ok - $1: $2"
    TOTAL_FAIL=$((TOTAL_FAIL + 1))
}

# run_example NAME COMMAND...: runs COMMAND {uri} against a fresh cairnd, counts its lines.
run_example() {
    local name="$1"
    shift
    local out="$OUT/$name.txt"
    echo "# ---- $name"
    timeout --kill-after=30 900 "$PY" "$REPO/tests/integration/cairn_server.py" run \
        --cairnd "$CAIRND" -- "$@" "{uri}" 2>&1 | tee "$out"
    local rc=${PIPESTATUS[0]}
    local p f
    p=$(grep -c '^ok - ' "$out")
    f=$(grep -c '^not ok - ' "$out")
    if ! grep -Eq '^[0-9]+ passed, [0-9]+ failed$' "$out"; then
        echo "not ok - $name printed no summary line (exit status $rc)"
        f=$((f + 1))
    elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "not ok - $name exited with status $rc without a failed check"
        f=$((f + 1))
    fi
    TOTAL_PASS=$((TOTAL_PASS + p))
    TOTAL_FAIL=$((TOTAL_FAIL + f))
}

if [ ! -x "$CAIRND" ]; then
    fail_one "examples" "$CAIRND was not built (run scripts/build.sh first)"
    echo "${TOTAL_PASS} passed, ${TOTAL_FAIL} failed"
    exit 1
fi
mkdir -p "$OUT"

# The Go programs: GOPATH mode over Debian's /usr/share/gocode, nothing downloaded.
# go_build NAME PACKAGE: builds $OUT/NAME; returns non-zero (and counts a failure) if it fails.
go_build() {
    local name="$1" pkg="$2"
    rm -f "$OUT/$name"
    if ! command -v go >/dev/null 2>&1; then
        fail_one "$name" "no go command (scripts/setup.sh installs golang-go)"
        return 1
    fi
    if ! env GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOPROXY=off \
        GOCACHE="$OUT/go-cache" go build -o "$OUT/$name" "$pkg" >"$OUT/$name-build.log" 2>&1; then
        cat "$OUT/$name-build.log"
        fail_one "$name" "go build failed (log: $OUT/$name-build.log)"
        return 1
    fi
}

go_tx_built=false
go_build go_with_transaction ./tests/examples/go && go_tx_built=true
go_gridfs_built=false
go_build go_gridfs ./tests/go/gridfs && go_gridfs_built=true

run_example pymongo_with_transaction "$PY" "$REPO/tests/examples/pymongo_with_transaction.py"
run_example pymongo_retry_helpers "$PY" "$REPO/tests/examples/pymongo_retry_helpers.py"
if [ -x "$BUILD/tests/mongoc_with_transaction" ]; then
    run_example mongoc_with_transaction "$BUILD/tests/mongoc_with_transaction"
else
    fail_one "mongoc_with_transaction" "$BUILD/tests/mongoc_with_transaction was not built"
fi
if $go_tx_built; then
    run_example go_with_transaction "$OUT/go_with_transaction"
fi
if $go_gridfs_built; then
    run_example go_gridfs "$OUT/go_gridfs"
fi

echo "${TOTAL_PASS} passed, ${TOTAL_FAIL} failed"
[ "$TOTAL_FAIL" -eq 0 ] && [ "$TOTAL_PASS" -gt 0 ]
