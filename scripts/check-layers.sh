#!/usr/bin/env bash
# scripts/check-layers.sh: enforces the layering of DESIGN.md by grepping #includes.
#   - only src/engine includes RocksDB, only src/repl raft and libuv, only src/net nng;
#   - dependencies point down: net -> txn -> repl -> engine (txn may read the engine),
#     query is document logic that includes no other layer, lib includes no layer.
# Prints one line per rule ("ok - ..." / "not ok - ...") and "N passed, N failed";
# exits non-zero when a rule is broken.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

passed=0
failed=0

# rule DESCRIPTION DIRS_TO_SCAN PATTERN: no file under DIRS may match PATTERN.
rule() {
    local desc=$1 pattern=$3 hits
    # shellcheck disable=SC2086
    hits=$(grep -rnE --include='*.c' --include='*.h' "$pattern" $2 2>/dev/null || true)
    if [ -z "$hits" ]; then
        echo "ok - $desc"
        passed=$((passed + 1))
    else
        echo "not ok - $desc"
        printf '    %s\n' "$hits"
        failed=$((failed + 1))
    fi
}

others_than() { # the src/ layer dirs except the named ones
    local d keep
    for d in src/lib src/query src/engine src/repl src/txn src/net src/server tools tests include; do
        keep=1
        for x in "$@"; do [ "$d" = "$x" ] && keep=0; done
        [ $keep = 1 ] && [ -d "$d" ] && printf '%s ' "$d"
    done
}

rule "only src/engine (and its tests) includes RocksDB" \
    "$(others_than src/engine tests)" '#include\s*<rocksdb/'
rule "only src/repl (and its tests) includes raft or libuv" \
    "$(others_than src/repl tests)" '#include\s*<(raft\.h|raft/|uv\.h)'
rule "only src/net includes nng" "$(others_than src/net)" '#include\s*<nng/'
rule "lib includes no layer" "src/lib" '#include\s*"(query|engine|repl|txn|net)/'
rule "query includes no other layer" "src/query" '#include\s*"(engine|repl|txn|net)/'
rule "engine includes nothing above it" "src/engine" '#include\s*"(query|repl|txn|net)/'
rule "repl includes nothing above it" "src/repl" '#include\s*"(txn|net)/'
rule "txn does not include net" "src/txn" '#include\s*"net/'
rule "net does not reach past txn into the engine" "src/net" '#include\s*"engine/'
for layer in lib query engine repl txn net server; do
    rule "no file outside src/$layer includes its private *_int.h headers" \
        "$(others_than "src/$layer" tests)" "#include\\s*\"$layer/[a-z_]*_int\\.h\""
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
