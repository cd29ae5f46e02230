#!/usr/bin/env bash
# scripts/run-local.sh: sets up, builds, and starts a local replica set "rs0": three cairnd
# members on 127.0.0.1:27017-27019 (or one with --members 1), data under ./data/n<i> (log
# data/n<i>/cairnd.log, pid data/n<i>/cairnd.pid, command line data/n<i>/cairnd.cmdline,
# NUL-separated as in /proc/<pid>/cmdline, so that scripts/cairn-fault can restart a member),
# members authenticated with the key file data/keyfile (made once). Initiates the set the first
# time; prints the connection string once a primary accepts writes.
# Idempotent: members started by an earlier call are stopped cleanly and started again on
# their data; an initiated set is not initiated again.
#
# Usage: scripts/run-local.sh [--members N] [--ips IP1,IP2,...]
#        N = 1, 3 or 5 (default 3). --ips puts member i on the i-th loopback address (one per
#        member; ports still PORT+i-1), so that scripts/cairn-fault can cut members apart with
#        firewall rules; the addresses are remembered in data/ips and reused by later calls.
#        stop it with: scripts/run-local.sh --stop
# For testing the script itself: CAIRN_BUILD, CAIRN_PORT, CAIRN_DATA override build/, 27017
# (the first member's port) and ./data; CAIRND names a cairnd binary to run instead (then
# nothing is set up or built).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

MEMBERS=3
STOP=false
IPS=""
while [ "$#" -gt 0 ]; do
    case "$1" in
        --members) MEMBERS="${2:?--members needs a number}"; shift 2 ;;
        --ips) IPS="${2:?--ips needs a comma-separated list of addresses}"; shift 2 ;;
        --stop) STOP=true; shift ;;
        *) echo "usage: scripts/run-local.sh [--members 1|3|5] [--ips IP,IP,...] [--stop]" >&2
           exit 2 ;;
    esac
done
case "$MEMBERS" in 1 | 3 | 5) ;; *) echo "run-local: --members must be 1, 3 or 5" >&2; exit 2 ;; esac

PORT="${CAIRN_PORT:-27017}"
BUILD="${CAIRN_BUILD:-build}"
DATA="${CAIRN_DATA:-$REPO/data}"
BIN="${CAIRND:-$REPO/$BUILD/src/server/cairnd}"
KEYFILE="$DATA/keyfile"
PY="$REPO/.venv/bin/python"

# Stops the member whose pid file is $1 (only if the pid really is our cairnd).
stop_member() {
    local pidfile="$1" old
    [ -f "$pidfile" ] || return 0
    old="$(cat "$pidfile" 2>/dev/null || true)"
    if [ -n "$old" ] && [ -r "/proc/$old/cmdline" ] &&
        tr '\0' ' ' <"/proc/$old/cmdline" | grep -q "cairnd"; then
        echo "run-local: stopping cairnd (pid $old)" >&2
        # A member paused by scripts/cairn-fault stop would not act on SIGTERM.
        kill -CONT "$old" 2>/dev/null || true
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
    rm -f "$pidfile"
}

# Every member a previous call may have started (any set size), and the
# one-member layout of earlier versions (data/cairnd.pid).
stop_all() {
    stop_member "$DATA/cairnd.pid"
    for d in "$DATA"/n*; do
        [ -d "$d" ] && stop_member "$d/cairnd.pid"
    done
    return 0
}

if $STOP; then
    stop_all
    exit 0
fi

# The members' addresses: --ips, else those an earlier call recorded, else 127.0.0.1 for all
# (a set initiated on some addresses must be restarted on the same ones).
if [ -z "$IPS" ] && [ -s "$DATA/ips" ]; then
    IPS="$(cat "$DATA/ips")"
    echo "run-local: members on the addresses recorded in $DATA/ips: $IPS" >&2
fi
ip_of=()
if [ -n "$IPS" ]; then
    IFS=, read -r -a ip_of <<<"$IPS"
    if [ "${#ip_of[@]}" -ne "$MEMBERS" ]; then
        echo "run-local: --ips needs one address per member ($MEMBERS), got ${#ip_of[@]}" >&2
        exit 2
    fi
    for a in "${ip_of[@]}"; do
        case "$a" in 127.*.*.*) ;; *) echo "run-local: $a is not a loopback address (127.x.y.z)" >&2
                                      exit 2 ;; esac
    done
else
    for _ in $(seq 1 "$MEMBERS"); do ip_of+=("127.0.0.1"); done
fi

if [ -z "${CAIRND:-}" ]; then
    bash "$REPO/scripts/setup.sh"
    bash "$REPO/scripts/build.sh" "$BUILD" >&2
fi

mkdir -p "$DATA"
stop_all
if [ -n "$IPS" ]; then echo "$IPS" >"$DATA/ips"; fi

if [ ! -s "$KEYFILE" ]; then
    # mongod's key file format: base64 characters, readable by the owner only.
    umask 077
    head -c 48 /dev/urandom | base64 -w0 >"$KEYFILE"
    echo >>"$KEYFILE"
fi
chmod 600 "$KEYFILE"

hosts=()
for i in $(seq 1 "$MEMBERS"); do
    p=$((PORT + i - 1))
    a="${ip_of[$((i - 1))]}"
    hosts+=("$a:$p")
    # Someone else on the port (or on the member port) would make the start fail confusingly.
    for q in "$p" $((p + 10000)); do
        if (exec 3<>"/dev/tcp/$a/$q") 2>/dev/null; then
            echo "run-local: port $q on $a is already in use by another process" >&2
            exit 1
        fi
    done
done

for i in $(seq 1 "$MEMBERS"); do
    p=$((PORT + i - 1))
    a="${ip_of[$((i - 1))]}"
    dir="$DATA/n$i"
    mkdir -p "$dir"
    echo "run-local: starting member $i on $a:$p (log: $dir/cairnd.log)" >&2
    cmd=("$BIN" --replSet rs0 --port "$p" --bind_ip "$a" --dbpath "$dir" --keyFile "$KEYFILE")
    printf '%s\0' "${cmd[@]}" >"$dir/cairnd.cmdline"
    setsid "${cmd[@]}" </dev/null >>"$dir/cairnd.log" 2>&1 &
    echo "$!" >"$dir/cairnd.pid"
done

fail() {
    echo "run-local: $*; last log lines:" >&2
    for i in $(seq 1 "$MEMBERS"); do
        echo "--- member $i" >&2
        tail -n 15 "$DATA/n$i/cairnd.log" >&2 || true
    done
    stop_all
    exit 1
}

# Initiate once (a set already initiated keeps its config), then wait for a primary.
"$PY" - "$MEMBERS" "${hosts[@]}" <<'EOF' || fail "the replica set did not get a writable primary"
import sys, time
import pymongo
from pymongo.errors import OperationFailure, PyMongoError

n = int(sys.argv[1])
hosts = sys.argv[2:2 + n]
deadline = time.monotonic() + 120

def hello(h):
    c = pymongo.MongoClient(h, directConnection=True, serverSelectionTimeoutMS=2000)
    try:
        return c.admin.command("hello")
    finally:
        c.close()

# Every member answering first (the initiate check asks all of them).
for h in hosts:
    while True:
        try:
            hello(h)
            break
        except PyMongoError:
            if time.monotonic() > deadline:
                sys.exit("member %s does not answer" % h)
            time.sleep(0.1)
if "setName" not in hello(hosts[0]):
    c = pymongo.MongoClient(hosts[0], directConnection=True)
    try:
        c.admin.command("replSetInitiate", {
            "_id": "rs0",
            "members": [{"_id": i, "host": h} for i, h in enumerate(hosts)],
        })
    except OperationFailure as e:
        if e.code != 23:  # AlreadyInitialized
            raise
    finally:
        c.close()
while time.monotonic() < deadline:
    for h in hosts:
        try:
            if hello(h).get("isWritablePrimary"):
                sys.exit(0)
        except PyMongoError:
            pass
    time.sleep(0.1)
sys.exit("no writable primary within 120 s")
EOF

echo "mongodb://$(IFS=,; echo "${hosts[*]}")/?replicaSet=rs0"
echo "cairnd: $MEMBERS member(s) running (data in $DATA/n*, logs in $DATA/n*/cairnd.log)." >&2
echo "Stop them with: scripts/run-local.sh --stop" >&2
