#!/usr/bin/env bash
# scripts/test.sh: sets up, builds and runs every Cairn test suite.
#
#   1. build/      -Dwerror=true: Check unit tests (meson test), pytest integration tests
#                  against build/src/server/cairnd, the libmongoc C program, and the seed
#                  documents' transaction examples in pymongo, C and Go, and GridFS with
#                  the Go driver (scripts/run-examples.sh).
#                  Then the Docker deployment (tests/docker), skipped only where no Docker
#                  engine runs.
#   2. build-asan/ -Db_sanitize=address,undefined: unit tests, integration tests, the
#                  libmongoc program and the examples against the sanitized cairnd.
#
# The summary gives each suite's passed, failed and skipped counts, then ends with one line
# "N passed, N failed" (CI parses it) summing every Check test case, pytest test and
# C-program check. A suite that ran nothing (no tests, or every test skipped) counts as one
# failure: a suite that silently stopped running must not read as green. The one exception
# is the Docker suite where no Docker engine runs: shown as skipped and counted as one skip.
# Exits non-zero if anything failed or a suite could not run.
# Environment: SKIP_ASAN=1 skips step 2 (local use only; CI runs everything);
# CAIRN_BUILD / CAIRN_ASAN_BUILD name other build directories (default build, build-asan).
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PY="$REPO/.venv/bin/python"
RESULTS="$REPO/${CAIRN_BUILD:-build}-results"

TOTAL_PASS=0
TOTAL_FAIL=0
TOTAL_SKIP=0
SUMMARY=()

say() { printf '\n=== [%4ds] %s\n' "$SECONDS" "$*"; }

record() { # record SUITE PASSED FAILED SKIPPED [NOTE]
    local suite="$1" passed="$2" failed="$3" skipped="$4" note="${5:-}"
    if [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ]; then
        # Nothing ran (no tests, or all skipped): that is a failure, not a green suite.
        failed=1
        note="${note:+$note }(ran nothing: $skipped skipped)"
    fi
    TOTAL_PASS=$((TOTAL_PASS + passed))
    TOTAL_FAIL=$((TOTAL_FAIL + failed))
    TOTAL_SKIP=$((TOTAL_SKIP + skipped))
    SUMMARY+=("$(printf '%-34s %5d passed %5d failed %5d skipped %s' "$suite" "$passed" \
        "$failed" "$skipped" "$note")")
}

finish() {
    say "summary"
    for line in "${SUMMARY[@]}"; do echo "  $line"; done
    echo "  (${TOTAL_SKIP} skipped in all)"
    echo "${TOTAL_PASS} passed, ${TOTAL_FAIL} failed"
    if [ "$TOTAL_FAIL" -ne 0 ]; then exit 1; fi
    if [ "$TOTAL_PASS" -eq 0 ]; then exit 1; fi
    exit 0
}

say "setup"
if ! bash "$REPO/scripts/setup.sh"; then
    record "setup" 0 1 0 "(scripts/setup.sh failed)"
    finish
fi
rm -rf "$RESULTS"
mkdir -p "$RESULTS"

# unit_tests BUILDDIR LABEL: runs meson test, counts Check cases from testlog.json.
unit_tests() {
    local build="$1" label="$2" mult="${3:-1}"
    say "$label: unit tests (meson test -C $build)"
    meson test -C "$build" --num-processes 2 --timeout-multiplier "$mult" --print-errorlogs
    local rc=$?
    local counts
    counts="$("$PY" - "$build/meson-logs/testlog.json" "$rc" <<'EOF'
import json, re, sys
path, rc = sys.argv[1], int(sys.argv[2])
passed = failed = skipped = 0
tests = 0
pat = re.compile(r"Checks: (\d+), Failures: (\d+), Errors: (\d+)")
try:
    lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
except OSError:
    lines = []
for line in lines:
    if not line.strip():
        continue
    t = json.loads(line)
    tests += 1
    out = (t.get("stdout") or "") + "\n" + (t.get("stderr") or "")
    found = pat.findall(out)
    p = f = 0
    for n, fl, er in found:
        p += int(n) - int(fl) - int(er)
        f += int(fl) + int(er)
    ok = t.get("result") in ("OK", "EXPECTEDFAIL")
    if t.get("result") == "SKIP":
        # A unit test program that skips (exit 77) is shown, and counted as failed as
        # before: every unit test must run on a machine set up by scripts/setup.sh.
        skipped += 1
    if not found:
        # no Check summary: the program crashed or is not a Check test; count it as one
        if ok:
            p += 1
        else:
            f += 1
    elif not ok and f == 0:
        f += 1   # all cases passed but the program failed (sanitizer report at exit, timeout)
    passed += p
    failed += f
    if not ok or f:
        print("  unit test %s: %s" % (t.get("name"), t.get("result")), file=sys.stderr)
if tests == 0:
    print("  no unit tests ran (meson test exit %d)" % rc, file=sys.stderr)
    failed += 1
elif rc != 0 and failed == 0:
    failed += 1
print(passed, failed, skipped)
EOF
)"
    # shellcheck disable=SC2086
    record "$label unit (Check)" ${counts:-0 1 0}
}

# pytest_counts XML RC: prints "passed failed skipped" from a pytest junit xml and its exit
# status (no xml, no tests, every test skipped or a non-zero exit without a failure count as
# a failure).
pytest_counts() {
    "$PY" - "$1" "$2" <<'EOF'
import sys
import xml.etree.ElementTree as ET
path, rc = sys.argv[1], int(sys.argv[2])
try:
    root = ET.parse(path).getroot()
except Exception as exc:
    print("  no pytest junit xml (%s), pytest exit %d" % (exc, rc), file=sys.stderr)
    print(0, 1, 0)
    sys.exit(0)
suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
tests = sum(int(s.get("tests", 0)) for s in suites)
fail = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skip = sum(int(s.get("skipped", 0)) for s in suites)
passed = tests - fail - skip
if tests == 0 or rc == 5:
    print("  pytest ran no tests (exit %d)" % rc, file=sys.stderr)
    fail += 1
elif passed <= 0 and fail == 0:
    print("  pytest skipped all %d tests" % tests, file=sys.stderr)
    fail += 1
elif rc != 0 and fail == 0:
    print("  pytest exited %d without reporting a failure" % rc, file=sys.stderr)
    fail += 1
if skip:
    print("  pytest skipped %d tests" % skip, file=sys.stderr)
print(max(passed, 0), fail, skip)
EOF
}

# integration BUILDDIR LABEL: pytest against BUILDDIR's cairnd, counted from its junit xml.
integration() {
    local build="$1" label="$2"
    local xml="$RESULTS/pytest-$label.xml"
    say "$label: integration tests (pytest, CAIRND=$build/src/server/cairnd)"
    # The whole suite takes a minute or two; the outer timeout only guards against a hang.
    CAIRND="$REPO/$build/src/server/cairnd" timeout --kill-after=30 1500 \
        "$PY" -m pytest "$REPO/tests/integration" -q -rfE -p no:cacheprovider --durations=5 \
        --junitxml="$xml" --basetemp="$RESULTS/tmp-$label" -o junit_family=xunit2
    local rc=$?
    local counts
    counts="$(pytest_counts "$xml" "$rc")"
    # shellcheck disable=SC2086
    record "$label integration (pytest)" ${counts:-0 1 0}
}

# examples BUILDDIR LABEL: the seed documents' transaction examples (pymongo, libmongoc, Go)
# and GridFS with the Go driver
# against fresh cairnd processes (scripts/run-examples.sh), counted from its last line.
examples() {
    local build="$1" label="$2"
    local out="$RESULTS/examples-$label.txt"
    say "$label: driver examples (scripts/run-examples.sh $build)"
    timeout --kill-after=30 900 bash "$REPO/scripts/run-examples.sh" "$build" 2>&1 | tee "$out"
    local rc=${PIPESTATUS[0]}
    local counts
    counts="$(tail -n 1 "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p')"
    if [ -z "$counts" ]; then
        echo "  scripts/run-examples.sh printed no summary line (exit $rc)"
        counts="0 1"
    elif [ "$rc" -ne 0 ] && [ "${counts#* }" = "0" ]; then
        counts="${counts% *} 1"
    fi
    # shellcheck disable=SC2086
    record "$label driver examples" $counts 0
}

# mongoc_program BUILDDIR LABEL: runs the libmongoc program against a fresh cairnd.
mongoc_program() {
    local build="$1" label="$2"
    local prog="$REPO/$build/tests/mongoc_smoke"
    local out="$RESULTS/mongoc-$label.txt"
    say "$label: libmongoc program ($prog)"
    if [ ! -x "$prog" ]; then
        echo "  $prog was not built"
        record "$label libmongoc program" 0 1 0 "(not built)"
        return
    fi
    "$PY" "$REPO/tests/integration/cairn_server.py" run --cairnd "$REPO/$build/src/server/cairnd" \
        -- "$prog" "{uri}" 2>&1 | tee "$out"
    local rc=${PIPESTATUS[0]}
    local p f s
    # TAP: "ok - name # SKIP reason" is a skip, not a pass
    p=$(grep '^ok - ' "$out" | grep -vc '# *SKIP')
    s=$(grep '^ok - ' "$out" | grep -c '# *SKIP')
    f=$(grep -c '^not ok - ' "$out")
    if ! grep -Eq '^[0-9]+ passed, [0-9]+ failed$' "$out"; then
        echo "  the program printed no summary line"
        f=$((f + 1))
    elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
    fi
    record "$label libmongoc program" "$p" "$f" "$s"
}

# docker_suite BUILDDIR: the Docker deployment (tests/docker: docker/build-image.sh builds
# cairn:latest from BUILDDIR, a compose project of docker/compose.yml on free ports, failover,
# down + up, an emptied volume), once, with the normal build; it removes what it created except
# the image cairn:latest. Only where no Docker engine runs is it skipped: shown, and counted
# as one skipped test, not as a failure.
docker_suite() {
    local build="$1"
    local xml="$RESULTS/pytest-docker.xml"
    say "docker: compose replica set (pytest tests/docker, image from $build)"
    if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
        echo "  SKIPPED: no Docker engine runs here (docker info failed): tests/docker not run"
        TOTAL_SKIP=$((TOTAL_SKIP + 1))
        SUMMARY+=("$(printf '%-34s %5d passed %5d failed %5d skipped %s' "docker (compose set)" 0 0 \
            1 "(no Docker engine runs: skipped)")")
        return
    fi
    CAIRN_BUILD="$build" timeout --kill-after=30 1200 \
        "$PY" -m pytest "$REPO/tests/docker" -q -rfEs -p no:cacheprovider --durations=5 \
        --junitxml="$xml" --basetemp="$RESULTS/tmp-docker" -o junit_family=xunit2
    local rc=$?
    local counts
    counts="$(pytest_counts "$xml" "$rc")"
    # shellcheck disable=SC2086
    record "docker (compose set)" ${counts:-0 1 0}
}

# build_dir BUILDDIR LABEL OPTIONS...: returns non-zero (and records a failure) if it fails.
build_dir() {
    local build="$1" label="$2"
    shift 2
    say "$label: build ($build $*)"
    if ! bash "$REPO/scripts/build.sh" "$build" "$@"; then
        record "$label build" 0 1 0 "(build failed)"
        return 1
    fi
    if [ ! -x "$REPO/$build/src/server/cairnd" ]; then
        echo "  $build/src/server/cairnd was not built"
        record "$label build" 0 1 0 "(no cairnd)"
        return 1
    fi
    return 0
}

# 0. layering of DESIGN.md (include rules)
say "layering (scripts/check-layers.sh)"
layer_out="$(bash scripts/check-layers.sh 2>&1)" || true
printf '%s\n' "$layer_out"
layer_counts="$(printf '%s\n' "$layer_out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2 0/p' | tail -1)"
# shellcheck disable=SC2086
record "layering" ${layer_counts:-0 1 0}

BUILD="${CAIRN_BUILD:-build}"
ASAN_BUILD="${CAIRN_ASAN_BUILD:-build-asan}"

# 1. normal build with -Werror
if build_dir "$BUILD" normal -Dwerror=true -Dbuildtype=debugoptimized -Db_sanitize=none; then
    unit_tests "$BUILD" normal 1
    integration "$BUILD" normal
    mongoc_program "$BUILD" normal
    examples "$BUILD" normal
    docker_suite "$BUILD"
else
    record "normal unit/integration/mongoc" 0 1 0 "(not run: build failed)"
fi

# 2. sanitized build
if [ "${SKIP_ASAN:-0}" = "1" ] && [ "${CI:-}" != "true" ]; then
    say "asan: skipped (SKIP_ASAN=1)"
    SUMMARY+=("$(printf '%-34s not run (SKIP_ASAN=1, local use only)' "asan")")
else
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
    export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
    if build_dir "$ASAN_BUILD" asan -Dwerror=true -Db_sanitize=address,undefined \
        -Db_lundef=false; then
        unit_tests "$ASAN_BUILD" asan 3
        integration "$ASAN_BUILD" asan
        mongoc_program "$ASAN_BUILD" asan
        examples "$ASAN_BUILD" asan
    else
        record "asan unit/integration/mongoc" 0 1 0 "(not run: build failed)"
    fi
    unset ASAN_OPTIONS UBSAN_OPTIONS
fi

finish
