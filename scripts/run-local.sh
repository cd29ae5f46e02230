#!/usr/bin/env bash
# scripts/run-local.sh: sets up, builds, and starts one cairnd as a single-member replica set
# "rs0" on 127.0.0.1:27017 with its data in ./data (log: data/cairnd.log, pid: data/cairnd.pid).
# Idempotent: a server started by an earlier call is stopped cleanly and started again.
# Prints the connection string once the server is a writable primary.
#
# Usage: scripts/run-local.sh          (stop it with: kill $(cat data/cairnd.pid))
# For testing the script itself: CAIRN_BUILD, CAIRN_PORT, CAIRN_DATA override build/, 27017 and
# ./data.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

PORT="${CAIRN_PORT:-27017}"
BUILD="${CAIRN_BUILD:-build}"
DATA="${CAIRN_DATA:-$REPO/data}"
PIDFILE="$DATA/cairnd.pid"
LOG="$DATA/cairnd.log"
BIN="$REPO/$BUILD/src/server/cairnd"

bash "$REPO/scripts/setup.sh"
bash "$REPO/scripts/build.sh" "$BUILD" >&2

mkdir -p "$DATA"

# Stop a server left by an earlier call (only if the pid really is our cairnd).
if [ -f "$PIDFILE" ]; then
    old="$(cat "$PIDFILE" 2>/dev/null || true)"
    if [ -n "$old" ] && [ -r "/proc/$old/cmdline" ] &&
        tr '\0' ' ' <"/proc/$old/cmdline" | grep -q "cairnd"; then
        echo "run-local: stopping the running cairnd (pid $old)" >&2
        kill -TERM "$old" 2>/dev/null || true
        for _ in $(seq 1 300); do
            kill -0 "$old" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$old" 2>/dev/null; then
            echo "run-local: cairnd (pid $old) did not stop within 30s; killing it" >&2
            kill -KILL "$old" 2>/dev/null || true
            sleep 0.5
        fi
    fi
    rm -f "$PIDFILE"
fi

# Someone else on the port (or on the Raft port) would make the start fail confusingly.
for p in "$PORT" $((PORT + 10000)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "run-local: port $p on 127.0.0.1 is already in use by another process" >&2
        exit 1
    fi
done

echo "run-local: starting cairnd (log: $LOG)" >&2
setsid "$BIN" --replSet rs0 --port "$PORT" --bind_ip 127.0.0.1 --dbpath "$DATA" --initiate \
    </dev/null >>"$LOG" 2>&1 &
pid=$!
echo "$pid" >"$PIDFILE"

if ! "$REPO/.venv/bin/python" "$REPO/tests/integration/cairn_server.py" wait \
    --port "$PORT" --timeout 120 --pid "$pid"; then
    echo "run-local: cairnd did not become a writable primary; last log lines:" >&2
    tail -n 30 "$LOG" >&2 || true
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    exit 1
fi

echo "mongodb://127.0.0.1:$PORT/?replicaSet=rs0"
echo "cairnd is running (pid $pid, data in $DATA, log in $LOG)." >&2
echo "Stop it with: kill \$(cat $PIDFILE)" >&2
